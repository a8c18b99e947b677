//! Ring arithmetic over the mapped bus: NetBSD's `shmif_busread`, `shmif_buswrite`,
//! `shmif_advancefirst` and `shmif_nextpktoff`, plus our guards against corrupt records.
//!
//! Positions are tracked two ways. Ring offsets (`u32`, `0..data_size`) are what the header
//! stores. Absolute positions (`u64`) count bytes since the ring was formatted:
//! `gen * data_size + offset`. NetBSD keeps a reader's `(nextpacket, devgen)` pair; an absolute
//! position is the same pair folded into one number, which makes "was I lapped?" a comparison.

use std::sync::atomic::Ordering;

use crate::format::{RecordHeader, RecordKind, MAX_FRAME, OFF_FIRST, OFF_LAST, RECORD_HEADER_SIZE};
use crate::memory::BusMemory;

/// Generations past this are garbage: a 1 MiB ring wrapped once a microsecond takes 35 years
/// to get here, and absolute positions (`gen * size + offset`) stay far from overflow.
const MAX_GEN: u64 = 1 << 40;

/// A header field or record that cannot be right; the ring must not be walked past it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corrupt(pub String);

/// `gen`, `first` and `last` read together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderSnapshot {
    pub gen: u64,
    pub first: u32,
    pub last: u32,
}

/// The live part of the ring, in absolute positions: records start at `first` and the newest one
/// ends at `end`. A reader at `pos` is intact iff `first <= pos <= end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub first: u64,
    pub end: u64,
}

pub(crate) struct Ring<'a> {
    mem: &'a BusMemory,
    size: u32,
}

impl<'a> Ring<'a> {
    pub(crate) fn new(mem: &'a BusMemory) -> Self {
        Ring {
            mem,
            size: mem.data_size(),
        }
    }

    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// Reads the three ring fields. Consistent only under the bus lock.
    pub(crate) fn snapshot(&self) -> HeaderSnapshot {
        HeaderSnapshot {
            gen: self.mem.gen_word().load(Ordering::Acquire),
            first: self.mem.word(OFF_FIRST).load(Ordering::Acquire),
            last: self.mem.word(OFF_LAST).load(Ordering::Acquire),
        }
    }

    /// `gen` alone.
    pub(crate) fn gen(&self) -> u64 {
        self.mem.gen_word().load(Ordering::Acquire)
    }

    /// Whether the bus header was initialised (a zero magic means nobody has yet).
    pub(crate) fn magic_set(&self) -> bool {
        self.mem
            .word(crate::format::OFF_MAGIC)
            .load(Ordering::Acquire)
            != 0
    }

    /// `last` alone, for lock-free readers that navigate by record numbers.
    pub(crate) fn last(&self) -> u32 {
        self.mem.word(OFF_LAST).load(Ordering::Acquire)
    }

    /// The oldest intact record (ring offset and header), read without the lock: the header is
    /// trusted only if `first` did not move while it was read (writers move `first` past a
    /// record before overwriting it).
    pub(crate) fn oldest(&self) -> Option<(u32, RecordHeader)> {
        let first = self.mem.word(OFF_FIRST);
        for _ in 0..256 {
            let f = first.load(Ordering::Acquire);
            // The never-wrapped sentinel (or garbage, which a writer will repair): offset 0.
            let off = if f >= self.size { 0 } else { f };
            let header = self.read_header(off);
            std::sync::atomic::fence(Ordering::Acquire);
            if first.load(Ordering::Acquire) == f {
                return Some((off, header));
            }
            std::hint::spin_loop();
        }
        None
    }

    pub(crate) fn store(&self, snap: &HeaderSnapshot) {
        self.mem
            .word(OFF_FIRST)
            .store(snap.first, Ordering::Release);
        self.mem.word(OFF_LAST).store(snap.last, Ordering::Release);
        self.mem.gen_word().store(snap.gen, Ordering::Release);
    }

    /// `shmif_advance`: `off` may equal `size` (meaning 0).
    pub(crate) fn advance(&self, off: u32, delta: u32) -> u32 {
        let n = off as u64 + delta as u64;
        if n >= self.size as u64 {
            (n - self.size as u64) as u32
        } else {
            n as u32
        }
    }

    /// `shmif_busread`: copies `dst.len()` bytes starting at `off`, continuing at 0 past the end.
    /// Sets `wrapped` when the read reaches the end of the ring.
    pub(crate) fn read(&self, off: u32, dst: &mut [u8], wrapped: &mut bool) -> u32 {
        debug_assert!(off <= self.size && dst.len() < self.size as usize / 2);
        let chunk = dst.len().min((self.size - off) as usize);
        self.mem.copy_out(off, &mut dst[..chunk]);
        let end = off as usize + chunk;
        if end == self.size as usize {
            *wrapped = true;
        }
        if chunk == dst.len() {
            return (end % self.size as usize) as u32;
        }
        let rest = dst.len() - chunk;
        self.mem.copy_out(0, &mut dst[chunk..]);
        rest as u32
    }

    pub(crate) fn read_header(&self, off: u32) -> RecordHeader {
        let mut raw = [0u8; RECORD_HEADER_SIZE];
        let mut wrapped = false;
        self.read(off, &mut raw, &mut wrapped);
        RecordHeader::decode(&raw)
    }

    /// `shmif_nextpktoff`, refusing lengths no honest writer produces (NetBSD asserts instead).
    pub(crate) fn next_record(&self, off: u32) -> Result<u32, Corrupt> {
        let hdr = self.read_header(off);
        if hdr.len as usize > MAX_FRAME {
            return Err(Corrupt(format!(
                "record at ring offset {off:#x} has length {} (max {MAX_FRAME})",
                hdr.len
            )));
        }
        Ok(self.advance(off, RECORD_HEADER_SIZE as u32 + hdr.len))
    }

