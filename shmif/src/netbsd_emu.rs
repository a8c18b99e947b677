//! An emulated NetBSD rump kernel `shmif` interface, for tests that need a NetBSD peer on a bus
//! where no NetBSD build exists.
//!
//! It drives a bus file step for step as NetBSD's `sys/rump/net/lib/libshmif` does:
//! `if_shmem.c` (rev 1.63.2.2 read in full; identity, link and filter as in 1.84.4.1, 2024),
//! `shmif_busops.c` (1.8.2.1: ring arithmetic), `shmif_user.c` (1.2: the Linux inotify wait and
//! `ftruncate` + `mmap`) and `shmifvar.h` (v3 layout, LP64). Facts were taken from those files
//! and from `shared/shmif-netbsd.md`; the code is our own.
//!
//! NetBSD's quirks are kept on purpose, since this is what a real peer does to a bus: attach
//! truncates any file to 1 MiB and never sets `shm_version`; the first wakeup write does; the
//! lock records no owner and spins 1001 times before sleeping 1 ms; a reader that was lapped
//! resynchronises to `shm_first` and loses frames silently; an interface that comes up re-reads
//! the newest record already on the bus; the record header's padding word is garbage. Where
//! NetBSD has a `KASSERT`, this module panics with the assertion's text, as a DIAGNOSTIC rump
//! kernel would (a panic inside the lock leaves the lock held, as a crashed kernel does).
//!
//! It shares nothing with the rest of this crate except the raw mapping (`memory`), so a test
//! that puts shmlab and this emulator on one bus checks shmlab instead of agreeing with its bugs.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::fs::inotify;

use crate::memory::BusMemory;

/// `BUSMEM_SIZE`: the whole file and mapping. Fixed at compile time in NetBSD.
pub const BUSMEM_SIZE: u64 = 1024 * 1024;
/// `sizeof(struct shmif_mem)`: the bus header before the ring.
pub const BUSMEM_HEADER: u32 = 32;
/// `BUSMEM_DATASIZE`: ring size in bytes (0xFFFE0).
pub const DATASIZE: u32 = BUSMEM_SIZE as u32 - BUSMEM_HEADER;
/// `SHMIF_MAGIC`.
pub const SHMIF_MAGIC: u32 = 0xca11_d054;
/// `SHMIF_VERSION`: the value of the wakeup write.
pub const SHMIF_VERSION: u32 = 3;
/// `IFMEM_WAKEUP`: the file offset of the wakeup write (`shm_version`).
pub const IFMEM_WAKEUP: u64 = 4;
/// `sizeof(struct shmif_pkthdr)` on LP64: len, sec, usec, 4 bytes of padding, sender.
pub const PKTHDR_SIZE: u32 = 24;
/// `ETHER_HDR_LEN`: records shorter than this are skipped by the reader.
pub const ETHER_HDR_LEN: u32 = 14;
/// `ETHERMTU + ETHER_HDR_LEN`: NetBSD asserts this bound on send and receive.
pub const MAX_FRAME: u32 = 1514;

const LOCK_UNLOCKED: u32 = 0;
const LOCK_LOCKED: u32 = 1;
const LOCK_COOLDOWN: u32 = 1001;
/// The rump kernel's `PAGE_SIZE` for the read-write prefault (x86_64).
const PAGE_SIZE: u32 = 4096;
/// The read-only prefault stride: NetBSD uses 512 in case the rump page is smaller than the host's.
const PREFAULT_STRIDE: u32 = 512;

// Byte offsets of `struct shmif_mem` fields.
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_FIRST: usize = 16;
const OFF_LAST: usize = 20;
const OFF_LOCK: usize = 24;
const OFF_SPARE: usize = 28;

/// What a NetBSD `KASSERT` does on a DIAGNOSTIC kernel.
macro_rules! kassert {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            panic!(
                "NetBSD KASSERT({}) would fire: {}",
                stringify!($cond),
                format_args!($($msg)+)
            );
        }
    };
}

/// The bus header as `shmif_dumpbus -h` would see it: read without the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetbsdHeader {
    pub magic: u32,
    pub version: u32,
    pub gen: u64,
    pub first: u32,
    pub last: u32,
    pub lock: u32,
    pub spare: u32,
}

/// What goes into the padding word (offset 12) of each record header this interface writes.
/// NetBSD leaves it as uninitialised stack bytes, so readers must not trust it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Padding {
    /// A fresh pseudo-random value per record.
    #[default]
    Random,
    /// The same value in every record (0 and 0xffffffff are the usual stack leftovers).
    Fixed(u32),
    /// Counts up from the given value, one per record: garbage that looks like a sequence number.
    Counting(u32),
}

/// Why the receive filter (NetBSD's `passup` decision) dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// `sp_sender` is our own id: NetBSD never hears itself.
    OwnSender,
    /// Unicast to another MAC and the interface is not promiscuous.
    NotForUs,
}

