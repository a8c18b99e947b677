//! A stand-in for a NetBSD rump kernel with one shmif interface and one IPv4 address. It attaches
//! with `shmif::netbsd_emu`, so it drives the bus as NetBSD would, and runs just enough of a
//! stack on top for tests: it answers ARP requests and ICMP echo requests for its address, learns
//! ARP entries from what it hears, and pings on command.
//!
//! Stdout: `ready <mac>` once attached, then one line per answer to a command. Stdin, one command
//! a line (end of input is `quit`):
//!
//! ```text
//! ping <ip> <count>   ARP if needed, then <count> echo requests 100 ms apart;
//!                     prints `pong <seq>` per reply, then `ping-done <sent> <received>`
//! send-raw <hex>      sends one frame; prints `sent <len>`
//! hold-lock <ms>      holds the bus lock; prints `released <lock word at release>`
//! stats               prints one JSON line of counters
//! quit
//! ```
//!
//! A command that cannot be run prints `error <why>` and the peer carries on.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmp::{self, IcmpPacket, IcmpTypes, MutableIcmpPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
use pnet_packet::Packet;
use shmif::netbsd_emu::{NetbsdIf, Padding};

#[derive(Parser)]
struct Cli {
    /// Bus file (created if missing; truncated to 1 MiB, as NetBSD does).
    #[arg(long)]
    bus: PathBuf,
    /// Address and prefix length, e.g. 10.0.0.9/24.
    #[arg(long)]
    ip: String,
    /// Record header padding: random, zero, ones, count, or a number (decimal or 0x hex).
    #[arg(long, default_value = "random", value_parser = shmlab_tests::parse_padding)]
    padding: Padding,
}

const ETH_HDR: usize = 14;
const ARP_LEN: usize = 28;
const IP_HDR: usize = 20;
const ICMP_ECHO_HDR: usize = 8;
/// Payload of our echo requests: the classic 56 bytes of `ping`.
const PING_PAYLOAD: usize = 56;
const PING_INTERVAL: Duration = Duration::from_millis(100);
/// How long to wait for replies after the last request.
const PING_LINGER: Duration = Duration::from_secs(1);
const ARP_RETRY: Duration = Duration::from_secs(1);
const ARP_TRIES: u32 = 3;
/// Longest wait for bus traffic before looking at stdin again.
const POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Stats {
    frames_received: u64,
    arp_requests_answered: u64,
    echo_requests_answered: u64,
    echo_replies_received: u64,
}

struct Ping {
    target: Ipv4Addr,
    count: u16,
    sent: u16,
    received: u16,
    next_at: Instant,
    arp_tries: u32,
    /// Set once every request is out.
    give_up_at: Option<Instant>,
}

