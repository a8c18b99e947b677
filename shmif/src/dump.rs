//! Reading a bus image the way `shmif_dumpbus` does: the raw bytes of a bus file, taken without
//! the lock. Handles version 2 and 3 buses and buses written on a host of the other byte order.
//!
//! Two walks over the ring:
//! - [`walk`] is NetBSD's own loop from `usr.bin/shmif_dumpbus/shmif_dumpbus.c` rev 1.19, step
//!   for step, so that `shmif_dumpbus` lists the same records NetBSD's tool lists on every bus,
//!   odd ones included. Where NetBSD's tool crashes or never ends it stops and says why
//!   ([`WalkStop`], [`DumpError::FirstOutside`]); see [`walk`] for the list.
//! - [`parse`] is our stricter walk of the live span (oldest record to the end of the newest,
//!   frames of at most 1514 bytes), for callers that want only records a reader could deliver.
//!   On buses NetBSD's kernel leaves behind the two list the same records, except when the
//!   newest record straddles the end of the ring: NetBSD's loop then reads on from its end into
//!   stale bytes (see [`walk`]).
//!
//! Ring offsets are taken modulo the image's ring (file size minus the 32-byte header). NetBSD
//! uses its compile-time `BUSMEM_DATASIZE` (0xfffe0) instead; the two are the same for every bus
//! NetBSD makes (1 MiB), and ours can also be dumped when they are larger.

use crate::format::{BUS_HEADER_SIZE, MAGIC, MAX_FRAME, MIN_BUS_SIZE, VERSION, VERSION_2};

/// NetBSD's `shmif_dumpbus` reads each frame into a buffer of this size (`BUFSIZE`) and asserts
/// (with `-p`) that a record's length fits it.
pub const NETBSD_BUFSIZE: u32 = 64 * 1024;

/// What is wrong with a file that is not a readable bus. The magic and version messages are
/// NetBSD's words (`errx` in `shmif_dumpbus.c` rev 1.19), without the file name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DumpError {
    /// Ours: NetBSD maps a short file and dies of SIGBUS when the walk reaches the missing
    /// pages (or fails `mmap` on an empty one).
    #[error("file is {0} bytes: truncated (a shmif bus is at least 1 MiB)")]
    Truncated(usize),
    /// Ours: ring offsets are 32-bit, so no bus is this large.
    #[error("file is {0} bytes: too large for a shmif bus (ring offsets are 32-bit)")]
    TooLarge(usize),
    /// NetBSD prints the value with C's `%#x`, which writes 0 as `0`.
    #[error("not a shmif bus: bad magic {} != {MAGIC:#x}", c_alt_hex(*.0))]
    BadMagic(u32),
    /// NetBSD prints the version with `%d`.
    #[error("Unhandled bus version {}, program {VERSION}", *.0 as i32)]
    Version(u32),
    /// Ours, from [`walk`]: NetBSD's `shmif_busread` asserts `off <= BUSMEM_DATASIZE` on the
    /// first read and aborts.
    #[error("firstoff {first:#x} is outside the ring of {data_size:#x} bytes")]
    FirstOutside { first: u32, data_size: u32 },
}

/// C's `%#x`: `0x` before the digits, except for zero.
fn c_alt_hex(v: u32) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumpHeader {
    /// The bus was written in the other byte order.
    pub swapped: bool,
    pub version: u32,
    pub gen: u64,
    pub first: u32,
    pub last: u32,
    pub lock: u32,
    pub data_size: u32,
}

impl DumpHeader {
    /// NetBSD's header line, byte for byte (version and lock are printed with `%d`).
    pub fn line(&self) -> String {
        format!(
            "bus version {}, lock: {}, generation: {}, firstoff: 0x{:04x}, lastoff: 0x{:04x}",
            self.version as i32, self.lock as i32, self.gen, self.first, self.last
        )
    }

    /// Size of a record header on this bus: 12 bytes for version 2, 24 (LP64) for version 3.
    pub fn record_header_len(&self) -> u32 {
        if self.version == VERSION_2 {
            12
        } else {
            24
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpRecord {
    /// Ring offset of the frame bytes (what NetBSD prints as "offset").
    pub payload_offset: u32,
    pub sec: u32,
    pub usec: u32,
    /// Sender id (version 3 buses only).
    pub sender: Option<u64>,
    pub frame: Vec<u8>,
}

impl DumpRecord {
    /// NetBSD's line for the `index`th record it prints, byte for byte (`%d` for the index and
    /// both timestamp fields, so values above `i32::MAX` come out negative as on NetBSD).
    pub fn line(&self, index: usize) -> String {
        format!(
            "packet {index}, offset 0x{:04x}, length 0x{:04x}, ts {}/{:06}",
            self.payload_offset,
            self.frame.len(),
            self.sec as i32,
            self.usec as i32
        )
    }
}

/// Everything the image holds, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dump {
    pub header: DumpHeader,
    pub records: Vec<DumpRecord>,
    /// Records skipped because their length cannot be right (the walk stops at the first one).
    pub corrupt: usize,
}

struct Image<'a> {
    data: &'a [u8],
    swapped: bool,
}

impl Image<'_> {
    fn u32_at(&self, off: usize) -> u32 {
        let v = u32::from_ne_bytes(self.data[off..off + 4].try_into().expect("4 bytes"));
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }

