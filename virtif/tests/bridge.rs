//! virtif-bridge as labctl runs it: a real process joining a tap in a throwaway network
//! namespace to a real bus file, with the Linux stack answering frames we put on the bus.
//! Needs root; see `common::can_run`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ArpOps, Netns};

const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 1);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 2);

/// A running bridge, killed on drop so a failing test leaves no process behind.
struct Bridge {
    child: Child,
    ready: String,
}

impl Bridge {
    fn start(bus: &Path, tap: &str, netns: &str, stats: &Path) -> Bridge {
        let mut child = Command::new(env!("CARGO_BIN_EXE_virtif-bridge"))
            .arg("--bus")
            .arg(bus)
            .args(["--tap", tap, "--netns", netns, "--stats"])
            .arg(stats)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start virtif-bridge");
        let stdout: ChildStdout = child.stdout.take().expect("piped stdout");
        let mut ready = String::new();
        BufReader::new(stdout)
            .read_line(&mut ready)
            .expect("read the ready line");
        assert!(ready.starts_with("ready "), "bridge said {ready:?}");
        Bridge { child, ready }
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        self.child.wait().expect("wait for the bridge")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stats(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("stats file");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("stats {text:?}: {e}"))
}

/// Receives on `port` until `want` accepts a frame, answering the kernel's ARP requests for
/// `OUR_IP` meanwhile. Panics after five seconds.
fn wait_for<T>(port: &mut shmif::Port, what: &str, mut want: impl FnMut(&[u8]) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what} on the bus within 5 s");
        let Some(r) = port.recv(&mut buf, left) else {
            continue;
        };
        let frame = &buf[..r.len];
        if let Some(t) = want(frame) {
            return t;
        }
        if let Some(arp) = common::parse_arp(frame) {
            if common::is_request(arp.op) && arp.target_ip == OUR_IP {
                let reply = common::arp_frame(
                    ArpOps::Reply,
                    arp.sender_mac,
                    (port.mac(), OUR_IP),
                    (arp.sender_mac, arp.sender_ip),
                );
                port.send(&reply).expect("send ARP reply");
            }
        }
    }
}

