//! The lab lifecycle and its faults, with real `netstack` nodes on real buses. Faults the
//! daemon cannot produce by itself (a slow start, a start that fails) come from a shell wrapper
//! that does the fault and then `exec`s the real binary, so the node under test is always real.

mod common;

use common::*;

#[test]
fn up_exec_down_leaves_nothing_behind() {
    let Some(env) = Env::real() else { return };
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

    // The node received its configuration, exactly and in order (the node logs each command).
    let bus = std::fs::canonicalize(&dir).unwrap().join("lan.bus");
    let want: Vec<Vec<String>> = [
        vec!["ifconfig", "shmif0", "create"],
        vec!["ifconfig", "shmif0", "linkstr", bus.to_str().unwrap()],
        vec!["ifconfig", "shmif0", "inet", "10.0.0.1/24"],
        vec!["ifconfig", "shmif0", "up"],
    ]
    .iter()
    .map(|v| v.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(logged_commands(&dir.join("h1.log")), want);

    // The node's own view agrees.
    let out = env.ok(&["exec", "basic", "h1", "--", "ifconfig", "-a"]);
    assert!(out.starts_with("shmif0: flags="), "{out}");
    assert!(out.contains("<UP,"), "{out}");
    assert!(
        out.contains(&format!("linkstr: {}", bus.display())),
        "{out}"
    );
    assert!(out.contains("inet 10.0.0.1/24"), "{out}");
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
    let Some(env) = Env::real() else { return };
    let topo = env.topo("t.toml", &two_hosts("status"));
    env.ok(&["up", &topo]);
    // Nobody has 10.0.0.99: NetBSD ping exits 2 when no reply came back.
    let out = env.run(&[
        "exec",
        "status",
        "h1",
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "0.2",
        "10.0.0.99",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 packets transmitted, 0 packets received"),
        "{stdout}"
    );
    // Bad usage is the node's status 64, passed through unchanged.
    let out = env.run(&["exec", "status", "h1", "--", "ping", "-c", "x", "10.0.0.2"]);
    assert_eq!(out.status.code(), Some(64));
    env.ok(&["down", "status"]);
}

#[test]
fn up_refuses_a_lab_that_is_already_up() {
    let Some(env) = Env::real() else { return };
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
    // Nothing is started, so no node binary is needed at all.
    let mut env = Env::new(std::path::PathBuf::new());
    env.node_bin = env.scratch.path().join("no-such-netstack");
    let topo = env.topo("t.toml", &two_hosts("nobin"));
    let err = env.fails(&["up", &topo]);
    assert!(err.contains("no-such-netstack"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(!env.lab_dir("nobin").exists());
}

#[test]
fn up_in_an_unusable_lab_dir_fails_cleanly() {
    let Some(env) = Env::real() else { return };
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
    let Some(env) = Env::real() else { return };
    // h3 asks for a sysctl the real node does not have; the other three configure fine.
    let topo = env.topo(
        "t.toml",
        &hosts_on_a_bus("badcfg", 4).replace(
            "[nodes.h4]",
            "sysctl = { \"net.inet.ip.bogus\" = 1 }\n[nodes.h4]",
        ),
    );
    let out = env.run(&["up", &topo]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node h3: `sysctl -w net.inet.ip.bogus=1` failed with status 1: sysctl: net.inet.ip.bogus: no such variable"),
        "{err}"
    );
    // Only h3 failed.
    assert_eq!(err.matches("node h").count(), 1, "{err}");
    assert!(err.contains("nothing was left running"), "{err}");
    assert!(!env.lab_dir("badcfg").exists());
    // No node of this test survives.
    assert!(no_process_mentions(env.base.path()));
}

/// Real nodes that die before opening their control socket: each is given a start-up config
/// file whose one command the node rejects, so it exits with its own error message.
fn env_with_nodes_dying_at_start() -> Option<Env> {
    let env = Env::real()?;
    let conf = env.scratch.path().join("bad.conf");
    std::fs::write(&conf, "sysctl -w net.inet.ip.bogus=1\n").expect("writing bad.conf");
    let args = format!("--config '{}'", conf.display());
    Env::real_wrapped_in(env, "", &args)
}

#[test]
fn node_dying_at_start_is_reported_with_its_log() {
    let Some(env) = env_with_nodes_dying_at_start() else {
        return;
    };
    let topo = env.topo("t.toml", &two_hosts("dies"));
    let err = env.fails(&["up", &topo]);
    for node in ["h1", "h2"] {
        assert!(
            err.contains(&format!(
                "node {node}: exited before opening its control socket"
            )),
            "{err}"
        );
    }
    // The node's own last words are quoted.
    assert!(
        err.contains("bad.conf:1: \"sysctl -w net.inet.ip.bogus=1\" failed with status 1"),
        "{err}"
    );
    assert!(!env.lab_dir("dies").exists());
}

#[test]
fn slow_starting_node_is_waited_for() {
    let Some(env) = Env::real_wrapped("sleep 1", "") else {
        return;
    };
    let topo = env.topo("t.toml", &two_hosts("slow"));
    let out = env.ok(&["up", &topo]);
    assert!(out.contains("lab slow is up"), "{out}");
    // Up returned only once the nodes were configured.
    let out = env.ok(&["exec", "slow", "h1", "--", "ping", "-c", "1", "10.0.0.2"]);
    assert!(out.contains("1 packets received"), "{out}");
    env.ok(&["down", "slow"]);
}

#[test]
fn node_that_never_answers_times_out_and_is_stopped() {
    let Some(env) = Env::real_wrapped(SLEEP_30_UNTIL_TERM, "") else {
        return;
    };
    let topo = env.topo("t.toml", &two_hosts("mute"));
    let err = env.fails(&["up", &topo, "--timeout", "0.5"]);
    assert!(
        err.contains("node h1: no answer on") && err.contains("within 500ms"),
        "{err}"
    );
    assert!(err.contains("nothing was left running"), "{err}");
    assert!(!env.lab_dir("mute").exists());
    assert!(no_process_mentions(env.base.path()));
}

#[test]
fn down_after_kill_9_of_half_the_nodes() {
    let Some(env) = Env::real() else { return };
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
    let Some(env) = Env::real() else { return };
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
    let Some(env) = Env::real() else { return };
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
    let Some(env) = Env::real() else { return };
    // Nobody on the bus has 10.0.0.77.
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
exec = {{ node = "h2", cmd = ["ifconfig", "-a"], output = "^shmif0: flags=.*<UP,(.|\\n)*inet 10\\.0\\.0\\.2/24" }}
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
    let Some(env) = Env::real() else { return };
    let topo = env.topo("t.toml", &two_hosts("kept"));
    env.ok(&["test", &topo, "--keep"]);
    let pids = env.pids("kept");
    assert!(pids.iter().all(|&p| alive(p)));
    env.ok(&["down", "kept"]);
}

#[test]
fn netbsd_bus_is_made_1mib_in_netbsd_mode_and_carries_pings() {
    let Some(env) = Env::real() else { return };
    let topo = env.topo(
        "t.toml",
        &format!("{}[buses.lan]\nnetbsd = true\n", two_hosts("nbsd")),
    );
    env.ok(&["up", &topo]);
    let bus = env.lab_dir("nbsd").join("lan.bus");
    assert_eq!(std::fs::metadata(&bus).unwrap().len(), 1024 * 1024);
    let attached = shmif::Bus::attach(&bus, &shmif::BusConfig::default()).unwrap();
    assert!(attached.netbsd_mode(), "{:?}", attached.header());
    drop(attached);

    // The nodes attached with plain `linkstr PATH` and follow the bus's mode.
    for node in ["h1", "h2"] {
        let out = env.ok(&["exec", "nbsd", node, "--", "ifconfig", "shmif0"]);
        assert!(out.contains("\tbus mode: netbsd\n"), "{node}: {out}");
    }
    let out = env.ok(&["exec", "nbsd", "h2", "--", "ping", "-c", "2", "10.0.0.1"]);
    assert!(out.contains("2 packets received"), "{out}");
    env.ok(&["down", "nbsd"]);
    // `labctl test` brings the same lab up afresh and its ping check passes.
    let out = env.ok(&["test", &topo]);
    assert!(out.contains("PASS [1/1] ping h1 -> 10.0.0.2"), "{out}");
}

#[test]
fn down_keep_keeps_buses_and_logs_but_not_sockets() {
    let Some(env) = Env::real() else { return };
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
    let Some(env) = Env::real() else { return };
    // h1 also sits on bus "quiet", where the ping between h1 and h2 never goes.
    let topo = env.topo(
        "t.toml",
        r#"name = "silent"
[buses.quiet]
[nodes.h1]
interfaces = [
    { bus = "lan", addrs = ["10.0.0.1/24"] },
    { bus = "quiet", addrs = ["10.0.9.1/24"] },
]
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
[[checks]]
ping = { from = "h1", to = "10.0.0.2" }
expect_on_bus = { bus = "quiet", proto = "icmp" }
[[checks]]
ping = { from = "h1", to = "10.0.0.2" }
expect_on_bus = { bus = "lan", proto = "esp", present = false }
[[checks]]
ping = { from = "h1", to = "10.0.0.2" }
expect_on_bus = { bus = "lan", proto = "icmp", src = "10.0.0.1", dst = "10.0.0.2" }
"#,
    );
    let out = env.run(&["test", &topo]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL [1/3]") && stdout.contains("expected icmp on bus quiet, saw none"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS [2/3]"), "{stdout}");
    // The watcher does see the real echo requests on the bus they cross.
    assert!(stdout.contains("PASS [3/3]"), "{stdout}");
}

#[test]
fn lifetime_capture_and_capture_and_dump_write_pcap_of_bus_frames() {
    let Some(env) = Env::real() else { return };
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
    let magic = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2c3d4 || magic == 0xd4c3b2a1,
        "pcap magic {magic:#x}"
    );
    // The live capture started after up: exactly our three frames.
    assert_eq!(
        bytes.len(),
        24 + 3 * (16 + 60),
        "pcap header and three records"
    );
    assert_eq!(pcap_frames(&bytes), vec![frame.clone(); 3]);

    // The ring, and the lifetime capture from the bus's first frame on, also hold the one
    // gratuitous ARP each real node sends when its interface comes up, before ours, and the
    // NDP of each node's link-local address (a DAD solicitation, then an advertisement a
    // second later), which is left aside here.
    let is_announcement = |f: &Vec<u8>| {
        f.len() == 42 && f[..6] == [0xff; 6] && f[12..14] == [0x08, 0x06] && f[28..32] == f[38..42]
    };
    let is_ipv6 = |f: &Vec<u8>| f[12..14] == [0x86, 0xdd];
    let check_all = |frames: Vec<Vec<u8>>, what: &str| {
        let frames: Vec<Vec<u8>> = frames.into_iter().filter(|f| !is_ipv6(f)).collect();
        assert_eq!(frames.len(), 5, "{what}: {frames:?}");
        assert!(
            frames[..2].iter().all(is_announcement),
            "{what}: {frames:?}"
        );
        let announced: std::collections::BTreeSet<&[u8]> =
            frames[..2].iter().map(|f| &f[28..32]).collect();
        let want: std::collections::BTreeSet<&[u8]> = [&[10, 0, 0, 1][..], &[10, 0, 0, 2]].into();
        assert_eq!(announced, want, "{what}");
        assert_eq!(frames[2..], vec![frame.clone(); 3], "{what}");
    };
    let dump = env.scratch.path().join("dump.pcap");
    env.ok(&["dump", "pcaps", "lan", "-w", dump.to_str().unwrap()]);
    check_all(pcap_frames(&std::fs::read(&dump).unwrap()), "dump");

    env.ok(&["down", "pcaps", "--keep"]);
    let lifetime = std::fs::read(env.lab_dir("pcaps").join("lan.pcap")).unwrap();
    check_all(pcap_frames(&lifetime), "lifetime capture");
}

#[test]
fn capture_of_a_node_interface_follows_the_bus_its_driver_names() {
    let Some(env) = Env::real() else { return };
    let topo = env.topo("t.toml", &two_hosts("ifcap"));
    env.ok(&["up", &topo]);
    // The ring holds each node's gratuitous ARP from when its shmif0 came up, and the DAD
    // solicitation and then advertisement of its link-local address.
    let pcap = env.scratch.path().join("h2.pcap");
    env.ok(&[
        "capture",
        "ifcap",
        "h2:shmif0",
        "--from-oldest",
        "-c",
        "6",
        "--duration",
        "10",
        "-w",
        pcap.to_str().unwrap(),
    ]);
    let frames = pcap_frames(&std::fs::read(&pcap).unwrap());
    assert_eq!(frames.len(), 6, "{frames:?}");
    let arp = frames.iter().filter(|f| f[12..14] == [0x08, 0x06]).count();
    let ndp = frames.iter().filter(|f| f[12..14] == [0x86, 0xdd]).count();
    assert_eq!((arp, ndp), (2, 4), "{frames:?}");
    let err = env.fails(&["capture", "ifcap", "h2:shmif7", "-w", "/dev/null"]);
    assert!(
        err.contains("node h2 has no interface shmif7 (interfaces: shmif0)"),
        "{err}"
    );
    env.ok(&["down", "ifcap"]);
}

/// The frames of a classic pcap file (either byte order), checking each record's lengths.
fn pcap_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let swapped = u32::from_le_bytes(bytes[..4].try_into().unwrap()) != 0xa1b2c3d4;
    let u32_at = |i: usize| {
        let b: [u8; 4] = bytes[i..i + 4].try_into().unwrap();
        if swapped {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let (incl, orig) = (u32_at(at + 8) as usize, u32_at(at + 12) as usize);
        assert_eq!(incl, orig, "record at {at} is truncated");
        frames.push(bytes[at + 16..at + 16 + incl].to_vec());
        at += 16 + incl;
    }
    assert_eq!(at, bytes.len(), "trailing bytes");
    frames
}

#[test]
fn ctrl_c_during_up_stops_everything_it_started() {
    let Some(env) = Env::real_wrapped(SLEEP_30_UNTIL_TERM, "") else {
        return;
    };
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
    assert!(no_process_mentions(env.base.path()));
}

#[test]
fn down_by_file_works_even_after_the_file_stopped_validating() {
    let Some(env) = Env::real() else { return };
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
    let Some(env) = Env::real() else { return };
    let topo = env.topo("t.toml", &two_hosts("stdin"));
    env.ok(&["up", &topo]);
    // No node command reads standard input yet (setkey -c will), so a relay in front of h1's
    // real control socket records the request labctl sends, and the real node answers it.
    let relay = RecordingRelay::install(&env, "stdin", "h1");
    let mut child = env
        .labctl()
        .args(["exec", "-i", "stdin", "h1", "--", "ifconfig", "shmif0"])
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("shmif0: flags="), "{stdout}");
    let requests = relay.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0]["argv"],
        serde_json::json!(["ifconfig", "shmif0"])
    );
    assert_eq!(requests[0]["stdin"], "flush;\nspdflush;\n");
    // Without -i no stdin is sent.
    env.ok(&["exec", "stdin", "h1", "--", "ifconfig", "shmif0"]);
    let requests = relay.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[1]["stdin"].is_null(), "{requests:?}");
    env.ok(&["down", "stdin"]);
}

