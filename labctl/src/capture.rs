//! Bus captures: `capture` follows a live bus as a passive `shmif::Reader` (no lock, sees every
//! frame, counts what it lost) and writes classic pcap; `dump` writes what the ring holds now.

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// When a capture stops (besides being killed, or the reader of stdout going away).
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Start with the oldest frame the ring still holds instead of the next new one.
    pub from_oldest: bool,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureReport {
    pub frames: u64,
    /// Frames the bus overwrote before the capture read them.
    pub lost: u64,
}

/// Where pcap goes: a file, or stdout as an unbuffered `File` so each packet reaches a
/// `| tcpdump -r -` at once.
pub fn open_output(target: &str) -> Result<File> {
    if target == "-" {
        use std::os::fd::AsFd;
        let fd = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stdout")?;
        Ok(File::from(fd))
    } else {
        File::create(target).with_context(|| format!("creating {target}"))
    }
}

fn attach_existing(bus: &Path) -> Result<std::sync::Arc<shmif::Bus>> {
    // `Bus::attach` creates missing files; a capture must never invent a bus.
    if !bus.is_file() {
        bail!("bus file {} does not exist", bus.display());
    }
    shmif::Bus::attach(bus, &shmif::BusConfig::default())
        .with_context(|| format!("attaching {}", bus.display()))
}

/// The two capture file formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap, microsecond timestamps (what `shmif_dumpbus -p` writes).
    #[default]
    Pcap,
    /// pcapng with one interface named after the bus, nanosecond timestamps.
    PcapNg,
}

enum Sink<W: Write> {
    Pcap(shmif::pcap::PcapSink<W>),
    PcapNg(pcap_file::pcapng::PcapNgWriter<W>),
}

fn pcap_io(e: pcap_file::PcapError) -> std::io::Error {
    match e {
        pcap_file::PcapError::IoError(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

impl<W: Write> Sink<W> {
    fn new(out: W, format: Format, name: &str) -> std::io::Result<Self> {
        use pcap_file::pcapng::blocks::interface_description::{
            InterfaceDescriptionBlock, InterfaceDescriptionOption,
        };
        match format {
            Format::Pcap => Ok(Sink::Pcap(shmif::pcap::PcapSink::new(out)?)),
            Format::PcapNg => {
                let mut w = pcap_file::pcapng::PcapNgWriter::new(out).map_err(pcap_io)?;
                // pcap-file writes nanosecond timestamps: the block must say so (IfTsResol 9).
                let idb = InterfaceDescriptionBlock {
                    linktype: pcap_file::DataLink::ETHERNET,
                    snaplen: shmif::pcap::SNAPLEN,
                    options: vec![
                        InterfaceDescriptionOption::IfName(name.to_string().into()),
                        InterfaceDescriptionOption::IfTsResol(9),
                    ],
                };
                w.write_pcapng_block(idb).map_err(pcap_io)?;
                w.get_mut().flush()?;
                Ok(Sink::PcapNg(w))
            }
        }
    }

    fn write(&mut self, sec: u32, usec: u32, frame: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Pcap(s) => s.write(sec, usec, frame),
            Sink::PcapNg(w) => {
                use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
                let epb = EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: Duration::new(u64::from(sec), usec.min(999_999) * 1000),
                    original_len: frame.len() as u32,
                    data: frame.into(),
                    options: vec![],
                };
                w.write_pcapng_block(epb).map_err(pcap_io)?;
                w.get_mut().flush()
            }
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Pcap(s) => s.finish().map(|_| ()),
            Sink::PcapNg(w) => w.into_inner().flush(),
        }
    }
}

/// Follows `bus` from now on, writing each frame to `out` as pcap or pcapng.
pub fn capture(
    bus: &Path,
    out: impl Write,
    limits: Limits,
    format: Format,
) -> Result<CaptureReport> {
    let name = bus
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bus = attach_existing(bus)?;
    let mut reader = bus.reader();
    if limits.from_oldest {
        reader.rewind_to_oldest();
    }
    let mut sink = match Sink::new(out, format, &name) {
        Ok(s) => s,
        Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(CaptureReport::default()),
        Err(e) => return Err(e).context("writing the pcap header"),
    };
    let deadline = limits.duration.map(|d| Instant::now() + d);
    let mut buf = vec![0u8; 65536];
    let mut report = CaptureReport::default();
    loop {
        if limits.count.is_some_and(|c| report.frames >= c) {
            break;
        }
        let wait = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.min(Duration::from_millis(200))
            }
            None => Duration::from_millis(200),
        };
        let Some(got) = reader.recv(&mut buf, wait) else {
            continue;
        };
        match sink.write(got.sec, got.usec, &buf[..got.len]) {
            Ok(()) => report.frames += 1,
            Err(e) if e.kind() == ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).context("writing pcap"),
        }
    }
    report.lost = reader.stats().lost;
    match sink.finish() {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e).context("writing pcap"),
    }
    Ok(report)
}

/// Writes every frame the ring of `bus` holds now as pcap; returns how many.
pub fn dump(bus: &Path, out: impl Write) -> Result<usize> {
    let bytes = std::fs::read(bus).with_context(|| format!("reading {}", bus.display()))?;
    let dump = shmif::dump::parse(&bytes).with_context(|| bus.display().to_string())?;
    shmif::dump::write_pcap(out, &dump.records).context("writing pcap")?;
    Ok(dump.records.len())
}
