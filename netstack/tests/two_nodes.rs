//! Two nodes on one bus: ARP, ping both ways, daemon behaviour, command errors.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{tempdir, Node, CTL, NETSTACK};

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn two_nodes_resolve_arp_and_ping_both_ways() {
    let dir = tempdir();
    let bus = dir.path().join("bus");
    let a = Node::start(dir.path(), "a");
    let b = Node::start(dir.path(), "b");
    a.iface("shmif0", &bus, "10.0.0.1/24");
    b.iface("shmif0", &bus, "10.0.0.2/24");

    let out = a.ok("ping -c 2 -i 0.1 10.0.0.2");
    assert!(
        out.contains("PING 10.0.0.2 (10.0.0.2): 56 data bytes"),
        "{out}"
    );
    assert!(
        out.contains("64 bytes from 10.0.0.2: icmp_seq=0 ttl=64 time="),
        "{out}"
    );
    assert!(
        out.contains("2 packets transmitted, 2 packets received, 0.0% packet loss"),
        "{out}"
    );
    assert!(out.contains("round-trip min/avg/max/stddev = "), "{out}");
    let out = b.ok("ping -c 2 -i 0.1 10.0.0.1");
    assert!(out.contains("2 packets received"), "{out}");

    let arp_a = a.ok("arp -a");
    assert!(
        arp_a.contains(&format!(
            "? (10.0.0.2) at {} on shmif0",
            mac_text(b.mac("shmif0"))
        )),
        "{arp_a}"
    );
    let arp_b = b.ok("arp -a");
    assert!(
        arp_b.contains(&format!(
            "? (10.0.0.1) at {} on shmif0",
            mac_text(a.mac("shmif0"))
        )),
        "{arp_b}"
    );
    let j = a.json("arp -a");
    assert_eq!(j[0]["addr"], "10.0.0.2");
    assert_eq!(j[0]["state"], "reachable");

    let ni = a.ok("netstat -i");
    assert!(ni.starts_with("Name"), "{ni}");
    assert!(
        ni.contains("shmif0    1500 10.0.0.0/24        10.0.0.1"),
        "{ni}"
    );

    // Counters and the bus statistics show up in ifconfig -v.
    let v = a.ok("ifconfig -v shmif0");
    assert!(v.contains("input: "), "{v}");
    assert!(v.contains("bus: sent "), "{v}");
}

/// The bus counters are read from the port when `ifconfig -v` runs, so right after a ping they
/// account for every frame the stack sent and received.
#[test]
fn ifconfig_v_bus_counters_match_the_frames_a_ping_moved() {
    let dir = tempdir();
    let bus = dir.path().join("bus");
    let a = Node::start(dir.path(), "a");
    let b = Node::start(dir.path(), "b");
    a.iface("shmif0", &bus, "10.0.0.1/24");
    b.iface("shmif0", &bus, "10.0.0.2/24");
    let out = a.ok("ping -c 3 -i 0.05 10.0.0.2");
    assert!(out.contains("3 packets received"), "{out}");

    let v = a.json("ifconfig -v shmif0");
    let (c, bs) = (&v["counters"], &v["bus"]);
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
    // Every frame the stack sent went onto the bus: 3 echo requests plus ARP.
    assert!(n(&bs["sent"]) >= 4, "{v}");
    assert_eq!(n(&bs["sent"]), n(&c["opackets"]), "{v}");
    assert_eq!(n(&bs["sent_bytes"]), n(&c["obytes"]), "{v}");
    // Everything the port received reached the stack: 3 echo replies plus ARP.
    assert!(n(&bs["received"]) >= 4, "{v}");
    assert_eq!(n(&bs["received"]), n(&c["ipackets"]), "{v}");
    assert_eq!(n(&bs["received_bytes"]), n(&c["ibytes"]), "{v}");
    assert_eq!(n(&bs["rx_queue_drops"]), 0, "{v}");
    // The peer got what a sent it (it attached after a's gratuitous ARP and, perhaps, the DAD
    // probe of a's link-local address, so at most two less).
    let vb = b.json("ifconfig -v shmif0");
    let b_received = n(&vb["bus"]["received"]);
    assert!(
        b_received + 2 >= n(&bs["sent"]) && b_received <= n(&bs["sent"]),
        "a: {v}\nb: {vb}"
    );

    let text = a.ok("ifconfig -v shmif0");
    let line = format!(
        "bus: sent {} ({} bytes), received {} ({} bytes)",
        n(&bs["sent"]),
        n(&bs["sent_bytes"]),
        n(&bs["received"]),
        n(&bs["received_bytes"])
    );
    assert!(text.contains(&line), "{text}");
    assert_eq!(a.drops("rx_queue_full"), 0);
}

