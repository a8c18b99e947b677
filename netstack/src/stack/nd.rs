//! NDP (RFC 4861) as the IPv6 front end of the neighbour cache, the link-local address every
//! interface gets when it comes up (RFC 4862 5.3), and duplicate address detection (RFC 4862
//! 5.4): a new address stays tentative (neither used nor answered for) while `dad_count`
//! solicitations go unanswered, then is announced with an unsolicited advertisement.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use super::addr::IfAddr;
use super::neighbor::{Advert, RETRANS_TIMER};
use super::Stack;
use crate::stats::DropReason;
use crate::wire::icmpv6::{self, Icmpv6};
use crate::wire::ipv6::{self, Packet};
use crate::wire::{Mac, PacketBuf};

/// A DAD run for one tentative address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dad {
    pub ifindex: u32,
    pub addr: Ipv6Addr,
    /// Solicitations sent so far.
    pub sent: u8,
    /// When the next solicitation (or the verdict) is due; None: at the next poll.
    pub next: Option<Instant>,
}

impl Stack {
    fn mac_of(&self, ifindex: u32) -> Option<Mac> {
        self.iface_by_index(ifindex)?.link.as_ref().map(|l| l.mac)
    }

    /// Gives an interface that is up and has a link its link-local address, once.
    pub(super) fn ensure_link_local(&mut self, index: u32) {
        let Some(iface) = self.iface_by_index(index) else {
            return;
        };
        let Some(mac) = iface.link.as_ref().map(|l| l.mac).filter(|_| iface.up) else {
            return;
        };
        let has = iface
            .addrs
            .iter()
            .any(|a| a.get::<Ipv6Addr>().is_some_and(ipv6::is_link_local));
        if has {
            return;
        }
        let mut a = IfAddr::new(IpAddr::V6(ipv6::link_local_from_mac(mac)), 64);
        a.flags.autoconf = true;
        let name = iface.name.clone();
        let _ = self.add_addr(&name, a, true);
    }

    /// Marks a new IPv6 address tentative and starts DAD on it (or makes it usable at once
    /// when `net.inet6.ip6.dad_count` is 0).
    pub(super) fn start_dad(&mut self, index: u32, addr: Ipv6Addr) {
        let count = self.sysctl.dad_count;
        self.dad.retain(|d| !(d.ifindex == index && d.addr == addr));
        let Some(iface) = self.iface_by_index_mut(index) else {
            return;
        };
        let Some(a) = iface.addrs.iter_mut().find(|a| a.addr == IpAddr::V6(addr)) else {
            return;
        };
        a.flags.duplicated = false;
        if count == 0 {
            a.flags.tentative = false;
            self.announce6(index, addr);
            return;
        }
        a.flags.tentative = true;
        self.dad.push(Dad {
            ifindex: index,
            addr,
            sent: 0,
            next: None,
        });
    }

    /// Sends due DAD solicitations and ends runs that met no conflict.
    pub(super) fn poll_dad(&mut self, now: Instant) {
        let due: Vec<Dad> = self
            .dad
            .iter()
            .filter(|d| d.next.is_none_or(|n| n <= now))
            .copied()
            .collect();
        for d in due {
            let running = self.iface_by_index(d.ifindex).is_some_and(|i| i.running());
            if !running {
                // DAD waits for the link (RFC 4862 5.4.2): try again later.
                self.set_dad_next(d, now + RETRANS_TIMER, d.sent);
                continue;
            }
            if d.sent < self.sysctl.dad_count {
                let ns = Icmpv6::NeighborSolicit {
                    target: d.addr,
                    source_mac: None,
                };
                let group = ipv6::solicited_node(d.addr);
                let mac = ipv6::multicast_mac(group);
                self.stats.counters.nd_ns_out += 1;
                self.send_nd(now, d.ifindex, Ipv6Addr::UNSPECIFIED, group, Some(mac), &ns);
                self.set_dad_next(d, now + RETRANS_TIMER, d.sent + 1);
                continue;
            }
            self.dad.retain(|x| *x != d);
            if let Some(a) = self
                .iface_by_index_mut(d.ifindex)
                .and_then(|i| i.addrs.iter_mut().find(|a| a.addr == IpAddr::V6(d.addr)))
            {
                a.flags.tentative = false;
            }
            self.routes_changed();
            self.announce6(d.ifindex, d.addr);
        }
    }

    fn set_dad_next(&mut self, d: Dad, next: Instant, sent: u8) {
        if let Some(x) = self.dad.iter_mut().find(|x| **x == d) {
            x.next = Some(next);
            x.sent = sent;
        }
    }

    pub(super) fn next_dad_deadline(&self) -> Option<Instant> {
        self.dad
            .iter()
            .map(|d| d.next.unwrap_or_else(Instant::now))
            .min()
    }

    /// An unsolicited advertisement for a new address, so neighbours update (RFC 4861 7.2.6).
    fn announce6(&mut self, index: u32, addr: Ipv6Addr) {
        let Some(mac) = self.mac_of(index) else {
            return;
        };
        if !self.iface_by_index(index).is_some_and(|i| i.running()) {
            return;
        }
        let na = Icmpv6::NeighborAdvert {
            target: addr,
            router: self.sysctl.forwarding6,
            solicited: false,
            override_: true,
            target_mac: Some(mac),
        };
        self.stats.counters.nd_na_out += 1;
        let all = ipv6::ALL_NODES;
        self.send_nd(
            Instant::now(),
            index,
            addr,
            all,
            Some(ipv6::multicast_mac(all)),
            &na,
        );
    }

