//! Four nodes, three buses, two routers: h1 - r1 - r2 - h2.

mod common;

use common::chain;

#[test]
fn ping_and_traceroute_cross_both_routers() {
    let c = chain();
    let out = c.h1.ok("ping -c 2 -i 0.1 10.0.3.2");
    assert!(
        out.contains("64 bytes from 10.0.3.2: icmp_seq=0 ttl=62"),
        "{out}"
    );
    assert!(
        out.contains("2 packets transmitted, 2 packets received"),
        "{out}"
    );
    let out = c.h2.ok("ping -c 1 10.0.1.2");
    assert!(out.contains("1 packets received"), "{out}");

    let tr = c.h1.ok("traceroute -n 10.0.3.2");
    let lines: Vec<&str> = tr.lines().collect();
    assert!(
        lines[0].starts_with("traceroute to 10.0.3.2 (10.0.3.2), 30 hops max, 40 byte packets"),
        "{tr}"
    );
    assert!(lines[1].starts_with(" 1  10.0.1.1  "), "{tr}");
    assert!(lines[2].starts_with(" 2  10.0.2.2  "), "{tr}");
    assert!(lines[3].starts_with(" 3  10.0.3.2  "), "{tr}");
    assert_eq!(lines.len(), 4, "{tr}");
    assert!(!tr.contains('*'), "{tr}");

    let j = c.h1.json("traceroute -n -q 1 10.0.3.2");
    assert_eq!(j["reached"], true);
    assert_eq!(j["hops"][1]["probes"][0]["from"], "10.0.2.2");

    assert!(c.r1.counter("ip_forwarded") >= 4);
}

#[test]
fn ttl_expiry_and_a_removed_route_come_back_as_icmp_errors() {
    let c = chain();
    let o = c.h1.run(&["ping", "-c", "1", "-T", "1", "10.0.3.2"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stdout
            .contains("bytes from 10.0.1.1: Time to live exceeded"),
        "{o:?}"
    );
    assert_eq!(c.r1.drops("ip_ttl_expired"), 1);

    // TTL 2 expires at the second router.
    let o = c.h1.run(&["ping", "-c", "1", "-T", "2", "10.0.3.2"]);
    assert!(
        o.stdout
            .contains("bytes from 10.0.2.2: Time to live exceeded"),
        "{o:?}"
    );

    c.h1.ok("ping -c 1 10.0.3.2");
    c.r1.ok("route delete -net 10.0.3.0/24");
    let o = c.h1.run(&["ping", "-c", "1", "10.0.3.2"]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("bytes from 10.0.1.1: Destination Net Unreachable"),
        "{o:?}"
    );
    assert!(
        o.stdout
            .contains("1 packets transmitted, 0 packets received"),
        "{o:?}"
    );
    assert_eq!(c.r1.drops("ip_no_route"), 1);

    // Forwarding off: the router drops instead of forwarding.
    c.r1.ok("route add -net 10.0.3.0/24 10.0.2.2");
    c.h1.ok("ping -c 1 10.0.3.2");
    c.r2.ok("sysctl -w net.inet.ip.forwarding=0");
    let o = c.h1.run(&["ping", "-c", "1", "-W", "0.5", "10.0.3.2"]);
    assert_ne!(o.code, 0);
    assert!(c.r2.drops("ip_not_for_us") >= 1);
}

#[test]
fn large_pings_fragment_and_reassemble_across_the_chain_and_a_1280_mtu_hop() {
    let c = chain();
    let out = c.h1.ok("ping -c 2 -i 0.1 -s 4000 10.0.3.2");
    assert!(
        out.contains("4008 bytes from 10.0.3.2: icmp_seq=0"),
        "{out}"
    );
    assert!(out.contains("2 packets received"), "{out}");
    assert!(c.h2.counter("ip_reassembled") >= 2);
    assert!(c.h1.counter("ip_fragments_out") >= 6);

    // Narrow the middle link: routers refragment, DF gets "fragmentation needed".
    c.r1.ok("ifconfig shmif1 mtu 1280");
    c.r2.ok("ifconfig shmif0 mtu 1280");
    let out = c.h1.ok("ping -c 2 -i 0.1 -s 4000 10.0.3.2");
    assert!(out.contains("2 packets received"), "{out}");
    let out = c.h1.ok("ping -c 1 -s 1400 10.0.3.2");
    assert!(out.contains("1 packets received"), "{out}");
    assert!(c.r1.counter("ip_fragmented") >= 1);

    let o =
        c.h1.run(&["ping", "-c", "1", "-D", "-s", "1400", "10.0.3.2"]);
    assert_ne!(o.code, 0);
    assert!(
        o.stdout
            .contains("bytes from 10.0.1.1: Frag needed and DF set (MTU 1280)"),
        "{o:?}"
    );
    assert_eq!(c.r1.drops("ip_need_frag"), 1);
}
