//! IPv6 input (RFC 8200): validation, extension headers, local delivery with reassembly,
//! forwarding with hop-limit decrement and Packet Too Big, and the IPv6 side of the output
//! pipeline (source selection, path MTU, fragmentation at the source, NDP resolution).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::icmp::{ErrorKind6, IcmpEvent, IcmpMsg};
use super::output::{Origin, OutIp, SendError};
use super::reasm::Fragment6;
use super::route::NextHop;
use super::Stack;
use crate::stats::DropReason;
use crate::wire::ether::ETHERTYPE_IPV6;
use crate::wire::icmpv6::{self, Icmpv6};
use crate::wire::ipv6::{self, EmitHeader, Packet, Walk};
use crate::wire::{Mac, PacketBuf};

/// RFC 8201: a learnt path MTU is tried again after at least 5 minutes; NetBSD uses 10.
pub const PMTU_EXPIRY: Duration = Duration::from_secs(600);

/// Path MTUs learnt from Packet Too Big messages, per destination.
#[derive(Debug, Default)]
pub struct PathMtu {
    entries: HashMap<Ipv6Addr, (usize, Instant)>,
}

impl PathMtu {
    /// What a Packet Too Big told us about `dst` (never below the IPv6 minimum).
    pub fn learn(&mut self, now: Instant, dst: Ipv6Addr, mtu: usize) {
        let mtu = mtu.max(ipv6::MIN_MTU);
        // Bounded: a flood of forged PTBs for random destinations cannot grow it without end.
        if self.entries.len() >= 4096 && !self.entries.contains_key(&dst) {
            self.entries.retain(|_, (_, exp)| *exp > now);
            if self.entries.len() >= 4096 {
                return;
            }
        }
        self.entries.insert(dst, (mtu, now + PMTU_EXPIRY));
    }

    pub fn get(&self, now: Instant, dst: Ipv6Addr) -> Option<usize> {
        self.entries
            .get(&dst)
            .filter(|(_, exp)| *exp > now)
            .map(|(m, _)| *m)
    }

    /// Every live entry (`route get -inet6` shows the destination's).
    pub fn entries(&self) -> impl Iterator<Item = (Ipv6Addr, usize)> + '_ {
        self.entries.iter().map(|(a, (m, _))| (*a, *m))
    }
}

impl Stack {
    /// Whether `dst` is addressed to this node on `in_if`: one of its usable addresses, or a
    /// multicast group the interface joined.
    fn is_for_us6(&self, dst: Ipv6Addr, in_if: Option<u32>) -> bool {
        if dst.is_multicast() {
            return in_if
                .and_then(|i| self.iface_by_index(i))
                .is_some_and(|i| i.in_group(dst, self.sysctl.forwarding6));
        }
        self.is_local_addr(IpAddr::V6(dst))
    }

    /// `l2_group`: the frame was sent to an Ethernet multicast address.
    pub(super) fn ip6_input(
        &mut self,
        now: Instant,
        in_if: Option<u32>,
        l2_group: bool,
        buf: &[u8],
    ) {
        self.stats.counters.ip6_in += 1;
        let p = match ipv6::parse(buf) {
            Ok(p) => p,
            Err(r) => return self.stats.drop(r),
        };
        let h = p.header;
        if in_if.is_some() && (h.src.is_loopback() || h.dst.is_loopback() || h.dst.is_unspecified())
        {
            return self.stats.drop(DropReason::Ip6BadAddress);
        }
        if l2_group && !h.dst.is_multicast() {
            // Unicast in a link-layer group frame: never ours to answer (RFC 4861 7.1 spirit).
            return self.stats.drop(DropReason::Ip6LinkMulticast);
        }
        if self.is_for_us6(h.dst, in_if) || self.tentative_target(&p, in_if) {
            return self.local_input6(now, in_if, &p);
        }
        if h.dst.is_multicast() {
            return self.stats.drop(DropReason::Ip6NotForUs);
        }
        self.forward6(now, in_if, &p);
    }

    /// NDP for one of our tentative addresses (DAD) arrives addressed to that address's
    /// solicited-node group, which `is_for_us6` covers; this covers a unicast NS or NA sent to
    /// the tentative address itself, which must reach DAD too (RFC 4862 5.4.3).
    fn tentative_target(&self, p: &Packet<'_>, in_if: Option<u32>) -> bool {
        p.header.next_header == ipv6::ICMPV6
            && in_if.and_then(|i| self.iface_by_index(i)).is_some_and(|i| {
                i.addrs
                    .iter()
                    .any(|a| a.flags.tentative && a.addr == IpAddr::V6(p.header.dst))
            })
    }

