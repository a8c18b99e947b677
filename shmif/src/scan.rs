//! Reading records out of the ring, shared by ports and passive readers, and numbering them.
//!
//! **Numbers.** shmlab writers store a bus-wide record number in NetBSD's padding word: one
//! more than the number of the record before. Records of other writers (NetBSD kernels, which
//! leave garbage there) are given the number they would have had, so numbers keep counting
//! every record, whoever wrote it, and a lapped reader can count exactly what it lost. Whether a
//! record was numbered by a shmlab writer is told by its sender id ([`is_shmlab_sender`]); a
//! number is believed only from such a record, met at a position known to be a record boundary
//! of the live ring.
//!
//! **Positions.** A reader keeps the absolute position (`gen * ring size + offset`) of the next
//! record; it only ever moves forward, which is what makes delivery at most once. It is valid
//! while it lies in the live span `[first, end of newest]` of the current generation
//! (NetBSD's `stillvalid_p`).
//!
//! **Two ways to read.** Under the lock ([`refill_locked`]) everything is authoritative: the
//! position is checked against the span, records are walked by length, foreign records are
//! numbered, NetBSD frames are delivered on NetBSD-mode buses and skipped (counted `foreign`)
//! elsewhere. Without the lock ([`refill_unlocked`], shmlab-mode buses only) a reader follows
//! the numbers: each record must carry the one expected, and after copying, records older than
//! the oldest intact one are discarded (writers move `first` past a record before storing over
//! it). Anything the lock-free path cannot vouch for sends the reader to the locked path.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::format::{is_shmlab_sender, RecordHeader, RecordKind, RECORD_HEADER_SIZE};
use crate::memory::BusMemory;
use crate::ring::{HeaderSnapshot, Ring, Span};

/// A frame handed out by [`Port::recv`] or [`crate::Reader::recv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// Length of the frame on the bus (larger than `len` only if the buffer was too small).
    pub frame_len: usize,
    /// Sender's timestamp, wall clock for shmlab writers.
    pub sec: u32,
    pub usec: u32,
    /// Sender id of the interface that wrote it.
    pub sender: u64,
}

/// Counters of one port or reader. Shared with [`crate::PortSender`] handles, hence atomics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub received: AtomicU64,
    pub received_bytes: AtomicU64,
    pub filtered: AtomicU64,
    pub lost: AtomicU64,
    pub foreign: AtomicU64,
    pub corrupt: AtomicU64,
    pub resyncs: AtomicU64,
    pub uncounted_resyncs: AtomicU64,
    pub lock_broken_dead: AtomicU64,
    pub lock_broken_zombie: AtomicU64,
    pub lock_broken_silent: AtomicU64,
    pub lock_broken_stuck: AtomicU64,
    pub ring_resets: AtomicU64,
}

