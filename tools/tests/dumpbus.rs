//! `shmif_dumpbus` against real bus files written by the shmif library, with its pcap output
//! read back by the real `tcpdump` and `tshark`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use shmif::{Bus, BusConfig};
use shmlab_tests::prereq::have_tool;

const DUMPBUS: &str = env!("CARGO_BIN_EXE_shmif_dumpbus");
/// IEEE "local experimental" EtherType: tcpdump and tshark show the payload as opaque data.
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// A broadcast frame of `len` bytes carrying `seq` right after the Ethernet header (when there
/// is room), so a dump can be checked for which frames it holds and in what order. The rest is
/// a fill byte that is never 0, so stale frame bytes never read as a zero length.
fn frame(src: [u8; 6], len: usize, seq: u32) -> Vec<u8> {
    let mut f = vec![(seq % 251) as u8 + 1; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ETHERTYPE);
    if len >= 18 {
        f[14..18].copy_from_slice(&seq.to_be_bytes());
    }
    f
}

/// Writes one frame per length onto a fresh bus of `size` bytes; returns the bus path.
fn bus_with(dir: &Path, size: u64, lens: impl IntoIterator<Item = usize>) -> PathBuf {
    let path = dir.join("bus");
    let bus = Bus::attach(
        &path,
        &BusConfig {
            size,
            ..BusConfig::default()
        },
    )
    .unwrap();
    let port = bus.port();
    for (seq, len) in lens.into_iter().enumerate() {
        port.send(&frame(port.mac(), len, seq as u32)).unwrap();
    }
    path
}

fn dumpbus(args: &[&str], bus: &Path) -> Output {
    Command::new(DUMPBUS)
        .args(args)
        .arg(bus)
        .output()
        .expect("run shmif_dumpbus")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Frame lengths as `tcpdump -e` prints them ("..., length N: ..."), one per packet. Indented
/// lines are tcpdump's hex dump of payloads it cannot decode.
fn tcpdump_lengths(pcap: &Path) -> Vec<usize> {
    let out = run_ok(Command::new("tcpdump").args(["-nn", "-e", "-r"]).arg(pcap));
    parse_tcpdump_lengths(&out)
}

fn parse_tcpdump_lengths(out: &str) -> Vec<usize> {
    out.lines()
        .filter(|line| !line.starts_with(char::is_whitespace))
        .map(|line| {
            let at = line
                .find(", length ")
                .unwrap_or_else(|| panic!("no length in tcpdump line {line:?}"));
            let rest = &line[at + ", length ".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().unwrap()
        })
        .collect()
}

/// `frame.len` of every packet, and the sequence number our frames carry (None for frames too
/// short to carry one), read by tshark.
fn tshark_frames(pcap: &Path) -> Vec<(usize, Option<u32>)> {
    let out = run_ok(Command::new("tshark").args(["-r"]).arg(pcap).args([
        "-T",
        "fields",
        "-e",
        "frame.len",
        "-e",
        "data.data",
    ]));
    out.lines()
        .map(|line| {
            let mut cols = line.split('\t');
            let len = cols.next().unwrap().trim().parse().unwrap();
            let data = cols.next().unwrap_or("").trim();
            let seq = (data.len() >= 8).then(|| u32::from_str_radix(&data[..8], 16).unwrap());
            (len, seq)
        })
        .collect()
}

#[test]
fn header_line_and_record_lines_match_netbsd_format() {
    let dir = tempfile::tempdir().unwrap();
    // NetBSD's worked example: one 42-byte frame on a fresh 1 MiB bus.
    let bus = bus_with(dir.path(), 1 << 20, [42]);

    let out = dumpbus(&["-h"], &bus);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "bus version 3, lock: 0, generation: 0, firstoff: 0xfffe0, lastoff: 0x0018\n"
    );
    assert_eq!(text(&out.stderr), "");

    let out = dumpbus(&[], &bus);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    // The frame follows the placeholder record and its own 24-byte header: offset 48.
    let prefix = "packet 0, offset 0x0030, length 0x002a, ts ";
    assert!(lines[1].starts_with(prefix), "{}", lines[1]);
    let (sec, usec) = lines[1][prefix.len()..].split_once('/').unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(sec.parse::<u64>().unwrap()) < 60,
        "wall-clock ts"
    );
    assert_eq!(usec.len(), 6, "microseconds are zero-padded to 6 digits");
}

