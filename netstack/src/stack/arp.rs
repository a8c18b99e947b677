//! The ARP cache: resolved, static and pending entries, with retries, expiry and a bounded
//! queue of packets waiting for resolution. Pure data: the stack sends what it is told to.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::wire::Mac;

/// How long a resolved entry lives (NetBSD net.inet.arp.keep is 1200 s; shorter suits a lab
/// where nodes restart with new MACs).
pub const REACHABLE_TIME: Duration = Duration::from_secs(300);
pub const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// Requests sent before giving up.
pub const MAX_TRIES: u8 = 3;
pub const QUEUE_PER_ENTRY: usize = 16;
pub const QUEUE_TOTAL: usize = 256;

#[derive(Debug)]
pub enum State {
    Incomplete {
        tries: u8,
        next_try: Instant,
        queue: VecDeque<Vec<u8>>,
    },
    Reachable {
        mac: Mac,
        expires: Instant,
    },
    Static {
        mac: Mac,
    },
}

pub type Key = (u32, Ipv4Addr);

#[derive(Debug, Default)]
pub struct ArpCache {
    pub entries: BTreeMap<Key, State>,
    queued: usize,
}

/// What `resolve` decided about a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolve {
    /// Resolved: the packet comes back to be sent now.
    Found(Mac, Vec<u8>),
    /// Queued; send a request now if `request` is true.
    Queued { request: bool },
    /// The queue is full: the packet was dropped.
    QueueFull,
}

/// Work the timers produce.
#[derive(Debug)]
pub enum TimerAction {
    Retry(Key),
    /// Resolution failed: these packets (IP datagrams) are dropped.
    Failed(Key, VecDeque<Vec<u8>>),
}

impl ArpCache {
    pub fn lookup(&self, key: Key) -> Option<Mac> {
        match self.entries.get(&key) {
            Some(State::Reachable { mac, .. }) | Some(State::Static { mac }) => Some(*mac),
            _ => None,
        }
    }

    /// Finds the MAC for `key` or queues `packet` until it is resolved.
    pub fn resolve(&mut self, now: Instant, key: Key, packet: Vec<u8>) -> Resolve {
        match self.entries.get_mut(&key) {
            Some(State::Reachable { mac, expires }) if *expires > now => {
                Resolve::Found(*mac, packet)
            }
            Some(State::Static { mac }) => Resolve::Found(*mac, packet),
            Some(State::Incomplete { queue, .. }) => {
                if queue.len() >= QUEUE_PER_ENTRY || self.queued >= QUEUE_TOTAL {
                    Resolve::QueueFull
                } else {
                    queue.push_back(packet);
                    self.queued += 1;
                    Resolve::Queued { request: false }
                }
            }
            _ => {
                if self.queued >= QUEUE_TOTAL {
                    return Resolve::QueueFull;
                }
                self.queued += 1;
                self.entries.insert(
                    key,
                    State::Incomplete {
                        tries: 1,
                        next_try: now + RETRY_INTERVAL,
                        queue: VecDeque::from([packet]),
                    },
                );
                Resolve::Queued { request: true }
            }
        }
    }

    /// Records `mac` for `key` (unless static); returns packets that were waiting for it.
    /// `create` false only refreshes an existing entry (RFC 826 merge rule).
    pub fn learn(&mut self, now: Instant, key: Key, mac: Mac, create: bool) -> Vec<Vec<u8>> {
        let fresh = State::Reachable {
            mac,
            expires: now + REACHABLE_TIME,
        };
        match self.entries.get_mut(&key) {
            Some(State::Static { .. }) => Vec::new(),
            Some(state) => {
                let old = std::mem::replace(state, fresh);
                match old {
                    State::Incomplete { queue, .. } => {
                        self.queued -= queue.len();
                        queue.into()
                    }
                    _ => Vec::new(),
                }
            }
            None => {
                if create {
                    self.entries.insert(key, fresh);
                }
                Vec::new()
            }
        }
    }