    fn local_input6(&mut self, now: Instant, in_if: Option<u32>, p: &Packet<'_>) {
        let walk = match ipv6::walk(p) {
            Ok(w) => w,
            Err(e) => return self.ext_header_error(now, in_if, p, e),
        };
        if let Some(frag) = walk.fragment {
            self.stats.counters.ip6_fragments_in += 1;
            // The unfragmentable part as the whole packet will have it: the header that named
            // the fragment header names what follows it instead.
            let mut unfragmentable = p.raw[..frag.unfragmentable_len].to_vec();
            if let Some(b) = unfragmentable.get_mut(frag.next_header_at) {
                *b = frag.header.next_header;
            }
            let piece = Fragment6 {
                src: p.header.src,
                dst: p.header.dst,
                id: frag.header.id,
                offset: frag.header.offset,
                more: frag.header.more,
                unfragmentable: &unfragmentable,
                data: walk.payload,
            };
            let Some(whole) = self.reasm6.insert(now, &piece, &mut self.stats) else {
                return;
            };
            self.stats.counters.ip6_reassembled += 1;
            let Ok(w) = ipv6::parse(&whole) else {
                return self.stats.drop(DropReason::InternalError);
            };
            match ipv6::walk(&w) {
                Ok(walk) => self.deliver6(now, in_if, &w, &walk),
                Err(e) => self.ext_header_error(now, in_if, &w, e),
            }
            return;
        }
        self.deliver6(now, in_if, p, &walk);
    }

    fn ext_header_error(
        &mut self,
        now: Instant,
        in_if: Option<u32>,
        p: &Packet<'_>,
        e: ipv6::ExtError,
    ) {
        match e {
            ipv6::ExtError::Drop(r) => self.stats.drop(r),
            ipv6::ExtError::ParamProblem {
                reason,
                code,
                pointer,
                multicast_ok,
            } => {
                self.stats.drop(reason);
                let kind = ErrorKind6::ParamProblem { code, pointer };
                self.icmp6_error(now, p, in_if, kind, multicast_ok);
            }
        }
    }

    /// A whole packet for this node: dispatch on the upper-layer protocol.
    fn deliver6(&mut self, now: Instant, in_if: Option<u32>, p: &Packet<'_>, w: &Walk<'_>) {
        if !self.ipsec_input_check6(p) {
            return;
        }
        self.stats.counters.ip6_delivered += 1;
        match w.upper {
            ipv6::ICMPV6 => self.icmp6_input(now, in_if, p, w.payload),
            ipv6::NONE => self.stats.drop(DropReason::Ip6NoNextHeader),
            ipv6::UDP => {
                self.stats.counters.udp_in += 1;
                self.stats.drop(DropReason::UdpNoPort);
                if !p.header.dst.is_multicast() {
                    self.icmp6_error(now, p, in_if, ErrorKind6::PortUnreachable, false);
                }
            }
            // TCP (smoltcp) and ESP/AH plug in here in later issues.
            _ => {
                self.stats.drop(DropReason::Ip6UnknownNextHeader);
                let kind = ErrorKind6::ParamProblem {
                    code: ipv6::PARAM_UNRECOGNIZED_NEXT_HEADER,
                    pointer: w.upper_at as u32,
                };
                self.icmp6_error(now, p, in_if, kind, false);
            }
        }
    }

    /// IPsec input policy for IPv6 (the IPsec issue). No SPD yet.
    fn ipsec_input_check6(&mut self, _p: &Packet<'_>) -> bool {
        true
    }

