//! The NetBSD-style scripts in tests/compat/ (plain sh, tests/net style), run against the real
//! commands: `rump_server` and the `rump.*` names (this package's binary, linked under each
//! name by `tools/compat/install --from`), `netstack` (built into this test's target dir),
//! `shmif_dumpbus`, `shmif_pcapin` and the host's tcpdump. Each script runs in a fresh
//! directory and must exit 0; it halts its servers itself, even when it fails (a trap), and
//! this test checks that: a control socket left behind fails the test (and its node is halted
//! here, so nothing leaks).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use shmlab_tests::prereq::{have_tool, skip};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Builds netstack's binaries beside this package's (a no-op when they are fresh) and links
/// everything into `<target>/compat-bin/bin` with the install script. None: skipped.
fn install_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = DIR.get_or_init(|| {
        let rump = PathBuf::from(env!("CARGO_BIN_EXE_rump_server"));
        let profile_dir = rump.parent().ok_or("no directory for rump_server")?;
        let above = profile_dir.parent().ok_or("no target dir")?;
        // target/PROFILE, or target/TRIPLE/PROFILE when built with --target.
        let (target_dir, triple) = if above.join("CACHEDIR.TAG").exists() {
            (above.to_path_buf(), None)
        } else {
            let t = above.parent().ok_or("no target dir")?.to_path_buf();
            (t, above.file_name().map(|n| n.to_os_string()))
        };
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("bad profile dir")?;
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "-p",
                "netstack",
                "--bin",
                "netstack",
                "--bin",
                "netstack-ctl",
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(repo_root());
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        if let Some(t) = triple {
            build.arg("--target").arg(t);
        }
        let status = build.status().map_err(|e| format!("cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build -p netstack failed ({status})"));
        }
        let root = target_dir.join("compat-bin");
        let out = Command::new("sh")
            .arg(repo_root().join("tools/compat/install"))
            .arg("--from")
            .arg(profile_dir)
            .arg(&root)
            .output()
            .map_err(|e| format!("tools/compat/install: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tools/compat/install --from failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(root.join("bin"))
    });
    match r {
        Ok(dir) => Some(dir.clone()),
        Err(e) => {
            skip(&format!("compat scripts: {e}"));
            None
        }
    }
}

/// Control sockets under `dir`: nodes a script did not halt.
fn sockets(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(t) if t.is_socket() => found.push(e.path()),
            Ok(t) if t.is_dir() => sockets(&e.path(), found),
            _ => {}
        }
    }
}

fn run_script(name: &str) {
    if !have_tool("tcpdump") {
        return;
    }
    let Some(bin) = install_dir() else {
        return;
    };
    let work = tempfile::Builder::new()
        .prefix("compat")
        .tempdir()
        .expect("tempdir");
    let script = repo_root().join("tests/compat").join(name);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", &path)
        .env("COMPAT_WORK", work.path())
        .env_remove("RUMP_SERVER")
        .env_remove("SHMLAB_NETSTACK")
        .output()
        .unwrap_or_else(|e| panic!("sh {}: {e}", script.display()));
    let mut left = Vec::new();
    sockets(work.path(), &mut left);
    for s in &left {
        let _ = Command::new(bin.join("rump.halt"))
            .env("RUMP_SERVER", format!("unix://{}", s.display()))
            .output();
    }
    let report = format!(
        "{name} exited with {}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert!(
        left.is_empty(),
        "{name} left rump servers running (halted now): {left:?}\n{report}"
    );
}

#[test]
fn rump_server_and_clients() {
    run_script("t_rump_server.sh");
}

#[test]
fn ping_on_a_bus() {
    run_script("t_ping.sh");
}

#[test]
fn forwarding() {
    run_script("t_forwarding.sh");
}

#[test]
fn routes() {
    run_script("t_route.sh");
}

#[test]
fn arp_and_ndp() {
    run_script("t_arp_ndp.sh");
}

#[test]
fn pcapin() {
    run_script("t_pcapin.sh");
}

/// The scripts' own cleanup: a script that fails halfway still halts every server it started.
#[test]
fn a_failing_script_still_halts_its_servers() {
    if !have_tool("tcpdump") {
        return;
    }
    let Some(bin) = install_dir() else {
        return;
    };
    let work = tempfile::Builder::new()
        .prefix("compat")
        .tempdir()
        .expect("tempdir");
    let script = work.path().join("t_fails.sh");
    std::fs::write(
        &script,
        format!(
            ". {}/tests/compat/common.sh\n\
             start_server a\nstart_server b\n\
             check -o 'match:no such output' on a rump.ifconfig -a\n\
             echo not reached\n",
            repo_root().display()
        ),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg(&script)
        .current_dir(work.path())
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("COMPAT_WORK", work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("FAIL: on a rump.ifconfig -a")
            && stderr.contains("stdout does not match: no such output"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not reached"));
    let mut left = Vec::new();
    sockets(work.path(), &mut left);
    assert!(left.is_empty(), "servers left running: {left:?}");
}
