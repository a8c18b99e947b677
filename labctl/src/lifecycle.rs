//! `up` and `down`: from a validated topology to running, configured nodes and back to nothing.
//!
//! `up` checks the privileges Linux nodes and host taps need, claims the lab directory
//! (refusing a lab that is up), creates the buses, starts every node (a netstack process, or a
//! Linux node's namespace and its bridges), recording each in `state.json` as it goes (so `down`
//! works even if labctl dies), then waits for each control socket and configures the nodes in
//! parallel. Any failure stops every process it started, deletes the namespaces it made and
//! removes the directory before the error is returned.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::lab::{self, BusState, CaptureState, IfState, LabState, NodeState, Proc};
use crate::linux::{self, HostAccess, Netns};
use crate::node;
use crate::topology::{Link, Node, NodeKind, RouteDest, Source, Topology};

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

/// Things `up` did not apply, to print as warnings (IPv6 addresses and routes of netstack
/// nodes for now; Linux nodes apply them).
pub fn warnings(topo: &Topology) -> Vec<String> {
    let mut out = Vec::new();
    for n in topo
        .nodes
        .iter()
        .filter(|n| n.kind.value != NodeKind::Linux)
    {
        for ifc in &n.interfaces {
            for a in ifc.addrs.iter().filter(|a| !a.value.is_v4()) {
                out.push(format!(
                    "{}: {}: {} not applied: nodes do not do IPv6 yet",
                    n.name.value, ifc.name.value, a.value
                ));
            }
        }
        for r in n.routes.iter().filter(|r| !r.via.value.is_ipv4()) {
            out.push(format!(
                "{}: route to {} via {} not applied: nodes do not do IPv6 yet",
                n.name.value, r.to.value, r.via.value
            ));
        }
    }
    out
}

