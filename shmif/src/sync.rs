//! The bus lock and wakeups, both living in the 32-byte header.
//!
//! Lock: `lock` (offset 24) goes 0 -> 1 by CAS exactly as NetBSD's `shmif_lockbus`, so NetBSD
//! peers and we exclude each other. NetBSD never recovers from a holder that dies; we do. The
//! `spare` word (offset 28) carries what NetBSD has no room for:
//!
//! ```text
//!  31      30..22        21..0
//! [W] [release count] [holder pid]
//! ```
//!
//! - holder pid: set by a shmlab holder right after it takes the lock, cleared on release. A
//!   waiter that finds the lock held by a pid that no longer exists breaks the lock at once. If
//!   no pid is recorded (a NetBSD holder, or one killed between its CAS and the store) the lock is
//!   broken after `STALL_LIMIT` without any change to the header. A live holder is never broken.
//! - release count: bumped by every shmlab release, so a sleeping reader's futex value changes.
//! - W: set by a reader about to sleep on the futex; writers only call FUTEX_WAKE when it is set.
//!
//! Linux pids are below 2^22 (`PID_MAX_LIMIT`), so the pid field always fits.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::futex;

use crate::format::{LOCK_FREE, LOCK_HELD, OFF_LOCK, OFF_SPARE};
use crate::memory::BusMemory;
use crate::ring::{HeaderSnapshot, Ring};

pub(crate) const WAITERS: u32 = 1 << 31;
const PID_MASK: u32 = (1 << 22) - 1;
const COUNT_ONE: u32 = 1 << 22;
const COUNT_MASK: u32 = !WAITERS & !PID_MASK;

/// How long the lock may stay held, with no header change and no holder pid, before a waiter
/// decides the holder is gone. Well above any honest critical section (microseconds), well below
/// the 100 ms in which a bus must be usable again.
pub(crate) const STALL_LIMIT: Duration = Duration::from_millis(40);
/// Spins before a waiter starts yielding, then sleeping: NetBSD spins 1001 times.
const SPINS: u32 = 1000;
/// Yields (each followed by a short spin) before a waiter starts sleeping.
const YIELDS: u32 = 200;

fn pid_of(spare: u32) -> u32 {
    spare & PID_MASK
}

/// Our pid, looked up once: `getpid` on every lock and unlock dominated unbatched sends.
/// A bus attached before `fork` must not be used by the child (it would claim the parent's pid).
fn my_pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(|| rustix::process::getpid().as_raw_nonzero().get() as u32 & PID_MASK)
}

fn pid_is_gone(pid: u32) -> bool {
    match rustix::process::Pid::from_raw(pid as i32) {
        Some(p) => matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

/// How an acquisition went; the caller repairs the ring when the lock was broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    Normally,
    /// The previous holder died inside the critical section: the ring may hold half a record.
    FromDeadHolder,
}

/// Takes the bus lock. Never fails: a dead holder is detected and its lock taken over.
pub(crate) fn lock(mem: &BusMemory) -> Acquired {
    let lock = mem.word(OFF_LOCK);
    let spare = mem.word(OFF_SPARE);
    let me = my_pid();
    let mut spins = 0u32;
    let mut stall: Option<(Instant, (u32, HeaderSnapshot))> = None;
    let mut sleep = Duration::from_micros(50);
    let mut yields = 0u32;
    loop {
        if lock.load(Ordering::Relaxed) != LOCK_HELD
            && lock
                .compare_exchange_weak(LOCK_FREE, LOCK_HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            set_holder(spare, |_| me);
            return Acquired::Normally;
        }
        spins += 1;
        if spins < SPINS {
            std::hint::spin_loop();
            continue;
        }
        // Critical sections last microseconds: give the holder the CPU a while before sleeping
        // (sleeping costs at least ~60 us of timer slack, long enough to be lapped).
        if yields < YIELDS {
            yields += 1;
            std::thread::yield_now();
            spins = SPINS - SPINS / 16;
            continue;
        }
        // Slow path: look for a dead holder, then back off.
        let seen = spare.load(Ordering::Acquire);
        let holder = pid_of(seen);
        let state = (seen & !WAITERS, Ring::new(mem).snapshot());
        let dead = if holder == me {
            // Another thread of this process: alive by definition, however long it takes.
            stall = None;
            false
        } else if holder != 0 {
            pid_is_gone(holder)
        } else {
            match &stall {
                Some((since, old)) if *old == state => since.elapsed() >= STALL_LIMIT,
                _ => {
                    stall = Some((Instant::now(), state));
                    false
                }
            }
        };
        if dead && lock.load(Ordering::Acquire) == LOCK_HELD {
            // Several waiters may reach this verdict; the one whose CAS on `spare` wins owns the
            // lock (which stays 1), the others see `spare` change and keep waiting.
            let claimed = (seen & (WAITERS | COUNT_MASK)) | me;
            if spare
                .compare_exchange(seen, claimed, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                std::sync::atomic::fence(Ordering::SeqCst);
                return Acquired::FromDeadHolder;
            }
            stall = None;
        }
        if let Some((_, old)) = &stall {
            if *old != state {
                stall = None;
            }
        }
        std::thread::sleep(sleep);
        sleep = (sleep * 2).min(Duration::from_millis(1));
        spins = SPINS / 2;
    }
}

fn set_holder(spare: &AtomicU32, f: impl Fn(u32) -> u32) -> u32 {
    spare
        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
            Some((v & !PID_MASK) | f(pid_of(v)))
        })
        .unwrap_or_else(|v| v)
}

/// Releases the lock. After a write (`published`), bumps the release count and wakes sleepers
/// if any announced themselves; a reader's release leaves sleepers alone.
pub(crate) fn unlock(mem: &BusMemory, published: bool) {
    let lock = mem.word(OFF_LOCK);
    let spare = mem.word(OFF_SPARE);
    let me = my_pid();
    lock.store(LOCK_FREE, Ordering::Release);
    // Clear our pid (only if it is still ours: a new holder may already have written its own),
    // bump the release count and take the waiters bit in one step.
    let before = spare
        .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| {
            let pid = if pid_of(v) == me { 0 } else { pid_of(v) };
            if published {
                Some((v & COUNT_MASK).wrapping_add(COUNT_ONE) & COUNT_MASK | pid)
            } else {
                Some((v & !PID_MASK) | pid)
            }
        })
        .unwrap_or_else(|v| v);
    if published && before & WAITERS != 0 {
        let _ = futex::wake(spare, futex::Flags::empty(), i32::MAX as u32);
    }
}

/// Sleeps until a writer releases the lock or `timeout` passes, unless `has_data` turns true
/// once the waiters bit is set (which closes the race with a writer that just published).
pub(crate) fn wait_for_data(
    mem: &BusMemory,
    timeout: Duration,
    has_data: impl Fn() -> bool,
) -> bool {
    let spare = mem.word(OFF_SPARE);
    let mut seen = spare.load(Ordering::SeqCst);
    loop {
        if seen & WAITERS != 0 {
            break;
        }
        match spare.compare_exchange_weak(seen, seen | WAITERS, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {
                seen |= WAITERS;
                break;
            }
            Err(now) => seen = now,
        }
    }
    if has_data() {
        return true;
    }
    let ts = rustix::time::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos() as i64,
    };
    // EAGAIN (value changed), EINTR and ETIMEDOUT all just send the caller back to look.
    let _ = futex::wait(spare, futex::Flags::empty(), seen, Some(&ts));
    false
}
