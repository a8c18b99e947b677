//! The neighbour cache: one type for ARP (IPv4) and NDP (IPv6), which differ only in how they
//! solicit. States and timers are RFC 4861's (NetBSD uses the same machine for ARP):
//! INCOMPLETE (multicast/broadcast solicitations, packets queued), REACHABLE (confirmed, for
//! `reachable` time), STALE (unconfirmed, still used), DELAY (used while stale: wait for a
//! confirmation before probing), PROBE (unicast solicitations), and static entries. Pure data:
//! the stack sends what [`NeighborCache::poll`] and [`NeighborCache::resolve`] tell it to.
//!
//! Timers are fixed (no random factor on ReachableTime) so that runs replay exactly.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::addr::Family;
use crate::wire::{Mac, PacketBuf};

/// RFC 4861 10: REACHABLE_TIME.
pub const REACHABLE_TIME: Duration = Duration::from_secs(30);
/// RFC 4861 10: RETRANS_TIMER.
pub const RETRANS_TIMER: Duration = Duration::from_secs(1);
/// RFC 4861 10: DELAY_FIRST_PROBE_TIME.
pub const DELAY_FIRST_PROBE: Duration = Duration::from_secs(5);
/// Multicast (INCOMPLETE) and unicast (PROBE) solicitations before giving up.
pub const MAX_MULTICAST_SOLICIT: u8 = 3;
pub const MAX_UNICAST_SOLICIT: u8 = 3;
/// Stale entries nobody uses are forgotten after this (NetBSD's nd gc timer is a day; a lab
/// restarts nodes with new MACs far more often).
pub const STALE_LIFETIME: Duration = Duration::from_secs(20 * 60);
pub const QUEUE_PER_ENTRY: usize = 16;
pub const QUEUE_TOTAL: usize = 256;

#[derive(Debug)]
pub enum State {
    Incomplete {
        tries: u8,
        next: Instant,
        queue: VecDeque<PacketBuf>,
    },
    Reachable {
        mac: Mac,
        until: Instant,
    },
    Stale {
        mac: Mac,
        since: Instant,
    },
    Delay {
        mac: Mac,
        until: Instant,
    },
    Probe {
        mac: Mac,
        tries: u8,
        next: Instant,
    },
    Static {
        mac: Mac,
    },
}

impl State {
    pub fn mac(&self) -> Option<Mac> {
        match self {
            State::Incomplete { .. } => None,
            State::Reachable { mac, .. }
            | State::Stale { mac, .. }
            | State::Delay { mac, .. }
            | State::Probe { mac, .. }
            | State::Static { mac } => Some(*mac),
        }
    }

    /// NetBSD's name of the state (`ndp -a` column S: I R S D P, or permanent).
    pub fn name(&self) -> &'static str {
        match self {
            State::Incomplete { .. } => "incomplete",
            State::Reachable { .. } => "reachable",
            State::Stale { .. } => "stale",
            State::Delay { .. } => "delay",
            State::Probe { .. } => "probe",
            State::Static { .. } => "permanent",
        }
    }

    /// When this entry's timer fires, if it has one.
    fn deadline(&self) -> Option<Instant> {
        match self {
            State::Incomplete { next, .. } | State::Probe { next, .. } => Some(*next),
            State::Reachable { until, .. } | State::Delay { until, .. } => Some(*until),
            State::Stale { since, .. } => Some(*since + STALE_LIFETIME),
            State::Static { .. } => None,
        }
    }
}

pub type Key<A> = (u32, A);

#[derive(Debug)]
pub struct NeighborCache<A> {
    pub entries: BTreeMap<Key<A>, State>,
    queued: usize,
}

impl<A> Default for NeighborCache<A> {
    fn default() -> Self {
        NeighborCache {
            entries: BTreeMap::new(),
            queued: 0,
        }
    }
}

/// What `resolve` decided about a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolve {
    /// Send the packet to this MAC now.
    Found(Mac, PacketBuf),
    /// Queued; send a multicast (broadcast) solicitation now if `solicit` is true.
    Queued { solicit: bool },
    /// The queue is full: the packet was dropped.
    QueueFull,
}

