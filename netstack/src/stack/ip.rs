//! IPv4 input: validation, local delivery (with reassembly), forwarding into the output
//! pipeline, ICMP input and the UDP stub. Transport protocols plug in at `deliver`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use super::icmp::{ErrorKind, IcmpEvent, IcmpMsg};
use super::output::{OutIp, SendError};
use super::Stack;
use crate::stats::DropReason;
use crate::wire::icmp::{self, Icmp};
use crate::wire::ipv4::{self, Datagram, PROTO_ICMP, PROTO_UDP};
use crate::wire::{udp, PacketBuf};

impl Stack {
    /// Is `dst` addressed to this node (received on `in_if`, None for loopback)?
    fn is_for_us(&self, dst: Ipv4Addr, in_if: Option<u32>) -> bool {
        if dst.is_broadcast() || self.is_local_addr(IpAddr::V4(dst)) {
            return true;
        }
        in_if
            .and_then(|i| self.iface_by_index(i))
            .is_some_and(|i| i.addrs.iter().any(|a| a.broadcast() == Some(dst)))
    }

    /// `l2_group`: the frame was sent to an Ethernet broadcast or multicast address.
    pub(super) fn ip_input(
        &mut self,
        now: Instant,
        in_if: Option<u32>,
        l2_group: bool,
        buf: &[u8],
    ) {
        self.stats.counters.ip_in += 1;
        let d = match ipv4::parse(buf) {
            Ok(d) => d,
            Err(r) => return self.stats.drop(r),
        };
        let h = d.header;
        if in_if.is_some() && (ipv4::is_martian_source(h.src) || h.dst.is_unspecified()) {
            return self.stats.drop(DropReason::IpBadAddress);
        }
        if l2_group
            && !h.dst.is_broadcast()
            && !h.dst.is_multicast()
            && !self.is_directed_broadcast(h.dst)
        {
            // RFC 1122 3.3.6: unicast datagrams in link-layer broadcasts are discarded (and
            // never forwarded or answered with ICMP errors).
            return self.stats.drop(DropReason::IpLinkBroadcast);
        }
        if self.is_for_us(h.dst, in_if) {
            return self.local_input(now, in_if, &d);
        }
        if h.dst.is_multicast() {
            // No multicast routing or groups yet.
            return self.stats.drop(DropReason::IpNotForUs);
        }
        self.forward(now, in_if, &d);
    }

    fn local_input(&mut self, now: Instant, in_if: Option<u32>, d: &Datagram<'_>) {
        if d.header.is_fragment() {
            self.stats.counters.ip_fragments_in += 1;
            let Some(whole) = self.reasm.insert(now, d, &mut self.stats) else {
                return;
            };
            self.stats.counters.ip_reassembled += 1;
            match ipv4::parse(&whole) {
                Ok(w) => self.deliver(now, in_if, &w),
                Err(r) => self.stats.drop(r),
            }
            return;
        }
        self.deliver(now, in_if, d);
    }

    /// A whole datagram for this node: dispatch on protocol.
    fn deliver(&mut self, now: Instant, in_if: Option<u32>, d: &Datagram<'_>) {
        if !self.ipsec_input_check(d) {
            return;
        }
        self.stats.counters.ip_delivered += 1;
        match d.header.proto {
            PROTO_ICMP => self.icmp_input(now, in_if, d),
            PROTO_UDP => self.udp_input(now, in_if, d),
            // TCP (smoltcp) and ESP plug in here in later issues.
            _ => {
                self.stats.drop(DropReason::IpUnknownProtocol);
                self.icmp4_error(now, d, in_if, ErrorKind::ProtocolUnreachable);
            }
        }
    }

