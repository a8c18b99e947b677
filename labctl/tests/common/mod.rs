//! Shared helpers for labctl's integration tests: a private lab base dir per test, the labctl
//! binary and the real `netstack` binary, alone or behind a shell wrapper that injects a fault
//! (a slow start, extra arguments) before it `exec`s the real node. Tests that need something
//! missing skip with a message, or fail when `SHMLAB_REQUIRE_ALL=1`.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub use shmlab_tests::prereq::{have_tool, kernel_net, skip};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The real `netstack` binary: beside the test's target dir, built once if missing.
pub fn real_netstack() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| real_bin("SHMLAB_NETSTACK", "netstack", "netstack"))
        .clone()
}

/// The real `virtif-bridge` binary (for Linux nodes): beside the test's target dir, built once
/// if missing.
pub fn real_bridge() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| real_bin("SHMLAB_VIRTIF_BRIDGE", "virtif", "virtif-bridge"))
        .clone()
}

/// Binary `bin` of `package`: `$env_var` if set, else beside this test in the target dir,
/// built with cargo there if missing.
fn real_bin(env_var: &str, package: &str, bin: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    // target/debug/deps/this-test -> target/debug
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?.to_path_buf();
    let path = profile_dir.join(bin);
    if path.is_file() {
        return Some(path);
    }
    let target_dir = profile_dir.parent()?.to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--bin", bin, "--target-dir"])
        .arg(&target_dir)
        .current_dir(repo_root())
        .status()
        .ok()?;
    (status.success() && path.is_file()).then_some(path)
}

/// One test's private world: its own lab base dir and scratch space.
pub struct Env {
    pub base: tempfile::TempDir,
    pub scratch: tempfile::TempDir,
    pub node_bin: PathBuf,
    /// `virtif-bridge` for Linux nodes, passed as $SHMLAB_VIRTIF_BRIDGE when set.
    pub bridge_bin: Option<PathBuf>,
}

impl Env {
    pub fn new(node_bin: PathBuf) -> Env {
        Env {
            base: tempfile::Builder::new()
                .prefix("lab")
                .tempdir()
                .expect("tempdir"),
            scratch: tempfile::tempdir().expect("tempdir"),
            node_bin,
            bridge_bin: None,
        }
    }

    /// An environment for labs with Linux nodes: real netstack and real virtif-bridge, when this
    /// test may touch the kernel (see [`can_run`]).
    pub fn linux(test: &str) -> Option<Env> {
        if !kernel_net(test) {
            return None;
        }
        let mut env = Env::real()?;
        match real_bridge() {
            Some(b) => env.bridge_bin = Some(b),
            None => {
                skip("virtif-bridge is not built and `cargo build -p virtif` failed");
                return None;
            }
        }
        Some(env)
    }

    /// An environment whose nodes are the real `netstack` (skips when it cannot be built).
    pub fn real() -> Option<Env> {
        match real_netstack() {
            Some(bin) => Some(Env::new(bin)),
            None => {
                skip("the netstack binary is not built and `cargo build -p netstack` failed");
                None
            }
        }
    }

    /// Real nodes started through a `/bin/sh` wrapper: `prelude` (shell lines) runs first, then
    /// the wrapper `exec`s the real netstack with labctl's arguments followed by `extra_args`
    /// (already shell-quoted). The node under test is always the real one.
    pub fn real_wrapped(prelude: &str, extra_args: &str) -> Option<Env> {
        Env::real_wrapped_in(Env::real()?, prelude, extra_args)
    }

    /// [`Env::real_wrapped`] for an environment made already (whose `node_bin` is real).
    pub fn real_wrapped_in(mut env: Env, prelude: &str, extra_args: &str) -> Option<Env> {
        let wrapper = env.scratch.path().join("netstack-wrapper.sh");
        let script = format!(
            "#!/bin/sh\n{prelude}\nexec '{}' \"$@\" {extra_args}\n",
            env.node_bin.display()
        );
        std::fs::write(&wrapper, script).expect("writing the wrapper");
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod the wrapper");
        env.node_bin = wrapper;
        Some(env)
    }

