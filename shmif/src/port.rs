//! Ports: one per attached interface. A port writes frames under the bus lock and reads the
//! frames of every other sender, filtered on destination MAC unless promiscuous.

use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use crate::bus::Bus;
use crate::format::{now_timestamp, shmlab_sender, RecordHeader, MAX_FRAME, MIN_FRAME};
use crate::inbox::Inbox;
use crate::repair::{repair_if_needed, reset_ring};
use crate::ring::{Corrupt, HeaderSnapshot, Ring};
pub use crate::scan::Received;
use crate::scan::{self, Counters, NumberHint, Stats, Verdict};

/// Why a frame could not be sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("frame of {len} bytes is shorter than an Ethernet header ({MIN_FRAME} bytes)")]
    Runt { len: usize },
    #[error("frame of {len} bytes exceeds the bus maximum of {MAX_FRAME} bytes")]
    Oversize { len: usize },
    /// The bus file shrank under our mapping ([`crate::BusError::Truncated`]); nothing more can
    /// be sent on it.
    #[error("{}: bus file truncated (by a NetBSD kernel attaching to a bus that is not 1 MiB?); nothing more can be sent on it", path.display())]
    Truncated { path: PathBuf },
}
/// How to sleep until a port may have a frame (from [`Port::prepare_sleep`]).
#[derive(Debug)]
pub enum Sleep<'a> {
    /// Frames are waiting, or a writer may just have published: receive instead.
    Ready,
    /// Sleep while `word` holds `value`: a futex in the shared bus mapping (wait without
    /// `FUTEX_PRIVATE_FLAG`), which every shmlab writer wakes after publishing. NetBSD kernels
    /// do not: on a bus in NetBSD mode ([`crate::Bus::netbsd_mode`]) also watch the file
    /// ([`crate::Bus::watch`]).
    Futex { word: &'a AtomicU32, value: u32 },
}

struct PortShared {
    bus: Arc<Bus>,
    sender_id: u64,
    mac: [u8; 6],
    counters: Counters,
}

/// The sending half of a port: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct PortSender {
    shared: Arc<PortShared>,
}

/// One interface's attachment to a bus.
pub struct Port {
    tx: PortSender,
    inbox: Inbox,
    promiscuous: bool,
}

/// Random `b2:a0:..` MAC and sender id, as NetBSD derives them from one random value; the
/// sender id's high half marks the records as numbered by shmlab (`format::shmlab_sender`).
fn identity() -> (u64, [u8; 6]) {
    let low = getrandom::u32().unwrap_or_else(|_| {
        // No entropy source at all: fall back to something unique per process and instant.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u32) ^ std::process::id().rotate_left(16)
    });
    let r = low.to_le_bytes();
    (shmlab_sender(low), [0xb2, 0xa0, r[0], r[1], r[2], r[3]])
}

impl Port {
    pub(crate) fn new(bus: Arc<Bus>) -> Port {
        let (sender_id, mac) = identity();
        let inbox = Inbox::new(&bus);
        let mut port = Port {
            tx: PortSender {
                shared: Arc::new(PortShared {
                    bus,
                    sender_id,
                    mac,
                    counters: Counters::default(),
                }),
            },
            inbox,
            promiscuous: false,
        };
        port.start_at_newest();
        port
    }

    fn start_at_newest(&mut self) {
        let shared = &self.tx.shared;
        self.inbox.start_at_newest(&shared.bus, &shared.counters);
    }

    pub fn mac(&self) -> [u8; 6] {
        self.tx.shared.mac
    }

    pub fn sender_id(&self) -> u64 {
        self.tx.shared.sender_id
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.tx.shared.bus
    }

    /// Promiscuous ports deliver every frame but their own; others only frames addressed to
    /// their MAC, broadcast or multicast.
    pub fn set_promiscuous(&mut self, on: bool) {
        self.promiscuous = on;
    }

    pub fn stats(&self) -> Stats {
        self.tx.shared.counters.stats()
    }

    /// A handle that sends as this port, for a thread other than the one receiving.
    pub fn sender(&self) -> PortSender {
        self.tx.clone()
    }

