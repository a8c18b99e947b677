//! The receiving side shared by ports and passive readers: where the reader is in the ring,
//! the batch of frames copied out and not yet handed over, and how it waits for more.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use crate::bus::Bus;
use crate::port::{has_news, Received};
use crate::ring::Ring;
use crate::scan::{self, Cursor, SeqCursor, Staging};
use crate::sync;

/// A reader that got a frame within `BUSY` polls for up to `SPIN` before sleeping: while traffic
/// flows this saves the writer a FUTEX_WAKE and the reader a sleep per frame.
const BUSY: Duration = Duration::from_millis(1);
const SPIN: Duration = Duration::from_micros(50);
/// Longest single sleep: a writer that dies holding the lock wakes nobody.
const MAX_SLEEP: Duration = Duration::from_millis(100);
/// Batches looked at per `try_recv` before giving up: under a flood every batch may turn out
/// overwritten, and the caller should get control back.
const REFILLS: usize = 8;

pub(crate) struct Inbox {
    /// Place for locked reads and validated snapshots (NetBSD-compatible buses).
    pub cursor: Cursor,
    /// Place for lock-free reads by record number (shmlab-only buses).
    pub seq: SeqCursor,
    pub staging: Staging,
    waker: Option<OwnedFd>,
    last_frame_at: Instant,
}

impl Inbox {
    pub(crate) fn new(bus: &Bus) -> Inbox {
        let waker = if bus.netbsd_compat {
            crate::wake::inotify_watch(bus.path())
        } else {
            None
        };
        Inbox {
            cursor: Cursor::default(),
            seq: SeqCursor::default(),
            staging: Staging::new(),
            waker,
            last_frame_at: Instant::now() - BUSY,
        }
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
                self.last_frame_at = Instant::now();
                return Some(got);
            }
            self.staging.clear();
            if !refill(self) {
                return None;
            }
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
            if left.is_zero() {
                return None;
            }
            self.wait(bus, left);
        }
    }

    /// Sleeps until a writer may have published something or `left` passes.
    fn wait(&self, bus: &Bus, left: Duration) {
        let (pos, seq) = (self.cursor.pos, &self.seq);
        let news = || {
            if bus.netbsd_compat {
                has_news(bus, pos)
            } else {
                seq.has_news(&Ring::new(&bus.mem))
            }
        };
        if self.last_frame_at.elapsed() < BUSY && scan::spin_for_news(&news, SPIN) {
            return;
        }
        match &self.waker {
            Some(fd) => crate::wake::inotify_wait(fd, left),
            None => {
                sync::wait_for_data(&bus.mem, left.min(MAX_SLEEP), news);
            }
        }
    }
}