struct Peer {
    nif: NetbsdIf,
    ip: Ipv4Addr,
    prefix: u8,
    arp: HashMap<Ipv4Addr, [u8; 6]>,
    stats: Stats,
    ping: Option<Ping>,
    ping_id: u16,
    ip_id: u16,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("netbsd-peer: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let (ip, prefix) = parse_cidr(&cli.ip)?;
    let mut nif = NetbsdIf::attach(&cli.bus)
        .with_context(|| format!("attach to bus {}", cli.bus.display()))?;
    nif.set_padding(cli.padding);
    println!("ready {}", fmt_mac(nif.mac()));

    let commands = stdin_lines();
    let mut peer = Peer {
        nif,
        ip,
        prefix,
        arp: HashMap::new(),
        stats: Stats::default(),
        ping: None,
        ping_id: std::process::id() as u16,
        ip_id: 1,
    };
    loop {
        match commands.try_recv() {
            Ok(line) => {
                match peer.command(line.trim()) {
                    Ok(true) => {}
                    Ok(false) => return Ok(()),
                    // A bad command is the caller's mistake, not the end of the peer.
                    Err(e) => {
                        eprintln!("netbsd-peer: {e:#}");
                        println!("error {e}");
                    }
                }
                continue;
            }
            Err(TryRecvError::Disconnected) => return Ok(()),
            Err(TryRecvError::Empty) => {}
        }
        let wait = peer.ping_tick()?;
        if let Some(frame) = peer.nif.recv(wait.min(POLL)) {
            peer.stats.frames_received += 1;
            peer.input(&frame)?;
        }
    }
}

/// Stdin lines on a channel, so the receive loop never blocks on the terminal.
fn stdin_lines() -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Peer {
    /// Runs one stdin command; false on `quit`.
    fn command(&mut self, line: &str) -> Result<bool> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["quit"] => return Ok(false),
            ["stats"] => {
                let s = &self.stats;
                println!(
                    "{{\"frames_received\":{},\"arp_requests_answered\":{},\"echo_requests_answered\":{},\"echo_replies_received\":{}}}",
                    s.frames_received, s.arp_requests_answered, s.echo_requests_answered,
                    s.echo_replies_received
                );
            }
            ["hold-lock", ms] => {
                let ms: u64 = ms.parse().context("hold-lock takes milliseconds")?;
                let word = self.nif.hold_lock_for(Duration::from_millis(ms));
                println!("released {word}");
            }
            ["send-raw", hex] => {
                let frame = parse_hex(hex)?;
                self.nif.send(&[&frame])?;
                println!("sent {}", frame.len());
            }
            ["ping", target, count] => {
                let target: Ipv4Addr = target.parse().context("ping: bad address")?;
                let count: u16 = count.parse().context("ping: bad count")?;
                if !self.on_link(target) {
                    eprintln!(
                        "netbsd-peer: {target} is not on {}/{}",
                        self.ip, self.prefix
                    );
                    println!("ping-done 0 0");
                } else {
                    self.ping = Some(Ping {
                        target,
                        count,
                        sent: 0,
                        received: 0,
                        next_at: Instant::now(),
                        arp_tries: 0,
                        give_up_at: None,
                    });
                }
            }
            _ => bail!("unknown command {line:?}"),
        }
        Ok(true)
    }

    fn on_link(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
        u32::from(addr) & mask == u32::from(self.ip) & mask
    }

    /// Sends whatever the running ping owes now; returns how long until it next needs to act.
    fn ping_tick(&mut self) -> Result<Duration> {
        enum Due {
            Wait(Duration),
            Done(u16, u16),
            NoArpReply(Ipv4Addr),
            ArpRequest(Ipv4Addr),
            Echo([u8; 6], Ipv4Addr, u16),
        }
        let now = Instant::now();
        let due = {
            let Some(p) = self.ping.as_mut() else {
                return Ok(POLL);
            };
            if p.received == p.count || p.give_up_at.is_some_and(|t| now >= t) {
                Due::Done(p.sent, p.received)
            } else if now < p.next_at {
                Due::Wait(p.next_at - now)
            } else {
                match self.arp.get(&p.target).copied() {
                    None if p.arp_tries == ARP_TRIES => Due::NoArpReply(p.target),
                    None => {
                        p.arp_tries += 1;
                        p.next_at = now + ARP_RETRY;
                        Due::ArpRequest(p.target)
                    }
                    // All requests are out: only replies or the linger time end it.
                    Some(_) if p.sent == p.count => {
                        let t = p.give_up_at.unwrap_or(now);
                        p.next_at = t;
                        Due::Wait(t.saturating_duration_since(now))
                    }
                    Some(mac) => {
                        let seq = p.sent;
                        p.sent += 1;
                        p.next_at = now + PING_INTERVAL;
                        if p.sent == p.count {
                            p.give_up_at = Some(now + PING_LINGER);
                        }
                        Due::Echo(mac, p.target, seq)
                    }
                }
            }
        };
        match due {
            Due::Wait(d) => return Ok(d),
            Due::Done(sent, received) => {
                println!("ping-done {sent} {received}");
                self.ping = None;
            }
            Due::NoArpReply(target) => {
                eprintln!("netbsd-peer: no ARP reply from {target}");
                println!("ping-done 0 0");
                self.ping = None;
            }
            Due::ArpRequest(target) => {
                let req = self.arp_frame(ArpOperations::Request, [0xff; 6], [0; 6], target);
                self.nif.send(&[&req])?;
            }
            Due::Echo(mac, target, seq) => {
                let payload: Vec<u8> = (0..PING_PAYLOAD as u8).collect();
                let id = self.ping_id;
                let req = self.icmp_frame(mac, target, IcmpTypes::EchoRequest, id, seq, &payload);
                self.nif.send(&[&req])?;
            }
        }
        Ok(POLL)
    }

    /// Handles one frame the interface passed up.
    fn input(&mut self, frame: &[u8]) -> Result<()> {
        let Some(eth) = EthernetPacket::new(frame) else {
            return Ok(());
        };
        match eth.get_ethertype() {
            EtherTypes::Arp => self.arp_input(eth.payload()),
            EtherTypes::Ipv4 => self.ipv4_input(eth.get_source().octets(), eth.payload()),
            _ => Ok(()),
        }
    }

    fn arp_input(&mut self, payload: &[u8]) -> Result<()> {
        if payload.len() < ARP_LEN {
            return Ok(());
        }
        let Some(arp) = ArpPacket::new(payload) else {
            return Ok(());
        };
        if arp.get_hardware_type() != ArpHardwareTypes::Ethernet
            || arp.get_protocol_type() != EtherTypes::Ipv4
            || arp.get_hw_addr_len() != 6
            || arp.get_proto_addr_len() != 4
        {
            return Ok(());
        }
        let (sender_ip, sender_mac) = (
            arp.get_sender_proto_addr(),
            arp.get_sender_hw_addr().octets(),
        );
        if !sender_ip.is_unspecified() && sender_ip != self.ip {
            self.arp.insert(sender_ip, sender_mac);
            // A ping waiting for this answer goes on at once instead of at its next ARP retry.
            if let Some(p) = self.ping.as_mut() {
                if p.target == sender_ip && p.sent == 0 {
                    p.next_at = Instant::now();
                }
            }
        }
        if arp.get_operation() == ArpOperations::Request && arp.get_target_proto_addr() == self.ip {
            let reply = self.arp_frame(ArpOperations::Reply, sender_mac, sender_mac, sender_ip);
            self.nif.send(&[&reply])?;
            self.stats.arp_requests_answered += 1;
        }
        Ok(())
    }

    fn ipv4_input(&mut self, src_mac: [u8; 6], payload: &[u8]) -> Result<()> {
        let Some(ip) = Ipv4Packet::new(payload) else {
            return Ok(());
        };
        let hdr_len = ip.get_header_length() as usize * 4;
        let total = ip.get_total_length() as usize;
        if ip.get_version() != 4
            || hdr_len < IP_HDR
            || total < hdr_len
            || total > payload.len()
            || ipv4::checksum(&ip) != ip.get_checksum()
            || ip.get_destination() != self.ip
            || ip.get_next_level_protocol() != IpNextHeaderProtocols::Icmp
            || ip.get_fragment_offset() != 0
            || ip.get_flags() & 1 != 0
        {
            return Ok(());
        }
        let body = &payload[hdr_len..total];
        let Some(icmp) = IcmpPacket::new(body) else {
            return Ok(());
        };
        if body.len() < ICMP_ECHO_HDR || icmp::checksum(&icmp) != icmp.get_checksum() {
            return Ok(());
        }
        let id = u16::from_be_bytes([body[4], body[5]]);
        let seq = u16::from_be_bytes([body[6], body[7]]);
        let peer_ip = ip.get_source();
        match icmp.get_icmp_type() {
            IcmpTypes::EchoRequest if icmp.get_icmp_code().0 == 0 => {
                let reply = self.icmp_frame(
                    src_mac,
                    peer_ip,
                    IcmpTypes::EchoReply,
                    id,
                    seq,
                    &body[ICMP_ECHO_HDR..],
                );
                self.nif.send(&[&reply])?;
                self.stats.echo_requests_answered += 1;
            }
            IcmpTypes::EchoReply => {
                self.stats.echo_replies_received += 1;
                if let Some(p) = self.ping.as_mut() {
                    if id == self.ping_id && peer_ip == p.target {
                        p.received += 1;
                        println!("pong {seq}");
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An ARP request or reply from us: Ethernet to `eth_dst`, asking about or answering
    /// `target_ip` (whose MAC is `target_mac`, zero in a request).
    fn arp_frame(
        &self,
        op: pnet_packet::arp::ArpOperation,
        eth_dst: [u8; 6],
        target_mac: [u8; 6],
        target_ip: Ipv4Addr,
    ) -> Vec<u8> {
        let mut buf = vec![0u8; ETH_HDR + ARP_LEN];
        let mut eth = MutableEthernetPacket::new(&mut buf).expect("sized above");
        eth.set_destination(eth_dst.into());
        eth.set_source(self.nif.mac().into());
        eth.set_ethertype(EtherTypes::Arp);
        let mut arp = MutableArpPacket::new(&mut buf[ETH_HDR..]).expect("sized above");
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(op);
        arp.set_sender_hw_addr(self.nif.mac().into());
        arp.set_sender_proto_addr(self.ip);
        arp.set_target_hw_addr(target_mac.into());
        arp.set_target_proto_addr(target_ip);
        buf
    }

    /// An ICMP echo request or reply from us to `dst_ip` via `dst_mac`.
    fn icmp_frame(
        &mut self,
        dst_mac: [u8; 6],
        dst_ip: Ipv4Addr,
        kind: icmp::IcmpType,
        id: u16,
        seq: u16,
        data: &[u8],
    ) -> Vec<u8> {
        let icmp_len = ICMP_ECHO_HDR + data.len();
        let mut buf = vec![0u8; ETH_HDR + IP_HDR + icmp_len];
        let mut eth = MutableEthernetPacket::new(&mut buf).expect("sized above");
        eth.set_destination(dst_mac.into());
        eth.set_source(self.nif.mac().into());
        eth.set_ethertype(EtherTypes::Ipv4);

        let icmp_buf = &mut buf[ETH_HDR + IP_HDR..];
        icmp_buf[4..6].copy_from_slice(&id.to_be_bytes());
        icmp_buf[6..8].copy_from_slice(&seq.to_be_bytes());
        icmp_buf[ICMP_ECHO_HDR..].copy_from_slice(data);
        let mut icmp = MutableIcmpPacket::new(icmp_buf).expect("sized above");
        icmp.set_icmp_type(kind);
        icmp.set_icmp_code(icmp::IcmpCode(0));
        let sum = icmp::checksum(&icmp.to_immutable());
        icmp.set_checksum(sum);

        let mut ip = MutableIpv4Packet::new(&mut buf[ETH_HDR..]).expect("sized above");
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length((IP_HDR + icmp_len) as u16);
        ip.set_identification(self.ip_id);
        ip.set_ttl(64);
        ip.set_next_level_protocol(IpNextHeaderProtocols::Icmp);
        ip.set_source(self.ip);
        ip.set_destination(dst_ip);
        let sum = ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(sum);
        self.ip_id = self.ip_id.wrapping_add(1);
        buf
    }
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8)> {
    let (addr, len) = s
        .split_once('/')
        .with_context(|| format!("--ip {s:?}: want ADDRESS/PREFIXLEN"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .with_context(|| format!("--ip {s:?}: bad address"))?;
    let len: u8 = len
        .parse()
        .with_context(|| format!("--ip {s:?}: bad prefix length"))?;
    if len > 32 {
        bail!("--ip {s:?}: prefix length above 32");
    }
    Ok((addr, len))
}

fn parse_hex(s: &str) -> Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        bail!("send-raw: odd number of hex digits");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .with_context(|| format!("send-raw: bad hex at {i}"))
        })
        .collect()
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}
