//! IPv6 between real node processes on real buses: link-local addresses, DAD, NDP, ping6,
//! forwarding with hop limits, fragmentation at the source and Packet Too Big; and the Linux
//! kernel as the neighbour through a tap (root only).

mod common;

use std::time::{Duration, Instant};

use common::{mac_text, tempdir, Netns, Node};

/// The modified EUI-64 link-local address of `mac` (RFC 4291 appendix A), computed here
/// independently of the stack.
fn link_local(mac: [u8; 6]) -> String {
    let w = |a: u8, b: u8| u16::from_be_bytes([a, b]);
    format!(
        "fe80::{:x}:{:x}:{:x}:{:x}",
        w(mac[0] ^ 2, mac[1]),
        w(mac[2], 0xff),
        w(0xfe, mac[3]),
        w(mac[4], mac[5])
    )
}

fn v6_node(dir: &std::path::Path, name: &str, bus: &std::path::Path, addr: &str) -> Node {
    let n = Node::start(dir, name);
    n.ok("ifconfig shmif0 create");
    n.ok(&format!("ifconfig shmif0 linkstr {}", bus.display()));
    n.ok(&format!("ifconfig shmif0 inet6 {addr}"));
    n.ok("ifconfig shmif0 up");
    n
}

fn wait_dad(n: &Node) {
    n.ok("ifconfig -w 5");
}

#[test]
fn two_nodes_get_link_local_addresses_pass_dad_and_ping6_each_other() {
    let dir = tempdir();
    let bus = dir.path().join("lan");
    let a = v6_node(dir.path(), "a", &bus, "fd00:1::1/64");
    let b = v6_node(dir.path(), "b", &bus, "fd00:1::2/64");
    wait_dad(&a);
    wait_dad(&b);

    let ll_b = link_local(b.mac("shmif0"));
    let ifc = b.ok("ifconfig shmif0");
    assert!(ifc.contains(&format!("inet6 {ll_b}%shmif0/64")), "{ifc}");
    assert!(ifc.contains("inet6 fd00:1::2/64"), "{ifc}");
    assert!(!ifc.contains("TENTATIVE"), "DAD finished: {ifc}");

    let out = a.ok("ping6 -c 2 -i 0.1 fd00:1::2");
    assert!(out.contains("2 packets received"), "{out}");
    let out = a.ok(&format!("ping6 -c 1 {ll_b}%shmif0"));
    assert!(out.contains("1 packets received"), "{out}");

    // Each side learnt the other's MAC through NDP.
    let ndp = a.ok("ndp -n -a");
    assert!(ndp.contains("fd00:1::2"), "{ndp}");
    assert!(ndp.contains(&mac_text(b.mac("shmif0"))), "{ndp}");
    assert!(b.counter("nd_ns_in") >= 1);
    assert!(a.counter("nd_na_in") >= 1);
    // DAD probes of both addresses and both link-locals went out unanswered.
    assert!(a.counter("nd_ns_out") >= 2);
}

#[test]
fn dad_conflict_marks_the_later_address_duplicated_and_it_is_not_used() {
    let dir = tempdir();
    let bus = dir.path().join("lan");
    let a = v6_node(dir.path(), "a", &bus, "fd00:9::5/64");
    wait_dad(&a);
    let b = v6_node(dir.path(), "b", &bus, "fd00:9::5/64");
    wait_dad(&b);
    let ifc = b.ok("ifconfig shmif0");
    let line = ifc
        .lines()
        .find(|l| l.contains("fd00:9::5"))
        .unwrap_or_else(|| panic!("{ifc}"));
    assert!(line.contains("DUPLICATED"), "{ifc}");
    assert_eq!(b.drops("nd_dad_duplicate"), 1);
    // The first owner keeps it.
    let ifc = a.ok("ifconfig shmif0");
    assert!(!ifc.contains("DUPLICATED"), "{ifc}");
    // b does not answer for it: a's pings to it are answered by a itself (local), and a
    // third node reaching fd00:9::5 gets a, never b.
    let c = v6_node(dir.path(), "c", &bus, "fd00:9::7/64");
    wait_dad(&c);
    c.ok("ping6 -c 1 fd00:9::5");
    let ndp = c.ok("ndp -n -a");
    let entry = ndp
        .lines()
        .find(|l| l.starts_with("fd00:9::5"))
        .unwrap_or_else(|| panic!("{ndp}"));
    assert!(entry.contains(&mac_text(a.mac("shmif0"))), "{ndp}");
}