/// A point-in-time copy of a port's or reader's counters.
///
/// For every record written on the bus after a reader attached, exactly one of `received`,
/// `filtered`, `lost`, `foreign`, `corrupt` counts it (or it was the reader's own), except
/// across an `uncounted_resync`.
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
    /// Records overwritten by writers before this reader got to them (it was lapped).
    pub lost: u64,
    /// Records of writers that are not shmlab's on a bus that is not in NetBSD mode: counted
    /// and skipped, never delivered.
    pub foreign: u64,
    /// Runt, oversize and unwalkable records skipped.
    pub corrupt: u64,
    /// Times this reader was lapped and restarted at the oldest record.
    pub resyncs: u64,
    /// Resyncs across which the loss could not be counted (only records of NetBSD writers,
    /// which carry no numbers, were left to count from).
    pub uncounted_resyncs: u64,
    /// Times this port took a held lock over, all reasons.
    pub lock_recoveries: u64,
    /// ... because the recorded holder no longer existed.
    pub lock_broken_dead: u64,
    /// ... because the recorded holder was a zombie.
    pub lock_broken_zombie: u64,
    /// ... because no holder was recorded and nothing moved for a second.
    pub lock_broken_silent: u64,
    /// ... because the recorded holder was alive (a reused pid) but nothing moved for a second.
    pub lock_broken_stuck: u64,
    /// Times this port found the ring corrupt and re-formatted it.
    pub ring_resets: u64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let broken = [
            g(&self.lock_broken_dead),
            g(&self.lock_broken_zombie),
            g(&self.lock_broken_silent),
            g(&self.lock_broken_stuck),
        ];
        Stats {
            sent: g(&self.sent),
            sent_bytes: g(&self.sent_bytes),
            received: g(&self.received),
            received_bytes: g(&self.received_bytes),
            filtered: g(&self.filtered),
            lost: g(&self.lost),
            foreign: g(&self.foreign),
            corrupt: g(&self.corrupt),
            resyncs: g(&self.resyncs),
            uncounted_resyncs: g(&self.uncounted_resyncs),
            lock_recoveries: broken.iter().sum(),
            lock_broken_dead: broken[0],
            lock_broken_zombie: broken[1],
            lock_broken_silent: broken[2],
            lock_broken_stuck: broken[3],
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
    Frame {
        start: usize,
        len: usize,
    },
    Own,
    Filtered,
    Placeholder,
    Runt,
    Foreign,
    /// Passed over after a resync (counted lost).
    Skipped,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Staged {
    /// The record's number (see the module comment), if known.
    pub number: Option<u32>,
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

    fn full(&self) -> bool {
        self.used >= STAGING_BYTES || self.records.len() >= STAGING_RECORDS
    }

    /// Whether staged frames are still waiting to be handed out.
    pub(crate) fn pending(&self) -> bool {
        self.records[self.next..]
            .iter()
            .any(|r| matches!(r.item, Item::Frame { .. }))
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
}

/// Counter increments of one batch, added to the shared atomics in one go.
#[derive(Default)]
pub(crate) struct Tally {
    received: u64,
    received_bytes: u64,
    filtered: u64,
    lost: u64,
    foreign: u64,
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
            Item::Foreign => self.foreign += 1,
            Item::Skipped => self.lost += 1,
            Item::Own | Item::Placeholder => {}
        }
    }

    pub(crate) fn flush(&self, c: &Counters) {
        for (n, counter) in [
            (self.received, &c.received),
            (self.received_bytes, &c.received_bytes),
            (self.filtered, &c.filtered),
            (self.lost, &c.lost),
            (self.foreign, &c.foreign),
            (self.corrupt, &c.corrupt),
        ] {
            if n > 0 {
                Counters::add(counter, n);
            }
        }
    }
}

/// Whether a shmlab writer set this record's number (a placeholder carries one too).
pub(crate) fn writer_numbered(h: &RecordHeader) -> bool {
    h.len == 0 || is_shmlab_sender(h.sender)
}

/// The number of a record met at a record boundary, given the number expected there.
fn number_of(h: &RecordHeader, expected: Option<u32>) -> Option<u32> {
    if writer_numbered(h) {
        Some(h.seq)
    } else {
        expected
    }
}

/// Whether record number `a` comes before `b` (numbers wrap).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Follows records from `pos` (a record boundary where `next` is the number expected) to `end`
/// and returns the number expected at `end`. Under the lock.
pub(crate) fn follow(
    ring: &Ring<'_>,
    mut pos: u64,
    mut next: Option<u32>,
    end: u64,
) -> Option<u32> {
    let size = ring.size() as u64;
    while pos < end {
        let h = ring.read_header((pos % size) as u32);
        if RecordHeader::classify_len(h.len) == RecordKind::Oversize {
            return None;
        }
        next = number_of(&h, next).map(|n| n.wrapping_add(1));
        pos += (RECORD_HEADER_SIZE as u32 + h.len) as u64;
    }
    next
}

/// The number of the record at `span.first`, derived from the first record after it that a
/// shmlab writer numbered. Under the lock.
fn number_at_first(ring: &Ring<'_>, span: Span) -> Option<u32> {
    let size = ring.size() as u64;
    let (mut pos, mut k) = (span.first, 0u32);
    while pos < span.end {
        let h = ring.read_header((pos % size) as u32);
        if RecordHeader::classify_len(h.len) == RecordKind::Oversize {
            return None;
        }
        if writer_numbered(&h) {
            return Some(h.seq.wrapping_sub(k));
        }
        k += 1;
        pos += (RECORD_HEADER_SIZE as u32 + h.len) as u64;
    }
    None
}

