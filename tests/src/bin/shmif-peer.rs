//! Test peer: one process on a bus, driven by the integration tests. Every role prints
//! `ready` once attached, and its results as one JSON line when done.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shmif::netbsd_emu::{NetbsdIf, Padding};
use shmif::{Bus, BusConfig};
use shmlab_tests::{check_frame, make_frame, size_for};

#[derive(Parser)]
struct Cli {
    /// Bus file.
    #[arg(long)]
    bus: PathBuf,
    /// Size for a bus this peer creates.
    #[arg(long, default_value_t = 1 << 20)]
    size: u64,
    /// Attach in NetBSD-compatible mode (locked reads, file-write wakeups).
    #[arg(long)]
    compat: bool,
    #[command(subcommand)]
    role: Role,
}

#[derive(Subcommand)]
enum Role {
    /// Sends `count` test frames, `batch` per lock, after a line on stdin says go.
    Send {
        #[arg(long)]
        id: u32,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = shmlab_tests::MIN_TEST_FRAME)]
        min_len: usize,
        #[arg(long, default_value_t = 1514)]
        max_len: usize,
        /// Pause between batches, microseconds.
        #[arg(long, default_value_t = 0)]
        pause_us: u64,
        /// Frame sizes run through min..=max in order instead of pseudo-randomly.
        #[arg(long)]
        sweep: bool,
        /// Write as a NetBSD rump kernel does (`shmif::netbsd_emu`): its header update order,
        /// garbage padding, a `pwrite` wakeup per batch and no futex wake. Attaching this way
        /// truncates the bus to 1 MiB, as NetBSD does.
        #[arg(long)]
        netbsd_style: bool,
        /// With `--netbsd-style`: keep the bus at its size instead of truncating it (no real
        /// NetBSD kernel does this; it tests NetBSD-style records on a bigger shmlab bus).
        #[arg(long)]
        keep_size: bool,
        /// Padding word of a NetBSD-style writer: random, zero, ones, count or a number.
        #[arg(long, default_value = "random", value_parser = shmlab_tests::parse_padding)]
        padding: Padding,
    },
    /// Receives until stdin closes, then drains and reports.
    Recv {
        /// Use a passive reader instead of a port.
        #[arg(long)]
        passive: bool,
    },
    /// Takes the lock, writes half a record and hangs there until killed.
    Park,
}

