//! Reading records out of the ring, shared by ports (under the lock) and passive readers
//! (lock-free, validated afterwards). A scan copies a batch of records into private staging
//! memory; accounting then turns the batch into delivered frames and counters.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::format::{RecordHeader, RecordKind, RECORD_HEADER_SIZE};
use crate::port::Received;
use crate::ring::{Ring, Span};

/// Counters of one port or reader. Shared with [`crate::PortSender`] handles, hence atomics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub received: AtomicU64,
    pub received_bytes: AtomicU64,
    pub filtered: AtomicU64,
    pub lost: AtomicU64,
    pub corrupt: AtomicU64,
    pub resyncs: AtomicU64,
    pub lock_recoveries: AtomicU64,
    pub ring_resets: AtomicU64,
}

/// A point-in-time copy of a port's or reader's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames written to the bus.
    pub sent: u64,
    pub sent_bytes: u64,
    /// Frames delivered to the caller.
    pub received: u64,
    pub received_bytes: u64,
    /// Frames skipped by the destination-MAC filter.
    pub filtered: u64,
    /// Frames overwritten by writers before this reader got to them (it was lapped).
    pub lost: u64,
    /// Runt, oversize and torn records skipped.
    pub corrupt: u64,
    /// Times this reader was lapped and restarted at the oldest record.
    pub resyncs: u64,
    /// Times this port took over the lock of a holder that died.
    pub lock_recoveries: u64,
    /// Times this port found the ring corrupt and re-formatted it.
    pub ring_resets: u64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            sent: g(&self.sent),
            sent_bytes: g(&self.sent_bytes),
            received: g(&self.received),
            received_bytes: g(&self.received_bytes),
            filtered: g(&self.filtered),
            lost: g(&self.lost),
            corrupt: g(&self.corrupt),
            resyncs: g(&self.resyncs),
            lock_recoveries: g(&self.lock_recoveries),
            ring_resets: g(&self.ring_resets),
        }
    }
}