/// Where a writer's next record goes and its number, remembered between batches so that a
/// writer following foreign records does not walk the ring from `first` each time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NumberHint {
    pub pos: u64,
    pub next: u32,
}

/// The number the record after the newest gets. Under the lock, with a valid span.
pub(crate) fn next_number(
    ring: &Ring<'_>,
    snap: &HeaderSnapshot,
    span: Span,
    hint: Option<NumberHint>,
) -> Option<u32> {
    let newest = ring.read_header(snap.last);
    if writer_numbered(&newest) {
        return Some(newest.seq.wrapping_add(1));
    }
    if let Some(h) = hint.filter(|h| h.pos >= span.first && h.pos <= span.end) {
        return follow(ring, h.pos, Some(h.next), span.end);
    }
    follow(ring, span.first, None, span.end)
}

/// A reader's place in the ring.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cursor {
    /// Absolute position of the next record.
    pub pos: u64,
    /// The number the record at `pos` should carry, if known.
    pub next: Option<u32>,
    /// `last` and `gen` as the last refill saw them, and whether it read everything up to the
    /// newest record: a sleeper's cheap "anything new?".
    pub seen: (u32, u64),
    pub caught_up: bool,
    /// After a resync: records before this absolute position are skipped and counted lost.
    pub skip_to: u64,
    /// One past the highest number this cursor has accounted for; never goes down.
    pub floor: Option<u32>,
    /// After the header was seen to lie (it went backwards, or claimed a lap the numbers deny)
    /// or the ring was re-formatted, positions cannot be trusted to tell old records from new
    /// ones for as many records as a ring holds: meanwhile a record numbered below `floor` is
    /// taken for one already had and never delivered. (Outside such times a lower number is a
    /// writer that lost count, after a ring of NetBSD records only, and is taken over.) Counted
    /// in records, not bytes, because the positions are what cannot be trusted.
    pub wary: u32,
}

impl Cursor {
    /// Whether `n` is a number this cursor has had and must not deliver again.
    pub(crate) fn had(&self, n: u32, ring: &Ring<'_>) -> bool {
        self.wary > 0
            && self.floor.is_some_and(|f| {
                before(n, f) && f.wrapping_sub(n) <= ring.size() / RECORD_HEADER_SIZE as u32
            })
    }

    fn raise_floor(&mut self, n: u32) {
        let next = n.wrapping_add(1);
        if self.floor.is_none_or(|f| before(f, next)) {
            self.floor = Some(next);
        }
    }
}

impl Cursor {
    /// Just after the newest record, as a freshly attached port starts (no stale frame, unlike
    /// NetBSD). Under the lock.
    pub(crate) fn at_end(ring: &Ring<'_>, snap: &HeaderSnapshot, span: Span) -> Cursor {
        Cursor {
            pos: span.end,
            next: next_number(ring, snap, span, None),
            seen: (snap.last, snap.gen),
            caught_up: true,
            skip_to: 0,
            floor: None,
            wary: 0,
        }
    }

    /// At the oldest record still in the ring. Under the lock.
    pub(crate) fn at_first(ring: &Ring<'_>, snap: &HeaderSnapshot, span: Span) -> Cursor {
        Cursor {
            pos: span.first,
            next: number_at_first(ring, span),
            seen: (snap.last, snap.gen),
            caught_up: span.first == span.end,
            skip_to: 0,
            floor: None,
            wary: 0,
        }
    }

    /// Whether a writer may have published something this cursor has not read (a hint for
    /// sleepers; the real check is the refill).
    pub(crate) fn has_news(&self, mem: &BusMemory) -> bool {
        // One load of the header line writers store to on every record: a spinning reader
        // polls this. A writer that laps the ring exactly back to the same `last` is still
        // caught by the futex's release count.
        !self.caught_up || Ring::new(mem).last() != self.seen.0
    }
}

/// How a bus wants foreign (not shmlab-numbered) frame records treated by a locked refill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Foreign {
    /// NetBSD mode: they are a NetBSD kernel's frames.
    Deliver,
    /// The first one seen on a 1 MiB bus: the caller puts the bus into NetBSD mode.
    Detected,
    /// A bus no NetBSD kernel can share: count and skip.
    Skip,
}