/// The outcome of one pass of the receive loop (`shmif_rcv`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcvStep {
    /// Nothing new on the bus: NetBSD would now sleep on the file watch.
    CaughtUp,
    /// A record shorter than an Ethernet header (the fresh-bus pseudo-record, or a runt): skipped.
    Short { len: u32 },
    /// A frame the receive filter dropped.
    Dropped { frame: Vec<u8>, why: Dropped },
    /// A frame handed to the stack; `promisc` when only promiscuous mode let it through.
    Passed { frame: Vec<u8>, promisc: bool },
}

/// Process start, standing in for the rump kernel's boot: timestamps are uptime, as
/// `getmicrouptime` gives them.
fn boot_time() -> Instant {
    static BOOT: OnceLock<Instant> = OnceLock::new();
    *BOOT.get_or_init(Instant::now)
}

fn microuptime() -> (u32, u32) {
    let up = boot_time().elapsed();
    (up.as_secs() as u32, up.subsec_micros())
}

fn random_u64() -> io::Result<u64> {
    getrandom::u64().map_err(|e| io::Error::other(format!("getrandom failed: {e}")))
}

/// One emulated `shmifN` interface, attached to a bus and up.
pub struct NetbsdIf {
    mem: BusMemory,
    /// `sc_memfd`: kept for the wakeup write.
    file: File,
    /// `sc_kq`: the inotify instance watching the bus path.
    watch: OwnedFd,
    path: PathBuf,
    mac: [u8; 6],
    /// `sc_uid`: written into every record's `sp_sender`.
    uid: u64,
    /// `sc_nextpacket`: ring offset of the next record to read.
    nextpacket: u32,
    /// `sc_devgen`: the generation the reader believes it is in.
    devgen: u64,
    padding: Padding,
    /// `BUSMEM_DATASIZE`; other than [`DATASIZE`] only for [`NetbsdIf::attach_any_size`].
    datasize: u32,
    rng: u64,
    promisc: bool,
    resyncs: u64,
}

impl NetbsdIf {
    /// Creates an interface with a random identity and attaches it to the bus at `path`, as
    /// `rump_pub_shmif_create(path)` followed by `ifconfig shmifN up`.
    pub fn attach(path: impl AsRef<Path>) -> io::Result<NetbsdIf> {
        Self::attach_with_uid(path, random_u64()?)
    }

    /// As [`attach`](Self::attach) with a chosen 64-bit random value: NetBSD's sender id, whose
    /// first four bytes in memory also make the MAC `b2:a0:R0:R1:R2:R3`.
    pub fn attach_with_uid(path: impl AsRef<Path>, uid: u64) -> io::Result<NetbsdIf> {
        Self::attach_sized(path.as_ref(), uid, None)
    }

    /// A NetBSD-style writer and reader on a bus of whatever size the file has (1 MiB if it is
    /// new), without truncating it. No real NetBSD kernel does this (every one truncates to 1
    /// MiB): it is for testing how shmlab treats records written NetBSD's way on its bigger
    /// buses.
    pub fn attach_any_size(path: impl AsRef<Path>) -> io::Result<NetbsdIf> {
        let path = path.as_ref();
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let size = if size < BUSMEM_SIZE {
            BUSMEM_SIZE
        } else {
            size
        };
        Self::attach_sized(path, random_u64()?, Some(size))
    }

