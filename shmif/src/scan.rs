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
    fn record(&mut self, item: &Item) {
        match *item {
            Item::Frame { len, .. } => {
                self.received += 1;
                self.received_bytes += len as u64;
            }
            Item::Runt => self.corrupt += 1,
            Item::Filtered => self.filtered += 1,
            Item::Own | Item::Placeholder => {}
        }
    }

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
        let item = stage_record(ring, &header, kind, body_off, staging, verdict);
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
        tally.record(&rec.item);
    }
}

/// Polls for a newly published record for up to `window` before a reader goes to sleep: while
/// traffic flows this saves the writer a FUTEX_WAKE and the reader a sleep per frame.
pub(crate) fn spin_for_news(news: &dyn Fn() -> bool, window: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        if news() {
            return true;
        }
        if start.elapsed() >= window {
            return false;
        }
        // Yield rather than spin: on a small machine the thread that will answer (a node's
        // stack thread, the writer) often needs this very CPU.
        std::thread::yield_now();
    }
}

/// A lock-free reader's place, by record number: shmlab writers number records consecutively,
/// so "is the record at my offset the one I expect?" tells whether a writer lapped this reader,
/// without the generation counter and without waiting for the lock.
#[derive(Debug, Default)]
pub(crate) struct SeqCursor {
    /// Ring offset of the next record to read.
    pub off: u32,
    /// Number of the last record read (a placeholder repeats the number before it).
    pub last_seq: u32,
    /// False after being lapped: the next scan restarts from the oldest intact records.
    pub synced: bool,
    /// Number of the last record accounted for, the base of loss counting.
    pub accounted: Option<u32>,
}

impl SeqCursor {
    /// Positions after the newest record, as a freshly attached port starts.
    pub(crate) fn at_newest(ring: &Ring<'_>) -> SeqCursor {
        for _ in 0..16 {
            let Some((last, newest)) = newest_record(ring) else {
                continue;
            };
            if RecordHeader::classify_len(newest.len) != RecordKind::Oversize {
                return SeqCursor {
                    off: ring.advance(last, RECORD_HEADER_SIZE as u32 + newest.len),
                    last_seq: newest.seq,
                    synced: true,
                    accounted: Some(newest.seq),
                };
            }
        }
        SeqCursor::default()
    }

    /// Whether a writer has published a record this cursor has not read.
    pub(crate) fn has_news(&self, ring: &Ring<'_>) -> bool {
        !self.synced || ring.read_header(ring.last()).seq != self.last_seq
    }

    /// Restarts after being lapped, in the newer half of the live records: restarting at the
    /// very oldest one would put the reader exactly where writers overwrite next.
    fn resync(&mut self, ring: &Ring<'_>, end_off: u32, counters: &Counters) -> bool {
        let Some((mut off, mut header)) = ring.oldest() else {
            return false;
        };
        Counters::add(&counters.resyncs, 1);
        let size = ring.size();
        let behind = |o: u32| match (end_off + size - o) % size {
            0 => size,
            d => d,
        };
        // Never go back over records already accounted for (a false alarm, such as a torn
        // snapshot, must not deliver duplicates), and skip the older half of the ring.
        let accounted = self.accounted;
        let seen = |h: &RecordHeader| accounted.is_some_and(|a| !before(a, h.seq));
        let mut budget = size / RECORD_HEADER_SIZE as u32;
        while (seen(&header) || behind(off) > size / 2) && budget > 0 {
            if RecordHeader::classify_len(header.len) == RecordKind::Oversize {
                break;
            }
            let next = ring.advance(off, RECORD_HEADER_SIZE as u32 + header.len);
            let next_header = ring.read_header(next);
            if next_header.seq != header.seq.wrapping_add(1) {
                break;
            }
            (off, header) = (next, next_header);
            budget -= 1;
        }
        self.off = off;
        self.last_seq = if header.len == 0 {
            header.seq
        } else {
            header.seq.wrapping_sub(1)
        };
        self.synced = true;
        true
    }

    /// Accounts for one record: losses are the gaps in record numbers.
    fn account(&mut self, rec: &Staged, tally: &mut Tally) {
        let seq = rec.header.seq;
        if let Some(prev) = self.accounted {
            let gap = seq.wrapping_sub(prev);
            let missing = match rec.item {
                Item::Placeholder => gap,
                _ => gap.wrapping_sub(1),
            };
            // A backwards step (a foreign writer's garbage number) is not a loss.
            if (missing as i32) > 0 {
                tally.lost += missing as u64;
            }
        }
        self.accounted = Some(seq);
        tally.record(&rec.item);
    }
}

