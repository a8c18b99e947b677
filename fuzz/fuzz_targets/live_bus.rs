//! Untrusted bus contents under a live `Port` and `Reader`: the input is a script of operations
//! on a real 1 MiB bus file that a port and a passive reader are attached to. Operations store
//! raw bytes anywhere in the file (header words, records, garbage, NetBSD-style records with any
//! padding), or send numbered frames through a second shmlab port; after each one both readers
//! drain what they can.
//!
//! Must hold: nothing panics or hangs, and no frame sent through the shmlab port is delivered
//! twice to either reader (each carries a unique number in its payload).
#![no_main]

use std::collections::HashSet;
use std::os::unix::fs::FileExt;

use libfuzzer_sys::fuzz_target;

const SIZE: u64 = 1 << 20;
const DATA: u64 = SIZE - 32;
/// EtherType of the numbered frames, so garbage cannot pass for one by accident.
const MARK: [u8; 2] = [0x88, 0xb5];

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus");
    let bus = match shmif::Bus::attach(&path, &shmif::BusConfig::default()) {
        Ok(b) => b,
        Err(_) => return,
    };
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let sender = bus.port();
    let mut port = bus.port();
    let mut reader = bus.reader();
    let mut seen_port = HashSet::new();
    let mut seen_reader = HashSet::new();
    let mut number = 0u32;
    let mut buf = [0u8; 2048];
    let mut ops = data;
    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        match op % 4 {
            // Raw bytes at a ring offset (2 bytes offset scaled to the ring, 1 byte length).
            0 | 1 if ops.len() >= 3 => {
                let off = u16::from_le_bytes([ops[0], ops[1]]) as u64 * DATA / 65536;
                let n = (ops[2] as usize).min(ops.len() - 3);
                let _ = file.write_all_at(&ops[3..3 + n], 32 + off);
                ops = &ops[3 + n..];
            }
            // A header word (gen, first, last, spare, version); never the lock, which would
            // only make the run wait a second for a takeover.
            2 if ops.len() >= 5 => {
                let at = [4u64, 8, 12, 16, 20, 28][ops[0] as usize % 6];
                let _ = file.write_all_at(&ops[1..5], at);
                ops = &ops[5..];
            }
            // A numbered shmlab frame.
            _ => {
                let len = 18 + ops.first().copied().unwrap_or(0) as usize * 5;
                let mut f = vec![0u8; len.min(1514)];
                f[..6].copy_from_slice(&[0xff; 6]);
                f[12..14].copy_from_slice(&MARK);
                f[14..18].copy_from_slice(&number.to_le_bytes());
                number += 1;
                let _ = sender.send(&f);
                ops = ops.get(1..).unwrap_or(&[]);
            }
        }
        drain(&mut |b| port.try_recv(b), &mut buf, &mut seen_port, sender.sender_id());
        drain(&mut |b| reader.try_recv(b), &mut buf, &mut seen_reader, sender.sender_id());
    }
});

/// Takes everything a reader has now; asserts no numbered frame of ours comes twice.
fn drain(
    recv: &mut dyn FnMut(&mut [u8]) -> Option<shmif::Received>,
    buf: &mut [u8; 2048],
    seen: &mut HashSet<u32>,
    ours: u64,
) {
    // Bounded: a reader must not produce frames forever from a static ring.
    for _ in 0..100_000 {
        let Some(r) = recv(buf) else {
            return;
        };
        if r.sender == ours && r.len >= 18 && buf[12..14] == MARK {
            let n = u32::from_le_bytes(buf[14..18].try_into().unwrap());
            assert!(seen.insert(n), "frame {n} delivered twice");
        }
    }
    panic!("a reader kept delivering frames from a ring nobody writes to");
}