#[test]
fn every_frame_size_reads_back_through_tcpdump_and_tshark() {
    if !have_tool("tcpdump") || !have_tool("tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sizes: Vec<usize> = (14..=1514).collect();
    // 4 MiB holds all 1501 frames without wrapping, and exercises a non-default bus size.
    let bus = bus_with(dir.path(), 4 << 20, sizes.iter().copied());
    let pcap = dir.path().join("all.pcap");

    let out = dumpbus(&["-p", pcap.to_str().unwrap()], &bus);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1 + sizes.len());

    assert_eq!(tcpdump_lengths(&pcap), sizes);
    let frames = tshark_frames(&pcap);
    let lens: Vec<usize> = frames.iter().map(|f| f.0).collect();
    assert_eq!(lens, sizes);
    let seqs: Vec<u32> = frames.iter().filter_map(|f| f.1).collect();
    assert_eq!(seqs, (4..sizes.len() as u32).collect::<Vec<_>>());
}

#[test]
fn wrapped_ring_dumps_the_newest_contiguous_run() {
    if !have_tool("tcpdump") || !have_tool("tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // About 4.5 MB of records: the 1 MiB ring laps four times and the end lands mid-ring.
    let total = 6_000u32;
    let len_of = |seq: u32| 18 + (seq as usize * 131) % (1514 - 18 + 1);
    let bus = bus_with(dir.path(), 1 << 20, (0..total).map(len_of));
    let pcap = dir.path().join("wrapped.pcap");

    let out = dumpbus(&["-p", pcap.to_str().unwrap()], &bus);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        !stdout.starts_with("bus version 3, lock: 0, generation: 0,"),
        "the ring should have wrapped: {}",
        stdout.lines().next().unwrap()
    );

    let frames = tshark_frames(&pcap);
    let seqs: Vec<u32> = frames.iter().map(|f| f.1.expect("seq")).collect();
    let oldest = seqs[0];
    assert!(oldest > 0, "old frames were overwritten");
    assert_eq!(
        seqs,
        (oldest..total).collect::<Vec<_>>(),
        "a contiguous run ending at the newest frame"
    );
    for (len, seq) in &frames {
        assert_eq!(*len, len_of(seq.unwrap()));
    }
    // The run fills the ring: one more (older) record would not have fitted.
    let bytes: usize = frames.iter().map(|f| 24 + f.0).sum();
    let ring = (1 << 20) - 32;
    assert!(
        bytes <= ring && bytes + 24 + 1514 > ring,
        "{bytes} of {ring}"
    );

    assert_eq!(tcpdump_lengths(&pcap).len(), frames.len());
    assert_eq!(stdout.lines().count(), 1 + frames.len());
}

#[test]
fn pcap_on_stdout_pipes_into_tcpdump() {
    if !have_tool("tcpdump") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sizes = [14, 60, 64, 590, 1500, 1514];
    let bus = bus_with(dir.path(), 1 << 20, sizes);

    let mut dump = Command::new(DUMPBUS)
        .args(["-p", "-"])
        .arg(&bus)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tcpdump = Command::new("tcpdump")
        .args(["-nn", "-e", "-r", "-"])
        .stdin(dump.stdout.take().unwrap())
        .output()
        .unwrap();
    let dumped = dump.wait_with_output().unwrap();
    assert!(dumped.status.success(), "{}", text(&dumped.stderr));
    assert!(tcpdump.status.success(), "{}", text(&tcpdump.stderr));
    assert_eq!(parse_tcpdump_lengths(&text(&tcpdump.stdout)), sizes);

    // Text moves to stderr so that stdout is nothing but pcap.
    let stderr = text(&dumped.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines[0].starts_with("bus version 3, lock: 0,"), "{stderr}");
    assert_eq!(lines.len(), 1 + sizes.len(), "{stderr}");
    assert!(lines[1].starts_with("packet 0, "), "{stderr}");
}

/// Exit status 1 and exactly `stderr`.
fn assert_fails(out: &Output, stderr: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), stderr);
}

#[test]
fn bad_magic_is_netbsds_error() {
    let dir = tempfile::tempdir().unwrap();
    let bus = dir.path().join("notabus");
    let mut f = std::fs::File::create(&bus).unwrap();
    f.write_all(&[0x5a; 1 << 20]).unwrap();
    drop(f);
    let out = dumpbus(&[], &bus);
    assert_fails(
        &out,
        &format!(
            "shmif_dumpbus: {} not a shmif bus: bad magic 0x5a5a5a5a != 0xca11d054\n",
            bus.display()
        ),
    );
    assert_eq!(text(&out.stdout), "");

    // C's %#x prints zero without "0x": an all-zero file (a bus nobody attached) says "0".
    std::fs::write(&bus, vec![0u8; 1 << 20]).unwrap();
    assert_fails(
        &dumpbus(&["-h"], &bus),
        &format!(
            "shmif_dumpbus: {} not a shmif bus: bad magic 0 != 0xca11d054\n",
            bus.display()
        ),
    );
}