/// What a scan does with a frame record after reading its header and destination MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Deliver,
    /// Our own frame (same sender id): skipped silently, like NetBSD.
    Own,
    Filtered,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Item {
    Frame { start: usize, len: usize },
    Own,
    Filtered,
    Placeholder,
    Runt,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Staged {
    pub pos: u64,
    pub header: RecordHeader,
    pub item: Item,
}

/// Frames copied out of the ring, waiting to be handed to the caller.
pub(crate) struct Staging {
    /// Frame bytes; sized once so that scans never zero-fill.
    pub bytes: Vec<u8>,
    pub used: usize,
    pub records: Vec<Staged>,
    /// Index of the next record to hand out.
    pub next: usize,
}

/// Bytes of frame data one scan copies at most: bounds how long a port holds the lock.
pub(crate) const STAGING_BYTES: usize = 128 * 1024;
const STAGING_RECORDS: usize = 1024;

impl Staging {
    pub(crate) fn new() -> Self {
        Staging {
            bytes: vec![0; STAGING_BYTES + crate::format::MAX_FRAME],
            used: 0,
            records: Vec::with_capacity(STAGING_RECORDS),
            next: 0,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.used = 0;
        self.records.clear();
        self.next = 0;
    }

    /// Hands out the next staged frame (already accounted for), copying it into `buf`.
    pub(crate) fn deliver(&mut self, buf: &mut [u8]) -> Option<Received> {
        while let Some(rec) = self.records.get(self.next) {
            self.next += 1;
            if let Item::Frame { start, len } = rec.item {
                let n = len.min(buf.len());
                buf[..n].copy_from_slice(&self.bytes[start..start + n]);
                return Some(Received {
                    len: n,
                    frame_len: len,
                    sec: rec.header.sec,
                    usec: rec.header.usec,
                    sender: rec.header.sender,
                });
            }
        }
        None
    }

    /// Accounts for every staged record in ring order, updating the shared counters once.
    pub(crate) fn account(&self, cursor: &mut Cursor, counters: &Counters) {
        let mut tally = Tally::default();
        for rec in &self.records {
            cursor.account(rec, &mut tally);
        }
        tally.flush(counters);
    }
}

/// Counter increments of one batch, added to the shared atomics in one go.
#[derive(Default)]
pub(crate) struct Tally {
    received: u64,
    received_bytes: u64,
    filtered: u64,
    lost: u64,
    corrupt: u64,
}

impl Tally {
    fn flush(&self, c: &Counters) {
        for (n, counter) in [
            (self.received, &c.received),
            (self.received_bytes, &c.received_bytes),
            (self.filtered, &c.filtered),
            (self.lost, &c.lost),
            (self.corrupt, &c.corrupt),
        ] {
            if n > 0 {
                Counters::add(counter, n);
            }
        }
    }
}

/// Why a scan stopped before the end of the live data.
#[derive(Clone, Debug)]
pub(crate) struct BadRecord {
    pub pos: u64,
}

/// Reads records from `pos` towards `span.end` into `staging`. Returns where the scan stopped
/// and, if it met a record that cannot be walked past, where that record is.
pub(crate) fn scan(
    ring: &Ring<'_>,
    span: Span,
    mut pos: u64,
    staging: &mut Staging,
    verdict: &dyn Fn(&RecordHeader, &[u8; 6]) -> Verdict,
) -> (u64, Option<BadRecord>) {
    let size = ring.size() as u64;
    while pos < span.end && staging.used < STAGING_BYTES && staging.records.len() < STAGING_RECORDS
    {
        let off = (pos % size) as u32;
        let header = ring.read_header(off);
        let end = pos + RECORD_HEADER_SIZE as u64 + header.len as u64;
        let kind = RecordHeader::classify_len(header.len);
        if kind == RecordKind::Oversize || end > span.end {
            return (pos, Some(BadRecord { pos }));
        }
        let body_off = ring.advance(off, RECORD_HEADER_SIZE as u32);
        let item = match kind {
            RecordKind::Placeholder => Item::Placeholder,
            RecordKind::Runt => Item::Runt,
            _ => {
                let mut dst = [0u8; 6];
                let mut wrapped = false;
                ring.read(body_off, &mut dst, &mut wrapped);
                match verdict(&header, &dst) {
                    Verdict::Own => Item::Own,
                    Verdict::Filtered => Item::Filtered,
                    Verdict::Deliver => {
                        let start = staging.used;
                        let len = header.len as usize;
                        staging.used += len;
                        ring.read(
                            body_off,
                            &mut staging.bytes[start..start + len],
                            &mut wrapped,
                        );
                        Item::Frame { start, len }
                    }
                }
            }
        };
        staging.records.push(Staged { pos, header, item });
        pos = end;
    }
    (pos, None)
}

/// A reader's place in the ring and what it knows about record numbering.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Absolute position of the next record to read.
    pub pos: u64,
    /// Sequence number of the last record seen, if it came from an unbroken run.
    pub last_seq: Option<u32>,
    /// The next record is not the successor of `last_seq`: it follows a jump.
    pub jumped_from: Option<u64>,
}

impl Cursor {
    /// Moves to the oldest record after being lapped.
    pub(crate) fn resync(&mut self, span_first: u64, counters: &Counters) {
        Counters::add(&counters.resyncs, 1);
        self.jumped_from.get_or_insert(self.pos);
        self.pos = span_first;
    }

    /// Accounts for one record in ring order.
    /// Losses are counted from the gap in sequence numbers after a jump, when the gap is
    /// plausible for the bytes skipped (NetBSD writers leave garbage where our numbers live).
    fn account(&mut self, rec: &Staged, tally: &mut Tally) {
        let seq = rec.header.seq;
        if let (Some(from), Some(prev)) = (self.jumped_from.take(), self.last_seq) {
            let gap = seq.wrapping_sub(prev) as u64;
            // A placeholder repeats the number of the last frame; a frame follows it.
            let missing = match rec.item {
                Item::Placeholder => gap,
                _ => gap.saturating_sub(1),
            };
            let max_plausible = rec.pos.saturating_sub(from) / RECORD_HEADER_SIZE as u64 + 1;
            if missing <= max_plausible {
                tally.lost += missing;
            }
        }
        self.last_seq = Some(seq);
        match rec.item {
            Item::Frame { len, .. } => {
                tally.received += 1;
                tally.received_bytes += len as u64;
            }
            Item::Runt => tally.corrupt += 1,
            Item::Filtered => tally.filtered += 1,
            Item::Own | Item::Placeholder => {}
        }
    }
}

/// Polls for a newly published record for up to `window` before a reader goes to sleep: while
/// traffic flows this saves the writer a FUTEX_WAKE and the reader a sleep per frame.
pub(crate) fn spin_for_news(bus: &crate::Bus, pos: u64, window: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        if crate::port::has_news(bus, pos) {
            return true;
        }
        if start.elapsed() >= window {
            return false;
        }
        for _ in 0..64 {
            std::hint::spin_loop();
        }
    }
}