/// Reads the records after `cur` under the lock into `staging` and accounts for them.
/// `foreign` says what to do with records not numbered by a shmlab writer; when it is
/// `Skip` on a bus that could be NetBSD's, the return tells the caller whether one was met.
pub(crate) fn refill_locked(
    live: &Live<'_>,
    cur: &mut Cursor,
    staging: &mut Staging,
    verdict: &dyn Fn(&RecordHeader, &[u8; 6]) -> Verdict,
    foreign: Foreign,
    counters: &Counters,
) -> Locked {
    let Live { ring, snap, span } = *live;
    let mut tally = Tally::default();
    let mut out = Locked::default();
    let before_pos = cur.pos;
    cur.seen = (snap.last, snap.gen);
    if cur.pos > span.end {
        // The header went backwards: a foreign process re-formatted or scribbled on it. Going
        // back to `first` could deliver again what we delivered: skip to the newest instead.
        Counters::add(&counters.corrupt, 1);
        let floor = cur.floor;
        *cur = Cursor::at_end(ring, snap, span);
        cur.floor = floor;
        cur.wary = ring.size() / RECORD_HEADER_SIZE as u32;
        return Locked { moved: true, ..out };
    }
    if cur.pos < span.first {
        resync(live, cur, &mut tally, counters);
    }
    let size = ring.size() as u64;
    while cur.pos < span.end && !staging.full() {
        let off = (cur.pos % size) as u32;
        let header = ring.read_header(off);
        cur.wary = cur.wary.saturating_sub(1);
        let end = cur.pos + RECORD_HEADER_SIZE as u64 + header.len as u64;
        let kind = RecordHeader::classify_len(header.len);
        if kind == RecordKind::Oversize || end > span.end {
            // A record nobody can walk past: count it and continue after the newest record.
            tally.corrupt += 1;
            cur.pos = span.end;
            cur.next = next_number(ring, snap, span, None);
            break;
        }
        if writer_numbered(&header) && cur.had(header.seq, ring) {
            // Numbers only grow along the ring: while the header is not to be trusted, a record
            // numbered before what we have had is one we had, made visible again. Never
            // delivered, and our numbering does not go back.
            if kind != RecordKind::Placeholder {
                tally.corrupt += 1;
            }
            cur.pos = end;
            continue;
        }
        let number = number_of(&header, cur.next);
        if cur.pos < cur.skip_to {
            // The older half of the ring after a resync: lost on purpose.
            if kind != RecordKind::Placeholder && cur.next.is_some() {
                tally.lost += 1;
            }
            cur.pos = end;
            cur.next = number.map(|n| n.wrapping_add(1));
            continue;
        }
        let item = if kind == RecordKind::Frame && !writer_numbered(&header) {
            match foreign {
                Foreign::Skip => Item::Foreign,
                Foreign::Detected => {
                    // Stop before it: the caller switches the bus to NetBSD mode and reads on.
                    out.foreign_seen = true;
                    break;
                }
                Foreign::Deliver => stage_record(ring, &header, kind, off, staging, verdict),
            }
        } else {
            stage_record(ring, &header, kind, off, staging, verdict)
        };
        tally.record(&item);
        staging.records.push(Staged {
            number,
            header,
            item,
        });
        if let Some(n) = number {
            cur.raise_floor(n);
        }
        cur.pos = end;
        cur.next = number.map(|n| n.wrapping_add(1));
    }
    cur.caught_up = cur.pos == span.end;
    tally.flush(counters);
    out.moved = cur.pos != before_pos || !staging.records.is_empty();
    out
}