    fn forward6(&mut self, now: Instant, in_if: Option<u32>, p: &Packet<'_>) {
        let h = p.header;
        let Some(in_if) = in_if.filter(|_| self.sysctl.forwarding6) else {
            return self.stats.drop(DropReason::Ip6NotForUs);
        };
        if !self.ipsec_input_check6(p) {
            return;
        }
        if ipv6::is_link_local(h.dst) {
            return self.stats.drop(DropReason::Ip6NotForUs);
        }
        if ipv6::is_link_local(h.src) {
            // RFC 4443 3.1: beyond scope of source address.
            self.stats.drop(DropReason::Ip6BeyondScope);
            return self.icmp6_error(now, p, Some(in_if), ErrorKind6::BeyondScope, false);
        }
        if h.hop_limit <= 1 {
            self.stats.drop(DropReason::Ip6HopLimitExceeded);
            return self.icmp6_error(now, p, Some(in_if), ErrorKind6::HopLimitExceeded, false);
        }
        let Some(hop) = self.routes6.lookup(h.dst) else {
            self.stats.drop(DropReason::Ip6NoRoute);
            return self.icmp6_error(now, p, Some(in_if), ErrorKind6::NoRoute, false);
        };
        let mtu = self.iface_by_index(hop.ifindex).map_or(0, |i| i.mtu);
        if p.raw.len() > mtu {
            // Routers never fragment IPv6 (RFC 8200 5).
            self.stats.drop(DropReason::Ip6TooBig);
            return self.icmp6_error(now, p, Some(in_if), ErrorKind6::PacketTooBig(mtu), true);
        }
        self.stats.counters.ip6_forwarded += 1;
        let mut pkt = PacketBuf::from_slice(p.raw);
        ipv6::set_hop_limit(pkt.data_mut(), h.hop_limit - 1);
        let _ = self.output6(now, pkt, hop, Origin::Forwarded);
    }

    /// The source address this node uses towards `dst`, of either family.
    pub fn source_for_ip(&self, dst: IpAddr) -> Option<IpAddr> {
        match dst {
            IpAddr::V4(d) => self.source_for(d).map(IpAddr::V4),
            IpAddr::V6(d) if self.is_local_addr(dst) => Some(IpAddr::V6(d)),
            IpAddr::V6(d) => {
                let hop = self.routes6.lookup(d)?;
                self.source_for6(d, hop.ifindex).map(IpAddr::V6)
            }
        }
    }

    /// The source address for `dst` out of interface `ifindex` (RFC 6724, simplified): the
    /// same scope as the destination, preferring a non-deprecated address on `dst`'s prefix.
    pub fn source_for6(&self, dst: Ipv6Addr, ifindex: u32) -> Option<Ipv6Addr> {
        let iface = self.iface_by_index(ifindex)?;
        let link_scope = matches!(
            ipv6::multicast_scope(dst),
            Some(ipv6::SCOPE_INTERFACE | ipv6::SCOPE_LINK)
        );
        let want_ll = ipv6::is_link_local(dst) || link_scope;
        let candidates = iface.addrs.iter().filter(|a| a.usable()).filter_map(|a| {
            let v6: Ipv6Addr = a.get()?;
            (ipv6::is_link_local(v6) == want_ll).then_some((v6, a))
        });
        candidates
            .max_by_key(|(v6, a)| {
                (
                    !a.flags.deprecated,
                    super::addr::contains(*v6, a.prefix, dst),
                )
            })
            .map(|(v6, _)| v6)
            .or_else(|| {
                // A global destination from an interface with only a link-local address:
                // use a global address of another interface (RFC 6724 allows it).
                (!want_ll)
                    .then(|| {
                        self.ifaces.iter().find_map(|i| {
                            i.addrs.iter().filter(|a| a.usable()).find_map(|a| {
                                let v6: Ipv6Addr = a.get()?;
                                (!ipv6::is_link_local(v6)).then_some(v6)
                            })
                        })
                    })
                    .flatten()
            })
    }

