//! Passive readers: see every frame on the bus, from every sender, without ever taking the lock,
//! so a capture cannot slow the bus down or be stuck behind a dead lock holder.
//!
//! On shmlab-only buses they read like ports do (by record number, see `scan`). On
//! NetBSD-compatible buses, whose records carry no numbers, a batch is copied between two
//! consistent header snapshots: writers move `first` past a record before they overwrite a byte
//! of it, so records that fell behind `first` meanwhile are discarded and counted as lost.

use std::sync::Arc;
use std::time::Duration;

use crate::bus::Bus;
use crate::inbox::Inbox;
use crate::port::Received;
use crate::ring::{HeaderSnapshot, Ring, Span};
use crate::scan::{self, Counters, SeqCursor, Stats, Verdict};

/// Attempts at a consistent header snapshot before settling for a possibly torn one (only a
/// lock holder that died and has not been recovered yet keeps the lock held that long).
const SNAPSHOT_TRIES: u32 = 2000;

pub struct Reader {
    bus: Arc<Bus>,
    inbox: Inbox,
    counters: Counters,
}

impl Reader {
    pub(crate) fn new(bus: Arc<Bus>) -> Reader {
        let mut inbox = Inbox::new(&bus);
        if !bus.netbsd_compat {
            inbox.seq = SeqCursor::at_newest(&Ring::new(&bus.mem));
        } else if let Some((snap, span)) = header(&bus) {
            inbox.cursor.pos = span.end;
            inbox.cursor.last_seq = Some(Ring::new(&bus.mem).read_header(snap.last).seq);
        }
        Reader {
            bus,
            inbox,
            counters: Counters::default(),
        }
    }

    /// Moves back to the oldest record still in the ring, so the next frames are everything the
    /// ring holds (what `shmif_dumpbus` would show) and then whatever follows.
    pub fn rewind_to_oldest(&mut self) {
        self.inbox.staging.clear();
        if !self.bus.netbsd_compat {
            if let Some((off, oldest)) = Ring::new(&self.bus.mem).oldest() {
                self.inbox.seq = SeqCursor {
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
        } else if let Some((_, span)) = header(&self.bus) {
            self.inbox.cursor.pos = span.first;
            self.inbox.cursor.last_seq = None;
        }
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    pub fn stats(&self) -> Stats {
        self.counters.stats()
    }

    pub fn try_recv(&mut self, buf: &mut [u8]) -> Option<Received> {
        let (bus, counters) = (&self.bus, &self.counters);
        self.inbox
            .try_recv(buf, |inbox| refill(bus, counters, inbox))
    }

    pub fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Option<Received> {
        let (bus, counters) = (&self.bus, &self.counters);
        self.inbox
            .recv(bus, buf, timeout, |inbox| refill(bus, counters, inbox))
    }
}

fn header(bus: &Bus) -> Option<(HeaderSnapshot, Span)> {
    let ring = Ring::new(&bus.mem);
    let snap = ring
        .consistent_snapshot(SNAPSHOT_TRIES)
        .unwrap_or_else(|| ring.snapshot());
    ring.span(&snap).ok().map(|span| (snap, span))
}

fn refill(bus: &Bus, counters: &Counters, inbox: &mut Inbox) -> bool {
    let every = |_: &_, _: &[u8; 6]| Verdict::Deliver;
    let ring = Ring::new(&bus.mem);
    if !bus.netbsd_compat {
        return scan::scan_unlocked(&ring, &mut inbox.seq, &mut inbox.staging, &every, counters);
    }
    let Some((_, span)) = header(bus) else {
        return false;
    };
    let cursor = &mut inbox.cursor;
    let staging = &mut inbox.staging;
    if cursor.pos < span.first || cursor.pos > span.end {
        cursor.resync(span.first, counters);
    }
    let (pos, bad) = scan::scan(&ring, span, cursor.pos, staging, &every);
    // What survived the copy: everything at or after the oldest record now.
    let Some((_, after)) = header(bus) else {
        staging.clear();
        return false;
    };
    let overwritten = staging
        .records
        .iter()
        .take_while(|r| r.pos < after.first)
        .count();
    if overwritten > 0 {
        cursor.jumped_from.get_or_insert(staging.records[0].pos);
        staging.records.drain(..overwritten);
    }
    cursor.pos = pos;
    if let Some(bad) = &bad {
        if bad.pos >= after.first {
            Counters::add(&counters.corrupt, 1);
            cursor.jumped_from.get_or_insert(bad.pos);
            cursor.pos = span.end;
        }
    }
    staging.account(cursor, counters);
    !staging.records.is_empty() || bad.is_some() || cursor.pos < after.first
}
