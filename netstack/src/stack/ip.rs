//! IPv4: input validation, local delivery (with reassembly), forwarding, output (with
//! fragmentation), ICMP and the UDP stub. Transport protocols plug in at `deliver`.

use std::net::Ipv4Addr;
use std::time::Instant;

use super::Stack;
use crate::stats::DropReason;
use crate::wire::icmp::{self, Icmp};
use crate::wire::ipv4::{self, Datagram, Emit, PROTO_ICMP, PROTO_UDP};
use crate::wire::udp;

/// An ICMP message handed to running commands (ping, traceroute).
#[derive(Debug)]
pub struct IcmpEvent<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// Length of the ICMP message (what ping prints as "N bytes from").
    pub len: usize,
    pub msg: Icmp<'a>,
}

/// A datagram the node originates.
#[derive(Clone, Debug)]
pub struct OutIp {
    /// None: the address of the outgoing interface.
    pub src: Option<Ipv4Addr>,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// None: `net.inet.ip.ttl`.
    pub ttl: Option<u8>,
    pub df: bool,
    pub payload: Vec<u8>,
}

/// ICMP errors the stack generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NetUnreachable,
    HostUnreachable,
    ProtocolUnreachable,
    PortUnreachable,
    NeedFrag(u16),
    TtlExceeded,
    ReassemblyTimeout,
}

impl ErrorKind {
    fn encode<'a>(self, quoted: &'a [u8]) -> Icmp<'a> {
        let un = |code, mtu| Icmp::Unreachable { code, mtu, quoted };
        match self {
            ErrorKind::NetUnreachable => un(icmp::UNREACH_NET, 0),
            ErrorKind::HostUnreachable => un(icmp::UNREACH_HOST, 0),
            ErrorKind::ProtocolUnreachable => un(icmp::UNREACH_PROTOCOL, 0),
            ErrorKind::PortUnreachable => un(icmp::UNREACH_PORT, 0),
            ErrorKind::NeedFrag(mtu) => un(icmp::UNREACH_NEEDFRAG, mtu),
            ErrorKind::TtlExceeded => Icmp::TimeExceeded {
                code: icmp::EXCEEDED_TTL,
                quoted,
            },
            ErrorKind::ReassemblyTimeout => Icmp::TimeExceeded {
                code: icmp::EXCEEDED_REASSEMBLY,
                quoted,
            },
        }
    }
}

/// Why a locally originated datagram could not be sent (ping prints these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("No route to host")]
    NoRoute,
    #[error("Message too long")]
    TooBig,
    #[error("Can't assign requested address")]
    NoSource,
    #[error("Network is down")]
    Down,
}

impl Stack {
    /// Is `dst` addressed to this node (received on `in_if`, None for loopback)?
    fn is_for_us(&self, dst: Ipv4Addr, in_if: Option<u32>) -> bool {
        if dst.is_broadcast() || self.is_local_addr(dst) {
            return true;
        }
        in_if.and_then(|i| self.iface_by_index(i)).is_some_and(|i| {
            i.addrs
                .iter()
                .any(|a| a.broadcast() == dst && a.prefix < 31)
        })
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
        self.stats.counters.ip_delivered += 1;
        match d.header.proto {
            PROTO_ICMP => self.icmp_input(now, in_if, d),
            PROTO_UDP => self.udp_input(now, in_if, d),
            // TCP (smoltcp) and ESP plug in here in later issues.
            _ => {
                self.stats.drop(DropReason::IpUnknownProtocol);
                self.icmp_error(now, d, in_if, ErrorKind::ProtocolUnreachable);
            }
        }
    }

