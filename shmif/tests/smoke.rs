use std::time::Duration;

use shmif::{Bus, BusConfig};

fn frame(dst: [u8; 6], src: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![fill; len];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

#[test]
fn two_ports_in_one_process_exchange_frames_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::attach(dir.path().join("bus"), &BusConfig::default()).unwrap();
    let mut a = bus.port();
    let mut b = bus.port();
    let mut buf = [0u8; 2048];
    for len in [14usize, 60, 1514] {
        a.send(&frame(b.mac(), a.mac(), len, 7)).unwrap();
        let got = b
            .recv(&mut buf, Duration::from_secs(1))
            .expect("b receives");
        assert_eq!(got.len, len);
        assert!(
            a.try_recv(&mut buf).is_none(),
            "a must not see its own frame"
        );
        b.send(&frame([0xff; 6], b.mac(), len, 9)).unwrap();
        let got = a
            .recv(&mut buf, Duration::from_secs(1))
            .expect("a receives");
        assert_eq!(got.len, len);
        assert_eq!(buf[len - 1], 9);
    }
    assert_eq!(b.stats().received, 3);
}

#[test]
fn many_laps_keep_the_ring_walkable() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::attach(dir.path().join("bus"), &BusConfig::default()).unwrap();
    let a = bus.port();
    let mut b = bus.port();
    let mut buf = [0u8; 2048];
    let mut got = 0u64;
    for i in 0..20_000usize {
        let len = 14 + (i * 37) % 1500;
        a.send(&frame(b.mac(), a.mac(), len, i as u8)).unwrap();
        if i % 3 == 0 {
            while let Some(r) = b.try_recv(&mut buf) {
                assert_eq!(buf[r.len - 1], buf[12]);
                got += 1;
            }
        }
    }
    while b.try_recv(&mut buf).is_some() {
        got += 1;
    }
    let s = b.stats();
    assert_eq!(got + s.lost, 20_000, "{s:?}");
    assert_eq!(s.corrupt, 0);
    let img = bus.image();
    let dump = shmif::dump::parse(&img).unwrap();
    assert_eq!(dump.corrupt, 0);
    assert!(dump.records.len() > 100);
}