    fn u64_at(&self, off: usize) -> u64 {
        let v = u64::from_ne_bytes(self.data[off..off + 8].try_into().expect("8 bytes"));
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }
}

/// Reads the header of a bus image (`shmif_dumpbus -h`).
pub fn parse_header(bytes: &[u8]) -> Result<DumpHeader, DumpError> {
    // Every bus is at least NetBSD's 1 MiB: anything shorter is a cut-off copy, and walking it
    // as a smaller ring would invent records.
    if (bytes.len() as u64) < MIN_BUS_SIZE {
        return Err(DumpError::Truncated(bytes.len()));
    }
    let data_size = u32::try_from(bytes.len() - BUS_HEADER_SIZE)
        .map_err(|_| DumpError::TooLarge(bytes.len()))?;
    let raw_magic = u32::from_ne_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let swapped = if raw_magic == MAGIC {
        false
    } else if raw_magic.swap_bytes() == MAGIC {
        true
    } else {
        return Err(DumpError::BadMagic(raw_magic));
    };
    let img = Image {
        data: bytes,
        swapped,
    };
    let version = img.u32_at(4);
    if !crate::bus::dumpable_version(version) {
        return Err(DumpError::Version(version));
    }
    Ok(DumpHeader {
        swapped,
        version,
        gen: img.u64_at(8),
        first: img.u32_at(16),
        last: img.u32_at(20),
        lock: img.u32_at(24),
        data_size,
    })
}

/// Why [`Walk`] stopped before NetBSD's loop would have: at these points NetBSD's tool crashes
/// or never ends, and everything before them is what it prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkStop {
    /// The record whose header is at `offset` claims `len` bytes, more than NetBSD's 64 KiB
    /// buffer: NetBSD prints its line, then asserts (with `-p`) or overruns the buffer (without).
    /// We print neither its line nor its frame. `past_newest`: the walk had already read the
    /// newest record (at `lastoff`), so these are stale bytes, not a damaged record; NetBSD's
    /// loop reads on into them when the newest record straddles the end of the ring.
    Oversize {
        offset: u32,
        len: u32,
        past_newest: bool,
    },
    /// The walk came back to `offset`, a record header it had already walked from, with the end
    /// of the ring behind it: from there NetBSD's loop repeats the same records forever. Happens
    /// when the newest record ends exactly at the end of the ring, when the bytes after a newest
    /// record that straddles the end line up with older records, or when `lastoff` is outside
    /// the ring.
    Loop { offset: u32 },
}

/// NetBSD's walk over a bus image, one printed record at a time (see [`walk`]).
pub struct Walk<'a> {
    header: DumpHeader,
    ring: &'a [u8],
    cur: u32,
    /// NetBSD's `bonus`: the ring has wrapped (`lastoff < firstoff`) and the walk has not yet
    /// crossed its end.
    bonus: bool,
    /// Offsets the loop has started from since `bonus` went false, one bit each. From then on
    /// the walk depends on nothing but the offset, so a repeat means NetBSD never stops.
    seen: Vec<u64>,
    /// A record header at `lastoff` has been read.
    past_newest: bool,
    stop: Option<WalkStop>,
    done: bool,
}

/// Starts NetBSD's walk (`shmif_dumpbus.c` rev 1.19): from `firstoff` (0 if it is the "never
/// wrapped" sentinel), `while (curbus <= lastoff || bonus)`, where `bonus` starts as
/// `lastoff < curbus` and clears whenever a read reaches the end of the ring; each turn reads a
/// record header (12 or 24 bytes, wrapping), skips records of length 0 and otherwise yields the
/// record, whose frame follows the header (wrapping too). The fields of a swapped bus are
/// swapped back; frames are not touched.
///
/// Where NetBSD does something else than print records, we stop instead:
/// - `firstoff` beyond the ring: [`DumpError::FirstOutside`] (NetBSD aborts on an assertion);
/// - a length above 64 KiB, or a walk that would repeat forever: the iterator ends and
///   [`Walk::stop`] says why ([`WalkStop`]).
///
/// Lengths up to 64 KiB are yielded as NetBSD prints and dumps them, even above 1514 bytes.
/// When the newest record straddles the end of the ring, the offset after it is below
/// `lastoff`, so NetBSD's loop reads on into the stale bytes there, and so does this walk, up
/// to the first of the stops above or until it passes `lastoff`.
pub fn walk(bytes: &[u8]) -> Result<Walk<'_>, DumpError> {
    let header = parse_header(bytes)?;
    let mut cur = header.first;
    if cur == header.data_size {
        cur = 0;
    }
    if cur > header.data_size {
        return Err(DumpError::FirstOutside {
            first: header.first,
            data_size: header.data_size,
        });
    }
    Ok(Walk {
        header,
        ring: &bytes[BUS_HEADER_SIZE..],
        cur,
        bonus: header.last < cur,
        seen: vec![0; (header.data_size as usize).div_ceil(64)],
        past_newest: false,
        stop: None,
        done: false,
    })
}

