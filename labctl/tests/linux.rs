//! Linux nodes and host taps with the real kernel: `topologies/linux-peer.toml` (two Linux
//! namespaces and two netstack nodes on real buses, joined by real `virtif-bridge` processes)
//! brought up by labctl, then pinged, traced, captured and torn down, also after crashes. These
//! need root; they skip without it, or fail when `SHMLAB_REQUIRE_ALL=1`.
//!
//! Each test renames the lab (`lp-TAG`), because namespace names are global to the host.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

// Addresses of topologies/linux-peer.toml.
const L1: &str = "10.77.1.10";
const N1: &str = "10.77.1.20";
const R1_LAN1: &str = "10.77.1.1";
const L2: &str = "10.77.2.10";

/// The shipped linux-peer topology, renamed to `lp-TAG`, written to the env's scratch dir.
fn linux_peer_file(env: &Env, tag: &str) -> (String, String) {
    let lab = format!("lp-{tag}");
    let text = std::fs::read_to_string(repo_root().join("topologies/linux-peer.toml")).unwrap();
    assert!(text.contains("name = \"linux-peer\""));
    let text = text.replace("name = \"linux-peer\"", &format!("name = \"{lab}\""));
    (lab.clone(), env.topo(&format!("{lab}.toml"), &text))
}

/// An env with linux-peer up as `lp-TAG`, or None when the test may not run.
fn linux_peer(test: &str, tag: &str) -> Option<(Env, String)> {
    let env = Env::linux(test)?;
    let (lab, file) = linux_peer_file(&env, tag);
    env.ok(&["up", &file]);
    Some((env, lab))
}

fn netns(lab: &str, node: &str) -> String {
    format!("shmlab-{lab}-{node}")
}

fn netns_exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// Bridge pids from state.json (a Linux node's `bridges`).
fn bridge_pids(env: &Env, lab: &str) -> Vec<u32> {
    let s = env.state(lab);
    s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["bridges"].as_array().into_iter().flatten())
        .filter_map(|b| b["pid"].as_u64())
        .map(|p| p as u32)
        .collect()
}

fn exec(env: &Env, lab: &str, node: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", lab, node, "--"];
    args.extend_from_slice(cmd);
    env.ok(&args)
}

/// The first `xx:xx:xx:xx:xx:xx` in `text` after `after`.
fn mac_after(text: &str, after: &str) -> Option<String> {
    let rest = &text[text.find(after)? + after.len()..];
    rest.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_hexdigit() && c != ':'))
        .find(|w| w.len() == 17 && w.split(':').count() == 6)
        .map(|w| w.to_ascii_lowercase())
}

#[test]
fn linux_and_netstack_nodes_ping_each_other_on_a_bus_and_across_the_router() {
    let Some((env, lab)) = linux_peer("ping", "ping") else {
        return;
    };
    assert!(have_tool("ping"));
    // Linux ping (iputils) in l1's namespace: exit 0 means replies came back.
    let out = exec(&env, &lab, "l1", &["ping", "-c", "2", "-i", "0.2", N1]);
    assert!(out.contains("2 received"), "{out}");
    // netstack's ping on n1 to the Linux node.
    let out = exec(&env, &lab, "n1", &["ping", "-c", "2", L1]);
    assert!(out.contains("2 packets received"), "{out}");
    // Linux to Linux through r1 (netstack forwarding), and Linux to netstack across r1.
    let out = exec(&env, &lab, "l1", &["ping", "-c", "2", "-i", "0.2", L2]);
    assert!(out.contains("2 received"), "{out}");
    assert!(out.contains("ttl=63"), "one router on the way: {out}");
    let out = exec(&env, &lab, "l2", &["ping", "-c", "2", "-i", "0.2", N1]);
    assert!(out.contains("2 received"), "{out}");
    env.ok(&["down", &lab]);
}

