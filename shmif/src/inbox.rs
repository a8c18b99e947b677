//! The receiving side shared by ports and passive readers: where the reader is in the ring,
//! the batch of frames copied out and not yet handed over, which way to read (lock-free on
//! shmlab-mode buses, under the lock on NetBSD-mode ones or when the lock-free path cannot
//! vouch for what it sees), and how to wait for more.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::bus::Bus;
use crate::format::RecordHeader;
use crate::repair::{count_break, repair_if_needed};
use crate::ring::Ring;
use crate::scan::Received;
use crate::scan::{self, Counters, Cursor, Foreign, Live, Staging, Unlocked, Verdict};
use crate::sync::{self, Acquired};

/// A reader that got a frame within `BUSY` polls for up to `SPIN` before sleeping: while traffic
/// flows this saves the writer a FUTEX_WAKE and the reader a sleep per frame.
const BUSY: Duration = Duration::from_millis(1);
const SPIN: Duration = Duration::from_micros(50);
/// A refill that brought at least this many records means a stream is flowing...
const STREAM_BATCH: usize = 8;
/// ... and the reader then lets the writers get this many bytes ahead, or waits this long.
const STREAM_GAP: u32 = 32 * 1024;
const STREAM_WAIT: Duration = Duration::from_micros(20);
/// Longest single sleep: a writer that dies holding the lock wakes nobody.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Batches looked at per `try_recv` before giving up: under a flood every batch may turn out
/// overwritten, and the caller should get control back.
const REFILLS: usize = 8;

pub(crate) struct Inbox {
    pub cursor: Cursor,
    pub staging: Staging,
    /// inotify watch on the bus path, made when the bus is first seen in NetBSD mode.
    waker: Option<OwnedFd>,
    last_frame_at: Instant,
    /// The bus was seen in NetBSD mode (which never goes away).
    netbsd_seen: bool,
    /// Records the last refill brought in (0 once a refill found nothing): a stream flowing,
    /// or single frames.
    last_batch: usize,
}

impl Inbox {
    pub(crate) fn new(_bus: &Bus) -> Inbox {
        Inbox {
            cursor: Cursor::default(),
            staging: Staging::new(),
            waker: None,
            last_frame_at: Instant::now() - BUSY,
            netbsd_seen: false,
            last_batch: 0,
        }
    }

    /// Places the cursor just after the newest record (under the lock).
    pub(crate) fn start_at_newest(&mut self, bus: &Bus, counters: &Counters) {
        self.place(bus, counters, Cursor::at_end);
    }

    /// Places the cursor at the oldest record still in the ring (under the lock).
    pub(crate) fn rewind_to_oldest(&mut self, bus: &Bus, counters: &Counters) {
        self.staging.clear();
        self.place(bus, counters, Cursor::at_first);
    }