/// Work the timers produce.
#[derive(Debug)]
pub enum TimerAction<A> {
    /// Solicit `key` again: multicast (broadcast) if `unicast` is None, else to that MAC.
    Solicit { key: Key<A>, unicast: Option<Mac> },
    /// Resolution failed: these packets are dropped (the stack owes ICMP errors for them).
    Failed(Key<A>, VecDeque<PacketBuf>),
}

/// An advertisement's claims (ARP replies are solicited, overriding advertisements).
#[derive(Clone, Copy, Debug)]
pub struct Advert {
    pub mac: Option<Mac>,
    pub solicited: bool,
    pub override_: bool,
}

impl<A: Family> NeighborCache<A> {
    pub fn lookup(&self, key: Key<A>) -> Option<Mac> {
        self.entries.get(&key).and_then(State::mac)
    }

    /// Finds the MAC for `key` or queues `packet` until it is resolved (RFC 4861 7.2.2, 7.3.3:
    /// a STALE entry is used and goes to DELAY).
    pub fn resolve(&mut self, now: Instant, key: Key<A>, packet: PacketBuf) -> Resolve {
        match self.entries.get_mut(&key) {
            Some(State::Incomplete { queue, .. }) => {
                if queue.len() >= QUEUE_PER_ENTRY || self.queued >= QUEUE_TOTAL {
                    Resolve::QueueFull
                } else {
                    queue.push_back(packet);
                    self.queued += 1;
                    Resolve::Queued { solicit: false }
                }
            }
            Some(s @ State::Stale { .. }) => {
                let mac = s.mac().unwrap_or_default();
                *s = State::Delay {
                    mac,
                    until: now + DELAY_FIRST_PROBE,
                };
                Resolve::Found(mac, packet)
            }
            Some(s) => Resolve::Found(s.mac().unwrap_or_default(), packet),
            None => {
                if self.queued >= QUEUE_TOTAL {
                    return Resolve::QueueFull;
                }
                self.queued += 1;
                self.entries.insert(
                    key,
                    State::Incomplete {
                        tries: 1,
                        next: now + RETRANS_TIMER,
                        queue: VecDeque::from([packet]),
                    },
                );
                Resolve::Queued { solicit: true }
            }
        }
    }

    /// Takes a state's queue out (it is leaving INCOMPLETE) and keeps the total right.
    fn take_queue(&mut self, old: State) -> Vec<PacketBuf> {
        match old {
            State::Incomplete { queue, .. } => {
                self.queued -= queue.len();
                queue.into()
            }
            _ => Vec::new(),
        }
    }

    /// A solicitation (ARP request, NS) or other packet told us `mac` for `key` without
    /// confirming reachability (RFC 4861 7.2.3): create or update as STALE when the MAC is new.
    /// `create` false only updates an existing entry. Returns packets that were waiting.
    pub fn learn(&mut self, now: Instant, key: Key<A>, mac: Mac, create: bool) -> Vec<PacketBuf> {
        let stale = State::Stale { mac, since: now };
        match self.entries.get_mut(&key) {
            Some(State::Static { .. }) => Vec::new(),
            Some(s) if s.mac() == Some(mac) => Vec::new(),
            Some(s) => {
                let old = std::mem::replace(s, stale);
                self.take_queue(old)
            }
            None => {
                if create {
                    self.entries.insert(key, stale);
                }
                Vec::new()
            }
        }
    }

