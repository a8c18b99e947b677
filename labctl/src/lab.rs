//! Where labs live and what they are made of on disk: the lab directory, its `state.json`
//! (pids, sockets, buses), the `netstack` binary, and the processes labctl starts and stops.
//!
//! Layout of a lab directory (mode 0700):
//! ```text
//! BASE/NAME/            BASE = $SHMLAB_DIR, else $XDG_RUNTIME_DIR/shmlab, else /dev/shm/shmlab-$UID
//!   state.json          LabState and the journal of its processes (see crate::journal)
//!   BUS.bus             one file per bus (mode 0600)
//!   BUS.pcap            lifetime capture of a bus with `capture = true`
//!   NODE.sock           control socket of a node
//!   NODE.log            the node's log (--log); NODE.stderr holds whatever it printed;
//!                       for a Linux node, its configuration commands and their output
//!   NODE.IF.bridge.log  a Linux node's bridge (virtif-bridge) output, one per interface
//!   NODE.IF.bridge.json that bridge's counters, rewritten every second
//! ```
//! With `up --dir D`, `BASE/NAME` is a symlink to `D`, so every command finds labs the same way.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::driver::{LinuxNode, NetstackNode, NodeDriver};
use crate::journal::ProcRecord;

pub const STATE_FILE: &str = "state.json";

/// Where the lab directories are.
pub fn base_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SHMLAB_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        let d = PathBuf::from(d);
        if d.is_dir() {
            return d.join("shmlab");
        }
    }
    let uid = rustix::process::getuid().as_raw();
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from(format!("/dev/shm/shmlab-{uid}"))
    } else {
        std::env::temp_dir().join(format!("shmlab-{uid}"))
    }
}

/// The directory (or symlink to it) of lab `name`.
pub fn lab_path(name: &str) -> PathBuf {
    base_dir().join(name)
}

/// Creates a directory with mode 0700 (parents included, also 0700).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A process labctl started, identified by pid and start time so a recycled pid is never
/// mistaken for it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct Proc {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat (clock ticks since boot).
    pub start_time: u64,
}

impl Proc {
    pub fn of(child: &Child) -> Proc {
        let pid = child.id();
        Proc {
            pid,
            start_time: start_time(pid).unwrap_or(0),
        }
    }