/// The node commands that configure `node` once it answers, in order.
pub fn config_commands(node: &Node, bus_path: impl Fn(&str) -> PathBuf) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let mut cmds = Vec::new();
    for ifc in &node.interfaces {
        let name = ifc.name.value.as_str();
        match &ifc.link {
            Link::Bus(b) => {
                cmds.push(s(&["ifconfig", name, "create"]));
                let bus = bus_path(&b.value).display().to_string();
                cmds.push(s(&["ifconfig", name, "linkstr", &bus]));
            }
            // One command: `create` alone would attach host tap tapN first.
            Link::Tap(t) => cmds.push(s(&["ifconfig", name, "create", "linkstr", &t.value])),
        }
        if let Some(mtu) = ifc.mtu {
            cmds.push(s(&["ifconfig", name, "mtu", &mtu.to_string()]));
        }
        for (i, a) in ifc.addrs.iter().filter(|a| a.value.is_v4()).enumerate() {
            let mut c = s(&["ifconfig", name, "inet", &a.value.to_string()]);
            if i > 0 {
                c.push("alias".into());
            }
            cmds.push(c);
        }
        cmds.push(s(&["ifconfig", name, "up"]));
    }
    if node.forwarding {
        cmds.push(s(&["sysctl", "-w", "net.inet.ip.forwarding=1"]));
    }
    for (k, v) in &node.sysctl {
        cmds.push(s(&["sysctl", "-w", &format!("{k}={v}")]));
    }
    for r in node.routes.iter().filter(|r| r.via.value.is_ipv4()) {
        if let RouteDest::Net(p) = r.to.value {
            if !matches!(p.addr, IpAddr::V4(_)) {
                continue;
            }
        }
        cmds.push(r.argv());
    }
    for e in &node.exec {
        cmds.push(e.value.clone());
    }
    cmds
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
        if let Ok(state) = LabState::load(&link) {
            let alive = state.procs().iter().filter(|p| p.alive()).count();
            let namespaces = state
                .named_netns()
                .into_iter()
                .filter(|n| Netns::Named(n.clone()).alive())
                .count();
            if alive + namespaces > 0 {
                bail!(
                    "lab \"{name}\" is already up ({alive} processes running, {namespaces} network namespaces, dir {}); run `labctl down {name}` first",
                    link.display()
                );
            }
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

/// What was started so far, for cleaning up after a failure.
struct Started {
    link: PathBuf,
    procs: Vec<Proc>,
    children: Vec<Child>,
    /// Named namespaces made so far.
    netns: Vec<Netns>,
}

impl Started {
    fn abort(mut self) {
        lab::stop_all(&self.procs, Duration::from_secs(2));
        for c in &mut self.children {
            let _ = c.try_wait();
        }
        for ns in &self.netns {
            if let Err(e) = ns.remove() {
                eprintln!("labctl: {e:#}");
            }
        }
        let _ = remove_lab_dir(&self.link, false);
    }
}

/// Named namespaces `shmlab-LAB-*` that no lab under the base dir records: leftovers of a lab
/// whose directory is gone.
pub fn orphan_netns(lab_name: &str) -> Vec<String> {
    let prefix = linux::netns_name(lab_name, "");
    let owned: Vec<String> = lab::lab_names()
        .iter()
        .filter_map(|n| LabState::load(&lab::lab_path(n)).ok())
        .flat_map(|s| s.named_netns())
        .collect();
    linux::named_netns()
        .into_iter()
        .filter(|n| n.starts_with(&prefix) && !owned.contains(n))
        .collect()
}

/// Deletes namespace `name` left over from an earlier run of this lab, or fails when another
/// lab owns it (`shmlab-a-b-c` is lab `a` node `b-c` and lab `a-b` node `c`).
fn clear_leftover_netns(lab_name: &str, name: &str) -> Result<()> {
    if !Netns::Named(name.to_string()).alive() {
        return Ok(());
    }
    for other in lab::lab_names().iter().filter(|n| *n != lab_name) {
        if let Ok(s) = LabState::load(&lab::lab_path(other)) {
            if s.named_netns().iter().any(|n| n == name) {
                bail!(
                    "network namespace {name} belongs to lab \"{other}\"; run `labctl down {other}` first, or rename a lab or node"
                );
            }
        }
    }
    eprintln!("labctl: removing network namespace {name}, left over from an earlier run of lab {lab_name}");
    Netns::Named(name.to_string()).remove().with_context(|| {
        format!("removing the leftover namespace {name}; run `labctl down {lab_name}` or `ip netns del {name}`")
    })
}

/// Brings the lab up. On error nothing of it is left running and its directory is gone.
pub fn up(topo: &Topology, src: &Source, opts: &UpOptions) -> Result<LabState> {
    let unsupported = topo.unsupported(src);
    if !unsupported.is_empty() {
        let lines: Vec<String> = unsupported.iter().map(|d| d.to_string()).collect();
        bail!("cannot start this lab:\n{}", lines.join("\n"));
    }
    // Privileges first: nothing may be started for a lab that cannot come up.
    let access = if topo.needs_host_network() {
        Some(HostAccess::check(topo, &topo.file)?)
    } else {
        None
    };
    let bins = Binaries {
        netstack: if topo
            .nodes
            .iter()
            .any(|n| n.kind.value == NodeKind::Netstack)
        {
            Some(lab::find_netstack(opts.netstack_bin.as_deref())?)
        } else {
            None
        },
        bridge: if topo
            .nodes
            .iter()
            .any(|n| n.kind.value == NodeKind::Linux && !n.interfaces.is_empty())
        {
            Some(linux::find_bridge(opts.bridge_bin.as_deref())?)
        } else {
            None
        },
        access,
    };
    let name = topo.name.value.as_str();
    let link = claim_dir(name, opts.dir.as_deref())?;
    let mut started = Started {
        link: link.clone(),
        procs: Vec::new(),
        children: Vec::new(),
        netns: Vec::new(),
    };
    match start(topo, opts, &bins, &link, &mut started) {
        Ok(state) => {
            // The children keep running after labctl exits; `down` stops them by pid.
            Ok(state)
        }
        Err(e) => {
            started.abort();
            Err(e.context(format!(
                "bringing up lab \"{name}\" failed; nothing was left running"
            )))
        }
    }
}

/// What `up` found before it started anything.
struct Binaries {
    netstack: Option<PathBuf>,
    bridge: Option<PathBuf>,
    access: Option<HostAccess>,
}

fn start(
    topo: &Topology,
    opts: &UpOptions,
    bins: &Binaries,
    link: &Path,
    started: &mut Started,
) -> Result<LabState> {
    let dir = std::fs::canonicalize(link)?;
    let name = &topo.name.value;

    let mut buses = Vec::new();
    for b in &topo.buses {
        let path = dir.join(format!("{}.bus", b.name));
        // Nodes attach with their default config and follow the mode the bus is in.
        let config = if b.netbsd {
            shmif::BusConfig::netbsd()
        } else {
            shmif::BusConfig {
                size: b.size.unwrap_or(shmif::format::DEFAULT_BUS_SIZE),
                ..Default::default()
            }
        };
        shmif::Bus::attach(&path, &config)
            .with_context(|| format!("creating bus {} at {}", b.name, path.display()))?;
        buses.push(BusState {
            name: b.name.clone(),
            path,
            pcap: b.capture.then(|| dir.join(format!("{}.pcap", b.name))),
        });
    }
    let bus_path = |bus: &str| {
        buses
            .iter()
            .find(|b| b.name == bus)
            .map(|b| b.path.clone())
            .unwrap_or_default()
    };

    let mut state = LabState {
        name: name.clone(),
        topology: std::path::absolute(&topo.file).unwrap_or(topo.file.clone()),
        dir: dir.clone(),
        started_unix: lab::now_unix(),
        nodes: Vec::new(),
        buses: buses.clone(),
        captures: Vec::new(),
    };

    let cancelled = || -> Result<()> {
        if opts.cancel.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    };
    if bins.access == Some(HostAccess::Root) {
        for n in topo
            .nodes
            .iter()
            .filter(|n| n.kind.value == NodeKind::Linux)
        {
            clear_leftover_netns(name, &linux::netns_name(name, &n.name.value))?;
        }
    }
    // From here on `down` finds whatever exists, even if labctl dies.
    state.save()?;

    for n in &topo.nodes {
        cancelled()?;
        let nname = &n.name.value;
        let log = dir.join(format!("{nname}.log"));
        let interfaces: Vec<IfState> = n
            .interfaces
            .iter()
            .map(|i| IfState {
                name: i.name.value.clone(),
                bus: i.bus().map(|b| b.value.clone()).unwrap_or_default(),
                tap: i.tap().map(|t| t.value.clone()),
                addrs: i.addrs.iter().map(|a| a.value.to_string()).collect(),
                bridge: None,
            })
            .collect();
        if n.kind.value == NodeKind::Linux {
            start_linux(
                n, bins, &dir, &mut state, started, log, interfaces, &bus_path,
            )
            .with_context(|| format!("node {nname}"))?;
            continue;
        }
        let socket = dir.join(format!("{nname}.sock"));
        if socket.as_os_str().len() > 107 {
            bail!(
                "node {nname}: control socket path {} is {} bytes, over the 107 a Unix socket allows; use a shorter lab dir (--dir)",
                socket.display(),
                socket.as_os_str().len()
            );
        }
        let bin = bins.netstack.as_deref().context("no netstack binary")?;
        let child = lab::spawn_node(bin, &socket, &log, &dir.join(format!("{nname}.stderr")))
            .with_context(|| format!("node {nname}"))?;
        let proc = Proc::of(&child);
        started.procs.push(proc.clone());
        started.children.push(child);
        state.nodes.push(NodeState {
            name: nname.clone(),
            kind: NodeKind::Netstack.as_str().into(),
            proc: Some(proc),
            socket,
            log,
            interfaces,
            netns: None,
        });
    }

    // Lifetime captures run as `labctl capture` processes of their own.
    for b in state.buses.clone().iter() {
        if let Some(pcap) = &b.pcap {
            let exe = std::env::current_exe()?;
            let log = dir.join(format!("{}.capture.log", b.name));
            let capture_log = std::fs::File::create(&log)
                .with_context(|| format!("creating {}", log.display()))?;
            use std::os::unix::process::CommandExt;
            let child = std::process::Command::new(exe)
                .args(["capture", "--bus-file"])
                .arg(&b.path)
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
                .process_group(0)
                .spawn()
                .with_context(|| format!("starting the capture of bus {}", b.name))?;
            let proc = Proc::of(&child);
            started.procs.push(proc.clone());
            started.children.push(child);
            state.captures.push(CaptureState {
                bus: b.name.clone(),
                proc,
            });
        }
    }
    state.save()?;

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
    bar.set_prefix(format!("up {name}"));

    let jobs: Vec<(&Node, &NodeState)> = topo.nodes.iter().zip(state.nodes.iter()).collect();
    let results = parallel(&jobs, 8, |_, (node, ns)| {
        let r = match &ns.netns {
            Some(netns) => configure_linux(node, ns, netns, opts),
            None => configure(node, ns, opts, &bus_path),
        };
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
    Ok(state)
}

/// Makes a Linux node's namespace and starts a bridge per interface, recording each in the
/// state file before (namespace) or as soon as (bridge) it exists.
#[allow(clippy::too_many_arguments)]
fn start_linux(
    n: &Node,
    bins: &Binaries,
    dir: &Path,
    state: &mut LabState,
    started: &mut Started,
    log: PathBuf,
    interfaces: Vec<IfState>,
    bus_path: &impl Fn(&str) -> PathBuf,
) -> Result<()> {
    let nname = &n.name.value;
    let netns = match bins.access {
        Some(HostAccess::Root) => Netns::Named(linux::netns_name(&state.name, nname)),
        Some(HostAccess::Holder) => {
            let (child, proc) = linux::start_holder(&dir.join(format!("{nname}.holder.log")))?;
            started.procs.push(proc.clone());
            started.children.push(child);
            Netns::Holder(proc)
        }
        None => bail!("no host access checked for a Linux node"),
    };
    state.nodes.push(NodeState {
        name: nname.clone(),
        kind: NodeKind::Linux.as_str().into(),
        proc: match &netns {
            Netns::Holder(p) => Some(p.clone()),
            Netns::Named(_) => None,
        },
        socket: PathBuf::new(),
        log: log.clone(),
        interfaces,
        netns: Some(netns.clone()),
    });
    state.save()?;
    std::fs::write(
        &log,
        format!("linux node {nname} in {}\n", netns.describe()),
    )
    .with_context(|| format!("writing {}", log.display()))?;
    if let Netns::Named(ns) = &netns {
        linux::add_named(ns)?;
        started.netns.push(netns.clone());
    }
    for (i, (ifname, bus, mtu)) in linux::bus_interfaces(n).enumerate() {
        let bin = bins.bridge.as_deref().context("no virtif-bridge binary")?;
        let stats = dir.join(format!("{nname}.{ifname}.bridge.json"));
        let blog = dir.join(format!("{nname}.{ifname}.bridge.log"));
        let what = || format!("interface {ifname} on bus {bus}");
        let (mut child, mut bridge) =
            linux::spawn_bridge(bin, &netns, &bus_path(bus), ifname, mtu, (&stats, &blog))
                .with_context(what)?;
        started.procs.push(bridge.proc.clone());
        // Recorded before it is ready: if labctl dies while waiting, `down` still stops it.
        let slot = state.nodes.len() - 1;
        state.nodes[slot].interfaces[i].bridge = Some(bridge.clone());
        state.save()?;
        let ready = linux::wait_ready(bin, &mut child, &mut bridge, linux::BRIDGE_READY_TIMEOUT);
        started.children.push(child);
        ready.with_context(what)?;
        state.nodes[slot].interfaces[i].bridge = Some(bridge);
        state.save()?;
    }
    Ok(())
}

/// Runs a Linux node's configuration commands inside its namespace, logging each to NODE.log.
fn configure_linux(node: &Node, ns: &NodeState, netns: &Netns, opts: &UpOptions) -> Result<()> {
    use std::io::Write;
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&ns.log)
        .with_context(|| format!("opening {}", ns.log.display()))?;
    for argv in linux::config_commands(node) {
        if opts.cancel.load(Ordering::Relaxed) {
            bail!("node {}: interrupted", ns.name);
        }
        let out = netns
            .run(&argv)
            .with_context(|| format!("node {}", ns.name))?;
        let _ = writeln!(log, "$ {}", node::show(&argv));
        let _ = log.write_all(&out.stdout);
        let _ = log.write_all(&out.stderr);
        if !out.status.success() {
            bail!(
                "node {} (namespace {}): `{}` failed ({}): {}",
                ns.name,
                netns.describe(),
                node::show(&argv),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

fn configure(
    node: &Node,
    ns: &NodeState,
    opts: &UpOptions,
    bus_path: &impl Fn(&str) -> PathBuf,
) -> Result<()> {
    let timeout = opts.ready_timeout;
    let cancelled = || opts.cancel.load(Ordering::Relaxed);
    let proc = ns
        .proc
        .clone()
        .context("a netstack node without a process")?;
    let died = |what: &str| {
        let mut msg = format!("node {}: {what} (pid {})", ns.name, proc.pid);
        let mut lines = lab::tail(&ns.log, 5);
        lines.extend(lab::tail(&ns.log.with_extension("stderr"), 5));
        if !lines.is_empty() {
            msg.push_str(&format!("; last log lines:\n    {}", lines.join("\n    ")));
        }
        anyhow!(msg)
    };
    let mut conn = node::connect_when_ready(&ns.socket, timeout, || proc.alive() && !cancelled())
        .map_err(|e| {
        if proc.alive() {
            died(&format!(
                "no answer on {} within {:?}: {e}",
                ns.socket.display(),
                timeout
            ))
        } else {
            died("exited before opening its control socket")
        }
    })?;
    for argv in config_commands(node, bus_path) {
        if cancelled() {
            bail!("node {}: interrupted", ns.name);
        }
        let out = node::run_collect(&mut conn, &argv).map_err(|e| {
            if proc.alive() {
                died(&format!("`{}`: {e}", node::show(&argv)))
            } else {
                died(&format!("died during `{}`", node::show(&argv)))
            }
        })?;
        if out.status != 0 {
            bail!(
                "node {}: `{}` failed with status {}: {}",
                ns.name,
                node::show(&argv),
                out.status,
                out.stderr_text()
            );
        }
    }
    Ok(())
}

/// What `down` did.
#[derive(Debug, Default)]
pub struct DownReport {
    pub stopped: usize,
    pub killed: usize,
    pub already_dead: usize,
    pub survivors: Vec<u32>,
    /// Named network namespaces deleted.
    pub namespaces: usize,
    pub dir: PathBuf,
}

/// Stops every process of lab `name`, deletes its namespaces and removes its directory (or
/// keeps buses, pcaps and logs).
pub fn down(name: &str, keep: bool) -> Result<DownReport> {
    let link = lab::lab_path(name);
    if link.symlink_metadata().is_err() {
        // No directory, but perhaps namespaces of a lab whose directory went away.
        let orphans = orphan_netns(name);
        if !orphans.is_empty() {
            let mut report = DownReport {
                dir: link.clone(),
                ..Default::default()
            };
            for n in &orphans {
                Netns::Named(n.clone()).remove()?;
                report.namespaces += 1;
            }
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
    let mut report = DownReport {
        dir: link.clone(),
        ..Default::default()
    };
    let mut problems = Vec::new();
    // A state file this labctl cannot read (written by another version) still names the
    // processes and namespaces to remove.
    let unreadable = match LabState::load(&link) {
        Err(e) if link.join(lab::STATE_FILE).is_file() => Some(e),
        _ => None,
    };
    if let Some(e) = unreadable {
        let (procs, names) = lab::salvage_state(&link);
        eprintln!(
            "labctl: {e:#}; stopping the {} processes and {} namespaces it names",
            procs.len(),
            names.len()
        );
        let (_, survivors) = lab::stop_all(&procs, Duration::from_secs(3));
        report.stopped = procs.len();
        report.survivors = survivors.iter().map(|p| p.pid).collect();
        for n in names {
            let ns = Netns::Named(n);
            if ns.alive() {
                match ns.remove() {
                    Ok(()) => report.namespaces += 1,
                    Err(e) => problems.push(format!("{e:#}")),
                }
            }
        }
    }
    // A lab whose `up` died before writing state has no known processes; its dir still goes.
    if let Ok(state) = LabState::load(&link) {
        let netns: Vec<&Netns> = state
            .nodes
            .iter()
            .filter_map(|n| n.netns.as_ref())
            .collect();
        // What runs inside a holder's namespace can only be found while the holder lives.
        for ns in netns.iter().filter(|ns| matches!(ns, Netns::Holder(_))) {
            let _ = ns.remove();
        }
        let procs = state.procs();
        report.already_dead = procs.iter().filter(|p| !p.alive()).count();
        let (killed, survivors) = lab::stop_all(&procs, Duration::from_secs(3));
        report.killed = killed.len();
        report.stopped = procs.len() - report.already_dead;
        report.survivors = survivors.iter().map(|p| p.pid).collect();
        report.dir = state.dir.clone();
        for ns in netns.iter().filter(|ns| matches!(ns, Netns::Named(_))) {
            if !ns.alive() {
                continue;
            }
            match ns.remove() {
                Ok(()) => report.namespaces += 1,
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
    }
    if !report.survivors.is_empty() {
        bail!(
            "lab \"{name}\": processes {:?} survived SIGKILL; left {} in place",
            report.survivors,
            link.display()
        );
    }
    if !problems.is_empty() {
        bail!(
            "lab \"{name}\": {}; left {} in place so `labctl down {name}` can try again",
            problems.join("; "),
            link.display()
        );
    }
    remove_lab_dir(&link, keep)?;
    Ok(report)
}

/// A text table: node, kind, pid, interfaces with their buses (or taps) and addresses; then the
/// namespace of each Linux node.
pub fn summary(state: &LabState) -> String {
    let mut rows = vec![[
        "NODE".to_string(),
        "KIND".to_string(),
        "PID".to_string(),
        "INTERFACE".to_string(),
        "BUS".to_string(),
        "ADDRESSES".to_string(),
    ]];
    let pid = |n: &NodeState| n.pid().map(|p| p.to_string()).unwrap_or_else(|| "-".into());
    for n in &state.nodes {
        if n.interfaces.is_empty() {
            rows.push([
                n.name.clone(),
                n.kind.clone(),
                pid(n),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for (i, ifc) in n.interfaces.iter().enumerate() {
            let (name, kind, pid) = if i == 0 {
                (n.name.clone(), n.kind.clone(), pid(n))
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
        if let Some(ns) = &n.netns {
            s.push_str(&format!("{}: Linux namespace {}\n", n.name, ns.describe()));
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