    pub fn labctl(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_labctl"));
        c.env("SHMLAB_DIR", self.base.path())
            .env("SHMLAB_NETSTACK", &self.node_bin)
            .env_remove("SHMLAB_REQUIRE_ALL");
        if let Some(b) = &self.bridge_bin {
            c.env("SHMLAB_VIRTIF_BRIDGE", b);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.labctl().args(args).output().expect("running labctl")
    }

    /// Runs labctl and insists on success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "labctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs labctl, insists on failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "labctl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Writes a topology file into scratch space and returns its path as a string.
    pub fn topo(&self, name: &str, text: &str) -> String {
        let p = self.scratch.path().join(name);
        std::fs::write(&p, text).expect("writing topology");
        p.display().to_string()
    }

    pub fn lab_dir(&self, lab: &str) -> PathBuf {
        self.base.path().join(lab)
    }

    pub fn state(&self, lab: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.lab_dir(lab).join("state.json"))
            .expect("reading state.json");
        serde_json::from_str(&text).expect("state.json is JSON")
    }

    pub fn pids(&self, lab: &str) -> Vec<u32> {
        let s = self.state(lab);
        // A netstack node's pid, or a Linux node's holder's; Linux nodes in a named namespace
        // have no process of their own.
        let mut pids: Vec<u32> = s["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(|n| n["pid"].as_u64().or(n["netns"]["holder"]["pid"].as_u64()))
            .map(|p| p as u32)
            .collect();
        pids.extend(
            s["captures"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| n["pid"].as_u64().expect("pid") as u32),
        );
        pids
    }
}

/// True while `pid` is a live process (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s[s.rfind(')').map(|i| i + 2).unwrap_or(0)..]
                .chars()
                .next()
                .unwrap_or('X');
            state != 'Z' && state != 'X'
        }
        Err(_) => false,
    }
}

/// True when no process has `path` on its command line (lists any it finds).
pub fn no_process_mentions(path: &Path) -> bool {
    let left = Command::new("pgrep")
        .args(["-a", "-f"])
        .arg(path)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !left.trim().is_empty() {
        eprintln!("processes left: {left}");
    }
    left.trim().is_empty()
}

/// Waits up to 5 s for every pid to be gone.
pub fn all_gone(pids: &[u32]) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if !pids.iter().any(|&p| alive(p)) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// A chain of `n` hosts/routers in the style of the shipped topologies, for ad-hoc labs.
pub fn two_hosts(lab: &str) -> String {
    format!(
        r#"name = "{lab}"
[nodes.h1]
interfaces = [{{ bus = "lan", addrs = ["10.0.0.1/24"] }}]
[nodes.h2]
interfaces = [{{ bus = "lan", addrs = ["10.0.0.2/24"] }}]
[[checks]]
ping = {{ from = "h1", to = "10.0.0.2" }}
"#
    )
}

/// `n` hosts on one bus.
pub fn hosts_on_a_bus(lab: &str, n: usize) -> String {
    let mut s = format!("name = \"{lab}\"\n");
    for i in 1..=n {
        s.push_str(&format!(
            "[nodes.h{i}]\ninterfaces = [{{ bus = \"lan\", addrs = [\"10.0.0.{i}/24\"] }}]\n"
        ));
    }
    s
}

impl Drop for Env {
    /// A failing test must not leave nodes behind: bring down whatever labs it left up.
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.base.path()) else {
            return;
        };
        for e in entries.flatten() {
            if e.path().join("state.json").is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                let _ = self.labctl().args(["down", &name]).output();
            }
        }
    }
}

/// `tcpdump -n ARGS -r FILE`, which must read the file without complaint; what it printed.
pub fn tcpdump_read(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tcpdump")
        .arg("-n")
        .args(args)
        .arg("-r")
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tcpdump -r {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
