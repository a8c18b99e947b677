//! Links: what an interface sends frames through and receives them from.
//!
//! A shmif link owns its bus [`shmif::Port`]: the stack thread receives from it directly (no
//! thread per bus; the node loop sleeps on every bus's futex word at once, see [`crate::node`])
//! and queues what it sends, so that one step's frames leave with one `send_batch` (one lock,
//! one wake). On a bus in NetBSD mode a small watcher thread also rings the node's doorbell
//! when the bus file is written, since NetBSD kernels wake nobody's futex. A tap link (`virtN`,
//! NetBSD's virt(4)) keeps an rx thread (a tap is a file descriptor) that queues frames on the
//! node's event channel and rings the doorbell; the stack sends through
//! [`virtif::TapSender`]. The `LinkTx` trait lets unit tests capture frames instead.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::TrySendError;

pub use crate::event::LinkId;
use crate::event::{Event, EventSender};
use crate::wire::Mac;

/// Frames a bus link queues before it sends them without waiting for the end of the step.
const MAX_QUEUED: usize = 64;

pub trait LinkTx: Send {
    fn send(&self, frame: &[u8]) -> Result<(), String>;
    /// Sends several frames at once; links that can batch override it.
    fn send_batch(&self, frames: &[&[u8]]) -> Result<(), String> {
        frames.iter().try_for_each(|f| self.send(f))
    }
    /// The link's bus counters as of now (zero for links without a bus).
    fn stats(&self) -> shmif::Stats {
        shmif::Stats::default()
    }
    /// The tap's counters, for tap links only.
    fn tap_stats(&self) -> Option<virtif::Stats> {
        None
    }
}

impl LinkTx for virtif::TapSender {
    fn send(&self, frame: &[u8]) -> Result<(), String> {
        virtif::TapSender::send(self, frame).map_err(|e| e.to_string())
    }
    fn tap_stats(&self) -> Option<virtif::Stats> {
        Some(virtif::TapSender::stats(self))
    }
}

impl LinkTx for shmif::PortSender {
    fn send(&self, frame: &[u8]) -> Result<(), String> {
        shmif::PortSender::send(self, frame).map_err(|e| e.to_string())
    }
    fn send_batch(&self, frames: &[&[u8]]) -> Result<(), String> {
        shmif::PortSender::send_batch(self, frames).map_err(|e| e.to_string())
    }
    fn stats(&self) -> shmif::Stats {
        shmif::PortSender::stats(self)
    }
}

/// An attached link as the stack sees it.
pub struct Link {
    pub id: LinkId,
    pub mac: Mac,
    /// What `ifconfig` shows as `linkstr`.
    pub linkstr: PathBuf,
    /// The bus of a shmif link, kept to read its mode (which a NetBSD peer can change later).
    bus: Option<Arc<shmif::Bus>>,
    /// The receiving port of a shmif link, read by the stack thread.
    port: Option<shmif::Port>,
    tx: Box<dyn LinkTx>,
    /// Frames of this step not sent yet (bus links only: they go out in one batch).
    queued: RefCell<Vec<Vec<u8>>>,
    /// Spare buffers for `queued`, so that a busy link does not allocate per frame.
    spare: RefCell<Vec<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    /// Frames the rx thread dropped because the stack's queue was full (it increments this).
    rx_queue_drops: Arc<AtomicU64>,
    /// How many of those the stack has already counted as `DropReason::RxQueueFull`.
    pub(crate) rx_queue_drops_counted: u64,
    /// The tap rx thread or the NetBSD-bus watcher, joined by [`Link::close`].
    rx_thread: Option<std::thread::JoinHandle<()>>,
    /// Written to stop a tap rx thread, which otherwise sleeps until a frame comes.
    rx_wake: Option<Arc<std::os::fd::OwnedFd>>,
}