#[test]
fn linux_traceroute_and_tracepath_show_the_netstack_router_first() {
    let Some((env, lab)) = linux_peer("traceroute", "trace") else {
        return;
    };
    if !have_tool("traceroute") || !have_tool("tracepath") {
        return;
    }
    let out = exec(
        &env,
        &lab,
        "l1",
        &["traceroute", "-n", "-q", "1", "-w", "2", L2],
    );
    let hops: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u32>().is_ok())
        })
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(hops, [R1_LAN1, L2], "{out}");
    let out = exec(&env, &lab, "l1", &["tracepath", "-n", L2]);
    let first = out
        .lines()
        .find(|l| l.trim_start().starts_with("1:"))
        .unwrap_or_else(|| panic!("no first hop in {out}"));
    assert!(first.contains(R1_LAN1), "{out}");
    assert!(out.contains("reached"), "{out}");
    env.ok(&["down", &lab]);
}

#[test]
fn arp_entries_on_both_sides_hold_each_others_macs() {
    let Some((env, lab)) = linux_peer("arp", "arp") else {
        return;
    };
    exec(&env, &lab, "l1", &["ping", "-c", "1", N1]);
    // n1's MAC as n1 reports it, and as l1's kernel learnt it.
    let ifconfig = exec(&env, &lab, "n1", &["ifconfig", "shmif0"]);
    let n1_mac = mac_after(&ifconfig, "address:").expect("n1 MAC");
    let neigh = exec(&env, &lab, "l1", &["ip", "neigh", "show", N1]);
    assert_eq!(
        mac_after(&neigh, "lladdr"),
        Some(n1_mac.clone()),
        "{neigh} vs {ifconfig}"
    );
    // l1's tap MAC as the kernel and the bridge report it, and as n1 learnt it.
    let link = exec(
        &env,
        &lab,
        "l1",
        &["ip", "-j", "link", "show", "dev", "eth0"],
    );
    let link: serde_json::Value = serde_json::from_str(&link).unwrap();
    let l1_mac = link[0]["address"].as_str().unwrap().to_string();
    let state = env.state(&lab);
    let recorded = state["nodes"][0]["bridges"][0]["mac"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        recorded, l1_mac,
        "the bridge's ready line names the tap MAC"
    );
    let arp = exec(&env, &lab, "n1", &["arp", "-an"]);
    let line = arp
        .lines()
        .find(|l| l.contains(&format!("({L1})")))
        .unwrap_or_else(|| panic!("n1 has no ARP entry for {L1}: {arp}"));
    assert_eq!(mac_after(line, " at "), Some(l1_mac), "{arp}");
    assert_ne!(n1_mac, recorded);
    env.ok(&["down", &lab]);
}

