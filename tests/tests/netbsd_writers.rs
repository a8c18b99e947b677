//! The bus with writers that are not ours: records written exactly as a NetBSD rump kernel's
//! `shmif_snd` writes them (`shmif::netbsd_emu`: garbage in the padding word, `last` moved
//! before the record is stored, no futex wake), between and around shmlab frames. Each case is
//! one of the reproductions that led to the bus mode and record numbering (FORMAT.md).

use std::time::Duration;

use shmif::netbsd_emu::{NetbsdIf, Padding};
use shmif::{Bus, BusConfig, Port, Reader, Received};

const MIB: u64 = 1 << 20;

/// A broadcast frame tagged with a letter and a number, so a reader's sequence can be spelled.
fn tagged(src: [u8; 6], tag: u8, n: u8) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14] = tag;
    f[15] = n;
    f
}

fn spell(f: &[u8]) -> String {
    format!("{}{}", f[14] as char, f[15])
}

/// Everything a receive function hands out now, spelled.
fn drain(recv: &mut dyn FnMut(&mut [u8]) -> Option<Received>) -> Vec<String> {
    let mut buf = [0u8; 2048];
    let mut got = Vec::new();
    // Bounded: the bug this guards against delivered one frame millions of times.
    for _ in 0..1000 {
        match recv(&mut buf) {
            Some(r) => got.push(spell(&buf[..r.len])),
            None => break,
        }
    }
    got
}

/// Three shmlab frames, three NetBSD ones, three shmlab ones, read by a port and a passive
/// reader attached before any of them.
fn nine_frames(config: &BusConfig, padding: Padding, keep_size: bool) -> (Bus9, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus");
    let bus = Bus::attach(&path, config).unwrap();
    let mut port = bus.port();
    let mut reader = bus.reader();
    let sender = bus.port();
    let mut nbsd = if keep_size {
        NetbsdIf::attach_any_size(&path).unwrap()
    } else {
        NetbsdIf::attach(&path).unwrap()
    };
    nbsd.set_padding(padding);
    for n in 0..3 {
        sender.send(&tagged(sender.mac(), b'S', n)).unwrap();
    }
    for n in 0..3 {
        nbsd.send(&[&tagged(nbsd.mac(), b'N', n)]).unwrap();
    }
    for n in 3..6 {
        sender.send(&tagged(sender.mac(), b'S', n)).unwrap();
    }
    let from_port = drain(&mut |b| port.try_recv(b));
    let from_reader = drain(&mut |b| reader.try_recv(b));
    // NetBSD hears every shmlab frame once, and none of its own.
    let mut heard = Vec::new();
    while let Some(f) = nbsd.recv(Duration::from_millis(20)) {
        heard.push(spell(&f));
    }
    (
        Bus9 {
            port,
            reader,
            from_port,
            from_reader,
            bus,
            _dir: dir,
        },
        heard,
    )
}

