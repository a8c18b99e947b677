//! virtN interfaces: a node attached to a host tap (NetBSD's virt(4)), with the Linux stack on
//! the host side of the tap as the peer. Each node runs inside its own throwaway network
//! namespace, so its taps never touch the machine's own interfaces. Needs root.

mod common;

use std::process::Command;

use common::{mac_text, tempdir, Netns, Node};

#[test]
fn virt0_create_attaches_tap0_and_the_host_side_pings_the_node() {
    if !shmlab_tests::prereq::kernel_net(
        "virt0_create_attaches_tap0_and_the_host_side_pings_the_node",
    ) {
        return;
    }
    let ns = Netns::new("virt0");
    let dir = tempdir();
    let node = Node::start_in(dir.path(), "n", Some(&ns.name));
    node.ok("ifconfig virt0 create");
    node.ok("ifconfig virt0 inet 10.97.0.2/24 up");
    // NetBSD naming: virt0 opened host tap0, which we now configure as the host.
    ns.ip("addr add 10.97.0.1/24 dev tap0");
    ns.ip("link set tap0 up");

    let out = ns.exec("ping -c 2 -i 0.2 -W 2 10.97.0.2");
    assert_eq!(
        out.code, 0,
        "host pings the node: {}{}",
        out.stdout, out.stderr
    );
    let out = node.ok("ping -c 2 -i 0.1 10.97.0.1");
    assert!(out.contains("2 packets received"), "{out}");

    // ARP on both sides: the host learnt our MAC, we learnt the tap's.
    let ours = mac_text(node.mac("virt0"));
    assert!(ours.starts_with("b2:a1:"), "virt MACs are b2:a1:..: {ours}");
    let neigh = ns.ip("neigh show dev tap0");
    assert!(
        neigh.contains(&format!("10.97.0.2 lladdr {ours}")),
        "{neigh}"
    );
    let host_mac = ns.mac("tap0");
    let arp = node.ok("arp -an");
    assert!(
        arp.contains(&format!("(10.97.0.1) at {host_mac} on virt0")),
        "{arp}"
    );

    let v = node.json("ifconfig -v virt0");
    assert_eq!(v["linkstr"], "tap0");
    assert!(v["tap"]["sent"].as_u64() >= Some(4), "{v}");
    assert!(v["tap"]["received"].as_u64() >= Some(4), "{v}");
    assert!(v.get("bus").is_none(), "a tap has no bus counters: {v}");

    // A tap the node created goes away with the interface.
    node.ok("ifconfig virt0 destroy");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let links = ns.ip("link show");
    assert!(!links.contains("tap0"), "{links}");
}

#[test]
fn linkstr_picks_an_existing_persistent_tap_which_survives_the_node() {
    if !shmlab_tests::prereq::kernel_net(
        "linkstr_picks_an_existing_persistent_tap_which_survives_the_node",
    ) {
        return;
    }
    let ns = Netns::new("ptap");
    ns.ip("tuntap add dev hosttap mode tap");
    ns.ip("addr add 10.97.1.1/24 dev hosttap");
    ns.ip("link set hosttap up");
    let dir = tempdir();
    {
        let node = Node::start_in(dir.path(), "n", Some(&ns.name));
        node.ok("ifconfig virt3 create linkstr hosttap");
        node.ok("ifconfig virt3 inet 10.97.1.2/24 up");
        let out = ns.exec("ping -c 1 -W 2 10.97.1.2");
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        // Re-attaching to the same tap right away works (the old descriptor is closed first).
        node.ok("ifconfig virt3 linkstr hosttap");
        let out = node.ok("ping -c 1 10.97.1.1");
        assert!(out.contains("1 packets received"), "{out}");
        // No tap3 was made on the way: linkstr in the create command decides.
        assert!(!ns.ip("link show").contains("tap3"));
        node.ok("halt");
    }
    let link = ns.ip("link show dev hosttap");
    assert!(link.contains("hosttap"), "persistent tap stays: {link}");
}

