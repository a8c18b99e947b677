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
/// is room), so a dump can be checked for which frames it holds and in what order.
fn frame(src: [u8; 6], len: usize, seq: u32) -> Vec<u8> {
    let mut f = vec![(seq % 251) as u8; len];
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