    pub fn set_static(&mut self, key: Key, mac: Mac) -> Vec<Vec<u8>> {
        let old = self.entries.insert(key, State::Static { mac });
        match old {
            Some(State::Incomplete { queue, .. }) => {
                self.queued -= queue.len();
                queue.into()
            }
            _ => Vec::new(),
        }
    }

    pub fn remove(&mut self, key: Key) -> bool {
        match self.entries.remove(&key) {
            Some(State::Incomplete { queue, .. }) => {
                self.queued -= queue.len();
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Forgets everything learned on an interface (it went away or lost an address).
    pub fn flush_interface(&mut self, ifindex: u32) {
        let keys: Vec<Key> = self
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
        self.entries
            .values()
            .filter_map(|s| match s {
                State::Incomplete { next_try, .. } => Some(*next_try),
                _ => None,
            })
            .min()
    }

    /// Expires stale entries and advances pending resolutions.
    pub fn poll(&mut self, now: Instant) -> Vec<TimerAction> {
        let mut actions = Vec::new();
        let mut dead = Vec::new();
        for (key, state) in self.entries.iter_mut() {
            match state {
                State::Reachable { expires, .. } if *expires <= now => dead.push(*key),
                State::Incomplete {
                    tries,
                    next_try,
                    queue,
                } if *next_try <= now => {
                    if *tries >= MAX_TRIES {
                        self.queued -= queue.len();
                        actions.push(TimerAction::Failed(*key, std::mem::take(queue)));
                        dead.push(*key);
                    } else {
                        *tries += 1;
                        *next_try = now + RETRY_INTERVAL;
                        actions.push(TimerAction::Retry(*key));
                    }
                }
                _ => {}
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
    use super::*;

    const K: Key = (1, Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn pending_packets_flush_on_reply() {
        let t0 = Instant::now();
        let mut c = ArpCache::default();
        assert_eq!(c.resolve(t0, K, vec![1]), Resolve::Queued { request: true });
        assert_eq!(
            c.resolve(t0, K, vec![2]),
            Resolve::Queued { request: false }
        );
        let m = Mac([2; 6]);
        assert_eq!(c.learn(t0, K, m, false), vec![vec![1], vec![2]]);
        assert_eq!(c.resolve(t0, K, vec![3]), Resolve::Found(m, vec![3]));
        assert_eq!(c.queued, 0);
    }

    #[test]
    fn resolution_fails_after_retries_and_returns_the_queue() {
        let t0 = Instant::now();
        let mut c = ArpCache::default();
        c.resolve(t0, K, vec![1]);
        let mut retries = 0;
        let mut failed = None;
        for s in 1..10 {
            for a in c.poll(t0 + RETRY_INTERVAL * s) {
                match a {
                    TimerAction::Retry(_) => retries += 1,
                    TimerAction::Failed(_, q) => failed = Some(q),
                }
            }
        }
        assert_eq!(retries, MAX_TRIES as usize - 1);
        assert_eq!(failed.unwrap(), VecDeque::from([vec![1]]));
        assert!(c.entries.is_empty());
        assert_eq!(c.queued, 0);
    }

    #[test]
    fn queue_is_bounded() {
        let t0 = Instant::now();
        let mut c = ArpCache::default();
        for i in 0..QUEUE_PER_ENTRY {
            assert!(matches!(
                c.resolve(t0, K, vec![i as u8]),
                Resolve::Queued { .. }
            ));
        }
        assert_eq!(c.resolve(t0, K, vec![0]), Resolve::QueueFull);
    }

    #[test]
    fn reachable_entries_expire() {
        let t0 = Instant::now();
        let mut c = ArpCache::default();
        c.learn(t0, K, Mac([2; 6]), true);
        assert!(c.lookup(K).is_some());
        c.poll(t0 + REACHABLE_TIME);
        assert!(c.lookup(K).is_none());
    }
}