/// Restarts a lapped reader (`cur.pos < span.first`) at the oldest record, under the lock.
/// Counts what was overwritten when the numbers on both sides can be believed, and marks the
/// older half of the ring to be skipped (and counted lost) by whichever path reads next: the
/// oldest records are where writers store next, so a reader restarting there is lapped again
/// at once.
pub(crate) fn resync(live: &Live<'_>, cur: &mut Cursor, tally: &mut Tally, counters: &Counters) {
    let Live { ring, span, .. } = *live;
    Counters::add(&counters.resyncs, 1);
    let first = number_at_first(ring, span);
    let plausible = (span.first - cur.pos) / RECORD_HEADER_SIZE as u64 + 1;
    let want = cur.next;
    cur.pos = span.first;
    cur.next = first;
    if ring
        .read_header((span.first % ring.size() as u64) as u32)
        .len
        == 0
    {
        // Restarting at a placeholder: the ring was re-formatted, and old records may still
        // sit where a scribbled `last` can make them look live.
        cur.wary = ring.size() / RECORD_HEADER_SIZE as u32;
    }
    match (want, first) {
        (Some(want), Some(got))
            if !before(got, want) && (got.wrapping_sub(want) as u64) <= plausible =>
        {
            tally.lost += got.wrapping_sub(want) as u64;
        }
        (Some(want), Some(got)) if before(got, want) => {
            // The oldest record is one we have had: the header claims a lap that the numbers
            // deny (a scribbled generation). Resume after what we had, never before.
            let size = ring.size() as u64;
            while cur.pos < span.end && cur.next.is_some_and(|n| before(n, want)) {
                let h = ring.read_header((cur.pos % size) as u32);
                if RecordHeader::classify_len(h.len) == RecordKind::Oversize {
                    break;
                }
                cur.next = number_of(&h, cur.next).map(|n| n.wrapping_add(1));
                cur.pos += (RECORD_HEADER_SIZE as u32 + h.len) as u64;
            }
            // Reached the end without meeting what comes after: expect that still.
            if cur.next.is_some_and(|n| before(n, want)) {
                cur.next = Some(want);
            }
            cur.wary = ring.size() / RECORD_HEADER_SIZE as u32;
            return;
        }
        _ => Counters::add(&counters.uncounted_resyncs, 1),
    }
    let half = ring.size() as u64 / 2;
    cur.skip_to = span.end.saturating_sub(half).max(cur.pos);
}

/// The ring under the lock: the header as read and its live span.
#[derive(Clone, Copy)]
pub(crate) struct Live<'a> {
    pub ring: &'a Ring<'a>,
    pub snap: &'a HeaderSnapshot,
    pub span: Span,
}

/// What a locked refill found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Locked {
    pub moved: bool,
    /// A foreign frame record was met on a bus that may be NetBSD's (`Foreign::Detected`).
    pub foreign_seen: bool,
}

/// What a lock-free refill achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unlocked {
    /// Read what there was (`true`) or found nothing new (`false`).
    Done(bool),
    /// Met something only the locked path can judge; nothing was staged or accounted.
    NeedLock,
}