#[test]
fn truncated_bus_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_with(dir.path(), 1 << 20, [60, 60, 60]);
    let image = std::fs::read(&bus).unwrap();

    let cut = dir.path().join("cut");
    std::fs::write(&cut, &image[..4096]).unwrap();
    assert_fails(
        &dumpbus(&[], &cut),
        &format!(
            "shmif_dumpbus: {}: file is 4096 bytes: truncated (a shmif bus is at least 1 MiB)\n",
            cut.display()
        ),
    );

    std::fs::write(&cut, &image[..20]).unwrap();
    assert_fails(
        &dumpbus(&["-h"], &cut),
        &format!(
            "shmif_dumpbus: {}: file is 20 bytes: truncated (a shmif bus is at least 1 MiB)\n",
            cut.display()
        ),
    );
}

#[test]
fn missing_bus_and_unused_netbsd_bus_are_netbsds_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    assert_fails(
        &dumpbus(&[], &missing),
        &format!(
            "shmif_dumpbus: Can't open bus file `{}': No such file or directory\n",
            missing.display()
        ),
    );

    // A bus NetBSD created but nobody sent on keeps version 0; NetBSD's tool rejects it too.
    // Its line comes first, word for word; ours adds which file and why.
    let fresh = dir.path().join("fresh");
    let mut image = vec![0u8; 1 << 20];
    image[0..4].copy_from_slice(&0xca11_d054u32.to_ne_bytes());
    image[16..20].copy_from_slice(&0xfffe0u32.to_ne_bytes());
    std::fs::write(&fresh, &image).unwrap();
    assert_fails(
        &dumpbus(&["-h"], &fresh),
        &format!(
            "shmif_dumpbus: Unhandled bus version 0, program 3\n\
             shmif_dumpbus: {}: nothing was ever sent on this bus (NetBSD sets the version on \
             the first send)\n",
            fresh.display()
        ),
    );
}

#[test]
fn pcap_file_that_cannot_be_created_is_libpcaps_error_after_the_header_line() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_with(dir.path(), 1 << 20, [60]);
    let pcap = dir.path().join("no/such/dir/out.pcap");
    let out = dumpbus(&["-p", pcap.to_str().unwrap()], &bus);
    assert_fails(
        &out,
        &format!(
            "shmif_dumpbus: Cannot open pcap dump file `{0}': {0}: No such file or directory\n",
            pcap.display()
        ),
    );
    // As on NetBSD, the header line is out before the pcap file is opened, the records not.
    assert_eq!(text(&out.stdout).lines().count(), 1);
}

#[test]
fn options_are_parsed_like_netbsds_getopt() {
    let usage = "Usage: shmif_dumpbus [-h] [-p pcapfile] buspath\n";
    let run = |args: &[&str]| Command::new(DUMPBUS).args(args).output().unwrap();
    assert_fails(&run(&[]), usage);
    assert_fails(&run(&["a", "b"]), usage);
    assert_fails(
        &run(&["-x", "bus"]),
        &format!("shmif_dumpbus: unknown option -- x\n{usage}"),
    );
    assert_fails(
        &run(&["-p"]),
        &format!("shmif_dumpbus: option requires an argument -- p\n{usage}"),
    );
    // Options end at the first operand: "-h" after the bus is a second operand.
    assert_fails(&run(&["bus", "-h"]), usage);

    let dir = tempfile::tempdir().unwrap();
    let bus = bus_with(dir.path(), 1 << 20, [60, 70]);
    // `-pFILE`, `-hp FILE` and `--`.
    let joined = dir.path().join("joined.pcap");
    let out = run(&[
        &format!("-p{}", joined.display()),
        "--",
        bus.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 3);
    assert_eq!(std::fs::metadata(&joined).unwrap().len(), 24 + 16 * 2 + 130);
    // With -h NetBSD exits before opening the pcap file.
    let never = dir.path().join("never.pcap");
    let out = run(&["-hp", never.to_str().unwrap(), bus.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert!(!never.exists());
}

#[test]
fn records_up_to_64k_are_dumped_and_longer_ones_stop_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    // Records start at ring offset 24 (after the placeholder) and are 24 + 60 bytes each.
    let bus = bus_with(dir.path(), 1 << 20, [60, 60, 60, 60]);
    let image = std::fs::read(&bus).unwrap();
    let third = 32 + 24 + 2 * (24 + 60);

    // 60000 bytes is no Ethernet frame, but fits NetBSD's 64 KiB buffer: it prints and dumps
    // the record, and the walk then lands past the newest record and ends.
    let mut long = image.clone();
    long[third..third + 4].copy_from_slice(&60_000u32.to_ne_bytes());
    std::fs::write(&bus, &long).unwrap();
    let out = dumpbus(&[], &bus);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 3, "{stdout}");
    assert!(
        lines[3].starts_with("packet 2, offset 0x00d8, length 0xea60, ts "),
        "{}",
        lines[3]
    );
    assert_eq!(text(&out.stderr), "");

    // Over 64 KiB NetBSD aborts; we stop before that record, with a warning.
    let mut over = image;
    over[third..third + 4].copy_from_slice(&70_000u32.to_ne_bytes());
    std::fs::write(&bus, &over).unwrap();
    let pcap = dir.path().join("over.pcap");
    let out = dumpbus(&["-p", pcap.to_str().unwrap()], &bus);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1 + 2, "two good records");
    assert_eq!(
        text(&out.stderr),
        format!(
            "shmif_dumpbus: {}: warning: stopped at the record at ring offset 0xc0: its length \
             0x11170 is over 64 KiB (NetBSD's shmif_dumpbus aborts there); was the bus written \
             while dumping?\n",
            bus.display()
        )
    );
    assert_eq!(
        std::fs::metadata(&pcap).unwrap().len(),
        24 + 2 * (16 + 60),
        "the pcap holds the two good records and is complete"
    );
}

