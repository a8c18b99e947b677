//! The `bus` suite: how fast frames cross a shmif bus between separate processes, as frames/s
//! and Gbit/s, against a memcpy of the same bytes measured in the same run.
//!
//! Each row gets a fresh bus file under /dev/shm. The runner starts the readers, then the
//! writers (all as `bench __bus-reader` / `bench __bus-writer` processes), waits until every one
//! is attached, says "go", lets the writers send flat out for a fixed time, then tells the
//! readers to stop once they have drained the ring. Writers send broadcast frames so every
//! reader's destination filter passes them.
//!
//! Rows: every topology with `send` and `send_batch`; bus sizes for the 1 -> 1 batched case;
//! passive readers against ports (what reading without the lock is worth); and paced writers,
//! where the reader keeps up and nothing may be lost. `bench __bus-row` runs a single row, for
//! profiling.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use serde::{Deserialize, Serialize};
use shmif::{Bus, BusConfig, Port, Reader, Received, Stats};

use super::child::{hear_parent, tell_parent, RoleProcess};
use super::{si, Context, SuiteReport};

const MIB: u64 = 1 << 20;
/// Frames per `send_batch` call in the batched rows.
const BATCH: usize = 32;
const FRAME_SIZES: [usize; 2] = [64, 1500];
/// (writers, readers)
const SHAPES: [(usize, usize); 3] = [(1, 1), (1, 3), (4, 1)];
/// Bus sizes compared for the 1 -> 1 batched case, to choose the default by measurement.
const BUS_SIZES: [u64; 4] = [MIB, 4 * MIB, 8 * MIB, 64 * MIB];
/// (frame size, frames/s, bus size) for the paced rows, well below what one port reader keeps
/// up with on average. A 1 MiB ring holds under a millisecond of 1500 B frames at 1 M/s, so a
/// reader descheduled that long loses some; the larger bus shows how much slack fixes that.
const PACED: [(usize, u64, u64); 3] = [
    (64, 2_000_000, MIB),
    (1500, 1_000_000, MIB),
    (1500, 1_000_000, 8 * MIB),
];

