//! The bus format pinned byte for byte, hand-made images read back, and bad files refused.

use std::time::Duration;

use shmif::dump;
use shmif::format::{MAGIC, RECORD_HEADER_SIZE};
use shmif::{Bus, BusConfig, BusError};

const SIZE: usize = 1 << 20;
const DATA: usize = SIZE - 32;

fn put_u32(img: &mut [u8], off: usize, v: u32) {
    img[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

/// Writes `bytes` into the ring part of `img` at ring offset `off`, wrapping at the end.
fn put_ring(img: &mut [u8], off: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        img[32 + (off + i) % DATA] = *b;
    }
}

fn record(len: u32, seq: u32, sender: u64, fill: u8) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&len.to_ne_bytes());
    r.extend_from_slice(&1_700_000_000u32.to_ne_bytes());
    r.extend_from_slice(&(seq * 10).to_ne_bytes());
    r.extend_from_slice(&seq.to_ne_bytes());
    r.extend_from_slice(&sender.to_ne_bytes());
    let mut frame = vec![fill; len as usize];
    if len >= 6 {
        frame[..6].copy_from_slice(&[0xff; 6]);
    }
    r.extend_from_slice(&frame);
    r
}

/// A sender id as shmlab writers make them (their records' numbers are believed).
fn shmlab_id() -> u64 {
    shmif::format::shmlab_sender(0xabc)
}

struct Golden {
    image: Vec<u8>,
    /// (ring offset of the record, length, fill byte)
    records: Vec<(usize, u32, u8)>,
}

/// A wrapped ring laid out by hand from FORMAT.md: generation 1, the third record's header
/// split across the end of the ring (10 bytes before, 14 after), stale bytes outside the
/// live span.
fn golden() -> Golden {
    golden_from(shmlab_id())
}

fn golden_from(sender: u64) -> Golden {
    let mut image = vec![0xeeu8; SIZE];
    put_u32(&mut image, 0, MAGIC);
    put_u32(&mut image, 4, 3);
    image[8..16].copy_from_slice(&1u64.to_ne_bytes());
    put_u32(&mut image, 24, 0);
    put_u32(&mut image, 28, 0);
    let layout = [
        (DATA - 200, 60u32, 0x11u8),
        (DATA - 116, 82, 0x22),
        (DATA - 10, 50, 0x33),
        (64, 42, 0x44),
    ];
    for (i, (off, len, fill)) in layout.iter().enumerate() {
        put_ring(&mut image, *off, &record(*len, 7 + i as u32, sender, *fill));
    }
    put_u32(&mut image, 16, (DATA - 200) as u32); // first
    put_u32(&mut image, 20, 64); // last
    Golden {
        image,
        records: layout.to_vec(),
    }
}

#[test]
fn hand_made_wrapped_image_is_walked_like_shmif_dumpbus() {
    let g = golden();
    let d = dump::parse(&g.image).unwrap();
    assert_eq!(
        d.header.line(),
        "bus version 3, lock: 0, generation: 1, firstoff: 0xfffe0-200, lastoff: 0x0040"
            .replace("0xfffe0-200", &format!("0x{:04x}", DATA - 200))
    );
    assert_eq!(d.corrupt, 0);
    assert_eq!(d.records.len(), 4);
    for (rec, (off, len, fill)) in d.records.iter().zip(&g.records) {
        assert_eq!(
            rec.payload_offset as usize,
            (off + RECORD_HEADER_SIZE) % DATA
        );
        assert_eq!(rec.frame.len(), *len as usize);
        assert!(rec.frame[6..].iter().all(|b| b == fill));
        assert_eq!(rec.sender, Some(shmlab_id()));
    }
}

