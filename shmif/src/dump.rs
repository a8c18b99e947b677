//! Reading a bus image the way `shmif_dumpbus` does: the raw bytes of a bus file, taken without
//! the lock, walked from the oldest record to the newest. Handles version 2 and 3 buses and buses
//! written on a host of the other byte order.

use crate::format::{MAGIC, MAX_FRAME, VERSION, VERSION_2};

/// What is wrong with a file that is not a readable bus. Messages follow NetBSD's tool.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DumpError {
    #[error("file is {0} bytes: truncated (a shmif bus is at least 1 MiB)")]
    Truncated(usize),
    #[error("not a shmif bus: bad magic {0:#x} != {MAGIC:#x}")]
    BadMagic(u32),
    #[error("Unhandled bus version {0}, program {VERSION}")]
    Version(u32),
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
    /// NetBSD's header line, byte for byte.
    pub fn line(&self) -> String {
        format!(
            "bus version {}, lock: {}, generation: {}, firstoff: 0x{:04x}, lastoff: 0x{:04x}",
            self.version, self.lock, self.gen, self.first, self.last
        )
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
    if (bytes.len() as u64) < crate::format::MIN_BUS_SIZE {
        return Err(DumpError::Truncated(bytes.len()));
    }
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
        data_size: (bytes.len() - crate::format::BUS_HEADER_SIZE) as u32,
    })
}

/// Walks the image from the oldest record to the end of the newest, across the ring's end.
pub fn parse(bytes: &[u8]) -> Result<Dump, DumpError> {
    let header = parse_header(bytes)?;
    let img = Image {
        data: &bytes[crate::format::BUS_HEADER_SIZE..],
        swapped: header.swapped,
    };
    let size = header.data_size as usize;
    let hdr_len = if header.version == VERSION_2 { 12 } else { 24 };
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

/// Writes records as a classic pcap (DLT_EN10MB, snaplen 1518, microsecond timestamps), the
/// file `shmif_dumpbus -p` produces.
pub fn write_pcap<W: std::io::Write>(out: W, records: &[DumpRecord]) -> std::io::Result<()> {
    let mut w = crate::pcap::PcapSink::new(out)?;
    for r in records {
        w.write(r.sec, r.usec, &r.frame)?;
    }
    w.finish().map(|_| ())
}
