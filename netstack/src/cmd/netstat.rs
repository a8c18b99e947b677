//! `netstat -rn` (routing table) and `netstat -s` (protocol statistics, every drop reason).

use clap::Parser;
use serde::Serialize;

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{parse, scoped, CmdError, Ctx, Done, Output};
use crate::stack::addr::{network, Family};
use crate::stack::route::{Route, RouteTable};
use crate::stack::Iface;
use crate::stack::Stack;
use crate::stats::DropReason;

#[derive(Parser)]
#[command(name = "netstat", about = "show network status")]
struct Args {
    /// Routing tables.
    #[arg(short = 'r')]
    routes: bool,
    /// Numeric (always; accepted for compatibility).
    #[arg(short = 'n')]
    numeric: bool,
    /// Per-protocol statistics, drop reasons included.
    #[arg(short = 's')]
    stats: bool,
    /// Interfaces with packet counters.
    #[arg(short = 'i')]
    interfaces: bool,
    /// Address family: inet or inet6.
    #[arg(short = 'f')]
    family: Option<String>,
    #[arg(long)]
    json: bool,
}

/// A route as `netstat -rn` and `route get` show it.
#[derive(Serialize)]
pub(super) struct RouteRow<A> {
    pub dest: A,
    pub prefix: u8,
    /// None for connected routes.
    pub gateway: Option<A>,
    pub ifindex: u32,
    pub ifname: String,
    pub flags: &'static str,
}

pub(super) fn route_row<A: Family>(r: &Route<A>, ifaces: &[Iface]) -> RouteRow<A> {
    let flags = match (r.gateway.is_some(), r.is_host()) {
        (true, true) => "UGHS",
        (true, false) => "UGS",
        (false, true) => "UHC",
        (false, false) => "UC",
    };
    RouteRow {
        dest: r.dest,
        prefix: r.prefix,
        gateway: r.gateway,
        ifindex: r.ifindex,
        ifname: ifaces
            .iter()
            .find(|i| i.index == r.ifindex)
            .map_or_else(|| "-".to_string(), |i| i.name.clone()),
        flags,
    }
}

/// Every route in `table` (static ones whose gateway is unreachable too, with no interface),
/// sorted by destination.
fn route_rows<A: Family>(table: &RouteTable<A>, ifaces: &[Iface]) -> Vec<RouteRow<A>> {
    let mut rows: Vec<RouteRow<A>> = table
        .routes()
        .iter()
        .map(|r| route_row(r, ifaces))
        .collect();
    for s in table.statics() {
        let live = table
            .routes()
            .iter()
            .any(|r| r.dest == s.dest && r.prefix == s.prefix && r.gateway == Some(s.gateway));
        if !live {
            let mut row = route_row(
                &Route {
                    dest: s.dest,
                    prefix: s.prefix,
                    gateway: Some(s.gateway),
                    ifindex: 0,
                },
                ifaces,
            );
            row.ifname = "-".into();
            rows.push(row);
        }
    }
    rows.sort_by_key(|r| (r.dest, r.prefix));
    rows
}

/// "10.0.1/24" as netstat abbreviates networks; "default"; hosts in full.
fn net_label(r: &RouteRow<Ipv4Addr>) -> String {
    if r.prefix == 0 {
        return "default".into();
    }
    if r.prefix == 32 {
        return r.dest.to_string();
    }
    let o = r.dest.octets();
    let keep = (r.prefix as usize).div_ceil(8).max(1);
    let parts: Vec<String> = o[..keep].iter().map(|b| b.to_string()).collect();
    format!("{}/{}", parts.join("."), r.prefix)
}

/// "fd00:1::/64", "fe80::%shmif0/64", "default"; hosts in full.
fn net_label6(stack: &Stack, r: &RouteRow<Ipv6Addr>) -> String {
    let ix = Some(r.ifindex).filter(|ix| *ix != 0);
    match r.prefix {
        0 => "default".into(),
        128 => scoped(stack, r.dest, ix),
        p => format!("{}/{p}", scoped(stack, r.dest, ix)),
    }
}

