//! Linux nodes (`kind = "linux"`): the real kernel stack in a network namespace, each interface
//! a tap bridged to its bus by one `virtif-bridge` process.
//!
//! Two ways to get a namespace, chosen once per `up` by [`HostAccess::check`]:
//! - as root, a named namespace `shmlab-LAB-NODE` (`ip netns add`); commands run through
//!   `ip -n NS ...` and `ip netns exec NS ...`, and bridges get `--netns NS`;
//! - otherwise, a holder process (`unshare --user --map-root-user --net -- sleep infinity`)
//!   whose namespaces commands and bridges enter with `nsenter --target PID --user --net
//!   --preserve-credentials`. That needs read/write access to /dev/net/tun for the taps.
//!
//! These are the mechanics; the `linux` kind built from them is [`crate::driver::linux`],
//! which journals every namespace and process before it exists, so `down` can remove it after
//! any crash.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::journal::ProcRecord;
use crate::lab::{self, Proc};
use crate::topology::{Link, Node, NodeKind, RouteDest, Topology};

/// Where `ip netns add` puts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";
/// The tap character device every bridge (and every netstack tap) opens.
pub const TUN_DEVICE: &str = "/dev/net/tun";
/// How long a bridge may take to print its `ready` line.
pub const BRIDGE_READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The named namespace of a Linux node as root: `shmlab-LAB-NODE`.
pub fn netns_name(lab: &str, node: &str) -> String {
    format!("shmlab-{lab}-{node}")
}

/// How commands reach a Linux node's network namespace.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Netns {
    /// A named namespace, `/run/netns/NAME` (labctl runs as root).
    Named(String),
    /// The user and network namespaces of a holder process (labctl is unprivileged); an
    /// intent until the holder has a pid.
    Holder(ProcRecord),
}

impl Netns {
    /// For messages and `status`: the namespace name, or `holder pid N`.
    pub fn describe(&self) -> String {
        match self {
            Netns::Named(n) => n.clone(),
            Netns::Holder(r) => match r.pid() {
                Some(pid) => format!("holder pid {pid}"),
                None => "a holder that was never started".into(),
            },
        }
    }

    /// Is the namespace still there?
    pub fn alive(&self) -> bool {
        match self {
            Netns::Named(n) => Path::new(NETNS_DIR).join(n).exists(),
            Netns::Holder(r) => r.alive(),
        }
    }

    /// `argv` run inside the namespace; an error for a holder that never got a pid.
    pub fn command(&self, argv: &[String]) -> Result<Command> {
        match self {
            Netns::Named(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec"]).arg(n).args(argv);
                Ok(c)
            }
            Netns::Holder(r) => {
                let pid = r
                    .pid()
                    .context("the namespace holder of this node was never started")?;
                let mut c = Command::new("nsenter");
                c.arg("--target")
                    .arg(pid.to_string())
                    .args(["--user", "--net", "--preserve-credentials", "--"])
                    .args(argv);
                Ok(c)
            }
        }
    }

    /// `ip ARGS` inside the namespace (`ip -n NS` where it can, which skips a mount namespace).
    pub fn ip(&self, args: &[String]) -> Result<Command> {
        match self {
            Netns::Named(n) => {
                let mut c = Command::new("ip");
                c.arg("-n").arg(n).args(args);
                Ok(c)
            }
            Netns::Holder(_) => {
                let mut argv = vec!["ip".to_string()];
                argv.extend(args.iter().cloned());
                self.command(&argv)
            }
        }
    }

    /// Runs a config command (`ip` through [`Netns::ip`], anything else through
    /// [`Netns::command`]) and collects its output.
    pub fn run(&self, argv: &[String]) -> Result<std::process::Output> {
        let mut c = match argv.split_first() {
            Some((first, rest)) if first == "ip" => self.ip(rest)?,
            _ => self.command(argv)?,
        };
        c.stdin(Stdio::null())
            .output()
            .with_context(|| format!("running `{}`", argv.join(" ")))
    }

