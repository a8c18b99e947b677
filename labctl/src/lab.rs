//! Where labs live and what they are made of on disk: the lab directory, its `state.json`
//! (pids, sockets, buses), the `netstack` binary, and the processes labctl starts and stops.
//!
//! Layout of a lab directory (mode 0700):
//! ```text
//! BASE/NAME/            BASE = $SHMLAB_DIR, else $XDG_RUNTIME_DIR/shmlab, else /dev/shm/shmlab-$UID
//!   state.json          LabState: written once every process is started
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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::linux::{BridgeState, Netns};

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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IfState {
    pub name: String,
    /// The bus, or "" for an interface on a host tap.
    #[serde(default)]
    pub bus: String,
    /// The host tap of a netstack node's `virtN` interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    pub addrs: Vec<String>,
    /// The bridge joining a Linux node's tap to the bus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeState>,
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

fn netstack_kind() -> String {
    "netstack".into()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    /// `netstack` or `linux`.
    #[serde(default = "netstack_kind")]
    pub kind: String,
    /// The netstack daemon, or a Linux node's namespace holder; none for a Linux node in a
    /// named namespace.
    #[serde(flatten)]
    pub proc: Option<Proc>,
    /// The control socket (netstack nodes).
    #[serde(default)]
    pub socket: PathBuf,
    pub log: PathBuf,
    pub interfaces: Vec<IfState>,
    /// A Linux node's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<Netns>,
}

impl NodeState {
    pub fn is_linux(&self) -> bool {
        self.netns.is_some()
    }

    /// The netstack process runs, or the Linux node's namespace exists.
    pub fn alive(&self) -> bool {
        match (&self.netns, &self.proc) {
            (Some(ns), _) => ns.alive(),
            (None, Some(p)) => p.alive(),
            (None, None) => false,
        }
    }

    /// Its pid (netstack daemon or namespace holder), if it has one.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid)
    }

    /// Why the node cannot take a command, naming its pid or namespace and its log.
    pub fn not_running(&self, lab: &str) -> String {
        match (&self.netns, &self.proc) {
            (Some(Netns::Named(n)), _) => format!(
                "lab {lab}: node {} is not running (its namespace {n} is gone); its log is {}",
                self.name,
                self.log.display()
            ),
            (_, Some(p)) => format!(
                "lab {lab}: node {} is not running (pid {} is gone); its log is {}",
                self.name,
                p.pid,
                self.log.display()
            ),
            _ => format!("lab {lab}: node {} is not running", self.name),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BusState {
    pub name: String,
    pub path: PathBuf,
    /// Pcap file of a lifetime capture, if any.
    #[serde(default)]
    pub pcap: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaptureState {
    pub bus: String,
    #[serde(flatten)]
    pub proc: Proc,
}

/// Everything `down`, `status` and `exec` need to know about a running lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub topology: PathBuf,
    pub dir: PathBuf,
    pub started_unix: u64,
    pub nodes: Vec<NodeState>,
    pub buses: Vec<BusState>,
    #[serde(default)]
    pub captures: Vec<CaptureState>,
}

impl LabState {
    pub fn load(dir: &Path) -> Result<LabState> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: malformed lab state", path.display()))
    }

    /// Writes atomically (temp file and rename), so a reader never sees half a file.
    pub fn save(&self) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(".state.json.tmp");
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    pub fn node(&self, name: &str) -> Result<&NodeState> {
        self.nodes.iter().find(|n| n.name == name).with_context(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
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

    /// Every process of the lab: nodes (and namespace holders), bridges, then captures.
    pub fn procs(&self) -> Vec<Proc> {
        self.nodes
            .iter()
            .filter_map(|n| n.proc.clone())
            .chain(
                self.nodes
                    .iter()
                    .flat_map(|n| n.interfaces.iter())
                    .filter_map(|i| i.bridge.as_ref().map(|b| b.proc.clone())),
            )
            .chain(self.captures.iter().map(|c| c.proc.clone()))
            .collect()
    }

    /// The named namespaces of the lab's Linux nodes.
    pub fn named_netns(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter_map(|n| match &n.netns {
                Some(Netns::Named(name)) => Some(name.clone()),
                _ => None,
            })
            .collect()
    }
}

/// What a state file that does not load as [`LabState`] still says: every object with `pid`
/// and `start_time` is a process, every `"named": NAME` a namespace.
pub fn salvage_state(dir: &Path) -> (Vec<Proc>, Vec<String>) {
    fn walk(v: &serde_json::Value, procs: &mut Vec<Proc>, names: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let (Some(pid), Some(start)) = (
                    m.get("pid").and_then(|p| p.as_u64()),
                    m.get("start_time").and_then(|s| s.as_u64()),
                ) {
                    procs.push(Proc {
                        pid: pid as u32,
                        start_time: start,
                    });
                }
                if let Some(n) = m.get("named").and_then(|n| n.as_str()) {
                    names.push(n.to_string());
                }
                m.values().for_each(|v| walk(v, procs, names));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, procs, names)),
            _ => {}
        }
    }
    let (mut procs, mut names) = (Vec::new(), Vec::new());
    if let Some(v) = std::fs::read_to_string(dir.join(STATE_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    {
        walk(&v, &mut procs, &mut names);
    }
    (procs, names)
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

/// Sends SIGTERM to every live process, waits up to `grace`, then SIGKILLs the stragglers and
/// waits for them too. Returns the processes that needed SIGKILL and any that survived it.
pub fn stop_all(procs: &[Proc], grace: Duration) -> (Vec<Proc>, Vec<Proc>) {
    use rustix::process::Signal;
    for p in procs {
        p.signal(Signal::TERM);
    }
    let deadline = Instant::now() + grace;
    while procs.iter().any(Proc::alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed: Vec<Proc> = procs.iter().filter(|p| p.alive()).cloned().collect();
    for p in &killed {
        p.signal(Signal::KILL);
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

/// Starts a node in the foreground of its own process group (so a Ctrl-C aimed at labctl does
/// not reach it), output to `NODE.stderr`.
pub fn spawn_node(bin: &Path, socket: &Path, log: &Path, stderr: &Path) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let out =
        std::fs::File::create(stderr).with_context(|| format!("creating {}", stderr.display()))?;
    let err = out.try_clone()?;
    Command::new(bin)
        .arg("--socket")
        .arg(socket)
        .arg("--log")
        .arg(log)
        .arg("--foreground")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
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
