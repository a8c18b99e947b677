//! Shared helpers for the kernel tests (the root check is `shmlab_tests::prereq::kernel_net`):
//! a network namespace that is always deleted, `ip` in that namespace, and frame building and
//! parsing with pnet_packet.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A named network namespace `shmlab-virtif-test-<pid>-<n>-<tag>`, deleted on drop (also when
/// the test fails). Drop taps opened in it before it, i.e. declare it first.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("shmlab-virtif-test-{}-{n}-{tag}", std::process::id());
        // A leftover from a killed run with a recycled pid would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(Command::new("ip").args(["netns", "add", &name]));
        Netns { name }
    }

    /// `ip -n NS ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip -n NS ARGS...`, success or not.
    pub fn ip_status(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("running ip")
    }

    /// The interface as `ip -j link show` reports it.
    pub fn link(&self, dev: &str) -> serde_json::Value {
        let out = self.ip(&["-j", "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output is JSON");
        v.as_array()
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_else(|| panic!("ip -j link show {dev}: no interface in {out}"))
    }

    pub fn has_link(&self, dev: &str) -> bool {
        self.ip_status(&["link", "show", "dev", dev])
            .status
            .success()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("warning: ip netns del {}: {e}", self.name),
        }
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Link flags from `ip -j link show`.
pub fn flags(link: &serde_json::Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// ---- frames: one builder and one checked parser per protocol (pnet_packet checks nothing) ----

use std::net::Ipv4Addr;

use pnet_packet::arp::{
    ArpHardwareTypes, ArpOperation, ArpOperations, ArpPacket, MutableArpPacket,
};
use pnet_packet::ethernet::{EtherType, EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmp::echo_reply::EchoReplyPacket;
use pnet_packet::icmp::echo_request::MutableEchoRequestPacket;
use pnet_packet::icmp::{IcmpCode, IcmpPacket, IcmpType, IcmpTypes};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{Ipv4Packet, MutableIpv4Packet};
use pnet_packet::Packet;

pub const BROADCAST: [u8; 6] = [0xff; 6];

fn mac(m: [u8; 6]) -> pnet_base::MacAddr {
    pnet_base::MacAddr::new(m[0], m[1], m[2], m[3], m[4], m[5])
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + payload.len()];
    let mut eth = MutableEthernetPacket::new(&mut frame).expect("buffer holds the header");
    eth.set_destination(mac(dst));
    eth.set_source(mac(src));
    eth.set_ethertype(ethertype);
    eth.set_payload(payload);
    frame
}

/// An Ethernet frame carrying an ARP request or reply.
pub fn arp_frame(
    op: ArpOperation,
    eth_dst: [u8; 6],
    sender: ([u8; 6], Ipv4Addr),
    target: ([u8; 6], Ipv4Addr),
) -> Vec<u8> {
    let mut arp = [0u8; 28];
    let mut p = MutableArpPacket::new(&mut arp).expect("28 bytes hold an ARP packet");
    p.set_hardware_type(ArpHardwareTypes::Ethernet);
    p.set_protocol_type(EtherTypes::Ipv4);
    p.set_hw_addr_len(6);
    p.set_proto_addr_len(4);
    p.set_operation(op);
    p.set_sender_hw_addr(mac(sender.0));
    p.set_sender_proto_addr(sender.1);
    p.set_target_hw_addr(mac(target.0));
    p.set_target_proto_addr(target.1);
    ethernet(eth_dst, sender.0, EtherTypes::Arp, &arp)
}

#[derive(Debug, PartialEq, Eq)]
pub struct Arp {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    pub op: ArpOperation,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

/// An Ethernet/IPv4 ARP packet, or None for anything else.
pub fn parse_arp(frame: &[u8]) -> Option<Arp> {
    let eth = EthernetPacket::new(frame)?;
    if eth.get_ethertype() != EtherTypes::Arp || eth.payload().len() < 28 {
        return None;
    }
    let arp = ArpPacket::new(eth.payload())?;
    if arp.get_hardware_type() != ArpHardwareTypes::Ethernet
        || arp.get_protocol_type() != EtherTypes::Ipv4
        || arp.get_hw_addr_len() != 6
        || arp.get_proto_addr_len() != 4
    {
        return None;
    }
    Some(Arp {
        eth_src: eth.get_source().octets(),
        eth_dst: eth.get_destination().octets(),
        op: arp.get_operation(),
        sender_mac: arp.get_sender_hw_addr().octets(),
        sender_ip: arp.get_sender_proto_addr(),
        target_mac: arp.get_target_hw_addr().octets(),
        target_ip: arp.get_target_proto_addr(),
    })
}

/// An Ethernet frame with an IPv4 ICMP echo request, both checksums filled in.
pub fn echo_request_frame(
    eth: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    echo_frame(IcmpTypes::EchoRequest, eth, src, dst, (ident, seq), payload)
}

/// The same with an echo reply.
pub fn echo_reply_frame(
    eth: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    seq: u16,
    payload: &[u8],
) -> Vec<u8> {
    echo_frame(IcmpTypes::EchoReply, eth, src, dst, (ident, seq), payload)
}

fn echo_frame(
    kind: IcmpType,
    eth: ([u8; 6], [u8; 6]),
    src: Ipv4Addr,
    dst: Ipv4Addr,
    (ident, seq): (u16, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut icmp = vec![0u8; 8 + payload.len()];
    {
        let mut p = MutableEchoRequestPacket::new(&mut icmp).expect("buffer holds the header");
        p.set_icmp_type(kind);
        p.set_icmp_code(IcmpCode(0));
        p.set_identifier(ident);
        p.set_sequence_number(seq);
        p.set_payload(payload);
    }
    let sum = pnet_packet::icmp::checksum(&IcmpPacket::new(&icmp).expect("non-empty"));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());

    let mut ip = vec![0u8; 20 + icmp.len()];
    {
        let mut p = MutableIpv4Packet::new(&mut ip).expect("buffer holds the header");
        p.set_version(4);
        p.set_header_length(5);
        p.set_total_length(ip_len(20 + icmp.len()));
        p.set_identification(ident);
        p.set_flags(pnet_packet::ipv4::Ipv4Flags::DontFragment);
        p.set_ttl(64);
        p.set_next_level_protocol(IpNextHeaderProtocols::Icmp);
        p.set_source(src);
        p.set_destination(dst);
        p.set_payload(&icmp);
        let sum = pnet_packet::ipv4::checksum(&p.to_immutable());
        p.set_checksum(sum);
    }
    ethernet(eth.0, eth.1, EtherTypes::Ipv4, &ip)
}

fn ip_len(n: usize) -> u16 {
    u16::try_from(n).expect("test packets fit in an IPv4 datagram")
}

#[derive(Debug, PartialEq, Eq)]
pub struct EchoReply {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ident: u16,
    pub seq: u16,
    pub payload: Vec<u8>,
}

/// An IPv4 ICMP echo reply whose lengths and both checksums are right, or None.
pub fn parse_echo_reply(frame: &[u8]) -> Option<EchoReply> {
    parse_echo(frame, IcmpTypes::EchoReply)
}

/// The same for an echo request (same fields).
pub fn parse_echo_request(frame: &[u8]) -> Option<EchoReply> {
    parse_echo(frame, IcmpTypes::EchoRequest)
}

fn parse_echo(frame: &[u8], kind: IcmpType) -> Option<EchoReply> {
    let eth = EthernetPacket::new(frame)?;
    if eth.get_ethertype() != EtherTypes::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new(eth.payload())?;
    let hlen = usize::from(ip.get_header_length()) * 4;
    let total = usize::from(ip.get_total_length());
    if ip.get_version() != 4 || hlen < 20 || total < hlen || total > eth.payload().len() {
        return None;
    }
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Icmp {
        return None;
    }
    assert_eq!(
        ip.get_checksum(),
        pnet_packet::ipv4::checksum(&ip),
        "IPv4 header checksum of the kernel's packet"
    );
    let icmp_bytes = &eth.payload()[hlen..total];
    if icmp_bytes.len() < 8 {
        return None;
    }
    let icmp = IcmpPacket::new(icmp_bytes)?;
    if icmp.get_icmp_type() != kind {
        return None;
    }
    assert_eq!(
        icmp.get_checksum(),
        pnet_packet::icmp::checksum(&icmp),
        "ICMP checksum of the kernel's packet"
    );
    let echo = EchoReplyPacket::new(icmp_bytes)?;
    Some(EchoReply {
        eth_src: eth.get_source().octets(),
        eth_dst: eth.get_destination().octets(),
        src: ip.get_source(),
        dst: ip.get_destination(),
        ident: echo.get_identifier(),
        seq: echo.get_sequence_number(),
        payload: echo.payload().to_vec(),
    })
}

pub fn mac_of(v: &serde_json::Value) -> [u8; 6] {
    let s = v["address"].as_str().expect("ip -j link has an address");
    let bytes: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("hex MAC octet"))
        .collect();
    bytes.try_into().expect("six MAC octets")
}

pub use pnet_packet::arp::ArpOperations as ArpOps;
pub fn is_request(op: ArpOperation) -> bool {
    op == ArpOperations::Request
}