impl Walk<'_> {
    pub fn header(&self) -> &DumpHeader {
        &self.header
    }

    /// Why the walk ended early, once it has ended; `None` if it ended where NetBSD's does.
    pub fn stop(&self) -> Option<WalkStop> {
        self.stop
    }

    /// NetBSD's `shmif_busread`: copies `dest.len()` bytes from `off`, continuing at 0 past the
    /// end; returns the offset after them and whether the copy reached the end of the ring.
    fn busread(&self, dest: &mut [u8], off: u32) -> (u32, bool) {
        let size = self.header.data_size as usize;
        let off = off as usize;
        let chunk = dest.len().min(size - off);
        dest[..chunk].copy_from_slice(&self.ring[off..off + chunk]);
        let wrapped = off + chunk == size;
        let rest = dest.len() - chunk;
        if rest == 0 {
            return (((off + chunk) % size) as u32, wrapped);
        }
        dest[chunk..].copy_from_slice(&self.ring[..rest]);
        (rest as u32, wrapped)
    }

    fn field32(&self, b: &[u8], i: usize) -> u32 {
        let v = u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        if self.header.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }

    /// True if `off` was already a starting point since `bonus` cleared; marks it.
    fn seen_before(&mut self, off: u32) -> bool {
        let (word, bit) = ((off / 64) as usize, off % 64);
        let was = self.seen[word] & (1 << bit) != 0;
        self.seen[word] |= 1 << bit;
        was
    }
}

impl Iterator for Walk<'_> {
    type Item = DumpRecord;

    fn next(&mut self) -> Option<DumpRecord> {
        while !self.done {
            if !(self.cur <= self.header.last || self.bonus) {
                self.done = true;
                break;
            }
            if !self.bonus && self.seen_before(self.cur) {
                self.stop = Some(WalkStop::Loop { offset: self.cur });
                self.done = true;
                break;
            }
            let start = self.cur;
            let mut hdr = [0u8; 24];
            let hdr = &mut hdr[..self.header.record_header_len() as usize];
            let (payload_offset, wrapped) = self.busread(hdr, start);
            if wrapped {
                self.bonus = false;
            }
            self.cur = payload_offset;
            let len = self.field32(hdr, 0);
            if len == 0 {
                continue;
            }
            if len > NETBSD_BUFSIZE {
                self.stop = Some(WalkStop::Oversize {
                    offset: start,
                    len,
                    past_newest: self.past_newest,
                });
                self.done = true;
                break;
            }
            if start == self.header.last {
                self.past_newest = true;
            }
            let sender = (hdr.len() == 24).then(|| {
                let v = u64::from_ne_bytes(hdr[16..24].try_into().expect("8 bytes"));
                if self.header.swapped {
                    v.swap_bytes()
                } else {
                    v
                }
            });
            let mut frame = vec![0u8; len as usize];
            let (next, wrapped) = self.busread(&mut frame, payload_offset);
            if wrapped {
                self.bonus = false;
            }
            self.cur = next;
            return Some(DumpRecord {
                payload_offset,
                sec: self.field32(hdr, 4),
                usec: self.field32(hdr, 8),
                sender,
                frame,
            });
        }
        None
    }
}