#[test]
fn hand_made_image_attaches_and_reads_back_then_takes_our_next_record() {
    let g = golden();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus");
    std::fs::write(&path, &g.image).unwrap();
    let bus = Bus::attach(&path, &BusConfig::default()).unwrap();
    let mut reader = bus.reader();
    reader.rewind_to_oldest();
    let mut buf = [0u8; 2048];
    for (_, len, fill) in &g.records {
        let got = reader.try_recv(&mut buf).expect("record");
        assert_eq!(got.len, *len as usize);
        assert_eq!(buf[got.len - 1], *fill);
        assert_eq!(got.sec, 1_700_000_000);
    }
    assert!(reader.try_recv(&mut buf).is_none());
    assert_eq!(reader.stats().corrupt, 0);
    // Our next record goes right after the newest one (64 + 24 + 42), numbered after it.
    let port = bus.port();
    port.send(&[0x55u8; 60]).unwrap();
    let img = std::fs::read(&path).unwrap();
    let at = 32 + 130;
    assert_eq!(u32::from_ne_bytes(img[at..at + 4].try_into().unwrap()), 60);
    assert_eq!(
        u32::from_ne_bytes(img[at + 12..at + 16].try_into().unwrap()),
        11
    );
    assert_eq!(
        u64::from_ne_bytes(img[at + 16..at + 24].try_into().unwrap()),
        port.sender_id()
    );
    assert_eq!(
        u32::from_ne_bytes(img[20..24].try_into().unwrap()),
        130,
        "lastoff"
    );
    let got = reader.recv(&mut buf, Duration::from_secs(1)).unwrap();
    assert_eq!(got.len, 60);
}

#[test]
fn image_written_by_another_writer_puts_the_bus_in_netbsd_mode_and_reads_back() {
    // The same records with a NetBSD kernel's random sender id: a foreign writer was here.
    let g = golden_from(0xabc);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus");
    std::fs::write(&path, &g.image).unwrap();
    let bus = Bus::attach(&path, &BusConfig::default()).unwrap();
    assert!(bus.netbsd_mode(), "a 1 MiB bus with NetBSD frames on it");
    let mut reader = bus.reader();
    reader.rewind_to_oldest();
    let mut buf = [0u8; 2048];
    for (_, len, _) in &g.records {
        assert_eq!(
            reader.try_recv(&mut buf).expect("record").len,
            *len as usize
        );
    }
    assert!(reader.try_recv(&mut buf).is_none());
    let s = reader.stats();
    assert_eq!((s.foreign, s.corrupt, s.lost), (0, 0, 0), "{s:?}");
    // Another attacher learns the mode from the bus itself.
    assert!(Bus::attach(&path, &BusConfig::default())
        .unwrap()
        .netbsd_mode());
}

#[test]
fn bus_we_write_matches_the_format_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus");
    let bus = Bus::attach(&path, &BusConfig::netbsd()).unwrap();
    let port = bus.port();
    let arp = [0x42u8; 42];
    port.send(&arp).unwrap();
    port.send(&arp[..14]).unwrap();
    let img = std::fs::read(&path).unwrap();
    assert_eq!(img.len(), SIZE);
    let u32_at = |o: usize| u32::from_ne_bytes(img[o..o + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0xca11_d054, "magic");
    assert_eq!(u32_at(4), 3, "version");
    assert_eq!(u64::from_ne_bytes(img[8..16].try_into().unwrap()), 0, "gen");
    assert_eq!(u32_at(16), DATA as u32, "first: never-wrapped sentinel");
    assert_eq!(u32_at(20), 24 + 24 + 42, "last: start of the newest record");
    assert_eq!(u32_at(24), 0, "lock free");
    // Placeholder record at 0, then ours at 24 (NetBSD's fresh-bus layout).
    assert_eq!(&img[32..32 + 24], &[0u8; 24]);
    let r = 32 + 24;
    assert_eq!(u32_at(r), 42);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(u32_at(r + 4).abs_diff(now) < 5, "wall-clock seconds");
    assert!(u32_at(r + 8) < 1_000_000, "microseconds");
    assert_eq!(u32_at(r + 12), 1, "sequence in the padding word");
    assert_eq!(
        u64::from_ne_bytes(img[r + 16..r + 24].try_into().unwrap()),
        port.sender_id()
    );
    assert_eq!(&img[r + 24..r + 24 + 42], &arp);
    let r2 = r + 24 + 42;
    assert_eq!(u32_at(r2), 14);
    assert_eq!(u32_at(r2 + 12), 2);
    // MAC is b2:a0 + the first four bytes of the sender id.
    let mac = port.mac();
    assert_eq!(&mac[..2], &[0xb2, 0xa0]);
    assert_eq!(&mac[2..], &port.sender_id().to_ne_bytes()[..4]);
    let d = dump::parse(&img).unwrap();
    assert_eq!(
        d.header.line(),
        "bus version 3, lock: 0, generation: 0, firstoff: 0xfffe0, lastoff: 0x005a"
    );
}