    /// `shmif_buswrite`: stores `src` at `off`, first moving `first` past every record the write
    /// will overwrite. Callers hold the lock and publish `last`/`gen` only after the whole record
    /// is in place, so a writer that dies here leaves the previous newest record intact.
    pub(crate) fn write(
        &self,
        hdr: &mut HeaderSnapshot,
        off: u32,
        src: &[u8],
        wrapped: &mut bool,
    ) -> Result<u32, Corrupt> {
        debug_assert!(off <= self.size && src.len() < self.size as usize / 2);
        let chunk = src.len().min((self.size - off) as usize);
        let filled = off as usize + chunk == self.size as usize;
        self.advance_first(hdr, off, chunk as u32 + filled as u32)?;
        if chunk > 0 {
            self.mem.copy_in(off, &src[..chunk]);
        }
        if filled {
            *wrapped = true;
        }
        if chunk == src.len() {
            return Ok(((off as usize + chunk) % self.size as usize) as u32);
        }
        let rest = &src[chunk..];
        self.advance_first(hdr, 0, rest.len() as u32)?;
        self.mem.copy_in(0, rest);
        Ok(rest.len() as u32)
    }

    /// `shmif_advancefirst`, published to the header at once: lock-free readers rely on `first`
    /// moving past a record before any byte of it is overwritten.
    fn advance_first(&self, hdr: &mut HeaderSnapshot, off: u32, len: u32) -> Result<(), Corrupt> {
        let first_word = self.mem.word(OFF_FIRST);
        // Every pass drops at least one 24-byte record, so more passes than this means a cycle.
        let mut budget = self.size / RECORD_HEADER_SIZE as u32 + 2;
        while off as u64 <= hdr.first as u64 + RECORD_HEADER_SIZE as u64
            && off as u64 + len as u64 > hdr.first as u64
        {
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| Corrupt("record chain from first never ends".into()))?;
            hdr.first = self.next_record(hdr.first)?;
            first_word.store(hdr.first, Ordering::Release);
            // The new `first` must be visible before any byte of the dropped record is
            // overwritten. Stores are not reordered with stores on x86 (TSO), so this only has to
            // stop the compiler; other architectures get the barrier they need from it.
            std::sync::atomic::fence(Ordering::Release);
        }
        Ok(())
    }

    /// The live span of the ring for a consistent snapshot.
    pub(crate) fn span(&self, hdr: &HeaderSnapshot) -> Result<Span, Corrupt> {
        if hdr.first > self.size || hdr.last >= self.size {
            return Err(Corrupt(format!(
                "firstoff {:#x} / lastoff {:#x} outside a ring of {:#x} bytes",
                hdr.first, hdr.last, self.size
            )));
        }
        if hdr.gen > MAX_GEN {
            return Err(Corrupt(format!(
                "generation {} is beyond any a writer reaches",
                hdr.gen
            )));
        }
        let end_off = self.next_record(hdr.last)?;
        let size = self.size as u64;
        let base = hdr.gen * size;
        let end = base + end_off as u64;
        let first = if hdr.first == self.size {
            // Never wrapped since the ring was formatted: live data starts at offset 0.
            base
        } else if hdr.first >= end_off {
            if hdr.gen == 0 {
                return Err(Corrupt(format!(
                    "firstoff {:#x} is past the newest record's end {:#x} but generation is 0",
                    hdr.first, end_off
                )));
            }
            base - size + hdr.first as u64
        } else {
            base + hdr.first as u64
        };
        if first > end {
            return Err(Corrupt(format!(
                "firstoff {:#x} is past the newest record",
                hdr.first
            )));
        }
        Ok(Span { first, end })
    }

    /// Walks every record from `first` and checks the chain lands exactly on `last`.
    pub(crate) fn validate(&self, hdr: &HeaderSnapshot) -> Result<Span, Corrupt> {
        let span = self.span(hdr)?;
        let size = self.size as u64;
        let mut pos = span.first;
        let mut budget = self.size / RECORD_HEADER_SIZE as u32 + 2;
        while pos < span.end {
            let off = (pos % size) as u32;
            let len = self.read_header(off).len;
            if RecordHeader::classify_len(len) == RecordKind::Oversize {
                return Err(Corrupt(format!(
                    "record at ring offset {off:#x} has length {len} (max {MAX_FRAME})"
                )));
            }
            pos += (RECORD_HEADER_SIZE as u32 + len) as u64;
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| Corrupt("record chain never reaches lastoff".into()))?;
        }
        if pos != span.end {
            return Err(Corrupt(format!(
                "record chain from firstoff {:#x} overshoots the end of lastoff {:#x}",
                hdr.first, hdr.last
            )));
        }
        Ok(span)
    }

    /// Re-formats the ring after corruption: a placeholder record at offset 0 carrying the last
    /// sequence number, `first` back at the never-wrapped sentinel, and a new generation so
    /// every reader resynchronises. Everything that was in the ring is given up.
    pub(crate) fn reset(&self, hdr: &mut HeaderSnapshot, last_seq: u32) {
        let placeholder = RecordHeader {
            seq: last_seq,
            ..RecordHeader::default()
        };
        self.mem.copy_in(0, &placeholder.encode());
        *hdr = HeaderSnapshot {
            // A new generation makes every reader restart; a garbage one starts over at 0.
            gen: if hdr.gen < MAX_GEN { hdr.gen + 1 } else { 0 },
            first: self.size,
            last: 0,
        };
        self.store(hdr);
    }
}
