//! shmif: a shared-memory Ethernet bus, byte-compatible with NetBSD's shmif v3 (x86_64).
//!
//! A bus is a memory-mapped file: a 32-byte header and a byte ring of frame records. Every
//! process that attaches sees every frame, like a hub. `FORMAT.md` gives the layout.
//!
//! How the parts stack, bottom up:
//! - [`format`]: constants and the record header codec.
//! - `memory`: the mapping; the only raw-pointer code (atomics for header words, copies for ring
//!   bytes).
//! - `ring`: NetBSD's ring arithmetic (read, write, advance `first`), spans, validation, reset.
//! - `sync`: the CAS lock on `lock` with dead-holder recovery, futex wakeups on `spare`;
//!   `wake`: NetBSD-compatible inotify wakeups.
//! - `scan`: copying batches of records out of the ring, numbering and accounting for them
//!   (counters); `repair`: checking and re-formatting the ring under the lock;
//!   `inbox`: the receiving state ports and readers share (place, batch, waiting).
//! - [`Bus`] attaches files; [`Port`] (one per interface) sends and receives; [`Reader`] is a
//!   passive, lock-free capture of everything; [`dump`] reads a bus image like `shmif_dumpbus`
//!   and [`pcap`] writes what it finds.

pub mod dump;
pub mod format;
#[cfg(feature = "netbsd-emulator")]
pub mod netbsd_emu;
pub mod pcap;

mod bus;
mod inbox;
mod memory;
mod port;
mod reader;
mod repair;
mod ring;
mod scan;
mod sync;
mod wake;

pub use bus::{Bus, BusConfig, BusError, BusWatch, HeaderInfo};
pub use port::{Port, PortSender, Received, SendError, Sleep};
pub use reader::Reader;
pub use scan::Stats;