impl Link {
    /// Sends `frame`, or, on a bus link, queues it for [`Link::flush`] at the end of the step.
    pub fn send(&self, frame: &[u8]) -> Result<(), String> {
        if self.port.is_none() {
            return self.tx.send(frame);
        }
        if !(shmif::format::MIN_FRAME..=shmif::format::MAX_FRAME).contains(&frame.len()) {
            // Refused now, with the bus's own reason, rather than lost in a later batch.
            return self.tx.send(frame);
        }
        let mut buf = self.spare.borrow_mut().pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        let full = {
            let mut q = self.queued.borrow_mut();
            q.push(buf);
            q.len() >= MAX_QUEUED
        };
        if full {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends what [`Link::send`] queued, in one batch. Returns how many frames failed.
    pub fn flush(&self) -> Result<(), String> {
        let mut q = self.queued.borrow_mut();
        if q.is_empty() {
            return Ok(());
        }
        let frames: Vec<&[u8]> = q.iter().map(|f| f.as_slice()).collect();
        let result = self.tx.send_batch(&frames);
        drop(frames);
        self.spare.borrow_mut().append(&mut q);
        result
    }

    /// Frames queued and not sent yet.
    pub fn queued(&self) -> usize {
        self.queued.borrow().len()
    }

    /// The receiving port of a bus link.
    pub fn port_mut(&mut self) -> Option<&mut shmif::Port> {
        self.port.as_mut()
    }

    /// Starts, once, the thread that rings the node's doorbell when a NetBSD kernel writes the
    /// bus file (NetBSD wakes its readers that way and never touches our futex).
    pub fn watch_netbsd_bus(&mut self, events: &EventSender) {
        if self.rx_thread.is_some() {
            return;
        }
        let Some(watch) = self.bus.as_ref().and_then(|b| b.watch()) else {
            return;
        };
        let Ok(wake) = new_wake() else {
            return;
        };
        let (stop, bell, wake_rx) = (self.stop.clone(), events.clone(), wake.clone());
        self.rx_thread = std::thread::Builder::new()
            .name(format!("watch-{}", self.linkstr.display()))
            .stack_size(64 * 1024)
            .spawn(move || {
                use std::os::fd::AsFd;
                // Sleeps until the bus file is written or the link stops: no timer.
                while !stop.load(Ordering::Relaxed) && watch.wait_or_wake(wake_rx.as_fd()) {
                    bell.ring();
                }
            })
            .ok();
        self.rx_wake = Some(wake);
    }

    /// The port's bus counters, read now (they are atomics the port updates as it goes).
    pub fn port_stats(&self) -> shmif::Stats {
        self.tx.stats()
    }

    /// The tap's counters, for tap links only.
    pub fn tap_stats(&self) -> Option<virtif::Stats> {
        self.tx.tap_stats()
    }

    /// Whether the link's bus is in NetBSD mode, read now; `None` for links without a bus.
    pub fn netbsd_mode(&self) -> Option<bool> {
        self.bus.as_ref().map(|b| b.netbsd_mode())
    }

    /// Frames the rx thread dropped so far because the stack's queue was full.
    pub fn rx_queue_drops(&self) -> u64 {
        self.rx_queue_drops.load(Ordering::Relaxed)
    }

    /// A link that hands frames to `tx` and receives nothing by itself (unit tests).
    pub fn custom(id: LinkId, mac: Mac, linkstr: &str, tx: Box<dyn LinkTx>) -> Link {
        Link::new(id, mac, PathBuf::from(linkstr), tx)
    }

    /// A link with nothing receiving yet: callers add the port or rx thread.
    fn new(id: LinkId, mac: Mac, linkstr: PathBuf, tx: Box<dyn LinkTx>) -> Link {
        Link {
            id,
            mac,
            linkstr,
            bus: None,
            port: None,
            tx,
            queued: RefCell::new(Vec::new()),
            spare: RefCell::new(Vec::new()),
            stop: Arc::new(AtomicBool::new(false)),
            rx_queue_drops: Arc::new(AtomicU64::new(0)),
            rx_queue_drops_counted: 0,
            rx_thread: None,
            rx_wake: None,
        }
    }

    /// Stops the rx or watcher thread and waits for it, so the device is closed when this
    /// returns: re-opening the same tap right after then finds it free.
    pub fn close(mut self) {
        self.stop();
        if let Some(t) = self.rx_thread.take() {
            let _ = t.join();
        }
    }

    /// Attaches to the bus file at `path` (created as `config` says if missing). The stack
    /// thread receives from its port.
    pub fn attach_shmif(
        id: LinkId,
        path: &Path,
        config: &shmif::BusConfig,
    ) -> Result<Link, shmif::BusError> {
        let bus = shmif::Bus::attach(path, config)?;
        let port = bus.port();
        let mut link = Link::new(
            id,
            Mac(port.mac()),
            path.to_path_buf(),
            Box::new(port.sender()),
        );
        link.port = Some(port);
        link.bus = Some(bus);
        Ok(link)
    }

    /// Opens (or creates) host tap `tap_name` in our own network namespace and starts the rx
    /// thread. The tap's MAC belongs to the host side; ours is a fresh random one.
    pub fn attach_tap(
        id: LinkId,
        tap_name: &str,
        events: EventSender,
    ) -> Result<Link, virtif::Error> {
        let tap = virtif::Tap::open(&virtif::TapConfig::new(tap_name))?;
        let tx = tap.sender();
        Link::start(
            id,
            random_mac(),
            PathBuf::from(tap_name),
            Box::new(tx),
            tap,
            events,
        )
        .map_err(|source| virtif::Error::Io {
            name: tap_name.to_owned(),
            op: "starting its rx thread".to_owned(),
            source,
        })
    }

    fn start(
        id: LinkId,
        mac: Mac,
        linkstr: PathBuf,
        tx: Box<dyn LinkTx>,
        rx: virtif::Tap,
        events: EventSender,
    ) -> std::io::Result<Link> {
        let mut link = Link::new(id, mac, linkstr, tx);
        let (stop, drops) = (link.stop.clone(), link.rx_queue_drops.clone());
        let wake = new_wake()?;
        let wake_rx = wake.clone();
        link.rx_thread = Some(
            std::thread::Builder::new()
                .name(format!("rx-{}", link.linkstr.display()))
                .stack_size(64 * 1024)
                .spawn(move || tap_rx_loop(id, rx, events, &stop, &drops, &wake_rx))?,
        );
        link.rx_wake = Some(wake);
        Ok(link)
    }
}

/// The eventfd that stops a link's rx or watcher thread (see `Link::stop`).
fn new_wake() -> std::io::Result<Arc<std::os::fd::OwnedFd>> {
    Ok(Arc::new(rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
    )?))
}

/// A locally administered unicast MAC, `b2:a1:` plus four random bytes (shmif ports use
/// `b2:a0:`, so the two kinds are told apart in captures).
fn random_mac() -> Mac {
    let r = getrandom::u32().unwrap_or_else(|_| std::process::id().rotate_left(16));
    let b = r.to_be_bytes();
    Mac([0xb2, 0xa1, b[0], b[1], b[2], b[3]])
}

impl Link {
    /// Tells the rx or watcher thread to stop, waking it through its eventfd.
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(fd) = &self.rx_wake {
            let _ = rustix::io::write(fd.as_ref(), &1u64.to_ne_bytes());
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Frames of this step still queued go out before the port does.
        let _ = self.flush();
        self.stop();
    }
}

fn tap_rx_loop(
    id: LinkId,
    mut rx: virtif::Tap,
    events: EventSender,
    stop: &AtomicBool,
    drops: &AtomicU64,
    wake: &std::os::fd::OwnedFd,
) {
    use std::os::fd::AsFd;
    // The host side may raise the tap's MTU to 64 KiB; such frames reach the stack, which
    // counts what it cannot take, rather than being cut here.
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        // Sleeps until a frame comes or the link stops: an idle tap costs no wakeups.
        match rx.recv_or_wake(&mut buf, wake.as_fd()) {
            Ok(Some(len)) => {
                let frame = buf[..len].to_vec();
                match events.try_send(Event::Frame { link: id, frame }) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        drops.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            Ok(None) => {}
            Err(e) => {
                // The tap was deleted under us: the link stays, silent; its counters say so.
                tracing::warn!("link {id}: receiving stopped: {e}");
                return;
            }
        }
    }
}
