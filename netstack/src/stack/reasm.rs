//! IPv4 reassembly (RFC 791, RFC 815 style bookkeeping) with a timeout, memory bounds and
//! RFC 5722's rule carried over to IPv4: a datagram with overlapping fragments is discarded
//! whole, including fragments of it that arrive later.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::stats::{DropReason, Stats};
use crate::wire::ipv4::{self, Datagram, MAX_DATAGRAM};

/// NetBSD's ipfragttl is 60 half-second ticks.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Datagrams under reassembly at once.
pub const MAX_DATAGRAMS: usize = 64;
/// Payload bytes held across all of them.
pub const MAX_BYTES: usize = 1 << 20;

type Key = (Ipv4Addr, Ipv4Addr, u8, u16);

#[derive(Debug)]
struct Partial {
    expires: Instant,
    /// Header bytes of the offset-0 fragment, once it arrived.
    first_header: Option<Vec<u8>>,
    /// Payload length, once the last fragment arrived.
    total: Option<usize>,
    frags: BTreeMap<usize, Vec<u8>>,
    bytes: usize,
    /// Set after an overlap: later fragments are dropped until the entry expires.
    poisoned: bool,
}

/// A datagram whose reassembly timed out with its first fragment present: the stack owes the
/// sender an ICMP time-exceeded (reassembly) quoting it.
pub struct Expired {
    pub first: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Reassembly {
    parts: HashMap<Key, Partial>,
    bytes: usize,
}

impl Reassembly {
    pub fn in_progress(&self) -> usize {
        self.parts.values().filter(|p| !p.poisoned).count()
    }

    /// Adds a fragment; returns the whole datagram (header + payload) when it completes.
    pub fn insert(&mut self, now: Instant, d: &Datagram<'_>, stats: &mut Stats) -> Option<Vec<u8>> {
        let h = &d.header;
        let key = (h.src, h.dst, h.proto, h.id);
        let off = h.frag_offset;
        let len = d.payload.len();
        let end = off + len;
        if (h.mf && (!len.is_multiple_of(8) || len == 0)) || end > MAX_DATAGRAM - h.header_len {
            stats.drop(if end > MAX_DATAGRAM - h.header_len {
                DropReason::FragTooBig
            } else {
                DropReason::FragBadLength
            });
            return None;
        }
        if !self.parts.contains_key(&key) {
            if self.parts.len() >= MAX_DATAGRAMS {
                self.evict_oldest(stats);
            }
            self.parts.insert(
                key,
                Partial {
                    expires: now + TIMEOUT,
                    first_header: None,
                    total: None,
                    frags: BTreeMap::new(),
                    bytes: 0,
                    poisoned: false,
                },
            );
        }
        while self.bytes + len > MAX_BYTES && self.parts.len() > 1 {
            if !self.evict_oldest_except(key, stats) {
                break;
            }
        }
        if self.bytes + len > MAX_BYTES {
            stats.drop(DropReason::FragMemory);
            return None;
        }
        let p = self.parts.get_mut(&key)?;
        if p.poisoned {
            stats.drop(DropReason::FragOverlap);
            return None;
        }
        // Last-fragment consistency: all agree on where the datagram ends.
        let bad_total = match p.total {
            Some(t) => end > t || (!h.mf && end != t),
            None => !h.mf && p.frags.iter().any(|(o, f)| o + f.len() > end),
        };
        if bad_total {
            stats.drop(DropReason::FragInconsistent);
            return None;
        }
        for (&o, f) in p.frags.iter() {
            let o_end = o + f.len();
            if off < o_end && o < end {
                if o == off && f.len() == len && f[..] == d.payload[..] {
                    stats.drop(DropReason::FragDuplicate);
                    return None;
                }
                // Overlap: the datagram and everything held for it goes.
                let held = p.frags.len() as u64 + 1;
                stats.drops[DropReason::FragOverlap as usize] += held;
                self.bytes -= p.bytes;
                p.frags.clear();
                p.bytes = 0;
                p.first_header = None;
                p.poisoned = true;
                return None;
            }
        }
        if !h.mf {
            p.total = Some(end);
        }
        if off == 0 {
            p.first_header = Some(d.raw_header.to_vec());
        }
        p.frags.insert(off, d.payload.to_vec());
        p.bytes += len;
        self.bytes += len;

        let total = p.total?;
        let mut covered = 0;
        for (&o, f) in &p.frags {
            if o != covered {
                return None;
            }
            covered += f.len();
        }
        if covered != total {
            return None;
        }
        let p = self.parts.remove(&key)?;
        self.bytes -= p.bytes;
        let raw = p.first_header?;
        let mut payload = Vec::with_capacity(total);
        for f in p.frags.values() {
            payload.extend_from_slice(f);
        }
        let first = ipv4::parse_header_only(&raw)?;
        let e = ipv4::Emit {
            mf: false,
            frag_offset: 0,
            ..ipv4::Emit::from_header(&first)
        };
        Some(ipv4::emit(&e, &raw[ipv4::MIN_HEADER..], &payload))
    }

