//! `netstat -rn` (routing table) and `netstat -s` (protocol statistics, every drop reason).

use clap::Parser;
use serde::Serialize;

use super::{parse, CmdError, Ctx, Done, Output};
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
    /// Address family (only inet).
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
fn net_label(r: &RouteRow<std::net::Ipv4Addr>) -> String {
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

pub(super) fn route_table(stack: &Stack, json: bool, out: &Output) {
    let entries = route_rows(&stack.routes, &stack.ifaces);
    if json {
        return out.json(&entries);
    }
    out.out("Routing tables\n\nInternet:");
    out.out(format!(
        "{:<18} {:<18} {:<8} {:>4} {:>8} {:>6}  {}",
        "Destination", "Gateway", "Flags", "Refs", "Use", "Mtu", "Interface"
    ));
    for r in &entries {
        let gw = match r.gateway {
            Some(g) => g.to_string(),
            None => format!("link#{}", r.ifindex),
        };
        out.out(format!(
            "{:<18} {:<18} {:<8} {:>4} {:>8} {:>6}  {}",
            net_label(r),
            gw,
            r.flags,
            "-",
            "-",
            "-",
            r.ifname
        ));
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
    let sections: [(&str, Vec<(u64, &str)>); 6] = [
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
        ("ip6", vec![]),
    ];
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
    if let Some(f) = &args.family {
        if f != "inet" {
            return Err(CmdError::usage(format!(
                "-f {f}: unsupported family (only inet)"
            )));
        }
    }
    match (args.routes, args.stats, args.interfaces) {
        (true, false, false) => route_table(stack, args.json, ctx.out),
        (false, true, false) => protocol_stats(stack, args.json, ctx.out),
        (false, false, true) => interface_table(stack, args.json, ctx.out),
        (false, false, false) => {
            return Err(CmdError::usage("expected -r, -s or -i (e.g. netstat -rn)"))
        }
        _ => return Err(CmdError::usage("-r, -s and -i are exclusive")),
    }
    Ok(Done::Exit(0))
}