    fn attach_sized(path: &Path, uid: u64, keep_size: Option<u64>) -> io::Result<NetbsdIf> {
        boot_time();
        let shown = path.display();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("open bus {shown}: {e}")))?;
        // NetBSD truncates unconditionally, so a bigger file shrinks to 1 MiB.
        let size = keep_size.unwrap_or(BUSMEM_SIZE);
        file.set_len(size).map_err(|e| {
            io::Error::new(e.kind(), format!("ftruncate bus {shown} to 1 MiB: {e}"))
        })?;
        let mem = BusMemory::map(&file, size, true)
            .map_err(|e| io::Error::new(e.kind(), format!("mmap bus {shown}: {e}")))?;
        let magic = mem.word(OFF_MAGIC).load(Ordering::Relaxed);
        if magic != 0 && magic != SHMIF_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "bus {shown} is not magical: magic {magic:#010x} is neither 0 nor \
                     {SHMIF_MAGIC:#010x} (NetBSD fails the attach with ENOEXEC)"
                ),
            ));
        }

        let mut nif = NetbsdIf {
            mem,
            file,
            // The watch itself is added by `watch_setup`, after the bus is initialised, as NetBSD.
            watch: inotify::init(inotify::CreateFlags::CLOEXEC)
                .map_err(|e| io::Error::other(format!("inotify_init: {e}")))?,
            path: path.to_path_buf(),
            mac: mac_of(uid),
            uid,
            nextpacket: 0,
            devgen: 0,
            padding: Padding::Random,
            datasize: (size - BUSMEM_HEADER as u64) as u32,
            // Seeded from the id, so a chosen id also gives reproducible padding.
            rng: uid,
            promisc: false,
            resyncs: 0,
        };
        nif.init_backend();
        nif.watch_setup()?;
        nif.up();
        Ok(nif)
    }

    /// `initbackend` after the magic check: prefault, then initialise the bus if we are first.
    fn init_backend(&mut self) {
        // Read one byte every 512 so the pages are in before the lock is first held.
        self.mem.word(OFF_MAGIC).load(Ordering::Relaxed);
        let mut byte = [0u8; 1];
        let mut off = PREFAULT_STRIDE - BUSMEM_HEADER;
        while off < self.datasize {
            self.mem.copy_out(off, &mut byte);
            off += PREFAULT_STRIDE;
        }

        self.lockbus();
        if self.mem.word(OFF_MAGIC).load(Ordering::Relaxed) == 0 {
            self.mem
                .word(OFF_MAGIC)
                .store(SHMIF_MAGIC, Ordering::Relaxed);
            self.set_first(self.datasize);
        }
        self.nextpacket = self.last();
        self.devgen = self.gen();
        // PREFAULT_RW: read and write back one byte per page. Page 0's byte is the magic's first.
        let magic = self.mem.word(OFF_MAGIC).load(Ordering::Relaxed);
        self.mem.word(OFF_MAGIC).store(magic, Ordering::Relaxed);
        let mut off = PAGE_SIZE - BUSMEM_HEADER;
        while off < self.datasize {
            self.mem.copy_out(off, &mut byte);
            self.mem.copy_in(off, &byte);
            off += PAGE_SIZE;
        }
        self.unlockbus();
    }

    /// `rumpcomp_shmif_watchsetup` on Linux: the watch is on the path the fd resolves to.
    fn watch_setup(&mut self) -> io::Result<()> {
        let link = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        let target = std::fs::read_link(&link).map_err(|e| {
            io::Error::new(e.kind(), format!("readlink {link} for the bus watch: {e}"))
        })?;
        inotify::add_watch(&self.watch, &target, inotify::WatchFlags::MODIFY).map_err(|e| {
            io::Error::other(format!(
                "inotify watch (IN_MODIFY) on {}: {e}",
                target.display()
            ))
        })?;
        Ok(())
    }

    /// `shmif_init` (`ifconfig shmifN up`): restart reading at the newest record, without the
    /// lock. This is why a freshly upped interface may deliver one stale frame.
    pub fn up(&mut self) {
        self.nextpacket = self.last();
        self.devgen = self.gen();
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The 64-bit id in every record this interface writes (`sc_uid`).
    pub fn sender_id(&self) -> u64 {
        self.uid
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn set_padding(&mut self, padding: Padding) {
        self.padding = padding;
    }

    /// `ifconfig shmifN promisc`: also pass unicast frames for other MACs.
    pub fn set_promiscuous(&mut self, on: bool) {
        self.promisc = on;
    }

    /// The reader's place: (`sc_nextpacket`, `sc_devgen`).
    pub fn place(&self) -> (u32, u64) {
        (self.nextpacket, self.devgen)
    }

    /// How often the reader found itself lapped and jumped to `shm_first`. NetBSD counts nothing;
    /// this is for tests.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// The bus header, read without the lock.
    pub fn header(&self) -> NetbsdHeader {
        NetbsdHeader {
            magic: self.mem.word(OFF_MAGIC).load(Ordering::Relaxed),
            version: self.mem.word(OFF_VERSION).load(Ordering::Relaxed),
            gen: self.gen_word().load(Ordering::Relaxed),
            first: self.first(),
            last: self.last(),
            lock: self.lock_word().load(Ordering::Relaxed),
            spare: self.mem.word(OFF_SPARE).load(Ordering::Relaxed),
        }
    }

    // ---- lock (`shmif_lockbus` / `shmif_unlockbus`) ----

    fn lock_word(&self) -> &AtomicU32 {
        self.mem.word(OFF_LOCK)
    }

    /// Takes the bus lock NetBSD's way: CAS 0 -> 1, after 1001 failed tries sleep 1 ms and start
    /// over, forever. Only a CAS that saw 1 retries: any other value in the word (corruption) is
    /// taken as "acquired", as NetBSD does.
    pub fn lock(&self) {
        let word = self.lock_word();
        let mut tries = 0u32;
        while let Err(LOCK_LOCKED) = word.compare_exchange(
            LOCK_UNLOCKED,
            LOCK_LOCKED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            tries += 1;
            if tries > LOCK_COOLDOWN {
                std::thread::sleep(Duration::from_millis(1));
                tries = 0;
            }
        }
        // membar_enter
        fence(Ordering::Acquire);
    }

    /// Releases the lock by swapping in 0 and returns what the word held: 1 unless someone else
    /// meddled (NetBSD asserts 1 here).
    pub fn unlock(&self) -> u32 {
        // membar_exit
        fence(Ordering::Release);
        self.lock_word().swap(LOCK_UNLOCKED, Ordering::Relaxed)
    }

    /// Takes the lock, holds it for `hold` and releases it; returns what the word held at release
    /// (1 unless another participant broke the lock meanwhile). No owner is recorded anywhere.
    pub fn hold_lock_for(&self, hold: Duration) -> u32 {
        self.lock();
        std::thread::sleep(hold);
        self.unlock()
    }

    fn lockbus(&self) {
        self.lock();
    }

    fn unlockbus(&self) {
        let old = self.unlock();
        kassert!(old == LOCK_LOCKED, "bus lock word was {old} at unlock");
    }

    // ---- header fields; all accesses below happen under the lock, so plain (relaxed) ----

    /// `shm_gen`, the u64 at offset 8.
    fn gen_word(&self) -> &AtomicU64 {
        self.mem.gen_word()
    }

    fn gen(&self) -> u64 {
        self.gen_word().load(Ordering::Relaxed)
    }

    fn first(&self) -> u32 {
        self.mem.word(OFF_FIRST).load(Ordering::Relaxed)
    }

    fn set_first(&self, v: u32) {
        self.mem.word(OFF_FIRST).store(v, Ordering::Relaxed)
    }

    fn last(&self) -> u32 {
        self.mem.word(OFF_LAST).load(Ordering::Relaxed)
    }

    fn set_last(&self, v: u32) {
        self.mem.word(OFF_LAST).store(v, Ordering::Relaxed)
    }

    // ---- ring arithmetic (`shmif_busops.c`) ----

    fn busread(&self, dest: &mut [u8], off: u32, wrap: &mut bool) -> u32 {
        let len = dest.len() as u32;
        kassert!(
            len < self.datasize / 2 && off <= self.datasize,
            "busread of {len} bytes at {off}"
        );
        let chunk = len.min(self.datasize - off);
        if chunk > 0 {
            self.mem.copy_out(off, &mut dest[..chunk as usize]);
        }
        if off + chunk == self.datasize {
            *wrap = true;
        }
        let rest = len - chunk;
        if rest == 0 {
            return (off + chunk) % self.datasize;
        }
        self.mem.copy_out(0, &mut dest[chunk as usize..]);
        rest
    }

    fn buswrite(&self, off: u32, src: &[u8], wrap: &mut bool) -> u32 {
        let len = src.len() as u32;
        kassert!(
            len < self.datasize / 2 && off <= self.datasize,
            "buswrite of {len} bytes at {off}"
        );
        let chunk = len.min(self.datasize - off);
        let rest = len - chunk;
        let filled = off + chunk == self.datasize;
        // One byte more when the chunk ends at the very end, so a `first` still at the
        // never-wrapped sentinel (self.datasize) moves too.
        self.advancefirst(off, chunk + filled as u32);
        if chunk > 0 {
            self.mem.copy_in(off, &src[..chunk as usize]);
        }
        if filled {
            *wrap = true;
        }
        if rest == 0 {
            return (off + chunk) % self.datasize;
        }
        self.advancefirst(0, rest);
        self.mem.copy_in(0, &src[chunk as usize..]);
        rest
    }

    /// Before `[off, off + len)` is overwritten, drop every record that starts in it.
    fn advancefirst(&self, off: u32, len: u32) {
        loop {
            let first = self.first() as u64;
            let (off, len) = (off as u64, len as u64);
            if !(off <= first + PKTHDR_SIZE as u64 && off + len > first) {
                break;
            }
            self.set_first(self.nextpktoff(first as u32));
        }
    }

    /// `shmif_advance`.
    fn advance(&self, off: u32, delta: u32) -> u32 {
        let n = off + delta;
        if n >= self.datasize {
            n - self.datasize
        } else {
            n
        }
    }

    fn nextpktoff(&self, off: u32) -> u32 {
        let mut hdr = [0u8; PKTHDR_SIZE as usize];
        let mut ignored = false;
        self.busread(&mut hdr, off, &mut ignored);
        let len = u32_at(&hdr, 0);
        kassert!(
            len < self.datasize,
            "record at ring offset {off} claims {len} bytes"
        );
        self.advance(off, PKTHDR_SIZE + len)
    }

    // ---- send (`shmif_start` / `shmif_snd`) ----

    /// Sends each frame as NetBSD's `shmif_start` does, one lock hold per frame, then wakes the
    /// bus once with the `pwrite` of 3 at offset 4. Frames must be at most 1514 bytes (nothing is
    /// written otherwise); shorter-than-Ethernet frames are written as given, which NetBSD's stack
    /// itself never does.
    pub fn send(&mut self, frames: &[&[u8]]) -> io::Result<()> {
        if let Some((i, f)) = frames
            .iter()
            .enumerate()
            .find(|(_, f)| f.len() > MAX_FRAME as usize)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame {i} is {} bytes; NetBSD's shmif sends at most {MAX_FRAME}",
                    f.len()
                ),
            ));
        }
        for frame in frames {
            let (sec, usec) = microuptime();
            let pad = self.next_padding();
            let hdr = encode_pkthdr(frame.len() as u32, sec, usec, pad, self.uid);

            self.lockbus();
            let magic = self.mem.word(OFF_MAGIC).load(Ordering::Relaxed);
            kassert!(magic == SHMIF_MAGIC, "bus magic is {magic:#x} at send");
            // Append after the newest record; `last` moves before any byte is written.
            let last = self.nextpktoff(self.last());
            self.set_last(last);
            let mut wrap = false;
            let off = self.buswrite(last, &hdr, &mut wrap);
            self.buswrite(off, frame, &mut wrap);
            if wrap {
                self.gen_word().store(self.gen() + 1, Ordering::Relaxed);
            }
            self.unlockbus();
        }
        if !frames.is_empty() {
            self.wakeup()?;
        }
        Ok(())
    }

    /// `dowakeup`: an ordinary file write of `SHMIF_VERSION` over `shm_version`, which is what
    /// fires the other participants' file watches (and what sets the version to 3).
    pub fn wakeup(&self) -> io::Result<()> {
        self.file
            .write_all_at(&SHMIF_VERSION.to_ne_bytes(), IFMEM_WAKEUP)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("wakeup write to bus {}: {e}", self.path.display()),
                )
            })
    }

    fn next_padding(&mut self) -> u32 {
        match self.padding {
            Padding::Random => splitmix(&mut self.rng) as u32,
            Padding::Fixed(v) => v,
            Padding::Counting(v) => {
                self.padding = Padding::Counting(v.wrapping_add(1));
                v
            }
        }
    }

    // ---- receive (`shmif_rcv`) ----

    /// One pass of NetBSD's receive loop, without its sleep: read the next record (resyncing
    /// first if lapped) and run the receive filter on it.
    pub fn step(&mut self) -> RcvStep {
        self.lockbus();
        let magic = self.mem.word(OFF_MAGIC).load(Ordering::Relaxed);
        kassert!(magic == SHMIF_MAGIC, "bus magic is {magic:#x} at receive");
        let gen = self.gen();
        kassert!(
            gen >= self.devgen,
            "bus generation {gen} is behind the reader's {}",
            self.devgen
        );

        if self.devgen == gen && self.nextpktoff(self.last()) == self.nextpacket {
            self.unlockbus();
            return RcvStep::CaughtUp;
        }

        let mut nextpkt = if self.stillvalid_p() {
            self.nextpacket
        } else {
            kassert!(gen > 0, "reader lapped on a bus of generation 0");
            self.resyncs += 1;
            let (first, last) = (self.first(), self.last());
            self.devgen = if first > last { gen - 1 } else { gen };
            first
        };
        let last = self.last();
        kassert!(
            !(nextpkt > last && self.devgen == gen),
            "reader at {nextpkt} is past the newest record at {last} in the same generation {gen}"
        );

        let mut wrap = false;
        let mut hdr = [0u8; PKTHDR_SIZE as usize];
        nextpkt = self.busread(&mut hdr, nextpkt, &mut wrap);
        let len = u32_at(&hdr, 0);
        kassert!(len <= MAX_FRAME, "record of {len} bytes on receive");
        let mut frame = vec![0u8; len as usize];
        nextpkt = self.busread(&mut frame, nextpkt, &mut wrap);
        self.nextpacket = nextpkt;
        self.unlockbus();

        if wrap {
            self.devgen += 1;
        }
        if len < ETHER_HDR_LEN {
            return RcvStep::Short { len };
        }

        let sender = u64::from_ne_bytes(hdr[16..24].try_into().expect("8 bytes"));
        let dhost: [u8; 6] = frame[..6].try_into().expect("6 bytes");
        if sender == self.uid {
            RcvStep::Dropped {
                frame,
                why: Dropped::OwnSender,
            }
        } else if dhost == self.mac || dhost[0] & 1 != 0 {
            RcvStep::Passed {
                frame,
                promisc: false,
            }
        } else if self.promisc {
            RcvStep::Passed {
                frame,
                promisc: true,
            }
        } else {
            RcvStep::Dropped {
                frame,
                why: Dropped::NotForUs,
            }
        }
    }

    /// Lapped-reader check: is `nextpacket` still between `first` and the end of the newest
    /// record, once both are put on a doubled ring?
    fn stillvalid_p(&self) -> bool {
        // NetBSD keeps the difference in an `unsigned` (32 bits).
        let gendiff = self.gen().wrapping_sub(self.devgen) as u32;
        let first = self.first();
        kassert!(first != self.last(), "shm_first equals shm_last ({first})");
        let mut devoff = self.nextpacket;
        let mut lastoff = self.nextpktoff(self.last());
        if gendiff > 1 {
            return false;
        }
        if first >= lastoff {
            lastoff += self.datasize;
            if gendiff == 0 {
                devoff += self.datasize;
            }
        } else if gendiff != 0 {
            return false;
        }
        devoff >= first && devoff <= lastoff
    }

    /// Receives the next frame the filter passes, sleeping on the file watch as NetBSD does while
    /// caught up; `None` once `timeout` has passed with nothing to deliver.
    pub fn recv(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.step() {
                RcvStep::Passed { frame, .. } => return Some(frame),
                RcvStep::CaughtUp => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.watchwait(left) {
                        return None;
                    }
                }
                RcvStep::Short { .. } | RcvStep::Dropped { .. } => {}
            }
        }
    }

    /// `rumpcomp_shmif_watchwait` with a time limit: consume one inotify event (16 bytes, as
    /// NetBSD reads them one at a time; queued events cause the usual spurious wakeups).
    /// Returns false if nothing arrived in time.
    fn watchwait(&self, timeout: Duration) -> bool {
        let ts = rustix::event::Timespec::try_from(timeout).unwrap_or(rustix::event::Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let mut fds = [rustix::event::PollFd::new(
            &self.watch,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => return false,
            Ok(_) => {}
            // EINTR and friends: act as a spurious wakeup, the caller re-checks the bus.
            Err(_) => return true,
        }
        let mut event = [0u8; 16];
        loop {
            match rustix::io::read(self.watch.as_fd(), &mut event) {
                Err(rustix::io::Errno::INTR) => continue,
                _ => return true,
            }
        }
    }
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

/// `struct shmif_pkthdr` as an LP64 compiler lays it out, in host byte order.
fn encode_pkthdr(len: u32, sec: u32, usec: u32, pad: u32, sender: u64) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0..4].copy_from_slice(&len.to_ne_bytes());
    b[4..8].copy_from_slice(&sec.to_ne_bytes());
    b[8..12].copy_from_slice(&usec.to_ne_bytes());
    b[12..16].copy_from_slice(&pad.to_ne_bytes());
    b[16..24].copy_from_slice(&sender.to_ne_bytes());
    b
}

