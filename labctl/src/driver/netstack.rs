//! `kind = "netstack"`: our stack, one `netstack` process per node, driven over its control
//! socket (`shmlab-control`) with NetBSD-style commands.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{Binaries, ConfigCx, IfStatus, NodeDriver, NodeStatus, PlanCx, StartCx};
use crate::journal::ProcRecord;
use crate::lab::{self, KindState, NodeInfo, Proc};
use crate::node::{self, Connection, Output, Stream};
use crate::topology::{Link, Node, NodeKind};

/// A netstack node in `state.json`: its control socket and its process (flattened:
/// `marker`, `pid`, `start_time`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetstackNode {
    pub socket: PathBuf,
    #[serde(flatten)]
    pub daemon: ProcRecord,
}

/// Longest path a Unix socket address holds.
const SUN_PATH_MAX: usize = 107;

/// `netstack --socket NODE.sock --log NODE.log --foreground` in a process group of its own
/// (so a Ctrl-C aimed at labctl does not reach it), output to `NODE.stderr`.
fn node_command(bin: &Path, socket: &Path, log: &Path, stderr: &Path) -> Result<Command> {
    use std::os::unix::process::CommandExt;
    let out =
        std::fs::File::create(stderr).with_context(|| format!("creating {}", stderr.display()))?;
    let err = out.try_clone()?;
    let mut c = Command::new(bin);
    c.arg("--socket")
        .arg(socket)
        .arg("--log")
        .arg(log)
        .arg("--foreground")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    Ok(c)
}

/// The node commands that configure `node` once it answers, in order.
pub fn config_commands(node: &Node, bus_path: impl Fn(&str) -> PathBuf) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let mut cmds = Vec::new();
    let v6 = node
        .interfaces
        .iter()
        .any(|i| i.addrs.iter().any(|a| !a.value.is_v4()));
    // Lab addresses are unique by validation, so duplicate address detection would only keep
    // a node with IPv6 addresses unable to use them for a second (Linux nodes get `nodad` for
    // the same reason); a topology that wants DAD sets net.inet6.ip6.dad_count itself, and
    // that goes first too. (Nodes without IPv6 addresses keep DAD for their link-local ones.)
    let dad = "net.inet6.ip6.dad_count";
    let dad_count = node.sysctl.iter().find(|(k, _)| k.as_str() == dad);
    match dad_count {
        Some((k, v)) => cmds.push(s(&["sysctl", "-w", &format!("{k}={v}")])),
        None if v6 => cmds.push(s(&["sysctl", "-w", &format!("{dad}=0")])),
        None => {}
    }
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
        // An inet6 address never replaces another, so no `alias` is needed.
        for a in ifc.addrs.iter().filter(|a| !a.value.is_v4()) {
            cmds.push(s(&["ifconfig", name, "inet6", &a.value.to_string()]));
        }
        cmds.push(s(&["ifconfig", name, "up"]));
    }
    if node.forwarding {
        cmds.push(s(&["sysctl", "-w", "net.inet.ip.forwarding=1"]));
        if v6 {
            cmds.push(s(&["sysctl", "-w", "net.inet6.ip6.forwarding=1"]));
        }
    }
    for (k, v) in node.sysctl.iter().filter(|(k, _)| k.as_str() != dad) {
        cmds.push(s(&["sysctl", "-w", &format!("{k}={v}")]));
    }
    if dad_count.is_some() && v6 {
        // Routes through addresses still under DAD would be refused: wait for it.
        cmds.push(s(&["ifconfig", "-w", "10"]));
    }
    for r in &node.routes {
        cmds.push(r.argv());
    }
    for e in &node.exec {
        cmds.push(e.value.clone());
    }
    cmds
}

impl NetstackNode {
    fn connect(&self, info: &NodeInfo) -> Result<Connection> {
        Connection::open(&self.socket).with_context(|| format!("node {}", info.name))
    }
}

impl NodeDriver for NetstackNode {
    fn kind(&self) -> NodeKind {
        NodeKind::Netstack
    }

    fn preflight(_node: &Node, bins: &mut Binaries) -> Result<()> {
        if bins.netstack.is_none() {
            bins.netstack = Some(lab::find_netstack(bins.netstack_flag.as_deref())?);
        }
        Ok(())
    }

    fn plan(n: &Node, cx: &PlanCx) -> Result<KindState> {
        let name = &n.name.value;
        let socket = cx.dir.join(format!("{name}.sock"));
        if socket.as_os_str().len() > SUN_PATH_MAX {
            bail!(
                "control socket path {} is {} bytes, over the {SUN_PATH_MAX} a Unix socket allows; use a shorter lab dir (--dir)",
                socket.display(),
                socket.as_os_str().len()
            );
        }
        Ok(KindState::Netstack(NetstackNode {
            socket,
            daemon: ProcRecord::intent(cx.dir, &format!("node:{name}")),
        }))
    }

    fn start(n: &Node, cx: &mut StartCx) -> Result<()> {
        let bin = cx.bins.netstack.clone().context("no netstack binary")?;
        let ns = cx.node()?;
        let KindState::Netstack(me) = &ns.kind else {
            bail!(
                "internal error: node {} is not a netstack node",
                n.name.value
            );
        };
        let stderr = ns.info.log.with_extension("stderr");
        let mut cmd = node_command(&bin, &me.socket, &ns.info.log, &stderr)?;
        let marker = me.daemon.marker.clone();
        let (proc, child) = cx.journal.spawn(&marker, &mut cmd)?;
        if let KindState::Netstack(me) = &mut cx.node()?.kind {
            me.daemon.proc = Some(proc);
        }
        cx.journal.adopt(child);
        Ok(())
    }

