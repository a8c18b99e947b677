//! Links: what an interface sends frames through and receives them from.
//!
//! A shmif link is a bus [`shmif::Port`] owned by its own rx thread, which pushes every frame
//! into the stack's event channel; the stack thread sends directly through the port's
//! [`shmif::PortSender`], which also reads the port's bus counters at any time. The `LinkTx`
//! trait lets unit tests capture frames instead.

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
    tx: Box<dyn LinkTx>,
    stop: Arc<AtomicBool>,
    /// Frames the rx thread dropped because the stack's queue was full (it increments this).
    rx_queue_drops: Arc<AtomicU64>,
    /// How many of those the stack has already counted as `DropReason::RxQueueFull`.
    pub(crate) rx_queue_drops_counted: u64,
}

impl Link {
    pub fn send(&self, frame: &[u8]) -> Result<(), String> {
        self.tx.send(frame)
    }

    /// The port's bus counters, read now (they are atomics the port updates as it goes).
    pub fn port_stats(&self) -> shmif::Stats {
        self.tx.stats()
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
            tx,
            stop: Arc::new(AtomicBool::new(false)),
            rx_queue_drops: Arc::new(AtomicU64::new(0)),
            rx_queue_drops_counted: 0,
        }
    }

    /// Attaches to the bus file at `path` and starts the rx thread.
    pub fn attach_shmif(
        id: LinkId,
        path: &Path,
        events: Sender<Event>,
    ) -> Result<Link, shmif::BusError> {
        let bus = shmif::Bus::attach(path, &shmif::BusConfig::default())?;
        let port = bus.port();
        let mac = Mac(port.mac());
        let tx = port.sender();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_rx = stop.clone();
        let rx_queue_drops = Arc::new(AtomicU64::new(0));
        let drops = rx_queue_drops.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("rx-{}", path.display()))
            .stack_size(64 * 1024)
            .spawn(move || rx_loop(id, port, events, &stop_rx, &drops));
        if let Err(e) = spawned {
            return Err(shmif::BusError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
        Ok(Link {
            id,
            mac,
            linkstr: path.to_path_buf(),
            tx: Box::new(tx),
            stop,
            rx_queue_drops,
            rx_queue_drops_counted: 0,
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The rx thread notices within RX_POLL and drops its port.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn rx_loop(
    id: LinkId,
    mut port: shmif::Port,
    events: Sender<Event>,
    stop: &AtomicBool,
    drops: &AtomicU64,
) {
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        if let Some(r) = port.recv(&mut buf, RX_POLL) {
            let frame = buf[..r.len].to_vec();
            match events.try_send(Event::Frame { link: id, frame }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    drops.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}
