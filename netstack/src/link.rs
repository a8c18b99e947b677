//! Links: what an interface sends frames through and receives them from.
//!
//! A shmif link is a bus [`shmif::Port`] owned by its own rx thread, which pushes every frame
//! into the stack's event channel; the stack thread sends directly through the port's
//! [`shmif::PortSender`], which also reads the port's bus counters at any time. A tap link
//! (`virtN`, NetBSD's virt(4)) is the same shape over a host tap device: [`virtif::Tap`] in the
//! rx thread, [`virtif::TapSender`] for the stack. The `LinkTx` trait lets unit tests capture
//! frames instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};

use crate::node::Event;
use crate::wire::Mac;

/// Identifies one attachment, so frames still queued from a detached link are recognised.
pub type LinkId = u64;

/// How often the rx thread wakes up with nothing to read (to notice it should stop).
const RX_POLL: Duration = Duration::from_millis(100);
pub trait LinkTx: Send {
    fn send(&self, frame: &[u8]) -> Result<(), String>;
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

/// The receiving half an rx thread owns.
trait LinkRx: Send + 'static {
    /// The longest frame this link can hand over (the receive buffer's size).
    const MAX_FRAME: usize;
    /// One frame into `buf` within `timeout`; `Err` when the link is gone for good.
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, String>;
}

impl LinkRx for shmif::Port {
    const MAX_FRAME: usize = shmif::format::MAX_FRAME;
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, String> {
        Ok(shmif::Port::recv(self, buf, timeout).map(|r| r.len))
    }
}

impl LinkRx for virtif::Tap {
    /// The host side may raise the tap's MTU to 64 KiB; such frames reach the stack, which
    /// counts what it cannot take, rather than being cut here.
    const MAX_FRAME: usize = 65536;
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, String> {
        virtif::Tap::recv(self, buf, timeout).map_err(|e| e.to_string())
    }
}

impl LinkTx for shmif::PortSender {
    fn send(&self, frame: &[u8]) -> Result<(), String> {
        shmif::PortSender::send(self, frame).map_err(|e| e.to_string())
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
    tx: Box<dyn LinkTx>,
    stop: Arc<AtomicBool>,
    /// Frames the rx thread dropped because the stack's queue was full (it increments this).
    rx_queue_drops: Arc<AtomicU64>,
    /// How many of those the stack has already counted as `DropReason::RxQueueFull`.
    pub(crate) rx_queue_drops_counted: u64,
    /// The rx thread, joined by [`Link::close`].
    rx_thread: Option<std::thread::JoinHandle<()>>,
}

impl Link {
    pub fn send(&self, frame: &[u8]) -> Result<(), String> {
        self.tx.send(frame)
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
        Link {
            id,
            mac,
            linkstr: PathBuf::from(linkstr),
            bus: None,
            tx,
            stop: Arc::new(AtomicBool::new(false)),
            rx_queue_drops: Arc::new(AtomicU64::new(0)),
            rx_queue_drops_counted: 0,
            rx_thread: None,
        }
    }

    /// Stops the rx thread and waits for it (at most one RX_POLL), so the device is closed
    /// when this returns: re-opening the same tap right after then finds it free.
    pub fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.rx_thread.take() {
            let _ = t.join();
        }
    }

    /// Attaches to the bus file at `path` (created as `config` says if missing) and starts the
    /// rx thread.
    pub fn attach_shmif(
        id: LinkId,
        path: &Path,
        config: &shmif::BusConfig,
        events: Sender<Event>,
    ) -> Result<Link, shmif::BusError> {
        let bus = shmif::Bus::attach(path, config)?;
        let port = bus.port();
        let mac = Mac(port.mac());
        let tx = port.sender();
        let mut link = Link::start(id, mac, path.to_path_buf(), Box::new(tx), port, events)
            .map_err(|source| shmif::BusError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        link.bus = Some(bus);
        Ok(link)
    }

    /// Opens (or creates) host tap `tap_name` in our own network namespace and starts the rx
    /// thread. The tap's MAC belongs to the host side; ours is a fresh random one.
    pub fn attach_tap(
        id: LinkId,
        tap_name: &str,
        events: Sender<Event>,
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
        rx: impl LinkRx,
        events: Sender<Event>,
    ) -> std::io::Result<Link> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_rx = stop.clone();
        let rx_queue_drops = Arc::new(AtomicU64::new(0));
        let drops = rx_queue_drops.clone();
        let rx_thread = std::thread::Builder::new()
            .name(format!("rx-{}", linkstr.display()))
            .stack_size(64 * 1024)
            .spawn(move || rx_loop(id, rx, events, &stop_rx, &drops))?;
        Ok(Link {
            id,
            mac,
            linkstr,
            bus: None,
            tx,
            stop,
            rx_queue_drops,
            rx_queue_drops_counted: 0,
            rx_thread: Some(rx_thread),
        })
    }
}

/// A locally administered unicast MAC, `b2:a1:` plus four random bytes (shmif ports use
/// `b2:a0:`, so the two kinds are told apart in captures).
fn random_mac() -> Mac {
    let r = getrandom::u32().unwrap_or_else(|_| std::process::id().rotate_left(16));
    let b = r.to_be_bytes();
    Mac([0xb2, 0xa1, b[0], b[1], b[2], b[3]])
}

impl Drop for Link {
    fn drop(&mut self) {
        // The rx thread notices within RX_POLL and drops its port.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn rx_loop<R: LinkRx>(
    id: LinkId,
    mut rx: R,
    events: Sender<Event>,
    stop: &AtomicBool,
    drops: &AtomicU64,
) {
    // Sized per link kind: a bus port's buffer stays small, which idle node memory shows.
    let mut buf = vec![0u8; R::MAX_FRAME];
    while !stop.load(Ordering::Relaxed) {
        match rx.recv(&mut buf, RX_POLL) {
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
