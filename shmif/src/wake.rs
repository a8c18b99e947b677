//! NetBSD-compatible wakeups on Linux: NetBSD readers sleep on inotify `IN_MODIFY` of the bus
//! path, and NetBSD writers wake them by `pwrite`-ing the version word. Our futex wakeups are
//! in `sync`; this is only used on buses in NetBSD mode, where our writers `pwrite` as well.

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
pub(crate) fn inotify_wait(fd: &OwnedFd, timeout: Duration) {
    let ts = rustix::time::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: timeout.subsec_nanos() as i64,
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

/// Sleeps, with no timeout, until the bus file is written (true) or `wake` becomes readable
/// (false); drains queued bus events.
pub(crate) fn inotify_wait_or_wake(fd: &OwnedFd, wake: std::os::fd::BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags};
    loop {
        let mut pfd = [
            PollFd::new(fd, PollFlags::IN),
            PollFd::new(&wake, PollFlags::IN),
        ];
        match rustix::event::poll(&mut pfd, None) {
            Ok(_) if !pfd[1].revents().is_empty() => return false,
            Ok(_) if !pfd[0].revents().is_empty() => {
                let mut buf = [0u8; 4096];
                while let Ok(got) = rustix::io::read(fd.as_fd(), &mut buf) {
                    if got == 0 {
                        break;
                    }
                }
                return true;
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            // Nothing sensible to wait on: say "written", the caller looks at the bus.
            Err(_) => return true,
        }
    }
}