    /// Processes inside the namespace other than its holder (`ip netns pids`, or a scan of
    /// /proc for the holder's network namespace).
    pub fn member_pids(&self) -> Vec<u32> {
        match self {
            Netns::Named(n) => {
                let mut pids: Vec<u32> = Command::new("ip")
                    .args(["netns", "pids"])
                    .arg(n)
                    .stderr(Stdio::null())
                    .output()
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .split_whitespace()
                            .filter_map(|p| p.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                // Bridges run outside, but their tap keeps the namespace alive after `del`.
                pids.extend(bridges_into(n));
                pids
            }
            Netns::Holder(r) => {
                let Some(h) = r.proc.as_ref().filter(|h| h.alive()) else {
                    return Vec::new();
                };
                let Ok(ns) = std::fs::read_link(format!("/proc/{}/ns/net", h.pid)) else {
                    return Vec::new();
                };
                std::fs::read_dir("/proc")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|&pid| pid != h.pid && pid != std::process::id())
                    .filter(|pid| {
                        std::fs::read_link(format!("/proc/{pid}/ns/net"))
                            .ok()
                            .as_ref()
                            == Some(&ns)
                    })
                    .collect()
            }
        }
    }

    /// Stops whatever still runs inside (commands an `exec` left in the background, a
    /// `tcpdump`), then deletes a named namespace. The holder itself is stopped with the
    /// lab's other processes.
    pub fn remove(&self) -> Result<()> {
        let members: Vec<Proc> = self
            .member_pids()
            .into_iter()
            .filter_map(Proc::from_pid)
            .collect();
        lab::stop_all(&members, Duration::from_secs(2));
        if let Netns::Named(n) = self {
            if !self.alive() {
                return Ok(());
            }
            let out = Command::new("ip")
                .args(["netns", "del"])
                .arg(n)
                .output()
                .context("running `ip netns del`")?;
            if !out.status.success() && self.alive() {
                bail!(
                    "ip netns del {n}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok(())
    }
}

/// `virtif-bridge` processes with `--netns NAME` on their command line (found by scanning
/// /proc), e.g. bridges of a lab whose state file is gone.
fn bridges_into(name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"virtif-bridge"))
                && args
                    .windows(2)
                    .any(|w| w[0] == b"--netns" && w[1] == name.as_bytes())
        })
        .collect()
}

