//! The bus lock and wakeups, both living in the 32-byte header.
//!
//! Lock: `lock` (offset 24) goes 0 -> 1 by CAS exactly as NetBSD's `shmif_lockbus`, so NetBSD
//! peers and we exclude each other. NetBSD never recovers from a holder that dies; we do. The
//! `spare` word (offset 28), which NetBSD never touches, carries what NetBSD has no room for:
//!
//! ```text
//!  31  30      29..22        21..0
//! [W] [N] [release count] [holder pid]
//! ```
//!
//! - holder pid: set by a shmlab holder right after it takes the lock, cleared on release.
//! - release count: bumped by every shmlab release after a write, so a sleeping reader's futex
//!   value changes.
//! - N: the bus is in NetBSD mode (sticky; see `bus`). Kept by every update of `spare`.
//! - W: set by a reader about to sleep on the futex; writers only call FUTEX_WAKE when it is set.
//!
//! Breaking a held lock, from the waiter's side:
//! - a recorded pid that no longer exists, or is a zombie, is dead: taken over at once;
//! - a recorded pid that is alive but makes no progress (no change to `spare`, `gen`, `first`,
//!   `last`) for [`STALL_LIMIT`] is taken over too: pids are reused, and a live process that
//!   holds a lock for a whole second without writing is not going to release it;
//! - no pid recorded (a NetBSD kernel, which records none, or a shmlab holder killed between its
//!   CAS and storing its pid) is taken over after the same [`STALL_LIMIT`] without progress: a
//!   live NetBSD holder must never lose its lock, and its critical sections are microseconds.
//!
//! Linux pids are below 2^22 (`PID_MAX_LIMIT`), so the pid field always fits.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::futex;

use crate::format::{LOCK_FREE, LOCK_HELD, OFF_LOCK, OFF_SPARE};
use crate::memory::BusMemory;
use crate::ring::{HeaderSnapshot, Ring};

pub(crate) const WAITERS: u32 = 1 << 31;
pub(crate) const NETBSD_MODE: u32 = 1 << 30;
const PID_MASK: u32 = (1 << 22) - 1;
const COUNT_ONE: u32 = 1 << 22;
const COUNT_MASK: u32 = ((1 << 30) - 1) & !PID_MASK;

/// How long a held lock may show no progress before a waiter takes it over (unless its holder
/// is known dead, which is acted on at once). Far above any honest critical section, which
/// lasts microseconds, and long enough that a live NetBSD kernel is never robbed.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(1);
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

/// What a waiter can tell about a recorded lock holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Alive,
    Gone,
    Zombie,
}

fn holder_state(pid: u32) -> Holder {
    let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
        return Holder::Alive;
    };
    if let Err(rustix::io::Errno::SRCH) = rustix::process::test_kill_process(p) {
        return Holder::Gone;
    }
    // `kill(pid, 0)` succeeds on a zombie: a holder that exited and was not reaped yet.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => match stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
        {
            Some("Z" | "X" | "x") => Holder::Zombie,
            _ => Holder::Alive,
        },
        // Gone between the two looks.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Holder::Gone,
        Err(_) => Holder::Alive,
    }
}

/// Why a waiter took a held lock over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BreakReason {
    /// The recorded holder no longer exists.
    Dead,
    /// The recorded holder exited and is waiting to be reaped.
    Zombie,
    /// No holder recorded (a NetBSD peer, or a shmlab holder killed right after its CAS) and no
    /// progress for [`STALL_LIMIT`].
    Silent,
    /// The recorded pid is alive (perhaps reused by another process) but made no progress for
    /// [`STALL_LIMIT`].
    Stuck,
}

/// How an acquisition went; the caller checks and repairs the ring when the lock was broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    Normally,
    /// The previous holder was given up on inside its critical section: the ring may hold half
    /// a record.
    Broken(BreakReason),
}

/// The bus file shrank below our mapping (a NetBSD peer truncates every bus it attaches to 1
/// MiB): touching the mapping now would raise SIGBUS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Truncated;

/// The held bus lock; released on drop. Call [`LockGuard::publish`] after writing so the
/// release wakes sleeping readers.
pub(crate) struct LockGuard<'a> {
    mem: &'a BusMemory,
    published: bool,
    pub how: Acquired,
}

impl LockGuard<'_> {
    pub(crate) fn publish(&mut self) {
        self.published = true;
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        unlock(self.mem, self.published);
    }
}

