//! The shipped topologies, each brought up with real `netstack` nodes and checked through
//! `labctl test`, plus live capture and `exec` against a real node.

mod common;

use common::*;

fn run_topology(file: &str) {
    let Some(env) = Env::real() else { return };
    run_topology_in(env, file);
}

fn run_topology_in(env: Env, file: &str) {
    let topo = repo_root().join("topologies").join(file);
    let junit = env.scratch.path().join("junit.xml");
    let out = env
        .labctl()
        .args([
            "test",
            topo.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "labctl test {file} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"0\""), "{xml}");
    // `test` brings the lab down again: no lab dir is left.
    let left: Vec<_> = std::fs::read_dir(env.base.path())
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn two_hosts_topology_passes_its_checks() {
    run_topology("two-hosts.toml");
}

#[test]
fn router_chain_topology_passes_its_checks() {
    run_topology("router-chain.toml");
}

/// The README's main job (`tools/demo`) runs this lab.
#[test]
fn demo_topology_passes_its_checks() {
    run_topology("demo.toml");
}

#[test]
fn campus_topology_passes_its_checks() {
    run_topology("campus.toml");
}

/// Linux namespaces beside netstack nodes: needs root (fails without it in CI).
#[test]
fn linux_peer_topology_passes_its_checks() {
    let Some(env) = Env::linux("linux_peer_topology_passes_its_checks") else {
        return;
    };
    run_topology_in(env, "linux-peer.toml");
}

/// Both families between Linux and netstack nodes: needs root.
#[test]
fn dual_stack_topology_passes_its_checks() {
    let Some(env) = Env::linux("dual_stack_topology_passes_its_checks") else {
        return;
    };
    run_topology_in(env, "dual-stack.toml");
}

#[test]
fn exec_streams_real_node_output_and_status() {
    let Some(env) = Env::real() else { return };
    let topo = env.topo("t.toml", &two_hosts("realexec"));
    env.ok(&["up", &topo]);
    let out = env.ok(&[
        "exec", "realexec", "h1", "--", "ping", "-c", "1", "10.0.0.2",
    ]);
    assert!(out.contains("1 packets received"), "{out}");
    let fail = env.run(&["exec", "realexec", "h1", "--", "ifconfig", "nosuch0"]);
    assert!(!fail.status.success());
    assert!(!fail.stderr.is_empty());
    let status = env.ok(&["status", "realexec", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v[0]["nodes"][0]["alive"], true);
    assert_eq!(v[0]["nodes"][0]["answers"], true);
    // Counters come straight from the node's `ifconfig -v --json`.
    let counters = &v[0]["nodes"][0]["interfaces"][0]["counters"];
    assert!(counters.is_object(), "{status}");
    env.ok(&["down", "realexec"]);
}

#[test]
fn capture_to_stdout_streams_into_tcpdump() {
    let Some(env) = Env::real() else { return };
    if !have_tool("tcpdump") {
        return;
    }
    let topo = env.topo("t.toml", &two_hosts("tcpd"));
    env.ok(&["up", &topo]);
    let mut cap = env
        .labctl()
        .args([
            "capture",
            "tcpd",
            "lan",
            "-c",
            "4",
            "--duration",
            "20",
            "-w",
            "-",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let tcpdump = std::process::Command::new("tcpdump")
        .args(["-n", "-r", "-"])
        .stdin(cap.stdout.take().unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    env.ok(&["exec", "tcpd", "h1", "--", "ping", "-c", "2", "10.0.0.2"]);
    assert!(cap.wait().unwrap().success());
    let out = tcpdump.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ICMP echo request"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
    env.ok(&["down", "tcpd"]);
}

#[test]
fn pcapng_capture_reads_back_in_tcpdump() {
    let Some(env) = Env::real() else { return };
    if !have_tool("tcpdump") {
        return;
    }
    let topo = env.topo("t.toml", &two_hosts("ng"));
    env.ok(&["up", &topo]);
    let file = env.scratch.path().join("lan.pcapng");
    let mut cap = env
        .labctl()
        .args(["capture", "ng", "lan", "--pcapng", "--duration", "3", "-w"])
        .arg(&file)
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    env.ok(&["exec", "ng", "h2", "--", "ping", "-c", "1", "10.0.0.1"]);
    assert!(cap.wait().unwrap().success());
    let text = tcpdump_read(&file, &["-tttt"]);
    assert!(
        text.contains("10.0.0.2 > 10.0.0.1: ICMP echo request"),
        "{text}"
    );
    // Nanosecond timestamps declared right: the capture is dated today, not in 1970 or 50000 AD.
    let year = {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        1970 + secs / 31_556_952
    };
    let year_ok = text.lines().all(|l| l.starts_with(&year.to_string()));
    assert!(year_ok, "{text}");
    env.ok(&["down", "ng"]);
}
