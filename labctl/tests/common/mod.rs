//! Shared helpers for labctl's integration tests: a private lab base dir per test, the labctl
//! binary, the fake node (a Python stand-in speaking the control protocol) and the real
//! `netstack` binary. Tests that need something missing skip with a message, or fail when
//! `SHMLAB_REQUIRE_ALL=1`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Skips the calling test (returns true) unless every test is required to run.
pub fn skip(why: &str) -> bool {
    if std::env::var("SHMLAB_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("required test cannot run: {why}");
    }
    eprintln!("SKIPPED: {why}");
    true
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The fake node, if python3 is there to run it.
pub fn fake_node() -> Option<PathBuf> {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("pass")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ok.then(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("fixtures")
            .join("fake_netstack.py")
    })
}

/// The real `netstack` binary: beside the test's target dir, built once if missing.
pub fn real_netstack() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SHMLAB_NETSTACK") {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        // target/debug/deps/this-test -> target/debug
        let exe = std::env::current_exe().ok()?;
        let profile_dir = exe.parent()?.parent()?.to_path_buf();
        let bin = profile_dir.join("netstack");
        if bin.is_file() {
            return Some(bin);
        }
        let target_dir = profile_dir.parent()?.to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "netstack",
                "--bin",
                "netstack",
                "--target-dir",
            ])
            .arg(&target_dir)
            .current_dir(repo_root())
            .status()
            .ok()?;
        (status.success() && bin.is_file()).then_some(bin)
    })
    .clone()
}

/// One test's private world: its own lab base dir and scratch space.
pub struct Env {
    pub base: tempfile::TempDir,
    pub scratch: tempfile::TempDir,
    pub node_bin: PathBuf,
    pub extra_env: Vec<(String, String)>,
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
            extra_env: Vec::new(),
        }
    }

    pub fn with_fake() -> Option<Env> {
        match fake_node() {
            Some(p) => Some(Env::new(p)),
            None => {
                skip("python3 is not installed, so the fake node cannot run");
                None
            }
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Env {
        self.extra_env.push((k.into(), v.into()));
        self
    }

    pub fn labctl(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_labctl"));
        c.env("SHMLAB_DIR", self.base.path())
            .env("SHMLAB_NETSTACK", &self.node_bin)
            .env_remove("SHMLAB_REQUIRE_ALL");
        for (k, v) in &self.extra_env {
            c.env(k, v);
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
        let mut pids: Vec<u32> = s["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["pid"].as_u64().expect("pid") as u32)
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