/// Takes the bus lock, taking it over from a holder that is gone (see the module comment).
/// `still_mapped` is asked while waiting long: a holder that stalls may be a NetBSD kernel that
/// truncated the file and then died on the header it found.
pub(crate) fn lock<'a>(
    mem: &'a BusMemory,
    still_mapped: &dyn Fn() -> bool,
) -> Result<LockGuard<'a>, Truncated> {
    let guard = |how| LockGuard {
        mem,
        published: false,
        how,
    };
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
            set_holder(spare, me);
            return Ok(guard(Acquired::Normally));
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
        if !still_mapped() {
            return Err(Truncated);
        }
        // Slow path: judge the holder, then back off.
        let seen = spare.load(Ordering::Acquire);
        let holder = pid_of(seen);
        let state = (seen & !WAITERS, Ring::new(mem).snapshot());
        let stalled = match &stall {
            Some((since, old)) if *old == state => since.elapsed() >= STALL_LIMIT,
            _ => {
                stall = Some((Instant::now(), state));
                false
            }
        };
        let verdict = if holder == me {
            // Another thread of this process: alive by definition, however long it takes.
            stall = None;
            None
        } else if holder != 0 {
            match holder_state(holder) {
                Holder::Gone => Some(BreakReason::Dead),
                Holder::Zombie => Some(BreakReason::Zombie),
                Holder::Alive => stalled.then_some(BreakReason::Stuck),
            }
        } else {
            stalled.then_some(BreakReason::Silent)
        };
        if let Some(reason) = verdict {
            if lock.load(Ordering::Acquire) == LOCK_HELD {
                // Several waiters may reach this verdict; the one whose CAS on `spare` wins owns
                // the lock (which stays 1), the others see `spare` change and keep waiting.
                let claimed = (seen & !PID_MASK) | me;
                if spare
                    .compare_exchange(seen, claimed, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    std::sync::atomic::fence(Ordering::SeqCst);
                    return Ok(guard(Acquired::Broken(reason)));
                }
            }
            stall = None;
        }
        std::thread::sleep(sleep);
        sleep = (sleep * 2).min(Duration::from_millis(1));
        spins = SPINS / 2;
    }
}

fn set_holder(spare: &AtomicU32, pid: u32) {
    let _ = spare.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
        Some((v & !PID_MASK) | pid)
    });
}

/// Releases the lock. After a write (`published`), bumps the release count and wakes sleepers
/// if any announced themselves; a reader's release leaves sleepers alone.
fn unlock(mem: &BusMemory, published: bool) {
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
                let count = (v & COUNT_MASK).wrapping_add(COUNT_ONE) & COUNT_MASK;
                Some(count | (v & NETBSD_MODE) | pid)
            } else {
                Some((v & !PID_MASK) | pid)
            }
        })
        .unwrap_or_else(|v| v);
    if published && before & WAITERS != 0 {
        let _ = futex::wake(spare, futex::Flags::empty(), i32::MAX as u32);
    }
}

/// Whether the bus is in NetBSD mode (see `bus`).
pub(crate) fn netbsd_mode(mem: &BusMemory) -> bool {
    mem.word(OFF_SPARE).load(Ordering::Acquire) & NETBSD_MODE != 0
}

/// Puts the bus into NetBSD mode for good. Sleepers on the futex are woken so they re-check and
/// wait the NetBSD way from now on.
pub(crate) fn set_netbsd_mode(mem: &BusMemory) {
    let spare = mem.word(OFF_SPARE);
    let before = spare.fetch_or(NETBSD_MODE, Ordering::SeqCst);
    if before & NETBSD_MODE == 0 && before & WAITERS != 0 {
        let _ = futex::wake(spare, futex::Flags::empty(), i32::MAX as u32);
    }
}

/// Announces a sleeper: sets the waiters bit and returns the value of `spare` to wait on. A
/// writer that publishes after this changes `spare` and, seeing the bit, calls FUTEX_WAKE.
pub(crate) fn arm_waiters(mem: &BusMemory) -> u32 {
    let spare = mem.word(OFF_SPARE);
    let mut seen = spare.load(Ordering::SeqCst);
    while seen & WAITERS == 0 {
        match spare.compare_exchange_weak(seen, seen | WAITERS, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => return seen | WAITERS,
            Err(now) => seen = now,
        }
    }
    seen
}

/// Sleeps until a writer releases the lock or `timeout` passes, unless `has_data` turns true
/// once the waiters bit is set (which closes the race with a writer that just published).
pub(crate) fn wait_for_data(
    mem: &BusMemory,
    timeout: Duration,
    has_data: impl Fn() -> bool,
) -> bool {
    let spare = mem.word(OFF_SPARE);
    let seen = arm_waiters(mem);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_free_pid_is_gone() {
        assert_eq!(holder_state(my_pid()), Holder::Alive);
        // pid_max is at most 2^22; this one is above any pid the kernel hands out here unless
        // pid_max was raised to the limit.
        assert_eq!(holder_state(PID_MASK), Holder::Gone);
    }

    #[test]
    fn an_unreaped_child_counts_as_a_zombie() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Wait for it to exit without reaping it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while holder_state(pid) != Holder::Zombie {
            assert!(Instant::now() < deadline, "child never became a zombie");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert_eq!(holder_state(pid), Holder::Gone);
    }

    #[test]
    fn release_keeps_the_netbsd_mode_bit() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join("bus"))
            .unwrap();
        file.set_len(crate::format::MIN_BUS_SIZE).unwrap();
        let mem = BusMemory::map(&file, crate::format::MIN_BUS_SIZE, true).unwrap();
        set_netbsd_mode(&mem);
        let mut g = lock(&mem, &|| true).unwrap();
        g.publish();
        drop(g);
        assert!(netbsd_mode(&mem));
        assert_eq!(mem.word(OFF_LOCK).load(Ordering::Acquire), LOCK_FREE);
        assert_eq!(pid_of(mem.word(OFF_SPARE).load(Ordering::Acquire)), 0);
    }
}
