//! Node kinds behind one interface: [`NodeDriver`], which every kind implements and the rest
//! of labctl calls, so nothing outside this module and the kind's own module branches on kind.
//!
//! A kind has two halves:
//! - its **state**, a variant of [`KindState`](crate::lab::KindState) saved in `state.json`
//!   (pids, socket, namespace, bridges). It implements [`NodeDriver`], so every operation on a
//!   live node (configure, exec, status, capture point, stop, clean up after a crash) has that
//!   kind's own data at hand, with no "wrong kind" case to handle;
//! - its **constructors**, [`NodeDriver`]'s `Self: Sized` functions (warnings, preflight,
//!   start, host sweep), run from a topology node before any state exists, reached through
//!   [`KindOps`].
//!
//! Why a trait and a serde enum rather than one enum with a `match` per operation: serde needs
//! a closed list of kinds to read state, and that list is the only `match` on kind
//! ([`KindState::driver`](crate::lab::KindState::driver) and [`kinds`]); each kind's behaviour
//! stays in one `impl` block of its own, and the compiler makes a new kind (`rump`, a real
//! NetBSD `rump_server`) implement every operation. Adding one is a module with its state and
//! `impl NodeDriver`, a `KindState` variant and an entry in [`kinds`].
//!
//! Starting follows the [journal](crate::journal): `plan` lists each process of a node as an
//! intent, `up` saves every node's plan before it starts any, and `start` spawns them through
//! [`Journal::spawn`].

pub mod linux;
pub mod netstack;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use crate::journal::{Journal, ProcRecord};
use crate::lab::{IfState, KindState, LabState, NodeInfo, NodeState, Proc};
use crate::linux::HostAccess;
use crate::node::Output;
use crate::topology::{Node, NodeKind};

pub use self::linux::LinuxNode;
pub use self::netstack::NetstackNode;

/// What labctl does with a node of one kind.
pub trait NodeDriver: Send + Sync {
    /// The kind, as written in topologies and `state.json`.
    fn kind(&self) -> NodeKind;

    // From a topology node, before the node exists.

    /// What `up` will not apply to this node (printed as warnings by `up` and `validate`).
    fn warnings(_node: &Node) -> Vec<String>
    where
        Self: Sized,
    {
        Vec::new()
    }

    /// Finds what the kind needs (binaries) before anything of the lab is started, so a lab
    /// that cannot come up starts nothing.
    fn preflight(node: &Node, bins: &mut Binaries) -> Result<()>
    where
        Self: Sized;

    /// The node's state before anything of it exists: every process it will start, as an
    /// intent. No side effects; `up` writes the plans of all nodes to the journal in one save
    /// before it starts any.
    fn plan(node: &Node, cx: &PlanCx) -> Result<KindState>
    where
        Self: Sized;

    /// Starts the planned node (`cx.node()` in the journal): spawns its processes with
    /// [`Journal::spawn`] and puts each pid in its record at once. Returns once its processes
    /// run; `configure` waits for them to be ready.
    fn start(node: &Node, cx: &mut StartCx) -> Result<()>
    where
        Self: Sized;

    /// Removes what nodes of this kind leave on the host outside any lab dir (named
    /// namespaces `shmlab-LAB-*` of lab `lab` that no lab records); returns how many.
    fn sweep_host(_lab: &str) -> Result<usize>
    where
        Self: Sized,
    {
        Ok(0)
    }

    // The journal.

    /// The node's process records (its daemon, holder, bridges), intents included.
    fn procs(&self) -> Vec<&ProcRecord>;
    fn procs_mut(&mut self) -> Vec<&mut ProcRecord>;

    /// Names the node takes in host-wide namespaces (a named network namespace), whether or
    /// not they exist now: two labs must not share one.
    fn host_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// What of the node outlives its processes and still exists, for "the lab is still up"
    /// (a named network namespace).
    fn lingering(&self) -> Vec<String> {
        Vec::new()
    }

    // A live node.

    /// The node is there to take commands.
    fn alive(&self) -> bool;

