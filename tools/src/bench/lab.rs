//! What the node-level suites (`ping`, `tcp`) set up: release-built netstack nodes in a
//! throwaway lab directory, network namespaces with veth pairs for the Linux baseline, and
//! `virtif-bridge` processes that put a namespace on a bus as labctl's Linux nodes are.
//! Everything here is torn down when dropped, also when a suite fails half-way.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::Context;

/// Runs a command to completion; its stdout if it succeeded.
pub fn run_ok(cmd: &mut Command) -> anyhow::Result<String> {
    let what = format!("{cmd:?}");
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    if !o.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Set to a directory holding `netstack` and `netstack-ctl` to measure those instead of building
/// the current source (comparing two versions; the section then names the directory).
pub const NETSTACK_DIR_ENV: &str = "SHMLAB_BENCH_NETSTACK_DIR";

/// The release (or, for a debug bench, debug) `netstack` and `netstack-ctl`, built now so the
/// numbers are for the current source, in the target directory the bench binary came from.
pub fn netstack_bins(ctx: &Context) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let Some(dir) = std::env::var_os(NETSTACK_DIR_ENV) {
        let dir = PathBuf::from(dir);
        let (node, ctl) = (dir.join("netstack"), dir.join("netstack-ctl"));
        if !node.exists() || !ctl.exists() {
            bail!(
                "{NETSTACK_DIR_ENV}={}: no netstack and netstack-ctl there",
                dir.display()
            );
        }
        return Ok((node, ctl));
    }
    let [node, ctl] = ctx.build_bins(&["netstack"], ["netstack", "netstack-ctl"])?;
    Ok((node, ctl))
}

/// A directory removed when dropped.
pub struct LabDir(pub PathBuf);