#[test]
fn up_with_dir_links_the_lab_and_down_removes_both() {
    let Some(env) = Env::real() else { return };
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
    let Some(env) = env_with_nodes_dying_at_start() else {
        return;
    };
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

/// Wrapper prelude for a node that takes 30 s to start, and stops at once (its `sleep` too)
/// when labctl sends SIGTERM meanwhile.
const SLEEP_30_UNTIL_TERM: &str = "trap 'kill $pid 2>/dev/null; exit 143' TERM INT\n\
                                   sleep 30 & pid=$!\n\
                                   wait $pid";

/// The commands a real node logged having run (`INFO command ["ifconfig", ...]` lines).
fn logged_commands(log: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" command ").map(|(_, argv)| argv))
        .map(|argv| serde_json::from_str(argv).expect("argv logged as a list of strings"))
        .collect()
}

/// A Unix-socket relay put in front of a real node's control socket (by pointing the node's
/// `socket` in `state.json` at it): it forwards both ways unchanged and keeps a copy of what
/// clients sent.
struct RecordingRelay {
    sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl RecordingRelay {
    fn install(env: &Env, lab: &str, node: &str) -> RecordingRelay {
        use std::io::{Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        let mut state = env.state(lab);
        let entry = state["nodes"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|n| n["name"] == node)
            .expect("node in state.json");
        let real = std::path::PathBuf::from(entry["socket"].as_str().unwrap());
        let relay = env.scratch.path().join("relay.sock");
        entry["socket"] = relay.to_str().unwrap().into();
        let listener = UnixListener::bind(&relay).unwrap();
        std::fs::write(
            env.lab_dir(lab).join("state.json"),
            serde_json::to_string_pretty(&state).unwrap(),
        )
        .unwrap();
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = sent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { break };
                let Ok(mut node) = UnixStream::connect(&real) else {
                    break;
                };
                let (mut from_node, mut to_client) =
                    (node.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_node, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Write);
                });
                let record = record.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = client.read(&mut buf) {
                        // Recorded before it is forwarded, so before the node can answer.
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if node.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = node.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        RecordingRelay { sent }
    }

    /// The requests clients sent so far, one JSON value per line.
    fn requests(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.sent.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("request line is JSON"))
            .collect()
    }
}

