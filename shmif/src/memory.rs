//! The mapped bus file and the only raw-pointer code in shmlab.
//!
//! Other processes write this memory at any time, so no Rust reference to its bytes is ever
//! made: header words are reached as atomics and ring bytes are copied in and out with raw
//! pointer copies. Callers above this module see offsets and slices they own.

use std::fs::File;
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::{MmapOptions, MmapRaw};

use crate::format::{BUS_HEADER_SIZE, OFF_GEN};

pub(crate) struct BusMemory {
    map: MmapRaw,
    /// Ring size in bytes (`BUSMEM_DATASIZE`): the file size less the 32-byte header.
    data_size: u32,
    writable: bool,
}

impl BusMemory {
    /// Maps `len` bytes of `file` shared. `len` was validated by the caller (>= 1 MiB, < 4 GiB).
    pub(crate) fn map(file: &File, len: u64, writable: bool) -> std::io::Result<Self> {
        let mut opts = MmapOptions::new();
        opts.len(len as usize);
        let map = if writable {
            opts.map_raw(file)?
        } else {
            opts.map_raw_read_only(file)?
        };
        Ok(BusMemory {
            map,
            data_size: (len as usize - BUS_HEADER_SIZE) as u32,
            writable,
        })
    }

    pub(crate) fn data_size(&self) -> u32 {
        self.data_size
    }

    /// The u32 header word at byte offset `off` (one of the `format::OFF_*` constants).
    pub(crate) fn word(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= BUS_HEADER_SIZE);
        // SAFETY: the mapping is page aligned and at least 1 MiB long, so `off` (4-aligned, inside
        // the 32-byte header) is a valid, aligned u32 for the mapping's lifetime, which `&self`
        // bounds. Every process touches header words only through atomic operations.
        unsafe { AtomicU32::from_ptr(self.map.as_mut_ptr().add(off).cast::<u32>()) }
    }

    /// `shm_gen`, the u64 at offset 8.
    pub(crate) fn gen_word(&self) -> &AtomicU64 {
        // SAFETY: offset 8 of a page-aligned mapping is 8-aligned and inside the header; the
        // reference lives no longer than the mapping. Accessed only atomically.
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().add(OFF_GEN).cast::<u64>()) }
    }

    /// Copies ring bytes `[ring_off, ring_off + dst.len())` out. The range must not wrap.
    ///
    /// Writers in other processes may be storing into the same bytes concurrently when this is
    /// called without the bus lock (the passive reader); such copies can be torn, which is why
    /// every lock-free read is validated against the header afterwards before it is used.
    pub(crate) fn copy_out(&self, ring_off: u32, dst: &mut [u8]) {
        let end = ring_off as usize + dst.len();
        assert!(end <= self.data_size as usize, "ring read past the end");
        // SAFETY: the source range lies inside the mapped ring (checked above) and `dst` is a
        // distinct, exclusively borrowed local buffer, so the ranges cannot overlap. Bytes are
        // plain data: any value is a valid u8.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map.as_ptr().add(BUS_HEADER_SIZE + ring_off as usize),
                dst.as_mut_ptr(),
                dst.len(),
            )
        }
    }

    /// Copies `src` into the ring at `ring_off`. The range must not wrap. Callers hold the lock.
    pub(crate) fn copy_in(&self, ring_off: u32, src: &[u8]) {
        assert!(self.writable, "write to a read-only bus mapping");
        let end = ring_off as usize + src.len();
        assert!(end <= self.data_size as usize, "ring write past the end");
        // SAFETY: the destination range lies inside the writable mapped ring (checked above);
        // `src` is caller memory outside the mapping, so no overlap. The bus lock, held by the
        // caller, keeps other shmlab writers out of the ring while we store.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.map
                    .as_mut_ptr()
                    .add(BUS_HEADER_SIZE + ring_off as usize),
                src.len(),
            )
        }
    }

    /// Copies the raw bytes of the whole file (header and ring), for tools and tests.
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.map.len()];
        // SAFETY: the source is the whole mapping and the destination a fresh Vec of the same
        // length; they cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(self.map.as_ptr(), out.as_mut_ptr(), out.len()) }
        out
    }
}