/// Which families `netstat -rn` / `route show` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Families {
    Inet,
    Inet6,
    Both,
}

/// A `--json` route row: the family and the row.
#[derive(Serialize)]
struct FamRow<'a, A> {
    family: &'static str,
    #[serde(flatten)]
    row: &'a RouteRow<A>,
}

/// One section of `netstat -rn`: NetBSD's columns, Destination and Gateway as wide as the
/// family needs (18 for inet; 39 and 30 for inet6 with -n).
fn section(out: &Output, title: &str, wd: usize, wg: usize, rows: &[(String, String, &str, &str)]) {
    out.out(format!("\n{title}:"));
    out.out(format!(
        "{:<wd$} {:<wg$} {:<6} {:>6} {:>8} {:>6}  {}",
        "Destination", "Gateway", "Flags", "Refs", "Use", "Mtu", "Interface"
    ));
    for (dest, gw, flags, ifname) in rows {
        out.out(format!(
            "{dest:<wd$} {gw:<wg$} {flags:<6} {:>6} {:>8} {:>6}  {ifname}",
            "-", "-", "-"
        ));
    }
}

pub(super) fn route_table(stack: &Stack, fam: Families, json: bool, out: &Output) {
    let v4 = route_rows(&stack.routes, &stack.ifaces);
    let v6 = route_rows(&stack.routes6, &stack.ifaces);
    let (show4, show6) = match fam {
        Families::Inet => (true, false),
        Families::Inet6 => (false, true),
        // As NetBSD: a family with no routes has no section (inet is always shown).
        Families::Both => (true, !v6.is_empty()),
    };
    if json {
        let mut rows: Vec<serde_json::Value> = Vec::new();
        if show4 {
            rows.extend(v4.iter().map(|row| {
                serde_json::json!(FamRow {
                    family: "inet",
                    row
                })
            }));
        }
        if show6 {
            rows.extend(v6.iter().map(|row| {
                serde_json::json!(FamRow {
                    family: "inet6",
                    row
                })
            }));
        }
        return out.json(&rows);
    }
    out.out("Routing tables");
    let link = |r: u32| format!("link#{r}");
    if show4 {
        let rows: Vec<_> = v4
            .iter()
            .map(|r| {
                let gw = r.gateway.map_or_else(|| link(r.ifindex), |g| g.to_string());
                (net_label(r), gw, r.flags, r.ifname.as_str())
            })
            .collect();
        section(out, "Internet", 18, 18, &rows);
    }
    if show6 {
        let rows: Vec<_> = v6
            .iter()
            .map(|r| {
                let ix = Some(r.ifindex).filter(|ix| *ix != 0);
                let gw = r
                    .gateway
                    .map_or_else(|| link(r.ifindex), |g| scoped(stack, g, ix));
                (net_label6(stack, r), gw, r.flags, r.ifname.as_str())
            })
            .collect();
        section(out, "Internet6", 39, 30, &rows);
    }
}

#[derive(Serialize)]
struct IfRow {
    name: String,
    mtu: usize,
    network: String,
    address: String,
    counters: crate::stack::IfCounters,
}

fn interface_table(stack: &Stack, json: bool, out: &Output) {
    let rows: Vec<IfRow> = stack
        .ifaces
        .iter()
        .map(|i| IfRow {
            name: i.name.clone(),
            mtu: i.mtu,
            network: i.addrs_v4().next().map_or_else(
                || format!("<Link#{}>", i.index),
                |(a, prefix)| format!("{}/{prefix}", network(a, prefix)),
            ),
            address: i.addrs_v4().next().map_or_else(
                || i.link.as_ref().map_or("-".into(), |l| l.mac.to_string()),
                |(a, _)| a.to_string(),
            ),
            counters: i.counters,
        })
        .collect();
    if json {
        return out.json(&rows);
    }
    out.out(format!(
        "{:<8} {:>5} {:<18} {:<17} {:>9} {:>5} {:>9} {:>5} {:>5}",
        "Name", "Mtu", "Network", "Address", "Ipkts", "Ierrs", "Opkts", "Oerrs", "Colls"
    ));
    for r in &rows {
        let c = &r.counters;
        out.out(format!(
            "{:<8} {:>5} {:<18} {:<17} {:>9} {:>5} {:>9} {:>5} {:>5}",
            r.name, r.mtu, r.network, r.address, c.ipackets, c.ierrors, c.opackets, c.oerrors, 0
        ));
    }
}