/// h1 -- bus1 -- r1 -- bus2 -- r2 -- bus3 -- h2 with IPv6 only.
struct Chain6 {
    h1: Node,
    r1: Node,
    r2: Node,
    h2: Node,
    _dir: tempfile::TempDir,
}

fn chain6() -> Chain6 {
    let dir = tempdir();
    let d = dir.path();
    let (b1, b2, b3) = (d.join("bus1"), d.join("bus2"), d.join("bus3"));
    let node = |name: &str, ifs: &[(&std::path::Path, &str)]| {
        let n = Node::start(d, name);
        for (i, (bus, addr)) in ifs.iter().enumerate() {
            n.ok(&format!("ifconfig shmif{i} create"));
            n.ok(&format!("ifconfig shmif{i} linkstr {}", bus.display()));
            n.ok(&format!("ifconfig shmif{i} inet6 {addr}"));
            n.ok(&format!("ifconfig shmif{i} up"));
        }
        n
    };
    let h1 = node("h1", &[(&b1, "fd00:1::2/64")]);
    let r1 = node("r1", &[(&b1, "fd00:1::1/64"), (&b2, "fd00:2::1/64")]);
    let r2 = node("r2", &[(&b2, "fd00:2::2/64"), (&b3, "fd00:3::1/64")]);
    let h2 = node("h2", &[(&b3, "fd00:3::2/64")]);
    for n in [&h1, &r1, &r2, &h2] {
        wait_dad(n);
    }
    h1.ok("route add -inet6 default fd00:1::1");
    h2.ok("route add -inet6 default fd00:3::1");
    r1.ok("route add -inet6 fd00:3::/64 fd00:2::2");
    r2.ok("route add -inet6 fd00:1::/64 fd00:2::1");
    r1.ok("sysctl -w net.inet6.ip6.forwarding=1");
    r2.ok("sysctl -w net.inet6.ip6.forwarding=1");
    Chain6 {
        h1,
        r1,
        r2,
        h2,
        _dir: dir,
    }
}