    pub fn send(&self, frame: &[u8]) -> Result<(), SendError> {
        self.tx.send(frame)
    }

    pub fn send_batch(&self, frames: &[&[u8]]) -> Result<(), SendError> {
        self.tx.send_batch(frames)
    }

    /// The next frame if one is waiting, without sleeping.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Option<Received> {
        let (shared, promiscuous) = (&self.tx.shared, self.promiscuous);
        self.inbox
            .try_recv(buf, |inbox| refill(shared, promiscuous, inbox))
    }

    /// Gets ready to sleep until a writer publishes on this port's bus, for callers that wait on
    /// several things at once (one `futex_waitv` over many buses). Call it after
    /// [`Port::try_recv`] returned `None`, then sleep on the word unless told `Ready`.
    pub fn prepare_sleep(&mut self) -> Sleep<'_> {
        let bus = &self.tx.shared.bus;
        match self.inbox.prepare_sleep(bus) {
            Some(value) => Sleep::Futex {
                word: bus.mem.word(crate::format::OFF_SPARE),
                value,
            },
            None => Sleep::Ready,
        }
    }

    /// Whether a frame may be waiting, without reading it (for polling between sleeps).
    pub fn has_news(&self) -> bool {
        self.inbox.has_news(&self.tx.shared.bus)
    }

    /// The next frame, sleeping up to `timeout` for one.
    pub fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Option<Received> {
        let (shared, promiscuous) = (&self.tx.shared, self.promiscuous);
        self.inbox.recv(&shared.bus, buf, timeout, |inbox| {
            refill(shared, promiscuous, inbox)
        })
    }

    /// Test hook: takes the lock, writes half a record and never returns, so a test can kill the
    /// process inside the critical section.
    #[cfg(feature = "test-hooks")]
    pub fn hang_holding_lock(&self, frame: &[u8]) -> ! {
        let bus = &self.tx.shared.bus;
        let guard = bus.lock().expect("bus truncated");
        // Never released: the point is to die holding it.
        std::mem::forget(guard);
        let ring = Ring::new(&bus.mem);
        let mut snap = ring.snapshot();
        let prev = ring.read_header(snap.last);
        let start = ring.advance(
            snap.last,
            crate::format::RECORD_HEADER_SIZE as u32 + prev.len,
        );
        let header = RecordHeader {
            len: frame.len() as u32,
            seq: prev.seq.wrapping_add(1),
            sender: self.tx.shared.sender_id,
            ..RecordHeader::default()
        };
        let mut wrapped = false;
        if let Ok(off) = ring.write(&mut snap, start, &header.encode(), &mut wrapped) {
            let _ = ring.write(&mut snap, off, &frame[..frame.len() / 2], &mut wrapped);
        }
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// Copies the next batch of records out of the ring into the port's inbox. False if there was
/// nothing new.
fn refill(shared: &PortShared, promiscuous: bool, inbox: &mut Inbox) -> bool {
    let (me, mac) = (shared.sender_id, shared.mac);
    let verdict = move |h: &RecordHeader, dst: &[u8; 6]| {
        if h.sender == me {
            Verdict::Own
        } else if promiscuous || *dst == mac || dst[0] & 1 == 1 {
            Verdict::Deliver
        } else {
            Verdict::Filtered
        }
    };
    inbox.refill(&shared.bus, &shared.counters, &verdict)
}

impl PortSender {
    pub fn mac(&self) -> [u8; 6] {
        self.shared.mac
    }

    /// The port's counters (shared with the receiving half).
    pub fn stats(&self) -> Stats {
        self.shared.counters.stats()
    }

    pub fn send(&self, frame: &[u8]) -> Result<(), SendError> {
        self.send_batch(&[frame])
    }

    /// Writes all `frames` under one lock acquisition and wakes readers once.
    pub fn send_batch(&self, frames: &[&[u8]]) -> Result<(), SendError> {
        for f in frames {
            check_frame(f)?;
        }
        if frames.is_empty() {
            return Ok(());
        }
        let (sec, usec) = now_timestamp();
        let bus = &self.shared.bus;
        let mem = &bus.mem;
        let counters = &self.shared.counters;
        let truncated = || SendError::Truncated {
            path: bus.path().to_path_buf(),
        };
        let mut guard = bus.lock().map_err(|_| truncated())?;
        let ring = Ring::new(mem);
        let floor = bus.number_hint.get().map(|h| h.next);
        let mut snap = repair_if_needed(&ring, guard.how, counters, floor);
        let mut number = starting_number(&ring, &snap, bus.number_hint.get());
        let mut bytes = 0u64;
        let mut next = None;
        for frame in frames {
            let stamp = Stamp {
                sender: self.shared.sender_id,
                sec,
                usec,
                number,
            };
            if let Err(Corrupt(_)) = write_record(&ring, &mut snap, &mut next, frame, stamp) {
                // The ring changed under us in a way no writer leaves it (a foreign process
                // scribbled on it): re-format and write the frame into the fresh ring.
                reset_ring(&ring, &mut snap, number.wrapping_sub(1), counters);
                next = None;
                let _ = write_record(&ring, &mut snap, &mut next, frame, stamp);
            }
            number = number.wrapping_add(1);
            bytes += frame.len() as u64;
        }
        if let Some(end) = next {
            // The absolute end of our last record: `gen` already counts a wrap it made.
            bus.number_hint.set(NumberHint {
                pos: snap.gen * ring.size() as u64 + end as u64,
                next: number,
            });
        }
        // Read under the lock: a reader switches the bus to NetBSD mode only while holding it.
        let netbsd = bus.netbsd_mode();
        guard.publish();
        drop(guard);
        if netbsd {
            bus.wake_netbsd();
        }
        Counters::add(&counters.sent, frames.len() as u64);
        Counters::add(&counters.sent_bytes, bytes);
        Ok(())
    }
}

fn check_frame(f: &[u8]) -> Result<(), SendError> {
    if f.len() < MIN_FRAME {
        Err(SendError::Runt { len: f.len() })
    } else if f.len() > MAX_FRAME {
        Err(SendError::Oversize { len: f.len() })
    } else {
        Ok(())
    }
}

/// The number of the first record of a batch. Under the lock.
fn starting_number(ring: &Ring<'_>, snap: &HeaderSnapshot, hint: Option<NumberHint>) -> u32 {
    let newest = ring.read_header(snap.last);
    if scan::writer_numbered(&newest) {
        return newest.seq.wrapping_add(1);
    }
    match ring.span(snap) {
        // No shmlab-numbered record left to count from (only NetBSD frames in the ring): any
        // start will do, readers re-anchor on it.
        Ok(span) => scan::next_number(ring, snap, span, hint).unwrap_or(1),
        Err(_) => 1,
    }
}

/// What a record header says besides its length.
#[derive(Clone, Copy)]
struct Stamp {
    sender: u64,
    sec: u32,
    usec: u32,
    number: u32,
}

/// Where the next record goes; carried through a batch so the writer does not re-read the
/// header it has just written.
type NextRecord = Option<u32>;

/// Appends one record after the newest and publishes it. Under the lock.
fn write_record(
    ring: &Ring<'_>,
    snap: &mut HeaderSnapshot,
    next: &mut NextRecord,
    frame: &[u8],
    stamp: Stamp,
) -> Result<(), Corrupt> {
    let start = match *next {
        Some(n) => n,
        None => ring.next_record(snap.last)?,
    };
    let header = RecordHeader {
        len: frame.len() as u32,
        sec: stamp.sec,
        usec: stamp.usec,
        seq: stamp.number,
        sender: stamp.sender,
    };
    let mut wrapped = false;
    let off = ring.write(snap, start, &header.encode(), &mut wrapped)?;
    let end = ring.write(snap, off, frame, &mut wrapped)?;
    // Published only now: a writer killed above leaves the previous newest record in place.
    snap.last = start;
    if wrapped {
        snap.gen = snap.gen.wrapping_add(1);
    }
    ring.store(snap);
    *next = Some(end);
    Ok(())
}
