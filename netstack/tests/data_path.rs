//! The node's data path: one stack thread that waits on every bus at once (and on its
//! doorbell), answers on all of them, makes no wakeups while idle, and keeps working with more
//! buses than one `futex_waitv` takes.

mod common;

use std::time::Duration;

use common::{tempdir, Netns, Node};

/// The node's threads and their voluntary context switches (how often each went to sleep).
fn thread_switches(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let t = t.unwrap().path();
        let comm = std::fs::read_to_string(t.join("comm")).unwrap_or_default();
        let status = std::fs::read_to_string(t.join("status")).unwrap_or_default();
        let n = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        out.push((comm.trim().to_string(), n));
    }
    out.sort();
    out
}

fn thread_names(pid: u32) -> Vec<String> {
    thread_switches(pid).into_iter().map(|(n, _)| n).collect()
}

fn pings(node: &Node, ip: &str) {
    let out = node.ok(&format!("ping -c 2 -i 0.05 {ip}"));
    assert!(out.contains("2 packets received"), "{ip}: {out}");
}

#[test]
fn a_node_on_three_buses_and_a_tap_answers_on_all_four_and_sleeps_between() {
    if !shmlab_tests::prereq::kernel_net(
        "a_node_on_three_buses_and_a_tap_answers_on_all_four_and_sleeps_between",
    ) {
        return;
    }
    let ns = Netns::new("dp4");
    let dir = tempdir();
    let d = dir.path();
    let node = Node::start_in(d, "n", Some(&ns.name));
    let peers: Vec<Node> = (0..3).map(|i| Node::start(d, &format!("p{i}"))).collect();
    for (i, p) in peers.iter().enumerate() {
        let bus = d.join(format!("bus{i}"));
        node.iface(&format!("shmif{i}"), &bus, &format!("10.98.{i}.1/24"));
        p.iface("shmif0", &bus, &format!("10.98.{i}.2/24"));
    }
    node.ok("ifconfig virt0 create");
    node.ok("ifconfig virt0 inet 10.98.9.2/24 up");
    // The host side would otherwise send IPv6 router solicitations now and then: real frames,
    // which would wake the node while we watch it idle.
    ns.exec("sysctl -qw net.ipv6.conf.tap0.disable_ipv6=1");
    ns.ip("addr add 10.98.9.1/24 dev tap0");
    ns.ip("link set tap0 up");

    // One stack thread, no thread per bus: the tap has its rx thread.
    let names = thread_names(node.pid());
    assert_eq!(
        names.iter().filter(|n| n.starts_with("rx-")).count(),
        1,
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("bus")), "{names:?}");

    for (i, p) in peers.iter().enumerate() {
        pings(p, &format!("10.98.{i}.1"));
        pings(&node, &format!("10.98.{i}.2"));
    }
    let out = ns.exec("ping -c 2 -i 0.2 -W 2 10.98.9.2");
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // Idle: once the ARP retries, ping jobs and the link-local addresses' DAD (which ends
    // with an advertisement every node hears) are over, the stack thread does not wake.
    for p in peers.iter().chain([&node]) {
        p.ok("ifconfig -w 5");
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = thread_switches(node.pid());
    std::thread::sleep(Duration::from_secs(2));
    let after = thread_switches(node.pid());
    // Neither does any other thread: the tap's reader sleeps until a frame or a stop comes.
    assert_eq!(after, before, "an idle thread woke up");
}

