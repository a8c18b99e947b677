//! Reassembly (RFC 791 and RFC 8200 4.5, RFC 815 style bookkeeping) for both families, with
//! a timeout, memory bounds and RFC 5722's rule (carried over to IPv4): a datagram with
//! overlapping fragments is discarded whole, including fragments of it that arrive later.
//! One engine keyed per family; the family wrappers say what a fragment is and rebuild the
//! header of the whole datagram.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::stats::{DropReason, Stats};
use crate::wire::ipv4::{self, Datagram, MAX_DATAGRAM};

/// NetBSD's ipfragttl is 60 half-second ticks; RFC 8200 4.5 says 60 s for IPv6.
pub const TIMEOUT: Duration = Duration::from_secs(30);
pub const TIMEOUT6: Duration = Duration::from_secs(60);
/// Datagrams under reassembly at once (per family).
pub const MAX_DATAGRAMS: usize = 64;
/// Payload bytes held across all of them (per family).
pub const MAX_BYTES: usize = 1 << 20;

#[derive(Debug)]
struct Partial {
    expires: Instant,
    /// What precedes the fragmentable part in the offset-0 fragment (the IPv4 header, or the
    /// IPv6 header and extension headers before the fragment header), once it arrived.
    first_header: Option<Vec<u8>>,
    /// Payload length, once the last fragment arrived.
    total: Option<usize>,
    frags: BTreeMap<usize, Vec<u8>>,
    bytes: usize,
    /// Set after an overlap: later fragments are dropped until the entry expires.
    poisoned: bool,
}

/// A datagram whose reassembly timed out with its first fragment present: the stack owes the
/// sender a time-exceeded (reassembly) quoting it.
pub struct Expired {
    pub first: Vec<u8>,
}

/// The drop reasons of one family.
struct Reasons {
    bad_length: DropReason,
    too_big: DropReason,
    overlap: DropReason,
    duplicate: DropReason,
    inconsistent: DropReason,
    timeout: DropReason,
    memory: DropReason,
}

const REASONS4: Reasons = Reasons {
    bad_length: DropReason::FragBadLength,
    too_big: DropReason::FragTooBig,
    overlap: DropReason::FragOverlap,
    duplicate: DropReason::FragDuplicate,
    inconsistent: DropReason::FragInconsistent,
    timeout: DropReason::FragTimeout,
    memory: DropReason::FragMemory,
};

const REASONS6: Reasons = Reasons {
    bad_length: DropReason::Frag6BadLength,
    too_big: DropReason::Frag6TooBig,
    overlap: DropReason::Frag6Overlap,
    duplicate: DropReason::Frag6Duplicate,
    inconsistent: DropReason::Frag6Inconsistent,
    timeout: DropReason::Frag6Timeout,
    memory: DropReason::Frag6Memory,
};

/// One fragment, family-neutral.
struct Piece<'a> {
    offset: usize,
    more: bool,
    data: &'a [u8],
    /// The bytes before the fragmentable part (kept from the offset-0 fragment).
    first_header: &'a [u8],
    /// Largest payload the family's datagram can carry after `first_header`.
    max_payload: usize,
}

#[derive(Debug)]
struct Engine<K> {
    parts: HashMap<K, Partial>,
    bytes: usize,
    timeout: Duration,
}

impl<K: Copy + Eq + Hash> Engine<K> {
    fn new(timeout: Duration) -> Self {
        Engine {
            parts: HashMap::new(),
            bytes: 0,
            timeout,
        }
    }

    fn in_progress(&self) -> usize {
        self.parts.values().filter(|p| !p.poisoned).count()
    }

