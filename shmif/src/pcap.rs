//! Classic pcap output for bus frames, shared by `shmif_dumpbus` and live captures.

use std::io::Write;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

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
    pub fn new(out: W) -> std::io::Result<Self> {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            snaplen: SNAPLEN,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(out, header).map_err(to_io)?;
        Ok(PcapSink { writer })
    }

    pub fn write(&mut self, sec: u32, usec: u32, frame: &[u8]) -> std::io::Result<()> {
        let ts = Duration::new(sec as u64, usec.min(999_999) * 1000);
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