#[test]
fn up_through_a_pipe_lets_the_reader_see_eof_when_up_exits() {
    let Some(env) = Env::real() else { return };
    // Nodes and a lifetime capture, all of which outlive `up`.
    let topo = env.topo(
        "t.toml",
        &two_hosts("piped").replace("[nodes.h1]", "[buses.lan]\ncapture = true\n[nodes.h1]"),
    );
    // Plain `labctl up | ...`, and a script that also holds its stdout and stderr on fds 3 and 4
    // (as after `exec 3>&1 4>&2`), which labctl then inherits.
    for (i, wrap) in [None, Some("exec \"$0\" \"$@\" 3>&1 4>&2")]
        .iter()
        .enumerate()
    {
        let mut cmd = match wrap {
            None => env.labctl(),
            Some(script) => {
                let mut c = std::process::Command::new("/bin/sh");
                c.arg("-c").arg(script).arg(env!("CARGO_BIN_EXE_labctl"));
                c.envs(env.labctl().get_envs().filter_map(|(k, v)| Some((k, v?))));
                c
            }
        };
        let mut child = cmd
            .args(["up", &topo])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for (name, mut pipe) in [
            (
                "stdout",
                Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            ),
            ("stderr", Box::new(child.stderr.take().unwrap())),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                let _ = tx.send((name, text));
            });
        }
        let status = child.wait().unwrap();
        let mut outputs = std::collections::BTreeMap::new();
        for _ in 0..2 {
            // A generous bound: only a pipe held open by a node or capture takes this long.
            let (name, text) = rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .unwrap_or_else(|_| {
                    panic!("case {i}: a process of the lab still holds labctl's stdout or stderr")
                });
            outputs.insert(name, text);
        }
        assert!(status.success(), "case {i}: {outputs:?}");
        assert!(outputs["stdout"].contains("lab piped is up"), "{outputs:?}");
        let pids = env.pids("piped");
        assert_eq!(pids.len(), 3, "two nodes and a capture");
        assert!(pids.iter().all(|&p| alive(p)), "the lab is still up");
        env.ok(&["down", "piped"]);
        assert!(all_gone(&pids));
    }
}