    fn forward(&mut self, now: Instant, in_if: Option<u32>, d: &Datagram<'_>) {
        let h = d.header;
        if !self.sysctl.forwarding || in_if.is_none() {
            return self.stats.drop(DropReason::IpNotForUs);
        }
        if self.is_directed_broadcast(h.dst) {
            // RFC 2644: routers do not forward directed broadcasts.
            return self.stats.drop(DropReason::IpBadAddress);
        }
        if h.ttl <= 1 {
            self.stats.drop(DropReason::IpTtlExpired);
            return self.icmp_error(now, d, in_if, ErrorKind::TtlExceeded);
        }
        let Some(hop) = self.routes.lookup(h.dst, &self.ifaces) else {
            self.stats.drop(DropReason::IpNoRoute);
            return self.icmp_error(now, d, in_if, ErrorKind::NetUnreachable);
        };
        let mtu = self.iface_by_index(hop.ifindex).map_or(0, |i| i.mtu);
        if h.total_len > mtu && h.df {
            self.stats.drop(DropReason::IpNeedFrag);
            return self.icmp_error(now, d, in_if, ErrorKind::NeedFrag(mtu as u16));
        }
        self.stats.counters.ip_forwarded += 1;
        let ttl = h.ttl - 1;
        let packets = if h.total_len > mtu {
            self.stats.counters.ip_fragmented += 1;
            let f = ipv4::fragment(d, ttl, mtu);
            self.stats.counters.ip_fragments_out += f.len() as u64;
            f
        } else {
            vec![ipv4::emit(
                &Emit {
                    ttl,
                    ..Emit::from_header(&h)
                },
                &d.raw_header[ipv4::MIN_HEADER..],
                d.payload,
            )]
        };
        for p in packets {
            self.link_output(now, hop.ifindex, hop.addr, p);
        }
    }

    /// The source address this node uses towards `dst`.
    pub fn source_for(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.is_local_addr(dst) {
            return Some(dst);
        }
        let hop = self.routes.lookup(dst, &self.ifaces)?;
        self.iface_by_index(hop.ifindex)?.source_for(hop.addr)
    }