// ---------------------------------------------------------------------------------------------
// Buses as NetBSD's kernel leaves them, made here without the shmif crate, and the output
// NetBSD's shmif_dumpbus (rev 1.19) gives for them, worked out here too.

/// NetBSD's `BUSMEM_SIZE` and `BUSMEM_DATASIZE`.
const BUSMEM_SIZE: usize = 1 << 20;
const DATASIZE: u32 = 0xfffe0;

/// A frame as `shmif_dumpbus` should report it.
#[derive(Clone, Debug)]
struct Expect {
    payload_off: u32,
    sec: u32,
    usec: u32,
    frame: Vec<u8>,
}

/// What NetBSD's kernel does to a bus, from if_shmem.c (`shmif_snd`, attach) and
/// shmif_busops.c (`shmif_buswrite`, `shmif_advancefirst`, `shmif_nextpktoff`), on a 1 MiB
/// file. `swapped` writes every field in the other byte order, as a kernel on a host of the
/// other endianness would; `hdr_len` is 24 (version 3, LP64) or 12 (version 2).
struct NetbsdKernel {
    mem: Vec<u8>,
    version: u32,
    hdr_len: u32,
    swapped: bool,
    sent: Vec<(u32, Expect)>,
}

impl NetbsdKernel {
    /// A bus right after the first attach: magic, `first` = the "never wrapped" sentinel,
    /// everything else zero, version included (it is set by the first wakeup write).
    fn attach(version: u32, swapped: bool) -> Self {
        let mut k = NetbsdKernel {
            mem: vec![0; BUSMEM_SIZE],
            version,
            hdr_len: if version == 2 { 12 } else { 24 },
            swapped,
            sent: Vec::new(),
        };
        k.put32(0, 0xca11_d054);
        k.put32(16, DATASIZE);
        k
    }

    fn order32(&self, v: u32) -> [u8; 4] {
        if self.swapped {
            v.swap_bytes().to_ne_bytes()
        } else {
            v.to_ne_bytes()
        }
    }

    fn put32(&mut self, at: usize, v: u32) {
        let b = self.order32(v);
        self.mem[at..at + 4].copy_from_slice(&b);
    }

    fn get32(&self, at: usize) -> u32 {
        let v = u32::from_ne_bytes(self.mem[at..at + 4].try_into().unwrap());
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }

    fn gen(&self) -> u64 {
        let v = u64::from_ne_bytes(self.mem[8..16].try_into().unwrap());
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }

    fn first(&self) -> u32 {
        self.get32(16)
    }

    fn last(&self) -> u32 {
        self.get32(20)
    }

    /// `sp_len` of the record header at ring offset `off` (which may be DATASIZE, meaning 0).
    fn len_at(&self, off: u32) -> u32 {
        let b: Vec<u8> = (0..4)
            .map(|i| self.mem[32 + ((off + i) % DATASIZE) as usize])
            .collect();
        let v = u32::from_ne_bytes(b.try_into().unwrap());
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }

    fn nextpktoff(&self, off: u32) -> u32 {
        let n = off + self.hdr_len + self.len_at(off);
        if n >= DATASIZE {
            n - DATASIZE
        } else {
            n
        }
    }

    fn advancefirst(&mut self, off: u32, len: u32) {
        while u64::from(off) <= u64::from(self.first()) + u64::from(self.hdr_len)
            && u64::from(off) + u64::from(len) > u64::from(self.first())
        {
            let next = self.nextpktoff(self.first());
            self.put32(16, next);
        }
    }

    fn buswrite(&mut self, off: u32, data: &[u8], wrap: &mut bool) -> u32 {
        let len = data.len() as u32;
        let chunk = len.min(DATASIZE - off);
        let filled = off + chunk == DATASIZE;
        self.advancefirst(off, chunk + u32::from(filled));
        let at = 32 + off as usize;
        self.mem[at..at + chunk as usize].copy_from_slice(&data[..chunk as usize]);
        if filled {
            *wrap = true;
        }
        if chunk == len {
            return (off + chunk) % DATASIZE;
        }
        self.advancefirst(0, len - chunk);
        self.mem[32..32 + (len - chunk) as usize].copy_from_slice(&data[chunk as usize..]);
        len - chunk
    }

