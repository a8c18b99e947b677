//! Creating, checking and attaching bus files.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::format::{
    RecordHeader, RecordKind, BUS_HEADER_SIZE, MAGIC, MAX_BUS_SIZE, MIN_BUS_SIZE, OFF_LOCK,
    OFF_MAGIC, OFF_SPARE, OFF_VERSION, VERSION, VERSION_2,
};
use crate::memory::BusMemory;
use crate::ring::{HeaderSnapshot, Ring};
use crate::sync;

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
    #[error("{path}: bus version {found} is not supported (this is shmif version {VERSION})")]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("{path}: inconsistent bus header: {what}")]
    Inconsistent { path: PathBuf, what: String },
}

/// How to attach.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// Size of a bus this call creates (an existing file keeps its size). Default 8 MiB; NetBSD
    /// peers accept only 1 MiB (see [`BusConfig::netbsd`]).
    pub size: u64,
    /// NetBSD-compatible wakeups: writers also `pwrite` the version word and readers also wait on
    /// inotify, so real rump kernels on the same bus wake us and are woken by us.
    pub netbsd_compat: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            size: crate::format::DEFAULT_BUS_SIZE,
            netbsd_compat: false,
        }
    }
}

impl BusConfig {
    /// A bus to share with NetBSD rump kernels: their fixed 1 MiB size and their wakeups.
    pub fn netbsd() -> Self {
        BusConfig {
            size: MIN_BUS_SIZE,
            netbsd_compat: true,
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
}

/// An attached bus file. Cheap to share: ports and readers hold an `Arc<Bus>`.
pub struct Bus {
    pub(crate) mem: BusMemory,
    pub(crate) file: File,
    path: PathBuf,
    pub(crate) netbsd_compat: bool,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("path", &self.path)
            .field("data_size", &self.mem.data_size())
            .finish()
    }
}

impl Bus {
    /// Attaches to the bus at `path`, creating it (mode 0600, `config.size` bytes) if the file is
    /// missing or empty. Refuses files that are not buses or whose header cannot be right.
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
            check_size(&path, config.size)?;
            file.set_len(config.size).map_err(io)?;
            size = config.size;
        }
        Self::attach_mapped(path, file, size, config)
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
        let magic = mem.word(OFF_MAGIC).load(Ordering::Acquire);
        if magic != 0 && magic != MAGIC {
            return Err(BusError::BadMagic { path, found: magic });
        }
        if magic == 0 {
            // Lock first: a NetBSD kernel may be initialising the same file right now.
            let how = sync::lock(&mem);
            if mem.word(OFF_MAGIC).load(Ordering::Acquire) == 0 {
                let ring = Ring::new(&mem);
                ring.store(&HeaderSnapshot {
                    gen: 0,
                    first: mem.data_size(),
                    last: 0,
                });
                mem.copy_in(0, &RecordHeader::default().encode());
                mem.word(OFF_VERSION).store(VERSION, Ordering::Release);
                mem.word(OFF_MAGIC).store(MAGIC, Ordering::Release);
            }
            let _ = how;
            sync::unlock(&mem, true);
        }
        let version = mem.word(OFF_VERSION).load(Ordering::Acquire);
        match version {
            VERSION => {}
            // A bus made by NetBSD that nobody has sent on yet: NetBSD sets the version only with
            // its first wakeup. We set it now so tools accept the bus.
            0 => mem.word(OFF_VERSION).store(VERSION, Ordering::Release),
            found => return Err(BusError::UnsupportedVersion { path, found }),
        }
        let ring = Ring::new(&mem);
        let snap = ring.snapshot();
        if let Err(e) = check_header(&ring, &snap) {
            return Err(BusError::Inconsistent { path, what: e });
        }
        let _ = rustix::fs::flock(&file, rustix::fs::FlockOperation::Unlock);
        Ok(Arc::new(Bus {
            mem,
            file,
            path,
            netbsd_compat: config.netbsd_compat,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file (header and ring).
    pub fn size(&self) -> u64 {
        self.mem.data_size() as u64 + BUS_HEADER_SIZE as u64
    }

    pub fn netbsd_compat(&self) -> bool {
        self.netbsd_compat
    }

    /// Reads the header without locking.
    pub fn header(&self) -> HeaderInfo {
        let snap = Ring::new(&self.mem).snapshot();
        HeaderInfo {
            magic: self.mem.word(OFF_MAGIC).load(Ordering::Acquire),
            version: self.mem.word(OFF_VERSION).load(Ordering::Acquire),
            gen: snap.gen,
            first: snap.first,
            last: snap.last,
            lock: self.mem.word(OFF_LOCK).load(Ordering::Acquire),
            spare: self.mem.word(OFF_SPARE).load(Ordering::Acquire),
            data_size: self.mem.data_size(),
        }
    }

    /// The raw bytes of the whole bus file as they are now (unlocked, like `shmif_dumpbus`).
    pub fn image(&self) -> Vec<u8> {
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
