//! Link layer: Ethernet II demultiplexing, ARP (RFC 826) as the IPv4 front end of the
//! neighbour cache, and the link end of the output pipeline.

use std::net::Ipv4Addr;
use std::time::Instant;

use super::neighbor::{Advert, Resolve};
use super::Stack;
use crate::stats::DropReason;
use crate::wire::arp::{self as warp, Arp, OP_REPLY, OP_REQUEST};
use crate::wire::ether::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::wire::{Mac, PacketBuf};

impl Stack {
    pub(super) fn ether_input(&mut self, now: Instant, index: u32, frame: &[u8]) {
        self.stats.counters.ether_in += 1;
        let router6 = self.sysctl.forwarding6;
        let Some(iface) = self.iface_by_index_mut(index) else {
            return;
        };
        iface.counters.ipackets += 1;
        iface.counters.ibytes += frame.len() as u64;
        if !iface.up {
            self.stats.drop(DropReason::IfDown);
            return;
        }
        let f = match ether::parse(frame) {
            Ok(f) => f,
            Err(r) => {
                iface.counters.ierrors += 1;
                self.stats.drop(r);
                return;
            }
        };
        let my_mac = iface.link.as_ref().map(|l| l.mac).unwrap_or_default();
        if f.dst != my_mac && !f.dst.is_multicast() {
            // The bus filters on MAC already; this guards promiscuous or foreign links.
            return self.stats.drop(DropReason::EtherNotForUs);
        }
        if f.dst.is_multicast() && !iface.wants_group_mac(f.dst, router6) {
            // A group this interface did not join (the bus delivers every multicast frame).
            return self.stats.drop(DropReason::EtherGroupNotJoined);
        }
        match f.ethertype {
            ETHERTYPE_IPV4 => self.ip_input(now, Some(index), f.dst.is_multicast(), f.payload),
            ETHERTYPE_ARP => self.arp_input(now, index, f.payload),
            ETHERTYPE_IPV6 => self.ip6_input(now, Some(index), f.dst.is_multicast(), f.payload),
            _ => self.stats.drop(DropReason::EtherUnknownType),
        }
    }

    fn arp_input(&mut self, now: Instant, index: u32, payload: &[u8]) {
        let a = match warp::parse(payload) {
            Ok(a) => a,
            Err(r) => return self.stats.drop(r),
        };
        if a.op == OP_REQUEST {
            self.stats.counters.arp_requests_in += 1;
        } else {
            self.stats.counters.arp_replies_in += 1;
        }
        let Some(iface) = self.iface_by_index(index) else {
            return;
        };
        let my_mac = iface.link.as_ref().map(|l| l.mac).unwrap_or_default();
        if a.sha.is_multicast() || a.sha == my_mac {
            return self.stats.drop(DropReason::ArpBadSender);
        }
        let ours = |x: Ipv4Addr| iface.addrs.iter().any(|m| m.usable() && m.get() == Some(x));
        if ours(a.spa) {
            // Someone else claims our address.
            tracing::warn!(
                "{}: duplicate address {} claimed by {}",
                iface.name,
                a.spa,
                a.sha
            );
            self.stats.counters.arp_duplicate_address += 1;
            return self.stats.drop(DropReason::ArpBadSender);
        }
        let for_us = ours(a.tpa);
        if !a.spa.is_unspecified() {
            let key = (index, a.spa);
            // A reply to us confirms reachability; a request for us tells us the sender's MAC
            // (RFC 826's merge, with NetBSD creating the entry only when the target is ours).
            let waiting = if a.op == OP_REPLY && for_us {
                let advert = Advert {
                    mac: Some(a.sha),
                    solicited: true,
                    override_: true,
                };
                let w = self.arp.advert(now, key, advert);
                self.arp.learn(now, key, a.sha, true);
                w
            } else {
                self.arp.learn(now, key, a.sha, for_us)
            };
            for d in waiting {
                self.send_frame(index, a.sha, ETHERTYPE_IPV4, d);
            }
        }
        match (a.op, for_us) {
            (OP_REQUEST, true) => {
                let reply = Arp {
                    op: OP_REPLY,
                    sha: my_mac,
                    spa: a.tpa,
                    tha: a.sha,
                    tpa: a.spa,
                };
                self.stats.counters.arp_replies_out += 1;
                self.send_arp(index, a.sha, &reply);
            }
            (_, true) => {}
            (_, false) => self.stats.drop(DropReason::ArpNotForUs),
        }
    }