#[test]
fn ping_json_streams_replies_and_a_summary() {
    let dir = tempdir();
    let bus = dir.path().join("bus");
    let a = Node::start(dir.path(), "a");
    let b = Node::start(dir.path(), "b");
    a.iface("shmif0", &bus, "10.0.0.1/24");
    b.iface("shmif0", &bus, "10.0.0.2/24");
    let out = a.ok("ping -c 1 -p ab -s 100 --json 10.0.0.2");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "start");
    assert_eq!(lines[1]["type"], "reply");
    assert_eq!(lines[1]["bytes"], 108);
    assert_eq!(lines.last().unwrap()["type"], "summary");
    assert_eq!(lines.last().unwrap()["received"], 1);

    // -w ends an open-ended ping with its summary; -q keeps only header and summary.
    let out = a.ok("ping -q -w 0.5 -i 0.1 10.0.0.2");
    assert!(!out.contains("bytes from"), "{out}");
    assert!(out.contains("packets received, "), "{out}");
    assert!(out.contains("round-trip min/avg/max/stddev"), "{out}");
}

#[test]
fn unresolvable_neighbour_gives_host_unreachable_and_ping_fails() {
    let dir = tempdir();
    let bus = dir.path().join("bus");
    let a = Node::start(dir.path(), "a");
    a.iface("shmif0", &bus, "10.0.0.1/24");
    let o = a.run(&["ping", "-c", "1", "-W", "6", "10.0.0.77"]);
    assert_ne!(o.code, 0);
    assert!(o.stdout.contains("Destination Host Unreachable"), "{o:?}");
    assert!(
        o.stdout
            .contains("1 packets transmitted, 0 packets received"),
        "{o:?}"
    );
    assert_eq!(a.drops("arp_resolve_failed"), 1);
}

#[test]
fn bad_commands_give_one_line_errors_and_the_node_keeps_running() {
    let dir = tempdir();
    let a = Node::start(dir.path(), "a");
    for args in [
        vec!["frobnicate"],
        vec!["ping"],
        vec!["ping", "-c", "x", "10.0.0.1"],
        vec!["ping", "not-an-address"],
        vec!["ifconfig", "shmif0", "inet", "10.0.0.1/24"],
        vec!["ifconfig", "eth0", "create"],
        vec!["route", "add", "default", "10.9.9.9"],
        vec!["route", "add", "-net", "10.0.0.0/40", "10.0.0.1"],
        vec!["sysctl", "-w", "net.inet.ip.ttl=0"],
        vec!["sysctl", "net.nothing"],
        vec!["arp", "-s", "10.0.0.5", "zz:zz"],
        vec!["netstat", "-q"],
        vec!["traceroute", "10.0.0.1"],
    ] {
        let o = a.run(&args);
        assert_ne!(o.code, 0, "{args:?} should fail: {o:?}");
        assert_eq!(
            o.stderr.lines().count(),
            1,
            "{args:?}: one error line: {o:?}"
        );
    }
    // Help is not an error.
    let o = a.run(&["ping", "--help"]);
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains("Usage"), "{o:?}");
    a.ok("ifconfig -a");
}