struct Bus9 {
    port: Port,
    reader: Reader,
    from_port: Vec<String>,
    from_reader: Vec<String>,
    bus: std::sync::Arc<Bus>,
    _dir: tempfile::TempDir,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

const PADDINGS: [Padding; 4] = [
    Padding::Random,
    Padding::Fixed(0),
    Padding::Fixed(0xffff_ffff),
    // Garbage that looks exactly like the numbers a shmlab reader expects next.
    Padding::Counting(4),
];

#[test]
fn netbsd_frames_on_a_1mib_bus_switch_it_to_netbsd_mode_and_all_nine_arrive_once() {
    for padding in PADDINGS {
        let config = BusConfig {
            size: MIB,
            ..BusConfig::default()
        };
        let (b, heard) = nine_frames(&config, padding, false);
        let all = words("S0 S1 S2 N0 N1 N2 S3 S4 S5");
        assert_eq!(b.from_port, all, "port, padding {padding:?}");
        assert_eq!(b.from_reader, all, "passive reader, padding {padding:?}");
        assert!(b.bus.netbsd_mode(), "padding {padding:?}");
        for s in [b.port.stats(), b.reader.stats()] {
            assert_eq!(
                (s.lost, s.corrupt, s.foreign, s.resyncs),
                (0, 0, 0, 0),
                "padding {padding:?}: {s:?}"
            );
        }
        assert_eq!(heard, words("S0 S1 S2 S3 S4 S5"), "padding {padding:?}");
    }
}

#[test]
fn on_a_bus_made_for_netbsd_all_nine_arrive_once() {
    for padding in PADDINGS {
        let (b, heard) = nine_frames(&BusConfig::netbsd(), padding, false);
        let all = words("S0 S1 S2 N0 N1 N2 S3 S4 S5");
        assert_eq!(b.from_port, all, "padding {padding:?}");
        assert_eq!(b.from_reader, all, "padding {padding:?}");
        assert_eq!(heard, words("S0 S1 S2 S3 S4 S5"), "padding {padding:?}");
    }
}

#[test]
fn netbsd_style_records_on_a_default_bus_are_counted_foreign_and_never_delivered() {
    // No NetBSD kernel can share an 8 MiB bus, so such records are foreign there.
    for padding in PADDINGS {
        let (b, _) = nine_frames(&BusConfig::default(), padding, true);
        let ours = words("S0 S1 S2 S3 S4 S5");
        assert_eq!(b.from_port, ours, "port, padding {padding:?}");
        assert_eq!(b.from_reader, ours, "passive reader, padding {padding:?}");
        assert!(!b.bus.netbsd_mode());
        for s in [b.port.stats(), b.reader.stats()] {
            assert_eq!(s.foreign, 3, "padding {padding:?}: {s:?}");
            assert_eq!((s.lost, s.corrupt), (0, 0), "padding {padding:?}: {s:?}");
            assert_eq!(s.received, 6, "padding {padding:?}: {s:?}");
        }
    }
}

#[test]
fn a_reader_attached_to_a_bus_netbsd_made_sees_its_frames() {
    // The rump kernel created the bus (version 0 until its first send) and a node attaches.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus");
    let mut nbsd = NetbsdIf::attach(&path).unwrap();
    assert_eq!(nbsd.header().version, 0);
    let bus = Bus::attach(&path, &BusConfig::default()).unwrap();
    assert!(bus.netbsd_mode(), "a NetBSD-made bus is known as one");
    let mut port = bus.port();
    let mut reader = bus.reader();
    nbsd.send(&[&tagged(nbsd.mac(), b'N', 0)]).unwrap();
    let mut buf = [0u8; 2048];
    let got = port
        .recv(&mut buf, Duration::from_secs(2))
        .expect("woken by NetBSD's pwrite");
    assert_eq!(spell(&buf[..got.len]), "N0");
    assert_eq!(drain(&mut |b| reader.try_recv(b)), words("N0"));
    // And NetBSD hears us, woken by our pwrite.
    port.send(&tagged(port.mac(), b'S', 0)).unwrap();
    let f = nbsd
        .recv(Duration::from_secs(2))
        .expect("NetBSD woken by our wakeup");
    assert_eq!(spell(&f), "S0");
}

#[test]
fn a_live_netbsd_holder_keeps_its_lock_and_our_send_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus");
    let bus = Bus::attach(&path, &BusConfig::netbsd()).unwrap();
    let port = bus.port();
    let nbsd = NetbsdIf::attach(&path).unwrap();
    let holder = std::thread::spawn(move || nbsd.hold_lock_for(Duration::from_millis(300)));
    std::thread::sleep(Duration::from_millis(20));
    let t = std::time::Instant::now();
    port.send(&tagged(port.mac(), b'S', 0)).unwrap();
    let waited = t.elapsed();
    assert_eq!(
        holder.join().unwrap(),
        1,
        "NetBSD's unlock found its own lock"
    );
    assert_eq!(port.stats().lock_recoveries, 0);
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
}
