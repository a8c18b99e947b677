//! Links: what an interface sends frames through and receives them from.
//!
//! A shmif link is a bus [`shmif::Port`] owned by its own rx thread, which pushes every frame
//! into the stack's event channel; the stack thread sends directly through the port's
//! [`shmif::PortSender`]. The `LinkTx` trait lets unit tests capture frames instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use crate::node::Event;
use crate::wire::Mac;

/// Identifies one attachment, so frames still queued from a detached link are recognised.
pub type LinkId = u64;

/// How often the rx thread wakes up with nothing to read (to notice it should stop).
const RX_POLL: Duration = Duration::from_millis(100);
/// How often the rx thread reports port statistics when they change. `shmif::PortSender` has no
/// `stats()`: only the rx thread's `Port` can read them, so it reports them by message.
const STATS_EVERY: Duration = Duration::from_millis(200);

pub trait LinkTx: Send {
    fn send(&self, frame: &[u8]) -> Result<(), String>;
}

impl LinkTx for shmif::PortSender {
    fn send(&self, frame: &[u8]) -> Result<(), String> {
        shmif::PortSender::send(self, frame).map_err(|e| e.to_string())
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
    /// Latest statistics the rx thread reported.
    pub port_stats: shmif::Stats,
    /// Frames the rx thread dropped because the stack's queue was full.
    pub rx_queue_drops: u64,
}

impl Link {
    pub fn send(&self, frame: &[u8]) -> Result<(), String> {
        self.tx.send(frame)
    }

    /// A link that hands frames to `tx` and receives nothing by itself (unit tests).
    pub fn custom(id: LinkId, mac: Mac, linkstr: &str, tx: Box<dyn LinkTx>) -> Link {
        Link {
            id,
            mac,
            linkstr: PathBuf::from(linkstr),
            tx,
            stop: Arc::new(AtomicBool::new(false)),
            port_stats: shmif::Stats::default(),
            rx_queue_drops: 0,
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
        let spawned = std::thread::Builder::new()
            .name(format!("rx-{}", path.display()))
            .stack_size(64 * 1024)
            .spawn(move || rx_loop(id, port, events, &stop_rx));
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
            port_stats: shmif::Stats::default(),
            rx_queue_drops: 0,
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The rx thread notices within RX_POLL and drops its port.
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn rx_loop(id: LinkId, mut port: shmif::Port, events: Sender<Event>, stop: &AtomicBool) {
    let mut buf = vec![0u8; 2048];
    let mut drops = 0u64;
    let mut reported = (shmif::Stats::default(), 0u64);
    let mut last_report = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(r) = port.recv(&mut buf, RX_POLL) {
            let frame = buf[..r.len].to_vec();
            match events.try_send(Event::Frame { link: id, frame }) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => drops += 1,
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        if last_report.elapsed() >= STATS_EVERY {
            last_report = Instant::now();
            let now = (port.stats(), drops);
            if now != reported {
                reported = now;
                let ev = Event::LinkStats {
                    link: id,
                    stats: now.0,
                    rx_queue_drops: now.1,
                };
                if let Err(TrySendError::Disconnected(_)) = events.try_send(ev) {
                    return;
                }
            }
        }
    }
}