    /// Someone else has `addr`: it is never used (RFC 4862 5.4.5).
    fn dad_failed(&mut self, index: u32, addr: Ipv6Addr, by: Option<Mac>) {
        self.dad.retain(|d| !(d.ifindex == index && d.addr == addr));
        let Some(iface) = self.iface_by_index_mut(index) else {
            return;
        };
        let name = iface.name.clone();
        if let Some(a) = iface.addrs.iter_mut().find(|a| a.addr == IpAddr::V6(addr)) {
            a.flags.tentative = false;
            a.flags.duplicated = true;
        }
        let by = by.map_or_else(|| "another node".to_string(), |m| m.to_string());
        tracing::warn!("{name}: DAD detected duplicate IPv6 address {addr} (claimed by {by})");
        self.stats.drop(DropReason::NdDadDuplicate);
        self.routes_changed();
    }

    /// A neighbour solicitation for `target` (address resolution or a unicast probe), from a
    /// usable address of `index` when there is one.
    pub(super) fn send_ns(&mut self, index: u32, target: Ipv6Addr, unicast: Option<Mac>) {
        let Some(mac) = self.mac_of(index) else {
            return;
        };
        let Some(src) = self.source_for6(target, index) else {
            return;
        };
        let ns = Icmpv6::NeighborSolicit {
            target,
            source_mac: Some(mac),
        };
        let (dst, to) = match unicast {
            Some(m) => (target, m),
            None => {
                let g = ipv6::solicited_node(target);
                (g, ipv6::multicast_mac(g))
            }
        };
        self.stats.counters.nd_ns_out += 1;
        self.send_nd(Instant::now(), index, src, dst, Some(to), &ns);
    }

    /// NDP messages received on `index`.
    pub(super) fn nd_input(&mut self, now: Instant, index: u32, p: &Packet<'_>, m: &Icmpv6<'_>) {
        let h = p.header;
        if let Err(r) = icmpv6::validate_nd(h.hop_limit, h.src, h.dst, m) {
            return self.stats.drop(r);
        }
        let Some(my_mac) = self.mac_of(index) else {
            return;
        };
        // Our addresses on this interface: (usable, tentative) for `target`.
        let ours = |s: &Stack, target: Ipv6Addr| {
            s.iface_by_index(index).and_then(|i| {
                i.addrs
                    .iter()
                    .find(|a| a.addr == IpAddr::V6(target) && !a.flags.duplicated)
                    .map(|a| a.flags.tentative)
            })
        };
        match *m {
            Icmpv6::NeighborSolicit { target, source_mac } => {
                self.stats.counters.nd_ns_in += 1;
                let Some(tentative) = ours(self, target) else {
                    return self.stats.drop(DropReason::NdNotForUs);
                };
                if source_mac == Some(my_mac) {
                    // Our own DAD probe looped back by a multicast-reflecting link.
                    return;
                }
                if tentative {
                    if h.src.is_unspecified() {
                        // Another node is doing DAD for the same address.
                        self.dad_failed(index, target, source_mac);
                    }
                    return;
                }
                let (dst, to, solicited) = if h.src.is_unspecified() {
                    let all = ipv6::ALL_NODES;
                    (all, Some(ipv6::multicast_mac(all)), false)
                } else {
                    if let Some(mac) = source_mac {
                        let waiting = self.nd.learn(now, (index, h.src), mac, true);
                        self.send_waiting6(index, mac, waiting);
                    }
                    (h.src, source_mac, true)
                };
                let na = Icmpv6::NeighborAdvert {
                    target,
                    router: self.sysctl.forwarding6,
                    solicited,
                    override_: true,
                    target_mac: Some(my_mac),
                };
                self.stats.counters.nd_na_out += 1;
                self.send_nd(now, index, target, dst, to, &na);
            }
            Icmpv6::NeighborAdvert {
                target,
                solicited,
                override_,
                target_mac,
                ..
            } => {
                self.stats.counters.nd_na_in += 1;
                if target_mac == Some(my_mac) {
                    return;
                }
                if let Some(tentative) = ours(self, target) {
                    if tentative {
                        self.dad_failed(index, target, target_mac);
                    } else {
                        tracing::warn!(
                            "duplicate IPv6 address {target} advertised by {}",
                            target_mac.map_or_else(|| "?".into(), |m| m.to_string())
                        );
                        self.stats.counters.nd_duplicate_address += 1;
                    }
                    return;
                }
                let a = Advert {
                    mac: target_mac,
                    solicited,
                    override_,
                };
                let waiting = self.nd.advert(now, (index, target), a);
                if let Some(mac) = self.nd.lookup((index, target)) {
                    self.send_waiting6(index, mac, waiting);
                }
            }
            Icmpv6::RouterAdvert { .. } => self.stats.drop(DropReason::Icmp6RouterAdvertIgnored),
            Icmpv6::Redirect { .. } => self.stats.drop(DropReason::Icmp6RedirectIgnored),
            _ => self.stats.drop(DropReason::Icmp6UnhandledType),
        }
    }

    /// Sends IPv6 packets that waited for `mac`.
    pub fn send_waiting6(&mut self, index: u32, mac: Mac, waiting: Vec<PacketBuf>) {
        for p in waiting {
            self.send_frame(index, mac, crate::wire::ether::ETHERTYPE_IPV6, p);
        }
    }
}
