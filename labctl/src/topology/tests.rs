//! Each validation error class, with the exact `file:line:column: path` it must report.

use super::*;

fn errors(text: &str) -> Vec<String> {
    let src = Source::new("topo.toml", text);
    match parse_source(&src, Path::new("topo.toml"), Path::new(".")) {
        Ok(_) => Vec::new(),
        Err(TopologyError::Invalid(d)) => d.iter().map(|d| d.to_string()).collect(),
        Err(e) => vec![e.to_string()],
    }
}

fn ok(text: &str) -> Topology {
    let src = Source::new("topo.toml", text);
    match parse_source(&src, Path::new("topo.toml"), Path::new(".")) {
        Ok(t) => t,
        Err(e) => panic!("expected a valid topology, got:\n{e}"),
    }
}

fn assert_has(errs: &[String], want: &str) {
    assert!(
        errs.iter().any(|e| e.contains(want)),
        "no error containing {want:?} in:\n{}",
        errs.join("\n")
    );
}

const TWO_HOSTS: &str = r#"name = "two"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
"#;

#[test]
fn valid_two_hosts_parses_in_file_order() {
    let t = ok(TWO_HOSTS);
    assert_eq!(t.name.value, "two");
    let names: Vec<_> = t.nodes.iter().map(|n| n.name.value.as_str()).collect();
    assert_eq!(names, ["h1", "h2"]);
    assert_eq!(t.buses.len(), 1);
    assert!(!t.buses[0].declared);
    assert_eq!(t.nodes[0].interfaces[0].name.value, "shmif0");
}

#[test]
fn unknown_bus_names_the_known_ones() {
    let errs = errors(
        r#"name = "lab"
[buses.lan1]
[buses.wan]
[nodes.r1]
forwarding = true
interfaces = [
    { bus = "lan1", addrs = ["10.0.1.1/24"] },
    { bus = "wan2", addrs = ["20.0.0.1/24"] },
]
"#,
    );
    assert_eq!(
        errs,
        [
            r#"topo.toml:8:13: nodes.r1.interfaces[1].bus: unknown bus "wan2" (known: lan1, wan); a bus with a single member must be declared with [buses.wan2]"#
        ]
    );
}

#[test]
fn unknown_keys_are_all_reported_at_the_key() {
    let errs = errors(
        r#"name = "lab"
colour = "blue"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"], speed = 10 }]
gateway = "x"
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
"#,
    );
    assert_has(&errs, "topo.toml:2:1: colour: unknown key \"colour\"");
    assert_has(
        &errs,
        "topo.toml:4:55: nodes.h1.interfaces[0].speed: unknown key \"speed\" (known: bus, tap, addrs, name, mtu)",
    );
    assert_has(&errs, "topo.toml:5:1: nodes.h1.gateway: unknown key");
    assert_eq!(errs.len(), 3, "{errs:#?}");
}

#[test]
fn duplicate_node_name_is_a_located_error() {
    let errs = errors(
        r#"name = "lab"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
"#,
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("topo.toml:4:"), "{errs:#?}");
    assert!(errs[0].contains("duplicate"), "{errs:#?}");
}

#[test]
fn duplicate_interface_name_points_at_the_second() {
    let errs = errors(
        r#"name = "lab"
[nodes.h1]
interfaces = [
  { bus = "lan", name = "eth0", addrs = ["10.0.0.1/24"] },
  { bus = "lan", name = "eth0", addrs = ["10.0.0.3/24"] },
]
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
"#,
    );
    assert_eq!(
        errs,
        [
            r#"topo.toml:5:25: nodes.h1.interfaces[1].name: duplicate interface name "eth0" on node h1 (first at nodes.h1.interfaces[0].name)"#
        ]
    );
}

