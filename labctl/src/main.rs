//! The `labctl` command line: parses arguments and maps each subcommand onto the library.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use serde::Serialize;

use labctl::driver::NodeStatus;

use labctl::lab::{self, LabState};
use labctl::lifecycle::{self, UpOptions};
use labctl::{capture, checks, graph, topology};

/// shmlab controller: bring up declarative network labs, run commands in their nodes, test them.
///
/// Labs live in $SHMLAB_DIR, else $XDG_RUNTIME_DIR/shmlab, else /dev/shm/shmlab-$UID.
#[derive(Parser, Debug)]
#[command(name = "labctl", version, about)]
struct Cli {
    /// The netstack node binary (default: $SHMLAB_NETSTACK, next to labctl, then $PATH)
    #[arg(long, global = true, value_name = "PATH")]
    netstack_bin: Option<PathBuf>,
    /// The bridge joining Linux nodes' taps to buses (default: $SHMLAB_VIRTIF_BRIDGE, next to
    /// labctl, then $PATH)
    #[arg(long, global = true, value_name = "PATH")]
    virtif_bridge_bin: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Validate a topology, create its buses, start and configure every node
    Up {
        /// Topology file (TOML)
        file: PathBuf,
        /// Lab directory (default: BASE/NAME; BASE/NAME then links to it)
        #[arg(long, value_name = "D")]
        dir: Option<PathBuf>,
        /// Seconds a node may take to answer on its control socket
        #[arg(long, default_value_t = 30.0, value_name = "S")]
        timeout: f64,
    },
    /// Stop every process of a lab and remove its directory
    Down {
        /// Lab name, or the topology file it was started from
        lab: String,
        /// Keep the buses, pcaps and logs (sockets and state go)
        #[arg(long)]
        keep: bool,
    },
    /// Show nodes (alive?), buses and per-interface counters
    Status {
        /// Lab name (default: every running lab)
        lab: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List running labs
    Ls,
    /// Run a node command and stream its output; exits with its status
    #[command(
        after_help = "Examples:\n  labctl exec mylab h1 -- ping -c 3 10.0.0.2\n  labctl exec h1 -- ifconfig -a      (when one lab is up)"
    )]
    Exec {
        /// [LAB] NODE (LAB may be left out when one lab is up)
        #[arg(required = true, num_args = 1..=2, value_name = "LAB/NODE")]
        target: Vec<String>,
        /// Send labctl's standard input to the command (e.g. `setkey -c < file`)
        #[arg(short = 'i', long)]
        stdin: bool,
        /// The node command and its arguments
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Bring a lab up, run its [[checks]], report, bring it down; non-zero exit on any failure
    Test {
        /// Topology file (TOML)
        file: PathBuf,
        /// Write a JUnit XML report here
        #[arg(long, value_name = "OUT")]
        junit: Option<PathBuf>,
        /// Leave the lab running afterwards
        #[arg(long)]
        keep: bool,
        /// Lab directory (as for `up`)
        #[arg(long, value_name = "D")]
        dir: Option<PathBuf>,
        /// Seconds a node may take to answer on its control socket
        #[arg(long, default_value_t = 30.0, value_name = "S")]
        timeout: f64,
    },
    /// Capture a live bus to pcap (passive reader: needs no lock, cannot slow the bus)
    #[command(
        after_help = "Examples:\n  labctl capture mylab lan1 -w - | tcpdump -n -r -\n  labctl capture mylab r1:shmif1 -w r1.pcap\n  labctl capture mylab lan1 --pcapng | wireshark -k -i -\n  labctl capture mylab lan1 -c 100 -w lan1.pcap"
    )]
    Capture {
        /// Lab name
        #[arg(required_unless_present = "bus_file")]
        lab: Option<String>,
        /// Bus name, or NODE:IF for the bus a node's interface is on
        #[arg(required_unless_present = "bus_file", value_name = "BUS|NODE:IF")]
        bus: Option<String>,
        /// Output file, or - for stdout
        #[arg(short = 'w', default_value = "-", value_name = "FILE")]
        write: String,
        /// Stop after this many frames
        #[arg(short = 'c', value_name = "N")]
        count: Option<u64>,
        /// Stop after this many seconds
        #[arg(long, value_name = "S")]
        duration: Option<f64>,
        /// Capture this bus file directly (used for lifetime captures)
        #[arg(long, value_name = "PATH", conflicts_with_all = ["lab", "bus"])]
        bus_file: Option<PathBuf>,
        /// Write pcapng (for `wireshark -k -i -`) instead of classic pcap
        #[arg(long)]
        pcapng: bool,
        /// Begin with the frames the ring still holds, then follow
        #[arg(long)]
        from_oldest: bool,
        /// No summary on stderr
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Write the frames a bus holds right now to a pcap file
    Dump {
        /// Lab name
        lab: String,
        /// Bus name
        bus: String,
        /// Output file, or - for stdout
        #[arg(short = 'w', value_name = "FILE")]
        write: String,
    },
    /// Check a topology file and report every problem with file:line:column
    Validate {
        /// Topology file (TOML)
        file: PathBuf,
    },
    /// Draw a topology as Graphviz DOT or Mermaid
    Graph {
        /// Topology file (TOML)
        file: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: graph::Format,
    },
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `print!`/`println!` that end labctl quietly when stdout is a closed pipe (`labctl status |
/// head`), as a tool killed by SIGPIPE would, instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}
macro_rules! outln {
    () => { write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // 128 + SIGPIPE, the status a shell shows for a tool the signal ended.
            std::process::exit(141);
        }
        eprintln!("labctl: writing to stdout: {e}");
        std::process::exit(1);
    }
}

