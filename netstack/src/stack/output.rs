//! The one output path. Every IP packet that leaves the node, whether it originates here
//! (commands, ICMP errors, later smoltcp's TCP), is forwarded, or is an ICMP error about
//! another packet, goes through the same stages in this order:
//!
//! 1. `transport_output`: where locally built packets enter (source address selection, header).
//! 2. route lookup (skipped for forwarded packets, which were routed to decide on errors).
//! 3. `ipsec_output`: the SPD/SAD hook (the IPsec issue); today it passes everything.
//! 4. MTU check and fragmentation (DF or IPv6 means refusing instead: an error to the sender of
//!    a forwarded packet, EMSGSIZE to a local one).
//! 5. neighbour resolution (ARP or NDP) and the link, where the Ethernet header is put in the
//!    packet's headroom.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use super::route::NextHop;
use super::Stack;
use crate::stats::DropReason;
use crate::wire::ipv4::{self, Emit};
use crate::wire::PacketBuf;

/// A packet the node originates: the upper-layer message in `payload`, the IP header to be
/// put in front of it.
#[derive(Clone, Debug)]
pub struct OutIp {
    /// None: chosen from the outgoing interface.
    pub src: Option<IpAddr>,
    pub dst: IpAddr,
    /// Protocol / next header.
    pub proto: u8,
    /// TTL / hop limit; None: `net.inet.ip.ttl` / `net.inet6.ip6.hlim`.
    pub ttl: Option<u8>,
    /// IPv4 only: don't fragment (IPv6 never fragments on the way).
    pub df: bool,
    /// The interface to send on (ping's `-I`; required for IPv6 link-local and multicast
    /// destinations, where it is the address's scope, `fe80::1%shmif0`).
    pub scope: Option<u32>,
    pub payload: PacketBuf,
}

/// Why a locally originated packet could not be sent (ping prints these).
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
    #[error("Address family not supported by protocol family")]
    NoFamily,
    /// Too big for the next hop's MTU (given) and not to be fragmented.
    #[error("Message too long")]
    NeedFrag(usize),
}

/// Where a packet entering stage 3 comes from: only local packets are fragmented at the
/// source in IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    Local,
    Forwarded,
}

/// What the IPsec hook decided.
pub(super) enum Policy {
    /// Send it (possibly transformed).
    Pass(PacketBuf),
    /// Policy says discard (counted by the hook).
    #[expect(dead_code, reason = "the IPsec issue's SPD returns it")]
    Discard,
}

impl Stack {
    /// Sends a packet this node originates.
    pub fn ip_output(&mut self, now: Instant, p: OutIp) -> Result<(), SendError> {
        match p.dst {
            IpAddr::V4(dst) => self.transport_output4(now, p, dst),
            IpAddr::V6(dst) => self.transport_output6(now, p, dst),
        }
    }

    /// Stage 1 for IPv4: source selection and the header.
    fn transport_output4(
        &mut self,
        now: Instant,
        mut p: OutIp,
        dst: Ipv4Addr,
    ) -> Result<(), SendError> {
        let local = self.is_local_addr(IpAddr::V4(dst));
        let hop = if local {
            None
        } else {
            match self.routes.lookup(dst) {
                Some(h) => Some(h),
                None => {
                    self.stats.drop(DropReason::IpNoRoute);
                    return Err(SendError::NoRoute);
                }
            }
        };
        let src = match (p.src, &hop) {
            (Some(IpAddr::V4(s)), _) => s,
            (Some(IpAddr::V6(_)), _) => return Err(SendError::NoSource),
            (None, None) => dst,
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
            dst,
        };
        ipv4::prepend(&e, &[], &mut p.payload);
        self.stats.counters.ip_out += 1;
        match hop {
            None => {
                self.loopback.push_back(p.payload);
                Ok(())
            }
            Some(hop) => self.output4(now, p.payload, hop),
        }
    }

    /// Stage 3: IPsec output processing (SPD lookup, then ESP/AH transforms) for a routed
    /// packet. No SPD yet: everything passes.
    pub(super) fn ipsec_output(&mut self, pkt: PacketBuf) -> Policy {
        Policy::Pass(pkt)
    }

    /// Stage 3 and the start of 4 for both families: the IPsec hook, then the outgoing
    /// interface, which must be running. Ok(None): policy discarded the packet.
    pub(super) fn egress(
        &mut self,
        pkt: PacketBuf,
        ifindex: u32,
        no_route: DropReason,
    ) -> Result<Option<(PacketBuf, usize)>, SendError> {
        let pkt = match self.ipsec_output(pkt) {
            Policy::Pass(p) => p,
            Policy::Discard => return Ok(None),
        };
        let Some(iface) = self.iface_by_index(ifindex) else {
            self.stats.drop(no_route);
            return Err(SendError::NoRoute);
        };
        if !iface.running() {
            self.stats.drop(DropReason::IfDown);
            return Err(SendError::Down);
        }
        Ok(Some((pkt, iface.mtu)))
    }

    /// Stages 3 to 5 for a routed IPv4 packet (header complete, TTL final).
    pub(super) fn output4(
        &mut self,
        now: Instant,
        pkt: PacketBuf,
        hop: NextHop<Ipv4Addr>,
    ) -> Result<(), SendError> {
        let Some((pkt, mtu)) = self.egress(pkt, hop.ifindex, DropReason::IpNoRoute)? else {
            return Ok(());
        };
        if pkt.len() <= mtu {
            self.link_output4(now, hop.ifindex, hop.addr, pkt);
            return Ok(());
        }
        // Our own header or one that passed input validation: parsing cannot fail.
        let Ok(d) = ipv4::parse(pkt.data()) else {
            self.stats.drop(DropReason::InternalError);
            return Err(SendError::TooBig);
        };
        if d.header.df {
            // The forwarding path answers this with an ICMP need-frag quoting the packet as
            // it arrived; a local sender gets EMSGSIZE.
            self.stats.drop(DropReason::IpNeedFrag);
            return Err(SendError::NeedFrag(mtu));
        }
        let frags = ipv4::fragment(&d, d.header.ttl, mtu);
        self.stats.counters.ip_fragmented += 1;
        self.stats.counters.ip_fragments_out += frags.len() as u64;
        for f in frags {
            self.link_output4(now, hop.ifindex, hop.addr, f);
        }
        Ok(())
    }
}