#[test]
fn malformed_addresses_each_say_why() {
    let errs = errors(
        r#"name = "lab"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1", "10.0.0.300/24", "10.0.0.2/33", "10.0.0.0/24", "10.0.0.255/24"] }]
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.9/24"] }]
"#,
    );
    assert_has(&errs, "topo.toml:3:39: nodes.h1.interfaces[0].addrs[0]: malformed address \"10.0.0.1\": needs a prefix length");
    assert_has(
        &errs,
        "topo.toml:3:51: nodes.h1.interfaces[0].addrs[1]: malformed address \"10.0.0.300/24\"",
    );
    assert_has(&errs, "topo.toml:3:68: nodes.h1.interfaces[0].addrs[2]: malformed address \"10.0.0.2/33\": prefix length must be 0..=32");
    assert_has(&errs, "topo.toml:3:83: nodes.h1.interfaces[0].addrs[3]: malformed address \"10.0.0.0/24\": this is the network address");
    assert_has(&errs, "topo.toml:3:98: nodes.h1.interfaces[0].addrs[4]: malformed address \"10.0.0.255/24\": this is the broadcast address");
    assert_eq!(errs.len(), 5, "{errs:#?}");
}

#[test]
fn duplicate_address_names_the_first_owner() {
    let errs = errors(
        r#"name = "lab"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
"#,
    );
    assert_eq!(
        errs,
        ["topo.toml:5:39: nodes.h2.interfaces[0].addrs[0]: duplicate address 10.0.0.1 (already on node h1 at nodes.h1.interfaces[0].addrs[0], line 3)"]
    );
}

#[test]
fn gateway_off_every_connected_subnet() {
    let errs = errors(
        r#"name = "lab"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
routes = [{ to = "default", via = "10.0.9.1" }]
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
"#,
    );
    assert_eq!(
        errs,
        ["topo.toml:4:35: nodes.h1.routes[0].via: gateway 10.0.9.1 is not on any connected subnet of h1 (connected: 10.0.0.0/24)"]
    );
}

#[test]
fn routes_to_nowhere_are_refused() {
    let errs = errors(
        r#"name = "lab"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
routes = [
  { to = "default", via = "10.0.0.99" },
  { to = "10.0.5.0/24", via = "10.0.0.2" },
]
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
"#,
    );
    assert_eq!(
        errs,
        [
            "topo.toml:5:27: nodes.h1.routes[0].via: route to nowhere: no node on bus lan has address 10.0.0.99",
            "topo.toml:6:31: nodes.h1.routes[1].via: route to nowhere: gateway 10.0.0.2 is node h2, which does not forward (set forwarding = true on it)",
        ]
    );
}

#[test]
fn malformed_route_destination() {
    let errs = errors(
        r#"name = "lab"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
routes = [{ to = "10.0.5/24", via = "10.0.0.2" }]
[nodes.h2]
forwarding = true
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
"#,
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with(
            "topo.toml:4:18: nodes.h1.routes[0].to: malformed destination \"10.0.5/24\""
        ),
        "{errs:#?}"
    );
}

#[test]
fn unsafe_lab_name_is_refused() {
    let errs = errors(&TWO_HOSTS.replace("name = \"two\"", "name = \"../etc\""));
    assert_eq!(
        errs,
        ["topo.toml:1:8: name: lab name \"../etc\" is not a safe file name: must not start with '.' or '-'"]
    );
    let errs = errors(&TWO_HOSTS.replace("name = \"two\"", "name = \"my lab\""));
    assert_has(
        &errs,
        "topo.toml:1:8: name: lab name \"my lab\" is not a safe file name: contains ' '",
    );
}

#[test]
fn all_errors_are_collected_in_file_order() {
    let errs = errors(
        r#"name = "a/b"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1"] }]
routes = [{ to = "default", via = "192.168.1.1" }]
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"], bogus = 1 }]
"#,
    );
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(errs[0].starts_with("topo.toml:1:8: name:"));
    assert!(errs[1].starts_with("topo.toml:3:39:"));
    assert!(errs[2].starts_with("topo.toml:4:35:"));
    assert!(errs[3].starts_with("topo.toml:6:55:"));
}