#[derive(Serialize)]
struct StatsJson<'a> {
    counters: &'a crate::stats::Counters,
    drops: std::collections::BTreeMap<&'static str, u64>,
    reassembly_in_progress: usize,
}

/// `netstat -s` text of the IPv6 counters the stack keeps as `ip6_*` fields of
/// [`crate::stats::Counters`] (NetBSD's wording).
const IP6_TEXT: &[(&str, &str)] = &[
    ("ip6_in", "total packets received"),
    ("ip6_fragments_in", "fragments received"),
    ("ip6_reassembled", "packets reassembled ok"),
    ("ip6_delivered", "packets for this host"),
    ("ip6_forwarded", "packets forwarded"),
    ("ip6_out", "packets sent from this host"),
    ("ip6_fragmented", "output datagrams fragmented"),
    ("ip6_fragments_out", "fragments created"),
];

/// The same for the `icmp6_*` counters.
const ICMP6_TEXT: &[(&str, &str)] = &[
    ("icmp6_in", "messages received"),
    ("icmp6_echo_in", "echo requests received"),
    ("icmp6_out", "messages sent"),
    ("icmp6_echo_reply_out", "echo replies sent"),
    ("icmp6_errors_out", "calls to icmp6_error"),
    (
        "icmp6_error_about_error",
        "errors not generated because old message was icmp6 or so",
    ),
    (
        "icmp6_rate_limited",
        "errors not generated because of rate limitation",
    ),
    ("icmp6_ns_in", "neighbor solicitations received"),
    ("icmp6_ns_out", "neighbor solicitations sent"),
    ("icmp6_na_in", "neighbor advertisements received"),
    ("icmp6_na_out", "neighbor advertisements sent"),
    ("icmp6_dad_duplicate", "duplicate addresses detected"),
];

/// The counters whose field names start with `prefix`, found by name so that fields the stack
/// adds show up without a change here: those in `text` first in its order and wording, then
/// any others under their field name.
fn counters_with_prefix(
    c: &crate::stats::Counters,
    prefix: &str,
    text: &[(&str, &str)],
) -> Vec<(u64, String)> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(c) else {
        return Vec::new();
    };
    let mut found: Vec<(&str, u64)> = fields
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .filter_map(|(k, v)| Some((k.as_str(), v.as_u64()?)))
        .collect();
    found.sort_by_key(|(k, _)| text.iter().position(|(t, _)| t == k).unwrap_or(usize::MAX));
    found
        .into_iter()
        .map(|(k, n)| {
            let t = text
                .iter()
                .find(|(t, _)| *t == k)
                .map_or_else(|| k.to_string(), |(_, t)| t.to_string());
            (n, t)
        })
        .collect()
}

