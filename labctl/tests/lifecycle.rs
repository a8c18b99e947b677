//! The lab lifecycle and its faults, with real processes: the fake node (a Python stand-in that
//! speaks the control protocol) so these tests pin labctl's behaviour whatever the node can do.

mod common;

use common::*;

#[test]
fn up_exec_down_leaves_nothing_behind() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo("t.toml", &two_hosts("basic"));
    let out = env.ok(&["up", &topo]);
    assert!(out.contains("h1") && out.contains("10.0.0.2/24"), "{out}");
    let pids = env.pids("basic");
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| alive(p)));
    let dir = env.lab_dir("basic");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700);
    assert!(dir.join("lan.bus").is_file());

    // The node received its configuration in order.
    let log = std::fs::read_to_string(dir.join("h1.log")).unwrap();
    let want = format!(
        "ifconfig shmif0 create\nifconfig shmif0 linkstr {}\nifconfig shmif0 inet 10.0.0.1/24\nifconfig shmif0 up\n",
        std::fs::canonicalize(&dir).unwrap().join("lan.bus").display()
    );
    assert_eq!(log, want);

    let out = env.ok(&["exec", "basic", "h1", "--", "ifconfig", "-a"]);
    assert_eq!(out, "fake: ifconfig -a\n");
    // The lab name may be left out when one lab is up.
    let out = env.ok(&["exec", "h2", "--", "ping", "-c", "1", "10.0.0.1"]);
    assert!(out.contains("1 packets received"), "{out}");
    assert!(env.ok(&["ls"]).contains("basic"));

    let out = env.ok(&["down", &topo]);
    assert!(
        out.contains("lab basic is down: 2 processes stopped"),
        "{out}"
    );
    assert!(all_gone(&pids));
    assert!(!dir.exists());
    assert!(env.ok(&["ls"]).contains("no lab is up"));
}

#[test]
fn exec_exits_with_the_node_command_status() {
    let Some(env) = Env::with_fake() else { return };
    let env = env.env("FAKE_UNREACHABLE", "10.0.0.99");
    let topo = env.topo("t.toml", &two_hosts("status"));
    env.ok(&["up", &topo]);
    let out = env.run(&["exec", "status", "h1", "--", "ping", "10.0.0.99"]);
    assert_eq!(out.status.code(), Some(2));
    env.ok(&["down", "status"]);
}

#[test]
fn up_refuses_a_lab_that_is_already_up() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo("t.toml", &two_hosts("twice"));
    env.ok(&["up", &topo]);
    let pids = env.pids("twice");
    let err = env.fails(&["up", &topo]);
    assert!(err.contains("lab \"twice\" is already up"), "{err}");
    // The first lab is untouched.
    assert!(pids.iter().all(|&p| alive(p)));
    env.ok(&["down", "twice"]);
}