fn main() {
    let cli = Cli::parse();
    // A NetBSD-style writer attaches its own way and never touches a shmif `Bus`.
    if let Role::Send {
        netbsd_style: true, ..
    } = cli.role
    {
        netbsd_send(&cli);
        return;
    }
    let config = BusConfig {
        size: cli.size,
        netbsd: cli.compat,
    };
    let bus = Bus::attach(&cli.bus, &config).unwrap_or_else(|e| {
        eprintln!("shmif-peer: {e}");
        std::process::exit(2)
    });
    let mut out = std::io::stdout();
    match cli.role {
        Role::Send { .. } => {
            let port = bus.port();
            send_test_frames(&cli.role, port.mac(), |frames| {
                port.send_batch(frames).expect("send")
            });
            let s = port.stats();
            writeln!(
                out,
                "{{\"sent\":{},\"lock_recoveries\":{}}}",
                s.sent, s.lock_recoveries
            )
            .unwrap();
        }
        Role::Recv { passive } => {
            // Stdin closing is the signal to drain and report.
            let done = Arc::new(AtomicBool::new(false));
            let flag = done.clone();
            std::thread::spawn(move || {
                let mut sink = String::new();
                while std::io::stdin().lock().read_line(&mut sink).unwrap_or(0) > 0 {
                    sink.clear();
                }
                flag.store(true, Ordering::SeqCst);
            });
            let mut port = (!passive).then(|| bus.port());
            let mut reader = passive.then(|| bus.reader());
            writeln!(out, "ready").unwrap();
            out.flush().unwrap();
            let mut buf = vec![0u8; 2048];
            let mut delivered = 0u64;
            let mut torn = 0u64;
            let mut out_of_order = 0u64;
            let mut lens_seen = vec![false; 2048];
            let mut next: HashMap<u32, u64> = HashMap::new();
            let mut draining = false;
            loop {
                let got = match (&mut port, &mut reader) {
                    (Some(p), _) if draining => p.try_recv(&mut buf),
                    (Some(p), _) => p.recv(&mut buf, Duration::from_millis(50)),
                    (_, Some(r)) if draining => r.try_recv(&mut buf),
                    (_, Some(r)) => r.recv(&mut buf, Duration::from_millis(50)),
                    _ => unreachable!(),
                };
                match got {
                    Some(r) => {
                        delivered += 1;
                        lens_seen[r.len] = true;
                        match check_frame(&buf[..r.len]) {
                            None => torn += 1,
                            Some((shmlab_tests::SHORT_FRAME_WRITER, _)) => {}
                            Some((w, s)) => {
                                let want = next.entry(w).or_insert(0);
                                if s < *want {
                                    out_of_order += 1;
                                }
                                *want = s + 1;
                            }
                        }
                    }
                    None if draining => break,
                    None => {}
                }
                if !draining && done.load(Ordering::SeqCst) {
                    draining = true;
                }
            }
            let s = match (&port, &reader) {
                (Some(p), _) => p.stats(),
                (_, Some(r)) => r.stats(),
                _ => unreachable!(),
            };
            writeln!(
                out,
                "{{\"delivered\":{delivered},\"torn\":{torn},\"out_of_order\":{out_of_order},\"lost\":{},\"corrupt\":{},\"foreign\":{},\"resyncs\":{},\"uncounted_resyncs\":{},\"received\":{},\"lock_recoveries\":{},\"netbsd_mode\":{},\"distinct_lens\":{}}}",
                s.lost, s.corrupt, s.foreign, s.resyncs, s.uncounted_resyncs, s.received, s.lock_recoveries,
                bus.netbsd_mode(),
                lens_seen.iter().filter(|&&b| b).count()
            )
            .unwrap();
        }
        Role::Park => {
            let port = bus.port();
            writeln!(out, "ready").unwrap();
            out.flush().unwrap();
            let frame = make_frame(port.mac(), 999, 0, 1000);
            std::thread::spawn(move || {
                // Report "parked" from outside the critical section once the lock is surely held.
                std::thread::sleep(Duration::from_millis(50));
                let mut out = std::io::stdout();
                writeln!(out, "parked").unwrap();
                out.flush().unwrap();
            });
            port.hang_holding_lock(&frame);
        }
    }
}

/// The `send` role's work for any writer: says `ready`, waits for a line on stdin, then hands
/// `send` the test frames in batches, as the role's options say. Returns how many it sent.
fn send_test_frames(role: &Role, mac: [u8; 6], mut send: impl FnMut(&[&[u8]])) -> u64 {
    let Role::Send {
        id,
        count,
        batch,
        min_len,
        max_len,
        pause_us,
        sweep,
        ..
    } = *role
    else {
        unreachable!("only the send role sends")
    };
    let mut out = std::io::stdout();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go).unwrap();
    let mut seq = 0u64;
    while seq < count {
        let n = (count - seq).min(batch as u64);
        let frames: Vec<Vec<u8>> = (seq..seq + n)
            .map(|s| {
                let len = if sweep {
                    min_len + (s as usize) % (max_len - min_len + 1)
                } else {
                    size_for(s, min_len, max_len)
                };
                make_frame(mac, id, s, len)
            })
            .collect();
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
        send(&refs);
        seq += n;
        if pause_us > 0 {
            std::thread::sleep(Duration::from_micros(pause_us));
        }
    }
    seq
}

/// `send --netbsd-style`: the same frames as the `send` role, written by an emulated NetBSD
/// interface. Reports the same JSON (a NetBSD writer never recovers a lock).
fn netbsd_send(cli: &Cli) {
    let Role::Send {
        padding, keep_size, ..
    } = cli.role
    else {
        unreachable!("only the send role writes NetBSD-style")
    };
    let attached = if keep_size {
        NetbsdIf::attach_any_size(&cli.bus)
    } else {
        NetbsdIf::attach(&cli.bus)
    };
    let mut nif = attached.unwrap_or_else(|e| {
        eprintln!("shmif-peer: {e}");
        std::process::exit(2)
    });
    nif.set_padding(padding);
    let mac = nif.mac();
    let sent = send_test_frames(&cli.role, mac, |frames| nif.send(frames).expect("send"));
    println!("{{\"sent\":{sent},\"lock_recoveries\":0}}");
}
