//! Classic pcap output for bus frames, shared by `shmif_dumpbus` and live captures.
//!
//! The bytes are what libpcap's `pcap_open_dead(DLT_EN10MB, 1518)` + `pcap_dump_open` +
//! `pcap_dump` write, which is how NetBSD's `shmif_dumpbus` (rev 1.19) makes its file: a 24-byte
//! file header (magic `0xa1b2c3d4`, version 2.4, thiszone 0, sigfigs 0, snaplen, linktype 1) and
//! a 16-byte header per record (seconds, microseconds, captured length, length), every field in
//! the byte order of the host doing the writing. Readers tell the order from the magic.

use std::io::Write;

/// NetBSD's `shmif_dumpbus` snap length: a full frame plus FCS room.
pub const SNAPLEN: u32 = 1518;
/// libpcap's `TCPDUMP_MAGIC`: microsecond timestamps.
pub const MAGIC: u32 = 0xa1b2_c3d4;
/// `LINKTYPE_ETHERNET`, what libpcap stores for `DLT_EN10MB`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Size of the file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Size of each record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// The file header libpcap writes for an Ethernet capture with `snaplen`, in host byte order.
pub fn file_header(snaplen: u32) -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_ne_bytes());
    h[4..6].copy_from_slice(&2u16.to_ne_bytes());
    h[6..8].copy_from_slice(&4u16.to_ne_bytes());
    // thiszone (8..12) and sigfigs (12..16) are always 0.
    h[16..20].copy_from_slice(&snaplen.to_ne_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
    h
}

/// A pcap stream of Ethernet frames with bus timestamps.
pub struct PcapSink<W: Write> {
    out: W,
    /// One record, so that each goes out in a single write: a live reader of an unbuffered
    /// file never sees a header without its frame.
    record: Vec<u8>,
}

impl<W: Write> PcapSink<W> {
    /// Writes the file header (snaplen [`SNAPLEN`]) and returns the sink.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        out.write_all(&file_header(SNAPLEN))?;
        Ok(PcapSink {
            out,
            record: Vec::with_capacity(RECORD_HEADER_LEN + SNAPLEN as usize),
        })
    }

    /// Writes one record: `caplen = len = frame.len()`. `sec` and `usec` are stored as given,
    /// like `pcap_dump` does with the bus's 32-bit sender timestamps: no range check on `usec`.
    pub fn write(&mut self, sec: u32, usec: u32, frame: &[u8]) -> std::io::Result<()> {
        let len = u32::try_from(frame.len()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("frame of {} bytes does not fit a pcap record", frame.len()),
            )
        })?;
        self.record.clear();
        self.record.extend_from_slice(&sec.to_ne_bytes());
        self.record.extend_from_slice(&usec.to_ne_bytes());
        self.record.extend_from_slice(&len.to_ne_bytes());
        self.record.extend_from_slice(&len.to_ne_bytes());
        self.record.extend_from_slice(frame);
        self.out.write_all(&self.record)
    }

    /// Flushes and returns the underlying writer. Streaming callers that need each packet out
    /// at once should give an unbuffered writer (a `File`, not `Stdout`).
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_libpcaps_in_host_order() {
        let mut sink = PcapSink::new(Vec::new()).unwrap();
        sink.write(0x0102_0304, 1_000_001, &[0xaa; 3]).unwrap();
        let bytes = sink.finish().unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
        want.extend_from_slice(&2u16.to_ne_bytes());
        want.extend_from_slice(&4u16.to_ne_bytes());
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&1518u32.to_ne_bytes());
        want.extend_from_slice(&1u32.to_ne_bytes());
        for v in [0x0102_0304u32, 1_000_001, 3, 3] {
            want.extend_from_slice(&v.to_ne_bytes());
        }
        want.extend_from_slice(&[0xaa; 3]);
        assert_eq!(bytes, want);
    }
}
