//! Creating, checking and attaching bus files.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::format::{
    RecordHeader, RecordKind, BUS_HEADER_SIZE, MAGIC, MAX_BUS_SIZE, MIN_BUS_SIZE, OFF_LOCK,
    OFF_MAGIC, OFF_SPARE, OFF_VERSION, VERSION, VERSION_2,
};
use crate::memory::BusMemory;
use crate::ring::{HeaderSnapshot, Ring};
use crate::scan::{writer_numbered, NumberHint};
use crate::sync::{self, Acquired, LockGuard, Truncated};

/// Everything that can go wrong attaching a bus. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a shmif bus: bad magic {found:#x} (expected 0 or {MAGIC:#x})")]
    BadMagic { path: PathBuf, found: u32 },
    #[error("{path}: bus file is {size} bytes, below the minimum of {MIN_BUS_SIZE}")]
    TooSmall { path: PathBuf, size: u64 },
    #[error("{path}: bus size {size} is above the maximum of {MAX_BUS_SIZE}")]
    TooLarge { path: PathBuf, size: u64 },
    #[error(
        "{path}: bus file is {size} bytes; a bus shared with NetBSD must be exactly \
         {MIN_BUS_SIZE} (1 MiB, NetBSD's fixed size): remove it or use another path"
    )]
    NotNetbsdSize { path: PathBuf, size: u64 },
    #[error("{path}: bus version {found} is not supported (this is shmif version {VERSION})")]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{path}: inconsistent bus header: {what}")]
    Inconsistent { path: PathBuf, what: String },
    #[error(
        "{path}: bus file shrank to {size} bytes under a {mapped}-byte mapping (a NetBSD \
         kernel truncates every bus it attaches to 1 MiB): this bus is unusable; share only \
         1 MiB buses with NetBSD"
    )]
    Truncated {
        path: PathBuf,
        size: u64,
        mapped: u64,
    },
}

/// How to attach.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// Size of a bus this call creates (an existing file keeps its size). Default 8 MiB.
    pub size: u64,
    /// The bus is meant to be shared with NetBSD rump kernels: it is created at 1 MiB (their
    /// fixed size) and put into NetBSD mode now rather than when the first NetBSD frame shows
    /// up. An existing bus of another size is refused. Without it, a bus a NetBSD kernel made
    /// or wrote on is recognised on its own.
    pub netbsd: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            size: crate::format::DEFAULT_BUS_SIZE,
            netbsd: false,
        }
    }
}

impl BusConfig {
    /// A bus to share with NetBSD rump kernels: 1 MiB, in NetBSD mode from the start.
    pub fn netbsd() -> Self {
        BusConfig {
            size: MIN_BUS_SIZE,
            netbsd: true,
        }
    }
}

/// Header fields as `shmif_dumpbus -h` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderInfo {
    pub magic: u32,
    pub version: u32,
    pub gen: u64,
    pub first: u32,
    pub last: u32,
    pub lock: u32,
    pub spare: u32,
    pub data_size: u32,
    /// The bus is in NetBSD mode (the sticky flag in `spare`).
    pub netbsd_mode: bool,
}

/// An attached bus file. Cheap to share: ports and readers hold an `Arc<Bus>`.
pub struct Bus {
    pub(crate) mem: BusMemory,
    pub(crate) file: File,
    path: PathBuf,
    mapped: u64,
    /// Set once the file was found shorter than the mapping: nothing touches the mapping again.
    truncated: AtomicBool,
    /// Coarse-clock millisecond after which the next size check is due (see
    /// [`Bus::still_mapped_soon`]).
    next_size_check: AtomicU64,
    /// Where this process's writers left off numbering (see `scan::next_number`).
    pub(crate) number_hint: HintCell,
    /// How the lock was had when attaching, if it had to be taken over: the first port made
    /// counts it (a bus has no counters of its own).
    pub(crate) attach_recovery: Mutex<Option<Acquired>>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("path", &self.path)
            .field("data_size", &self.mem.data_size())
            .finish()
    }
}

/// A [`NumberHint`] shared by the writers of one process. Read and written only under the bus
/// lock, whose acquire and release order these relaxed accesses, so two plain atomics do (a
/// mutex here cost the send path measurably).
#[derive(Default)]
pub(crate) struct HintCell {
    pos: AtomicU64,
    /// The number, plus one bit above it saying the hint is set.
    next: AtomicU64,
}