#[test]
fn a_router_forwards_between_a_bus_and_a_tap() {
    if !shmlab_tests::prereq::kernel_net("a_router_forwards_between_a_bus_and_a_tap") {
        return;
    }
    let ns = Netns::new("fwd");
    let dir = tempdir();
    let bus = dir.path().join("lan.bus");
    let router = Node::start_in(dir.path(), "r", Some(&ns.name));
    let host = Node::start(dir.path(), "h");
    router.ok("ifconfig virt0 create");
    router.ok("ifconfig virt0 inet 10.97.2.1/24 up");
    router.iface("shmif0", &bus, "10.97.3.1/24");
    router.ok("sysctl -w net.inet.ip.forwarding=1");
    host.iface("shmif0", &bus, "10.97.3.2/24");
    host.ok("route add default 10.97.3.1");
    ns.ip("addr add 10.97.2.2/24 dev tap0");
    ns.ip("link set tap0 up");
    ns.ip("route add 10.97.3.0/24 via 10.97.2.1");

    // Linux -> our router -> our host on the bus, and back.
    let out = ns.exec("ping -c 2 -i 0.2 -W 2 10.97.3.2");
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("ttl=63"), "one hop: {}", out.stdout);
    let out = host.ok("traceroute -n 10.97.2.2");
    assert!(out.contains(" 1  10.97.3.1 "), "{out}");
    assert!(out.contains(" 2  10.97.2.2 "), "{out}");
}

#[test]
fn bad_tap_names_and_wrong_links_are_refused_and_leave_nothing() {
    if !shmlab_tests::prereq::kernel_net(
        "bad_tap_names_and_wrong_links_are_refused_and_leave_nothing",
    ) {
        return;
    }
    let ns = Netns::new("bad");
    let dir = tempdir();
    let node = Node::start_in(dir.path(), "n", Some(&ns.name));
    let o = node.run(&["ifconfig", "virt1", "create", "linkstr", "a/b"]);
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("invalid interface name"), "{}", o.stderr);
    let o = node.run(&[
        "ifconfig",
        "virt1",
        "create",
        "linkstr",
        "a-name-far-too-long-for-linux",
    ]);
    assert!(o.stderr.contains("at most 15"), "{}", o.stderr);
    assert_eq!(node.ok("ifconfig -l").trim(), "", "no half-made virt1");
    let o = node.run(&["ifconfig", "virtual0", "create"]);
    assert!(
        o.stderr.contains("expected shmifN for a bus or virtN"),
        "{}",
        o.stderr
    );
    node.ok("ifconfig shmif0 create");
    // A shmif interface does not take a tap; the reverse is a tap *name*, not a path.
    let o = node.run(&["ifconfig", "virt2", "create", "linkstr", "/tmp/x.bus"]);
    assert!(o.stderr.contains("invalid interface name"), "{}", o.stderr);
    assert_eq!(node.ok("ifconfig -l").trim(), "shmif0");
}

#[test]
fn without_cap_net_admin_virt_create_says_what_to_do() {
    if !shmlab_tests::prereq::kernel_net("without_cap_net_admin_virt_create_says_what_to_do") {
        return;
    }
    // The node runs as `nobody`; its socket directory must be writable for it.
    let dir = tempdir();
    let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
    std::fs::set_permissions(dir.path(), perms).unwrap();
    let sock = dir.path().join("n.sock");
    let conf = dir.path().join("n.conf");
    std::fs::write(&conf, "ifconfig virt0 create\n").unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(common::NETSTACK)
        .arg("--socket")
        .arg(&sock)
        .arg("--config")
        .arg(&conf)
        .arg("--foreground")
        .output()
        .expect("run setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("virt0") && err.contains("CAP_NET_ADMIN") && err.contains("run as root"),
        "{err}"
    );
}
