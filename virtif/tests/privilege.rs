//! The errors a user meets without privileges or without the device, from a real process:
//! `virtif-probe` run as `nobody`, and in a mount namespace that hides /dev/net/tun.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A copy of `virtif-probe` that `nobody` can execute (the target directory may not be
/// reachable for other users), removed on drop.
struct ProbeCopy {
    dir: PathBuf,
    bin: PathBuf,
}

impl ProbeCopy {
    fn new(tag: &str) -> ProbeCopy {
        let dir =
            std::env::temp_dir().join(format!("shmlab-virtif-probe-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create probe dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("virtif-probe");
        std::fs::copy(env!("CARGO_BIN_EXE_virtif-probe"), &bin).expect("copy probe");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        ProbeCopy { dir, bin }
    }
}

impl Drop for ProbeCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `setpriv` arguments that drop to nobody's uid and gid with no supplementary groups.
fn as_nobody() -> Vec<String> {
    let gid = common::run(Command::new("id").args(["-g", "nobody"]));
    vec![
        "--reuid=nobody".into(),
        format!("--regid={}", gid.trim()),
        "--clear-groups".into(),
    ]
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn unprivileged_open_names_cap_net_admin_and_unshare() {
    if !shmlab_tests::prereq::kernel_net("unprivileged_open_names_cap_net_admin_and_unshare") {
        return;
    }
    let probe = ProbeCopy::new("nobody");
    let out = Command::new("setpriv")
        .args(as_nobody())
        .arg(&probe.bin)
        .arg("virt0")
        .output()
        .expect("run setpriv (util-linux)");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "virtif-probe: virt0: opening /dev/net/tun needs CAP_NET_ADMIN; \
             run as root or inside 'unshare -rn'"
        ),
        "{all}"
    );
    assert!(!stderr.contains("panicked"), "{all}");
}

#[test]
fn unshare_rn_either_works_or_the_message_says_why_not() {
    if !shmlab_tests::prereq::kernel_net("unshare_rn_either_works_or_the_message_says_why_not") {
        return;
    }
    let probe = ProbeCopy::new("userns");
    let userns_ok = Command::new("setpriv")
        .args(as_nobody())
        .args(["unshare", "-rn", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !userns_ok {
        // A kernel policy (user.max_user_namespaces = 0, AppArmor), not a missing tool.
        eprintln!("skipping: unprivileged user namespaces are disabled on this machine");
        return;
    }
    let out = Command::new("setpriv")
        .args(as_nobody())
        .args(["unshare", "-rn"])
        .arg(&probe.bin)
        .arg("virt0")
        .output()
        .expect("run setpriv unshare");
    let all = text(&out);
    let world_rw = std::fs::metadata(virtif::TUN_DEVICE)
        .map(|m| m.permissions().mode() & 0o006 == 0o006)
        .unwrap_or(false);
    if world_rw {
        // The advice works as given: the tap is created in the new namespace.
        assert!(out.status.success(), "{all}");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("virt0 "),
            "{all}"
        );
    } else {
        // It cannot work here, and the message says what else is needed.
        assert_eq!(out.status.code(), Some(1), "{all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("needs CAP_NET_ADMIN"), "{all}");
        assert!(stderr.contains("'chmod 0666 /dev/net/tun'"), "{all}");
    }
}

#[test]
fn missing_dev_net_tun_is_reported_as_such() {
    if !shmlab_tests::prereq::kernel_net("missing_dev_net_tun_is_reported_as_such") {
        return;
    }
    let probe = ProbeCopy::new("nodev");
    // A private mount namespace with an empty /dev/net: the device is missing only there.
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs none /dev/net && exec "$0" virt0"#)
        .arg(&probe.bin)
        .output()
        .expect("run unshare");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("virtif-probe: virt0: /dev/net/tun does not exist; load the tun module"),
        "{all}"
    );
    assert!(
        Path::new(virtif::TUN_DEVICE).exists(),
        "the host's device is untouched"
    );
}

#[test]
fn missing_netns_from_the_command_line() {
    let probe = env!("CARGO_BIN_EXE_virtif-probe");
    let out = Command::new(probe)
        .args(["virt0", "--netns", "shmlab-virtif-no-such-ns"])
        .output()
        .expect("run probe");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("virt0: network namespace \"shmlab-virtif-no-such-ns\" does not exist"),
        "{all}"
    );
}

#[test]
fn unshare_rn_advice_works_where_the_device_is_world_writable() {
    if !shmlab_tests::prereq::kernel_net(
        "unshare_rn_advice_works_where_the_device_is_world_writable",
    ) {
        return;
    }
    let probe = ProbeCopy::new("userns-rw");
    if !Command::new("setpriv")
        .args(as_nobody())
        .args(["unshare", "-rn", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipping: unprivileged user namespaces are disabled on this machine");
        return;
    }
    // The usual 0666 device node, in a private mount namespace so the host's stays as it is;
    // then nobody, in a fresh user+network namespace, opens a tap as the message advises.
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(
            r#"mount -t tmpfs none /dev/net && mknod -m 0666 /dev/net/tun c 10 200 &&
               exec setpriv "$1" "$2" "$3" unshare -rn "$0" virt0 --mtu 1400"#,
        )
        .arg(&probe.bin)
        .args(as_nobody())
        .output()
        .expect("run unshare");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("virt0 netns=- mac="), "{all}");
    assert!(stdout.contains(" mtu=1400 up=true"), "{all}");
}