fn write_bus(dir: &tempfile::TempDir, edit: impl FnOnce(&mut Vec<u8>)) -> std::path::PathBuf {
    let path = dir.path().join("bad");
    let mut g = golden().image;
    edit(&mut g);
    std::fs::write(&path, &g).unwrap();
    path
}

fn attach_err(path: &std::path::Path) -> String {
    let e = Bus::attach(path, &BusConfig::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(path.to_str().unwrap()),
        "names the file: {msg}"
    );
    msg
}

#[test]
fn bad_files_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_bus(&dir, |img| put_u32(img, 0, 0xdead_beef));
    assert!(attach_err(&p).contains("bad magic 0xdeadbeef"));
    assert!(matches!(
        Bus::attach(&p, &BusConfig::default()),
        Err(BusError::BadMagic { .. })
    ));
    let p = write_bus(&dir, |img| img.truncate(4096));
    assert!(attach_err(&p).contains("4096 bytes, below the minimum"));
    let p = write_bus(&dir, |img| put_u32(img, 20, DATA as u32 + 5));
    assert!(attach_err(&p).contains("lastoff"));
    let p = write_bus(&dir, |img| put_u32(img, 16, DATA as u32 + 100));
    assert!(attach_err(&p).contains("firstoff"));
    let p = write_bus(&dir, |img| put_ring(img, 64, &60000u32.to_ne_bytes()));
    assert!(attach_err(&p).contains("length 60000"));
    let p = write_bus(&dir, |img| put_u32(img, 4, 2));
    assert!(attach_err(&p).contains("version 2"));
    // The dump tool refuses the same files with NetBSD's words.
    let img = std::fs::read(dir.path().join("bad")).unwrap();
    assert_eq!(
        dump::parse(&img).map(|_| ()),
        Ok(()),
        "version 2 is dumpable"
    );
    let mut bad = golden().image;
    put_u32(&mut bad, 0, 0x1234);
    assert_eq!(
        dump::parse(&bad).unwrap_err().to_string(),
        "not a shmif bus: bad magic 0x1234 != 0xca11d054"
    );
    assert!(matches!(
        dump::parse(&golden().image[..50]),
        Err(dump::DumpError::Truncated(50))
    ));
}

#[test]
fn corrupt_records_inside_the_ring_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    // Second record claims 60000 bytes; a runt (len 5) replaces the third. The newest is fine.
    let path = write_bus(&dir, |img| {
        put_ring(img, DATA - 116, &60000u32.to_ne_bytes());
    });
    let bus = Bus::attach(&path, &BusConfig::default()).unwrap();
    let mut reader = bus.reader();
    reader.rewind_to_oldest();
    let mut buf = [0u8; 2048];
    let first = reader.try_recv(&mut buf).expect("first record is intact");
    assert_eq!(first.len, 60);
    assert!(reader.try_recv(&mut buf).is_none());
    assert_eq!(reader.stats().corrupt, 1);
    let d = dump::parse(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!((d.records.len(), d.corrupt), (1, 1));
    // The bus keeps working for everyone.
    let a = bus.port();
    let mut b = bus.port();
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&b.mac());
    a.send(&frame).unwrap();
    assert_eq!(b.recv(&mut buf, Duration::from_secs(1)).unwrap().len, 60);

    let path = write_bus(&dir, |img| put_ring(img, DATA - 10, &5u32.to_ne_bytes()));
    let bus = Bus::attach(&path, &BusConfig::default()).unwrap();
    let mut reader = bus.reader();
    reader.rewind_to_oldest();
    let mut lens = Vec::new();
    while let Some(r) = reader.try_recv(&mut buf) {
        lens.push(r.len);
    }
    // The runt's declared length (5) no longer matches the bytes, so the walk stops after it;
    // what matters is that nothing bogus is delivered and both problems are counted.
    assert_eq!(lens[..2], [60, 82]);
    assert!(reader.stats().corrupt >= 1);
}