#[test]
fn detaching_a_bus_under_traffic_loses_nothing_elsewhere_and_leaves_nothing_behind() {
    let dir = tempdir();
    let d = dir.path();
    let node = Node::start(d, "n");
    let a = Node::start(d, "a");
    let b = Node::start(d, "b");
    let (bus_a, bus_b) = (d.join("a"), d.join("b"));
    node.iface("shmif0", &bus_a, "10.0.1.1/24");
    node.iface("shmif1", &bus_b, "10.0.2.1/24");
    a.iface("shmif0", &bus_a, "10.0.1.2/24");
    b.iface("shmif0", &bus_b, "10.0.2.2/24");
    let threads = thread_names(node.pid());
    // Traffic on bus a the whole time, while bus b is detached and re-attached five times.
    let flood = std::thread::spawn(move || {
        let out = a.ok("ping -c 200 -i 0.01 10.0.1.1");
        (a, out)
    });
    for _ in 0..5 {
        node.ok("ifconfig shmif1 -linkstr");
        std::thread::sleep(Duration::from_millis(50));
        node.ok(&format!("ifconfig shmif1 linkstr {}", bus_b.display()));
        pings(&b, "10.0.2.1");
    }
    let (_a, out) = flood.join().unwrap();
    assert!(
        out.contains("200 packets transmitted, 200 packets received"),
        "{out}"
    );
    assert_eq!(
        thread_names(node.pid()),
        threads,
        "a thread was left behind"
    );
    // The node no longer sleeps on the detached bus's futex: frames there (which wake every
    // sleeper on that bus, node b among them) leave its stack thread asleep.
    node.ok("ifconfig shmif1 -linkstr");
    std::thread::sleep(Duration::from_millis(300));
    let bus = shmif::Bus::attach(&bus_b, &shmif::BusConfig::default()).unwrap();
    let port = bus.port();
    let stack = |pid| {
        thread_switches(pid)
            .into_iter()
            .find(|(n, _)| n == "netstack")
            .unwrap()
            .1
    };
    let before = stack(node.pid());
    for _ in 0..20 {
        port.send(&[0xff; 60]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(stack(node.pid()), before, "woken by a bus it left");
}

#[test]
fn a_node_on_more_buses_than_one_futex_waitv_takes_still_answers_on_the_last() {
    let dir = tempdir();
    let d = dir.path();
    let node = Node::start(d, "n");
    let peer = Node::start(d, "p");
    let n = 130;
    for i in 0..n {
        let bus = d.join(format!("b{i}"));
        let config = shmif::BusConfig::default();
        // 1 MiB buses: 130 of the default 8 MiB would be a lot of tmpfs for a test.
        drop(
            shmif::Bus::attach(
                &bus,
                &shmif::BusConfig {
                    size: 1 << 20,
                    ..config
                },
            )
            .unwrap(),
        );
        node.iface(
            &format!("shmif{i}"),
            &bus,
            &format!("10.{}.{}.1/24", 100 + i / 200, i % 200),
        );
    }
    let last = n - 1;
    peer.iface(
        "shmif0",
        &d.join(format!("b{last}")),
        &format!("10.{}.{}.2/24", 100 + last / 200, last % 200),
    );
    pings(&peer, &format!("10.{}.{}.1", 100 + last / 200, last % 200));
    let first = d.join("b0");
    peer.ok("ifconfig shmif1 create");
    peer.ok(&format!("ifconfig shmif1 linkstr {}", first.display()));
    peer.ok("ifconfig shmif1 inet 10.100.0.2/24 up");
    pings(&peer, "10.100.0.1");
    assert_eq!(thread_names(node.pid()).len(), 3, "stack, control, signals");
}

#[test]
fn a_node_on_a_netbsd_mode_bus_answers_and_does_not_wake_while_idle() {
    let dir = tempdir();
    let d = dir.path();
    let bus = d.join("nb.bus");
    let node = Node::start(d, "n");
    let peer = Node::start(d, "p");
    node.ok("ifconfig shmif0 create");
    node.ok(&format!("ifconfig shmif0 linkstr {} netbsd", bus.display()));
    node.ok("ifconfig shmif0 inet 10.0.7.1/24 up");
    peer.iface("shmif0", &bus, "10.0.7.2/24");
    pings(&peer, "10.0.7.1");
    pings(&node, "10.0.7.2");
    // The bus's file watcher (NetBSD kernels wake through the file, not our futex) is there...
    let names = thread_names(node.pid());
    assert!(names.iter().any(|n| n.starts_with("watch-")), "{names:?}");
    // ... and sleeps like everything else while nothing happens (DAD of the link-local
    // addresses over).
    node.ok("ifconfig -w 5");
    peer.ok("ifconfig -w 5");
    std::thread::sleep(Duration::from_millis(300));
    let before = thread_switches(node.pid());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        thread_switches(node.pid()),
        before,
        "an idle thread woke up"
    );
    // Detaching stops the watcher.
    node.ok("ifconfig shmif0 -linkstr");
    std::thread::sleep(Duration::from_millis(100));
    let names = thread_names(node.pid());
    assert!(!names.iter().any(|n| n.starts_with("watch-")), "{names:?}");
}