/// NetBSD copies the first four bytes of the random value after the fixed `b2:a0` prefix
/// (locally administered, unicast).
fn mac_of(uid: u64) -> [u8; 6] {
    let r = uid.to_ne_bytes();
    [0xb2, 0xa0, r[0], r[1], r[2], r[3]]
}

/// A small, fast generator for padding garbage; quality does not matter.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::FileExt;

    const BROADCAST: [u8; 6] = [0xff; 6];

    /// The header straight from the file (not through our mapping), in NetBSD's layout.
    fn file_header(path: &Path) -> NetbsdHeader {
        let b = std::fs::read(path).unwrap();
        let u32_at = |i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
        NetbsdHeader {
            magic: u32_at(0),
            version: u32_at(4),
            gen: u64::from_ne_bytes(b[8..16].try_into().unwrap()),
            first: u32_at(16),
            last: u32_at(20),
            lock: u32_at(24),
            spare: u32_at(28),
        }
    }

    /// Ring bytes `[off, off + len)` straight from the file (no wrap).
    fn file_ring(path: &Path, off: u32, len: usize) -> Vec<u8> {
        let b = std::fs::read(path).unwrap();
        let start = BUSMEM_HEADER as usize + off as usize;
        b[start..start + len].to_vec()
    }

    /// A frame to `dst` of `len` bytes whose payload starts with `tag`.
    fn frame(dst: [u8; 6], src: [u8; 6], tag: u32, len: usize) -> Vec<u8> {
        let mut f = vec![0x5a; len];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        f[14..18].copy_from_slice(&tag.to_le_bytes());
        f
    }

    fn tag_of(f: &[u8]) -> u32 {
        u32::from_le_bytes(f[14..18].try_into().unwrap())
    }

    fn bus_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("bus")
    }

    #[test]
    fn fresh_attach_leaves_netbsds_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        let mut nif = NetbsdIf::attach(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), BUSMEM_SIZE);
        let want = NetbsdHeader {
            magic: SHMIF_MAGIC,
            version: 0,
            gen: 0,
            first: 0xFFFE0,
            last: 0,
            lock: 0,
            spare: 0,
        };
        assert_eq!(file_header(&path), want);
        assert_eq!(nif.header(), want);
        assert_eq!(nif.place(), (0, 0));
        let mac = nif.mac();
        assert_eq!(mac[..2], [0xb2, 0xa0]);
        assert_eq!(mac[2..], nif.sender_id().to_ne_bytes()[..4]);
        // The zero header at 0 reads as a zero-length record and is skipped.
        assert_eq!(nif.step(), RcvStep::Short { len: 0 });
        assert_eq!(nif.step(), RcvStep::CaughtUp);
        assert_eq!(nif.place(), (24, 0));
    }

    #[test]
    fn first_send_is_the_worked_example() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        let mut nif = NetbsdIf::attach_with_uid(&path, 0x1122_3344_5566_7788).unwrap();
        nif.set_padding(Padding::Fixed(0xffff_ffff));
        let arp = frame(BROADCAST, nif.mac(), 1, 42);
        nif.send(&[&arp]).unwrap();
        let h = file_header(&path);
        assert_eq!(
            (h.magic, h.version, h.gen, h.first, h.last, h.lock),
            (SHMIF_MAGIC, 3, 0, 0xFFFE0, 24, 0)
        );
        let rec = file_ring(&path, 24, 24 + 42);
        assert_eq!(u32::from_ne_bytes(rec[0..4].try_into().unwrap()), 42);
        let sec = u32::from_ne_bytes(rec[4..8].try_into().unwrap());
        let usec = u32::from_ne_bytes(rec[8..12].try_into().unwrap());
        assert!(sec < 3600 && usec < 1_000_000, "uptime stamp {sec}.{usec}");
        assert_eq!(rec[12..16], [0xff; 4]);
        assert_eq!(
            u64::from_ne_bytes(rec[16..24].try_into().unwrap()),
            0x1122_3344_5566_7788
        );
        assert_eq!(rec[24..], arp[..]);
        assert_eq!(nif.mac(), [0xb2, 0xa0, 0x88, 0x77, 0x66, 0x55]);
    }

    #[test]
    fn padding_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        let mut nif = NetbsdIf::attach(&path).unwrap();
        let f = frame(BROADCAST, nif.mac(), 0, 60);
        let pad_at =
            |off: u32| u32::from_ne_bytes(file_ring(&path, off + 12, 4).try_into().unwrap());
        nif.set_padding(Padding::Counting(7));
        nif.send(&[&f, &f]).unwrap();
        assert_eq!((pad_at(24), pad_at(24 + 84)), (7, 8));
        nif.set_padding(Padding::Fixed(0));
        nif.send(&[&f]).unwrap();
        assert_eq!(pad_at(24 + 2 * 84), 0);
        nif.set_padding(Padding::Random);
        nif.send(&[&f, &f]).unwrap();
        assert_ne!(pad_at(24 + 3 * 84), pad_at(24 + 4 * 84));
    }

    #[test]
    fn oversize_frames_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        let mut nif = NetbsdIf::attach(&path).unwrap();
        let ok = frame(BROADCAST, nif.mac(), 0, 1514);
        let big = frame(BROADCAST, nif.mac(), 0, 1515);
        let err = nif.send(&[&ok, &big]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("frame 1 is 1515 bytes"), "{err}");
        assert_eq!(file_header(&path).last, 0);
    }

    /// Records of 1538 bytes (24 + 1514) from ring offset 24: record k starts at 24 + 1538 k.
    /// Record 681 (at 1047402) is the first to reach the end; it wraps to end at 396, dropping
    /// the pseudo-record and record 0, so `first` becomes record 1 (1562). Record 682 (at 396)
    /// then covers 1562..1934 and drops record 1: `first` is record 2 (3100).
    #[test]
    fn wrap_bumps_generation_and_advances_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        let mut writer = NetbsdIf::attach(&path).unwrap();
        let mut lapped = NetbsdIf::attach(&path).unwrap();
        let mut keeping_up = NetbsdIf::attach(&path).unwrap();
        let mut got = Vec::new();
        let mut send = |writer: &mut NetbsdIf, k: u32| {
            writer
                .send(&[&frame(BROADCAST, writer.mac(), k, 1514)])
                .unwrap();
            while let Some(f) = keeping_up.recv(Duration::ZERO) {
                got.push(tag_of(&f));
            }
        };
        for k in 0..682 {
            send(&mut writer, k);
            if k == 680 {
                let h = file_header(&path);
                assert_eq!((h.gen, h.first, h.last), (0, DATASIZE, 24 + 680 * 1538));
            }
        }
        let h = file_header(&path);
        assert_eq!((h.gen, h.first, h.last), (1, 1562, 1_047_402));
        send(&mut writer, 682);
        let h = file_header(&path);
        assert_eq!((h.gen, h.first, h.last), (1, 3100, 396));

        assert_eq!(got, (0..683).collect::<Vec<_>>());
        assert_eq!(keeping_up.resyncs(), 0);
        assert_eq!(keeping_up.place(), (1934, 1));

        // The lapped reader jumps to the oldest intact record and silently loses 0 and 1.
        let mut lapped_got = Vec::new();
        while let Some(f) = lapped.recv(Duration::ZERO) {
            lapped_got.push(tag_of(&f));
        }
        assert_eq!(lapped_got, (2..683).collect::<Vec<_>>());
        assert_eq!(lapped.resyncs(), 1);
        assert_eq!(lapped.place(), (1934, 1));
    }

    #[test]
    fn two_interfaces_exchange_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        let mut a = NetbsdIf::attach(&path).unwrap();
        let mut b = NetbsdIf::attach(&path).unwrap();
        assert_ne!(a.mac(), b.mac());
        let foreign = [0x02, 0, 0, 0, 0, 9];
        let multicast = [0x01, 0x00, 0x5e, 0, 0, 1];
        a.send(&[
            &frame(b.mac(), a.mac(), 1, 60),
            &frame(foreign, a.mac(), 2, 60),
            &frame(BROADCAST, a.mac(), 3, 60),
            &frame(multicast, a.mac(), 4, 60),
        ])
        .unwrap();
        let mut seen = Vec::new();
        while let Some(f) = b.recv(Duration::ZERO) {
            seen.push(tag_of(&f));
        }
        assert_eq!(seen, [1, 3, 4]);

        // A never hears itself.
        assert_eq!(a.step(), RcvStep::Short { len: 0 });
        for _ in 0..4 {
            assert!(matches!(
                a.step(),
                RcvStep::Dropped {
                    why: Dropped::OwnSender,
                    ..
                }
            ));
        }
        assert_eq!(a.step(), RcvStep::CaughtUp);

        b.send(&[&frame(a.mac(), b.mac(), 5, 100)]).unwrap();
        assert_eq!(a.recv(Duration::from_secs(1)).map(|f| tag_of(&f)), Some(5));

        // Promiscuous mode lets the foreign unicast through, marked.
        b.set_promiscuous(true);
        a.send(&[&frame(foreign, a.mac(), 6, 60)]).unwrap();
        assert_eq!(
            b.step(),
            RcvStep::Dropped {
                frame: frame(a.mac(), b.mac(), 5, 100),
                why: Dropped::OwnSender
            }
        );
        match b.step() {
            RcvStep::Passed { frame, promisc } => assert_eq!((tag_of(&frame), promisc), (6, true)),
            other => panic!("expected a promiscuous pass, got {other:?}"),
        }
    }

    #[test]
    fn attaching_redelivers_the_newest_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        let mut a = NetbsdIf::attach(&path).unwrap();
        a.send(&[
            &frame(BROADCAST, a.mac(), 1, 60),
            &frame(BROADCAST, a.mac(), 2, 60),
        ])
        .unwrap();
        let mut late = NetbsdIf::attach(&path).unwrap();
        assert_eq!(late.recv(Duration::ZERO).map(|f| tag_of(&f)), Some(2));
        assert_eq!(late.recv(Duration::ZERO), None);
        // `ifconfig up` again does it again.
        late.up();
        assert_eq!(late.recv(Duration::ZERO).map(|f| tag_of(&f)), Some(2));
    }

    #[test]
    fn attach_truncates_a_larger_file_and_rejects_a_foreign_magic() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        std::fs::File::create(&path)
            .unwrap()
            .set_len(8 * BUSMEM_SIZE)
            .unwrap();
        let nif = NetbsdIf::attach(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), BUSMEM_SIZE);
        assert_eq!(nif.header().first, DATASIZE);
        drop(nif);

        let odd = dir.path().join("odd");
        let f = std::fs::File::create(&odd).unwrap();
        f.set_len(2 * BUSMEM_SIZE).unwrap();
        f.write_all_at(&0x1234_5678u32.to_ne_bytes(), 0).unwrap();
        let err = NetbsdIf::attach(&odd)
            .err()
            .expect("foreign magic must fail");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("not magical"), "{err}");
        // NetBSD truncates before it looks at the magic.
        assert_eq!(std::fs::metadata(&odd).unwrap().len(), BUSMEM_SIZE);
    }

    #[test]
    fn held_lock_delays_a_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        let holder = NetbsdIf::attach(&path).unwrap();
        let mut sender = NetbsdIf::attach(&path).unwrap();
        let f = frame(BROADCAST, sender.mac(), 1, 60);
        std::thread::scope(|s| {
            let h = s.spawn(|| holder.hold_lock_for(Duration::from_millis(200)));
            while file_header(&path).lock == 0 {
                std::thread::yield_now();
            }
            let t = Instant::now();
            sender.send(&[&f]).unwrap();
            assert!(
                t.elapsed() >= Duration::from_millis(100),
                "{:?}",
                t.elapsed()
            );
            assert_eq!(h.join().unwrap(), 1);
        });
        assert_eq!(file_header(&path).lock, 0);
    }

    #[test]
    fn lock_word_other_than_one_counts_as_acquired() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        let nif = NetbsdIf::attach(&path).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&7u32.to_ne_bytes(), 24).unwrap();
        nif.lock();
        assert_eq!(nif.unlock(), 7);
        assert_eq!(nif.header().lock, 0);
    }

    #[test]
    fn wakeup_write_ends_a_sleeping_receive() {
        let dir = tempfile::tempdir().unwrap();
        let path = bus_path(&dir);
        let mut a = NetbsdIf::attach(&path).unwrap();
        let mut b = NetbsdIf::attach(&path).unwrap();
        while b.recv(Duration::ZERO).is_some() {}
        let f = frame(b.mac(), a.mac(), 9, 64);
        std::thread::scope(|s| {
            let r = s.spawn(|| {
                let t = Instant::now();
                (b.recv(Duration::from_secs(10)), t.elapsed())
            });
            std::thread::sleep(Duration::from_millis(100));
            a.send(&[&f]).unwrap();
            let (got, took) = r.join().unwrap();
            assert_eq!(got.as_deref(), Some(&f[..]));
            assert!(took < Duration::from_secs(5), "{took:?}");
        });
        // With nothing sent, a receive times out.
        let t = Instant::now();
        assert_eq!(b.recv(Duration::from_millis(50)), None);
        assert!(t.elapsed() >= Duration::from_millis(50));
    }
}