    /// Its main process for tables, if it has one.
    fn pid(&self) -> Option<u32>;

    /// Why the node cannot take a command, naming its pid or namespace and its log.
    fn not_running(&self, lab: &str, info: &NodeInfo) -> String;

    /// Where the node lives, for the summary after `up` (`Linux namespace shmlab-lab-l1`).
    fn place(&self) -> Option<String> {
        None
    }

    /// Applies the topology's addresses, routes, sysctls and `exec` commands to the started
    /// node, waiting (up to `cx.ready_timeout`) for it to be ready first.
    fn configure(&self, info: &NodeInfo, node: &Node, cx: &ConfigCx) -> Result<()>;

    /// Runs `argv` in the node with labctl's terminal: output streams as it comes, the exit
    /// status is returned. `with_stdin` sends labctl's standard input to the command.
    fn exec(&self, info: &NodeInfo, argv: &[String], with_stdin: bool) -> Result<i32>;

    /// Runs `argv` in the node and collects its status and output (for checks).
    fn exec_collect(&self, info: &NodeInfo, argv: &[String]) -> Result<Output>;

    /// The node's `ping` of `to`, `count` times, that exits 0 when replies came.
    fn ping_argv(&self, to: IpAddr, count: u32) -> Vec<String>;

    /// The node's `traceroute -n` of `to`.
    fn traceroute_argv(&self, to: IpAddr) -> Vec<String>;

    /// Liveness and per-interface counters (`--json`: counters as JSON objects).
    fn status(&self, info: &NodeInfo, json: bool) -> NodeStatus;

    /// The bus on which interface `ifname`'s frames can be captured.
    fn capture_point(&self, info: &NodeInfo, ifname: &str) -> Result<String> {
        let names = || {
            info.interfaces
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(ifc) = info.interfaces.iter().find(|i| i.name == ifname) else {
            bail!(
                "node {} has no interface {ifname} (interfaces: {})",
                info.name,
                names()
            );
        };
        match &ifc.tap {
            Some(tap) => bail!(
                "{}:{ifname} is on host tap {tap}, not on a bus: capture it with `tcpdump -i {tap}`",
                info.name
            ),
            None => Ok(ifc.bus.clone()),
        }
    }

    /// Asks everything the node runs to stop (SIGTERM), without waiting. Returns the
    /// processes it found beyond its own records (what runs inside a namespace), for `down`
    /// to wait for and SIGKILL with the rest.
    fn stop(&self) -> Vec<Proc>;

    /// Once every process of the lab is gone, also after a crash and from intents alone:
    /// removes what outlives processes (a named namespace). Returns how many namespaces it
    /// deleted. Running it twice is harmless.
    fn cleanup(&self) -> Result<usize>;
}

/// A kind's constructors, as plain functions so they can be listed and looked up.
#[derive(Clone, Copy)]
pub struct KindOps {
    pub kind: NodeKind,
    pub warnings: fn(&Node) -> Vec<String>,
    pub preflight: fn(&Node, &mut Binaries) -> Result<()>,
    pub plan: fn(&Node, &PlanCx) -> Result<KindState>,
    pub start: fn(&Node, &mut StartCx) -> Result<()>,
    pub sweep_host: fn(&str) -> Result<usize>,
}

impl KindOps {
    fn of<D: NodeDriver>(kind: NodeKind) -> KindOps {
        KindOps {
            kind,
            warnings: D::warnings,
            preflight: D::preflight,
            plan: D::plan,
            start: D::start,
            sweep_host: D::sweep_host,
        }
    }
}

/// Every kind this labctl can start.
pub fn kinds() -> [KindOps; 2] {
    [
        KindOps::of::<NetstackNode>(NodeKind::Netstack),
        KindOps::of::<LinuxNode>(NodeKind::Linux),
    ]
}

/// The constructors of `kind`; an error for a kind the topology knows but no driver
/// implements (`rump`), which `up` refuses before it gets here.
pub fn ops(kind: NodeKind) -> Result<KindOps> {
    kinds()
        .into_iter()
        .find(|k| k.kind == kind)
        .ok_or_else(|| anyhow!("node kind \"{}\" has no driver yet", kind.as_str()))
}

/// The binaries and host access `up` found before starting anything.
#[derive(Clone, Debug, Default)]
pub struct Binaries {
    /// `--netstack-bin`, if given.
    pub netstack_flag: Option<PathBuf>,
    /// `--virtif-bridge-bin`, if given.
    pub bridge_flag: Option<PathBuf>,
    /// Found by a kind's preflight, when one of its nodes needs it.
    pub netstack: Option<PathBuf>,
    pub bridge: Option<PathBuf>,
    /// How this labctl may reach the host's network (checked once per lab, when a node needs
    /// it).
    pub access: Option<HostAccess>,
}

/// What a driver's `plan` works with.
pub struct PlanCx<'a> {
    /// The canonical lab dir.
    pub dir: &'a Path,
    pub state: &'a LabState,
    pub bins: &'a Binaries,
}