impl LabDir {
    /// On tmpfs where there is one, like labctl's lab directories; named after `suite`.
    pub fn new(suite: &str) -> anyhow::Result<LabDir> {
        let base = [Path::new("/dev/shm").to_path_buf(), std::env::temp_dir()]
            .into_iter()
            .find(|p| p.is_dir())
            .context("no /dev/shm or temporary directory")?;
        let dir = base.join(format!("shmlab-bench-{suite}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(LabDir(dir))
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `netstack --foreground` process, halted (then killed) when dropped.
pub struct Node {
    pub name: String,
    pub sock: PathBuf,
    pub ctl: PathBuf,
    pub child: Child,
}

impl Node {
    pub fn start(bin: &Path, ctl: &Path, dir: &Path, name: &str) -> anyhow::Result<Node> {
        let sock = dir.join(format!("{name}.sock"));
        let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
        let child = Command::new(bin)
            .arg("--socket")
            .arg(&sock)
            .arg("--foreground")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut node = Node {
            name: name.to_string(),
            sock,
            ctl: ctl.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&node.sock).is_err() {
            if let Some(st) = node.child.try_wait()? {
                bail!("node {name} exited at start ({st}); see {name}.log");
            }
            if Instant::now() > deadline {
                bail!("node {name} did not listen within 20 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(node)
    }

    /// Runs one whitespace-separated command in the node; it must succeed.
    pub fn cmd(&self, cmd: &str) -> anyhow::Result<String> {
        run_ok(
            Command::new(&self.ctl)
                .arg(&self.sock)
                .args(cmd.split_whitespace()),
        )
        .with_context(|| format!("node {}", self.name))
    }

    pub fn iface(&self, ifname: &str, bus: &Path, addr: &str) -> anyhow::Result<()> {
        self.cmd(&format!("ifconfig {ifname} create"))?;
        self.cmd(&format!("ifconfig {ifname} linkstr {}", bus.display()))?;
        self.cmd(&format!("ifconfig {ifname} inet {addr} up"))?;
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new(&self.ctl)
            .arg(&self.sock)
            .arg("halt")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Network namespaces and veth pairs for the kernel baseline; deleted when dropped (deleting a
/// namespace deletes the veth ends inside it).
#[derive(Default)]
pub struct Netns {
    names: Vec<String>,
    /// Temporary names of the veth ends made (one per pair suffices to delete a pair left in
    /// this namespace by a failed move).
    pairs: Vec<String>,
}

impl Netns {
    /// Adds namespace `shmlab-bench-PID-SHORT` with its loopback up; returns its name.
    pub fn add(&mut self, short: &str) -> anyhow::Result<String> {
        let name = format!("shmlab-bench-{}-{short}", std::process::id());
        // A namespace left from a crashed run with the same pid.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run_ok(Command::new("ip").args(["netns", "add", &name]))?;
        self.names.push(name.clone());
        run_ok(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]))?;
        Ok(name)
    }

    /// A veth pair from `a` to `b` with addresses (CIDR), both ends up.
    pub fn veth(&mut self, a: (&str, &str, &str), b: (&str, &str, &str)) -> anyhow::Result<()> {
        let ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)) = (a, b);
        // Created in this namespace first, so named uniquely (at most 15 bytes) until moved.
        let tag = format!("sb{}x{}", std::process::id() % 1_000_000, self.pairs.len());
        let (tmp_a, tmp_b) = (format!("{tag}a"), format!("{tag}b"));
        run_ok(Command::new("ip").args([
            "link", "add", &tmp_a, "type", "veth", "peer", "name", &tmp_b,
        ]))?;
        self.pairs.push(tmp_a.clone());
        for (tmp, ns, ifname, addr) in [(&tmp_a, ns_a, if_a, addr_a), (&tmp_b, ns_b, if_b, addr_b)]
        {
            run_ok(Command::new("ip").args(["link", "set", tmp, "netns", ns, "name", ifname]))?;
            run_ok(Command::new("ip").args(["-n", ns, "addr", "add", addr, "dev", ifname]))?;
            run_ok(Command::new("ip").args(["-n", ns, "link", "set", ifname, "up"]))?;
        }
        Ok(())
    }

    pub fn exec(&self, ns: &str, argv: &[&str]) -> anyhow::Result<String> {
        run_ok(Command::new("ip").args(["netns", "exec", ns]).args(argv))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for tmp in self.pairs.drain(..) {
            // Only still here if moving it failed; otherwise this fails quietly.
            let _ = Command::new("ip")
                .args(["link", "del", &tmp])
                .stderr(Stdio::null())
                .status();
        }
        for n in self.names.drain(..).rev() {
            let ok = Command::new("ip")
                .args(["netns", "del", &n])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("bench: could not delete network namespace {n}; `ip netns del {n}`");
            }
        }
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A `virtif-bridge` process joining tap `eth0` in a namespace to a bus file, as labctl does for
/// a Linux node's interface; killed when dropped. Its counters go to `NAME.bridge.json`.
pub struct Bridge {
    child: Child,
    pub stats: PathBuf,
}

impl Bridge {
    /// Starts the bridge and waits for its `ready` line (errors: see `NAME.bridge.log`).
    pub fn start(
        bin: &Path,
        bus: &Path,
        netns: &str,
        dir: &Path,
        name: &str,
    ) -> anyhow::Result<Bridge> {
        let stats = dir.join(format!("{name}.bridge.json"));
        let mut child = Command::new(bin)
            .arg("--bus")
            .arg(bus)
            .args(["--tap", "eth0", "--netns", netns, "--stats"])
            .arg(&stats)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(
                dir.join(format!("{name}.bridge.log")),
            )?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut ready = String::new();
        let stdout = child.stdout.take().context("bridge stdout")?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready)?;
        let bridge = Bridge { child, stats };
        if !ready.starts_with("ready ") {
            bail!("virtif-bridge {name} did not start; see {name}.bridge.log in the lab directory");
        }
        Ok(bridge)
    }

    /// The bridge's counters as of its last write (once a second, and at exit).
    pub fn counters(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&self.stats).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// SIGTERM, so the bridge writes its final counters, and wait for it.
    pub fn stop(mut self) -> Option<serde_json::Value> {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
        self.counters()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
