//! `shmif_pcapin pcap-file-path bus-path`: writes every frame of a capture onto a shmif bus,
//! as NetBSD's `usr.bin/shmif_pcapin` does: it prints the bus header line, sends the frames in
//! file order, stamped with the current time (the capture's timestamps are not kept), and
//! wakes the bus's readers.
//!
//! Like NetBSD's: no options (any other argument count is the usage, status 1), the bus must
//! exist (`open bus: No such file or directory`) and be a bus (`BUS not a shmif bus`), a
//! version other than 3 (or 0, a bus nobody has written on) is refused, and the messages use
//! NetBSD's words. Frames go through a shmif port, so every attached node and reader is
//! woken as for any sender, shmlab or NetBSD style (a bus in NetBSD mode also gets NetBSD's
//! file-write wakeup).
//!
//! Where it differs, on purpose: pcapng files are read too (libpcap's `pcap_open_offline`
//! reads both); the whole capture is checked before anything is written, and a capture that
//! is not Ethernet, or holds a frame that was cut short when captured (NetBSD copies the
//! original length from a shorter buffer) or that a bus cannot carry (below 14 or above 1514
//! bytes), is refused with the frame's number and nothing is sent.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use shmif::format::{
    BUS_HEADER_SIZE, MAGIC, MAX_FRAME, MIN_FRAME, OFF_MAGIC, OFF_VERSION, VERSION,
};
use shmif::{Bus, BusConfig};

/// The C library's text for an error, as `err(3)` prints it (without Rust's "(os error N)").
fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map(str::to_string)
            .unwrap_or(text),
        None => text,
    }
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// NetBSD's checks before it maps the bus: it exists (no bus is created here), and its
/// magic and version are a shmif v3 bus's.
fn check_bus(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("open bus: {}", strerror(&e)))?;
    let mut head = [0u8; BUS_HEADER_SIZE];
    if f.read_exact(&mut head).is_err() || word(&head, OFF_MAGIC) != MAGIC {
        return Err(format!("{shown} not a shmif bus"));
    }
    match word(&head, OFF_VERSION) {
        VERSION | 0 => Ok(()),
        v => Err(format!("bus version {v}, program {VERSION}")),
    }
}

/// The frames of a pcap or pcapng file, checked: Ethernet, complete, of a size a bus carries.
fn read_frames(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let cannot = |why: String| format!("cannot open pcap file: {}: {why}", path.display());
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| cannot(strerror(&e)))?;
    // (frame, original length, link type) in file order.
    let mut packets: Vec<(Vec<u8>, u32, DataLink)> = Vec::new();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(&bytes[..]).map_err(|e| cannot(e.to_string()))?;
        while let Some(block) = r.next_block() {
            let n = packets.len() + 1;
            let block = block
                .map_err(|e| format!("{}: packet {n}: {e}", path.display()))?
                .into_owned();
            match block {
                Block::EnhancedPacket(p) => {
                    let link = r.packet_interface(&p).map(|i| i.linktype).ok_or_else(|| {
                        format!("{}: packet {n}: no such interface", path.display())
                    })?;
                    packets.push((p.data.into_owned(), p.original_len, link));
                }
                Block::SimplePacket(p) => {
                    let iface = r.interfaces().first();
                    let link = iface.map(|i| i.linktype).unwrap_or(DataLink::ETHERNET);
                    let snap = iface
                        .map(|i| i.snaplen)
                        .filter(|s| *s > 0)
                        .unwrap_or(u32::MAX);
                    // The block's data is padded to 4 bytes: keep what was captured.
                    let keep = (p.original_len.min(snap) as usize).min(p.data.len());
                    packets.push((p.data[..keep].to_vec(), p.original_len, link));
                }
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(&bytes[..]).map_err(|e| cannot(e.to_string()))?;
        let link = r.header().datalink;
        while let Some(p) = r.next_packet() {
            let n = packets.len() + 1;
            let p = p.map_err(|e| format!("{}: packet {n}: {e}", path.display()))?;
            packets.push((p.data.into_owned(), p.orig_len, link));
        }
    }
    let mut frames = Vec::with_capacity(packets.len());
    for (i, (data, orig_len, link)) in packets.into_iter().enumerate() {
        let n = i + 1;
        let shown = path.display();
        if link != DataLink::ETHERNET {
            return Err(format!(
                "{shown}: packet {n}: link type {link:?}, not Ethernet: a bus carries Ethernet frames"
            ));
        }
        if (data.len() as u64) < orig_len as u64 {
            return Err(format!(
                "{shown}: packet {n} was cut short when captured ({} of {orig_len} bytes): \
                 capture with a larger snaplen",
                data.len()
            ));
        }
        if !(MIN_FRAME..=MAX_FRAME).contains(&data.len()) {
            return Err(format!(
                "{shown}: packet {n}: a frame of {} bytes; a bus carries {MIN_FRAME} to \
                 {MAX_FRAME} (an Ethernet header and up to 1500 bytes, no FCS)",
                data.len()
            ));
        }
        frames.push(data);
    }
    Ok(frames)
}

fn run(pcap: &Path, bus_path: &Path) -> Result<(), String> {
    check_bus(bus_path)?;
    let bus = Bus::attach(bus_path, &BusConfig::default()).map_err(|e| e.to_string())?;
    let h = bus.header();
    println!(
        "bus version {}, lock: {}, generation: {}, firstoff: 0x{:04x}, lastoff: 0x{:04x}",
        h.version, h.lock, h.gen, h.first, h.last
    );
    let frames = read_frames(pcap)?;
    let port = bus.port();
    for (i, f) in frames.iter().enumerate() {
        port.send(f)
            .map_err(|e| format!("{}: frame {}: {e}", bus_path.display(), i + 1))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "shmif_pcapin".to_string());
    let usage = format!("usage: {prog} pcap-file-path bus-path");
    match &argv[1.min(argv.len())..] {
        [h] if h == "--help" => {
            println!("{usage}\nWrites the frames of a pcap or pcapng file onto a shmif bus.");
            ExitCode::SUCCESS
        }
        [pcap, bus] => match run(Path::new(pcap), Path::new(bus)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{prog}: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("{usage}");
            ExitCode::FAILURE
        }
    }
}
