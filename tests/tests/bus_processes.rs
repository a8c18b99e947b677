//! The bus between separate processes: exchange, stress, lapping, a lock holder killed with
//! SIGKILL.

mod common;

use common::{field, Peer};

fn bus_path(dir: &tempfile::TempDir) -> String {
    dir.path().join("bus").to_str().unwrap().to_string()
}

#[test]
fn processes_exchange_every_frame_size() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_path(&dir);
    // 8 MiB: all three senders' frames fit, so nothing may be lost and every size must arrive.
    let size = (8u64 << 20).to_string();
    let mut receivers: Vec<Peer> = (0..2)
        .map(|_| Peer::start(&["--bus", &bus, "--size", &size, "recv"]))
        .collect();
    let count = (1514 - 14 + 1).to_string();
    let mut senders: Vec<Peer> = (0..3)
        .map(|id| {
            let id = id.to_string();
            Peer::start(&[
                "--bus",
                &bus,
                "--size",
                &size,
                "send",
                "--id",
                &id,
                "--count",
                &count,
                "--min-len",
                "14",
                "--sweep",
            ])
        })
        .collect();
    for s in &mut senders {
        s.say("go");
    }
    let sent: u64 = senders
        .into_iter()
        .map(|s| field(&s.finish(), "sent"))
        .sum();
    assert_eq!(sent, 3 * 1501);
    for r in receivers.drain(..) {
        let report = r.finish();
        assert_eq!(field(&report, "delivered"), sent, "{report}");
        assert_eq!(field(&report, "torn"), 0, "{report}");
        assert_eq!(field(&report, "lost"), 0, "{report}");
        assert_eq!(
            field(&report, "distinct_lens"),
            1501,
            "every size 14..=1514: {report}"
        );
    }
}

const DEFAULT_SIZE: &str = "8388608";

#[test]
fn stressed_bus_delivers_no_torn_frames_and_accounts_for_every_loss() {
    stress(&[], 40_000, 0);
}

#[test]
fn stressed_netbsd_mode_bus_delivers_no_torn_frames_and_accounts_for_every_loss() {
    stress(&["--compat"], 10_000, 0);
}

#[test]
fn stressed_1mib_bus_with_netbsd_writers_turns_netbsd_and_accounts_for_every_frame() {
    // One, then two, of the four writers write as a NetBSD kernel: the bus switches to NetBSD
    // mode and their frames are delivered like ours.
    stress(&[], 10_000, 1);
    stress(&[], 10_000, 2);
}

#[test]
fn stressed_default_bus_with_netbsd_style_writers_skips_and_counts_their_records() {
    // The same on an 8 MiB bus, which no NetBSD kernel can share: their records are foreign.
    stress(&["--size", DEFAULT_SIZE], 10_000, 1);
    stress(&["--size", DEFAULT_SIZE], 10_000, 2);
}