impl PlanCx<'_> {
    pub fn lab(&self) -> &str {
        &self.state.name
    }

    pub fn bus_path(&self, bus: &str) -> PathBuf {
        self.state.bus_path(bus).unwrap_or_default()
    }
}

/// What a driver's `start` works with.
pub struct StartCx<'a> {
    pub journal: &'a mut Journal,
    pub bins: &'a Binaries,
    /// The node's index in `journal.state.nodes`.
    pub index: usize,
}

impl StartCx<'_> {
    /// The node being started, as planned (with what `start` recorded so far).
    pub fn node(&mut self) -> Result<&mut NodeState> {
        let i = self.index;
        self.journal
            .state
            .nodes
            .get_mut(i)
            .ok_or_else(|| anyhow!("internal error: no node {i} in the lab state"))
    }

    pub fn lab(&self) -> String {
        self.journal.state.name.clone()
    }
}

/// What a driver's `configure` works with.
pub struct ConfigCx<'a> {
    pub state: &'a LabState,
    /// How long a node may take to be ready.
    pub ready_timeout: Duration,
    /// Set by Ctrl-C or SIGTERM: give up at the next step.
    pub cancel: &'a AtomicBool,
}

impl ConfigCx<'_> {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub fn bus_path(&self, bus: &str) -> PathBuf {
        self.state.bus_path(bus).unwrap_or_default()
    }
}

/// The common part of a node's state, from its topology entry.
pub fn node_info(node: &Node, dir: &Path) -> NodeInfo {
    NodeInfo {
        name: node.name.value.clone(),
        log: dir.join(format!("{}.log", node.name.value)),
        interfaces: node
            .interfaces
            .iter()
            .map(|i| IfState {
                name: i.name.value.clone(),
                bus: i.bus().map(|b| b.value.clone()).unwrap_or_default(),
                tap: i.tap().map(|t| t.value.clone()),
                addrs: i.addrs.iter().map(|a| a.value.to_string()).collect(),
            })
            .collect(),
    }
}

/// One node in `labctl status`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    pub kind: String,
    /// The node's main process (netstack daemon, namespace holder).
    pub pid: Option<u32>,
    /// A Linux node's namespace (name, or `holder pid N`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub alive: bool,
    pub answers: bool,
    /// `running`, `not answering`, `dead`, `running in NS`, `gone (...)`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<PathBuf>,
    pub log: PathBuf,
    pub interfaces: Vec<IfStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IfStatus {
    pub name: String,
    pub bus: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    pub addrs: Vec<String>,
    /// A Linux node's bridge process for this interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeStatus>,
    /// The interface's counters: a JSON object with `status --json`, else text lines.
    pub counters: serde_json::Value,
}

impl IfStatus {
    pub fn new(i: &IfState, counters: serde_json::Value) -> IfStatus {
        IfStatus {
            name: i.name.clone(),
            bus: i.bus.clone(),
            tap: i.tap.clone(),
            addrs: i.addrs.clone(),
            bridge: None,
            counters,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct BridgeStatus {
    pub pid: Option<u32>,
    pub alive: bool,
    pub mac: String,
}