    /// An advertisement (NA, ARP reply) for `key` (RFC 4861 7.2.5). Returns packets that were
    /// waiting for it. Advertisements for unknown entries are ignored.
    pub fn advert(&mut self, now: Instant, key: Key<A>, a: Advert) -> Vec<PacketBuf> {
        let reachable = |mac| State::Reachable {
            mac,
            until: now + REACHABLE_TIME,
        };
        let Some(s) = self.entries.get_mut(&key) else {
            return Vec::new();
        };
        let new = match (&*s, a.mac) {
            (State::Static { .. }, _) => return Vec::new(),
            (State::Incomplete { .. }, None) => return Vec::new(),
            (State::Incomplete { .. }, Some(mac)) => {
                if a.solicited {
                    reachable(mac)
                } else {
                    State::Stale { mac, since: now }
                }
            }
            (cur, mac) => {
                let known = cur.mac().unwrap_or_default();
                let differs = mac.is_some_and(|m| m != known);
                if differs && !a.override_ {
                    // Keep the cached MAC; a REACHABLE entry is demoted (7.2.5).
                    match cur {
                        State::Reachable { mac, .. } => State::Stale {
                            mac: *mac,
                            since: now,
                        },
                        _ => return Vec::new(),
                    }
                } else {
                    let mac = mac.unwrap_or(known);
                    if a.solicited {
                        reachable(mac)
                    } else if differs {
                        State::Stale { mac, since: now }
                    } else {
                        return Vec::new();
                    }
                }
            }
        };
        let old = std::mem::replace(s, new);
        self.take_queue(old)
    }

    pub fn set_static(&mut self, key: Key<A>, mac: Mac) -> Vec<PacketBuf> {
        let old = self.entries.insert(key, State::Static { mac });
        old.map(|o| self.take_queue(o)).unwrap_or_default()
    }

    pub fn remove(&mut self, key: Key<A>) -> bool {
        match self.entries.remove(&key) {
            Some(old) => {
                self.take_queue(old);
                true
            }
            None => false,
        }
    }