    fn forward(&mut self, now: Instant, in_if: Option<u32>, d: &Datagram<'_>) {
        let h = d.header;
        if !self.ipsec_input_check(d) {
            return;
        }
        let Some(in_if) = in_if.filter(|_| self.sysctl.forwarding) else {
            return self.stats.drop(DropReason::IpNotForUs);
        };
        if self.is_directed_broadcast(h.dst) {
            // RFC 2644: routers do not forward directed broadcasts.
            return self.stats.drop(DropReason::IpBadAddress);
        }
        if h.ttl <= 1 {
            self.stats.drop(DropReason::IpTtlExpired);
            return self.icmp4_error(now, d, Some(in_if), ErrorKind::TtlExceeded);
        }
        let Some(hop) = self.routes.lookup(h.dst) else {
            self.stats.drop(DropReason::IpNoRoute);
            return self.icmp4_error(now, d, Some(in_if), ErrorKind::NetUnreachable);
        };
        self.stats.counters.ip_forwarded += 1;
        // The one copy of a forwarded packet: into a buffer with room for the link header.
        let mut pkt = PacketBuf::from_slice(d.bytes);
        ipv4::set_ttl(pkt.data_mut(), h.ttl - 1);
        if let Err(SendError::NeedFrag(mtu)) = self.output4(now, pkt, hop) {
            self.icmp4_error(now, d, Some(in_if), ErrorKind::NeedFrag(mtu));
        }
    }

    /// The source address this node uses towards `dst`.
    pub fn source_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.is_local_addr(IpAddr::V4(dst)) {
            return Some(dst);
        }
        let hop = self.routes.lookup(dst)?;
        self.iface_by_index(hop.ifindex)?.source_for(hop.addr)
    }

    fn icmp_input(&mut self, now: Instant, in_if: Option<u32>, d: &Datagram<'_>) {
        self.stats.counters.icmp_in += 1;
        let m = match icmp::parse(d.payload) {
            Ok(m) => m,
            Err(r) => return self.stats.drop(r),
        };
        let h = d.header;
        match m {
            Icmp::EchoRequest { ident, seq, data } => {
                self.stats.counters.icmp_echo_in += 1;
                if h.dst.is_broadcast() || !self.is_local_addr(IpAddr::V4(h.dst)) {
                    // No replies to broadcast pings (NetBSD's default).
                    return self.stats.drop(DropReason::IcmpUnhandledType);
                }
                let mut reply = PacketBuf::new();
                icmp::emit_into(&Icmp::EchoReply { ident, seq, data }, &mut reply);
                self.stats.counters.icmp_out += 1;
                self.stats.counters.icmp_echo_reply_out += 1;
                let _ = in_if;
                let _ = self.ip_output(
                    now,
                    OutIp {
                        src: Some(IpAddr::V4(h.dst)),
                        dst: IpAddr::V4(h.src),
                        proto: PROTO_ICMP,
                        ttl: None,
                        df: false,
                        scope: None,
                        payload: reply,
                    },
                );
            }
            Icmp::EchoReply { .. } | Icmp::Unreachable { .. } | Icmp::TimeExceeded { .. } => {
                let ev = IcmpEvent {
                    src: IpAddr::V4(h.src),
                    dst: IpAddr::V4(h.dst),
                    ttl: h.ttl,
                    len: d.payload.len(),
                    msg: IcmpMsg::V4(m),
                };
                if !self.offer_icmp(now, &ev) {
                    self.stats.drop(DropReason::IcmpNoListener);
                }
            }
            Icmp::Other { .. } => self.stats.drop(DropReason::IcmpUnhandledType),
        }
    }

    fn udp_input(&mut self, now: Instant, in_if: Option<u32>, d: &Datagram<'_>) {
        self.stats.counters.udp_in += 1;
        let h = d.header;
        if let Err(r) = udp::parse(h.src, h.dst, d.payload) {
            return self.stats.drop(r);
        }
        // No sockets yet (transport issue): every port is closed.
        self.stats.drop(DropReason::UdpNoPort);
        if !h.dst.is_broadcast() && self.is_local_addr(IpAddr::V4(h.dst)) {
            self.icmp4_error(now, d, in_if, ErrorKind::PortUnreachable);
        }
    }

    /// IPsec input policy: a packet that an inbound `require` policy covers but that arrived
    /// in clear is dropped here, before delivery or forwarding (the IPsec issue). No SPD yet.
    fn ipsec_input_check(&mut self, _d: &Datagram<'_>) -> bool {
        true
    }

    pub(super) fn is_directed_broadcast(&self, a: Ipv4Addr) -> bool {
        self.ifaces
            .iter()
            .any(|i| i.addrs.iter().any(|x| x.broadcast() == Some(a)))
    }
}