#[test]
fn up_without_a_node_binary_fails_cleanly() {
    let Some(mut env) = Env::with_fake() else {
        return;
    };
    env.node_bin = env.scratch.path().join("no-such-netstack");
    let topo = env.topo("t.toml", &two_hosts("nobin"));
    let err = env.fails(&["up", &topo]);
    assert!(err.contains("no-such-netstack"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(!env.lab_dir("nobin").exists());
}

#[test]
fn up_in_an_unusable_lab_dir_fails_cleanly() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo("t.toml", &two_hosts("nodir"));
    // A regular file where the lab's directory should go: not writable for anyone, root too.
    let blocker = env.scratch.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let dir = blocker.join("lab");
    let err = env.fails(&["up", &topo, "--dir", dir.to_str().unwrap()]);
    assert!(
        err.contains("creating lab dir") && err.contains("blocker"),
        "{err}"
    );
    assert!(!env.lab_dir("nodir").exists());

    // A read-only directory (root ignores modes, so only as another user).
    if !rustix::process::getuid().is_root() {
        let ro = env.scratch.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
        let err = env.fails(&["up", &topo, "--dir", ro.join("lab").to_str().unwrap()]);
        assert!(err.contains("ro/lab"), "{err}");
        assert!(!env.lab_dir("nodir").exists());
    }
}

#[test]
fn failed_configuration_names_node_and_command_and_stops_everything() {
    let Some(env) = Env::with_fake() else { return };
    let env = env.env("FAKE_FAIL_ON", "inet 10.0.0.3/24");
    let topo = env.topo("t.toml", &hosts_on_a_bus("badcfg", 4));
    let out = env.run(&["up", &topo]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node h3: `ifconfig shmif0 inet 10.0.0.3/24` failed with status 1: fake: ifconfig shmif0 inet 10.0.0.3/24: refused"),
        "{err}"
    );
    assert!(err.contains("nothing was left running"), "{err}");
    assert!(!env.lab_dir("badcfg").exists());
    // No fake node of this test survives.
    let leftover = std::process::Command::new("pgrep")
        .args(["-f", env.base.path().to_str().unwrap()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(leftover.trim().is_empty(), "processes left: {leftover}");
}

#[test]
fn node_dying_at_start_is_reported_with_its_log() {
    let Some(env) = Env::with_fake() else { return };
    let env = env.env("FAKE_DIE_AT_START", "1");
    let topo = env.topo("t.toml", &two_hosts("dies"));
    let err = env.fails(&["up", &topo]);
    assert!(
        err.contains("exited before opening its control socket"),
        "{err}"
    );
    assert!(err.contains("told to die at start"), "{err}");
    assert!(!env.lab_dir("dies").exists());
}

#[test]
fn down_after_kill_9_of_half_the_nodes() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo("t.toml", &hosts_on_a_bus("crashy", 6));
    env.ok(&["up", &topo]);
    let pids = env.pids("crashy");
    for &p in &pids[..3] {
        std::process::Command::new("kill")
            .args(["-9", &p.to_string()])
            .status()
            .unwrap();
    }
    let out = env.ok(&["down", "crashy"]);
    assert!(
        out.contains("3 processes stopped") && out.contains("3 were already dead"),
        "{out}"
    );
    assert!(all_gone(&pids));
    assert!(!env.lab_dir("crashy").exists());
}

#[test]
fn exec_to_a_dead_node_is_a_clear_error() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo("t.toml", &two_hosts("deadnode"));
    env.ok(&["up", &topo]);
    let pids = env.pids("deadnode");
    std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(all_gone(&pids[..1]));
    let err = env.fails(&["exec", "deadnode", "h1", "--", "ifconfig", "-a"]);
    assert!(
        err.contains(&format!(
            "lab deadnode: node h1 is not running (pid {} is gone)",
            pids[0]
        )),
        "{err}"
    );
    let err = env.fails(&["exec", "deadnode", "h7", "--", "ifconfig"]);
    assert!(err.contains("no node \"h7\" (nodes: h1, h2)"), "{err}");
    let status = env.ok(&["status", "deadnode"]);
    assert!(
        status.contains("dead") && status.contains("running"),
        "{status}"
    );
    env.ok(&["down", "deadnode"]);
}

#[test]
fn two_labs_run_at_once_without_interference() {
    let Some(env) = Env::with_fake() else { return };
    let a = env.topo("a.toml", &two_hosts("lab-a"));
    let b = env.topo("b.toml", &two_hosts("lab-b"));
    env.ok(&["up", &a]);
    env.ok(&["up", &b]);
    let (pa, pb) = (env.pids("lab-a"), env.pids("lab-b"));
    let err = env.fails(&["exec", "h1", "--", "ifconfig"]);
    assert!(
        err.contains("several labs are up (lab-a, lab-b): name one"),
        "{err}"
    );
    env.ok(&["exec", "lab-a", "h1", "--", "ifconfig"]);
    env.ok(&["down", "lab-a"]);
    assert!(all_gone(&pa));
    assert!(pb.iter().all(|&p| alive(p)));
    env.ok(&["exec", "lab-b", "h2", "--", "ifconfig"]);
    // With one lab left the name may be dropped again.
    env.ok(&["exec", "h2", "--", "ifconfig"]);
    env.ok(&["down", "lab-b"]);
    assert!(all_gone(&pb));
}

#[test]
fn test_command_reports_each_check_and_writes_junit() {
    let Some(env) = Env::with_fake() else { return };
    let env = env.env("FAKE_UNREACHABLE", "10.0.0.77");
    let topo = env.topo(
        "t.toml",
        &format!(
            r#"{}
[[checks]]
name = "unreachable host"
ping = {{ from = "h1", to = "10.0.0.77" }}
[[checks]]
ping = {{ from = "h1", to = "10.0.0.77", expect = "failure" }}
[[checks]]
exec = {{ node = "h2", cmd = ["ifconfig", "-a"], output = "^fake: ifconfig -a$" }}
[[checks]]
exec = {{ node = "h2", cmd = "ifconfig -a", output = "nomatch" }}
"#,
            two_hosts("checked")
        ),
    );
    let junit = env.scratch.path().join("junit.xml");
    let out = env.run(&["test", &topo, "--junit", junit.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("PASS [1/5] ping h1 -> 10.0.0.2"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL [2/5] unreachable host"), "{stdout}");
    assert!(
        stdout.contains("PASS [3/5] ping h1 -> 10.0.0.77 fails"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS [4/5]"), "{stdout}");
    assert!(
        stdout.contains("FAIL [5/5]") && stdout.contains("does not match /nomatch/"),
        "{stdout}"
    );
    assert!(stdout.contains("3 passed, 2 failed"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"5\" failures=\"2\""), "{xml}");
    assert!(
        !env.lab_dir("checked").exists(),
        "test must bring the lab down"
    );
}

#[test]
fn test_keep_leaves_the_lab_up() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo("t.toml", &two_hosts("kept"));
    env.ok(&["test", &topo, "--keep"]);
    let pids = env.pids("kept");
    assert!(pids.iter().all(|&p| alive(p)));
    env.ok(&["down", "kept"]);
}

#[test]
fn down_keep_keeps_buses_and_logs_but_not_sockets() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo("t.toml", &two_hosts("keepfiles"));
    env.ok(&["up", &topo]);
    env.ok(&["down", "keepfiles", "--keep"]);
    let dir = env.lab_dir("keepfiles");
    assert!(dir.join("lan.bus").is_file());
    assert!(dir.join("h1.log").is_file());
    assert!(!dir.join("h1.sock").exists());
    assert!(!dir.join("state.json").exists());
    // A kept lab is not "up": it can be started again, which clears the old files.
    env.ok(&["up", &topo]);
    env.ok(&["down", "keepfiles"]);
    assert!(!dir.exists());
}

#[test]
fn expect_on_bus_fails_when_the_bus_stays_silent() {
    let Some(env) = Env::with_fake() else { return };
    // The fake node sends nothing, so nothing can be seen on the bus.
    let topo = env.topo(
        "t.toml",
        r#"name = "silent"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
[[checks]]
ping = { from = "h1", to = "10.0.0.2" }
expect_on_bus = { bus = "lan", proto = "icmp" }
[[checks]]
ping = { from = "h1", to = "10.0.0.2" }
expect_on_bus = { bus = "lan", proto = "esp", present = false }
"#,
    );
    let out = env.run(&["test", &topo]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL [1/2]") && stdout.contains("expected icmp on bus lan, saw none"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS [2/2]"), "{stdout}");
}

#[test]
fn lifetime_capture_and_capture_and_dump_write_pcap_of_bus_frames() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo(
        "t.toml",
        &two_hosts("pcaps").replace("[nodes.h1]", "[buses.lan]\ncapture = true\n[nodes.h1]"),
    );
    env.ok(&["up", &topo]);
    let bus_path = env.lab_dir("pcaps").join("lan.bus");
    let pcap = env.scratch.path().join("live.pcap");
    let mut live = env
        .labctl()
        .args([
            "capture",
            "pcaps",
            "lan",
            "-c",
            "3",
            "--duration",
            "10",
            "-w",
        ])
        .arg(&pcap)
        .spawn()
        .unwrap();
    // Give the capture time to attach, then send frames of our own.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let bus = shmif::Bus::attach(&bus_path, &shmif::BusConfig::default()).unwrap();
    let port = bus.port();
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&port.mac());
    frame.extend_from_slice(&[0x08, 0x06]);
    frame.resize(60, 0);
    for _ in 0..3 {
        port.send(&frame).unwrap();
    }
    assert!(live.wait().unwrap().success());
    let bytes = std::fs::read(&pcap).unwrap();
    assert_eq!(
        bytes.len(),
        24 + 3 * (16 + 60),
        "pcap header and three records"
    );
    let magic = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2c3d4 || magic == 0xd4c3b2a1,
        "pcap magic {magic:#x}"
    );

    let dump = env.scratch.path().join("dump.pcap");
    env.ok(&["dump", "pcaps", "lan", "-w", dump.to_str().unwrap()]);
    assert_eq!(std::fs::read(&dump).unwrap().len(), 24 + 3 * (16 + 60));

    env.ok(&["down", "pcaps", "--keep"]);
    let lifetime = std::fs::read(env.lab_dir("pcaps").join("lan.pcap")).unwrap();
    assert_eq!(
        lifetime.len(),
        24 + 3 * (16 + 60),
        "lifetime capture saw all frames"
    );
}

