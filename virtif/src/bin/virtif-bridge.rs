//! virtif-bridge: joins a host tap device to a shmif bus, so a Linux network namespace becomes
//! a station on the bus. labctl runs one per interface of a `kind = "linux"` node.
//!
//! Every frame the kernel sends on the tap is written to the bus, and every frame on the bus
//! (from any other station: the port is promiscuous, like a NIC on a hub) is handed to the
//! kernel, which keeps what is addressed to it. Two threads copy, one per direction; the main
//! thread waits for SIGTERM/SIGINT and writes the counters.
//!
//! Contract with labctl: once both ends are open, exactly one line on stdout,
//! `ready tap=IFNAME mac=MAC bus=BUSFILE`; on failure a message on stderr and exit status 1
//! before that line. `--stats FILE` is rewritten (write + rename) every second and at exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

/// How long a copying thread waits for a frame before checking whether it should stop.
const POLL: Duration = Duration::from_millis(100);
const STATS_EVERY: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(
    name = "virtif-bridge",
    about = "copy Ethernet frames both ways between a host tap and a shmif bus"
)]
struct Args {
    /// The bus file to attach to (created if missing, like any shmif port).
    #[arg(long)]
    bus: PathBuf,
    /// Tap interface name; created unless a persistent tap of that name exists.
    #[arg(long)]
    tap: String,
    /// Named network namespace (`ip netns add NAME`) to put the tap in; default: our own.
    #[arg(long)]
    netns: Option<String>,
    /// MTU for the tap; at most 1500, the largest payload a bus frame carries.
    #[arg(long, value_parser = clap::value_parser!(u32).range(68..=1500))]
    mtu: Option<u32>,
    /// Write the counters as JSON to this file every second and at exit.
    #[arg(long)]
    stats: Option<PathBuf>,
}

/// Frames dropped, by reason; each direction increments its own.
#[derive(Default)]
struct Drops {
    /// From the tap, too long for the bus (tap MTU raised above 1500 behind our back).
    oversize: AtomicU64,
    /// From the bus while the tap was down (the kernel refuses writes then).
    tap_down: AtomicU64,
    /// Any other write error on either side.
    errors: AtomicU64,
}

impl Drops {
    fn total(&self) -> u64 {
        self.oversize.load(Relaxed) + self.tap_down.load(Relaxed) + self.errors.load(Relaxed)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("virtif-bridge: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("installing a signal handler: {e}"))?;
    }

    let config = virtif::TapConfig {
        name: &args.tap,
        netns: args.netns.clone(),
        mtu: args.mtu,
        up: true,
    };
    let mut tap = virtif::Tap::open(&config).map_err(|e| e.to_string())?;
    let bus = shmif::Bus::attach(&args.bus, &shmif::BusConfig::default())
        .map_err(|e| format!("attaching to bus {}: {e}", args.bus.display()))?;
    let mut port = bus.port();
    port.set_promiscuous(true);

    let tap_tx = tap.sender();
    let bus_tx = port.sender();
    let drops = Arc::new(Drops::default());

    let to_bus = {
        let (stop, drops, bus_tx) = (stop.clone(), drops.clone(), bus_tx.clone());
        std::thread::Builder::new()
            .name("tap-to-bus".into())
            .spawn(move || -> Result<(), String> {
                // A tap can carry frames up to 64 KiB if its MTU is raised; read them whole so
                // they are counted as oversize rather than cut.
                let mut buf = vec![0u8; 65536];
                while !stop.load(Relaxed) {
                    let Some(n) = tap.recv(&mut buf, POLL).map_err(|e| e.to_string())? else {
                        continue;
                    };
                    match bus_tx.send(&buf[..n]) {
                        Ok(()) => {}
                        Err(shmif::SendError::Oversize { .. }) => {
                            drops.oversize.fetch_add(1, Relaxed);
                        }
                        Err(shmif::SendError::Runt { .. }) => {
                            drops.errors.fetch_add(1, Relaxed);
                        }
                        // The bus is gone for good (its file was truncated): stop bridging.
                        Err(e @ shmif::SendError::Truncated { .. }) => return Err(e.to_string()),
                    }
                }
                Ok(())
            })
            .map_err(|e| format!("starting a thread: {e}"))?
    };
    let to_tap = {
        let (stop, drops, tap_tx) = (stop.clone(), drops.clone(), tap_tx.clone());
        std::thread::Builder::new()
            .name("bus-to-tap".into())
            .spawn(move || {
                let mut buf = vec![0u8; shmif::format::MAX_FRAME];
                while !stop.load(Relaxed) {
                    let Some(r) = port.recv(&mut buf, POLL) else {
                        if port.bus().check().is_err() {
                            break;
                        }
                        continue;
                    };
                    match tap_tx.send(&buf[..r.len]) {
                        Ok(()) => {}
                        Err(virtif::SendError::Down { .. }) => {
                            drops.tap_down.fetch_add(1, Relaxed);
                        }
                        Err(_) => {
                            drops.errors.fetch_add(1, Relaxed);
                        }
                    }
                }
                port.stats()
            })
            .map_err(|e| format!("starting a thread: {e}"))?
    };

    println!(
        "ready tap={} mac={} bus={}",
        tap_tx.name(),
        virtif::format_mac(tap_tx.mac()),
        args.bus.display()
    );

    let report = |final_: bool| {
        if let Some(path) = &args.stats {
            let json = stats_json(args, &tap_tx, &bus_tx, &drops);
            if let Err(e) = write_atomically(path, &json) {
                // Counters are a convenience; losing one update must not stop the frames.
                eprintln!("virtif-bridge: writing {}: {e}", path.display());
            }
        }
        if final_ {
            eprintln!(
                "virtif-bridge: stopping; {}",
                stats_json(args, &tap_tx, &bus_tx, &drops)
            );
        }
    };
    let mut next_report = Instant::now();
    let mut failure = None;
    while !stop.load(Relaxed) {
        if Instant::now() >= next_report {
            report(false);
            next_report += STATS_EVERY;
        }
        if to_bus.is_finished() {
            // The tap vanished (deleted, namespace gone): nothing left to bridge.
            failure = match to_bus.join() {
                Ok(Err(e)) => Some(e),
                Ok(Ok(())) => None,
                Err(_) => Some("the tap-to-bus thread panicked".to_owned()),
            };
            stop.store(true, Relaxed);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Relaxed);
    let _ = to_tap.join();
    report(true);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn stats_json(
    args: &Args,
    tap: &virtif::TapSender,
    bus: &shmif::PortSender,
    drops: &Drops,
) -> String {
    let t = tap.stats();
    let b = bus.stats();
    serde_json::json!({
        "tap": tap.name(),
        "bus": args.bus,
        "tap_rx": t.received,
        "tap_tx": t.sent,
        "bus_rx": b.received,
        "bus_tx": b.sent,
        "dropped": drops.total(),
        "dropped_oversize": drops.oversize.load(Relaxed),
        "dropped_tap_down": drops.tap_down.load(Relaxed),
        "dropped_errors": drops.errors.load(Relaxed),
        "tap_truncated": t.truncated,
        "bus_lost": b.lost,
        "bus_corrupt": b.corrupt,
        // Records of non-shmlab writers skipped because the bus is not in NetBSD mode.
        "bus_foreign": b.foreign,
    })
    .to_string()
}

fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}