fn main() -> ExitCode {
    // Nodes and captures outlive labctl. They get /dev/null and their log files as stdio, and
    // nothing else of ours: descriptors labctl inherited from its caller (a script's `exec
    // 3>&1`, a harness's extra pipe) would otherwise pass on to them and keep the caller's pipe
    // open until `labctl down`. Everything labctl opens itself is close-on-exec already.
    close_fds::set_fds_cloexec_threadsafe(3, &[]);
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("labctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(file: &Path) -> Result<(topology::Topology, topology::Source)> {
    Ok(topology::load(file)?)
}

/// Options for `up` and `test`. Ctrl-C and SIGTERM no longer kill labctl outright: they set
/// `cancel`, and labctl stops what it started before it exits.
fn up_options(cli: &Bins, dir: Option<PathBuf>, timeout: f64) -> UpOptions {
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, cancel.clone());
    }
    UpOptions {
        dir,
        netstack_bin: cli.netstack.clone(),
        bridge_bin: cli.bridge.clone(),
        ready_timeout: Duration::from_secs_f64(timeout.max(0.1)),
        progress: std::io::stderr().is_terminal(),
        cancel,
    }
}

fn bring_up(file: &Path, opts: &UpOptions) -> Result<(topology::Topology, LabState)> {
    let (topo, src) = load(file)?;
    for w in lifecycle::warnings(&topo) {
        eprintln!("labctl: warning: {w}");
    }
    let state = lifecycle::up(&topo, &src, opts)?;
    Ok((topo, state))
}

/// A lab named directly, or through the topology file it was started from.
fn lab_name(arg: &str) -> Result<String> {
    let p = Path::new(arg);
    if p.is_file() {
        if let Ok((topo, _)) = load(p) {
            return Ok(topo.name.value);
        }
        // A file edited since `up` may no longer validate; its name is all `down` needs.
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {arg}"))?;
        let table: toml::Table =
            toml::from_str(&text).with_context(|| format!("{arg}: cannot read the lab name"))?;
        return match table.get("name").and_then(|n| n.as_str()) {
            Some(name) if topology::safe_name(name).is_ok() => Ok(name.to_string()),
            _ => bail!("{arg}: no valid lab `name` in this file"),
        };
    }
    Ok(arg.to_string())
}

/// The binaries named on the command line.
struct Bins {
    netstack: Option<PathBuf>,
    bridge: Option<PathBuf>,
}