#[test]
fn ctrl_c_during_up_stops_everything_it_started() {
    let Some(env) = Env::with_fake() else { return };
    let env = env.env("FAKE_START_DELAY", "30");
    let topo = env.topo("t.toml", &hosts_on_a_bus("interrupted", 4));
    let child = env
        .labctl()
        .args(["up", &topo])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the nodes are started (state.json written), then interrupt.
    let state = env.lab_dir("interrupted").join("state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !state.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pids = env.pids("interrupted");
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("interrupted") && err.contains("nothing was left running"),
        "{err}"
    );
    assert!(all_gone(&pids));
    assert!(!env.lab_dir("interrupted").exists());
}

#[test]
fn down_by_file_works_even_after_the_file_stopped_validating() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo("t.toml", &two_hosts("edited"));
    env.ok(&["up", &topo]);
    let pids = env.pids("edited");
    let text = std::fs::read_to_string(&topo).unwrap();
    std::fs::write(&topo, format!("{text}\n[nodes.h3]\nbogus = 1\n")).unwrap();
    env.fails(&["validate", &topo]);
    env.ok(&["down", &topo]);
    assert!(all_gone(&pids));
}

#[test]
fn exec_stdin_flag_sends_standard_input_to_the_command() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo("t.toml", &two_hosts("stdin"));
    env.ok(&["up", &topo]);
    let mut child = env
        .labctl()
        .args(["exec", "-i", "stdin", "h1", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"flush;\nspdflush;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "flush;\nspdflush;\n");
    env.ok(&["down", "stdin"]);
}

#[test]
fn up_with_dir_links_the_lab_and_down_removes_both() {
    let Some(env) = Env::with_fake() else { return };
    let topo = env.topo("t.toml", &two_hosts("elsewhere"));
    let dir = env.scratch.path().join("my-lab-dir");
    let out = env.ok(&["up", &topo, "--dir", dir.to_str().unwrap()]);
    assert!(out.contains(dir.to_str().unwrap()), "{out}");
    assert!(dir.join("lan.bus").is_file());
    assert!(env.lab_dir("elsewhere").is_symlink());
    assert!(env.ok(&["ls"]).contains("elsewhere"));
    env.ok(&["exec", "elsewhere", "h1", "--", "ifconfig"]);
    env.ok(&["down", "elsewhere"]);
    assert!(!dir.exists());
    assert!(env.lab_dir("elsewhere").symlink_metadata().is_err());
}

#[test]
fn test_writes_junit_even_when_up_fails() {
    let Some(env) = Env::with_fake() else { return };
    let env = env.env("FAKE_DIE_AT_START", "1");
    let topo = env.topo("t.toml", &two_hosts("upfail"));
    let junit = env.scratch.path().join("junit.xml");
    env.fails(&["test", &topo, "--junit", junit.to_str().unwrap()]);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"1\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains("name=\"up\"") && xml.contains("exited before opening"),
        "{xml}"
    );
}