    /// Forgets everything learnt on an interface (it went away or went down). Static entries
    /// go too, as NetBSD's do when their interface is destroyed.
    pub fn flush_interface(&mut self, ifindex: u32) {
        let keys: Vec<Key<A>> = self
            .entries
            .keys()
            .filter(|k| k.0 == ifindex)
            .copied()
            .collect();
        for k in keys {
            self.remove(k);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().filter_map(State::deadline).min()
    }

    /// Advances every entry whose timer is due.
    pub fn poll(&mut self, now: Instant) -> Vec<TimerAction<A>> {
        let mut actions = Vec::new();
        let mut dead = Vec::new();
        for (key, state) in self.entries.iter_mut() {
            if state.deadline().is_none_or(|d| d > now) {
                continue;
            }
            match state {
                State::Incomplete { tries, next, queue } => {
                    if *tries >= MAX_MULTICAST_SOLICIT {
                        self.queued -= queue.len();
                        actions.push(TimerAction::Failed(*key, std::mem::take(queue)));
                        dead.push(*key);
                    } else {
                        *tries += 1;
                        *next = now + RETRANS_TIMER;
                        actions.push(TimerAction::Solicit {
                            key: *key,
                            unicast: None,
                        });
                    }
                }
                State::Reachable { mac, .. } => {
                    *state = State::Stale {
                        mac: *mac,
                        since: now,
                    }
                }
                State::Stale { .. } => dead.push(*key),
                State::Delay { mac, .. } => {
                    let mac = *mac;
                    *state = State::Probe {
                        mac,
                        tries: 1,
                        next: now + RETRANS_TIMER,
                    };
                    actions.push(TimerAction::Solicit {
                        key: *key,
                        unicast: Some(mac),
                    });
                }
                State::Probe { mac, tries, next } => {
                    if *tries >= MAX_UNICAST_SOLICIT {
                        dead.push(*key);
                    } else {
                        *tries += 1;
                        *next = now + RETRANS_TIMER;
                        actions.push(TimerAction::Solicit {
                            key: *key,
                            unicast: Some(*mac),
                        });
                    }
                }
                State::Static { .. } => {}
            }
        }
        for k in dead {
            self.entries.remove(&k);
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const K: Key<Ipv4Addr> = (1, Ipv4Addr::new(10, 0, 0, 2));
    const M: Mac = Mac([2; 6]);

    fn p(b: u8) -> PacketBuf {
        PacketBuf::from_slice(&[b])
    }

    fn solicited() -> Advert {
        Advert {
            mac: Some(M),
            solicited: true,
            override_: true,
        }
    }

    #[test]
    fn pending_packets_flush_on_advert() {
        let t0 = Instant::now();
        let mut c = NeighborCache::default();
        assert_eq!(c.resolve(t0, K, p(1)), Resolve::Queued { solicit: true });
        assert_eq!(c.resolve(t0, K, p(2)), Resolve::Queued { solicit: false });
        assert_eq!(c.advert(t0, K, solicited()), vec![p(1), p(2)]);
        assert_eq!(c.resolve(t0, K, p(3)), Resolve::Found(M, p(3)));
        assert_eq!(c.queued, 0);
    }

    #[test]
    fn resolution_fails_after_retries_and_returns_the_queue() {
        let t0 = Instant::now();
        let mut c = NeighborCache::default();
        c.resolve(t0, K, p(1));
        let mut retries = 0;
        let mut failed = None;
        for s in 1..10 {
            for a in c.poll(t0 + RETRANS_TIMER * s) {
                match a {
                    TimerAction::Solicit { .. } => retries += 1,
                    TimerAction::Failed(_, q) => failed = Some(q),
                }
            }
        }
        assert_eq!(retries, MAX_MULTICAST_SOLICIT as usize - 1);
        assert_eq!(failed.unwrap(), VecDeque::from([p(1)]));
        assert!(c.entries.is_empty());
        assert_eq!(c.queued, 0);
    }

    #[test]
    fn queue_is_bounded() {
        let t0 = Instant::now();
        let mut c = NeighborCache::default();
        for i in 0..QUEUE_PER_ENTRY {
            assert!(matches!(
                c.resolve(t0, K, p(i as u8)),
                Resolve::Queued { .. }
            ));
        }
        assert_eq!(c.resolve(t0, K, p(0)), Resolve::QueueFull);
    }

    /// REACHABLE -> STALE after ReachableTime, DELAY when used, PROBE after 5 s, gone after
    /// the unicast probes go unanswered.
    #[test]
    fn an_unanswering_neighbour_goes_stale_delay_probe_gone() {
        let t0 = Instant::now();
        let mut c = NeighborCache::default();
        c.resolve(t0, K, p(1));
        c.advert(t0, K, solicited());
        let name = |c: &NeighborCache<Ipv4Addr>| c.entries.get(&K).map(State::name);
        assert_eq!(name(&c), Some("reachable"));
        let t1 = t0 + REACHABLE_TIME;
        assert!(c.poll(t1).is_empty());
        assert_eq!(name(&c), Some("stale"));
        assert_eq!(c.resolve(t1, K, p(2)), Resolve::Found(M, p(2)));
        assert_eq!(name(&c), Some("delay"));
        let t2 = t1 + DELAY_FIRST_PROBE;
        assert!(matches!(
            c.poll(t2)[..],
            [TimerAction::Solicit {
                unicast: Some(M),
                ..
            }]
        ));
        assert_eq!(name(&c), Some("probe"));
        let mut t = t2;
        for _ in 0..MAX_UNICAST_SOLICIT {
            t += RETRANS_TIMER;
            c.poll(t);
        }
        assert_eq!(name(&c), None);
    }

    #[test]
    fn unsolicited_advert_with_a_new_mac_and_no_override_keeps_the_old_one() {
        let t0 = Instant::now();
        let mut c = NeighborCache::default();
        c.resolve(t0, K, p(1));
        c.advert(t0, K, solicited());
        let other = Mac([3; 6]);
        c.advert(
            t0,
            K,
            Advert {
                mac: Some(other),
                solicited: false,
                override_: false,
            },
        );
        assert_eq!(c.lookup(K), Some(M));
        assert_eq!(c.entries[&K].name(), "stale");
        c.learn(t0, K, other, false);
        assert_eq!(c.lookup(K), Some(other));
    }
}