    /// `shmif_snd` of one frame, then the wakeup write of the kernel's version at offset 4.
    fn send(&mut self, frame: &[u8], sec: u32, usec: u32) {
        let seq = self.sent.len() as u32;
        let last = self.nextpktoff(self.last());
        self.put32(20, last);
        let mut hdr = Vec::new();
        hdr.extend_from_slice(&self.order32(frame.len() as u32));
        hdr.extend_from_slice(&self.order32(sec));
        hdr.extend_from_slice(&self.order32(usec));
        if self.hdr_len == 24 {
            // The padding word is whatever was on the kernel stack.
            hdr.extend_from_slice(&(0xdead_0000 | seq).to_ne_bytes());
            hdr.extend_from_slice(&0x0123_4567_89ab_cdefu64.to_ne_bytes());
        }
        let mut wrap = false;
        let payload_off = self.buswrite(last, &hdr, &mut wrap);
        self.buswrite(payload_off, frame, &mut wrap);
        if wrap {
            let gen = self.gen() + 1;
            let b = if self.swapped {
                gen.swap_bytes().to_ne_bytes()
            } else {
                gen.to_ne_bytes()
            };
            self.mem[8..16].copy_from_slice(&b);
        }
        let version = self.version;
        self.put32(4, version);
        self.sent.push((
            last,
            Expect {
                payload_off,
                sec,
                usec,
                frame: frame.to_vec(),
            },
        ));
    }

    /// Frames still on the bus, oldest first: from the record `first` points at (from the
    /// start if the ring never wrapped) to the newest.
    fn live(&self) -> Vec<Expect> {
        let from = if self.first() == DATASIZE {
            0
        } else {
            self.sent
                .iter()
                .rposition(|(off, _)| *off == self.first())
                .expect("first is a record we wrote")
        };
        self.sent[from..].iter().map(|(_, e)| e.clone()).collect()
    }

    fn header_line(&self) -> String {
        format!(
            "bus version {}, lock: 0, generation: {}, firstoff: 0x{:04x}, lastoff: 0x{:04x}",
            self.version,
            self.gen(),
            self.first(),
            self.last()
        )
    }

    /// Sends frames of `len_of(seq)` bytes, with kernel-uptime timestamps, until `until` holds.
    fn send_until(&mut self, len_of: impl Fn(u32) -> usize, until: impl Fn(&Self) -> bool) {
        while !until(self) {
            let seq = self.sent.len() as u32;
            let f = frame([0xb2, 0xa0, 1, 2, 3, 4], len_of(seq), seq);
            self.send(&f, 3600 + seq / 1000, (seq * 7919) % 1_000_000);
        }
    }
}

/// NetBSD's lines for `records` (`packet %d, offset 0x%04x, length 0x%04x, ts %d/%06d`).
fn expected_lines(header: &str, records: &[Expect]) -> String {
    let mut out = format!("{header}\n");
    for (i, r) in records.iter().enumerate() {
        out += &format!(
            "packet {i}, offset 0x{:04x}, length 0x{:04x}, ts {}/{:06}\n",
            r.payload_off,
            r.frame.len(),
            r.sec as i32,
            r.usec as i32
        );
    }
    out
}

/// What libpcap's pcap_dump_open + pcap_dump write on this host: every field native-endian.
fn expected_pcap(records: &[Expect]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&0xa1b2_c3d4u32.to_ne_bytes());
    p.extend_from_slice(&2u16.to_ne_bytes());
    p.extend_from_slice(&4u16.to_ne_bytes());
    p.extend_from_slice(&0i32.to_ne_bytes()); // thiszone
    p.extend_from_slice(&0u32.to_ne_bytes()); // sigfigs
    p.extend_from_slice(&1518u32.to_ne_bytes());
    p.extend_from_slice(&1u32.to_ne_bytes()); // LINKTYPE_ETHERNET
    for r in records {
        p.extend_from_slice(&r.sec.to_ne_bytes());
        p.extend_from_slice(&r.usec.to_ne_bytes());
        p.extend_from_slice(&(r.frame.len() as u32).to_ne_bytes());
        p.extend_from_slice(&(r.frame.len() as u32).to_ne_bytes());
        p.extend_from_slice(&r.frame);
    }
    p
}