#[test]
fn oversize_and_runt_frames_are_refused_on_send() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::attach(dir.path().join("bus"), &BusConfig::default()).unwrap();
    let port = bus.port();
    assert_eq!(
        port.send(&[0u8; 1515]).unwrap_err().to_string(),
        "frame of 1515 bytes exceeds the bus maximum of 1514 bytes"
    );
    assert!(port.send(&[0u8; 13]).is_err());
    assert!(port.send_batch(&[&[0u8; 60], &[0u8; 2000]]).is_err());
    assert_eq!(port.stats().sent, 0, "a bad batch sends nothing");
}

#[test]
fn lapped_reader_reports_exact_loss() {
    lapped_reader_case(false);
}

#[test]
fn lapped_reader_reports_exact_loss_on_a_netbsd_mode_bus() {
    lapped_reader_case(true);
}

fn lapped_reader_case(netbsd: bool) {
    let dir = tempfile::tempdir().unwrap();
    let config = BusConfig {
        netbsd,
        ..BusConfig::netbsd()
    };
    let bus = Bus::attach(dir.path().join("bus"), &config).unwrap();
    let a = bus.port();
    let mut b = bus.port();
    let total = 30_000u32;
    for seq in 0..total {
        let mut f = [0u8; 100];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[20..24].copy_from_slice(&seq.to_le_bytes());
        a.send(&f).unwrap();
    }
    let mut buf = [0u8; 2048];
    let mut seqs = Vec::new();
    while let Some(r) = b.try_recv(&mut buf) {
        assert_eq!(r.len, 100);
        seqs.push(u32::from_le_bytes(buf[20..24].try_into().unwrap()));
    }
    let s = b.stats();
    // 124-byte records: the 1 MiB ring holds the last ~8456 of them; a lapped reader restarts
    // in the newer half, away from where writers store next.
    assert_eq!(bus.netbsd_mode(), netbsd);
    assert!(seqs.len() > 4000 && seqs.len() < 4300, "{}", seqs.len());
    assert_eq!(s.lost, (total as u64) - seqs.len() as u64, "{s:?}");
    assert_eq!(s.resyncs, 1);
    let first = total - seqs.len() as u32;
    assert!(seqs.iter().copied().eq(first..total), "a contiguous tail");
}

#[test]
fn fresh_file_is_created_private_and_sized() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus");
    let config = BusConfig {
        size: 4 << 20,
        ..BusConfig::default()
    };
    let bus = Bus::attach(&path, &config).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 4 << 20);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let default = Bus::attach(dir.path().join("default"), &BusConfig::default()).unwrap();
    assert_eq!(default.size(), shmif::format::DEFAULT_BUS_SIZE);
    assert_eq!(bus.header().first, (4 << 20) - 32);
    // A second attacher keeps the size, whatever it asks for...
    let again = Bus::attach(
        &path,
        &BusConfig {
            size: 1 << 20,
            ..BusConfig::default()
        },
    )
    .unwrap();
    assert_eq!(again.size(), 4 << 20);
    // ... but a bus for NetBSD must be NetBSD's size.
    let e = Bus::attach(&path, &BusConfig::netbsd()).unwrap_err();
    assert!(e.to_string().contains("must be exactly 1048576"), "{e}");
    let too_small = BusConfig {
        size: 1000,
        ..BusConfig::default()
    };
    let e = Bus::attach(dir.path().join("other"), &too_small).unwrap_err();
    assert!(e.to_string().contains("below the minimum"), "{e}");
}

#[test]
fn netbsd_mode_wakes_through_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus");
    let compat = BusConfig::netbsd();
    let bus = Bus::attach(&path, &compat).unwrap();
    let mut rx = bus.port();
    let mac = rx.mac();
    let tx_bus = Bus::attach(&path, &compat).unwrap();
    let t = std::thread::spawn(move || {
        let tx = tx_bus.port();
        std::thread::sleep(Duration::from_millis(50));
        let mut f = [0u8; 60];
        f[..6].copy_from_slice(&mac);
        tx.send(&f).unwrap();
    });
    let mut buf = [0u8; 2048];
    assert_eq!(rx.recv(&mut buf, Duration::from_secs(2)).unwrap().len, 60);
    t.join().unwrap();
    let v = std::fs::read(&path).unwrap();
    assert_eq!(u32::from_ne_bytes(v[4..8].try_into().unwrap()), 3);
}