impl HintCell {
    const SET: u64 = 1 << 32;

    pub(crate) fn get(&self) -> Option<NumberHint> {
        let next = self.next.load(Ordering::Relaxed);
        (next & Self::SET != 0).then(|| NumberHint {
            pos: self.pos.load(Ordering::Relaxed),
            next: next as u32,
        })
    }

    pub(crate) fn set(&self, hint: NumberHint) {
        self.pos.store(hint.pos, Ordering::Relaxed);
        self.next
            .store(Self::SET | hint.next as u64, Ordering::Relaxed);
    }
}

/// Milliseconds since boot on the coarse clock: a vDSO read, cheap enough for every send.
fn coarse_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// How often a busy sender re-checks the file size (an idle one checks before sleeping).
const SIZE_CHECK_MS: u64 = 2;

impl Bus {
    /// Attaches to the bus at `path`, creating it (mode 0600, `config.size` bytes, or 1 MiB for
    /// a NetBSD bus) if the file is missing or empty. Refuses files that are not buses or whose
    /// header cannot be right.
    pub fn attach(path: impl AsRef<Path>, config: &BusConfig) -> Result<Arc<Bus>, BusError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| BusError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // Creation is serialised between shmlab processes so two creators cannot size the file
        // differently under each other's mappings.
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(e.into()))?;
        let mut size = file.metadata().map_err(io)?.len();
        if size == 0 {
            let want = if config.netbsd {
                MIN_BUS_SIZE
            } else {
                config.size
            };
            check_size(&path, want)?;
            file.set_len(want).map_err(io)?;
            size = want;
        }
        if config.netbsd && size != MIN_BUS_SIZE {
            return Err(BusError::NotNetbsdSize { path, size });
        }
        let bus = Self::attach_mapped(path, file, size, config)?;
        let _ = rustix::fs::flock(&bus.file, rustix::fs::FlockOperation::Unlock);
        Ok(bus)
    }

    fn attach_mapped(
        path: PathBuf,
        file: File,
        size: u64,
        config: &BusConfig,
    ) -> Result<Arc<Bus>, BusError> {
        check_size(&path, size)?;
        let mem = BusMemory::map(&file, size, true).map_err(|source| BusError::Io {
            path: path.clone(),
            source,
        })?;
        let bus = Bus {
            mem,
            file,
            path,
            mapped: size,
            truncated: AtomicBool::new(false),
            next_size_check: AtomicU64::new(0),
            number_hint: HintCell::default(),
            attach_recovery: Mutex::new(None),
        };
        let mem = &bus.mem;
        let magic = mem.word(OFF_MAGIC).load(Ordering::Acquire);
        if magic != 0 && magic != MAGIC {
            return Err(BusError::BadMagic {
                path: bus.path,
                found: magic,
            });
        }
        let truncated = |bus: &Bus| bus.truncation_error();
        {
            // Lock first: a NetBSD kernel may be initialising the same file right now.
            let guard = bus.lock().map_err(|_| truncated(&bus))?;
            if let Acquired::Broken(_) = guard.how {
                // Whoever held it may have left half a record: check the chain, re-format the
                // ring if it is broken (a port counts this when it is made).
                let ring = Ring::new(mem);
                let mut snap = ring.snapshot();
                if ring.magic_set() && ring.validate(&snap).is_err() {
                    ring.reset(&mut snap, 0);
                }
                *bus.attach_recovery
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(guard.how);
            }
            let mut netbsd = config.netbsd;
            if mem.word(OFF_MAGIC).load(Ordering::Acquire) == 0 {
                let ring = Ring::new(mem);
                ring.store(&HeaderSnapshot {
                    gen: 0,
                    first: mem.data_size(),
                    last: 0,
                });
                mem.copy_in(0, &RecordHeader::default().encode());
                mem.word(OFF_VERSION).store(VERSION, Ordering::Release);
                mem.word(OFF_MAGIC).store(MAGIC, Ordering::Release);
            }
            match mem.word(OFF_VERSION).load(Ordering::Acquire) {
                VERSION => {}
                // A bus a NetBSD kernel made that nobody has sent on yet: NetBSD sets the
                // version only with its first wakeup (we always set it at creation). We set it
                // now so tools accept the bus.
                0 => {
                    netbsd |= size == MIN_BUS_SIZE;
                    mem.word(OFF_VERSION).store(VERSION, Ordering::Release);
                }
                found => {
                    drop(guard);
                    return Err(BusError::UnsupportedVersion {
                        path: bus.path,
                        found,
                    });
                }
            }
            let ring = Ring::new(mem);
            let snap = ring.snapshot();
            if let Err(what) = check_header(&ring, &snap) {
                drop(guard);
                return Err(BusError::Inconsistent {
                    path: bus.path,
                    what,
                });
            }
            let flagged = sync::netbsd_mode(mem);
            if flagged && size != MIN_BUS_SIZE {
                drop(guard);
                return Err(BusError::Inconsistent {
                    path: bus.path,
                    what: format!("NetBSD-mode flag set on a bus of {size} bytes (not 1 MiB)"),
                });
            }
            if !flagged && size == MIN_BUS_SIZE && (netbsd || holds_foreign_frames(&ring, &snap)) {
                sync::set_netbsd_mode(mem);
            }
        }
        Ok(Arc::new(bus))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file (header and ring).
    pub fn size(&self) -> u64 {
        self.mem.data_size() as u64 + BUS_HEADER_SIZE as u64
    }

    /// Whether the bus is in NetBSD mode: every shmlab participant reads it under the lock and
    /// wakes and waits the NetBSD way as well as its own. Set for good, for every attacher,
    /// when the bus is created for NetBSD, when an attacher finds NetBSD's marks on it, or when
    /// a reader meets a NetBSD kernel's record; only 1 MiB buses are ever put in this mode.
    pub fn netbsd_mode(&self) -> bool {
        sync::netbsd_mode(&self.mem)
    }

    /// A NetBSD kernel can only share a 1 MiB bus (it truncates every bus to that size).
    pub(crate) fn can_be_netbsd(&self) -> bool {
        self.mapped == MIN_BUS_SIZE
    }

    /// Reads the header without locking.
    pub fn header(&self) -> HeaderInfo {
        let snap = Ring::new(&self.mem).snapshot();
        let spare = self.mem.word(OFF_SPARE).load(Ordering::Acquire);
        HeaderInfo {
            magic: self.mem.word(OFF_MAGIC).load(Ordering::Acquire),
            version: self.mem.word(OFF_VERSION).load(Ordering::Acquire),
            gen: snap.gen,
            first: snap.first,
            last: snap.last,
            lock: self.mem.word(OFF_LOCK).load(Ordering::Acquire),
            spare,
            data_size: self.mem.data_size(),
            netbsd_mode: spare & sync::NETBSD_MODE != 0,
        }
    }

    /// The raw bytes of the whole bus file as they are now (unlocked, like `shmif_dumpbus`).
    /// Empty once the file was found truncated.
    pub fn image(&self) -> Vec<u8> {
        if !self.still_mapped() {
            return Vec::new();
        }
        self.mem.snapshot()
    }

    /// A new port with a random MAC and sender id, reading from the newest record on.
    pub fn port(self: &Arc<Self>) -> crate::Port {
        crate::Port::new(self.clone())
    }

    /// A passive reader that sees every frame from the newest record on.
    pub fn reader(self: &Arc<Self>) -> crate::Reader {
        crate::Reader::new(self.clone())
    }

    /// `Ok` while the file still covers the mapping; the error once it does not (and forever
    /// after: the mapping is never touched again).
    pub fn check(&self) -> Result<(), BusError> {
        if self.still_mapped() {
            Ok(())
        } else {
            Err(self.truncation_error())
        }
    }

    pub(crate) fn truncation_error(&self) -> BusError {
        BusError::Truncated {
            path: self.path.clone(),
            size: self.file.metadata().map(|m| m.len()).unwrap_or(0),
            mapped: self.mapped,
        }
    }

    /// Whether the file still covers the mapping (one `fstat`).
    pub(crate) fn still_mapped(&self) -> bool {
        if self.truncated.load(Ordering::Relaxed) {
            return false;
        }
        match self.file.metadata() {
            Ok(m) if m.len() < self.mapped => {
                self.truncated.store(true, Ordering::Relaxed);
                false
            }
            _ => true,
        }
    }

    /// [`Bus::still_mapped`], but looking at the file at most every few milliseconds: cheap
    /// enough for the send path. A NetBSD kernel truncating a bigger bus while we write into it
    /// can still raise SIGBUS inside that window; see FORMAT.md.
    pub(crate) fn still_mapped_soon(&self) -> bool {
        if self.truncated.load(Ordering::Relaxed) {
            return false;
        }
        let now = coarse_ms();
        if now < self.next_size_check.load(Ordering::Relaxed) {
            return true;
        }
        self.next_size_check
            .store(now + SIZE_CHECK_MS, Ordering::Relaxed);
        self.still_mapped()
    }

    pub(crate) fn lock(&self) -> Result<LockGuard<'_>, Truncated> {
        if !self.still_mapped_soon() {
            return Err(Truncated);
        }
        sync::lock(&self.mem, &|| self.still_mapped())
    }

    /// A watch on the bus file that wakes when anyone writes it with `write(2)`: how NetBSD
    /// kernels wake their readers (they never touch our futex). `None` if inotify refuses.
    pub fn watch(&self) -> Option<BusWatch> {
        crate::wake::inotify_watch(&self.path).map(|fd| BusWatch { fd })
    }

    /// NetBSD's `dowakeup()`: a real write of the version word, so that NetBSD kernels (which
    /// sleep on kqueue/inotify, not on our futex) notice new frames.
    pub(crate) fn wake_netbsd(&self) {
        let _ = rustix::io::pwrite(&self.file, &VERSION.to_ne_bytes(), OFF_VERSION as u64);
    }
}

