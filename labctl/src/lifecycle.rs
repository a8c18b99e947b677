//! `up` and `down`: from a validated topology to running, configured nodes and back to nothing.
//!
//! `up` checks the privileges Linux nodes and host taps need and each kind's binaries
//! ([`driver`] preflight), claims the lab directory (refusing a lab that is up), creates the
//! buses, then starts every node through its kind's driver. Every process goes into the
//! [journal](crate::journal) before it is spawned, so `down` finds it whenever labctl dies.
//! Nodes are then configured in parallel. Until `up` returns the lab, an [`UpGuard`] owns it:
//! on any error, early return, Ctrl-C or panic it tears down what was started and removes the
//! directory.
//!
//! `down` and the guard share [`teardown`]: resolve intents to processes by their marker,
//! ask each node's driver to stop, stop every process marked as the lab's, SIGKILL what is
//! left after a grace period, sweep again for stragglers, then let each driver clean up
//! (namespaces). The directory goes only once nothing of the lab runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rustix::process::Signal;

use crate::driver::{self, Binaries, ConfigCx, StartCx};
use crate::journal::{self, Journal, ProcRecord, Salvage};
use crate::lab::{self, BusState, CaptureState, LabState, NodeState, Proc};
use crate::linux::HostAccess;
use crate::topology::{Node, Source, Topology};

/// How to bring a lab up.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Put the lab here instead of `BASE/NAME` (which becomes a symlink to it).
    pub dir: Option<PathBuf>,
    /// The `netstack` binary (see [`lab::find_netstack`]).
    pub netstack_bin: Option<PathBuf>,
    /// The `virtif-bridge` binary (see [`linux::find_bridge`]).
    pub bridge_bin: Option<PathBuf>,
    /// How long a node may take to open its control socket.
    pub ready_timeout: Duration,
    /// Show a progress bar (only sensible when stderr is a terminal).
    pub progress: bool,
    /// Set (by a SIGINT/SIGTERM handler) to abandon the start-up and clean up.
    pub cancel: Arc<AtomicBool>,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            dir: None,
            netstack_bin: None,
            bridge_bin: None,
            ready_timeout: Duration::from_secs(30),
            progress: false,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// Things `up` will not apply, from each kind's driver (IPv6 on netstack nodes, for now).
pub fn warnings(topo: &Topology) -> Vec<String> {
    topo.nodes
        .iter()
        .flat_map(|n| {
            driver::ops(n.kind.value)
                .map(|ops| (ops.warnings)(n))
                .unwrap_or_default()
        })
        .collect()
}

/// Runs `f` on every item with up to `workers` threads; results in item order.
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(usize, &T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(i, item);
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Claims `BASE/NAME` for a new lab: refuses a lab that is up, clears a stale one.
fn claim_dir(name: &str, dir: Option<&Path>) -> Result<PathBuf> {
    let base = lab::base_dir();
    lab::create_private_dir(&base)
        .with_context(|| format!("creating the lab base dir {}", base.display()))?;
    let link = base.join(name);
    if link.symlink_metadata().is_ok() {
        // Its processes by record and by marker (a state file that does not load, or an `up`
        // killed before it recorded a pid, still leaves them marked).
        let marked = std::fs::canonicalize(&link)
            .map(|d| journal::marked_processes(&journal::lab_prefix(&d)))
            .unwrap_or_default();
        let (recorded, lingering) = match LabState::load(&link) {
            Ok(state) => (
                state
                    .procs()
                    .into_iter()
                    .filter_map(|r| r.proc.clone().filter(Proc::alive))
                    .collect(),
                state
                    .nodes
                    .iter()
                    .flat_map(|n| n.driver().lingering())
                    .collect(),
            ),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let alive = journal::dedup(
            recorded
                .into_iter()
                .chain(marked.into_iter().map(|m| m.proc)),
        )
        .len();
        if alive + lingering.len() > 0 {
            let also = if lingering.is_empty() {
                String::new()
            } else {
                format!(", {}", lingering.join(", "))
            };
            bail!(
                "lab \"{name}\" is already up ({alive} processes running{also}, dir {}); run `labctl down {name}` first",
                link.display()
            );
        }
        eprintln!(
            "labctl: removing stale lab dir {} (no process of it is running)",
            link.display()
        );
        remove_lab_dir(&link, false)?;
    }
    match dir {
        None => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&link)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        anyhow!("lab \"{name}\" is being started by another labctl")
                    } else {
                        anyhow!("creating lab dir {}: {e}", link.display())
                    }
                })?;
            Ok(link)
        }
        Some(d) => {
            let d = std::path::absolute(d)?;
            lab::create_private_dir(&d)
                .with_context(|| format!("creating lab dir {}", d.display()))?;
            if std::fs::read_dir(&d)?.next().is_some() {
                bail!("lab dir {} is not empty", d.display());
            }
            std::os::unix::fs::symlink(&d, &link)
                .with_context(|| format!("linking {} to {}", link.display(), d.display()))?;
            Ok(link)
        }
    }
}