/// Copies the records published since `cur` into `staging` without the lock, then discards
/// those a writer may have overwritten meanwhile (everything numbered before the oldest intact
/// record) and accounts for the rest. Returns whether the caller should look again at once.
pub(crate) fn scan_unlocked(
    ring: &Ring<'_>,
    cur: &mut SeqCursor,
    staging: &mut Staging,
    verdict: &dyn Fn(&RecordHeader, &[u8; 6]) -> Verdict,
    counters: &Counters,
) -> bool {
    let Some((last, newest)) = newest_record(ring) else {
        // Writers are publishing faster than we can look: come back.
        return true;
    };
    if RecordHeader::classify_len(newest.len) == RecordKind::Oversize {
        // Mid-repair or scribbled on: the next writer re-formats the ring.
        return false;
    }
    if cur.synced && newest.seq == cur.last_seq {
        return false;
    }
    let end_off = ring.advance(last, RECORD_HEADER_SIZE as u32 + newest.len);
    let mut restarted = false;
    if !cur.synced {
        if !cur.resync(ring, end_off, counters) {
            return false;
        }
        restarted = true;
    }
    let mut corrupt = 0;
    let mut skipped_to = None;
    while cur.last_seq != newest.seq
        && staging.used < STAGING_BYTES
        && staging.records.len() < STAGING_RECORDS
    {
        let header = ring.read_header(cur.off);
        let expected = header.seq == cur.last_seq.wrapping_add(1)
            || (header.len == 0 && header.seq == cur.last_seq);
        if !expected {
            let lapped = match ring.oldest() {
                Some((_, oldest)) => before(cur.last_seq, keep_bound(&oldest)),
                None => true,
            };
            if !lapped {
                // The record we expect is still live, so it was not overwritten: the chain is
                // broken (a foreign writer scribbled on the ring). Skip to after the newest.
                corrupt += 1;
                cur.off = end_off;
                cur.last_seq = newest.seq;
                skipped_to = Some(newest.seq);
                break;
            }
            if restarted || !cur.resync(ring, end_off, counters) {
                // Writers outrun us even right after a restart: try again next time.
                cur.synced = false;
                break;
            }
            restarted = true;
            continue;
        }
        let kind = RecordHeader::classify_len(header.len);
        if kind == RecordKind::Oversize {
            // Numbered right but unwalkable: skip to after the newest record.
            corrupt += 1;
            cur.off = end_off;
            cur.last_seq = newest.seq;
            skipped_to = Some(newest.seq);
            break;
        }
        let body_off = ring.advance(cur.off, RECORD_HEADER_SIZE as u32);
        let item = stage_record(ring, &header, kind, body_off, staging, verdict);
        staging.records.push(Staged {
            pos: 0,
            header,
            item,
        });
        cur.off = ring.advance(cur.off, RECORD_HEADER_SIZE as u32 + header.len);
        cur.last_seq = header.seq;
    }
    // Keep only what was still intact after the copy.
    match ring.oldest().map(|(_, h)| keep_bound(&h)) {
        Some(bound) => {
            let stale = staging
                .records
                .iter()
                .take_while(|r| before(r.header.seq, bound))
                .count();
            staging.records.drain(..stale);
            if before(cur.last_seq, bound) {
                cur.synced = false;
            }
        }
        None => {
            staging.records.clear();
            cur.synced = false;
        }
    }
    if corrupt > 0 {
        Counters::add(&counters.corrupt, corrupt);
    }
    let mut tally = Tally::default();
    for rec in &staging.records {
        cur.account(rec, &mut tally);
    }
    if let (Some(to), Some(from)) = (skipped_to, cur.accounted) {
        // Records jumped over are lost now, not when (if ever) a later one arrives.
        let gap = to.wrapping_sub(from);
        if (gap as i32) > 0 {
            tally.lost += gap as u64;
            cur.accounted = Some(to);
        }
    }
    tally.flush(counters);
    true
}

/// The newest record and its offset, read so that they belong together: `last` must not move
/// while its header is read (else a writer that lapped the ring meanwhile may have put other
/// bytes there, even a record still being written).
fn newest_record(ring: &Ring<'_>) -> Option<(u32, RecordHeader)> {
    let mut last = ring.last();
    for _ in 0..64 {
        let header = ring.read_header(last);
        std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
        let again = ring.last();
        if again == last {
            return Some((last, header));
        }
        last = again;
    }
    None
}

/// Records numbered before this are no longer guaranteed intact, given the oldest intact
/// record (a placeholder repeats the number of the frame before it).
fn keep_bound(oldest: &RecordHeader) -> u32 {
    if oldest.len == 0 {
        oldest.seq.wrapping_add(1)
    } else {
        oldest.seq
    }
}

/// Whether record number `seq` comes before `bound` (numbers wrap).
fn before(seq: u32, bound: u32) -> bool {
    (seq.wrapping_sub(bound) as i32) < 0
}

/// Copies one record's frame into staging if the verdict wants it delivered.
fn stage_record(
    ring: &Ring<'_>,
    header: &RecordHeader,
    kind: RecordKind,
    body_off: u32,
    staging: &mut Staging,
    verdict: &dyn Fn(&RecordHeader, &[u8; 6]) -> Verdict,
) -> Item {
    match kind {
        RecordKind::Placeholder => Item::Placeholder,
        RecordKind::Runt => Item::Runt,
        _ => {
            let mut dst = [0u8; 6];
            let mut wrapped = false;
            ring.read(body_off, &mut dst, &mut wrapped);
            match verdict(header, &dst) {
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
    }
}