/// Copies the records published since `cur` into `staging` without the lock, following record
/// numbers, then discards those a writer may have overwritten meanwhile.
pub(crate) fn refill_unlocked(
    ring: &Ring<'_>,
    cur: &mut Cursor,
    staging: &mut Staging,
    verdict: &dyn Fn(&RecordHeader, &[u8; 6]) -> Verdict,
    counters: &Counters,
) -> Unlocked {
    let Some(mut next) = cur.next else {
        return Unlocked::NeedLock;
    };
    let (last, newest) = match newest_record(ring) {
        Ok(newest) => newest,
        // Writers are publishing faster than we can look: come back (taking the lock here
        // would stall the very writers we wait for).
        Err(Newest::Moving) => return Unlocked::Done(true),
        // Repaired by the locked path.
        Err(Newest::Garbage) => return Unlocked::NeedLock,
    };
    // A foreign newest record may still be being written (NetBSD moves `last` first).
    if !writer_numbered(&newest) || RecordHeader::classify_len(newest.len) == RecordKind::Oversize {
        return Unlocked::NeedLock;
    }
    let target = newest.seq.wrapping_add(1);
    let ahead = target.wrapping_sub(next);
    let size = ring.size();
    if ahead == 0 {
        let end_off = ring.advance(last, RECORD_HEADER_SIZE as u32 + newest.len);
        if end_off as u64 != cur.pos % size as u64 {
            // Same number at another place: the ring was re-formatted under us.
            return Unlocked::NeedLock;
        }
        cur.seen = (last, ring.gen());
        cur.caught_up = true;
        return Unlocked::Done(false);
    }
    if (ahead as i32) < 0 || ahead > size / RECORD_HEADER_SIZE as u32 {
        // The newest record is older than where we are, or impossibly far ahead.
        return Unlocked::NeedLock;
    }
    let start = *cur;
    let mut pos = cur.pos;
    let mut stopped_early = false;
    while next != target {
        if staging.full() {
            stopped_early = true;
            break;
        }
        let off = (pos % size as u64) as u32;
        let header = ring.read_header(off);
        let kind = RecordHeader::classify_len(header.len);
        if header.seq != next
            || !is_shmlab_sender(header.sender)
            || kind == RecordKind::Oversize
            || kind == RecordKind::Placeholder
            || cur.had(next, ring)
        {
            // Lapped, a foreign record, or a re-formatted ring: the locked path decides.
            staging.clear();
            *cur = start;
            return Unlocked::NeedLock;
        }
        let item = if pos < cur.skip_to {
            // The older half of the ring after a resync: lost on purpose (checked below like
            // every copied record, so the count is of records that really were there).
            Item::Skipped
        } else {
            stage_record(ring, &header, kind, off, staging, verdict)
        };
        staging.records.push(Staged {
            number: Some(next),
            header,
            item,
        });
        pos += (RECORD_HEADER_SIZE as u32 + header.len) as u64;
        next = next.wrapping_add(1);
    }
    // Keep only what was still intact after the copy.
    let bound = match ring.oldest() {
        Some((_, oldest)) if writer_numbered(&oldest) => {
            if oldest.len == 0 {
                oldest.seq.wrapping_add(1)
            } else {
                oldest.seq
            }
        }
        _ => {
            staging.clear();
            *cur = start;
            return Unlocked::NeedLock;
        }
    };
    let stale = staging
        .records
        .iter()
        .take_while(|r| r.number.is_some_and(|n| before(n, bound)))
        .count();
    let mut tally = Tally::default();
    if stale > 0 {
        staging.records.drain(..stale);
        tally.lost += stale as u64;
    }
    for rec in &staging.records {
        tally.record(&rec.item);
    }
    tally.flush(counters);
    cur.pos = pos;
    cur.next = Some(next);
    cur.wary = cur.wary.saturating_sub(staging.records.len() as u32);
    if let Some(rec) = staging.records.last() {
        if let Some(n) = rec.number {
            cur.raise_floor(n);
        }
    }
    if !stopped_early {
        // Only a reader about to sleep needs this (one more load of a contended line).
        cur.seen = (last, ring.gen());
    }
    cur.caught_up = !stopped_early;
    Unlocked::Done(true)
}

/// The newest record and its offset, read so that they belong together: `last` must not move
/// while its header is read (else a writer that lapped the ring meanwhile may have put other
/// bytes there, even a record still being written).
fn newest_record(ring: &Ring<'_>) -> Result<(u32, RecordHeader), Newest> {
    let mut last = ring.last();
    for _ in 0..64 {
        if last >= ring.size() {
            return Err(Newest::Garbage);
        }
        let header = ring.read_header(last);
        std::sync::atomic::fence(Ordering::Acquire);
        let again = ring.last();
        if again == last {
            return Ok((last, header));
        }
        last = again;
    }
    Err(Newest::Moving)
}

/// Why the newest record could not be read without the lock.
enum Newest {
    /// `last` kept moving.
    Moving,
    /// `last` points outside the ring.
    Garbage,
}

/// Copies one record's frame into staging if the verdict wants it delivered.
fn stage_record(
    ring: &Ring<'_>,
    header: &RecordHeader,
    kind: RecordKind,
    off: u32,
    staging: &mut Staging,
    verdict: &dyn Fn(&RecordHeader, &[u8; 6]) -> Verdict,
) -> Item {
    let body_off = ring.advance(off, RECORD_HEADER_SIZE as u32);
    match kind {
        RecordKind::Placeholder => Item::Placeholder,
        RecordKind::Runt | RecordKind::Oversize => Item::Runt,
        RecordKind::Frame => {
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
