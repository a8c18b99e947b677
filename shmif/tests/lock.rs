//! Taking the bus lock over from holders that are gone, and never from one that may be alive:
//! the lock word and the holder pid are planted in a real bus file the way a NetBSD kernel, a
//! killed shmlab process, a zombie or a reused pid would leave them.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use shmif::{Bus, BusConfig, BusError, SendError};

const OFF_LOCK: u64 = 24;
const OFF_SPARE: u64 = 28;
const PID_MASK: u32 = (1 << 22) - 1;

fn put_u32(path: &Path, off: u64, v: u32) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&v.to_ne_bytes(), off).unwrap();
}

fn get_u32(path: &Path, off: u64) -> u32 {
    let f = OpenOptions::new().read(true).open(path).unwrap();
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, off).unwrap();
    u32::from_ne_bytes(b)
}

/// Marks the lock held by `pid` (0: no pid, as NetBSD holds it), keeping the other spare bits.
fn plant_holder(path: &Path, pid: u32) {
    let spare = get_u32(path, OFF_SPARE);
    put_u32(path, OFF_SPARE, (spare & !PID_MASK) | pid);
    put_u32(path, OFF_LOCK, 1);
}

fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f
}

/// Sends one frame and returns how long it took and the port's counters.
fn timed_send(port: &shmif::Port) -> (Duration, shmif::Stats) {
    let t = Instant::now();
    port.send(&frame()).unwrap();
    (t.elapsed(), port.stats())
}

/// A bus and a port on it, made before any holder is planted (making a port takes the lock).
fn fresh_bus(dir: &tempfile::TempDir) -> (std::path::PathBuf, shmif::Port) {
    let path = dir.path().join("bus");
    let bus = Bus::attach(&path, &BusConfig::default()).unwrap();
    (path, bus.port())
}

/// A child that has exited and is not reaped yet.
// Leaving a child unreaped is the point; callers wait for it when done.
#[allow(clippy::zombie_processes)]
fn zombie() -> Child {
    let child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        if stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z')
        {
            return child;
        }
        assert!(Instant::now() < deadline, "child {pid} never exited");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn zombie_holder_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (path, port) = fresh_bus(&dir);
    let mut z = zombie();
    plant_holder(&path, z.id());
    let (took, s) = timed_send(&port);
    assert_eq!(s.lock_broken_zombie, 1, "{s:?}");
    assert_eq!(s.lock_recoveries, 1, "{s:?}");
    assert!(
        took < shmif_stall_limit(),
        "a zombie is not waited for: {took:?}"
    );
    z.wait().unwrap();
    assert_eq!(get_u32(&path, OFF_LOCK), 0, "released after the send");
}

#[test]
fn dead_holder_is_taken_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (path, port) = fresh_bus(&dir);
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    plant_holder(&path, pid);
    let (took, s) = timed_send(&port);
    assert_eq!(s.lock_broken_dead, 1, "{s:?}");
    assert!(took < shmif_stall_limit(), "{took:?}");
}

#[test]
fn live_unrelated_process_under_a_recorded_pid_is_taken_over_after_a_second() {
    // pid reuse: the recorded holder's pid now belongs to a process that never touches the bus.
    let dir = tempfile::tempdir().unwrap();
    let (path, port) = fresh_bus(&dir);
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    plant_holder(&path, sleeper.id());
    let (took, s) = timed_send(&port);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_eq!(s.lock_broken_stuck, 1, "{s:?}");
    assert!(took >= shmif_stall_limit(), "broken too early: {took:?}");
}

#[test]
fn pidless_holder_that_releases_within_a_second_is_never_broken() {
    // A NetBSD kernel records no pid. It holds the lock for 300 ms, then releases it.
    let dir = tempfile::tempdir().unwrap();
    let (path, port) = fresh_bus(&dir);
    plant_holder(&path, 0);
    let release = {
        let path = path.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            put_u32(&path, OFF_LOCK, 0);
        })
    };
    let (took, s) = timed_send(&port);
    release.join().unwrap();
    assert_eq!(s.lock_recoveries, 0, "a live holder was robbed: {s:?}");
    assert!(
        took >= Duration::from_millis(300),
        "sent inside its lock: {took:?}"
    );
}

#[test]
fn pidless_holder_that_never_releases_is_broken_after_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let (path, port) = fresh_bus(&dir);
    plant_holder(&path, 0);
    let (took, s) = timed_send(&port);
    assert_eq!(s.lock_broken_silent, 1, "{s:?}");
    assert!(took >= shmif_stall_limit(), "broken too early: {took:?}");
}

#[test]
fn truncated_bus_gives_an_error_not_a_signal() {
    // What a NetBSD kernel does to a bigger bus: ftruncate to 1 MiB, then (in the report that
    // led here) it panicked holding the lock.
    let dir = tempfile::tempdir().unwrap();
    let (path, port) = fresh_bus(&dir);
    let bus = port.bus().clone();
    port.send(&frame()).unwrap();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(1 << 20).unwrap();
    plant_holder(&path, 0);
    let e = port.send(&frame()).unwrap_err();
    assert!(matches!(e, SendError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    match bus.check() {
        Err(BusError::Truncated { size, mapped, .. }) => {
            assert_eq!((size, mapped), (1 << 20, 8 << 20));
        }
        other => panic!("{other:?}"),
    }
    // Receiving stops too, without touching the mapping.
    let mut rx = bus.port();
    let mut buf = [0u8; 2048];
    assert!(rx.recv(&mut buf, Duration::from_millis(50)).is_none());
    assert!(bus.image().is_empty());
    // A new attacher finds a header that does not fit the shorter file and says so.
    put_u32(&path, OFF_LOCK, 0);
    let e = Bus::attach(&path, &BusConfig::default()).unwrap_err();
    assert!(e.to_string().contains("beyond the ring"), "{e}");
}

/// The documented limit (FORMAT.md): one second without progress.
fn shmif_stall_limit() -> Duration {
    Duration::from_secs(1)
}