/// Runs shmif_dumpbus every way on `image` and checks it against NetBSD's output: the text,
/// the pcap byte for byte (to a file and to stdout), `-h`, and the pcap read by the real
/// tcpdump and tshark. `warning` is the stderr we add where NetBSD would not stop.
fn check_like_netbsd(
    dir: &Path,
    image: &[u8],
    header: &str,
    records: &[Expect],
    warning: Option<&str>,
) {
    let bus = dir.join("netbsd.bus");
    std::fs::write(&bus, image).unwrap();
    let lines = expected_lines(header, records);
    let pcap_bytes = expected_pcap(records);
    let warning = warning
        .map(|w| format!("shmif_dumpbus: {}: warning: {w}\n", bus.display()))
        .unwrap_or_default();

    let out = dumpbus(&[], &bus);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), lines);
    assert_eq!(text(&out.stderr), warning);

    let out = dumpbus(&["-h"], &bus);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), format!("{header}\n"));
    assert_eq!(text(&out.stderr), "");

    let pcap = dir.join("netbsd.pcap");
    let out = dumpbus(&["-p", pcap.to_str().unwrap()], &bus);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), lines);
    assert_eq!(text(&out.stderr), warning);
    let got = std::fs::read(&pcap).unwrap();
    assert!(got == pcap_bytes, "pcap differs from libpcap's bytes");

    // `-p -`: stdout is nothing but the pcap, the text moves to stderr.
    let out = dumpbus(&["-p", "-"], &bus);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout == pcap_bytes, "pcap on stdout differs");
    assert_eq!(text(&out.stderr), format!("{lines}{warning}"));

    if have_tool("tcpdump") {
        let lens: Vec<usize> = records.iter().map(|r| r.frame.len()).collect();
        assert_eq!(tcpdump_lengths(&pcap), lens);
        // tcpdump shows the sender's uptime as the time of day (UTC, -tt: seconds.micros).
        let out = run_ok(
            Command::new("tcpdump")
                .args(["-nn", "-tt", "-r"])
                .arg(&pcap),
        );
        let stamps: Vec<String> = out
            .lines()
            .filter(|l| !l.starts_with(char::is_whitespace))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        let want: Vec<String> = records
            .iter()
            .map(|r| format!("{}.{:06}", r.sec, r.usec))
            .collect();
        assert_eq!(stamps, want);
    }
    if have_tool("tshark") {
        let want: Vec<(usize, Option<u32>)> = records
            .iter()
            .map(|r| {
                let seq = (r.frame.len() >= 18)
                    .then(|| u32::from_be_bytes(r.frame[14..18].try_into().unwrap()));
                (r.frame.len(), seq)
            })
            .collect();
        assert_eq!(tshark_frames(&pcap), want);
    }
}

#[test]
fn fresh_netbsd_bus_written_by_hand_dumps_like_netbsd() {
    // Two frames sent on a fresh 1 MiB bus by an amd64 rump kernel, byte by byte: the zero
    // placeholder record at ring offset 0, the first real record after it at 24, `first` still
    // the "never wrapped" sentinel, `last` at the newest record, version 3 from the wakeup.
    let arp = frame([0xb2, 0xa0, 9, 8, 7, 6], 42, 1);
    let ip = frame([0xb2, 0xa0, 9, 8, 7, 6], 60, 2);
    let mut img = vec![0u8; BUSMEM_SIZE];
    img[0..4].copy_from_slice(&0xca11_d054u32.to_ne_bytes());
    img[4..8].copy_from_slice(&3u32.to_ne_bytes());
    img[16..20].copy_from_slice(&0xfffe0u32.to_ne_bytes());
    img[20..24].copy_from_slice(&90u32.to_ne_bytes());
    let mut at = 32 + 24;
    for (f, sec, usec, pad) in [(&arp, 12u32, 345u32, 0xfeed_f00du32), (&ip, 13, 999_999, 7)] {
        img[at..at + 4].copy_from_slice(&(f.len() as u32).to_ne_bytes());
        img[at + 4..at + 8].copy_from_slice(&sec.to_ne_bytes());
        img[at + 8..at + 12].copy_from_slice(&usec.to_ne_bytes());
        img[at + 12..at + 16].copy_from_slice(&pad.to_ne_bytes());
        img[at + 16..at + 24].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_ne_bytes());
        img[at + 24..at + 24 + f.len()].copy_from_slice(f);
        at += 24 + f.len();
    }
    let records = [
        Expect {
            payload_off: 0x30,
            sec: 12,
            usec: 345,
            frame: arp,
        },
        Expect {
            payload_off: 0x72,
            sec: 13,
            usec: 999_999,
            frame: ip,
        },
    ];
    assert_eq!(
        expected_lines(
            "bus version 3, lock: 0, generation: 0, firstoff: 0xfffe0, lastoff: 0x005a",
            &records
        ),
        "bus version 3, lock: 0, generation: 0, firstoff: 0xfffe0, lastoff: 0x005a\n\
         packet 0, offset 0x0030, length 0x002a, ts 12/000345\n\
         packet 1, offset 0x0072, length 0x003c, ts 13/999999\n"
    );
    let dir = tempfile::tempdir().unwrap();
    check_like_netbsd(
        dir.path(),
        &img,
        "bus version 3, lock: 0, generation: 0, firstoff: 0xfffe0, lastoff: 0x005a",
        &records,
        None,
    );

    // The same two sends through the kernel model give the same image.
    let mut k = NetbsdKernel::attach(3, false);
    k.send(&records[0].frame, 12, 345);
    k.send(&records[1].frame, 13, 999_999);
    for r in [32 + 24 + 12, 32 + 90 + 12] {
        img[r..r + 4].copy_from_slice(&k.mem[r..r + 4]); // padding garbage differs
    }
    assert!(
        k.mem == img,
        "kernel model disagrees with the hand-made image"
    );
}