    fn send_arp(&mut self, index: u32, to: Mac, a: &Arp) {
        let mut b = PacketBuf::new();
        b.extend_from_slice(&warp::emit(a));
        self.send_frame(index, to, ETHERTYPE_ARP, b);
    }

    /// An ARP request for `target`: broadcast, or unicast to `to` when probing a stale entry.
    pub(super) fn send_arp_request(&mut self, index: u32, target: Ipv4Addr, to: Option<Mac>) {
        let Some(iface) = self.iface_by_index(index) else {
            return;
        };
        let (Some(link), Some(spa)) = (iface.link.as_ref(), iface.source_for(target)) else {
            return;
        };
        let req = Arp {
            op: OP_REQUEST,
            sha: link.mac,
            spa,
            tha: Mac::ZERO,
            tpa: target,
        };
        self.stats.counters.arp_requests_out += 1;
        self.send_arp(index, to.unwrap_or(Mac::BROADCAST), &req);
    }

    /// Announces `addr` (a request for our own address, RFC 5227 style), so peers refresh
    /// stale entries.
    pub(super) fn gratuitous_arp(&mut self, index: u32, addr: Ipv4Addr) {
        let Some(iface) = self.iface_by_index(index) else {
            return;
        };
        let Some(link) = iface.link.as_ref().filter(|_| iface.up) else {
            return;
        };
        let req = Arp {
            op: OP_REQUEST,
            sha: link.mac,
            spa: addr,
            tha: Mac::ZERO,
            tpa: addr,
        };
        self.stats.counters.arp_gratuitous_out += 1;
        self.send_arp(index, Mac::BROADCAST, &req);
    }

    /// Stage 5 for IPv4: a datagram (already fragmented to the MTU) to `nexthop` on `index`.
    pub(super) fn link_output4(
        &mut self,
        now: Instant,
        index: u32,
        nexthop: Ipv4Addr,
        d: PacketBuf,
    ) {
        let Some(iface) = self.iface_by_index(index) else {
            return self.stats.drop(DropReason::IfDown);
        };
        if !iface.running() {
            return self.stats.drop(DropReason::IfDown);
        }
        let bcast =
            nexthop.is_broadcast() || iface.addrs.iter().any(|a| a.broadcast() == Some(nexthop));
        if bcast {
            return self.send_frame(index, Mac::BROADCAST, ETHERTYPE_IPV4, d);
        }
        match self.arp.resolve(now, (index, nexthop), d) {
            Resolve::Found(mac, d) => self.send_frame(index, mac, ETHERTYPE_IPV4, d),
            Resolve::Queued { solicit: true } => self.send_arp_request(index, nexthop, None),
            Resolve::Queued { solicit: false } => {}
            Resolve::QueueFull => self.stats.drop(DropReason::ArpQueueFull),
        }
    }

    /// Puts the Ethernet header in the packet's headroom and hands the frame to the link.
    pub(super) fn send_frame(&mut self, index: u32, dst: Mac, ethertype: u16, mut pkt: PacketBuf) {
        let Some(iface) = self.iface_by_index_mut(index) else {
            return;
        };
        let Some(link) = iface.link.as_ref() else {
            return self.stats.drop(DropReason::IfDown);
        };
        ether::prepend(dst, link.mac, ethertype, &mut pkt);
        let frame = pkt.data();
        match link.send(frame) {
            Ok(()) => {
                iface.counters.opackets += 1;
                iface.counters.obytes += frame.len() as u64;
                self.stats.counters.ether_out += 1;
            }
            Err(e) => {
                iface.counters.oerrors += 1;
                tracing::warn!("{}: send failed: {e}", iface.name);
                self.stats.drop(DropReason::LinkSendFailed);
            }
        }
    }
}