    /// Stage 1 for IPv6: route (or the scope's interface), source selection, the header, and
    /// the ICMPv6 checksum, which needs the source.
    pub(super) fn transport_output6(
        &mut self,
        now: Instant,
        mut p: OutIp,
        dst: Ipv6Addr,
    ) -> Result<(), SendError> {
        let local = self.is_local_addr(IpAddr::V6(dst));
        let scoped = dst.is_multicast() || ipv6::is_link_local(dst);
        let hop = if local {
            None
        } else if scoped {
            let Some(ifindex) = p.scope else {
                self.stats.drop(DropReason::Ip6NoRoute);
                return Err(SendError::NoRoute);
            };
            Some(NextHop {
                ifindex,
                addr: dst,
                route: super::route::Route {
                    dest: dst,
                    prefix: 128,
                    gateway: None,
                    ifindex,
                },
            })
        } else {
            let found = match p.scope {
                Some(ix) => self.routes6.lookup_on(dst, ix),
                None => self.routes6.lookup(dst),
            };
            match found {
                Some(h) => Some(h),
                None => {
                    self.stats.drop(DropReason::Ip6NoRoute);
                    return Err(SendError::NoRoute);
                }
            }
        };
        let src = match (p.src, &hop) {
            (Some(IpAddr::V6(s)), _) => s,
            (Some(IpAddr::V4(_)), _) => return Err(SendError::NoSource),
            (None, None) => dst,
            (None, Some(hop)) => self
                .source_for6(dst, hop.ifindex)
                .ok_or(SendError::NoSource)?,
        };
        if p.payload.len() > 0xffff {
            return Err(SendError::TooBig);
        }
        if p.proto == ipv6::ICMPV6 {
            icmpv6::set_checksum(src, dst, p.payload.data_mut());
        }
        let e = EmitHeader {
            traffic_class: 0,
            flow_label: 0,
            next_header: p.proto,
            hop_limit: p.ttl.unwrap_or(self.sysctl.hlim),
            src,
            dst,
        };
        ipv6::emit_header(&e, &mut p.payload);
        self.stats.counters.ip6_out += 1;
        match hop {
            None => {
                self.loopback.push_back(p.payload);
                Ok(())
            }
            Some(hop) => self.output6(now, p.payload, hop, Origin::Local),
        }
    }

    /// Stages 3 to 5 for a routed IPv6 packet (header complete, hop limit final).
    pub(super) fn output6(
        &mut self,
        now: Instant,
        pkt: PacketBuf,
        hop: NextHop<Ipv6Addr>,
        origin: Origin,
    ) -> Result<(), SendError> {
        let Some((pkt, mtu)) = self.egress(pkt, hop.ifindex, DropReason::Ip6NoRoute)? else {
            return Ok(());
        };
        let link_mtu = mtu.max(ipv6::MIN_MTU);
        if pkt.len() <= link_mtu && origin != Origin::Local {
            self.link_output6(now, hop.ifindex, hop.addr, pkt);
            return Ok(());
        }
        let Ok(p) = ipv6::parse(pkt.data()) else {
            self.stats.drop(DropReason::InternalError);
            return Err(SendError::TooBig);
        };
        let mtu = self
            .pmtu
            .get(now, p.header.dst)
            .unwrap_or(link_mtu)
            .min(link_mtu);
        if pkt.len() <= mtu {
            self.link_output6(now, hop.ifindex, hop.addr, pkt);
            return Ok(());
        }
        // Only our own packets get here (forwarding refused them above): fragment at the
        // source (RFC 8200 4.5).
        self.next_ip6_id = self.next_ip6_id.wrapping_add(1);
        // Our own packets carry no extension headers: the fixed header is the unfragmentable
        // part.
        let (unfragmentable, _) = p.raw.split_at(ipv6::HEADER_LEN);
        let frags = match ipv6::fragment(
            unfragmentable,
            p.header.next_header,
            p.payload,
            self.next_ip6_id,
            mtu,
        ) {
            Ok(f) => f,
            Err(r) => {
                self.stats.drop(r);
                return Err(SendError::TooBig);
            }
        };
        self.stats.counters.ip6_fragmented += 1;
        self.stats.counters.ip6_fragments_out += frags.len() as u64;
        for f in frags {
            self.link_output6(now, hop.ifindex, hop.addr, f);
        }
        Ok(())
    }

    /// Stage 5 for IPv6: multicast straight to its 33:33 MAC, unicast through NDP.
    pub(super) fn link_output6(
        &mut self,
        now: Instant,
        index: u32,
        nexthop: Ipv6Addr,
        pkt: PacketBuf,
    ) {
        if nexthop.is_multicast() {
            return self.send_frame(index, ipv6::multicast_mac(nexthop), ETHERTYPE_IPV6, pkt);
        }
        match self.nd.resolve(now, (index, nexthop), pkt) {
            super::neighbor::Resolve::Found(mac, p) => {
                self.send_frame(index, mac, ETHERTYPE_IPV6, p)
            }
            super::neighbor::Resolve::Queued { solicit: true } => {
                self.send_ns(index, nexthop, None)
            }
            super::neighbor::Resolve::Queued { solicit: false } => {}
            super::neighbor::Resolve::QueueFull => self.stats.drop(DropReason::NdQueueFull),
        }
    }