#[test]
fn interfaces_addresses_mtu_and_routes_are_configurable() {
    let dir = tempdir();
    let bus = dir.path().join("bus");
    let a = Node::start(dir.path(), "a");
    a.iface("shmif0", &bus, "10.0.0.1/24");
    a.ok("ifconfig shmif0 inet 10.0.5.1/16 alias");
    a.ok("ifconfig shmif0 mtu 1280");
    let out = a.ok("ifconfig shmif0");
    assert!(
        out.contains("flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1280"),
        "{out}"
    );
    assert!(
        out.contains("inet 10.0.0.1/24 broadcast 10.0.0.255 flags 0x0"),
        "{out}"
    );
    assert!(
        out.contains("inet 10.0.5.1/16 broadcast 10.0.255.255"),
        "{out}"
    );
    a.ok("ifconfig shmif0 inet 10.0.5.1 delete");
    assert!(!a.ok("ifconfig shmif0").contains("10.0.5.1"));

    let out = a.ok("route add -net 192.168.7.0 -netmask 255.255.255.0 10.0.0.254");
    assert_eq!(out.trim(), "add net 192.168.7.0/24: gateway 10.0.0.254");
    a.ok("route add default 10.0.0.254");
    let table = a.ok("netstat -rn");
    assert!(
        table.contains("default            10.0.0.254         UGS"),
        "{table}"
    );
    assert!(
        table.contains("192.168.7/24       10.0.0.254         UGS"),
        "{table}"
    );
    assert!(
        table.contains("10.0.0/24          link#1             UC"),
        "{table}"
    );
    let get = a.ok("route get 192.168.7.9");
    assert!(get.contains("gateway: 10.0.0.254"), "{get}");
    assert!(get.contains("interface: shmif0"), "{get}");
    let j = a.json("route delete -net 192.168.7.0/24");
    assert_eq!(j["action"], "delete");
    assert_eq!(j["gateway"], "10.0.0.254");
    assert!(a.run(&["route", "delete", "-net", "192.168.7.0/24"]).code != 0);
    let r = a.json("route get 8.8.8.8");
    assert_eq!(r["gateway"], "10.0.0.254");

    assert_eq!(
        a.ok("sysctl net.inet.ip.forwarding").trim(),
        "net.inet.ip.forwarding = 0"
    );
    assert_eq!(
        a.ok("sysctl -w net.inet.ip.forwarding=1").trim(),
        "net.inet.ip.forwarding: 0 -> 1"
    );
    assert_eq!(a.ok("sysctl -n net.inet.ip.forwarding").trim(), "1");

    a.ok("arp -s 10.0.0.9 b2:a0:00:00:00:09");
    assert!(a
        .ok("arp -a")
        .contains("? (10.0.0.9) at b2:a0:00:00:00:09 on shmif0 permanent"));
    a.ok("arp -d 10.0.0.9");
    assert!(!a.ok("arp -a").contains("10.0.0.9"));

    a.ok("ifconfig shmif0 down");
    assert!(a
        .ok("ifconfig shmif0")
        .contains("flags=0x8802<BROADCAST,SIMPLEX,MULTICAST>"));
    a.ok("ifconfig shmif0 destroy");
    assert_eq!(a.ok("ifconfig -l").trim(), "");
}

#[test]
fn daemon_returns_when_ready_and_halt_removes_the_socket() {
    let dir = tempdir();
    let sock = dir.path().join("d.sock");
    let cfg = dir.path().join("d.conf");
    std::fs::write(
        &cfg,
        format!(
            "# a node config\nifconfig shmif0 create\nifconfig shmif0 linkstr {}\nifconfig shmif0 inet 10.0.0.1/24 up\n",
            dir.path().join("bus").display()
        ),
    )
    .unwrap();
    let st = Command::new(NETSTACK)
        .arg("--socket")
        .arg(&sock)
        .arg("--config")
        .arg(&cfg)
        .arg("--log")
        .arg(dir.path().join("d.log"))
        .status()
        .unwrap();
    assert!(st.success());
    // Ready means usable at once, configured by the file.
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let o = Command::new(CTL)
        .arg(&sock)
        .args(["ifconfig", "shmif0"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("inet 10.0.0.1/24"));
    // A flag where the socket goes is refused as such, not looked up as a socket path.
    let o = Command::new(CTL)
        .arg("--socket")
        .arg(&sock)
        .arg("halt")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown option --socket"));
    let o = Command::new(CTL).arg(&sock).arg("halt").output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sock.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!sock.exists(), "halt removes the socket");
}

#[test]
fn bad_config_fails_the_start_with_file_and_line() {
    let dir = tempdir();
    let cfg = dir.path().join("bad.conf");
    std::fs::write(
        &cfg,
        "ifconfig shmif0 create\nifconfig shmif0 inet 300.0.0.1/24\n",
    )
    .unwrap();
    let o = Command::new(NETSTACK)
        .arg("--socket")
        .arg(dir.path().join("x.sock"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.conf:2:"), "{err}");
    assert!(!dir.path().join("x.sock").exists());
}

#[test]
fn sigterm_stops_the_node_cleanly() {
    let dir = tempdir();
    let mut a = Node::start(dir.path(), "a");
    let st = Command::new("kill")
        .arg("-TERM")
        .arg(a.pid().to_string())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(a.wait_exit(), Some(0));
    assert!(!a.sock.exists());
}

#[test]
fn a_second_node_refuses_a_live_socket() {
    let dir = tempdir();
    let a = Node::start(dir.path(), "a");
    let o = Command::new(NETSTACK)
        .arg("--socket")
        .arg(&a.sock)
        .arg("--foreground")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already listening"));
    a.ok("ifconfig -a");
}