fn run(cli: Cli) -> Result<ExitCode> {
    let bins = Bins {
        netstack: cli.netstack_bin,
        bridge: cli.virtif_bridge_bin,
    };
    match cli.cmd {
        Cmd::Up { file, dir, timeout } => {
            let opts = up_options(&bins, dir, timeout);
            let (_, state) = bring_up(&file, &opts)?;
            out!("{}", lifecycle::summary(&state));
            outln!(
                "lab {} is up in {}\n  labctl exec {} NODE -- CMD ...    labctl down {}",
                state.name,
                state.dir.display(),
                state.name,
                state.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Down { lab, keep } => {
            let name = lab_name(&lab)?;
            let report = lifecycle::down(&name, keep)?;
            let r = &report.teardown;
            let mut msg = format!("lab {name} is down: {} processes stopped", r.stopped);
            if r.killed > 0 {
                msg.push_str(&format!(" ({} needed SIGKILL)", r.killed));
            }
            if r.found_by_marker > 0 {
                msg.push_str(&format!(
                    ", {} of them found by their marker (not recorded with a pid)",
                    r.found_by_marker
                ));
            }
            if r.already_dead > 0 {
                msg.push_str(&format!(", {} were already dead", r.already_dead));
            }
            if r.namespaces > 0 {
                msg.push_str(&format!(", {} network namespaces deleted", r.namespaces));
            }
            if keep {
                msg.push_str(&format!("; kept {}", report.dir.display()));
            }
            outln!("{msg}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { lab, json } => status(lab, json),
        Cmd::Ls => {
            let names = lab::lab_names();
            if names.is_empty() {
                outln!("no lab is up");
            }
            let mut rows = vec![[
                "LAB".to_string(),
                "NODES".to_string(),
                "ALIVE".to_string(),
                "DIR".to_string(),
            ]];
            for n in names {
                if let Ok(s) = lab::find_lab(&n) {
                    let alive = s.nodes.iter().filter(|x| x.alive()).count();
                    rows.push([
                        n,
                        s.nodes.len().to_string(),
                        alive.to_string(),
                        s.dir.display().to_string(),
                    ]);
                }
            }
            if rows.len() > 1 {
                out!("{}", lifecycle::table(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec { target, stdin, cmd } => exec(&target, stdin, &cmd),
        Cmd::Test {
            file,
            junit,
            keep,
            dir,
            timeout,
        } => test(&bins, &file, junit, keep, dir, timeout),
        Cmd::Capture {
            lab,
            bus,
            write,
            count,
            duration,
            bus_file,
            pcapng,
            from_oldest,
            quiet,
        } => {
            let path = match bus_file {
                Some(p) => p,
                None => {
                    let state = lab::find_lab(&lab.unwrap_or_default())?;
                    let bus = bus.unwrap_or_default();
                    // NODE:IF (names never hold ':'): the bus its node's driver says carries it.
                    match bus.split_once(':') {
                        Some((node, ifname)) => {
                            let ns = state.node(node)?;
                            state.bus_path(&ns.driver().capture_point(&ns.info, ifname)?)?
                        }
                        None => state.bus_path(&bus)?,
                    }
                }
            };
            if write == "-" && std::io::stdout().is_terminal() {
                bail!("pcap is binary: give -w FILE, or pipe stdout (`-w - | tcpdump -r -`)");
            }
            let out = capture::open_output(&write)?;
            let limits = capture::Limits {
                count,
                duration: duration.map(|d| Duration::from_secs_f64(d.max(0.0))),
                from_oldest,
            };
            let format = if pcapng {
                capture::Format::PcapNg
            } else {
                capture::Format::Pcap
            };
            let r = capture::capture(&path, out, limits, format)?;
            if !quiet {
                eprintln!(
                    "labctl: {} frames captured from {}, {} lost (bus overwrote them first)",
                    r.frames,
                    path.display(),
                    r.lost
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Dump { lab, bus, write } => {
            let state = lab::find_lab(&lab)?;
            let path = state.bus_path(&bus)?;
            let out = capture::open_output(&write)?;
            let n = capture::dump(&path, out)?;
            eprintln!(
                "labctl: {n} frames from {} written to {write}",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Validate { file } => {
            let (topo, src) = load(&file)?;
            outln!(
                "{}: lab \"{}\" is valid: {} nodes, {} buses, {} checks",
                file.display(),
                topo.name.value,
                topo.nodes.len(),
                topo.buses.len(),
                topo.checks.len()
            );
            for d in topo.unsupported(&src) {
                outln!("note: `up` will refuse this: {d}");
            }
            for w in lifecycle::warnings(&topo) {
                outln!("note: {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Graph { file, format } => {
            let (topo, _) = load(&file)?;
            out!("{}", graph::render(&topo, format));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "labctl", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exec(target: &[String], with_stdin: bool, cmd: &[String]) -> Result<ExitCode> {
    let (state, node_name) = match target {
        [node] => (lab::only_lab()?, node.as_str()),
        [lab, node] => (lab::find_lab(lab)?, node.as_str()),
        _ => bail!("give [LAB] NODE before --"),
    };
    let ns = state.node(node_name)?;
    let driver = ns.driver();
    if !driver.alive() {
        bail!("{}", driver.not_running(&state.name, &ns.info));
    }
    let status = driver
        .exec(&ns.info, cmd, with_stdin)
        .with_context(|| format!("lab {}: node {node_name}", state.name))?;
    Ok(ExitCode::from(status.clamp(0, 255) as u8))
}

fn test(
    bin: &Bins,
    file: &Path,
    junit: Option<PathBuf>,
    keep: bool,
    dir: Option<PathBuf>,
    timeout: f64,
) -> Result<ExitCode> {
    let opts = up_options(bin, dir, timeout);
    let (topo, src) = load(file)?;
    let name = topo.name.value.clone();
    for w in lifecycle::warnings(&topo) {
        eprintln!("labctl: warning: {w}");
    }
    let started = std::time::Instant::now();
    let state = match lifecycle::up(&topo, &src, &opts) {
        Ok(s) => s,
        Err(e) => {
            if let Some(path) = &junit {
                let r = checks::CheckResult {
                    name: "up".into(),
                    passed: false,
                    detail: format!("{e:#}"),
                    output: String::new(),
                    duration: started.elapsed(),
                };
                write_file(path, &checks::junit(&name, &[r]))?;
            }
            return Err(e);
        }
    };
    outln!(
        "lab {name}: {} nodes up in {:.2}s; running {} checks",
        state.nodes.len(),
        started.elapsed().as_secs_f64(),
        topo.checks.len()
    );
    let mut results = Vec::new();
    for (i, c) in topo.checks.iter().enumerate() {
        if opts.cancel.load(Ordering::Relaxed) {
            outln!("interrupted: skipping the remaining checks");
            break;
        }
        let r = checks::run_one(c, &state);
        outln!(
            "{} [{}/{}] {} ({:.2}s): {}",
            if r.passed { "PASS" } else { "FAIL" },
            i + 1,
            topo.checks.len(),
            r.name,
            r.duration.as_secs_f64(),
            r.detail
        );
        if !r.passed && !r.output.is_empty() {
            for l in r.output.lines() {
                outln!("    {l}");
            }
        }
        results.push(r);
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    if let Some(path) = &junit {
        write_file(path, &checks::junit(&name, &results))?;
    }
    if keep {
        outln!("lab {name} left running (--keep): labctl down {name}");
    } else {
        lifecycle::down(&name, false).with_context(|| format!("bringing lab {name} down"))?;
    }
    outln!("{} passed, {failed} failed", results.len() - failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[derive(Serialize)]
struct BusStatus {
    name: String,
    path: PathBuf,
    size: u64,
    generation: u64,
    pcap: Option<PathBuf>,
}

#[derive(Serialize)]
struct LabStatus {
    name: String,
    dir: PathBuf,
    topology: PathBuf,
    nodes: Vec<NodeStatus>,
    buses: Vec<BusStatus>,
}

fn lab_status(state: &LabState, json: bool) -> LabStatus {
    let nodes = lifecycle::parallel(&state.nodes, 8, |_, n| n.driver().status(&n.info, json));
    let buses = state
        .buses
        .iter()
        .map(|b| {
            let (size, generation) = if b.path.is_file() {
                shmif::Bus::attach(&b.path, &shmif::BusConfig::default())
                    .map(|bus| (bus.size(), bus.header().gen))
                    .unwrap_or((0, 0))
            } else {
                (0, 0)
            };
            BusStatus {
                name: b.name.clone(),
                path: b.path.clone(),
                size,
                generation,
                pcap: b.pcap.clone(),
            }
        })
        .collect();
    LabStatus {
        name: state.name.clone(),
        dir: state.dir.clone(),
        topology: state.topology.clone(),
        nodes,
        buses,
    }
}

fn status(lab: Option<String>, json: bool) -> Result<ExitCode> {
    let states: Vec<LabState> = match lab {
        Some(name) => vec![lab::find_lab(&lab_name(&name)?)?],
        None => lab::lab_names()
            .iter()
            .filter_map(|n| lab::find_lab(n).ok())
            .collect(),
    };
    let all: Vec<LabStatus> = states.iter().map(|s| lab_status(s, json)).collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        outln!("no lab is up");
    }
    for s in &all {
        outln!(
            "lab {} ({}), from {}",
            s.name,
            s.dir.display(),
            s.topology.display()
        );
        let mut rows = vec![[
            "NODE".to_string(),
            "KIND".to_string(),
            "PID".to_string(),
            "STATE".to_string(),
            "INTERFACES".to_string(),
        ]];
        for n in &s.nodes {
            let ifs: Vec<String> = n
                .interfaces
                .iter()
                .map(|i| {
                    let at = match &i.tap {
                        Some(t) => format!("tap {t}"),
                        None => i.bus.clone(),
                    };
                    format!("{}@{} {}", i.name, at, i.addrs.join(" "))
                })
                .collect();
            rows.push([
                n.name.clone(),
                n.kind.clone(),
                n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                n.state.clone(),
                ifs.join(", "),
            ]);
        }
        out!("{}", lifecycle::table(&rows));
        for n in &s.nodes {
            for i in &n.interfaces {
                let Some(lines) = i.counters.as_array() else {
                    continue;
                };
                outln!("  {} {}:", n.name, i.name);
                for l in lines.iter().filter_map(|l| l.as_str()) {
                    outln!("    {l}");
                }
            }
        }
        for b in &s.buses {
            outln!(
                "  bus {}: {} ({} bytes, generation {}){}",
                b.name,
                b.path.display(),
                b.size,
                b.generation,
                b.pcap
                    .as_ref()
                    .map(|p| format!(", captured to {}", p.display()))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