    /// The process with this pid now, if there is one.
    pub fn from_pid(pid: u32) -> Option<Proc> {
        Some(Proc {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Running (not a zombie) and still the same process.
    pub fn alive(&self) -> bool {
        match proc_stat(self.pid) {
            Some((state, start)) => state != 'Z' && state != 'X' && start == self.start_time,
            None => false,
        }
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        if !self.alive() {
            return;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3 (state); start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn start_time(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|(_, s)| s)
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct IfState {
    pub name: String,
    /// The bus, or "" for an interface on a host tap.
    #[serde(default)]
    pub bus: String,
    /// The host tap of a netstack node's `virtN` interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    pub addrs: Vec<String>,
}

impl IfState {
    /// `lan1` or `tap tap3`, for tables.
    pub fn link(&self) -> String {
        match &self.tap {
            Some(t) => format!("tap {t}"),
            None => self.bus.clone(),
        }
    }
}

/// What every node has, whatever its kind.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// `NODE.log`: the node's own log, or (Linux) its configuration commands and their output.
    pub log: PathBuf,
    pub interfaces: Vec<IfState>,
}

/// The part of a node's state only its kind understands, tagged by `kind` in `state.json`.
/// Its behaviour is the kind's [`NodeDriver`]; this enum is the one place that lists kinds
/// for reading and writing state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KindState {
    Netstack(NetstackNode),
    Linux(LinuxNode),
}

impl KindState {
    pub fn driver(&self) -> &dyn NodeDriver {
        match self {
            KindState::Netstack(n) => n,
            KindState::Linux(n) => n,
        }
    }

    pub fn driver_mut(&mut self) -> &mut dyn NodeDriver {
        match self {
            KindState::Netstack(n) => n,
            KindState::Linux(n) => n,
        }
    }
}

/// One node in `state.json`: `{"name", "log", "interfaces", "kind": "netstack", ...}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeState {
    #[serde(flatten)]
    pub info: NodeInfo,
    #[serde(flatten)]
    pub kind: KindState,
}

impl NodeState {
    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn driver(&self) -> &dyn NodeDriver {
        self.kind.driver()
    }

    /// The node can take commands (see [`NodeDriver::alive`]).
    pub fn alive(&self) -> bool {
        self.driver().alive()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BusState {
    pub name: String,
    pub path: PathBuf,
    /// Pcap file of a lifetime capture, if any.
    #[serde(default)]
    pub pcap: Option<PathBuf>,
}

/// A lifetime capture of a bus: a `labctl capture` process of its own.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaptureState {
    pub bus: String,
    #[serde(flatten)]
    pub proc: ProcRecord,
}

/// Everything `down`, `status` and `exec` need to know about a running lab; also the
/// [journal](crate::journal) of its processes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabState {
    pub name: String,
    pub topology: PathBuf,
    /// The lab dir, canonical (the prefix of every marker of the lab).
    pub dir: PathBuf,
    pub started_unix: u64,
    pub nodes: Vec<NodeState>,
    pub buses: Vec<BusState>,
    #[serde(default)]
    pub captures: Vec<CaptureState>,
}

impl LabState {
    /// Reads `dir/state.json`. A file that is not a lab state is an error naming the file, the
    /// line and column and what was wrong there.
    pub fn load(dir: &Path) -> Result<LabState> {
        LabState::load_file(&dir.join(STATE_FILE))
    }

    /// [`LabState::load`] from a file of any name.
    pub fn load_file(path: &Path) -> Result<LabState> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}:{}:{}: malformed lab state: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })
    }

    /// Writes durably and atomically: a temp file, fsync'd, renamed over the old state, and
    /// the directory fsync'd, so after a crash the file is the old state or the new one.
    pub fn save(&self) -> Result<()> {
        use std::io::Write;
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(".state.json.tmp");
        // Compact: `up` rewrites it as it starts processes (`jq . state.json` to read it).
        let text = serde_json::to_string(self)?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write().with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", self.dir.display()))?;
        Ok(())
    }

    /// A lab with nothing recorded: what `down` works from when `up` died before its first
    /// save, or the state file does not load.
    pub fn empty(name: &str, dir: &Path) -> LabState {
        LabState {
            name: name.to_string(),
            topology: PathBuf::new(),
            dir: dir.to_path_buf(),
            started_unix: 0,
            nodes: Vec::new(),
            buses: Vec::new(),
            captures: Vec::new(),
        }
    }

    pub fn node(&self, name: &str) -> Result<&NodeState> {
        self.nodes
            .iter()
            .find(|n| n.name() == name)
            .with_context(|| {
                let names: Vec<&str> = self.nodes.iter().map(|n| n.name()).collect();
                format!(
                    "lab {}: no node \"{name}\" (nodes: {})",
                    self.name,
                    names.join(", ")
                )
            })
    }

    pub fn bus_path(&self, bus: &str) -> Result<PathBuf> {
        self.buses
            .iter()
            .find(|b| b.name == bus)
            .map(|b| b.path.clone())
            .with_context(|| {
                let names: Vec<&str> = self.buses.iter().map(|b| b.name.as_str()).collect();
                format!(
                    "lab {}: no bus \"{bus}\" (buses: {})",
                    self.name,
                    names.join(", ")
                )
            })
    }

    /// Every process record of the lab: each node's (daemon, holder, bridges), then captures.
    pub fn procs(&self) -> Vec<&ProcRecord> {
        self.nodes
            .iter()
            .flat_map(|n| n.driver().procs())
            .chain(self.captures.iter().map(|c| &c.proc))
            .collect()
    }

    pub fn procs_mut(&mut self) -> Vec<&mut ProcRecord> {
        self.nodes
            .iter_mut()
            .flat_map(|n| n.kind.driver_mut().procs_mut())
            .chain(self.captures.iter_mut().map(|c| &mut c.proc))
            .collect()
    }

    /// Names the lab's nodes take in host-wide namespaces (see [`NodeDriver::host_names`]).
    pub fn host_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| n.driver().host_names())
            .collect()
    }
}