/// One measured configuration.
#[derive(Clone, Copy, Debug, Serialize)]
struct RowSpec {
    frame: usize,
    writers: usize,
    readers: usize,
    batch: usize,
    bus_size: u64,
    /// Readers are passive `shmif::Reader`s (lock-free capture) instead of ports.
    passive: bool,
    /// Frames/s each writer is held to; 0 is flat out.
    rate: u64,
    /// The bus is created in NetBSD mode (1 MiB, locked reads, file-write wakeups).
    netbsd: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct WriterResult {
    sent: u64,
    secs: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReaderResult {
    received: u64,
    lost: u64,
    corrupt: u64,
    filtered: u64,
    /// From "go" to the moment the reader found the ring empty after its last frame.
    secs: f64,
}

#[derive(Debug, Serialize)]
struct Row {
    #[serde(flatten)]
    spec: RowSpec,
    sent: u64,
    /// Frames written per second, all writers together.
    sent_fps: f64,
    /// Frames delivered per second to the slowest reader (every reader sees every frame).
    fps: f64,
    gbps: f64,
    /// Frames the worst reader lost to lapping, as a share of what was sent.
    loss_pct: f64,
    /// Largest difference, over readers, between frames sent and frames received plus counted
    /// lost (should be 0: every frame is delivered or counted).
    unaccounted: u64,
    memcpy_ratio: f64,
    /// Delivered frames/s of every run of this row, lowest first; the row is the median run.
    fps_runs: Vec<f64>,
    writer_results: Vec<WriterResult>,
    reader_results: Vec<ReaderResult>,
}

#[derive(Debug, Serialize)]
struct Baseline {
    frame: usize,
    fps: f64,
    gbps: f64,
}

fn gbps(fps: f64, frame: usize) -> f64 {
    fps * frame as f64 * 8.0 / 1e9
}

/// A broadcast frame from `src` with a local-experimental EtherType.
fn bench_frame(src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0x5a; len];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// The C-speed yardstick: copying `frame`-byte chunks from a 1 MiB source ring into a 1 MiB
/// destination (the bus's footprint), one `copy_from_slice` (memcpy) per frame.
fn memcpy_baseline(frame: usize, time: Duration) -> Baseline {
    const RING: usize = MIB as usize;
    let src: Vec<u8> = (0..RING).map(|i| i as u8).collect();
    let mut dst = vec![0u8; RING];
    let mut off = 0usize;
    let mut frames = 0u64;
    let start = Instant::now();
    loop {
        for _ in 0..4096 {
            if off + frame > RING {
                off = 0;
            }
            dst[off..off + frame].copy_from_slice(&src[off..off + frame]);
            off += frame;
        }
        frames += 4096;
        // Keeps the copies observable so the optimiser cannot drop them.
        std::hint::black_box(&mut dst);
        if start.elapsed() >= time {
            break;
        }
    }
    let fps = frames as f64 / start.elapsed().as_secs_f64();
    Baseline {
        frame,
        fps,
        gbps: gbps(fps, frame),
    }
}

/// Where bus files go: tmpfs, as the lab puts them.
fn bus_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn measure(ctx: &Context, spec: RowSpec, n: usize) -> anyhow::Result<Row> {
    let path = bus_dir().join(format!("shmlab-bench-{}-{n}.bus", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // Created here at the row's size; the children attach to the existing file.
    drop(Bus::attach(
        &path,
        &BusConfig {
            size: spec.bus_size,
            netbsd: spec.netbsd,
        },
    )?);
    populate(&path, spec.bus_size)?;
    let result = run_processes(ctx, spec, &path);
    let _ = std::fs::remove_file(&path);
    let (writer_results, reader_results) = result?;

    let sent: u64 = writer_results.iter().map(|w| w.sent).sum();
    let writer_secs = writer_results.iter().map(|w| w.secs).fold(0.0, f64::max);
    let fps = reader_results
        .iter()
        .map(|r| r.received as f64 / r.secs.max(1e-9))
        .fold(f64::INFINITY, f64::min);
    let loss_pct = reader_results
        .iter()
        .map(|r| 100.0 * r.lost as f64 / sent.max(1) as f64)
        .fold(0.0, f64::max);
    let unaccounted = reader_results
        .iter()
        .map(|r| sent.abs_diff(r.received + r.lost))
        .max()
        .unwrap_or(0);
    Ok(Row {
        spec,
        sent,
        sent_fps: sent as f64 / writer_secs.max(1e-9),
        fps,
        gbps: gbps(fps, spec.frame),
        loss_pct,
        unaccounted,
        memcpy_ratio: 0.0,
        fps_runs: Vec::new(),
        writer_results,
        reader_results,
    })
}

/// Allocates every tmpfs page of a fresh (sparse) bus file, so that rows measure the bus in
/// steady state rather than the kernel zero-filling pages during the first lap (which costs a
/// 64 MiB bus most of a short row). Writes zeros where the ring is already zero: the header is
/// left alone and the ring of a fresh bus reads as zeros anyway.
fn populate(path: &Path, size: u64) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let zeros = vec![0u8; MIB as usize];
    // Past the header and the placeholder record at ring offset 0.
    let mut off = 4096;
    while off < size {
        let n = (size - off).min(MIB) as usize;
        file.write_all_at(&zeros[..n], off)
            .with_context(|| format!("populating {}", path.display()))?;
        off += n as u64;
    }
    Ok(())
}

fn run_processes(
    ctx: &Context,
    spec: RowSpec,
    bus: &Path,
) -> anyhow::Result<(Vec<WriterResult>, Vec<ReaderResult>)> {
    let bus_arg = bus.display().to_string();
    let mut readers = Vec::new();
    for _ in 0..spec.readers {
        let mut args = vec!["--bus".into(), bus_arg.clone()];
        if spec.passive {
            args.push("--passive".into());
        }
        readers.push(RoleProcess::spawn(&ctx.exe, "__bus-reader", &args)?);
    }
    // Readers attach first: a port starts after the newest record and must not miss the start.
    for r in &mut readers {
        r.expect("ready")?;
    }
    let mut writers = Vec::new();
    for _ in 0..spec.writers {
        let args = vec![
            "--bus".into(),
            bus_arg.clone(),
            "--frame-size".into(),
            spec.frame.to_string(),
            "--batch".into(),
            spec.batch.to_string(),
            "--millis".into(),
            ctx.row_time.as_millis().to_string(),
            "--rate".into(),
            spec.rate.to_string(),
        ];
        writers.push(RoleProcess::spawn(&ctx.exe, "__bus-writer", &args)?);
    }
    for w in &mut writers {
        w.expect("ready")?;
    }
    for p in readers.iter_mut().chain(writers.iter_mut()) {
        p.send("go")?;
    }
    let mut wres = Vec::new();
    for mut w in writers {
        wres.push(serde_json::from_str::<WriterResult>(&w.read_line()?)?);
        w.wait()?;
    }
    // Every frame is on the bus now; readers drain what is left, then stop.
    let mut rres = Vec::new();
    for r in &mut readers {
        r.send("stop")?;
    }
    for mut r in readers {
        rres.push(serde_json::from_str::<ReaderResult>(&r.read_line()?)?);
        r.wait()?;
    }
    Ok((wres, rres))
}

/// `bench __bus-row`: one row on its own, for profiling (`perf record -- bench __bus-row ...`).
#[derive(Parser, Debug)]
struct RowArgs {
    #[arg(long, default_value_t = 64)]
    frame_size: usize,
    #[arg(long, default_value_t = 1)]
    writers: usize,
    #[arg(long, default_value_t = 1)]
    readers: usize,
    #[arg(long, default_value_t = BATCH)]
    batch: usize,
    #[arg(long, default_value_t = 1)]
    bus_mib: u64,
    #[arg(long, default_value_t = 1500)]
    millis: u64,
    #[arg(long)]
    passive: bool,
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// The bus is in NetBSD mode.
    #[arg(long)]
    netbsd: bool,
}

pub fn row_role(argv: Vec<String>) -> anyhow::Result<()> {
    let args = RowArgs::try_parse_from(argv)?;
    let mut ctx = Context::new(false)?;
    ctx.row_time = Duration::from_millis(args.millis);
    let spec = RowSpec {
        frame: args.frame_size,
        writers: args.writers,
        readers: args.readers,
        batch: args.batch,
        bus_size: args.bus_mib * MIB,
        passive: args.passive,
        rate: args.rate,
        netbsd: args.netbsd,
    };
    let row = measure(&ctx, spec, 0)?;
    println!("{}", serde_json::to_string_pretty(&row)?);
    Ok(())
}

/// `bench __bus-writer`: sends one frame size as fast as it can for a fixed time.
#[derive(Parser, Debug)]
struct WriterArgs {
    #[arg(long)]
    bus: PathBuf,
    #[arg(long)]
    frame_size: usize,
    /// Frames per `send_batch`; 1 uses `send`.
    #[arg(long)]
    batch: usize,
    #[arg(long)]
    millis: u64,
    /// Frames per second to hold to; 0 sends flat out.
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

/// Sends `batch` again and again for `time` (one frame with `send`, more with `send_batch`),
/// flat out or held to `rate` frames/s; returns the seconds it took. The writers of the bus
/// and forward suites.
pub(crate) fn send_for(
    port: &Port,
    batch: &[&[u8]],
    rate: u64,
    time: Duration,
) -> anyhow::Result<f64> {
    let send = || -> anyhow::Result<()> {
        match batch {
            [one] => port.send(one)?,
            many => port.send_batch(many)?,
        }
        Ok(())
    };
    // Check the clock every few hundred frames so that reading it costs nothing measurable.
    let calls_per_check = (256 / batch.len()).max(1);
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        if rate > 0 {
            // Paced: wait until the schedule allows the next batch; yield rather than sleep,
            // because batches are microseconds apart and sleeps are coarser than that.
            let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
            while Instant::now() < due {
                std::thread::yield_now();
            }
            send()?;
            sent += batch.len() as u64;
        } else {
            for _ in 0..calls_per_check {
                send()?;
            }
        }
        if start.elapsed() >= time {
            return Ok(start.elapsed().as_secs_f64());
        }
    }
}

pub fn writer_role(argv: Vec<String>) -> anyhow::Result<()> {
    let args = WriterArgs::try_parse_from(argv)?;
    let bus = Bus::attach(&args.bus, &BusConfig::default())?;
    let port = bus.port();
    let frame = bench_frame(port.mac(), args.frame_size);
    let batch: Vec<&[u8]> = vec![frame.as_slice(); args.batch.max(1)];
    tell_parent("ready")?;
    if hear_parent()?.as_deref() != Some("go") {
        return Ok(());
    }
    let secs = send_for(&port, &batch, args.rate, Duration::from_millis(args.millis))?;
    let result = WriterResult {
        sent: port.stats().sent,
        secs,
    };
    tell_parent(&serde_json::to_string(&result)?)
}

/// `bench __bus-reader`: receives through a port until told to stop and the ring is empty.
#[derive(Parser, Debug)]
struct ReaderArgs {
    #[arg(long)]
    bus: PathBuf,
    /// Read with a passive `shmif::Reader` (no lock) instead of a port.
    #[arg(long)]
    passive: bool,
}

/// The receive side both a port and a passive reader offer.
trait Receiver {
    fn try_recv(&mut self, buf: &mut [u8]) -> Option<Received>;
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Option<Received>;
    fn stats(&self) -> Stats;
}

impl Receiver for Port {
    fn try_recv(&mut self, buf: &mut [u8]) -> Option<Received> {
        Port::try_recv(self, buf)
    }
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Option<Received> {
        Port::recv(self, buf, timeout)
    }
    fn stats(&self) -> Stats {
        Port::stats(self)
    }
}

impl Receiver for Reader {
    fn try_recv(&mut self, buf: &mut [u8]) -> Option<Received> {
        Reader::try_recv(self, buf)
    }
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Option<Received> {
        Reader::recv(self, buf, timeout)
    }
    fn stats(&self) -> Stats {
        Reader::stats(self)
    }
}

pub fn reader_role(argv: Vec<String>) -> anyhow::Result<()> {
    let args = ReaderArgs::try_parse_from(argv)?;
    let bus = Bus::attach(&args.bus, &BusConfig::default())?;
    let mut port: Box<dyn Receiver> = if args.passive {
        Box::new(bus.reader())
    } else {
        Box::new(bus.port())
    };
    let mut buf = vec![0u8; 2048];
    tell_parent("ready")?;
    if hear_parent()?.as_deref() != Some("go") {
        return Ok(());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    // Any line, or the parent going away, means stop.
    std::thread::spawn(move || {
        let _ = hear_parent();
        stop_flag.store(true, Ordering::Release);
    });
    let start = Instant::now();
    let mut last = start;
    let mut fresh = false;
    loop {
        if port.try_recv(&mut buf).is_some() {
            fresh = true;
            continue;
        }
        // The ring is empty: the last frame arrived just now (timing only here keeps clock
        // reads off the per-frame path).
        if fresh {
            last = Instant::now();
            fresh = false;
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        if port.recv(&mut buf, Duration::from_millis(20)).is_some() {
            fresh = true;
        }
    }
    let s = port.stats();
    let result = ReaderResult {
        received: s.received,
        lost: s.lost,
        corrupt: s.corrupt,
        filtered: s.filtered,
        secs: (last - start).as_secs_f64(),
    };
    tell_parent(&serde_json::to_string(&result)?)
}

fn spread(r: &Row) -> String {
    match (r.fps_runs.first(), r.fps_runs.last()) {
        (Some(lo), Some(hi)) if r.fps_runs.len() > 1 => {
            format!("{:.0} %", 100.0 * (hi - lo) / r.fps.max(1e-9))
        }
        _ => "–".into(),
    }
}

fn size_label(bytes: u64) -> String {
    format!("{} MiB", bytes / MIB)
}

fn shape_label(spec: &RowSpec) -> String {
    format!("{} → {}", spec.writers, spec.readers)
}

fn batch_label(batch: usize) -> String {
    if batch == 1 {
        "send".into()
    } else {
        format!("send_batch({batch})")
    }
}

/// Runs every row, printing each as it completes (the suite takes a while).
pub fn run(ctx: &Context) -> anyhow::Result<SuiteReport> {
    let baseline_time = ctx.row_time / 3;
    let baselines: Vec<Baseline> = FRAME_SIZES
        .iter()
        .map(|&f| memcpy_baseline(f, baseline_time))
        .collect();
    for b in &baselines {
        eprintln!(
            "bus: memcpy {} B: {}frames/s, {:.1} Gbit/s",
            b.frame,
            si(b.fps),
            b.gbps
        );
    }
    let mut specs = Vec::new();
    for frame in FRAME_SIZES {
        for (writers, readers) in SHAPES {
            for batch in [1, BATCH] {
                specs.push(RowSpec {
                    frame,
                    writers,
                    readers,
                    batch,
                    bus_size: MIB,
                    passive: false,
                    rate: 0,
                    netbsd: false,
                });
            }
        }
    }
    for frame in FRAME_SIZES {
        for bus_size in BUS_SIZES.into_iter().filter(|&s| s != MIB) {
            specs.push(RowSpec {
                frame,
                writers: 1,
                readers: 1,
                batch: BATCH,
                bus_size,
                passive: false,
                rate: 0,
                netbsd: false,
            });
        }
    }
    // What ports would gain from reading without the lock, as the passive reader does.
    for frame in FRAME_SIZES {
        specs.push(RowSpec {
            frame,
            writers: 1,
            readers: 1,
            batch: BATCH,
            bus_size: MIB,
            passive: true,
            rate: 0,
            netbsd: false,
        });
    }
    // The cost of sharing a bus with NetBSD kernels: locked reads and file-write wakeups.
    for frame in FRAME_SIZES {
        for passive in [false, true] {
            specs.push(RowSpec {
                frame,
                writers: 1,
                readers: 1,
                batch: BATCH,
                bus_size: MIB,
                passive,
                rate: 0,
                netbsd: true,
            });
        }
    }
    // Writers held below what a port reader sustains: the bus must then lose nothing.
    for (frame, rate, bus_size) in PACED {
        specs.push(RowSpec {
            frame,
            writers: 1,
            readers: 1,
            batch: BATCH,
            bus_size,
            passive: false,
            rate,
            netbsd: false,
        });
    }
    let mut rows = Vec::new();
    for (n, spec) in specs.into_iter().enumerate() {
        let mut runs = Vec::new();
        for _ in 0..ctx.repeats.max(1) {
            let run = measure(ctx, spec, n).with_context(|| format!("bus row {spec:?}"))?;
            if run.unaccounted > 0 {
                bail!(
                    "bus row {spec:?}: received + lost differs from sent by {} frames",
                    run.unaccounted
                );
            }
            runs.push(run);
        }
        runs.sort_by(|a, b| a.fps.total_cmp(&b.fps));
        let fps_runs: Vec<f64> = runs.iter().map(|r| r.fps).collect();
        let mut row = runs.swap_remove(runs.len() / 2);
        row.fps_runs = fps_runs;
        let base = baselines
            .iter()
            .find(|b| b.frame == spec.frame)
            .expect("baseline");
        row.memcpy_ratio = row.fps / base.fps;
        eprintln!(
            "bus: {} B {} {} {}{}: {}frames/s delivered ({}frames/s sent), {:.2} Gbit/s, \
             loss {:.2} %, {:.3} × memcpy",
            spec.frame,
            shape_label(&spec),
            batch_label(spec.batch),
            size_label(spec.bus_size),
            match (spec.passive, spec.rate) {
                _ if spec.netbsd =>
                    format!(" netbsd-mode{}", if spec.passive { " passive" } else { "" }),
                (true, _) => " passive".to_string(),
                (_, 0) => String::new(),
                (_, r) => format!(" paced at {}frames/s", si(r as f64)),
            },
            si(row.fps),
            si(row.sent_fps),
            row.gbps,
            row.loss_pct,
            row.memcpy_ratio
        );
        rows.push(row);
    }
    Ok(SuiteReport {
        name: "bus",
        markdown: markdown(ctx, &baselines, &rows),
        json: serde_json::json!({
            "batch": BATCH,
            "row_seconds": ctx.row_time.as_secs_f64(),
            "repeats": ctx.repeats,
            "memcpy": baselines,
            "rows": rows,
        }),
    })
}

fn markdown(ctx: &Context, baselines: &[Baseline], rows: &[Row]) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "Each row is the median of {} run(s) of {:.1} s by delivered rate; *spread* is \
         (max − min) / median of those runs, and bench.json has every run.\n\n",
        ctx.repeats,
        ctx.row_time.as_secs_f64()
    ));
    md.push_str(
        "Writers and readers are separate processes on one bus file in /dev/shm; writers send \
         broadcast frames flat out, readers receive through `Port::try_recv`/`recv`. \
         *Delivered* is the rate at which the slowest reader received frames; *Gbit/s* counts \
         frame bytes only (no record headers); *loss* is what the worst reader lost to being \
         lapped, as a share of frames sent; *vs memcpy* divides the delivered rate by the \
         memcpy baseline for the same frame size. Writers send flat out, so wherever they are \
         faster than the slowest reader the ring overwrites frames (loss) and *delivered* is \
         the reader's goodput under overload; the paced rows show the no-overload case.\n\n",
    );
    md.push_str("memcpy baseline (one `copy_from_slice` per frame, 1 MiB source ring):");
    for b in baselines {
        md.push_str(&format!(
            " {} B: {}frames/s ({:.1} Gbit/s);",
            b.frame,
            si(b.fps),
            b.gbps
        ));
    }
    md.pop();
    md.push_str(".\n\n### Topologies (1 MiB bus)\n\n");
    md.push_str(
        "| Frame | Writers → readers | Send | Sent frames/s | Delivered frames/s | Gbit/s | Loss % \
         | vs memcpy | Spread |\n|---:|:---:|:---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows
        .iter()
        .filter(|r| r.spec.bus_size == MIB && !r.spec.passive && r.spec.rate == 0 && !r.spec.netbsd)
    {
        md.push_str(&format!(
            "| {} B | {} | {} | {} | {} | {:.2} | {:.2} | {:.3} | {} |\n",
            r.spec.frame,
            shape_label(&r.spec),
            batch_label(r.spec.batch),
            si(r.sent_fps),
            si(r.fps),
            r.gbps,
            r.loss_pct,
            r.memcpy_ratio,
            spread(r)
        ));
    }
    md.push_str(&format!(
        "\n### Bus size (1 → 1, send_batch({BATCH}))\n\n\
         | Frame | Bus size | Sent frames/s | Delivered frames/s | Gbit/s | Loss % | vs memcpy \
         | Spread |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    ));
    let mut sized: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.spec.writers == 1
                && r.spec.readers == 1
                && r.spec.batch == BATCH
                && !r.spec.passive
                && r.spec.rate == 0
                && !r.spec.netbsd
        })
        .collect();
    sized.sort_by_key(|r| (r.spec.frame, r.spec.bus_size));
    for r in sized {
        md.push_str(&format!(
            "| {} B | {} | {} | {} | {:.2} | {:.2} | {:.3} | {} |\n",
            r.spec.frame,
            size_label(r.spec.bus_size),
            si(r.sent_fps),
            si(r.fps),
            r.gbps,
            r.loss_pct,
            r.memcpy_ratio,
            spread(r)
        ));
    }
    md.push_str(&format!(
        "\n### Reader kind (1 → 1, send_batch({BATCH}), 1 MiB)\n\n\
         Both read without the lock on a shmlab-mode bus, following record numbers; a port \
         filters on destination MAC, the passive `shmif::Reader` (capture) takes everything.\n\n\
         | Frame | Reader | Sent frames/s | Delivered frames/s | Gbit/s | Loss % | vs memcpy \
         | Spread |\n|---:|:---|---:|---:|---:|---:|---:|---:|\n"
    ));
    for r in rows.iter().filter(|r| {
        r.spec.writers == 1
            && r.spec.readers == 1
            && r.spec.batch == BATCH
            && r.spec.bus_size == MIB
            && r.spec.rate == 0
            && !r.spec.netbsd
    }) {
        md.push_str(&format!(
            "| {} B | {} | {} | {} | {:.2} | {:.2} | {:.3} | {} |\n",
            r.spec.frame,
            if r.spec.passive {
                "passive Reader"
            } else {
                "Port"
            },
            si(r.sent_fps),
            si(r.fps),
            r.gbps,
            r.loss_pct,
            r.memcpy_ratio,
            spread(r)
        ));
    }
    let target = |frame: usize| {
        rows.iter().find(|r| {
            r.spec.frame == frame
                && r.spec.writers == 1
                && r.spec.readers == 1
                && r.spec.batch == BATCH
                && r.spec.bus_size == MIB
                && !r.spec.passive
                && r.spec.rate == 0
                && !r.spec.netbsd
        })
    };
    md.push_str(&format!(
        "\n### Paced writer (1 → 1, send_batch({BATCH}))\n\n\
         The writer is held to a fixed rate, about half what a port reader sustains flat \
         out: a reader that keeps up should lose nothing.\n\n\
         | Frame | Bus size | Paced at frames/s | Sent frames/s | Delivered frames/s | Gbit/s \
         | Loss % |\n|---:|---:|---:|---:|---:|---:|---:|\n"
    ));
    for r in rows.iter().filter(|r| r.spec.rate > 0) {
        md.push_str(&format!(
            "| {} B | {} | {} | {} | {} | {:.2} | {:.2} |\n",
            r.spec.frame,
            size_label(r.spec.bus_size),
            si(r.spec.rate as f64),
            si(r.sent_fps),
            si(r.fps),
            r.gbps,
            r.loss_pct
        ));
    }
    md.push_str(&format!(
        "\n### NetBSD mode (1 → 1, send_batch({BATCH}), 1 MiB)\n\n\
         A bus shared with NetBSD kernels: every reader takes the lock, writers also `pwrite` \
         the version word after each batch, sleepers wait on inotify. *vs shmlab mode* divides \
         by the same row on a shmlab-mode bus.\n\n\
         | Frame | Reader | Sent frames/s | Delivered frames/s | Gbit/s | Loss % | vs shmlab mode \
         | Spread |\n|---:|:---|---:|---:|---:|---:|---:|---:|\n"
    ));
    for r in rows.iter().filter(|r| r.spec.netbsd) {
        let shmlab = rows.iter().find(|o| {
            !o.spec.netbsd
                && o.spec.frame == r.spec.frame
                && o.spec.passive == r.spec.passive
                && o.spec.writers == 1
                && o.spec.readers == 1
                && o.spec.batch == BATCH
                && o.spec.bus_size == MIB
                && o.spec.rate == 0
        });
        md.push_str(&format!(
            "| {} B | {} | {} | {} | {:.2} | {:.2} | {} | {} |\n",
            r.spec.frame,
            if r.spec.passive {
                "passive Reader"
            } else {
                "Port"
            },
            si(r.sent_fps),
            si(r.fps),
            r.gbps,
            r.loss_pct,
            shmlab.map_or("—".into(), |o| format!("{:.2}", r.fps / o.fps.max(1e-9))),
            spread(r)
        ));
    }
    md.push_str("\nTargets (1 → 1, batched, 1 MiB):");
    if let Some(r) = target(64) {
        md.push_str(&format!(
            " 64 B at ≥ 10 M frames/s: {}frames/s, {};",
            si(r.fps),
            if r.fps >= 10e6 { "met" } else { "not met" }
        ));
    }
    if let Some(r) = target(1500) {
        md.push_str(&format!(
            " 1500 B at ≥ 40 Gbit/s: {:.1} Gbit/s, {};",
            r.gbps,
            if r.gbps >= 40.0 { "met" } else { "not met" }
        ));
    }
    md.pop();
    md.push_str(".\n");
    md
}