    /// Adds a fragment; returns (first header, payload) when the datagram completes.
    fn insert(
        &mut self,
        now: Instant,
        key: K,
        f: &Piece<'_>,
        why: &Reasons,
        stats: &mut Stats,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let off = f.offset;
        let len = f.data.len();
        let end = off + len;
        if end > f.max_payload {
            stats.drop(why.too_big);
            return None;
        }
        if f.more && (!len.is_multiple_of(8) || len == 0) {
            stats.drop(why.bad_length);
            return None;
        }
        if !self.parts.contains_key(&key) {
            if self.parts.len() >= MAX_DATAGRAMS {
                self.evict_oldest_except(None, why, stats);
            }
            self.parts.insert(
                key,
                Partial {
                    expires: now + self.timeout,
                    first_header: None,
                    total: None,
                    frags: BTreeMap::new(),
                    bytes: 0,
                    poisoned: false,
                },
            );
        }
        while self.bytes + len > MAX_BYTES && self.parts.len() > 1 {
            if !self.evict_oldest_except(Some(key), why, stats) {
                break;
            }
        }
        if self.bytes + len > MAX_BYTES {
            stats.drop(why.memory);
            return None;
        }
        let p = self.parts.get_mut(&key)?;
        if p.poisoned {
            stats.drop(why.overlap);
            return None;
        }
        // Last-fragment consistency: all agree on where the datagram ends.
        let bad_total = match p.total {
            Some(t) => end > t || (!f.more && end != t),
            None => !f.more && p.frags.iter().any(|(o, x)| o + x.len() > end),
        };
        if bad_total {
            stats.drop(why.inconsistent);
            return None;
        }
        for (&o, x) in p.frags.iter() {
            let o_end = o + x.len();
            if off < o_end && o < end {
                if o == off && x.len() == len && x[..] == f.data[..] {
                    stats.drop(why.duplicate);
                    return None;
                }
                // Overlap: the datagram and everything held for it goes.
                let held = p.frags.len() as u64 + 1;
                stats.drops[why.overlap as usize] += held;
                self.bytes -= p.bytes;
                p.frags.clear();
                p.bytes = 0;
                p.first_header = None;
                p.poisoned = true;
                return None;
            }
        }
        if !f.more {
            p.total = Some(end);
        }
        if off == 0 {
            p.first_header = Some(f.first_header.to_vec());
        }
        p.frags.insert(off, f.data.to_vec());
        p.bytes += len;
        self.bytes += len;

        let total = p.total?;
        let mut covered = 0;
        for (&o, x) in &p.frags {
            if o != covered {
                return None;
            }
            covered += x.len();
        }
        if covered != total {
            return None;
        }
        let p = self.parts.remove(&key)?;
        self.bytes -= p.bytes;
        let first = p.first_header?;
        let mut payload = Vec::with_capacity(total);
        for x in p.frags.values() {
            payload.extend_from_slice(x);
        }
        Some((first, payload))
    }

    fn evict_oldest_except(&mut self, keep: Option<K>, why: &Reasons, stats: &mut Stats) -> bool {
        let victim = self
            .parts
            .iter()
            .filter(|(k, p)| Some(**k) != keep && (keep.is_none() || p.bytes > 0))
            .min_by_key(|(_, p)| p.expires)
            .map(|(k, _)| *k);
        match victim {
            Some(k) => {
                self.discard(k, why.memory, stats);
                true
            }
            None => false,
        }
    }

    fn discard(&mut self, k: K, why: DropReason, stats: &mut Stats) -> Option<Partial> {
        let p = self.parts.remove(&k)?;
        self.bytes -= p.bytes;
        stats.drops[why as usize] += p.frags.len() as u64;
        Some(p)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.parts.values().map(|p| p.expires).min()
    }