/// Sends frames on a fresh kernel-model bus until the next record starts exactly `before_end`
/// bytes before the end of the ring; returns the model.
fn fill_to_end(version: u32, swapped: bool, before_end: u32) -> NetbsdKernel {
    let mut k = NetbsdKernel::attach(version, swapped);
    let hdr = k.hdr_len;
    loop {
        let next = k.nextpktoff(k.last());
        let room = DATASIZE - next;
        if room == before_end {
            return k;
        }
        assert!(
            room >= before_end + hdr + 14,
            "cannot land at {before_end} before the end"
        );
        // Land exactly `before_end` bytes before the end: a full-size frame while there is
        // room for one and a frame after it, then whatever length lands there.
        let want = room - before_end - hdr;
        let len = if want > 1514 {
            if want - 1514 - hdr >= 14 {
                1514
            } else {
                1000
            }
        } else {
            want
        };
        let seq = k.sent.len() as u32;
        let f = frame([0xb2, 0xa0, 1, 2, 3, 4], len as usize, seq);
        k.send(&f, 3600 + seq / 1000, (seq * 7919) % 1_000_000);
    }
}

#[test]
fn wrapped_netbsd_ring_with_a_header_across_the_end_dumps_like_netbsd() {
    // The next header starts 10 bytes before the end: 10 of its bytes there, 14 at offset 0.
    let mut k = fill_to_end(3, false, 10);
    let straddler = k.sent.len();
    k.send_until(|_| 200, |k| k.sent.len() == straddler + 1);
    assert_eq!(
        k.sent[straddler].0,
        DATASIZE - 10,
        "header split across the end"
    );
    assert_eq!(k.sent[straddler].1.payload_off, 14);
    // Five more: the newest sits in the middle of the ring, well clear of the end.
    k.send_until(
        |seq| 60 + seq as usize % 900,
        |k| k.sent.len() == straddler + 6,
    );
    assert_eq!(k.gen(), 1);
    assert!(
        k.last() < k.first(),
        "wrapped: last {} first {}",
        k.last(),
        k.first()
    );
    let live = k.live();
    assert!(live.len() > 600, "{}", live.len());
    let dir = tempfile::tempdir().unwrap();
    check_like_netbsd(dir.path(), &k.mem, &k.header_line(), &live, None);
}

#[test]
fn version_2_bus_with_a_frame_across_the_end_dumps_like_netbsd() {
    // Pre-2014 kernels: 12-byte record headers, and their wakeup writes version 2. The next
    // header fits before the end, its frame does not.
    let mut k = fill_to_end(2, false, 100);
    let straddler = k.sent.len();
    k.send_until(|_| 500, |k| k.sent.len() == straddler + 4);
    assert_eq!(k.sent[straddler].1.payload_off, DATASIZE - 88);
    assert_eq!(k.gen(), 1);
    assert!(k
        .header_line()
        .starts_with("bus version 2, lock: 0, generation: 1,"));
    let dir = tempfile::tempdir().unwrap();
    check_like_netbsd(dir.path(), &k.mem, &k.header_line(), &k.live(), None);
}

#[test]
fn byte_swapped_buses_dump_like_netbsd() {
    // Written by a kernel of the other byte order: the header line and the records read right,
    // the pcap is still in our order, the frames untouched.
    let dir = tempfile::tempdir().unwrap();
    let mut k = fill_to_end(3, true, 5);
    k.send_until(|seq| 14 + seq as usize % 1501, |k| k.last() < 5000);
    assert_eq!(k.gen(), 1);
    let raw_first = u32::from_ne_bytes(k.mem[16..20].try_into().unwrap());
    assert_eq!(
        raw_first.swap_bytes(),
        k.first(),
        "fields are stored swapped"
    );
    check_like_netbsd(dir.path(), &k.mem, &k.header_line(), &k.live(), None);

    let mut k = NetbsdKernel::attach(2, true);
    k.send_until(|seq| 14 + seq as usize * 100, |k| k.sent.len() == 15);
    check_like_netbsd(dir.path(), &k.mem, &k.header_line(), &k.live(), None);
}