/// See [`Bus::watch`].
#[derive(Debug)]
pub struct BusWatch {
    fd: std::os::fd::OwnedFd,
}

impl BusWatch {
    /// Sleeps, with no timeout, until the bus file is written (`true`) or `wake` (an eventfd
    /// or pipe another thread writes to) becomes readable (`false`).
    pub fn wait_or_wake(&self, wake: std::os::fd::BorrowedFd<'_>) -> bool {
        crate::wake::inotify_wait_or_wake(&self.fd, wake)
    }
}

/// Whether the live ring holds a frame record that no shmlab writer numbered: a NetBSD kernel
/// wrote on this bus. Under the lock, on a header `check_header` accepted.
fn holds_foreign_frames(ring: &Ring<'_>, snap: &HeaderSnapshot) -> bool {
    let Ok(span) = ring.span(snap) else {
        return false;
    };
    let size = ring.size() as u64;
    let mut pos = span.first;
    while pos < span.end {
        let h = ring.read_header((pos % size) as u32);
        match RecordHeader::classify_len(h.len) {
            RecordKind::Oversize => return false,
            RecordKind::Frame if !writer_numbered(&h) => return true,
            _ => {}
        }
        pos += (crate::format::RECORD_HEADER_SIZE as u32 + h.len) as u64;
    }
    false
}