    /// Drops timed-out datagrams; returns the starts of those that owe a time-exceeded.
    fn poll(&mut self, now: Instant, why: &Reasons, stats: &mut Stats) -> Vec<Expired> {
        let keys: Vec<K> = self
            .parts
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(p) = self.discard(k, why.timeout, stats) {
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

type Key4 = (Ipv4Addr, Ipv4Addr, u8, u16);

/// IPv4 reassembly.
#[derive(Debug)]
pub struct Reassembly {
    engine: Engine<Key4>,
}

impl Default for Reassembly {
    fn default() -> Self {
        Reassembly {
            engine: Engine::new(TIMEOUT),
        }
    }
}

impl Reassembly {
    pub fn in_progress(&self) -> usize {
        self.engine.in_progress()
    }

    /// Adds a fragment; returns the whole datagram (header + payload) when it completes.
    pub fn insert(&mut self, now: Instant, d: &Datagram<'_>, stats: &mut Stats) -> Option<Vec<u8>> {
        let h = &d.header;
        let piece = Piece {
            offset: h.frag_offset,
            more: h.mf,
            data: d.payload,
            first_header: d.raw_header,
            max_payload: MAX_DATAGRAM - h.header_len,
        };
        let key = (h.src, h.dst, h.proto, h.id);
        let (raw, payload) = self.engine.insert(now, key, &piece, &REASONS4, stats)?;
        let first = ipv4::parse_header_only(&raw)?;
        let e = ipv4::Emit {
            mf: false,
            frag_offset: 0,
            ..ipv4::Emit::from_header(&first)
        };
        Some(ipv4::emit(&e, &raw[ipv4::MIN_HEADER..], &payload))
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.engine.next_deadline()
    }

    /// Drops timed-out datagrams; returns those that owe an ICMP time-exceeded.
    pub fn poll(&mut self, now: Instant, stats: &mut Stats) -> Vec<Expired> {
        self.engine.poll(now, &REASONS4, stats)
    }
}

type Key6 = (Ipv6Addr, Ipv6Addr, u32);

/// An IPv6 fragment as the extension-header walk found it.
pub struct Fragment6<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub id: u32,
    pub offset: usize,
    pub more: bool,
    /// The unfragmentable part: the IPv6 header and extension headers before the fragment
    /// header, with the next-header field that pointed at the fragment header already set to
    /// the fragment header's next header.
    pub unfragmentable: &'a [u8],
    /// The fragment's data (after the fragment header).
    pub data: &'a [u8],
}

/// IPv6 reassembly.
#[derive(Debug)]
pub struct Reassembly6 {
    engine: Engine<Key6>,
}

impl Default for Reassembly6 {
    fn default() -> Self {
        Reassembly6 {
            engine: Engine::new(TIMEOUT6),
        }
    }
}

impl Reassembly6 {
    pub fn in_progress(&self) -> usize {
        self.engine.in_progress()
    }

    /// Adds a fragment; returns the whole packet (headers + payload, payload length set)
    /// when it completes.
    pub fn insert(
        &mut self,
        now: Instant,
        f: &Fragment6<'_>,
        stats: &mut Stats,
    ) -> Option<Vec<u8>> {
        let piece = Piece {
            offset: f.offset,
            more: f.more,
            data: f.data,
            first_header: f.unfragmentable,
            max_payload: (0xffff + 40usize).saturating_sub(f.unfragmentable.len()),
        };
        let (mut whole, payload) =
            self.engine
                .insert(now, (f.src, f.dst, f.id), &piece, &REASONS6, stats)?;
        whole.extend_from_slice(&payload);
        let plen = whole.len().checked_sub(40)?;
        whole
            .get_mut(4..6)?
            .copy_from_slice(&(plen as u16).to_be_bytes());
        Some(whole)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.engine.next_deadline()
    }

    /// Drops timed-out packets; returns those that owe an ICMPv6 time-exceeded, each a
    /// packet of its own (payload length set to what is quoted).
    pub fn poll(&mut self, now: Instant, stats: &mut Stats) -> Vec<Expired> {
        let mut v = self.engine.poll(now, &REASONS6, stats);
        for e in &mut v {
            let plen = e.first.len().saturating_sub(40) as u16;
            if let Some(f) = e.first.get_mut(4..6) {
                f.copy_from_slice(&plen.to_be_bytes());
            }
        }
        v
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
        assert_eq!(r.engine.bytes, 0);
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
        assert_eq!(r.engine.bytes, 0);
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
        assert_eq!(r.engine.bytes, 0);
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
        assert!(r.engine.parts.len() <= MAX_DATAGRAMS);
        assert!(r.engine.bytes <= MAX_BYTES);
        assert!(s.drops_of(DropReason::FragMemory) > 0);
    }
}
