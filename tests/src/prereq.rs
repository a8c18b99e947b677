//! What a test needs from the machine (root, host tools, /dev/net/tun), checked the same way in
//! every crate: a missing prerequisite skips the test with a message, unless
//! `SHMLAB_REQUIRE_ALL=1` (set by `.ci/run`) says every test must really run; then it fails.

use std::path::Path;
use std::process::{Command, Stdio};

/// Skips the calling test: prints `why` and returns true, or panics with it when
/// `SHMLAB_REQUIRE_ALL=1`.
pub fn skip(why: &str) -> bool {
    if std::env::var("SHMLAB_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{why}, and SHMLAB_REQUIRE_ALL=1 forbids skipping");
    }
    eprintln!("SKIPPED: {why}");
    true
}

/// True when `test` may use the host kernel's networking: we are root, `ip` runs and
/// /dev/net/tun exists (network namespaces, veth, taps). Otherwise [`skip`]s.
pub fn kernel_net(test: &str) -> bool {
    let why = if !rustix::process::geteuid().is_root() {
        "needs root (network namespaces and taps)"
    } else if Command::new("ip").arg("-V").output().is_err() {
        "needs the `ip` command (apt-get install iproute2)"
    } else if !Path::new("/dev/net/tun").exists() {
        "needs /dev/net/tun"
    } else {
        return true;
    };
    !skip(&format!("{test}: {why}"))
}

/// True when `tool` starts (`tool --version` or `tool -V`). Otherwise [`skip`]s.
pub fn have_tool(tool: &str) -> bool {
    let runs = |arg: &str| {
        Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    runs("--version") || runs("-V") || !skip(&format!("`{tool}` is not installed"))
}