/// Removes a lab directory (following the `BASE/NAME` symlink). With `keep`, buses, pcaps and
/// logs stay and only the sockets and the state file go.
pub fn remove_lab_dir(link: &Path, keep: bool) -> Result<()> {
    let target = std::fs::read_link(link).ok();
    let dir = target.clone().unwrap_or_else(|| link.to_path_buf());
    if keep {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            if ext == "sock" || p.file_name().and_then(|f| f.to_str()) == Some(lab::STATE_FILE) {
                let _ = std::fs::remove_file(&p);
            }
        }
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    if target.is_some() {
        std::fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    Ok(())
}

/// Owns a lab while `up` builds it: dropped armed (an error, an early return, a panic), it
/// tears down everything the journal holds and removes the lab dir.
pub struct UpGuard {
    link: PathBuf,
    journal: Journal,
    armed: bool,
}

impl UpGuard {
    fn new(link: PathBuf, state: LabState) -> UpGuard {
        UpGuard {
            link,
            journal: Journal::new(state),
            armed: true,
        }
    }

    /// The lab is up: it stays.
    fn disarm(mut self) -> LabState {
        self.armed = false;
        self.journal.state.clone()
    }

    /// Tears down now and says how it went.
    fn abort(mut self) -> Teardown {
        self.armed = false;
        self.tear_down()
    }

    fn tear_down(&mut self) -> Teardown {
        let t = teardown(&mut self.journal.state, None);
        self.journal.reap();
        if t.survivors.is_empty() && t.problems.is_empty() {
            if let Err(e) = remove_lab_dir(&self.link, false) {
                eprintln!("labctl: {e:#}");
            }
        }
        t
    }
}

impl Drop for UpGuard {
    fn drop(&mut self) {
        if self.armed {
            let t = self.tear_down();
            if let Some(left) = t.left() {
                eprintln!("labctl: {left}");
            }
        }
    }
}

/// Brings the lab up. On error nothing of it is left running and its directory is gone (or
/// the error says what was left).
pub fn up(topo: &Topology, src: &Source, opts: &UpOptions) -> Result<LabState> {
    let unsupported = topo.unsupported(src);
    if !unsupported.is_empty() {
        let lines: Vec<String> = unsupported.iter().map(|d| d.to_string()).collect();
        bail!("cannot start this lab:\n{}", lines.join("\n"));
    }
    // Privileges and binaries first: nothing may be started for a lab that cannot come up.
    let mut bins = Binaries {
        netstack_flag: opts.netstack_bin.clone(),
        bridge_flag: opts.bridge_bin.clone(),
        access: if topo.needs_host_network() {
            Some(HostAccess::check(topo, &topo.file)?)
        } else {
            None
        },
        ..Default::default()
    };
    for n in &topo.nodes {
        (driver::ops(n.kind.value)?.preflight)(n, &mut bins)
            .with_context(|| format!("node {}", n.name.value))?;
    }
    let name = topo.name.value.as_str();
    let link = claim_dir(name, opts.dir.as_deref())?;
    let dir = match std::fs::canonicalize(&link) {
        Ok(d) => d,
        Err(e) => {
            let _ = remove_lab_dir(&link, false);
            bail!("lab dir {}: {e}", link.display());
        }
    };
    let state = LabState {
        name: name.to_string(),
        topology: std::path::absolute(&topo.file).unwrap_or(topo.file.clone()),
        dir: dir.clone(),
        started_unix: lab::now_unix(),
        nodes: Vec::new(),
        buses: topo
            .buses
            .iter()
            .map(|b| BusState {
                name: b.name.clone(),
                path: dir.join(format!("{}.bus", b.name)),
                pcap: b.capture.then(|| dir.join(format!("{}.pcap", b.name))),
            })
            .collect(),
        captures: Vec::new(),
    };
    let mut guard = UpGuard::new(link, state);
    match start(topo, opts, &bins, &mut guard.journal) {
        Ok(()) => Ok(guard.disarm()),
        Err(e) => {
            let t = guard.abort();
            let what = t
                .left()
                .unwrap_or_else(|| "nothing was left running".to_string());
            Err(e.context(format!("bringing up lab \"{name}\" failed; {what}")))
        }
    }
}

fn start(topo: &Topology, opts: &UpOptions, bins: &Binaries, journal: &mut Journal) -> Result<()> {
    let dir = journal.state.dir.clone();
    let cancelled = || -> Result<()> {
        if opts.cancel.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    };
    for (b, state) in topo.buses.iter().zip(&journal.state.buses) {
        // Nodes attach with their default config and follow the mode the bus is in.
        let config = if b.netbsd {
            shmif::BusConfig::netbsd()
        } else {
            shmif::BusConfig {
                size: b.size.unwrap_or(shmif::format::DEFAULT_BUS_SIZE),
                ..Default::default()
            }
        };
        shmif::Bus::attach(&state.path, &config)
            .with_context(|| format!("creating bus {} at {}", b.name, state.path.display()))?;
    }
    // Every process the lab will run, as an intent, on disk in one save before any starts:
    // from here on `down` finds whatever exists, whenever labctl dies.
    for n in &topo.nodes {
        let plan = driver::PlanCx {
            dir: &dir,
            state: &journal.state,
            bins,
        };
        let kind = (driver::ops(n.kind.value)?.plan)(n, &plan)
            .with_context(|| format!("node {}", n.name.value))?;
        journal.state.nodes.push(NodeState {
            info: driver::node_info(n, &dir),
            kind,
        });
    }
    let captures: Vec<(String, PathBuf, PathBuf)> = journal
        .state
        .buses
        .iter()
        .filter_map(|b| Some((b.name.clone(), b.path.clone(), b.pcap.clone()?)))
        .collect();
    for (bus, _, _) in &captures {
        journal.state.captures.push(CaptureState {
            bus: bus.clone(),
            proc: ProcRecord::intent(&dir, &format!("capture:{bus}")),
        });
    }
    journal.save()?;

    for (index, n) in topo.nodes.iter().enumerate() {
        cancelled()?;
        let ops = driver::ops(n.kind.value)?;
        let mut cx = StartCx {
            journal: &mut *journal,
            bins,
            index,
        };
        (ops.start)(n, &mut cx).with_context(|| format!("node {}", n.name.value))?;
        journal.checkpoint()?;
    }

    // Lifetime captures run as `labctl capture` processes of their own.
    let exe = std::env::current_exe()?;
    for (i, (bus, path, pcap)) in captures.iter().enumerate() {
        let log = dir.join(format!("{bus}.capture.log"));
        let capture_log =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(["capture", "--bus-file"])
            .arg(path)
            .arg("-w")
            .arg(pcap)
            .arg("--quiet")
            // The bus is new: from its oldest record on is from its first frame on, however
            // long this process takes to attach.
            .arg("--from-oldest")
            .stdin(std::process::Stdio::null())
            // Never the caller's pipes: `labctl up | cat` must end when up does.
            .stdout(std::process::Stdio::null())
            .stderr(capture_log)
            .process_group(0);
        let marker = journal.state.captures[i].proc.marker.clone();
        let (proc, child) = journal
            .spawn(&marker, &mut cmd)
            .with_context(|| format!("starting the capture of bus {bus}"))?;
        journal.state.captures[i].proc.proc = Some(proc);
        journal.adopt(child);
    }
    // Every pid on disk before configuration, which may take a while.
    journal.save()?;

    let bar = if opts.progress {
        indicatif::ProgressBar::new(topo.nodes.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} nodes ready {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("up {}", topo.name.value));

    let state = &journal.state;
    let cx = ConfigCx {
        state,
        ready_timeout: opts.ready_timeout,
        cancel: &opts.cancel,
    };
    let jobs: Vec<(&Node, &NodeState)> = topo
        .nodes
        .iter()
        .filter_map(|n| Some((n, state.node(&n.name.value).ok()?)))
        .collect();
    let results = parallel(&jobs, 8, |_, (node, ns)| {
        let r = ns.driver().configure(&ns.info, node, &cx);
        bar.inc(1);
        r
    });
    bar.finish_and_clear();
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err())
        .map(|e| format!("{e:#}"))
        .collect();
    cancelled()?;
    if !errors.is_empty() {
        let shown = errors.len().min(10);
        let mut msg = errors[..shown].join("\n");
        if errors.len() > shown {
            msg.push_str(&format!(
                "\n... and {} more nodes failed",
                errors.len() - shown
            ));
        }
        bail!("{msg}");
    }
    Ok(())
}

/// What tearing a lab down did.
#[derive(Debug, Default)]
pub struct Teardown {
    /// Processes of the lab that were running and are gone now.
    pub stopped: usize,
    /// How many of them needed SIGKILL.
    pub killed: usize,
    /// Recorded processes that were gone already.
    pub already_dead: usize,
    /// Running processes found by their marker alone: an intent whose pid labctl did not
    /// live to record, or a process of the lab no record names.
    pub found_by_marker: usize,
    /// Processes that survived SIGKILL.
    pub survivors: Vec<u32>,
    /// Named network namespaces deleted.
    pub namespaces: usize,
    /// Clean-ups that failed (a namespace that would not go).
    pub problems: Vec<String>,
}

impl Teardown {
    /// What was left behind, if anything.
    pub fn left(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.survivors.is_empty() {
            parts.push(format!("processes {:?} survived SIGKILL", self.survivors));
        }
        parts.extend(self.problems.iter().cloned());
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// How long processes get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// Stops every process of the lab in `state` (and, from a state file that did not load,
/// `salvaged`), then cleans up after its nodes. See the module documentation for the order.
pub fn teardown(state: &mut LabState, salvaged: Option<&Salvage>) -> Teardown {
    let prefix = journal::lab_prefix(&state.dir);
    let mut t = Teardown::default();
    let marked = journal::marked_processes(&prefix);
    let mut resolved = 0;
    for r in state.procs_mut() {
        if r.resolve(&marked) {
            resolved += 1;
        }
    }
    t.found_by_marker = resolved;
    let recorded = journal::dedup(
        state
            .procs()
            .into_iter()
            .filter_map(|r| r.proc.clone())
            .chain(salvaged.into_iter().flat_map(|s| s.procs.iter().cloned())),
    );
    t.already_dead = recorded.iter().filter(|p| !p.alive()).count();
    let mut counted: Vec<Proc> = recorded.into_iter().filter(Proc::alive).collect();

    // Each node stops its own way and names what it found inside itself; the lab stops the
    // rest: captures, and what a state that did not load still names.
    let mut inside: Vec<Proc> = Vec::new();
    for n in &state.nodes {
        inside.extend(n.driver().stop());
    }
    let captures = state.captures.iter().filter_map(|c| c.proc.proc.as_ref());
    for p in captures.chain(salvaged.into_iter().flat_map(|s| &s.procs)) {
        p.signal(Signal::TERM);
    }
    let unlisted: Vec<Proc> = marked
        .into_iter()
        .map(|m| m.proc)
        .filter(|p| !counted.contains(p))
        .collect();
    for p in &unlisted {
        p.signal(Signal::TERM);
    }
    t.found_by_marker += unlisted.len();
    counted.extend(unlisted);

    let everything = journal::dedup(counted.iter().cloned().chain(inside));
    let (killed, mut survivors) = lab::wait_then_kill(&everything, GRACE);
    t.killed = killed.len();
    // Sweep again until nothing marked runs: a process still being spawned when the first
    // sweep looked (labctl killed between fork and exec) shows up now.
    for _ in 0..5 {
        let more: Vec<Proc> = journal::marked_processes(&prefix)
            .into_iter()
            .map(|m| m.proc)
            .filter(|p| !survivors.contains(p))
            .collect();
        if more.is_empty() {
            break;
        }
        for p in &more {
            p.signal(Signal::TERM);
        }
        let fresh: Vec<Proc> = more
            .iter()
            .filter(|p| !counted.contains(p))
            .cloned()
            .collect();
        t.found_by_marker += fresh.len();
        counted.extend(fresh);
        let (k, s) = lab::wait_then_kill(&more, GRACE);
        t.killed += k.len();
        survivors.extend(s);
    }
    survivors = journal::dedup(survivors);
    t.stopped = counted.iter().filter(|p| !survivors.contains(p)).count();
    t.survivors = survivors.iter().map(|p| p.pid).collect();

    for n in &state.nodes {
        match n.driver().cleanup() {
            Ok(k) => t.namespaces += k,
            Err(e) => t.problems.push(format!("node {}: {e:#}", n.name())),
        }
    }
    t
}

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    pub teardown: Teardown,
    pub dir: PathBuf,
}

/// Stops every process of lab `name`, deletes its namespaces and removes its directory (or
/// keeps buses, pcaps and logs). Works from the journal whatever moment `up` died at, and
/// from a state file it cannot read (by what it still names, and the lab's markers).
pub fn down(name: &str, keep: bool) -> Result<DownReport> {
    let link = lab::lab_path(name);
    if link.symlink_metadata().is_err() {
        // No directory, but perhaps what a lab whose directory went away left on the host.
        let mut report = DownReport {
            dir: link.clone(),
            ..Default::default()
        };
        for k in driver::kinds() {
            report.teardown.namespaces += (k.sweep_host)(name)?;
        }
        if report.teardown.namespaces > 0 {
            return Ok(report);
        }
        let up = lab::lab_names();
        bail!(
            "lab \"{name}\" is not up (no {}); running labs: {}",
            link.display(),
            if up.is_empty() {
                "none".into()
            } else {
                up.join(", ")
            }
        );
    }
    let dir = std::fs::canonicalize(&link).unwrap_or_else(|_| link.clone());
    let (mut state, salvaged) = match LabState::load(&link) {
        Ok(s) => (s, None),
        Err(e) if link.join(lab::STATE_FILE).is_file() => {
            let s = journal::salvage(&link);
            eprintln!(
                "labctl: {e:#}; stopping the {} processes it names ({} more it has no pid for), every process marked as this lab's, and its namespaces ({} named)",
                s.procs.len(),
                s.intents.len(),
                s.namespaces.len()
            );
            (LabState::empty(name, &dir), Some(s))
        }
        // `up` died before it first saved: no records, but its marks, if it got that far.
        Err(_) => (LabState::empty(name, &dir), None),
    };
    let mut t = teardown(&mut state, salvaged.as_ref());
    if salvaged.is_some() {
        // What the unreadable state held on the host (a named namespace), found by name: no
        // other lab records it.
        for k in driver::kinds() {
            match (k.sweep_host)(name) {
                Ok(n) => t.namespaces += n,
                Err(e) => t.problems.push(format!("{e:#}")),
            }
        }
    }
    if let Some(left) = t.left() {
        bail!(
            "lab \"{name}\": {left}; left {} in place so `labctl down {name}` can try again",
            link.display()
        );
    }
    remove_lab_dir(&link, keep)?;
    Ok(DownReport {
        teardown: t,
        dir: state.dir,
    })
}

/// A text table: node, kind, pid, interfaces with their buses (or taps) and addresses; then
/// where each node lives, when its driver says (a Linux node's namespace).
pub fn summary(state: &LabState) -> String {
    let mut rows = vec![[
        "NODE".to_string(),
        "KIND".to_string(),
        "PID".to_string(),
        "INTERFACE".to_string(),
        "BUS".to_string(),
        "ADDRESSES".to_string(),
    ]];
    for n in &state.nodes {
        let d = n.driver();
        let kind = d.kind().as_str().to_string();
        let pid = d.pid().map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        if n.info.interfaces.is_empty() {
            rows.push([
                n.name().to_string(),
                kind.clone(),
                pid.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for (i, ifc) in n.info.interfaces.iter().enumerate() {
            let (name, kind, pid) = if i == 0 {
                (n.name().to_string(), kind.clone(), pid.clone())
            } else {
                (String::new(), String::new(), String::new())
            };
            rows.push([
                name,
                kind,
                pid,
                ifc.name.clone(),
                ifc.link(),
                ifc.addrs.join(" "),
            ]);
        }
    }
    let mut s = table(&rows);
    for n in &state.nodes {
        if let Some(place) = n.driver().place() {
            s.push_str(&format!("{}: {place}\n", n.name()));
        }
    }
    s
}

/// Left-aligned columns separated by two spaces.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}