/// 4 writer and 3 reader processes (two ports, one passive reader); the first `netbsd_writers`
/// writers write NetBSD-style. Every frame is delivered at most once and untorn, and per reader
/// delivered + lost + foreign = sent.
fn stress(mode: &[&str], per_writer: u64, netbsd_writers: u32) {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_path(&dir);
    let start = |rest: &[&str]| {
        let mut args = vec!["--bus", bus.as_str()];
        args.extend_from_slice(mode);
        args.extend_from_slice(rest);
        Peer::start(&args)
    };
    let mut receivers = vec![
        start(&["recv"]),
        start(&["recv"]),
        start(&["recv", "--passive"]),
    ];
    let count = per_writer.to_string();
    let mut senders: Vec<Peer> = (0..4)
        .map(|id| {
            let batch = if id % 2 == 0 { "1" } else { "16" };
            let id_s = id.to_string();
            let mut args = vec!["send", "--id", &id_s, "--count", &count, "--batch", batch];
            if id < netbsd_writers {
                // On a bigger bus, keep its size (a real NetBSD kernel would truncate it).
                args.extend_from_slice(&["--netbsd-style", "--keep-size"]);
            }
            start(&args)
        })
        .collect();
    for s in &mut senders {
        s.say("go");
    }
    let sent: u64 = senders
        .into_iter()
        .map(|s| field(&s.finish(), "sent"))
        .sum();
    assert_eq!(sent, 4 * per_writer);
    let big = mode.contains(&DEFAULT_SIZE);
    for r in receivers.drain(..) {
        let report = r.finish();
        eprintln!("receiver ({netbsd_writers} NetBSD writers, {mode:?}): {report}");
        assert_eq!(field(&report, "torn"), 0, "torn frames delivered: {report}");
        assert_eq!(field(&report, "out_of_order"), 0, "{report}");
        assert_eq!(field(&report, "corrupt"), 0, "{report}");
        assert_eq!(field(&report, "uncounted_resyncs"), 0, "{report}");
        let netbsd_mode = report["netbsd_mode"].as_bool().unwrap();
        assert_eq!(
            netbsd_mode,
            mode.contains(&"--compat") || (netbsd_writers > 0 && !big),
            "{report}"
        );
        if big || netbsd_writers == 0 {
            // Delivered frames are exactly the shmlab writers' that were not lost.
            assert!(
                field(&report, "foreign") <= netbsd_writers as u64 * per_writer,
                "{report}"
            );
        } else {
            assert_eq!(field(&report, "foreign"), 0, "{report}");
        }
        assert_eq!(
            field(&report, "delivered") + field(&report, "lost") + field(&report, "foreign"),
            sent,
            "delivered + lost + foreign must equal sent: {report}"
        );
    }
}

#[test]
fn killed_lock_holder_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_path(&dir);
    let receiver = Peer::start(&["--bus", &bus, "recv"]);
    let passive = Peer::start(&["--bus", &bus, "recv", "--passive"]);
    // Attached first: attaching takes the lock too.
    let mut sender = Peer::start(&[
        "--bus",
        &bus,
        "send",
        "--id",
        "1",
        "--count",
        "2000",
        "--pause-us",
        "100",
    ]);
    let mut parked = Peer::start(&["--bus", &bus, "park"]);
    parked.expect_line("parked");
    sender.say("go");
    // The sender is now stuck behind the parked holder, which still lives: never broken.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let held = std::fs::read(&bus).unwrap();
    assert_eq!(
        u32::from_ne_bytes(held[24..28].try_into().unwrap()),
        1,
        "lock held"
    );
    parked.kill();
    let report = sender.finish();
    assert_eq!(field(&report, "sent"), 2000);
    let mut recoveries = field(&report, "lock_recoveries");
    for r in [receiver, passive] {
        let report = r.finish();
        recoveries += field(&report, "lock_recoveries");
        // The half-written record of the dead holder is never delivered.
        assert_eq!(field(&report, "torn"), 0, "{report}");
        assert_eq!(
            field(&report, "delivered") + field(&report, "lost"),
            2000,
            "{report}"
        );
    }
    // Exactly one process took the dead holder's lock over (whichever waiter won).
    assert_eq!(recoveries, 1);
}

#[test]
fn foreign_holder_that_never_releases_is_broken() {
    // A NetBSD peer records no pid: a lock held with no header change at all is taken over.
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_path(&dir);
    let receiver = Peer::start(&["--bus", &bus, "recv"]);
    let file = std::fs::OpenOptions::new().write(true).open(&bus).unwrap();
    std::os::unix::fs::FileExt::write_at(&file, &1u32.to_ne_bytes(), 24).unwrap();
    let mut sender = Peer::start(&["--bus", &bus, "send", "--id", "1", "--count", "100"]);
    sender.say("go");
    let report = sender.finish();
    assert_eq!(field(&report, "sent"), 100);
    let recoveries = field(&report, "lock_recoveries");
    let report = receiver.finish();
    assert_eq!(field(&report, "delivered"), 100, "{report}");
    assert_eq!(recoveries + field(&report, "lock_recoveries"), 1);
}