    /// Sends a datagram this node originates.
    pub fn ip_output(&mut self, now: Instant, p: OutIp) -> Result<(), SendError> {
        let local = self.is_local_addr(p.dst);
        let hop = if local {
            None
        } else {
            match self.routes.lookup(p.dst, &self.ifaces) {
                Some(h) => Some(h),
                None => {
                    self.stats.drop(DropReason::IpNoRoute);
                    return Err(SendError::NoRoute);
                }
            }
        };
        let src = match (p.src, &hop) {
            (Some(s), _) => s,
            (None, None) => p.dst,
            (None, Some(hop)) => self
                .iface_by_index(hop.ifindex)
                .and_then(|i| i.source_for(hop.addr))
                .ok_or(SendError::NoSource)?,
        };
        if p.payload.len() + ipv4::MIN_HEADER > ipv4::MAX_DATAGRAM {
            return Err(SendError::TooBig);
        }
        self.next_ip_id = self.next_ip_id.wrapping_add(1);
        let e = Emit {
            tos: 0,
            id: self.next_ip_id,
            df: p.df,
            mf: false,
            frag_offset: 0,
            ttl: p.ttl.unwrap_or(self.sysctl.ttl),
            proto: p.proto,
            src,
            dst: p.dst,
        };
        let bytes = ipv4::emit(&e, &[], &p.payload);
        self.stats.counters.ip_out += 1;
        let Some(hop) = hop else {
            self.loopback.push_back(bytes);
            return Ok(());
        };
        let Some(iface) = self.iface_by_index(hop.ifindex) else {
            return Err(SendError::NoRoute);
        };
        if !iface.running() {
            self.stats.drop(DropReason::IfDown);
            return Err(SendError::Down);
        }
        let mtu = iface.mtu;
        if bytes.len() <= mtu {
            self.link_output(now, hop.ifindex, hop.addr, bytes);
            return Ok(());
        }
        if p.df {
            self.stats.drop(DropReason::IpNeedFrag);
            return Err(SendError::TooBig);
        }
        // Parsing what we just built cannot fail.
        let frags = match ipv4::parse(&bytes) {
            Ok(d) => ipv4::fragment(&d, e.ttl, mtu),
            Err(_) => return Err(SendError::TooBig),
        };
        self.stats.counters.ip_fragmented += 1;
        self.stats.counters.ip_fragments_out += frags.len() as u64;
        for f in frags {
            self.link_output(now, hop.ifindex, hop.addr, f);
        }
        Ok(())
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
                if h.dst.is_broadcast() || !self.is_local_addr(h.dst) {
                    // No replies to broadcast pings (NetBSD's default).
                    return self.stats.drop(DropReason::IcmpUnhandledType);
                }
                let reply = icmp::emit(&Icmp::EchoReply { ident, seq, data });
                self.stats.counters.icmp_out += 1;
                self.stats.counters.icmp_echo_reply_out += 1;
                let _ = in_if;
                let _ = self.ip_output(
                    now,
                    OutIp {
                        src: Some(h.dst),
                        dst: h.src,
                        proto: PROTO_ICMP,
                        ttl: None,
                        df: false,
                        payload: reply,
                    },
                );
            }
            Icmp::EchoReply { .. } | Icmp::Unreachable { .. } | Icmp::TimeExceeded { .. } => {
                let ev = super::IcmpEvent {
                    src: h.src,
                    dst: h.dst,
                    ttl: h.ttl,
                    len: d.payload.len(),
                    msg: m,
                };
                let mut taken = false;
                if !self.apps_busy {
                    for app in &mut self.apps {
                        if app.on_icmp(now, &ev) {
                            taken = true;
                            break;
                        }
                    }
                }
                if !taken {
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
        if !h.dst.is_broadcast() && self.is_local_addr(h.dst) {
            self.icmp_error(now, d, in_if, ErrorKind::PortUnreachable);
        }
    }

    /// Sends an ICMP error about a raw datagram (from queues: ARP failures, reassembly).
    pub(super) fn icmp_error_about(
        &mut self,
        now: Instant,
        raw: &[u8],
        in_if: Option<u32>,
        kind: ErrorKind,
    ) {
        // Queued datagrams may be cut (reassembly keeps header + 8): parse leniently.
        let Some(q) = ipv4::parse_quoted(raw) else {
            return;
        };
        let hl = (raw[0] & 0x0f) as usize * 4;
        let flags = u16::from_be_bytes([raw[6], raw[7]]);
        let h = ipv4::Header {
            header_len: hl,
            tos: 0,
            total_len: raw.len(),
            id: q.id,
            df: flags & 0x4000 != 0,
            mf: flags & 0x2000 != 0,
            frag_offset: (flags & 0x1fff) as usize * 8,
            ttl: 0,
            proto: q.proto,
            src: q.src,
            dst: q.dst,
        };
        let d = Datagram {
            header: h,
            raw_header: &raw[..hl],
            payload: &raw[hl..],
        };
        self.icmp_error(now, &d, in_if, kind);
    }

    /// Sends an ICMP error about `d`, unless RFC 1122 forbids it or the rate limit says no.
    fn icmp_error(&mut self, now: Instant, d: &Datagram<'_>, in_if: Option<u32>, kind: ErrorKind) {
        let h = d.header;
        if h.proto == PROTO_ICMP {
            let ty = d.payload.first().copied();
            if ty.is_none_or(icmp::is_error_type) {
                self.stats.counters.icmp_error_about_error += 1;
                return;
            }
        }
        if h.frag_offset != 0
            || h.dst.is_broadcast()
            || h.dst.is_multicast()
            || ipv4::is_martian_source(h.src)
            || self.is_directed_broadcast(h.dst)
        {
            self.stats.counters.icmp_error_suppressed += 1;
            return;
        }
        if !self.icmp_bucket.take(now, self.sysctl.icmp_errppslimit) {
            self.stats.counters.icmp_rate_limited += 1;
            return;
        }
        // Quote the header and the first 8 payload bytes (RFC 792).
        let mut quoted = Vec::with_capacity(h.header_len + 8);
        quoted.extend_from_slice(d.raw_header);
        quoted.extend_from_slice(&d.payload[..d.payload.len().min(8)]);
        let msg = icmp::emit(&kind.encode(&quoted));
        // Answer from the address the offending datagram arrived on, so traceroute shows the
        // near side of each router.
        let src = in_if
            .and_then(|i| self.iface_by_index(i))
            .and_then(|i| i.source_for(h.src))
            .or_else(|| self.source_for(h.src));
        self.stats.counters.icmp_out += 1;
        self.stats.counters.icmp_errors_out += 1;
        let _ = self.ip_output(
            now,
            OutIp {
                src,
                dst: h.src,
                proto: PROTO_ICMP,
                ttl: None,
                df: false,
                payload: msg,
            },
        );
    }

    fn is_directed_broadcast(&self, a: Ipv4Addr) -> bool {
        self.ifaces
            .iter()
            .any(|i| i.addrs.iter().any(|x| x.prefix < 31 && x.broadcast() == a))
    }
}