#[test]
fn routers_forward_ipv6_decrement_the_hop_limit_and_report_exhaustion() {
    let c = chain6();
    let out = c.h1.ok("ping6 -c 2 -i 0.1 fd00:3::2");
    assert!(out.contains("2 packets received"), "{out}");
    assert!(out.contains("hlim=62"), "two routers on the way: {out}");
    assert!(c.r1.counter("ip6_forwarded") >= 4);
    let out = c.h2.ok("ping6 -c 1 fd00:1::2");
    assert!(out.contains("1 packets received"), "{out}");

    let tr = c.h1.ok("traceroute6 -n -q 1 fd00:3::2");
    let lines: Vec<&str> = tr.lines().collect();
    assert!(
        lines[0].starts_with("traceroute6 to fd00:3::2 (fd00:3::2), 30 hops max"),
        "{tr}"
    );
    assert!(lines[1].starts_with(" 1  fd00:1::1  "), "{tr}");
    assert!(lines[2].starts_with(" 2  fd00:2::2  "), "{tr}");
    assert!(lines[3].starts_with(" 3  fd00:3::2  "), "{tr}");
    assert_eq!(lines.len(), 4, "{tr}");

    // Hop limit 1 dies at the first router, which says so from its near side (ping6 shows
    // errors with -v, as NetBSD's does).
    let o =
        c.h1.run(&["ping6", "-v", "-c", "1", "-h", "1", "fd00:3::2"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("fd00:1::1"), "{o:?}");
    // The traceroute's first probe, then this ping.
    assert_eq!(c.r1.drops("ip6_hop_limit_exceeded"), 2);
    assert!(c.h1.counter("icmp6_in") >= 3);

    // Forwarding off: the router neither forwards nor answers for others.
    c.r2.ok("sysctl -w net.inet6.ip6.forwarding=0");
    let o = c.h1.run(&["ping6", "-c", "1", "-X", "1", "fd00:3::2"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(c.r2.drops("ip6_not_for_us") >= 1);
}

#[test]
fn big_ping6_is_fragmented_at_the_source_and_a_small_mtu_hop_is_learnt_from_packet_too_big() {
    let c = chain6();
    let out = c.h1.ok("ping6 -c 1 -s 4000 fd00:3::2");
    assert!(out.contains("1 packets received"), "{out}");
    assert!(c.h1.counter("ip6_fragments_out") >= 3);
    assert!(c.h2.counter("ip6_reassembled") >= 1);

    // The link between r1 and r2 carries 1280 bytes at most: routers never fragment, so the
    // first big request dies at r1 and the first big reply at r2, each answered with Packet
    // Too Big; both ends then fragment for that path.
    c.r1.ok("ifconfig shmif1 mtu 1280");
    c.r2.ok("ifconfig shmif0 mtu 1280");
    let before = c.h1.counter("ip6_fragments_out");
    let out =
        c.h1.run(&["ping6", "-c", "4", "-i", "0.2", "-s", "1400", "fd00:3::2"]);
    assert!(
        out.stdout
            .contains("4 packets transmitted, 2 packets received"),
        "{out:?}"
    );
    assert_eq!(c.r1.drops("ip6_too_big"), 1);
    assert_eq!(c.r2.drops("ip6_too_big"), 1);
    // Requests 1, 2 and 3 went out in two fragments each.
    assert_eq!(c.h1.counter("ip6_fragments_out") - before, 3 * 2);
}

#[test]
fn malformed_ipv6_on_the_bus_is_counted_and_the_node_keeps_working() {
    let dir = tempdir();
    let bus = dir.path().join("lan");
    let a = v6_node(dir.path(), "a", &bus, "fd00:5::1/64");
    let b = v6_node(dir.path(), "b", &bus, "fd00:5::2/64");
    wait_dad(&a);
    wait_dad(&b);
    let mac = a.mac("shmif0");
    let port = shmif::Bus::attach(&bus, &shmif::BusConfig::default())
        .unwrap()
        .port();
    let src: [u8; 16] = "fd00:5::99".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let dst: [u8; 16] = "fd00:5::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let frame = |next: u8, plen: u16, body: &[u8]| {
        let mut f = Vec::new();
        f.extend_from_slice(&mac);
        f.extend_from_slice(&[0xb2, 0xa0, 9, 9, 9, 9]);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&plen.to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(body);
        f
    };
    // Payload length beyond the frame; a destination-options header running past the end; a
    // chain of 40 destination-options headers; a truncated fragment header.
    let mut chain = Vec::new();
    for _ in 0..40 {
        chain.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    }
    // A neighbour solicitation for a's address, well formed but with hop limit 64 (frame()
    // writes 64), which RFC 4861 says to drop: an off-link forgery.
    let mut ns = netstack::wire::PacketBuf::new();
    netstack::wire::icmpv6::emit(
        src.into(),
        dst.into(),
        &netstack::wire::icmpv6::Icmpv6::NeighborSolicit {
            target: dst.into(),
            source_mac: Some(netstack::wire::Mac([0xb2, 0xa0, 9, 9, 9, 9])),
        },
        &mut ns,
    );
    let bad = [
        frame(58, 200, &[128, 0, 0, 0]),
        frame(60, 16, &[58, 5, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        frame(60, chain.len() as u16, &chain),
        frame(44, 4, &[58, 0, 0, 1]),
        frame(58, ns.len() as u16, ns.data()),
    ];
    for f in &bad {
        port.send(f).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let out = b.ok("ping6 -c 1 fd00:5::1");
    assert!(out.contains("1 packets received"), "{out}");
    assert_eq!(a.drops("nd_bad_hop_limit"), 1);
    let v = a.json("netstat -s");
    let drops = &v["drops"];
    let total: u64 = drops
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("ip6") || k.starts_with("frag6") || k.starts_with("nd_"))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum();
    assert!(total >= bad.len() as u64, "{v}");
}

#[test]
fn linux_is_our_ndp_neighbour_both_ways_and_ping6_works_in_both_directions() {
    if !shmlab_tests::prereq::kernel_net(
        "linux_is_our_ndp_neighbour_both_ways_and_ping6_works_in_both_directions",
    ) {
        return;
    }
    let ns = Netns::new("v6peer");
    let dir = tempdir();
    let node = Node::start_in(dir.path(), "n", Some(&ns.name));
    node.ok("ifconfig virt0 create");
    node.ok("ifconfig virt0 inet6 fd00:77::2/64");
    node.ok("ifconfig virt0 up");
    ns.ip("link set tap0 up");
    ns.ip("addr add fd00:77::1/64 dev tap0 nodad");
    node.ok("ifconfig -w 5");

    let out = ns.exec("ping -6 -c 2 -i 0.2 -W 2 fd00:77::2");
    assert_eq!(out.code, 0, "Linux pings us: {}{}", out.stdout, out.stderr);
    let out = node.ok("ping6 -c 2 -i 0.1 fd00:77::1");
    assert!(out.contains("2 packets received"), "{out}");

    let ours = mac_text(node.mac("virt0"));
    let neigh = ns.ip("-6 neigh show dev tap0");
    assert!(
        neigh.contains(&format!("fd00:77::2 lladdr {ours}")),
        "{neigh}"
    );
    let host_mac = ns.mac("tap0");
    let ndp = node.ok("ndp -n -a");
    assert!(ndp.contains(&host_mac), "{ndp}");

    // Linux pings our link-local address too, and answers NDP for its own.
    let ll = link_local(node.mac("virt0"));
    let out = ns.exec(&format!("ping -6 -c 1 -W 2 {ll}%tap0"));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // A neighbour that stops answering, used, goes DELAY, PROBE (unicast solicitations) and is
    // forgotten.
    ns.ip("link set tap0 down");
    let sock = node.sock.clone();
    let pinger = std::thread::spawn(move || {
        std::process::Command::new(common::CTL)
            .arg(&sock)
            .args(["ping6", "-c", "50", "-i", "1", "fd00:77::1"])
            .output()
    });
    let start = Instant::now();
    let mut states: Vec<String> = Vec::new();
    while start.elapsed() < Duration::from_secs(55) {
        let j = node.json("ndp -n -a");
        let st = j
            .as_array()
            .and_then(|a| a.iter().find(|e| e["addr"] == "fd00:77::1"))
            .map_or("gone".to_string(), |e| {
                e["state"].as_str().unwrap_or("?").to_string()
            });
        if states.last() != Some(&st) {
            states.push(st);
        }
        let seen = |s: &str| states.iter().any(|x| x == s);
        if seen("probe") && states.last().is_some_and(|s| s != "probe") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The entry was learnt STALE from Linux's solicitation and our ping moves it on at once.
    let pos = |s: &str| states.iter().position(|x| x == s);
    assert!(
        matches!((pos("delay"), pos("probe"), pos("gone")), (Some(a), Some(b), Some(c)) if a < b && b < c),
        "entry states over time: {states:?}"
    );
    node.ok("halt");
    let _ = pinger.join();
}

/// Runs `cmd args` and returns its stdout; panics with its stderr if it fails.
fn tool(cmd: &str, args: &[&str]) -> String {
    let o = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn tcpdump_and_tshark_decode_a_dual_stack_capture_without_complaint() {
    if !shmlab_tests::prereq::have_tool("tcpdump") || !shmlab_tests::prereq::have_tool("tshark") {
        return;
    }
    let dir = tempdir();
    let bus = dir.path().join("lan");
    let a = v6_node(dir.path(), "a", &bus, "fd00:6::1/64");
    let b = v6_node(dir.path(), "b", &bus, "fd00:6::2/64");
    a.ok("ifconfig shmif0 inet 10.6.0.1/24");
    b.ok("ifconfig shmif0 inet 10.6.0.2/24");
    // Capture everything from here on: DAD, NDP, echo, fragments, an error.
    let mut port = shmif::Bus::attach(&bus, &shmif::BusConfig::default())
        .unwrap()
        .port();
    port.set_promiscuous(true);
    wait_dad(&a);
    wait_dad(&b);
    a.ok("ping6 -c 2 -i 0.1 fd00:6::2");
    a.ok("ping6 -c 1 -s 3000 fd00:6::2");
    a.ok("ping -c 1 10.6.0.2");
    let _ = a.run(&["ping6", "-c", "1", "-X", "1", "fd00:7::9"]);
    let pcap = dir.path().join("lan.pcap");
    let mut sink = shmif::pcap::PcapSink::new(std::fs::File::create(&pcap).unwrap()).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut n = 0;
    while let Some(r) = port.try_recv(&mut buf) {
        sink.write(r.sec, r.usec, &buf[..r.len]).unwrap();
        n += 1;
    }
    sink.finish().unwrap();
    assert!(n >= 12, "{n} frames captured");

    let text = tool("tcpdump", &["-nn", "-r", pcap.to_str().unwrap()]);
    for want in [
        "neighbor solicitation",
        "neighbor advertisement",
        "ICMP6, echo request",
        "ICMP6, echo reply",
        "frag (",
        "ICMP echo request",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let expert = tool(
        "tshark",
        &["-n", "-r", pcap.to_str().unwrap(), "-q", "-z", "expert"],
    );
    for bad in ["Malformed", "Bad checksum", "bad checksum", "[incorrect"] {
        assert!(!expert.contains(bad), "tshark found {bad:?}:\n{expert}");
    }
    // And tshark reassembles our fragments into one echo request.
    let reassembled = tool(
        "tshark",
        &[
            "-n",
            "-r",
            pcap.to_str().unwrap(),
            "-Y",
            "icmpv6.type == 128 && ipv6.reassembled.length",
        ],
    );
    assert_eq!(reassembled.lines().count(), 1, "{reassembled}");
}