fn check_size(path: &Path, size: u64) -> Result<(), BusError> {
    if size < MIN_BUS_SIZE {
        return Err(BusError::TooSmall {
            path: path.to_path_buf(),
            size,
        });
    }
    if size > MAX_BUS_SIZE {
        return Err(BusError::TooLarge {
            path: path.to_path_buf(),
            size,
        });
    }
    Ok(())
}

/// The checks an attach makes on a live bus: cheap, and only things no writer ever leaves behind.
fn check_header(ring: &Ring<'_>, snap: &HeaderSnapshot) -> Result<(), String> {
    let size = ring.size();
    if snap.first > size {
        return Err(format!(
            "firstoff {:#x} is beyond the ring ({size:#x} bytes)",
            snap.first
        ));
    }
    if snap.last >= size {
        return Err(format!(
            "lastoff {:#x} is beyond the ring ({size:#x} bytes)",
            snap.last
        ));
    }
    let newest = ring.read_header(snap.last);
    if RecordHeader::classify_len(newest.len) == RecordKind::Oversize {
        return Err(format!(
            "the newest record (lastoff {:#x}) has length {} (max {})",
            snap.last,
            newest.len,
            crate::format::MAX_FRAME
        ));
    }
    ring.span(snap).map(|_| ()).map_err(|c| c.0)
}

/// True for the versions `shmif_dumpbus` can walk.
pub(crate) fn dumpable_version(v: u32) -> bool {
    v == VERSION || v == VERSION_2
}