/// Names of the labs that have a directory under the base dir, sorted.
pub fn lab_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(base_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(STATE_FILE).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Loads the state of lab `name`, with an error that says what to do when it is not up.
pub fn find_lab(name: &str) -> Result<LabState> {
    let dir = lab_path(name);
    if !dir.exists() {
        let up = lab_names();
        bail!(
            "lab \"{name}\" is not up (no {}); running labs: {}",
            dir.display(),
            if up.is_empty() {
                "none".to_string()
            } else {
                up.join(", ")
            }
        );
    }
    LabState::load(&dir)
}

/// The lab to use when the user may leave the name out: the only one running.
pub fn only_lab() -> Result<LabState> {
    let names = lab_names();
    match names.as_slice() {
        [] => bail!("no lab is up (looked in {})", base_dir().display()),
        [one] => find_lab(one),
        many => bail!("several labs are up ({}): name one", many.join(", ")),
    }
}

/// Sends SIGTERM to every live process, then [`wait_then_kill`].
pub fn stop_all(procs: &[Proc], grace: Duration) -> (Vec<Proc>, Vec<Proc>) {
    for p in procs {
        p.signal(rustix::process::Signal::TERM);
    }
    wait_then_kill(procs, grace)
}

/// Waits up to `grace` for every process to end (zombies count as ended), then SIGKILLs the
/// stragglers and waits for them too. Returns the processes that needed SIGKILL and any that
/// survived it.
pub fn wait_then_kill(procs: &[Proc], grace: Duration) -> (Vec<Proc>, Vec<Proc>) {
    let deadline = Instant::now() + grace;
    while procs.iter().any(Proc::alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed: Vec<Proc> = procs.iter().filter(|p| p.alive()).cloned().collect();
    for p in &killed {
        p.signal(rustix::process::Signal::KILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while killed.iter().any(Proc::alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let survivors = killed.iter().filter(|p| p.alive()).cloned().collect();
    (killed, survivors)
}

/// Where the `netstack` binary is: `--netstack-bin`, then `$SHMLAB_NETSTACK`, then next to this
/// executable (the same cargo target dir), then `$PATH`.
pub fn find_netstack(explicit: Option<&Path>) -> Result<PathBuf> {
    find_binary(
        "netstack",
        explicit,
        "--netstack-bin",
        "SHMLAB_NETSTACK",
        "cargo build -p netstack",
    )
}

/// Where binary `name` is: `explicit` (from `flag`), then `$env`, then next to this executable
/// (the same cargo target dir), then `$PATH`. The error says how to build it (`build`).
pub fn find_binary(
    name: &str,
    explicit: Option<&Path>,
    flag: &str,
    env: &str,
    build: &str,
) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("{name} binary {} (from {flag}) does not exist", p.display());
    }
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{name} binary {} (from ${env}) does not exist", p.display());
    }
    let mut looked = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            // Integration tests run from target/debug/deps; the binary is one level up.
            for d in [Some(dir), dir.parent()].into_iter().flatten() {
                let p = d.join(name);
                if p.is_file() {
                    return Ok(p);
                }
                looked.push(p.display().to_string());
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
        looked.push("$PATH".to_string());
    }
    bail!(
        "{name} binary not found (looked at {}); build it with `{build}`, or point {flag} or ${env} at it",
        looked.join(", ")
    )
}

/// The last `n` lines of a file, for error messages about a node that died.
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