/// Our live-span walk: from the oldest record to the end of the newest, across the ring's end,
/// stopping at the first record longer than 1514 bytes or running past the newest. Not
/// NetBSD's loop: `shmif_dumpbus` uses [`walk`].
pub fn parse(bytes: &[u8]) -> Result<Dump, DumpError> {
    let header = parse_header(bytes)?;
    let img = Image {
        data: &bytes[BUS_HEADER_SIZE..],
        swapped: header.swapped,
    };
    let size = header.data_size as usize;
    let hdr_len = header.record_header_len() as usize;
    let read =
        |off: usize, n: usize| -> Vec<u8> { (0..n).map(|i| img.data[(off + i) % size]).collect() };
    let u32_from = |b: &[u8], i: usize| {
        let v = u32::from_ne_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        if header.swapped {
            v.swap_bytes()
        } else {
            v
        }
    };
    let mut dump = Dump {
        header,
        records: Vec::new(),
        corrupt: 0,
    };
    if header.first as usize > size || header.last as usize >= size {
        dump.corrupt = 1;
        return Ok(dump);
    }
    let last_len = u32_from(&read(header.last as usize, hdr_len), 0) as usize;
    if last_len > MAX_FRAME {
        dump.corrupt = 1;
        return Ok(dump);
    }
    let end = (header.last as usize + hdr_len + last_len) % size;
    let start = if header.first as usize == size {
        0
    } else {
        header.first as usize
    };
    // Bytes of live data between the oldest record and the end of the newest.
    let live = if header.first as usize == size {
        end
    } else if start < end {
        end - start
    } else {
        size - start + end
    };
    let mut walked = 0usize;
    let mut off = start;
    while walked < live {
        let h = read(off, hdr_len);
        let len = u32_from(&h, 0) as usize;
        if len > MAX_FRAME || walked + hdr_len + len > live {
            dump.corrupt += 1;
            break;
        }
        let payload_offset = (off + hdr_len) % size;
        if len > 0 {
            let sender = (hdr_len == 24).then(|| {
                let v = u64::from_ne_bytes(h[16..24].try_into().expect("8 bytes"));
                if header.swapped {
                    v.swap_bytes()
                } else {
                    v
                }
            });
            dump.records.push(DumpRecord {
                payload_offset: payload_offset as u32,
                sec: u32_from(&h, 4),
                usec: u32_from(&h, 8),
                sender,
                frame: read(payload_offset, len),
            });
        }
        walked += hdr_len + len;
        off = (off + hdr_len + len) % size;
    }
    Ok(dump)
}

/// Writes records as a classic pcap (DLT_EN10MB, snaplen 1518, microsecond timestamps, host
/// byte order), the file `shmif_dumpbus -p` produces.
pub fn write_pcap<W: std::io::Write>(out: W, records: &[DumpRecord]) -> std::io::Result<()> {
    let mut w = crate::pcap::PcapSink::new(out)?;
    for r in records {
        w.write(r.sec, r.usec, &r.frame)?;
    }
    w.finish().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: u32 = 0xfffe0;

    /// A 1 MiB version 3 image with `first` and `last`, the ring filled with `fill`.
    fn image(first: u32, last: u32, fill: u8) -> Vec<u8> {
        let mut img = vec![fill; 1 << 20];
        img[..32].fill(0);
        img[0..4].copy_from_slice(&MAGIC.to_ne_bytes());
        img[4..8].copy_from_slice(&VERSION.to_ne_bytes());
        img[16..20].copy_from_slice(&first.to_ne_bytes());
        img[20..24].copy_from_slice(&last.to_ne_bytes());
        img
    }

    #[test]
    fn messages_use_cs_formats() {
        assert_eq!(
            DumpError::BadMagic(0).to_string(),
            "not a shmif bus: bad magic 0 != 0xca11d054"
        );
        assert_eq!(
            DumpError::Version(u32::MAX).to_string(),
            "Unhandled bus version -1, program 3"
        );
    }

    #[test]
    fn first_beyond_the_ring_is_an_error() {
        let img = image(DATA + 1, 0, 0);
        assert_eq!(
            walk(&img).err(),
            Some(DumpError::FirstOutside {
                first: DATA + 1,
                data_size: DATA
            })
        );
    }

    #[test]
    fn walks_that_never_end_on_netbsd_stop() {
        // lastoff beyond the ring: every offset is <= lastoff, so NetBSD never leaves its loop.
        // Over a zeroed ring it steps 24 bytes at a time round and round.
        let img = image(DATA, DATA + 100, 0);
        let mut w = walk(&img).unwrap();
        assert_eq!(w.by_ref().count(), 0);
        assert!(matches!(w.stop(), Some(WalkStop::Loop { .. })));

        // Garbage lengths: the first header already claims 0x01010101 bytes.
        let img = image(DATA, 100, 1);
        let mut w = walk(&img).unwrap();
        assert_eq!(w.by_ref().count(), 0);
        assert_eq!(
            w.stop(),
            Some(WalkStop::Oversize {
                offset: 0,
                len: 0x0101_0101,
                past_newest: false
            })
        );
    }

    #[test]
    fn garbage_rings_end() {
        // Every 4-byte word says 0x104, so every record is 24 + 0x104 bytes: records round
        // the ring again and again (lastoff is at its very end) until one starts where an
        // earlier one did.
        let mut img = image(DATA, DATA - 1, 0);
        for word in img[32..].chunks_mut(4) {
            word.copy_from_slice(&0x104u32.to_ne_bytes());
        }
        let mut w = walk(&img).unwrap();
        let n = w.by_ref().count();
        assert!(n > 3000, "{n}");
        assert!(matches!(w.stop(), Some(WalkStop::Loop { .. })));
    }
}