    fn evict_oldest(&mut self, stats: &mut Stats) {
        if let Some(k) = self
            .parts
            .iter()
            .min_by_key(|(_, p)| p.expires)
            .map(|(k, _)| *k)
        {
            self.discard(k, DropReason::FragMemory, stats);
        }
    }

    fn evict_oldest_except(&mut self, keep: Key, stats: &mut Stats) -> bool {
        let victim = self
            .parts
            .iter()
            .filter(|(k, p)| **k != keep && p.bytes > 0)
            .min_by_key(|(_, p)| p.expires)
            .map(|(k, _)| *k);
        match victim {
            Some(k) => {
                self.discard(k, DropReason::FragMemory, stats);
                true
            }
            None => false,
        }
    }

    fn discard(&mut self, k: Key, why: DropReason, stats: &mut Stats) -> Option<Partial> {
        let p = self.parts.remove(&k)?;
        self.bytes -= p.bytes;
        stats.drops[why as usize] += p.frags.len() as u64;
        Some(p)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.parts.values().map(|p| p.expires).min()
    }

    /// Drops timed-out datagrams; returns those that owe an ICMP time-exceeded.
    pub fn poll(&mut self, now: Instant, stats: &mut Stats) -> Vec<Expired> {
        let keys: Vec<Key> = self
            .parts
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(p) = self.discard(k, DropReason::FragTimeout, stats) {
                if let (Some(h), Some(f)) = (p.first_header, p.frags.get(&0)) {
                    let mut first = h;
                    first.extend_from_slice(&f[..f.len().min(8)]);
                    out.push(Expired { first });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::{emit, fragment, parse, Emit, PROTO_UDP};

    fn frags(len: usize, mtu: usize) -> (Vec<u8>, Vec<crate::wire::PacketBuf>) {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let d = emit(
            &Emit {
                tos: 0,
                id: 42,
                df: false,
                mf: false,
                frag_offset: 0,
                ttl: 64,
                proto: PROTO_UDP,
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(10, 0, 0, 2),
            },
            &[],
            &payload,
        );
        let f = fragment(&parse(&d).unwrap(), 64, mtu);
        (d, f)
    }

    #[test]
    fn out_of_order_fragments_reassemble() {
        let (whole, fs) = frags(4000, 1500);
        let mut r = Reassembly::default();
        let mut s = Stats::default();
        let now = Instant::now();
        assert!(r
            .insert(now, &parse(fs[2].data()).unwrap(), &mut s)
            .is_none());
        assert!(r
            .insert(now, &parse(fs[0].data()).unwrap(), &mut s)
            .is_none());
        let got = r
            .insert(now, &parse(fs[1].data()).unwrap(), &mut s)
            .unwrap();
        assert_eq!(got, whole);
        assert_eq!(r.in_progress(), 0);
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn overlap_discards_the_whole_datagram() {
        let (_, fs) = frags(4000, 1500);
        let (_, small) = frags(4000, 1004);
        let mut r = Reassembly::default();
        let mut s = Stats::default();
        let now = Instant::now();
        r.insert(now, &parse(fs[0].data()).unwrap(), &mut s);
        // A fragment starting inside the first one.
        r.insert(now, &parse(small[1].data()).unwrap(), &mut s);
        assert_eq!(s.drops_of(DropReason::FragOverlap), 2);
        // Later pieces of the same datagram are dropped too; nothing completes.
        assert!(r
            .insert(now, &parse(fs[1].data()).unwrap(), &mut s)
            .is_none());
        assert!(r
            .insert(now, &parse(fs[2].data()).unwrap(), &mut s)
            .is_none());
        assert_eq!(s.drops_of(DropReason::FragOverlap), 4);
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn timeout_drops_and_reports_first_fragment() {
        let (_, fs) = frags(4000, 1500);
        let mut r = Reassembly::default();
        let mut s = Stats::default();
        let now = Instant::now();
        r.insert(now, &parse(fs[0].data()).unwrap(), &mut s);
        r.insert(now, &parse(fs[1].data()).unwrap(), &mut s);
        assert!(r.poll(now + TIMEOUT / 2, &mut s).is_empty());
        let exp = r.poll(now + TIMEOUT, &mut s);
        assert_eq!(exp.len(), 1);
        assert_eq!(exp[0].first.len(), 28);
        assert_eq!(s.drops_of(DropReason::FragTimeout), 2);
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn memory_and_count_are_bounded() {
        let mut r = Reassembly::default();
        let mut s = Stats::default();
        let now = Instant::now();
        for id in 0..(MAX_DATAGRAMS as u16 * 3) {
            let (_, mut fs) = frags(4000, 1500);
            // Give each flood datagram its own id by rewriting the first fragment.
            let mut d = parse(fs.remove(0).data()).unwrap().header;
            d.id = id;
            let b = emit(&Emit::from_header(&d), &[], &[0u8; 1480]);
            r.insert(now, &parse(&b).unwrap(), &mut s);
        }
        assert!(r.parts.len() <= MAX_DATAGRAMS);
        assert!(r.bytes <= MAX_BYTES);
        assert!(s.drops_of(DropReason::FragMemory) > 0);
    }
}