    fn icmp6_input(&mut self, now: Instant, in_if: Option<u32>, p: &Packet<'_>, msg: &[u8]) {
        self.stats.counters.icmp6_in += 1;
        let h = p.header;
        let m = match icmpv6::parse(h.src, h.dst, msg) {
            Ok(m) => m,
            Err(r) => return self.stats.drop(r),
        };
        match m {
            Icmpv6::EchoRequest { ident, seq, data } => {
                self.stats.counters.icmp6_echo_in += 1;
                let Some(in_if) = in_if else {
                    return self.echo6_reply(now, h.dst, h.src, None, ident, seq, data);
                };
                // A multicast ping is answered from a unicast address of the interface.
                let src = if h.dst.is_multicast() {
                    self.source_for6(h.src, in_if)
                } else {
                    Some(h.dst)
                };
                if let Some(src) = src {
                    self.echo6_reply(now, src, h.src, Some(in_if), ident, seq, data);
                }
            }
            Icmpv6::NeighborSolicit { .. }
            | Icmpv6::NeighborAdvert { .. }
            | Icmpv6::RouterSolicit { .. }
            | Icmpv6::RouterAdvert { .. }
            | Icmpv6::Redirect { .. } => {
                let Some(in_if) = in_if else {
                    return self.stats.drop(DropReason::Icmp6UnhandledType);
                };
                self.nd_input(now, in_if, p, &m);
            }
            Icmpv6::PacketTooBig { mtu, quoted } => {
                if let Some(q) = ipv6::parse_quoted(quoted) {
                    self.pmtu.learn(now, q.dst, mtu as usize);
                }
                self.offer_icmp6(now, p, msg.len(), m);
            }
            Icmpv6::EchoReply { .. }
            | Icmpv6::DestUnreachable { .. }
            | Icmpv6::TimeExceeded { .. }
            | Icmpv6::ParamProblem { .. } => self.offer_icmp6(now, p, msg.len(), m),
            _ => self.stats.drop(DropReason::Icmp6UnhandledType),
        }
    }

    /// Hands a reply or error to the running command it belongs to.
    fn offer_icmp6(&mut self, now: Instant, p: &Packet<'_>, len: usize, m: Icmpv6<'_>) {
        let ev = IcmpEvent {
            src: IpAddr::V6(p.header.src),
            dst: IpAddr::V6(p.header.dst),
            ttl: p.header.hop_limit,
            len,
            msg: IcmpMsg::V6(m),
        };
        if !self.offer_icmp(now, &ev) {
            self.stats.drop(DropReason::Icmp6NoListener);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn echo6_reply(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        scope: Option<u32>,
        ident: u16,
        seq: u16,
        data: &[u8],
    ) {
        let mut reply = PacketBuf::new();
        icmpv6::emit(
            src,
            dst,
            &Icmpv6::EchoReply { ident, seq, data },
            &mut reply,
        );
        self.stats.counters.icmp6_out += 1;
        self.stats.counters.icmp6_echo_reply_out += 1;
        let _ = self.ip_output(
            now,
            OutIp {
                src: Some(IpAddr::V6(src)),
                dst: IpAddr::V6(dst),
                proto: ipv6::ICMPV6,
                ttl: None,
                df: false,
                scope,
                payload: reply,
            },
        );
    }

    /// Sends an NDP message (hop limit 255, RFC 4861) from `src` to `dst` on `ifindex`, to
    /// `mac` when the link address is known (else resolved as usual).
    pub(super) fn send_nd(
        &mut self,
        now: Instant,
        ifindex: u32,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        mac: Option<Mac>,
        m: &Icmpv6<'_>,
    ) {
        let mut pkt = PacketBuf::new();
        icmpv6::emit(src, dst, m, &mut pkt);
        let e = EmitHeader {
            traffic_class: 0,
            flow_label: 0,
            next_header: ipv6::ICMPV6,
            hop_limit: 255,
            src,
            dst,
        };
        ipv6::emit_header(&e, &mut pkt);
        self.stats.counters.ip6_out += 1;
        self.stats.counters.icmp6_out += 1;
        match mac {
            Some(mac) => self.send_frame(ifindex, mac, ETHERTYPE_IPV6, pkt),
            None => self.link_output6(now, ifindex, dst, pkt),
        }
    }
}
