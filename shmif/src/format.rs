//! The on-file layout of a shmif v3 bus on x86_64/aarch64 (LP64), as NetBSD lays it out.
//! `FORMAT.md` beside this crate documents the same numbers in prose.

/// `shm_magic` of an initialised bus.
pub const MAGIC: u32 = 0xca11_d054;
/// The only version we write.
pub const VERSION: u32 = 3;
/// Version of the pre-2014 layout (12-byte record header, no sender id); `shmif_dumpbus` reads it.
pub const VERSION_2: u32 = 2;

/// NetBSD's fixed `BUSMEM_SIZE`; also our minimum, and the size of NetBSD-compatible buses.
pub const MIN_BUS_SIZE: u64 = 1024 * 1024;
/// Size of a bus shmlab creates by default. Chosen by benchmark (BENCHMARKS.md, "Bus size"): at
/// 8 MiB a reader that keeps up loses nothing to scheduling hiccups of a few tens of ms, and
/// throughput is at its best; larger rings no longer fit the caches.
pub const DEFAULT_BUS_SIZE: u64 = 8 * 1024 * 1024;
/// Ring offsets are u32; keep the whole file well inside that.
pub const MAX_BUS_SIZE: u64 = 1 << 30;

/// Size of `struct shmif_mem` before the ring.
pub const BUS_HEADER_SIZE: usize = 32;
pub const OFF_MAGIC: usize = 0;
/// Also `IFMEM_WAKEUP`: NetBSD peers wake each other by writing `VERSION` here with `pwrite`.
pub const OFF_VERSION: usize = 4;
pub const OFF_GEN: usize = 8;
pub const OFF_FIRST: usize = 16;
pub const OFF_LAST: usize = 20;
pub const OFF_LOCK: usize = 24;
pub const OFF_SPARE: usize = 28;

pub const LOCK_FREE: u32 = 0;
pub const LOCK_HELD: u32 = 1;

/// `sizeof(struct shmif_pkthdr)` on LP64: len, sec, usec, 4 bytes padding, sender.
pub const RECORD_HEADER_SIZE: usize = 24;
/// The v2 record header: len, sec, usec.
pub const RECORD_HEADER_SIZE_V2: usize = 12;

/// Ethernet header without FCS: anything shorter is a runt.
pub const MIN_FRAME: usize = 14;
/// ETHERMTU + Ethernet header: NetBSD asserts this on send and receive.
pub const MAX_FRAME: usize = 1514;

/// One record header. `seq` lives in NetBSD's padding word (uninitialised on NetBSD, ignored
/// there): shmlab writers number their records so readers can count exactly what they lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    pub len: u32,
    pub sec: u32,
    pub usec: u32,
    pub seq: u32,
    pub sender: u64,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_SIZE] {
        let mut b = [0u8; RECORD_HEADER_SIZE];
        b[0..4].copy_from_slice(&self.len.to_ne_bytes());
        b[4..8].copy_from_slice(&self.sec.to_ne_bytes());
        b[8..12].copy_from_slice(&self.usec.to_ne_bytes());
        b[12..16].copy_from_slice(&self.seq.to_ne_bytes());
        b[16..24].copy_from_slice(&self.sender.to_ne_bytes());
        b
    }

    pub fn decode(b: &[u8; RECORD_HEADER_SIZE]) -> Self {
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut sender = [0u8; 8];
        sender.copy_from_slice(&b[16..24]);
        RecordHeader {
            len: u32_at(0),
            sec: u32_at(4),
            usec: u32_at(8),
            seq: u32_at(12),
            sender: u64::from_ne_bytes(sender),
        }
    }

    /// What a record's length says about it before anyone trusts it.
    pub fn classify_len(len: u32) -> RecordKind {
        match len as usize {
            0 => RecordKind::Placeholder,
            n if n < MIN_FRAME => RecordKind::Runt,
            n if n > MAX_FRAME => RecordKind::Oversize,
            _ => RecordKind::Frame,
        }
    }
}

/// A zero-length record is NetBSD's placeholder at ring offset 0 of a fresh bus (and ours after a
/// ring reset): skipped silently. Runts and oversize records are counted and skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    Placeholder,
    Runt,
    Oversize,
    Frame,
}

/// Sender ids of shmlab interfaces carry a check of their low half in their high half, so a
/// record can be told apart from a foreign one (a NetBSD kernel's random id matches with
/// probability 2^-32). The low half is random and gives the MAC, as on NetBSD.
pub fn shmlab_sender(low: u32) -> u64 {
    ((sender_check(low) as u64) << 32) | low as u64
}

/// Whether `sender` is the id of a shmlab interface (see [`shmlab_sender`]).
pub fn is_shmlab_sender(sender: u64) -> bool {
    (sender >> 32) as u32 == sender_check(sender as u32)
}

fn sender_check(low: u32) -> u32 {
    // "SHML" mixed with a multiplicative hash: no fixed id (0, all ones) passes by accident.
    low.wrapping_mul(0x9e37_79b1).rotate_left(13) ^ 0x5348_4d4c
}

/// Wall-clock timestamp as the record header stores it (32-bit seconds and microseconds).
pub fn now_timestamp() -> (u32, u32) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (now.as_secs() as u32, now.subsec_micros())
}