    fn procs(&self) -> Vec<&ProcRecord> {
        vec![&self.daemon]
    }

    fn procs_mut(&mut self) -> Vec<&mut ProcRecord> {
        vec![&mut self.daemon]
    }

    fn alive(&self) -> bool {
        self.daemon.alive()
    }

    fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    fn not_running(&self, lab: &str, info: &NodeInfo) -> String {
        let why = match self.daemon.pid() {
            Some(pid) => format!("pid {pid} is gone"),
            None => "it was never started".to_string(),
        };
        format!(
            "lab {lab}: node {} is not running ({why}); its log is {}",
            info.name,
            info.log.display()
        )
    }

    fn configure(&self, info: &NodeInfo, node: &Node, cx: &ConfigCx) -> Result<()> {
        let timeout = cx.ready_timeout;
        let proc = self
            .daemon
            .proc
            .clone()
            .context("a netstack node without a process")?;
        let died = |what: &str| {
            let mut msg = format!("node {}: {what} (pid {})", info.name, proc.pid);
            let mut lines = lab::tail(&info.log, 5);
            lines.extend(lab::tail(&info.log.with_extension("stderr"), 5));
            if !lines.is_empty() {
                msg.push_str(&format!("; last log lines:\n    {}", lines.join("\n    ")));
            }
            anyhow!(msg)
        };
        let mut conn =
            node::connect_when_ready(&self.socket, timeout, || proc.alive() && !cx.cancelled())
                .map_err(|e| {
                    if proc.alive() {
                        died(&format!(
                            "no answer on {} within {:?}: {e}",
                            self.socket.display(),
                            timeout
                        ))
                    } else {
                        died("exited before opening its control socket")
                    }
                })?;
        for argv in config_commands(node, |b| cx.bus_path(b)) {
            if cx.cancelled() {
                bail!("node {}: interrupted", info.name);
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
                    info.name,
                    node::show(&argv),
                    out.status,
                    out.stderr_text()
                );
            }
        }
        Ok(())
    }

    fn exec(&self, info: &NodeInfo, argv: &[String], with_stdin: bool) -> Result<i32> {
        use std::io::Read;
        let input = if with_stdin {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading standard input for --stdin")?;
            Some(s)
        } else {
            None
        };
        let mut conn = self.connect(info)?;
        let status = conn
            .run(argv, input.as_deref(), |stream, line| match stream {
                Stream::Out => {
                    let mut o = std::io::stdout().lock();
                    let _ = writeln!(o, "{line}");
                    let _ = o.flush();
                }
                Stream::Err => eprintln!("{line}"),
            })
            .with_context(|| format!("node {}", info.name))?;
        Ok(status)
    }

    fn exec_collect(&self, info: &NodeInfo, argv: &[String]) -> Result<Output> {
        let mut conn = self.connect(info)?;
        node::run_collect(&mut conn, argv)
            .with_context(|| format!("node {}: `{}`", info.name, node::show(argv)))
    }

    fn ping_argv(&self, to: IpAddr, count: u32) -> Vec<String> {
        let ping = if to.is_ipv6() { "ping6" } else { "ping" };
        vec![ping.into(), "-c".into(), count.to_string(), to.to_string()]
    }

    fn traceroute_argv(&self, to: IpAddr) -> Vec<String> {
        vec!["traceroute".into(), "-n".into(), to.to_string()]
    }

    /// Each interface's `ifconfig -v` (counters of packets, bytes, errors and the bus).
    fn status(&self, info: &NodeInfo, json: bool) -> NodeStatus {
        let alive = self.alive();
        let mut conn = if alive {
            Connection::open(&self.socket).ok()
        } else {
            None
        };
        let answers = conn.is_some();
        let interfaces = info
            .interfaces
            .iter()
            .map(|i| {
                let mut argv = vec!["ifconfig".to_string(), "-v".to_string()];
                if json {
                    argv.push("--json".to_string());
                }
                argv.push(i.name.clone());
                let out = conn
                    .as_mut()
                    .and_then(|c| node::run_collect(c, &argv).ok())
                    .filter(|o| o.status == 0);
                let counters = match out {
                    None => serde_json::Value::Null,
                    Some(o) if json => serde_json::from_str(&o.text())
                        .unwrap_or_else(|_| serde_json::Value::String(o.text())),
                    Some(o) => o.lines.into_iter().map(|(_, l)| l).collect(),
                };
                IfStatus::new(i, counters)
            })
            .collect();
        NodeStatus {
            name: info.name.clone(),
            kind: NodeKind::Netstack.as_str().into(),
            pid: self.pid(),
            namespace: None,
            alive,
            answers,
            state: match (alive, answers) {
                (true, true) => "running",
                (true, false) => "not answering",
                _ if self.daemon.proc.is_none() => "never started",
                _ => "dead",
            }
            .into(),
            socket: Some(self.socket.clone()),
            log: info.log.clone(),
            interfaces,
        }
    }

    fn stop(&self) -> Vec<Proc> {
        if let Some(p) = &self.daemon.proc {
            p.signal(rustix::process::Signal::TERM);
        }
        Vec::new()
    }

    /// Nothing outlives the process: the socket and log go with the lab dir.
    fn cleanup(&self) -> Result<usize> {
        Ok(0)
    }
}