fn protocol_stats(stack: &mut Stack, json: bool, out: &Output) {
    stack.collect_link_drops();
    let s = &stack.stats;
    if json {
        return out.json(&StatsJson {
            counters: &s.counters,
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.key(), s.drops_of(*r)))
                .collect(),
            reassembly_in_progress: stack.reasm.in_progress(),
        });
    }
    let c = &s.counters;
    let mut sections: Vec<(&str, Vec<(u64, String)>)> = [
        (
            "ether",
            vec![
                (c.ether_in, "frames received"),
                (c.ether_out, "frames sent"),
            ],
        ),
        (
            "arp",
            vec![
                (c.arp_requests_in, "requests received"),
                (c.arp_replies_in, "replies received"),
                (c.arp_requests_out, "requests sent"),
                (c.arp_replies_out, "replies sent"),
                (c.arp_gratuitous_out, "gratuitous announcements sent"),
                (c.arp_duplicate_address, "duplicate addresses detected"),
            ],
        ),
        (
            "ip",
            vec![
                (c.ip_in, "total packets received"),
                (c.ip_fragments_in, "fragments received"),
                (c.ip_reassembled, "packets reassembled ok"),
                (c.ip_delivered, "packets for this host"),
                (c.ip_forwarded, "packets forwarded"),
                (c.ip_out, "packets sent from this host"),
                (c.ip_fragmented, "output datagrams fragmented"),
                (c.ip_fragments_out, "fragments created"),
            ],
        ),
        (
            "icmp",
            vec![
                (c.icmp_in, "messages received"),
                (c.icmp_echo_in, "echo requests received"),
                (c.icmp_out, "messages sent"),
                (c.icmp_echo_reply_out, "echo replies sent"),
                (c.icmp_errors_out, "calls to icmp_error"),
                (
                    c.icmp_error_about_error,
                    "errors not generated because old message was icmp",
                ),
                (
                    c.icmp_error_suppressed,
                    "errors not generated for fragments, broadcasts or martians",
                ),
                (
                    c.icmp_rate_limited,
                    "errors not generated due to rate limit",
                ),
            ],
        ),
        ("udp", vec![(c.udp_in, "datagrams received")]),
    ]
    .into_iter()
    .map(|(p, lines)| {
        (
            p,
            lines.into_iter().map(|(n, t)| (n, t.to_string())).collect(),
        )
    })
    .collect();
    sections.push(("ip6", counters_with_prefix(c, "ip6_", IP6_TEXT)));
    sections.push(("icmp6", counters_with_prefix(c, "icmp6_", ICMP6_TEXT)));
    // A section for every protocol drop reasons name, even one not listed above.
    for r in DropReason::ALL {
        if !sections.iter().any(|(p, _)| *p == r.proto()) {
            sections.push((r.proto(), Vec::new()));
        }
    }
    for (proto, lines) in sections {
        out.out(format!("{proto}:"));
        for (n, text) in lines {
            out.out(format!("\t{n} {text}"));
        }
        for r in DropReason::ALL.iter().filter(|r| r.proto() == proto) {
            out.out(format!("\t{} {} ({})", s.drops_of(*r), r.text(), r.key()));
        }
    }
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(args) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    let _ = args.numeric;
    let fam = match args.family.as_deref() {
        None => Families::Both,
        Some("inet") => Families::Inet,
        Some("inet6") => Families::Inet6,
        Some(f) => {
            return Err(CmdError::usage(format!(
                "-f {f}: unsupported family (inet or inet6)"
            )))
        }
    };
    match (args.routes, args.stats, args.interfaces) {
        (true, false, false) => route_table(stack, fam, args.json, ctx.out),
        (false, true, false) => protocol_stats(stack, args.json, ctx.out),
        (false, false, true) => interface_table(stack, args.json, ctx.out),
        (false, false, false) => {
            return Err(CmdError::usage("expected -r, -s or -i (e.g. netstat -rn)"))
        }
        _ => return Err(CmdError::usage("-r, -s and -i are exclusive")),
    }
    Ok(Done::Exit(0))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ok, run, stack};

    fn lab() -> crate::stack::Stack {
        let mut s = stack(1);
        ok(&mut s, "ifconfig shmif0 inet 10.0.1.2/24");
        ok(&mut s, "ifconfig shmif0 inet6 fd00:1::2/64");
        ok(&mut s, "ifconfig shmif0 inet6 fe80::2%shmif0");
        ok(&mut s, "route add default 10.0.1.1");
        ok(&mut s, "route add -inet6 default fe80::1%shmif0");
        ok(&mut s, "route add -inet6 fd00:2::/64 fd00:1::1");
        s
    }

    #[test]
    fn route_tables_list_internet_then_internet6_in_netbsd_columns() {
        let mut s = lab();
        let out = ok(&mut s, "netstat -rn");
        let want = "\
Routing tables

Internet:
Destination        Gateway            Flags    Refs      Use    Mtu  Interface
default            10.0.1.1           UGS         -        -      -  shmif0
10.0.1/24          link#1             UC          -        -      -  shmif0

Internet6:
Destination                             Gateway                        Flags    Refs      Use    Mtu  Interface
default                                 fe80::1%shmif0                 UGS         -        -      -  shmif0
fd00:1::/64                             link#1                         UC          -        -      -  shmif0
fd00:2::/64                             fd00:1::1                      UGS         -        -      -  shmif0
fe80::%shmif0/64                        link#1                         UC          -        -      -  shmif0
";
        assert_eq!(out, want);
        let v6 = ok(&mut s, "netstat -rn -f inet6");
        assert!(
            !v6.contains("Internet:") && v6.contains("Internet6:"),
            "{v6}"
        );
        let v4 = ok(&mut s, "netstat -rn -f inet");
        assert!(
            v4.contains("Internet:") && !v4.contains("Internet6:"),
            "{v4}"
        );
        assert_eq!(ok(&mut s, "route show -inet6"), v6);
        assert_eq!(ok(&mut s, "route show"), out);
        let r = run(&mut s, "netstat -rn -f link");
        assert_eq!(r.code, Some(crate::cmd::EX_USAGE));
        let json: serde_json::Value =
            serde_json::from_str(ok(&mut s, "netstat -rn --json").trim()).unwrap();
        let rows = json.as_array().unwrap();
        assert_eq!(rows.len(), 6);
        assert_eq!(rows[0]["family"], "inet");
        assert_eq!(rows[2]["family"], "inet6");
        assert_eq!(rows[2]["gateway"], "fe80::1");
        assert_eq!(rows[2]["ifname"], "shmif0");
    }

    #[test]
    fn protocol_statistics_have_ip6_and_icmp6_sections_with_their_drop_reasons() {
        let mut s = stack(0);
        s.stats.drop(crate::stats::DropReason::Ip6HopLimitExceeded);
        let out = ok(&mut s, "netstat -s");
        let sections: Vec<&str> = out.lines().filter(|l| !l.starts_with('\t')).collect();
        assert_eq!(
            sections[..7],
            ["ether:", "arp:", "ip:", "icmp:", "udp:", "ip6:", "icmp6:"]
        );
        let ip6 = out.split("ip6:\n").nth(1).unwrap();
        assert!(
            ip6.contains(&format!(
                "\t1 {} (ip6_hop_limit_exceeded)",
                crate::stats::DropReason::Ip6HopLimitExceeded.text()
            )),
            "{out}"
        );
        // Every drop reason is listed once, in its protocol's section.
        for r in crate::stats::DropReason::ALL {
            assert_eq!(
                out.matches(&format!("({})", r.key())).count(),
                1,
                "{}",
                r.key()
            );
        }
    }

    #[test]
    fn counters_are_found_by_field_name() {
        let c = crate::stats::Counters {
            ip_in: 3,
            ..Default::default()
        };
        let text = [("ip_out", "sent"), ("ip_in", "received")];
        let got = super::counters_with_prefix(&c, "ip_", &text);
        assert_eq!(got[0], (0, "sent".to_string()));
        assert_eq!(got[1], (3, "received".to_string()));
        // Fields without a text are listed under their name.
        assert!(got.iter().any(|(_, t)| t == "ip_forwarded"));
        assert!(super::counters_with_prefix(&c, "nosuch_", &text).is_empty());
    }

    #[test]
    fn an_ipv4_only_node_shows_no_internet6_section() {
        let mut s = stack(1);
        ok(&mut s, "ifconfig shmif0 inet 10.0.1.2/24");
        assert!(!ok(&mut s, "netstat -rn").contains("Internet6"));
        // Asked for explicitly, the empty section is shown.
        assert!(ok(&mut s, "netstat -rn -f inet6").contains("Internet6:"));
    }
}
