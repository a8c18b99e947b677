//! NetBSD-compatible wakeups on Linux: NetBSD readers sleep on inotify `IN_MODIFY` of the bus
//! path, and NetBSD writers wake them by `pwrite`-ing the version word. Our futex wakeups are
//! in `sync`; this is only used on buses attached with `netbsd_compat`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::fs::inotify;

/// An inotify watch on the bus path, or `None` if the kernel refuses one (then readers poll).
pub(crate) fn inotify_watch(path: &Path) -> Option<OwnedFd> {
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
    inotify::add_watch(&fd, path, inotify::WatchFlags::MODIFY).ok()?;
    Some(fd)
}

/// Sleeps until the bus file is written or `timeout` passes; drains queued events.
/// Never sleeps longer than 10 ms at a time so that writers which only use the futex (peers
/// attached without compat mode) are still noticed, as NetBSD does on hosts without a watch.
pub(crate) fn inotify_wait(fd: &OwnedFd, timeout: Duration) {
    let slice = timeout.min(Duration::from_millis(10));
    let ts = rustix::time::Timespec {
        tv_sec: slice.as_secs() as i64,
        tv_nsec: slice.subsec_nanos() as i64,
    };
    let mut pfd = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
    if let Ok(n) = rustix::event::poll(&mut pfd, Some(&ts)) {
        if n > 0 {
            let mut buf = [0u8; 4096];
            while let Ok(got) = rustix::io::read(fd.as_fd(), &mut buf) {
                if got == 0 {
                    break;
                }
            }
        }
    }
}