    fn place(
        &mut self,
        bus: &Bus,
        counters: &Counters,
        at: fn(&Ring<'_>, &crate::ring::HeaderSnapshot, crate::ring::Span) -> Cursor,
    ) {
        self.with_lock(bus, counters, |inbox, live| {
            inbox.cursor = at(live.ring, live.snap, live.span);
        });
    }

    /// Runs `f` under the bus lock on the checked (and if need be repaired) ring. `None` if the
    /// lock could not be had (the file was truncated) or the ring has no live span.
    fn with_lock<R>(
        &mut self,
        bus: &Bus,
        counters: &Counters,
        f: impl FnOnce(&mut Inbox, &Live<'_>) -> R,
    ) -> Option<R> {
        let guard = bus.lock().ok()?;
        let ring = Ring::new(&bus.mem);
        let snap = repair_if_needed(&ring, guard.how, counters, self.cursor.floor);
        // A takeover while attaching is counted by the first port or reader that locks.
        if let Some(Acquired::Broken(reason)) = bus
            .attach_recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            count_break(counters, reason);
        }
        let span = ring.span(&snap).ok()?;
        let live = Live {
            ring: &ring,
            snap: &snap,
            span,
        };
        let r = f(self, &live);
        drop(guard);
        Some(r)
    }

    /// Copies the next batch of records into staging and accounts for them. False if there
    /// was nothing new.
    pub(crate) fn refill(
        &mut self,
        bus: &Bus,
        counters: &Counters,
        verdict: &dyn Fn(&RecordHeader, &[u8; 6]) -> Verdict,
    ) -> bool {
        // The lock-free path bails out on any record a NetBSD kernel wrote, so it is tried
        // until the bus is known to be NetBSD's (the flag is sticky), sparing a load of the
        // busiest header line per refill.
        if !self.netbsd_seen {
            let ring = Ring::new(&bus.mem);
            if self.last_batch >= STREAM_BATCH {
                self.let_writers_ahead(&ring);
            }
            if !bus.still_mapped_soon() {
                return false;
            }
            match scan::refill_unlocked(
                &ring,
                &mut self.cursor,
                &mut self.staging,
                verdict,
                counters,
            ) {
                Unlocked::Done(found) => return found,
                Unlocked::NeedLock => {}
            }
            // Most often we were lapped: restart under the lock, but copy without it, so that
            // the writers are held up only for the restart, not for a whole batch.
            if self.resync_if_lapped(bus, counters) {
                let found = scan::refill_unlocked(
                    &ring,
                    &mut self.cursor,
                    &mut self.staging,
                    verdict,
                    counters,
                );
                if let Unlocked::Done(found) = found {
                    return found;
                }
            }
        }
        self.with_lock(bus, counters, |inbox, live| {
            inbox.netbsd_seen = bus.netbsd_mode();
            let foreign = if inbox.netbsd_seen {
                Foreign::Deliver
            } else if bus.can_be_netbsd() {
                Foreign::Detected
            } else {
                Foreign::Skip
            };
            let mut got = scan::refill_locked(
                live,
                &mut inbox.cursor,
                &mut inbox.staging,
                verdict,
                foreign,
                counters,
            );
            if got.foreign_seen {
                // A NetBSD kernel writes on this 1 MiB bus: from now on it is a NetBSD bus, for
                // every attacher. Switched under the lock, so every writer after us sees it.
                sync::set_netbsd_mode(&bus.mem);
                let more = scan::refill_locked(
                    live,
                    &mut inbox.cursor,
                    &mut inbox.staging,
                    verdict,
                    Foreign::Deliver,
                    counters,
                );
                got.moved |= more.moved;
            }
            got.moved
        })
        .unwrap_or(false)
    }

    /// In a stream, lets the writers get some way ahead before reading on: a reader right on the
    /// writers' heels pulls each ring line away from them while they are writing it (measured,
    /// 64-byte frames flat out: the writer lost a quarter of its rate). Single frames (a ping)
    /// are read at once; a stream waits at most [`STREAM_WAIT`].
    fn let_writers_ahead(&self, ring: &Ring<'_>) {
        let size = ring.size();
        let mine = (self.cursor.pos % size as u64) as u32;
        // A garbage `last` (beyond the ring) counts as far ahead: the refill deals with it.
        let gap = |last: u32| {
            if last >= size {
                return u32::MAX;
            }
            (last + size - mine) % size
        };
        if gap(ring.last()) >= STREAM_GAP {
            return;
        }
        let start = Instant::now();
        while start.elapsed() < STREAM_WAIT {
            // Yield, not spin: with more processes than cores the writer may need this CPU.
            std::thread::yield_now();
            if gap(ring.last()) >= STREAM_GAP {
                return;
            }
        }
    }

    /// Under the lock, restarts a lapped cursor (see `scan::resync`). False if it was not
    /// lapped (or the lock could not be had).
    fn resync_if_lapped(&mut self, bus: &Bus, counters: &Counters) -> bool {
        self.with_lock(bus, counters, |inbox, live| {
            if inbox.cursor.pos >= live.span.first {
                return false;
            }
            let mut tally = scan::Tally::default();
            scan::resync(live, &mut inbox.cursor, &mut tally, counters);
            tally.flush(counters);
            true
        })
        .unwrap_or(false)
    }

    /// Gets ready for the caller to sleep on the bus's futex word (see [`crate::Sleep`]): the
    /// value to wait on, or `None` if frames are waiting or a writer may have published.
    pub(crate) fn prepare_sleep(&self, bus: &Bus) -> Option<u32> {
        if self.staging.pending() || self.cursor.has_news(&bus.mem) {
            return None;
        }
        let value = sync::arm_waiters(&bus.mem);
        // Re-checked after the bit is set: a writer that published in between is seen here, one
        // that publishes later changes the word.
        (!self.cursor.has_news(&bus.mem)).then_some(value)
    }

    /// Whether a frame may be waiting (cheap; for polling between sleeps).
    pub(crate) fn has_news(&self, bus: &Bus) -> bool {
        self.staging.pending() || self.cursor.has_news(&bus.mem)
    }

    /// The next staged frame, refilling the staging area with `refill` (which returns whether
    /// it found anything new) as needed.
    pub(crate) fn try_recv(
        &mut self,
        buf: &mut [u8],
        mut refill: impl FnMut(&mut Inbox) -> bool,
    ) -> Option<Received> {
        for _ in 0..REFILLS {
            if let Some(got) = self.staging.deliver(buf) {
                return Some(got);
            }
            self.staging.clear();
            if !refill(self) {
                // Caught up: the next frame, if it comes alone, is read at once.
                self.last_batch = 0;
                return None;
            }
            // Once per batch, not per frame: reading the clock cost a fifth of a busy reader.
            self.last_frame_at = Instant::now();
            self.last_batch = self.staging.records.len();
        }
        None
    }

    pub(crate) fn recv(
        &mut self,
        bus: &Bus,
        buf: &mut [u8],
        timeout: Duration,
        mut refill: impl FnMut(&mut Inbox) -> bool,
    ) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(got) = self.try_recv(buf, &mut refill) {
                return Some(got);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !bus.still_mapped() {
                return None;
            }
            self.wait(bus, left);
        }
    }

    /// Sleeps until a writer may have published something or `left` passes.
    fn wait(&mut self, bus: &Bus, left: Duration) {
        let cursor = &self.cursor;
        let news = || cursor.has_news(&bus.mem);
        if self.last_frame_at.elapsed() < BUSY && scan::spin_for_news(&news, SPIN) {
            return;
        }
        let left = left.min(MAX_SLEEP);
        if bus.netbsd_mode() {
            // NetBSD writers wake nobody's futex: they write the file, which inotify reports.
            if self.waker.is_none() {
                self.waker = crate::wake::inotify_watch(bus.path());
            }
            if !news() {
                match &self.waker {
                    Some(fd) => crate::wake::inotify_wait(fd, left),
                    // No inotify: poll as NetBSD does on hosts without a file watch.
                    None => std::thread::sleep(left.min(Duration::from_millis(10))),
                }
            }
        } else {
            sync::wait_for_data(&bus.mem, left, news);
        }
    }
}
