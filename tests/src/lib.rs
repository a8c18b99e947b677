//! Shared pieces of the shmlab integration tests: the frame format the test peers exchange
//! (writer id, sequence number and checksum in every frame, so a reader can prove that nothing
//! it was handed is torn, duplicated or out of order), and helpers for running peer processes.
//! [`prereq`] is the skip-or-fail check for what a test needs from the machine, used by every
//! crate's tests.

pub mod prereq;

use std::process::{Child, Command, Stdio};

/// EtherType of test frames (IEEE local experimental).
pub const TEST_ETHERTYPE: u16 = 0x88b5;
/// Ethernet header + writer id + sequence + checksum.
pub const MIN_TEST_FRAME: usize = 14 + 4 + 8 + 4;

/// FNV-1a: cheap, and any torn byte changes it.
pub fn checksum(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// Writer id reported for frames too short to carry one (below [`MIN_TEST_FRAME`]).
pub const SHORT_FRAME_WRITER: u32 = u32::MAX;

fn short_fill(len: usize) -> u8 {
    0xa5 ^ len as u8
}

/// A broadcast test frame of `len` bytes (14 or more). Frames shorter than [`MIN_TEST_FRAME`]
/// carry no id: they are filled with a pattern derived from their length instead.
pub fn make_frame(src: [u8; 6], writer: u32, seq: u64, len: usize) -> Vec<u8> {
    assert!(len >= 14);
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    if len < MIN_TEST_FRAME {
        f[14..].fill(short_fill(len));
        return f;
    }
    f[14..18].copy_from_slice(&writer.to_le_bytes());
    f[18..26].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in f[26..len - 4].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_add(i * 7) as u8;
    }
    let sum = checksum(&f[..len - 4]);
    f[len - 4..].copy_from_slice(&sum.to_le_bytes());
    f
}

/// Writer id and sequence of an intact test frame; `None` if the frame is not one or is torn.
pub fn check_frame(f: &[u8]) -> Option<(u32, u64)> {
    if f.len() < 14 || f[12..14] != TEST_ETHERTYPE.to_be_bytes() {
        return None;
    }
    if f.len() < MIN_TEST_FRAME {
        let fill = short_fill(f.len());
        return f[14..]
            .iter()
            .all(|&b| b == fill)
            .then_some((SHORT_FRAME_WRITER, 0));
    }
    let n = f.len();
    let sum = u32::from_le_bytes(f[n - 4..].try_into().ok()?);
    if checksum(&f[..n - 4]) != sum {
        return None;
    }
    Some((
        u32::from_le_bytes(f[14..18].try_into().ok()?),
        u64::from_le_bytes(f[18..26].try_into().ok()?),
    ))
}

/// Deterministic frame sizes covering the whole legal range.
pub fn size_for(seq: u64, min: usize, max: usize) -> usize {
    let span = (max - min + 1) as u64;
    min + (seq.wrapping_mul(2_654_435_761) % span) as usize
}

/// Parses the `--padding` value of the NetBSD-style peers (what goes into the record header's
/// padding word): `random`, `zero`, `ones`, `count` (0, 1, 2, ... like a writer's sequence
/// numbers) or a fixed number, decimal or `0x` hex.
pub fn parse_padding(s: &str) -> Result<shmif::netbsd_emu::Padding, String> {
    use shmif::netbsd_emu::Padding;
    let fixed = |n: &str| match n.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => n.parse(),
    };
    match s {
        "random" => Ok(Padding::Random),
        "zero" => Ok(Padding::Fixed(0)),
        "ones" => Ok(Padding::Fixed(u32::MAX)),
        "count" => Ok(Padding::Counting(0)),
        n => fixed(n)
            .map(Padding::Fixed)
            .map_err(|_| format!("padding {n:?}: want random, zero, ones, count or a number")),
    }
}

/// Starts the `shmif-peer` helper with piped stdin/stdout.
pub fn spawn_peer(bin: &str, args: &[&str]) -> Child {
    Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start shmif-peer")
}