#[test]
fn newest_record_ending_at_the_ring_end_is_dumped_once_where_netbsd_loops() {
    // The newest frame fills the ring to the last byte. The kernel then moves `first` off the
    // sentinel, past the zero placeholder at 0, to 24. NetBSD's walk reads 24..end, wraps to 0,
    // skips the placeholder and is back at 24: it prints the same records forever. We print
    // them once, then say so.
    let mut k = fill_to_end(3, false, 24 + 100);
    let n = k.sent.len();
    k.send_until(|_| 100, |k| k.sent.len() == n + 1);
    assert_eq!(
        k.nextpktoff(k.last()),
        0,
        "the newest record ends at the end"
    );
    assert_eq!((k.gen(), k.first()), (1, 24));
    let live = k.live();
    assert_eq!(live.len(), k.sent.len(), "nothing was overwritten");
    let dir = tempfile::tempdir().unwrap();
    check_like_netbsd(
        dir.path(),
        &k.mem,
        &k.header_line(),
        &live,
        Some(&format!(
            "stopped when the walk came back to ring offset 0x18 (lastoff {:#x}): NetBSD's \
             shmif_dumpbus would repeat the records from there forever",
            k.last()
        )),
    );
}

#[test]
fn odd_header_fields_print_as_cs_signed_formats() {
    // NetBSD prints lock, seconds and microseconds with %d: values above i32::MAX come out
    // negative, microseconds are not range-checked. pcap_dump stores the raw 32 bits; our pcap
    // writer (pcap_file) carries a million microseconds or more into the seconds: the one
    // place our pcap differs, and only for a timestamp no sender makes.
    let mut img = vec![0u8; BUSMEM_SIZE];
    img[0..4].copy_from_slice(&0xca11_d054u32.to_ne_bytes());
    img[4..8].copy_from_slice(&3u32.to_ne_bytes());
    img[8..16].copy_from_slice(&u64::MAX.to_ne_bytes());
    img[16..20].copy_from_slice(&0xfffe0u32.to_ne_bytes());
    img[20..24].copy_from_slice(&24u32.to_ne_bytes());
    img[24..28].copy_from_slice(&u32::MAX.to_ne_bytes());
    let f = frame([2, 0, 0, 0, 0, 1], 14, 0);
    let r = 32 + 24;
    img[r..r + 4].copy_from_slice(&14u32.to_ne_bytes());
    img[r + 4..r + 8].copy_from_slice(&0x8000_0000u32.to_ne_bytes());
    img[r + 8..r + 12].copy_from_slice(&1_234_567u32.to_ne_bytes());
    img[r + 24..r + 38].copy_from_slice(&f);
    let dir = tempfile::tempdir().unwrap();
    let bus = dir.path().join("odd");
    std::fs::write(&bus, &img).unwrap();
    let out = dumpbus(&[], &bus);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "bus version 3, lock: -1, generation: 18446744073709551615, firstoff: 0xfffe0, \
         lastoff: 0x0018\n\
         packet 0, offset 0x0030, length 0x000e, ts -2147483648/1234567\n"
    );
    let out = dumpbus(&["-p", "-"], &bus);
    assert!(out.status.success());
    let records = [Expect {
        payload_off: 0x30,
        sec: 0x8000_0001,
        usec: 234_567,
        frame: f,
    }];
    assert!(out.stdout == expected_pcap(&records));
}

#[test]
fn newest_record_across_the_end_is_followed_into_stale_bytes_like_netbsd() {
    // The newest frame starts before the end of the ring and ends at offset `tail`. NetBSD's
    // walk does not stop after it (`tail` <= lastoff) and reads a "header" out of what is left
    // of the older frame the newest one overwrote: four fill bytes, a length far over 64 KiB,
    // where NetBSD aborts. We stop there with a warning, after every live record.
    let mut k = fill_to_end(3, false, 300);
    let n = k.sent.len();
    k.send_until(|_| 1000, |k| k.sent.len() == n + 1);
    let tail = k.nextpktoff(k.last());
    assert!(
        tail < k.first() && tail < k.last(),
        "the newest record wrapped"
    );
    assert_eq!(k.gen(), 1);
    let stale = k.len_at(tail);
    let fill = stale.to_ne_bytes()[0];
    assert!(
        fill != 0 && stale == u32::from_ne_bytes([fill; 4]),
        "{stale:#x}"
    );
    let dir = tempfile::tempdir().unwrap();
    check_like_netbsd(
        dir.path(),
        &k.mem,
        &k.header_line(),
        &k.live(),
        Some(&format!(
            "stopped at ring offset {tail:#x}, after the newest record: the stale bytes there \
             claim {stale:#x} bytes, over 64 KiB (NetBSD's shmif_dumpbus walks on into them \
             when the newest record crosses the end of the ring, and aborts there)"
        )),
    );
}
