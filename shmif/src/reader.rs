//! Passive readers: see every frame on the bus, from every sender, without ever taking the lock,
//! so a capture cannot slow the bus down or be stuck behind a dead lock holder.
//!
//! A lock-free copy may race with a writer. Writers move `first` past a record before they
//! overwrite a byte of it, so a batch is checked against a second consistent header snapshot
//! after copying: records that fell behind `first` meanwhile are discarded and counted as lost.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::Bus;
use crate::port::{has_news, Received, BUSY, SPIN};
use crate::ring::{HeaderSnapshot, Ring, Span};
use crate::scan::{self, Counters, Cursor, Staging, Stats, Verdict};
use crate::sync;

/// Attempts at a consistent header snapshot before settling for a possibly torn one (only a
/// lock holder that died and has not been recovered yet keeps the lock held that long).
const SNAPSHOT_TRIES: u32 = 2000;

pub struct Reader {
    bus: Arc<Bus>,
    /// Place for NetBSD-compatible buses (offset and generation, validated snapshots).
    cursor: Cursor,
    /// Place for shmlab-only buses (record numbers).
    seq: scan::SeqCursor,
    staging: Staging,
    counters: Counters,
    waker: Option<OwnedFd>,
    last_frame_at: Instant,
}

impl Reader {
    pub(crate) fn new(bus: Arc<Bus>) -> Reader {
        let waker = if bus.netbsd_compat {
            crate::wake::inotify_watch(bus.path())
        } else {
            None
        };
        let mut reader = Reader {
            bus,
            cursor: Cursor::default(),
            seq: scan::SeqCursor::default(),
            staging: Staging::new(),
            counters: Counters::default(),
            waker,
            last_frame_at: Instant::now() - BUSY,
        };
        if !reader.bus.netbsd_compat {
            reader.seq = scan::SeqCursor::at_newest(&Ring::new(&reader.bus.mem));
        } else if let Some((snap, span)) = reader.header() {
            reader.cursor.pos = span.end;
            reader.cursor.last_seq = Some(Ring::new(&reader.bus.mem).read_header(snap.last).seq);
        }
        reader
    }

    /// Moves back to the oldest record still in the ring, so the next frames are everything the
    /// ring holds (what `shmif_dumpbus` would show) and then whatever follows.
    pub fn rewind_to_oldest(&mut self) {
        self.staging.clear();
        if !self.bus.netbsd_compat {
            if let Some((off, oldest)) = Ring::new(&self.bus.mem).oldest() {
                self.seq = scan::SeqCursor {
                    off,
                    last_seq: if oldest.len == 0 {
                        oldest.seq
                    } else {
                        oldest.seq.wrapping_sub(1)
                    },
                    synced: true,
                    accounted: None,
                };
            }
            return;
        }
        if let Some((_, span)) = self.header() {
            self.cursor.pos = span.first;
            self.cursor.last_seq = None;
            self.staging.clear();
        }
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    pub fn stats(&self) -> Stats {
        self.counters.stats()
    }

    fn header(&self) -> Option<(HeaderSnapshot, Span)> {
        let ring = Ring::new(&self.bus.mem);
        let snap = ring
            .consistent_snapshot(SNAPSHOT_TRIES)
            .unwrap_or_else(|| ring.snapshot());
        ring.span(&snap).ok().map(|span| (snap, span))
    }

    pub fn try_recv(&mut self, buf: &mut [u8]) -> Option<Received> {
        // Bounded: under a flood every batch may turn out overwritten; the caller comes back.
        for _ in 0..8 {
            if let Some(got) = self.staging.deliver(buf) {
                self.last_frame_at = Instant::now();
                return Some(got);
            }
            if !self.refill() {
                return None;
            }
        }
        None
    }

    pub fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(got) = self.try_recv(buf) {
                return Some(got);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let bus = &self.bus;
            let (pos, seq) = (self.cursor.pos, &self.seq);
            let news = || {
                if bus.netbsd_compat {
                    has_news(bus, pos)
                } else {
                    seq.has_news(&Ring::new(&bus.mem))
                }
            };
            if self.last_frame_at.elapsed() < BUSY && scan::spin_for_news(&news, SPIN) {
                continue;
            }
            match &self.waker {
                Some(fd) => crate::wake::inotify_wait(fd, left),
                None => {
                    // Bounded: a writer that dies holding the lock never wakes anyone.
                    let slice = left.min(Duration::from_millis(100));
                    sync::wait_for_data(&bus.mem, slice, news);
                }
            }
        }
    }

    fn refill(&mut self) -> bool {
        self.staging.clear();
        if !self.bus.netbsd_compat {
            let every = |_: &_, _: &[u8; 6]| Verdict::Deliver;
            return scan::scan_unlocked(
                &Ring::new(&self.bus.mem),
                &mut self.seq,
                &mut self.staging,
                &every,
                &self.counters,
            );
        }
        let Some((_, span)) = self.header() else {
            return false;
        };
        if self.cursor.pos < span.first || self.cursor.pos > span.end {
            self.cursor.resync(span.first, &self.counters);
        }
        let ring = Ring::new(&self.bus.mem);
        let every = |_: &_, _: &[u8; 6]| Verdict::Deliver;
        let (pos, bad) = scan::scan(&ring, span, self.cursor.pos, &mut self.staging, &every);
        // What survived the copy: everything at or after the oldest record now.
        let Some((_, after)) = self.header() else {
            self.staging.clear();
            return false;
        };
        let overwritten = self
            .staging
            .records
            .iter()
            .take_while(|r| r.pos < after.first)
            .count();
        if overwritten > 0 {
            self.cursor
                .jumped_from
                .get_or_insert(self.staging.records[0].pos);
            self.staging.records.drain(..overwritten);
        }
        self.cursor.pos = pos;
        if let Some(bad) = &bad {
            if bad.pos >= after.first {
                Counters::add(&self.counters.corrupt, 1);
                self.cursor.jumped_from.get_or_insert(bad.pos);
                self.cursor.pos = span.end;
            }
        }
        self.staging.account(&mut self.cursor, &self.counters);
        !self.staging.records.is_empty() || bad.is_some() || self.cursor.pos < after.first
    }
}
