//! Ports: one per attached interface. A port writes frames under the bus lock and reads the
//! frames of every other sender, filtered on destination MAC unless promiscuous.

use std::sync::Arc;
use std::time::Duration;

use crate::bus::Bus;
use crate::format::{now_timestamp, RecordHeader, MAX_FRAME, MIN_FRAME, OFF_VERSION, VERSION};
use crate::inbox::Inbox;
use crate::ring::{Corrupt, HeaderSnapshot, Ring};
use crate::scan::{self, Counters, Stats, Verdict};
use crate::sync::{self, Acquired};

/// A frame length the bus cannot carry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("frame of {len} bytes is shorter than an Ethernet header ({MIN_FRAME} bytes)")]
    Runt { len: usize },
    #[error("frame of {len} bytes exceeds the bus maximum of {MAX_FRAME} bytes")]
    Oversize { len: usize },
}

/// A frame handed out by [`Port::recv`] or [`crate::Reader::recv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes copied into the caller's buffer.
    pub len: usize,
    /// Length of the frame on the bus (larger than `len` only if the buffer was too small).
    pub frame_len: usize,
    /// Sender's timestamp, wall clock for shmlab writers.
    pub sec: u32,
    pub usec: u32,
    /// Sender id of the interface that wrote it.
    pub sender: u64,
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

/// Random `b2:a0:..` MAC and sender id, as NetBSD derives them from one random 64-bit value.
fn identity() -> (u64, [u8; 6]) {
    let id = getrandom::u64().unwrap_or_else(|_| {
        // No entropy source at all: fall back to something unique per process and instant.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u64) ^ ((std::process::id() as u64) << 32)
    });
    let r = id.to_ne_bytes();
    (id, [0xb2, 0xa0, r[0], r[1], r[2], r[3]])
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
        if !shared.bus.netbsd_compat {
            self.inbox.seq = scan::SeqCursor::at_newest(&Ring::new(&shared.bus.mem));
            return;
        }
        let mem = &shared.bus.mem;
        let acquired = sync::lock(mem);
        let ring = Ring::new(mem);
        let snap = repair_if_needed(&ring, acquired, &shared.counters);
        // repair_if_needed returns a header whose span is valid.
        if let Ok(span) = ring.span(&snap) {
            self.inbox.cursor.pos = span.end;
        }
        self.inbox.cursor.last_seq = Some(ring.read_header(snap.last).seq);
        sync::unlock(mem, false);
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
        let mem = &self.tx.shared.bus.mem;
        let _ = sync::lock(mem);
        let ring = Ring::new(mem);
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
    if shared.bus.netbsd_compat {
        return refill_locked(shared, inbox, &verdict);
    }
    let ring = Ring::new(&shared.bus.mem);
    scan::scan_unlocked(
        &ring,
        &mut inbox.seq,
        &mut inbox.staging,
        &verdict,
        &shared.counters,
    )
}

/// NetBSD peers do not number their records, so on a shared bus a port reads like NetBSD:
/// under the lock, keeping its place by offset and generation.
fn refill_locked(
    shared: &PortShared,
    inbox: &mut Inbox,
    verdict: &dyn Fn(&RecordHeader, &[u8; 6]) -> Verdict,
) -> bool {
    let mem = &shared.bus.mem;
    let counters = &shared.counters;
    let acquired = sync::lock(mem);
    let ring = Ring::new(mem);
    let snap = repair_if_needed(&ring, acquired, counters);
    let Ok(span) = ring.span(&snap) else {
        sync::unlock(mem, false);
        return false;
    };
    let cursor = &mut inbox.cursor;
    if cursor.pos < span.first || cursor.pos > span.end {
        cursor.resync(span.first, counters);
    }
    let (pos, bad) = scan::scan(&ring, span, cursor.pos, &mut inbox.staging, verdict);
    cursor.pos = pos;
    if bad.is_some() {
        // A record nobody can walk past (oversize length, or one that overruns the newest
        // record): count it and continue after the newest record.
        Counters::add(&counters.corrupt, 1);
        cursor.jumped_from.get_or_insert(pos);
        cursor.pos = span.end;
    }
    sync::unlock(mem, false);
    inbox.staging.account(cursor, counters);
    !inbox.staging.records.is_empty() || bad.is_some()
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
        let acquired = sync::lock(mem);
        let ring = Ring::new(mem);
        let mut snap = repair_if_needed(&ring, acquired, counters);
        let mut bytes = 0u64;
        let stamp = (self.shared.sender_id, sec, usec);
        let mut next = None;
        for frame in frames {
            if let Err(Corrupt(_)) = write_record(&ring, &mut snap, &mut next, frame, stamp) {
                // The ring changed under us in a way no writer leaves it (a foreign process
                // scribbled on it): re-format and write the frame into the fresh ring.
                reset_ring(&ring, &mut snap, counters);
                next = None;
                let _ = write_record(&ring, &mut snap, &mut next, frame, stamp);
            }
            bytes += frame.len() as u64;
        }
        sync::unlock(mem, true);
        if bus.netbsd_compat {
            // NetBSD's dowakeup(): a real write so kqueue/inotify watchers fire.
            let _ = rustix::io::pwrite(&bus.file, &VERSION.to_ne_bytes(), OFF_VERSION as u64);
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

/// Where the next record goes and its number; carried through a batch so the writer does not
/// re-read the header it has just written.
type NextRecord = Option<(u32, u32)>;

/// Appends one record after the newest and publishes it. Under the lock.
fn write_record(
    ring: &Ring<'_>,
    snap: &mut HeaderSnapshot,
    next: &mut NextRecord,
    frame: &[u8],
    stamp: (u64, u32, u32),
) -> Result<(), Corrupt> {
    let (sender, sec, usec) = stamp;
    let (start, seq) = match *next {
        Some(n) => n,
        None => {
            let prev = ring.read_header(snap.last);
            (ring.next_record(snap.last)?, prev.seq.wrapping_add(1))
        }
    };
    let header = RecordHeader {
        len: frame.len() as u32,
        sec,
        usec,
        seq,
        sender,
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
    *next = Some((end, seq.wrapping_add(1)));
    Ok(())
}

fn reset_ring(ring: &Ring<'_>, snap: &mut HeaderSnapshot, counters: &Counters) {
    let last_seq = if snap.last < ring.size() {
        ring.read_header(snap.last).seq
    } else {
        0
    };
    ring.reset(snap, last_seq);
    Counters::add(&counters.ring_resets, 1);
    Counters::add(&counters.corrupt, 1);
}

/// Under the lock: the header, after a full check and repair if the previous holder died or the
/// cheap check fails.
pub(crate) fn repair_if_needed(
    ring: &Ring<'_>,
    acquired: Acquired,
    counters: &Counters,
) -> HeaderSnapshot {
    let mut snap = ring.snapshot();
    let sound = match acquired {
        Acquired::FromDeadHolder => {
            Counters::add(&counters.lock_recoveries, 1);
            ring.validate(&snap).is_ok()
        }
        Acquired::Normally => ring.span(&snap).is_ok(),
    };
    if !sound {
        reset_ring(ring, &mut snap, counters);
    }
    snap
}

/// Whether anything was published past `pos` (a hint for sleepers; the real check is locked).
pub(crate) fn has_news(bus: &Bus, pos: u64) -> bool {
    let ring = Ring::new(&bus.mem);
    let snap = ring.snapshot();
    match ring.span(&snap) {
        Ok(span) => span.end != pos,
        Err(_) => true,
    }
}