#[test]
fn bridge_joins_the_kernel_to_a_bus_both_ways() {
    if !shmlab_tests::prereq::kernel_net("bridge_joins_the_kernel_to_a_bus_both_ways") {
        return;
    }
    let ns = Netns::new("bridge");
    let dir = tempfile::tempdir().expect("tempdir");
    let bus_path = dir.path().join("lan.bus");
    let stats_path = dir.path().join("eth0.json");
    let bridge = Bridge::start(&bus_path, "eth0", &ns.name, &stats_path);
    ns.ip(&["addr", "add", "10.98.0.1/24", "dev", "eth0"]);
    let kernel_mac = common::mac_of(&ns.link("eth0"));
    assert!(
        bridge
            .ready
            .contains(&format!("mac={}", virtif::format_mac(kernel_mac))),
        "ready line names the tap's MAC: {}",
        bridge.ready
    );
    assert!(common::flags(&ns.link("eth0")).contains(&"UP".to_owned()));

    let bus = shmif::Bus::attach(&bus_path, &shmif::BusConfig::default()).expect("attach");
    let mut port = bus.port();
    let request = common::arp_frame(
        ArpOps::Request,
        common::BROADCAST,
        (port.mac(), OUR_IP),
        ([0; 6], KERNEL_IP),
    );
    port.send(&request).expect("send ARP request");
    let reply = wait_for(&mut port, "ARP reply", |f| {
        common::parse_arp(f).filter(|a| a.op == ArpOps::Reply)
    });
    assert_eq!((reply.sender_mac, reply.sender_ip), (kernel_mac, KERNEL_IP));
    assert_eq!(reply.eth_dst, port.mac());

    let payload: Vec<u8> = (0..200u8).collect();
    let ping = common::echo_request_frame(
        (kernel_mac, port.mac()),
        OUR_IP,
        KERNEL_IP,
        0x0b1d,
        3,
        &payload,
    );
    port.send(&ping).expect("send echo request");
    let echo = wait_for(&mut port, "echo reply", common::parse_echo_reply);
    assert_eq!((echo.src, echo.dst, echo.seq), (KERNEL_IP, OUR_IP, 3));
    assert_eq!(echo.payload, payload);

    // The kernel-side ping goes the other way: we answer ARP in wait_for, then the reply.
    let pinger = std::thread::spawn({
        let ns = ns.name.clone();
        move || {
            Command::new("ip")
                .args(["netns", "exec", &ns, "ping", "-c", "1", "-W", "5"])
                .arg(OUR_IP.to_string())
                .output()
                .expect("run ping")
        }
    });
    let request = wait_for(&mut port, "kernel echo request", |f| {
        common::parse_echo_request(f)
    });
    let answer = common::echo_reply_frame(
        (request.eth_src, port.mac()),
        OUR_IP,
        request.src,
        request.ident,
        request.seq,
        &request.payload,
    );
    port.send(&answer).expect("send echo reply");
    let out = pinger.join().expect("ping thread");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Counters: the stats file is rewritten every second; the final one at SIGTERM.
    let status = bridge.stop();
    assert!(status.success(), "bridge exit {status}");
    let s = stats(&stats_path);
    // Our ARP request, echo request and echo reply (the kernel learnt our MAC from the request).
    assert!(s["bus_rx"].as_u64() >= Some(3), "{s}");
    assert!(
        s["tap_tx"] == s["bus_rx"],
        "everything read from the bus reaches the tap: {s}"
    );
    assert!(s["tap_rx"].as_u64() >= Some(3), "{s}");
    assert!(
        s["bus_tx"] == s["tap_rx"],
        "everything from the tap reaches the bus: {s}"
    );
    assert_eq!(s["dropped"], 0, "{s}");
    assert_eq!(s["tap"], "eth0");
}

#[test]
fn frames_too_long_for_the_bus_are_counted_not_cut() {
    if !shmlab_tests::prereq::kernel_net("frames_too_long_for_the_bus_are_counted_not_cut") {
        return;
    }
    let ns = Netns::new("bridge-big");
    let dir = tempfile::tempdir().expect("tempdir");
    let bus_path = dir.path().join("lan.bus");
    let stats_path = dir.path().join("eth0.json");
    let bridge = Bridge::start(&bus_path, "eth0", &ns.name, &stats_path);
    ns.ip(&["addr", "add", "10.98.0.1/24", "dev", "eth0"]);
    // Behind the bridge's back: a jumbo MTU the bus cannot carry, and a static neighbour so
    // the kernel sends at once.
    ns.ip(&["link", "set", "eth0", "mtu", "9000"]);
    ns.ip(&[
        "neigh",
        "add",
        "10.98.0.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "eth0",
    ]);
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args([
            "ping", "-c", "2", "-i", "0.2", "-W", "1", "-s", "5000", "-M", "do",
        ])
        .arg(OUR_IP.to_string())
        .output()
        .expect("run ping");
    assert!(!out.status.success(), "nobody answers");
    // The bus never saw a frame: nothing cut, nothing passed.
    assert!(bridge.stop().success());
    let s = stats(&stats_path);
    assert_eq!(s["dropped_oversize"], 2, "{s}");
    assert_eq!(s["dropped"], 2, "{s}");
}

#[test]
fn a_missing_namespace_fails_before_ready_with_the_reason() {
    if !shmlab_tests::prereq::kernel_net("a_missing_namespace_fails_before_ready_with_the_reason") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_virtif-bridge"))
        .arg("--bus")
        .arg(dir.path().join("lan.bus"))
        .args(["--tap", "eth0", "--netns", "shmlab-no-such-namespace"])
        .output()
        .expect("run virtif-bridge");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no ready line on failure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("shmlab-no-such-namespace") && err.contains("does not exist"),
        "{err}"
    );
}