/// Names of the named namespaces on this host.
pub fn named_netns() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Creates the named namespace `name`.
pub fn add_named(name: &str) -> Result<()> {
    // Each name is a file in /run/netns.
    if name.len() > 255 {
        bail!("namespace name {name} is over the 255 bytes a file name allows");
    }
    let out = Command::new("ip")
        .args(["netns", "add", name])
        .output()
        .context("running `ip netns add` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The holder: a process alone in a new user namespace (mapping our uid to root) and a new
/// network namespace, its output to `log`. Spawn it, then [`wait_holder`].
pub fn holder_command(log: &Path) -> Result<Command> {
    use std::os::unix::process::CommandExt;
    let err = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut c = Command::new("unshare");
    c.args([
        "--user",
        "--map-root-user",
        "--net",
        "--",
        "sleep",
        "infinity",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(err)
    .process_group(0);
    Ok(c)
}

/// Returns once the holder's namespaces exist; on failure the holder is gone.
pub fn wait_holder(child: &mut Child, proc: &Proc, log: &Path) -> Result<()> {
    // unshare execs sleep only after the namespaces and the uid map exist.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", proc.pid)).unwrap_or_default();
        if comm.trim() == "sleep" {
            // The start time does not change across exec.
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the namespace holder (`unshare --user --map-root-user --net`) exited with {status}: {}; \
                 unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone) — run as root instead",
                lab::tail(log, 3).join(" ")
            );
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the namespace holder did not start within 5 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How `up` may reach the host's network: decided before anything starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAccess {
    /// Root: named namespaces, taps anywhere.
    Root,
    /// Unprivileged: holder namespaces, taps only inside them.
    Holder,
}

fn has_cap_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

fn tun_access() -> std::result::Result<(), String> {
    use rustix::fs::{access, Access};
    if !Path::new(TUN_DEVICE).exists() {
        return Err(format!(
            "{TUN_DEVICE} does not exist (load the tun module: modprobe tun)"
        ));
    }
    access(TUN_DEVICE, Access::READ_OK | Access::WRITE_OK).map_err(|_| {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let how = std::fs::metadata(TUN_DEVICE)
            .map(|m| {
                format!(
                    "mode {:o}, owner uid {}",
                    m.permissions().mode() & 0o777,
                    m.uid()
                )
            })
            .unwrap_or_else(|_| "unknown mode".into());
        format!(
            "labctl runs as uid {}, which cannot open {TUN_DEVICE} for reading and writing ({how})",
            rustix::process::getuid().as_raw()
        )
    })
}

fn tool_exists(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

impl HostAccess {
    /// Can this labctl start `topo`'s Linux nodes and host taps? The error names what is
    /// missing and how to run `up` instead. `file` is the topology file, for that hint.
    pub fn check(topo: &Topology, file: &Path) -> Result<HostAccess> {
        let linux_ifs = topo
            .nodes
            .iter()
            .filter(|n| n.kind.value == NodeKind::Linux)
            .any(|n| !n.interfaces.is_empty());
        let host_taps: Vec<String> = topo
            .nodes
            .iter()
            .flat_map(|n| {
                n.interfaces
                    .iter()
                    .filter_map(|i| i.tap())
                    .map(move |t| format!("{}: tap {}", n.name.value, t.value))
            })
            .collect();
        let how = format!("run it as root: `sudo labctl up {}`", file.display());
        if !tool_exists("ip") {
            bail!("Linux nodes and host taps need the `ip` command (apt-get install iproute2)");
        }
        let euid = rustix::process::geteuid();
        if euid.is_root() {
            if linux_ifs || !host_taps.is_empty() {
                tun_access().map_err(|e| anyhow!("taps need {TUN_DEVICE}: {e}"))?;
            }
            return Ok(HostAccess::Root);
        }
        let uid = euid.as_raw();
        if !host_taps.is_empty() {
            let why = if has_cap_net_admin() {
                tun_access().err()
            } else {
                Some(format!("labctl runs as uid {uid} without CAP_NET_ADMIN"))
            };
            if let Some(why) = why {
                bail!(
                    "host taps ({}) need root, or CAP_NET_ADMIN plus read/write access to {TUN_DEVICE}: {why}; {how}",
                    host_taps.join(", ")
                );
            }
        }
        if linux_ifs {
            if let Err(why) = tun_access() {
                bail!(
                    "Linux nodes need root, or CAP_NET_ADMIN plus read/write access to {TUN_DEVICE} \
                     (for their taps): {why}; {how}"
                );
            }
        }
        for tool in ["unshare", "nsenter"] {
            if !tool_exists(tool) {
                bail!("Linux nodes without root need `{tool}` (util-linux); or {how}");
            }
        }
        Ok(HostAccess::Holder)
    }
}

/// A running `virtif-bridge`: one tap of a Linux node joined to a bus.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BridgeState {
    #[serde(flatten)]
    pub proc: ProcRecord,
    /// The tap, named as the node's interface.
    #[serde(default)]
    pub tap: String,
    #[serde(default)]
    pub bus: PathBuf,
    /// The tap's MAC, as the bridge reported it (empty until it is ready).
    #[serde(default)]
    pub mac: String,
    /// `NODE.IF.bridge.json`: counters, rewritten every second.
    pub stats: PathBuf,
    /// `NODE.IF.bridge.log`: the bridge's stdout and stderr.
    pub log: PathBuf,
}

/// Where `virtif-bridge` is: `--virtif-bridge-bin`, `$SHMLAB_VIRTIF_BRIDGE`, next to labctl,
/// then `$PATH`.
pub fn find_bridge(explicit: Option<&Path>) -> Result<PathBuf> {
    lab::find_binary(
        "virtif-bridge",
        explicit,
        "--virtif-bridge-bin",
        "SHMLAB_VIRTIF_BRIDGE",
        "cargo build -p virtif --bin virtif-bridge",
    )
}

/// The bridge of `bridge` (its tap, bus, stats and log files) into `netns`, its stdout and
/// stderr going to the log. Spawn it, then [`wait_ready`].
pub fn bridge_command(
    bin: &Path,
    netns: &Netns,
    bridge: &BridgeState,
    mtu: Option<u32>,
) -> Result<Command> {
    use std::os::unix::process::CommandExt;
    let (bus, tap, stats, log) = (&bridge.bus, &bridge.tap, &bridge.stats, &bridge.log);
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let mut args: Vec<String> = vec![
        "--bus".into(),
        bus.display().to_string(),
        "--tap".into(),
        tap.clone(),
    ];
    if let Some(m) = mtu {
        args.extend(["--mtu".into(), m.to_string()]);
    }
    args.extend(["--stats".into(), stats.display().to_string()]);
    let mut cmd = match netns {
        Netns::Named(n) => {
            let mut c = Command::new(bin);
            c.args(&args).arg("--netns").arg(n);
            c
        }
        Netns::Holder(_) => {
            let mut argv = vec![bin.display().to_string()];
            argv.extend(args);
            netns.command(&argv)?
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    Ok(cmd)
}

/// Waits for a bridge's `ready` line and records the tap's MAC from it. On failure or timeout
/// the bridge is gone and the error holds what it printed.
pub fn wait_ready(
    bin: &Path,
    child: &mut Child,
    bridge: &mut BridgeState,
    timeout: Duration,
) -> Result<()> {
    let (tap, bus, log) = (&bridge.tap, &bridge.bus, &bridge.log);
    let deadline = Instant::now() + timeout;
    let fail = |what: String, child: &mut Child| -> anyhow::Error {
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let said: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        anyhow!(
            "bridge for tap {tap} ({} --bus {} --tap {tap}) {what}{}",
            bin.display(),
            bus.display(),
            if said.is_empty() {
                String::new()
            } else {
                format!(": {}", said.join("; "))
            }
        )
    };
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("ready ")) {
            bridge.mac = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("mac="))
                .unwrap_or("")
                .to_string();
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(fail(
                format!("exited with {status} before it was ready"),
                child,
            ));
        }
        if Instant::now() >= deadline {
            return Err(fail(
                format!("printed no `ready` line within {timeout:?}"),
                child,
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A bridge's counters (`tap_rx`, `tap_tx`, `bus_rx`, `bus_tx`, `dropped`, ...), if its stats
/// file has been written.
pub fn read_stats(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The kernel's counters of interface `ifname` in the node's namespace (`ip -s -j link`): frames
/// it dropped on transmit (its tap queue overflowed because the bridge did not read in time)
/// and on receive. None when the namespace or interface is gone.
pub fn kernel_drops(netns: &Netns, ifname: &str) -> Option<(u64, u64)> {
    let argv: Vec<String> = ["ip", "-s", "-j", "link", "show", "dev", ifname]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = netns
        .command(&argv)
        .ok()?
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let stats = &v[0]["stats64"];
    Some((
        stats["tx"]["dropped"].as_u64()?,
        stats["rx"]["dropped"].as_u64()?,
    ))
}

/// The commands that configure a Linux node inside its namespace, in order: loopback, each
/// interface (MTU, addresses, up), forwarding, sysctls, routes, then the node's `exec`.
pub fn config_commands(node: &Node) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let mut cmds = vec![s(&["ip", "link", "set", "dev", "lo", "up"])];
    let mut v6 = false;
    for ifc in &node.interfaces {
        let name = ifc.name.value.as_str();
        if let Some(mtu) = ifc.mtu {
            cmds.push(s(&[
                "ip",
                "link",
                "set",
                "dev",
                name,
                "mtu",
                &mtu.to_string(),
            ]));
        }
        for a in &ifc.addrs {
            let addr = a.value.to_string();
            if a.value.is_v4() {
                cmds.push(s(&["ip", "addr", "add", &addr, "dev", name]));
            } else {
                v6 = true;
                // No duplicate address detection: the lab's addresses are unique by validation,
                // and DAD would leave them tentative (unusable) for a second or more.
                cmds.push(s(&["ip", "-6", "addr", "add", &addr, "dev", name, "nodad"]));
            }
        }
        cmds.push(s(&["ip", "link", "set", "dev", name, "up"]));
    }
    if node.forwarding {
        cmds.push(s(&["sysctl", "-w", "net.ipv4.ip_forward=1"]));
        if v6 {
            cmds.push(s(&["sysctl", "-w", "net.ipv6.conf.all.forwarding=1"]));
        }
    }
    for (k, v) in &node.sysctl {
        cmds.push(s(&["sysctl", "-w", &format!("{k}={v}")]));
    }
    for r in &node.routes {
        let family = if r.via.value.is_ipv4() { "-4" } else { "-6" };
        let to = match r.to.value {
            RouteDest::Default => "default".to_string(),
            RouteDest::Net(p) => p.network().to_string(),
        };
        let via = r.via.value.to_string();
        let mut c = s(&["ip", family, "route", "add", &to, "via", &via]);
        if let Some(ifc) = &r.via_scope {
            c.extend(s(&["dev", ifc]));
        }
        cmds.push(c);
    }
    for e in &node.exec {
        cmds.push(e.value.clone());
    }
    cmds
}

/// The interfaces of a Linux node with their buses (every one has a bus: validation refuses
/// taps on Linux nodes).
pub fn bus_interfaces(node: &Node) -> impl Iterator<Item = (&str, &str, Option<u32>)> {
    node.interfaces.iter().filter_map(|i| match &i.link {
        Link::Bus(b) => Some((i.name.value.as_str(), b.value.as_str(), i.mtu)),
        Link::Tap(_) => None,
    })
}