#[test]
fn exec_on_a_linux_node_runs_in_its_namespace_and_passes_the_status_through() {
    let Some((env, lab)) = linux_peer("exec", "exec") else {
        return;
    };
    let out = env.run(&["exec", &lab, "l1", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let out = env.run(&[
        "exec",
        &lab,
        "l2",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // Inside: eth0 with the topology's address, a default route via r1, nothing of the host.
    let addr = exec(&env, &lab, "l1", &["ip", "-o", "-4", "addr", "show"]);
    assert!(addr.contains(&format!("eth0    inet {L1}/24")), "{addr}");
    let links = exec(&env, &lab, "l1", &["ip", "-o", "link", "show"]);
    assert_eq!(links.lines().count(), 2, "lo and eth0 only: {links}");
    let routes = exec(&env, &lab, "l1", &["ip", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("via {R1_LAN1} dev eth0")),
        "{routes}"
    );
    // Naming a node that does not exist names the ones that do.
    let err = env.fails(&["exec", &lab, "l9", "--", "true"]);
    assert!(
        err.contains("no node \"l9\" (nodes: l1, n1, r1, l2)"),
        "{err}"
    );
    env.ok(&["down", &lab]);
}

#[test]
fn status_shows_namespaces_bridges_and_their_counters() {
    let Some((env, lab)) = linux_peer("status", "status") else {
        return;
    };
    exec(&env, &lab, "l1", &["ping", "-c", "3", "-i", "0.2", L2]);
    // The bridges rewrite their counters every second.
    std::thread::sleep(Duration::from_millis(1300));
    let json = env.ok(&["status", &lab, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let l1 = &v[0]["nodes"][0];
    assert_eq!(l1["name"], "l1");
    assert_eq!(l1["kind"], "linux");
    assert_eq!(l1["namespace"], netns(&lab, "l1"));
    assert_eq!(l1["alive"], true);
    let eth0 = &l1["interfaces"][0];
    assert_eq!(eth0["bridge"]["alive"], true, "{json}");
    let c = &eth0["counters"];
    for k in ["tap_rx", "tap_tx", "bus_rx", "bus_tx"] {
        assert!(c[k].as_u64().unwrap_or(0) >= 3, "{k} in {json}");
    }
    assert_eq!(c["tap"], "eth0");
    // The kernel's own drop counters of the tap, next to the bridge's.
    assert_eq!(c["kernel_tx_dropped"], 0, "{json}");
    assert!(c["kernel_rx_dropped"].is_u64(), "{json}");
    let text = env.ok(&["status", &lab]);
    assert!(
        text.contains(&format!("running in {}", netns(&lab, "l1"))),
        "{text}"
    );
    assert!(text.contains("l1 eth0:"), "{text}");
    assert!(text.contains("bridge pid"), "{text}");
    assert!(text.contains("kernel: tx_dropped 0 rx_dropped"), "{text}");
    assert!(env.ok(&["ls"]).contains(&lab));
    env.ok(&["down", &lab]);
}

#[test]
fn down_deletes_the_namespaces_and_stops_the_bridges() {
    let Some((env, lab)) = linux_peer("down", "down") else {
        return;
    };
    let bridges = bridge_pids(&env, &lab);
    let pids = env.pids(&lab);
    assert_eq!(bridges.len(), 2);
    assert!(bridges.iter().all(|&p| alive(p)));
    assert!(netns_exists(&netns(&lab, "l1")) && netns_exists(&netns(&lab, "l2")));
    let out = env.ok(&["down", &lab]);
    assert!(out.contains("2 network namespaces deleted"), "{out}");
    assert!(all_gone(&bridges) && all_gone(&pids));
    assert!(!netns_exists(&netns(&lab, "l1")) && !netns_exists(&netns(&lab, "l2")));
    assert!(!env.lab_dir(&lab).exists());
}

#[test]
fn down_cleans_up_after_bridges_and_nodes_were_killed() {
    let Some((env, lab)) = linux_peer("crash", "crash") else {
        return;
    };
    let mut pids = bridge_pids(&env, &lab);
    pids.extend(env.pids(&lab));
    for p in &pids {
        Command::new("kill")
            .args(["-9", &p.to_string()])
            .status()
            .unwrap();
    }
    assert!(all_gone(&pids));
    // The namespaces outlive their bridges: the lab still counts as up.
    let err = env.fails(&["up", &linux_peer_file(&env, "crash").1]);
    assert!(err.contains("run `labctl down lp-crash` first"), "{err}");
    let out = env.ok(&["down", &lab]);
    assert!(out.contains("were already dead"), "{out}");
    assert!(!netns_exists(&netns(&lab, "l1")) && !netns_exists(&netns(&lab, "l2")));
    assert!(!env.lab_dir(&lab).exists());
    assert!(no_process_mentions(env.base.path()));
}

#[test]
fn down_cleans_up_after_labctl_was_killed_during_up() {
    let Some(mut env) = Env::linux("killed up") else {
        return;
    };
    // A bridge that takes its time, so `up` is surely still waiting when it is killed.
    let real = env.bridge_bin.clone().unwrap();
    let slow = env.scratch.path().join("slow-bridge");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\nsleep 2\nexec '{}' \"$@\"\n", real.display()),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.bridge_bin = Some(slow);
    let (lab, file) = linux_peer_file(&env, "killed");
    let mut up = env
        .labctl()
        .args(["up", &file])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first bridge is recorded with its pid, then kill labctl outright.
    let state = env.lab_dir(&lab).join("state.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    let bridge_started = || {
        std::fs::read_to_string(&state).is_ok_and(|s| {
            serde_json::from_str::<serde_json::Value>(&s).is_ok_and(|v| {
                v["nodes"].as_array().into_iter().flatten().any(|n| {
                    n["bridges"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|b| b["pid"].is_u64())
                })
            })
        })
    };
    while !bridge_started() {
        assert!(Instant::now() < deadline, "no bridge recorded");
        std::thread::sleep(Duration::from_millis(10));
    }
    up.kill().unwrap();
    up.wait().unwrap();
    assert!(netns_exists(&netns(&lab, "l1")));
    let pids = env.pids(&lab);
    let bridges = bridge_pids(&env, &lab);
    env.ok(&["down", &lab]);
    assert!(all_gone(&pids) && all_gone(&bridges));
    assert!(!netns_exists(&netns(&lab, "l1")));
    assert!(!env.lab_dir(&lab).exists());
    assert!(no_process_mentions(env.base.path()));
}

#[test]
fn down_with_a_state_file_that_does_not_read_still_removes_namespaces_and_bridges() {
    let Some((env, lab)) = linux_peer("garbled state", "garbled") else {
        return;
    };
    let mut pids = bridge_pids(&env, &lab);
    pids.extend(env.pids(&lab));
    let state = env.lab_dir(&lab).join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    std::fs::write(&state, &text[..text.len() / 3]).unwrap();
    let out = env.ok(&["down", &lab]);
    assert!(out.contains("2 network namespaces deleted"), "{out}");
    assert!(all_gone(&pids));
    assert!(!netns_exists(&netns(&lab, "l1")) && !netns_exists(&netns(&lab, "l2")));
    assert!(!env.lab_dir(&lab).exists());
    assert!(no_process_mentions(env.base.path()));
}

#[test]
fn up_removes_a_leftover_namespace_of_the_same_lab() {
    let Some(env) = Env::linux("leftover") else {
        return;
    };
    let (lab, file) = linux_peer_file(&env, "left");
    let ns = netns(&lab, "l1");
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    let out = env.labctl().args(["up", &file]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        panic!("up failed: {stderr}");
    }
    assert!(
        stderr.contains(&format!("removing network namespace {ns}, left over")),
        "{stderr}"
    );
    env.ok(&["down", &lab]);
    assert!(!netns_exists(&ns));
}

#[test]
fn capture_of_lan1_holds_icmp_from_the_linux_node() {
    let Some((env, lab)) = linux_peer("capture", "cap") else {
        return;
    };
    if !have_tool("tcpdump") {
        return;
    }
    exec(&env, &lab, "l1", &["ping", "-c", "2", "-i", "0.2", N1]);
    let pcap = env.scratch.path().join("lan1.pcap");
    env.ok(&["dump", &lab, "lan1", "-w", pcap.to_str().unwrap()]);
    let text = tcpdump_read(&pcap, &[]);
    assert!(
        text.contains(&format!("{L1} > {N1}: ICMP echo request")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{N1} > {L1}: ICMP echo reply")),
        "{text}"
    );
    env.ok(&["down", &lab]);
}

/// 1 MiB of random bytes over real TCP from l1 to l2 (both Linux), forwarded by netstack r1:
/// byte-exact. (TODO: TCP against a netstack node once netstack has a transport layer.)
#[test]
fn tcp_transfer_between_linux_nodes_across_the_netstack_router_is_byte_exact() {
    let Some((env, lab)) = linux_peer("tcp", "tcp") else {
        return;
    };
    if !have_tool("nc") {
        return;
    }
    send_a_mebibyte_from_l1_to_l2(&env, &lab);
    env.ok(&["down", &lab]);
}

/// r1's lan2 side has MTU 1280 while both Linux ends have 1500: l1's full-size TCP segments
/// (DF set) must bring back our ICMP "fragmentation needed" with the next-hop MTU, Linux must
/// lower its path MTU to it, and the transfer must still arrive whole.
#[test]
fn linux_tcp_learns_the_path_mtu_from_the_netstack_router() {
    let Some(env) = Env::linux("pmtu") else {
        return;
    };
    if !have_tool("nc") {
        return;
    }
    let (lab, file) = linux_peer_file(&env, "pmtu");
    let text = std::fs::read_to_string(&file).unwrap();
    let narrow = r#"{ bus = "lan2", addrs = ["10.77.2.1/24"], mtu = 1280 }"#;
    let edited = text.replace(r#"{ bus = "lan2", addrs = ["10.77.2.1/24"] }"#, narrow);
    assert!(edited.contains(narrow), "linux-peer.toml changed shape");
    std::fs::write(&file, edited).unwrap();
    env.ok(&["up", &file]);

    send_a_mebibyte_from_l1_to_l2(&env, &lab);
    let route = exec(&env, &lab, "l1", &["ip", "route", "get", L2]);
    assert!(
        route.contains("mtu 1280"),
        "l1 learnt the path MTU: {route}"
    );
    let stats = exec(&env, &lab, "r1", &["netstat", "-s", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(
        v["drops"]["ip_need_frag"].as_u64() >= Some(1),
        "r1 refused DF packets too big for lan2: {stats}"
    );
    env.ok(&["down", &lab]);
}

/// 1 MiB of random bytes from l1 to l2 with `nc`, compared byte for byte.
fn send_a_mebibyte_from_l1_to_l2(env: &Env, lab: &str) {
    let dir = env.scratch.path();
    let input = dir.join("in.bin");
    let output = dir.join("out.bin");
    let mut data = vec![0u8; 1 << 20];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    std::fs::write(&input, &data).unwrap();

    let mut server = env
        .labctl()
        .args(["exec", lab, "l2", "--", "sh", "-c"])
        .arg(format!("exec nc -l {L2} 5001 > '{}'", output.display()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exec(env, lab, "l2", &["ss", "-ltn"]).contains(":5001") {
        assert!(Instant::now() < deadline, "nc did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let client = env
        .labctl()
        .args(["exec", lab, "l1", "--", "sh", "-c"])
        .arg(format!("nc -N -w 10 {L2} 5001 < '{}'", input.display()))
        .output()
        .unwrap();
    assert!(
        client.status.success(),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(server.wait().unwrap().success());
    eprintln!("1 MiB across r1 in {:?}", started.elapsed());
    let got = std::fs::read(&output).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "received bytes differ from those sent");
}

/// As user nobody, `up` of a lab with Linux nodes fails before it starts anything and says
/// what is missing and how to run it.
#[test]
fn unprivileged_up_fails_cleanly_naming_the_missing_privilege() {
    let Some(env) = Env::linux("unprivileged up") else {
        return;
    };
    if !have_tool("setpriv") {
        return;
    }
    let Some(world) = nobody_world(&env) else {
        return;
    };
    let (lab, file) = linux_peer_file(&env, "nobody");
    let topo = world.join("lab.toml");
    std::fs::copy(&file, &topo).unwrap();
    let out = as_nobody(&env, &world, &["up", topo.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // /dev/net/tun is 0600 root here: nobody can have no tap.
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "Linux nodes need root, or CAP_NET_ADMIN plus read/write access to /dev/net/tun"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("uid 65534"), "{stderr}");
    assert!(
        stderr.contains(&format!("sudo labctl up {}", topo.display())),
        "{stderr}"
    );
    let base = world.join("base");
    assert!(
        !base.join(&lab).exists(),
        "no lab dir: {:?}",
        std::fs::read_dir(&base).map(|d| d.count())
    );
    assert!(!netns_exists(&netns(&lab, "l1")));
    assert!(no_process_mentions(&world));
}

/// Without root, a Linux node with no interfaces needs no tap: it runs in a holder's user and
/// network namespace, and `exec`, sysctl and `down` work there.
#[test]
fn unprivileged_linux_node_without_interfaces_runs_in_a_holder_namespace() {
    let Some(env) = Env::linux("holder") else {
        return;
    };
    if !have_tool("setpriv") || !have_tool("unshare") || !have_tool("nsenter") {
        return;
    }
    let Some(world) = nobody_world(&env) else {
        return;
    };
    let topo = world.join("holder.toml");
    std::fs::write(
        &topo,
        "name = \"holder\"\n[nodes.l1]\nkind = \"linux\"\nsysctl = { \"net.ipv4.ip_default_ttl\" = 33 }\nexec = [\"ip link set dev lo mtu 1234\"]\n",
    )
    .unwrap();
    std::fs::set_permissions(&topo, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = as_nobody(&env, &world, &["up", topo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_nobody(
        &env,
        &world,
        &[
            "exec",
            "holder",
            "l1",
            "--",
            "sh",
            "-c",
            "sysctl -n net.ipv4.ip_default_ttl; ip -o link show lo; exit 4",
        ],
    );
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("33\n"), "{text}");
    assert!(text.contains("mtu 1234"), "{text}");
    let state = std::fs::read_to_string(world.join("base/holder/state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    let holder = v["nodes"][0]["netns"]["holder"]["pid"].as_u64().unwrap() as u32;
    assert!(alive(holder));
    let out = as_nobody(&env, &world, &["down", "holder"]);
    assert!(out.status.success());
    assert!(all_gone(&[holder]));
    assert!(no_process_mentions(&world));
}

/// A world user nobody can use: a 0777 dir with a copy of labctl and netstack (the cargo
/// target dir may not be reachable for nobody), labs under `base`.
fn nobody_world(env: &Env) -> Option<std::path::PathBuf> {
    let world = env.scratch.path().join("nobody");
    std::fs::create_dir(&world).unwrap();
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap()
    };
    mode(env.scratch.path(), 0o755);
    mode(&world, 0o777);
    let bridge = env
        .bridge_bin
        .clone()
        .expect("Env::linux found virtif-bridge");
    for (bin, name) in [
        (Path::new(env!("CARGO_BIN_EXE_labctl")), "labctl"),
        (env.node_bin.as_path(), "netstack"),
        (bridge.as_path(), "virtif-bridge"),
    ] {
        std::fs::copy(bin, world.join(name)).unwrap();
        mode(&world.join(name), 0o755);
    }
    // nobody must be able to reach the scratch dir (tempdirs live under /tmp).
    let ok = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "test",
            "-x",
        ])
        .arg(world.join("labctl"))
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip("user nobody cannot reach the test's scratch dir");
        return None;
    }
    Some(world)
}

fn as_nobody(_env: &Env, world: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(world.join("labctl"))
        .args(args);
    nobody_env(&mut cmd, world).output().unwrap()
}

/// labctl's environment for nobody: a plain PATH, the world's lab base dir and binaries.
fn nobody_env<'c>(cmd: &'c mut Command, world: &Path) -> &'c mut Command {
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("SHMLAB_DIR", world.join("base"))
        .env("SHMLAB_NETSTACK", world.join("netstack"))
        .env("SHMLAB_VIRTIF_BRIDGE", world.join("virtif-bridge"))
        .current_dir(world)
}

/// labctl as nobody on a machine where /dev/net/tun is open to every user (Debian's default,
/// 0666; it is 0600 on some hosts, this one included). Without touching the host's device: in a
/// private mount namespace, a 0666 device node of our own is bind-mounted over /dev/net/tun,
/// then privileges are dropped. Processes `up` starts stay in that mount namespace.
fn as_nobody_with_open_tun(world: &Path, args: &[&str]) -> std::process::Output {
    let tun = world.join("tun");
    if !tun.exists() {
        let made = Command::new("mknod")
            .arg(&tun)
            .args(["c", "10", "200"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "mknod {} c 10 200", tun.display());
        std::fs::set_permissions(&tun, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "mount --bind \"$1\" /dev/net/tun && shift && \
             exec setpriv --reuid=nobody --regid=nogroup --clear-groups -- \"$@\"",
        )
        .arg("sh")
        .arg(&tun)
        .arg(world.join("labctl"))
        .args(args);
    nobody_env(&mut cmd, world).output().unwrap()
}

/// Without root, where users may open /dev/net/tun: Linux nodes live in user+network namespaces
/// of holder processes, their bridges open taps there, and the lab works like a root one.
#[test]
fn unprivileged_linux_nodes_with_taps_ping_across_the_netstack_router() {
    let Some(env) = Env::linux("unprivileged linux nodes with taps") else {
        return;
    };
    if !have_tool("setpriv") || !have_tool("unshare") || !have_tool("nsenter") {
        return;
    }
    let Some(world) = nobody_world(&env) else {
        return;
    };
    let (lab, file) = linux_peer_file(&env, "userns");
    let topo = world.join("lab.toml");
    std::fs::copy(&file, &topo).unwrap();
    std::fs::set_permissions(&topo, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = as_nobody_with_open_tun(&world, &["up", topo.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = std::fs::read_to_string(world.join("base").join(&lab).join("state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    let mut pids: Vec<u32> = Vec::new();
    for n in v["nodes"].as_array().unwrap() {
        pids.extend(n["pid"].as_u64().map(|p| p as u32));
        pids.extend(n["netns"]["holder"]["pid"].as_u64().map(|p| p as u32));
        for b in n["bridges"].as_array().into_iter().flatten() {
            pids.extend(b["pid"].as_u64().map(|p| p as u32));
        }
    }
    assert_eq!(pids.len(), 6, "4 nodes/holders and 2 bridges: {state}");
    // Everything runs as nobody on the host; no named namespace was made.
    for pid in &pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(uid.contains("\t65534\t"), "pid {pid}: {uid}");
    }
    assert!(!netns_exists(&netns(&lab, "l1")));

    let ping = |node: &str, dst: &str| {
        let out = as_nobody(
            &env,
            &world,
            &["exec", &lab, node, "--", "ping", "-c", "2", dst],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{node} -> {dst}: {text}");
        text
    };
    assert!(ping("l1", L2).contains("ttl=63"), "across r1");
    ping("n1", L1);
    ping("l2", N1);
    let out = as_nobody(&env, &world, &["exec", &lab, "l1", "--", "id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "root in its user namespace"
    );

    let out = as_nobody(&env, &world, &["down", &lab]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all_gone(&pids));
    assert!(no_process_mentions(&world));
}

/// A host tap (persistent, in the host namespace) with an address, and a netstack node whose
/// `virt0` attaches to it: the host pings the node through the tap.
#[test]
fn host_pings_a_netstack_node_through_a_host_tap() {
    let Some(env) = Env::linux("host tap") else {
        return;
    };
    let id = std::process::id() % 10000;
    let tap = format!("shmlt{id}");
    let net = 1 + (id % 250);
    let host = format!("10.251.{net}.1");
    let node = format!("10.251.{net}.2");

    /// Deletes the tap however the test ends.
    struct TapGuard(String);
    impl Drop for TapGuard {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["tuntap", "del", "dev", &self.0, "mode", "tap"])
                .output();
        }
    }
    let _ = Command::new("ip")
        .args(["tuntap", "del", "dev", &tap, "mode", "tap"])
        .output();
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ip(&["tuntap", "add", "dev", &tap, "mode", "tap"]);
    let _guard = TapGuard(tap.clone());
    ip(&["addr", "add", &format!("{host}/24"), "dev", &tap]);
    ip(&["link", "set", "dev", &tap, "up"]);

    let topo = env.topo(
        "tap.toml",
        &format!(
            "name = \"hosttap{id}\"\n[nodes.n1]\ninterfaces = [{{ tap = \"{tap}\", addrs = [\"{node}/24\"] }}]\n"
        ),
    );
    let lab = format!("hosttap{id}");
    env.ok(&["up", &topo]);
    let out = Command::new("ping")
        .args(["-c", "2", "-i", "0.2", "-W", "2", "-I", &tap, &node])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 received"), "{text}");
    let ifc = exec(&env, &lab, "n1", &["ifconfig", "virt0"]);
    assert!(ifc.contains(&format!("inet {node}/24")), "{ifc}");
    env.ok(&["down", &lab]);
    // A persistent tap is the host's: it stays after down.
    assert!(Command::new("ip")
        .args(["link", "show", "dev", &tap])
        .output()
        .unwrap()
        .status
        .success());
}

/// A bridge that fails before `ready`: `up` reports what it printed and leaves nothing behind.
#[test]
fn a_failing_bridge_fails_up_with_its_message_and_nothing_is_left() {
    let Some(mut env) = Env::linux("failing bridge") else {
        return;
    };
    let fake = env.scratch.path().join("broken-bridge");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"virtif-bridge: tap eth0: simulated failure\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.bridge_bin = Some(fake);
    let (lab, file) = linux_peer_file(&env, "brokenbr");
    let err = env.fails(&["up", &file]);
    assert!(err.contains("node l1"), "{err}");
    assert!(err.contains("interface eth0 on bus lan1"), "{err}");
    assert!(err.contains("tap eth0: simulated failure"), "{err}");
    assert!(err.contains("nothing was left running"), "{err}");
    assert!(!netns_exists(&netns(&lab, "l1")));
    assert!(!env.lab_dir(&lab).exists());
    assert!(no_process_mentions(env.base.path()));
}

/// A failing `exec` command of a Linux node fails `up`, naming the command, and everything
/// (nodes, bridges, namespaces) goes.
#[test]
fn a_failing_exec_on_a_linux_node_fails_up_and_tears_the_lab_down() {
    let Some(env) = Env::linux("failing exec") else {
        return;
    };
    let (lab, file) = linux_peer_file(&env, "badexec");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "routes = [{ to = \"default\", via = \"10.77.2.1\" }]",
        "routes = [{ to = \"default\", via = \"10.77.2.1\" }]\nexec = [\"ip link set dev nosuch0 up\"]",
    );
    std::fs::write(&file, text).unwrap();
    let err = env.fails(&["up", &file]);
    assert!(
        err.contains(
            "node l2 (namespace shmlab-lp-badexec-l2): `ip link set dev nosuch0 up` failed"
        ),
        "{err}"
    );
    assert!(!netns_exists(&netns(&lab, "l1")) && !netns_exists(&netns(&lab, "l2")));
    assert!(!env.lab_dir(&lab).exists());
    assert!(no_process_mentions(env.base.path()));
}

/// Fragmentation both ways and ICMP errors between Linux and netstack: Linux fragments a 4000-byte
/// echo and we reassemble and answer in fragments, and the reverse; a Linux ping to a network
/// nobody routes gets our router's "net unreachable".
#[test]
fn fragments_and_icmp_errors_interoperate_with_linux() {
    let Some((env, lab)) = linux_peer("fragments", "frag") else {
        return;
    };
    let out = exec(
        &env,
        &lab,
        "l1",
        &["ping", "-c", "2", "-s", "4000", "-W", "2", N1],
    );
    assert!(out.contains("2 received"), "{out}");
    assert!(out.contains("4008 bytes from"), "{out}");
    let out = exec(&env, &lab, "n1", &["ping", "-c", "2", "-s", "4000", L1]);
    assert!(out.contains("2 packets received"), "{out}");
    let stats = exec(&env, &lab, "n1", &["netstat", "-s", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(
        v["counters"]["ip_reassembled"].as_u64() >= Some(2),
        "{stats}"
    );
    // Across r1 to l2 as well: r1 forwards the fragments as they are.
    let out = exec(
        &env,
        &lab,
        "l1",
        &["ping", "-c", "1", "-s", "3000", "-W", "2", L2],
    );
    assert!(out.contains("1 received"), "{out}");

    let out = env
        .labctl()
        .args([
            "exec",
            &lab,
            "l1",
            "--",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.77.9.9",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "From {R1_LAN1} icmp_seq=1 Destination Net Unreachable"
        )),
        "{text}"
    );
    env.ok(&["down", &lab]);
}