#[test]
fn syntax_error_is_located() {
    let errs = errors("name = \"x\"\n[nodes.h1\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("topo.toml:2:"), "{errs:#?}");
}

#[test]
fn wrong_types_are_located() {
    let errs = errors(
        r#"name = "lab"
[nodes.h1]
forwarding = "yes"
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"], mtu = 9000 }]
[nodes.h2]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
"#,
    );
    assert_eq!(
        errs,
        [
            "topo.toml:3:14: nodes.h1.forwarding: expected true or false, found string",
            "topo.toml:4:61: nodes.h1.interfaces[0].mtu: must be between 68 and 1500",
        ]
    );
}

#[test]
fn checks_name_unknown_nodes_and_buses() {
    let errs = errors(&format!(
        r#"{TWO_HOSTS}
[[checks]]
ping = {{ from = "h9", to = "10.0.0.2" }}
expect_on_bus = {{ bus = "lan", proto = "icmp" }}
[[checks]]
ping = {{ from = "h1", to = "10.0.0.2" }}
expect_on_bus = {{ bus = "wan", proto = "gre" }}
"#
    ));
    assert_eq!(
        errs,
        [
            "topo.toml:8:17: checks[0].ping.from: unknown node \"h9\" (known: h1, h2)",
            "topo.toml:12:40: checks[1].expect_on_bus.proto: unknown protocol \"gre\" (known: arp, ipv4, ipv6, icmp, icmp6, ndp, tcp, udp, esp)",
        ]
    );
}

#[test]
fn ipv6_ipsec_and_rump_parse_but_are_flagged_unsupported_at_up() {
    let text = r#"name = "lab"
[nodes.h1]
kind = "rump"
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24", "fd00::1/64"] }]
[nodes.h2]
ipsec = { setkey = "flush;" }
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24", "fd00::2/64"] }]
"#;
    let t = ok(text);
    assert_eq!(t.nodes[0].interfaces[0].addrs.len(), 2);
    let src = Source::new("topo.toml", text);
    let un: Vec<String> = t.unsupported(&src).iter().map(|d| d.to_string()).collect();
    assert_eq!(
        un,
        [
            "topo.toml:3:8: nodes.h1.kind: kind \"rump\" is not implemented yet; only \"netstack\" and \"linux\" nodes can be started",
            "topo.toml:6:9: nodes.h2.ipsec: IPsec is not implemented yet: the node has no setkey; remove `ipsec` to start this lab",
        ]
    );
}

#[test]
fn sysctl_accepts_dotted_and_quoted_keys() {
    let t = ok(&TWO_HOSTS.replace(
        "[nodes.h2]",
        "sysctl = { \"net.inet.ip.ttl\" = 32, net.inet.icmp.errppslimit = 0 }\n[nodes.h2]",
    ));
    assert_eq!(
        t.nodes[0].sysctl,
        [
            ("net.inet.ip.ttl".to_string(), "32".to_string()),
            ("net.inet.icmp.errppslimit".to_string(), "0".to_string())
        ]
    );
}

#[test]
fn route_argv_uses_netbsd_syntax() {
    let t = ok(r#"name = "lab"
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
routes = [{ to = "default", via = "10.0.0.2" }, { to = "10.0.2.5/24", via = "10.0.0.2" }, { to = "10.9.9.9", via = "10.0.0.2" }]
[nodes.h2]
forwarding = true
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
"#);
    let argv: Vec<String> = t.nodes[0]
        .routes
        .iter()
        .map(|r| r.argv().join(" "))
        .collect();
    assert_eq!(
        argv,
        [
            "route add default 10.0.0.2",
            "route add -net 10.0.2.0/24 10.0.0.2",
            "route add -host 10.9.9.9 10.0.0.2",
        ]
    );
}

const LINUX_AND_TAPS: &str = r#"name = "mixed"
[nodes.l1]
kind = "linux"
interfaces = [
  { bus = "lan", addrs = ["10.0.0.1/24", "fd00::1/64"], mtu = 1400 },
  { bus = "wan", addrs = ["10.0.1.1/24"], name = "uplink" },
]
routes = [{ to = "default", via = "10.0.1.2" }]
sysctl = { "net.ipv4.icmp_ratelimit" = 0 }
exec = ["ip neigh"]
[nodes.n1]
interfaces = [
  { tap = "shmtap0", addrs = ["10.9.0.2/24"] },
  { bus = "lan", addrs = ["10.0.0.2/24"] },
  { tap = "shmtap1", mtu = 1280 },
  { bus = "wan", addrs = ["10.0.1.2/24"] },
]
forwarding = true
routes = [{ to = "10.8.0.0/16", via = "10.9.0.1" }]
"#;

#[test]
fn interface_names_default_per_kind_and_link() {
    let t = ok(LINUX_AND_TAPS);
    let names = |n: usize| -> Vec<String> {
        t.nodes[n]
            .interfaces
            .iter()
            .map(|i| i.name.value.clone())
            .collect()
    };
    assert_eq!(names(0), ["eth0", "uplink"]);
    // shmifN counts bus interfaces, virtN tap interfaces.
    assert_eq!(names(1), ["virt0", "shmif0", "virt1", "shmif1"]);
    assert_eq!(t.nodes[1].interfaces[0].tap().unwrap().value, "shmtap0");
    assert!(t.nodes[1].interfaces[0].bus().is_none());
    // Taps are not buses: only lan and wan exist.
    let buses: Vec<&str> = t.buses.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(buses, ["lan", "wan"]);
    assert!(t.needs_host_network());
    assert!(!ok(TWO_HOSTS).needs_host_network());
}

#[test]
fn route_via_a_host_tap_subnet_needs_no_node_behind_it() {
    // n1's route via 10.9.0.1 (the host side of shmtap0) is fine; l1's default via n1 too.
    ok(LINUX_AND_TAPS);
}

#[test]
fn bus_and_tap_and_their_names_are_checked() {
    let errs = errors(
        r#"name = "lab"
[buses.lan]
[nodes.l1]
kind = "linux"
interfaces = [
  { bus = "lan", name = "a-very-long-ifname" },
  { bus = "lan", name = "eth:0" },
  { tap = "tap7" },
]
[nodes.n1]
interfaces = [
  { bus = "lan", tap = "tap1" },
  { tap = "tap2", name = "shmif0" },
  { tap = "tap 3" },
  {},
]
[nodes.n2]
interfaces = [{ tap = "tap2" }]
"#,
    );
    assert_has(&errs, "topo.toml:6:25: nodes.l1.interfaces[0].name: interface name \"a-very-long-ifname\" is not a Linux interface name: is 18 bytes long; Linux interface names have at most 15");
    assert_has(&errs, "nodes.l1.interfaces[1].name: interface name \"eth:0\" is not a Linux interface name: contains ':'");
    assert_has(&errs, "topo.toml:8:11: nodes.l1.interfaces[2].tap: host taps (`tap = ...`) are for netstack nodes; the interfaces of a linux node sit on buses");
    assert_has(&errs, "topo.toml:12:18: nodes.n1.interfaces[0]: give exactly one of `bus` (a bus of the lab) or `tap` (a host tap device), not both");
    assert_has(&errs, "nodes.n1.interfaces[1].name: a tap interface of a netstack node is named virtN (virt0, virt1, ...), not \"shmif0\"");
    assert_has(&errs, "nodes.n1.interfaces[2].tap: tap name \"tap 3\" is not a Linux interface name: contains ' '");
    assert_has(&errs, "nodes.n1.interfaces[3]: missing `bus`");
    assert_has(&errs, "nodes.n2.interfaces[0].tap: tap \"tap2\" is already used by node n1 (at nodes.n1.interfaces[1].tap)");
}

#[test]
fn a_linux_gateway_must_forward_too() {
    let errs = errors(
        r#"name = "lab"
[nodes.l1]
kind = "linux"
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
routes = [{ to = "default", via = "10.0.0.1" }]
"#,
    );
    assert_has(&errs, "nodes.h1.routes[0].via: route to nowhere: gateway 10.0.0.1 is node l1, which does not forward (set forwarding = true on it)");
    ok(r#"name = "lab"
[nodes.l1]
kind = "linux"
forwarding = true
interfaces = [{ bus = "lan", addrs = ["10.0.0.1/24"] }]
[nodes.h1]
interfaces = [{ bus = "lan", addrs = ["10.0.0.2/24"] }]
routes = [{ to = "default", via = "10.0.0.1" }]
"#);
}

#[test]
fn linux_nodes_are_configured_with_ip_and_sysctl() {
    let t = ok(LINUX_AND_TAPS);
    let cmds: Vec<String> = crate::linux::config_commands(&t.nodes[0])
        .iter()
        .map(|c| c.join(" "))
        .collect();
    assert_eq!(
        cmds,
        [
            "ip link set dev lo up",
            "ip link set dev eth0 mtu 1400",
            "ip addr add 10.0.0.1/24 dev eth0",
            "ip -6 addr add fd00::1/64 dev eth0 nodad",
            "ip link set dev eth0 up",
            "ip addr add 10.0.1.1/24 dev uplink",
            "ip link set dev uplink up",
            "sysctl -w net.ipv4.icmp_ratelimit=0",
            "ip -4 route add default via 10.0.1.2",
            "ip neigh",
        ]
    );
}

#[test]
fn netstack_tap_interfaces_are_created_with_their_linkstr() {
    let t = ok(LINUX_AND_TAPS);
    let cmds: Vec<String> = crate::driver::netstack::config_commands(&t.nodes[1], |b| {
        PathBuf::from(format!("/lab/{b}.bus"))
    })
    .iter()
    .map(|c| c.join(" "))
    .collect();
    assert_eq!(
        &cmds[..6],
        [
            "ifconfig virt0 create linkstr shmtap0",
            "ifconfig virt0 inet 10.9.0.2/24",
            "ifconfig virt0 up",
            "ifconfig shmif0 create",
            "ifconfig shmif0 linkstr /lab/lan.bus",
            "ifconfig shmif0 inet 10.0.0.2/24",
        ]
    );
    assert!(
        cmds.contains(&"ifconfig virt1 mtu 1280".to_string()),
        "{cmds:?}"
    );
}

#[test]
fn netbsd_bus_parses_and_conflicts_with_a_size_other_than_1mib() {
    // `size = 1048576` is allowed, merely redundant.
    let t = ok(&format!(
        "{TWO_HOSTS}[buses.lan]\nnetbsd = true\nsize = 1048576\n[buses.wan]\nnetbsd = true\n"
    ));
    let netbsd = |n: &str| t.bus(n).map(|b| (b.netbsd, b.size));
    assert_eq!(netbsd("lan"), Some((true, Some(1048576))));
    assert_eq!(netbsd("wan"), Some((true, None)));

    let errs = errors(&format!(
        "{TWO_HOSTS}[buses.lan]\nnetbsd = true\nsize = 8388608\n[buses.wan]\nnetbsd = \"yes\"\n"
    ));
    assert_eq!(
        errs,
        [
            "topo.toml:8:8: buses.lan.size: a bus with `netbsd = true` is 1048576 bytes (1 MiB, NetBSD's fixed size), not 8388608: remove `size` or set it to 1048576",
            "topo.toml:10:10: buses.wan.netbsd: expected true or false, found string",
        ]
    );
}
