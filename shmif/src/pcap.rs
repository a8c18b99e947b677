//! Classic pcap output for bus frames, shared by `shmif_dumpbus` and live captures.
//!
//! The bytes are what libpcap's `pcap_open_dead(DLT_EN10MB, 1518)` + `pcap_dump_open` +
//! `pcap_dump` write, which is how NetBSD's `shmif_dumpbus` (rev 1.19) makes its file: a 24-byte
//! file header (magic `0xa1b2c3d4`, version 2.4, thiszone 0, sigfigs 0, snaplen, linktype 1) and
//! a 16-byte header per record (seconds, microseconds, captured length, length), every field in
//! the byte order of the host doing the writing. Readers tell the order from the magic.

use std::io::Write;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness};

/// NetBSD's `shmif_dumpbus` snap length: a full frame plus FCS room.
pub const SNAPLEN: u32 = 1518;

fn to_io(e: pcap_file::PcapError) -> std::io::Error {
    match e {
        pcap_file::PcapError::IoError(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

/// A pcap stream of Ethernet frames with bus timestamps.
pub struct PcapSink<W: Write> {
    writer: PcapWriter<W>,
}

impl<W: Write> PcapSink<W> {
    /// Writes the file header (snaplen [`SNAPLEN`], host byte order) and returns the sink.
    pub fn new(out: W) -> std::io::Result<Self> {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            snaplen: SNAPLEN,
            // libpcap writes in the host's order (pcap_file defaults to big-endian).
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(out, header).map_err(to_io)?;
        Ok(PcapSink { writer })
    }

    /// Writes one record: `caplen = len = frame.len()`. A `usec` of a million or more (never
    /// from an honest writer) is carried into the seconds, where `pcap_dump` would store it
    /// as given.
    pub fn write(&mut self, sec: u32, usec: u32, frame: &[u8]) -> std::io::Result<()> {
        let ts = Duration::from_secs(sec as u64) + Duration::from_micros(usec as u64);
        let packet = PcapPacket::new(ts, frame.len() as u32, frame);
        self.writer.write_packet(&packet).map(|_| ()).map_err(to_io)
    }

    /// Flushes and returns the underlying writer. Streaming callers that need each packet out
    /// at once should give an unbuffered writer (a `File`, not `Stdout`).
    pub fn finish(self) -> std::io::Result<W> {
        let mut out = self.writer.into_writer();
        out.flush()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_libpcaps_in_host_order() {
        let mut sink = PcapSink::new(Vec::new()).unwrap();
        sink.write(0x0102_0304, 999_999, &[0xaa; 3]).unwrap();
        let bytes = sink.finish().unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
        want.extend_from_slice(&2u16.to_ne_bytes());
        want.extend_from_slice(&4u16.to_ne_bytes());
        want.extend_from_slice(&[0; 8]);
        want.extend_from_slice(&1518u32.to_ne_bytes());
        want.extend_from_slice(&1u32.to_ne_bytes());
        for v in [0x0102_0304u32, 999_999, 3, 3] {
            want.extend_from_slice(&v.to_ne_bytes());
        }
        want.extend_from_slice(&[0xaa; 3]);
        assert_eq!(bytes, want);
    }
}
