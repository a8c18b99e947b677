//! `kind = "linux"`: the real kernel stack in a network namespace (named as root, or a
//! holder's when unprivileged), each interface a tap joined to its bus by a `virtif-bridge`.
//! The mechanics (namespaces, holders, bridges, privilege checks) are in [`crate::linux`].

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{Binaries, BridgeStatus, ConfigCx, IfStatus, NodeDriver, NodeStatus, PlanCx, StartCx};
use crate::journal::ProcRecord;
use crate::lab::{self, KindState, LabState, NodeInfo, Proc};
use crate::linux::{self, BridgeState, HostAccess, Netns};
use crate::node::{self, Output, Stream};
use crate::topology::{Node, NodeKind};

/// A Linux node in `state.json`: its namespace and one bridge per interface.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinuxNode {
    pub netns: Netns,
    #[serde(default)]
    pub bridges: Vec<BridgeState>,
}

/// A Linux node's own part of its state.
fn this(kind: &mut KindState) -> Result<&mut LinuxNode> {
    match kind {
        KindState::Linux(l) => Ok(l),
        _ => bail!("internal error: a Linux node's state is of another kind"),
    }
}

/// Deletes namespace `name` left over from an earlier run of this lab, or fails when another
/// lab owns it (`shmlab-a-b-c` is lab `a` node `b-c` and lab `a-b` node `c`).
fn clear_leftover_netns(lab_name: &str, name: &str) -> Result<()> {
    if !Netns::Named(name.to_string()).alive() {
        return Ok(());
    }
    for other in lab::lab_names().iter().filter(|n| *n != lab_name) {
        if let Ok(s) = LabState::load(&lab::lab_path(other)) {
            if s.host_names().iter().any(|n| n == name) {
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

/// Named namespaces `shmlab-LAB-*` that no lab under the base dir records: leftovers of a lab
/// whose directory or state is gone.
pub fn orphan_netns(lab_name: &str) -> Vec<String> {
    let prefix = linux::netns_name(lab_name, "");
    let owned: Vec<String> = lab::lab_names()
        .iter()
        .filter_map(|n| LabState::load(&lab::lab_path(n)).ok())
        .flat_map(|s| s.host_names())
        .collect();
    linux::named_netns()
        .into_iter()
        .filter(|n| n.starts_with(&prefix) && !owned.contains(n))
        .collect()
}

impl NodeDriver for LinuxNode {
    fn kind(&self) -> NodeKind {
        NodeKind::Linux
    }

    fn preflight(node: &Node, bins: &mut Binaries) -> Result<()> {
        if linux::bus_interfaces(node).next().is_some() && bins.bridge.is_none() {
            bins.bridge = Some(linux::find_bridge(bins.bridge_flag.as_deref())?);
        }
        Ok(())
    }

    /// The namespace (a name, or a holder process) and one bridge per interface.
    fn plan(n: &Node, cx: &PlanCx) -> Result<KindState> {
        let name = &n.name.value;
        let netns = match cx.bins.access {
            Some(HostAccess::Root) => Netns::Named(linux::netns_name(cx.lab(), name)),
            Some(HostAccess::Holder) => {
                Netns::Holder(ProcRecord::intent(cx.dir, &format!("holder:{name}")))
            }
            None => bail!("no host access checked for a Linux node"),
        };
        let bridges = linux::bus_interfaces(n)
            .map(|(ifname, bus, _)| BridgeState {
                proc: ProcRecord::intent(cx.dir, &format!("bridge:{name}:{ifname}")),
                tap: ifname.to_string(),
                bus: cx.bus_path(bus),
                mac: String::new(),
                stats: cx.dir.join(format!("{name}.{ifname}.bridge.json")),
                log: cx.dir.join(format!("{name}.{ifname}.bridge.log")),
            })
            .collect();
        Ok(KindState::Linux(LinuxNode { netns, bridges }))
    }

    /// The namespace (named: a leftover of an earlier run deleted, then `ip netns add`;
    /// holder: spawned and waited for), then each bridge, waited for in turn.
    fn start(n: &Node, cx: &mut StartCx) -> Result<()> {
        let name = n.name.value.clone();
        let lab = cx.lab();
        let (log, netns) = {
            let ns = cx.node()?;
            (ns.info.log.clone(), this(&mut ns.kind)?.netns.clone())
        };
        match &netns {
            Netns::Named(ns) => {
                clear_leftover_netns(&lab, ns)?;
                linux::add_named(ns)?;
            }
            Netns::Holder(record) => {
                let holder_log = log.with_file_name(format!("{name}.holder.log"));
                let mut cmd = linux::holder_command(&holder_log)?;
                let (proc, mut child) = cx.journal.spawn(&record.marker, &mut cmd)?;
                if let Netns::Holder(r) = &mut this(&mut cx.node()?.kind)?.netns {
                    r.proc = Some(proc.clone());
                }
                let ready = linux::wait_holder(&mut child, &proc, &holder_log);
                cx.journal.adopt(child);
                ready?;
            }
        }
        let netns = this(&mut cx.node()?.kind)?.netns.clone();
        std::fs::write(&log, format!("linux node {name} in {}\n", netns.describe()))
            .with_context(|| format!("writing {}", log.display()))?;
        for (i, (_, bus, mtu)) in linux::bus_interfaces(n).enumerate() {
            let bin = cx.bins.bridge.clone().context("no virtif-bridge binary")?;
            let mut bridge = this(&mut cx.node()?.kind)?
                .bridges
                .get(i)
                .cloned()
                .context("internal error: a bridge was not planned")?;
            let what = format!("interface {} on bus {bus}", bridge.tap);
            let mut cmd =
                linux::bridge_command(&bin, &netns, &bridge, mtu).context(what.clone())?;
            let (proc, mut child) = cx
                .journal
                .spawn(&bridge.proc.marker, &mut cmd)
                .context(what.clone())?;
            bridge.proc.proc = Some(proc);
            this(&mut cx.node()?.kind)?.bridges[i] = bridge.clone();
            let ready =
                linux::wait_ready(&bin, &mut child, &mut bridge, linux::BRIDGE_READY_TIMEOUT);
            cx.journal.adopt(child);
            ready.context(what)?;
            // The tap's MAC, from the bridge's `ready` line.
            this(&mut cx.node()?.kind)?.bridges[i] = bridge;
        }
        Ok(())
    }

    fn sweep_host(lab: &str) -> Result<usize> {
        let mut n = 0;
        for ns in orphan_netns(lab) {
            Netns::Named(ns).remove()?;
            n += 1;
        }
        Ok(n)
    }

    fn procs(&self) -> Vec<&ProcRecord> {
        let holder = match &self.netns {
            Netns::Holder(r) => Some(r),
            Netns::Named(_) => None,
        };
        holder
            .into_iter()
            .chain(self.bridges.iter().map(|b| &b.proc))
            .collect()
    }

    fn procs_mut(&mut self) -> Vec<&mut ProcRecord> {
        let holder = match &mut self.netns {
            Netns::Holder(r) => Some(r),
            Netns::Named(_) => None,
        };
        holder
            .into_iter()
            .chain(self.bridges.iter_mut().map(|b| &mut b.proc))
            .collect()
    }

    fn host_names(&self) -> Vec<String> {
        match &self.netns {
            Netns::Named(n) => vec![n.clone()],
            Netns::Holder(_) => Vec::new(),
        }
    }

    fn lingering(&self) -> Vec<String> {
        match &self.netns {
            Netns::Named(n) if self.netns.alive() => vec![format!("network namespace {n}")],
            _ => Vec::new(),
        }
    }

    /// The namespace exists (its bridges may have died: the node still takes commands).
    fn alive(&self) -> bool {
        self.netns.alive()
    }

    /// The holder's pid; a named namespace has no process of its own.
    fn pid(&self) -> Option<u32> {
        match &self.netns {
            Netns::Holder(r) => r.pid(),
            Netns::Named(_) => None,
        }
    }

    fn not_running(&self, lab: &str, info: &NodeInfo) -> String {
        let why = match &self.netns {
            Netns::Named(n) => format!("its namespace {n} is gone"),
            Netns::Holder(r) => match r.pid() {
                Some(pid) => format!("its namespace holder, pid {pid}, is gone"),
                None => "its namespace holder was never started".into(),
            },
        };
        format!(
            "lab {lab}: node {} is not running ({why}); its log is {}",
            info.name,
            info.log.display()
        )
    }

    fn place(&self) -> Option<String> {
        Some(format!("Linux namespace {}", self.netns.describe()))
    }

    /// `ip`/`sysctl` commands inside the namespace, each logged to NODE.log with its output.
    fn configure(&self, info: &NodeInfo, node: &Node, cx: &ConfigCx) -> Result<()> {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&info.log)
            .with_context(|| format!("opening {}", info.log.display()))?;
        for argv in linux::config_commands(node) {
            if cx.cancelled() {
                bail!("node {}: interrupted", info.name);
            }
            let out = self
                .netns
                .run(&argv)
                .with_context(|| format!("node {}", info.name))?;
            let _ = writeln!(log, "$ {}", node::show(&argv));
            let _ = log.write_all(&out.stdout);
            let _ = log.write_all(&out.stderr);
            if !out.status.success() {
                bail!(
                    "node {} (namespace {}): `{}` failed ({}): {}",
                    info.name,
                    self.netns.describe(),
                    node::show(&argv),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(())
    }

    /// Any host program in the namespace with labctl's stdin, stdout and stderr (so
    /// `with_stdin` changes nothing); its status, or 128 + the signal that ended it. Ctrl-C
    /// reaches the command (same process group) but no longer ends labctl, so the status
    /// still comes through.
    fn exec(&self, _info: &NodeInfo, argv: &[String], _with_stdin: bool) -> Result<i32> {
        use std::os::unix::process::ExitStatusExt;
        let ignore = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGQUIT] {
            let _ = signal_hook::flag::register(sig, ignore.clone());
        }
        let status = self.netns.command(argv)?.status().with_context(|| {
            format!(
                "running `{}` in {}",
                node::show(argv),
                self.netns.describe()
            )
        })?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    fn exec_collect(&self, info: &NodeInfo, argv: &[String]) -> Result<Output> {
        use std::os::unix::process::ExitStatusExt;
        let o = self
            .netns
            .command(argv)?
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("node {}: `{}`", info.name, node::show(argv)))?;
        let mut lines = Vec::new();
        for (stream, bytes) in [(Stream::Out, &o.stdout), (Stream::Err, &o.stderr)] {
            for l in String::from_utf8_lossy(bytes).lines() {
                lines.push((stream, l.to_string()));
            }
        }
        Ok(Output {
            status: o
                .status
                .code()
                .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0)),
            lines,
        })
    }

    /// iputils: -W 2 waits up to 2 s for each reply, -i 0.2 keeps counts quick.
    fn ping_argv(&self, to: IpAddr, count: u32) -> Vec<String> {
        ["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "2"]
            .iter()
            .map(|s| s.to_string())
            .chain([to.to_string()])
            .collect()
    }

    /// One probe per hop, so a hop is its one answer or `*` (Linux rate-limits ICMP errors;
    /// more probes only meet the limit sooner).
    fn traceroute_argv(&self, to: IpAddr) -> Vec<String> {
        ["traceroute", "-n", "-q", "1", "-w", "2"]
            .iter()
            .map(|s| s.to_string())
            .chain([to.to_string()])
            .collect()
    }

    /// Per interface: its bridge (pid, running?, MAC), the bridge's counters from its stats
    /// file and the kernel's drops on the tap.
    fn status(&self, info: &NodeInfo, json: bool) -> NodeStatus {
        let alive = self.alive();
        let interfaces = info
            .interfaces
            .iter()
            .map(|i| {
                let b = self.bridges.iter().find(|b| b.tap == i.name);
                let stats = b.and_then(|b| linux::read_stats(&b.stats));
                let bridge = b.map(|b| BridgeStatus {
                    pid: b.proc.pid(),
                    alive: b.proc.alive(),
                    mac: b.mac.clone(),
                });
                let kernel = linux::kernel_drops(&self.netns, &i.name);
                let counters = match (stats, json) {
                    (Some(mut v), true) => {
                        if let Some((tx, rx)) = kernel {
                            v["kernel_tx_dropped"] = tx.into();
                            v["kernel_rx_dropped"] = rx.into();
                        }
                        v
                    }
                    (Some(v), false) => {
                        let f = |k: &str| v[k].as_u64().unwrap_or(0);
                        let kernel = kernel.map_or_else(String::new, |(tx, rx)| {
                            format!("; kernel: tx_dropped {tx} rx_dropped {rx}")
                        });
                        let pid = bridge.as_ref().and_then(|b| b.pid).unwrap_or(0);
                        let running = bridge.as_ref().is_some_and(|b| b.alive);
                        serde_json::json!([format!(
                            "bridge pid {pid} ({}): tap_rx {} tap_tx {} bus_rx {} bus_tx {} dropped {}{kernel}",
                            if running { "running" } else { "dead" },
                            f("tap_rx"),
                            f("tap_tx"),
                            f("bus_rx"),
                            f("bus_tx"),
                            f("dropped")
                        )])
                    }
                    (None, _) => serde_json::Value::Null,
                };
                IfStatus {
                    bridge,
                    ..IfStatus::new(i, counters)
                }
            })
            .collect();
        let ns = self.netns.describe();
        NodeStatus {
            name: info.name.clone(),
            kind: NodeKind::Linux.as_str().into(),
            pid: self.pid(),
            namespace: Some(ns.clone()),
            alive,
            answers: alive,
            state: if alive {
                format!("running in {ns}")
            } else {
                format!("gone ({ns} no longer exists)")
            },
            socket: None,
            log: info.log.clone(),
            interfaces,
        }
    }

    /// SIGTERM to what runs inside the namespace (found now: a holder's members only while
    /// the holder lives), to the bridges and to the holder.
    fn stop(&self) -> Vec<Proc> {
        use rustix::process::Signal;
        let members: Vec<Proc> = self
            .netns
            .member_pids()
            .into_iter()
            .filter_map(Proc::from_pid)
            .collect();
        for p in members
            .iter()
            .chain(self.procs().into_iter().filter_map(|r| r.proc.as_ref()))
        {
            p.signal(Signal::TERM);
        }
        members
    }

    /// Deletes a named namespace (after stopping anything still inside); a holder's goes
    /// with the holder.
    fn cleanup(&self) -> Result<usize> {
        match &self.netns {
            Netns::Named(_) if self.netns.alive() => {
                self.netns.remove()?;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}
