//! `ndp`: show, add and delete IPv6 neighbour cache entries (NetBSD usr.sbin/ndp syntax and
//! column layout).

use std::net::Ipv6Addr;
use std::time::Instant;

use clap::Parser;
use serde::Serialize;

use super::{is_link_local, parse, parse_addr6, scope_index, scoped, CmdError, Ctx, Done};
use crate::stack::neighbor::{State, STALE_LIFETIME};
use crate::stack::Stack;
use crate::wire::Mac;

#[derive(Parser)]
#[command(
    name = "ndp",
    about = "control/diagnose IPv6 neighbor discovery protocol"
)]
struct Args {
    /// Dump the whole neighbour cache.
    #[arg(short = 'a')]
    all: bool,
    /// Flush the cache: every entry but the static ones.
    #[arg(short = 'c')]
    clear: bool,
    /// Delete the entries for this address (ADDR or ADDR%IF).
    #[arg(short = 'd', value_name = "ADDR")]
    delete: Option<String>,
    /// Add a static entry: ADDR MAC [temp]; with temp it is forgotten after 20 minutes.
    #[arg(short = 's')]
    set: bool,
    /// Numeric (always; accepted for compatibility).
    #[arg(short = 'n')]
    numeric: bool,
    #[arg(long)]
    json: bool,
    args: Vec<String>,
}

/// NetBSD's column widths (W_ADDR, W_LL, W_IF); wider values push the next columns right.
const W_ADDR: usize = 39;
const W_LL: usize = 17;
const W_IF: usize = 6;

#[derive(Serialize)]
struct Entry {
    /// The address as NetBSD prints it (`fe80::1%shmif0` for link-local ones).
    neighbor: String,
    addr: Ipv6Addr,
    interface: String,
    ifindex: u32,
    linklayer: Option<Mac>,
    /// NetBSD's state name (incomplete, reachable, stale, delay, probe, permanent).
    state: &'static str,
    /// The letter of column S.
    state_letter: char,
    /// Seconds until the entry's timer fires; None for permanent entries.
    expire_s: Option<u64>,
    /// Solicitations sent for it so far (incomplete and probe entries).
    probes: u8,
}

fn letter(st: &State) -> char {
    match st {
        State::Incomplete { .. } => 'I',
        // NetBSD keeps static neighbours REACHABLE (with no expiry).
        State::Reachable { .. } | State::Static { .. } => 'R',
        State::Stale { .. } => 'S',
        State::Delay { .. } => 'D',
        State::Probe { .. } => 'P',
    }
}

/// When the entry's timer fires and how many solicitations it has seen.
fn timer(st: &State) -> (Option<Instant>, u8) {
    match st {
        State::Incomplete { tries, next, .. } | State::Probe { tries, next, .. } => {
            (Some(*next), *tries)
        }
        State::Reachable { until, .. } | State::Delay { until, .. } => (Some(*until), 0),
        State::Stale { since, .. } => (Some(*since + STALE_LIFETIME), 0),
        State::Static { .. } => (None, 0),
    }
}

fn entries(stack: &Stack, now: Instant) -> Vec<Entry> {
    stack
        .nd
        .entries
        .iter()
        .map(|(&(ifindex, addr), st)| {
            let (deadline, probes) = timer(st);
            Entry {
                neighbor: scoped(stack, addr, Some(ifindex)),
                addr,
                interface: stack
                    .iface_by_index(ifindex)
                    .map_or_else(|| "?".into(), |i| i.name.clone()),
                ifindex,
                linklayer: st.mac(),
                state: st.name(),
                state_letter: letter(st),
                expire_s: deadline.map(|d| d.saturating_duration_since(now).as_secs()),
                probes,
            }
        })
        .collect()
}

/// NetBSD's sec2str: `1d2h3m4s`, leading zero units left out.
fn sec2str(total: u64) -> String {
    let (d, h, m, s) = (
        total / 86400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    let mut out = String::new();
    if d > 0 {
        out += &format!("{d}d");
    }
    if !out.is_empty() || h > 0 {
        out += &format!("{h}h");
    }
    if !out.is_empty() || m > 0 {
        out += &format!("{m}m");
    }
    out + &format!("{s}s")
}

fn header() -> String {
    format!(
        "{:<W_ADDR$} {:<W_LL$} {:>W_IF$} {:<9} {:1} {:2}",
        "Neighbor", "Linklayer Address", "Netif", "Expire", "S", "Fl"
    )
}

fn render(e: &Entry) -> String {
    let ll = e
        .linklayer
        .map_or_else(|| "(incomplete)".to_string(), |m| m.to_string());
    let aw = e.neighbor.len().max(W_ADDR);
    let lw = ll.len().max((W_ADDR + W_LL).saturating_sub(aw));
    let iw = e
        .interface
        .len()
        .max((W_ADDR + W_LL + W_IF).saturating_sub(aw + lw));
    let expire = match e.expire_s {
        None => "permanent".to_string(),
        Some(0) => "expired".to_string(),
        Some(s) => sec2str(s),
    };
    // No router (R) or proxy (p) flags: the cache does not keep them.
    let mut line = format!(
        "{:<aw$} {:<lw$} {:>iw$} {:<9.9} {} ",
        e.neighbor, ll, e.interface, expire, e.state_letter
    );
    if e.probes > 0 {
        line += &format!(" {}", e.probes);
    }
    line
}

/// The cache keys for `host` (`ADDR` on any interface, `ADDR%IF` on that one).
fn keys(stack: &Stack, host: &str) -> Result<(Ipv6Addr, Vec<(u32, Ipv6Addr)>), CmdError> {
    let (addr, scope) = parse_addr6(host)?;
    let ix = scope.map(|s| scope_index(stack, s)).transpose()?;
    let keys = stack
        .nd
        .entries
        .keys()
        .filter(|k| k.1 == addr && ix.is_none_or(|ix| k.0 == ix))
        .copied()
        .collect();
    Ok((addr, keys))
}

fn no_entry(host: &str, addr: Ipv6Addr) -> CmdError {
    CmdError::fail(format!("{host} ({addr}) -- no entry"))
}

#[derive(Serialize)]
struct Deleted {
    neighbor: String,
    interface: String,
}

/// `ndp -s ADDR MAC [temp]`: the interface is the `%IF` scope, else the one with a prefix
/// containing the address.
fn set(stack: &mut Stack, now: Instant, words: &[String]) -> Result<(), CmdError> {
    let (host, mac, opts) = match words {
        [h, m, rest @ ..] if rest.len() <= 2 => (h, m, rest),
        _ => return Err(CmdError::usage("-s: expected ADDR MAC [temp]")),
    };
    let mut temp = false;
    for o in opts {
        match o.as_str() {
            "temp" => temp = true,
            "proxy" => {
                return Err(CmdError::fail(
                    "proxy: proxy neighbour advertisements are not supported",
                ))
            }
            w => return Err(CmdError::usage(format!("{w}: expected temp"))),
        }
    }
    let (addr, scope) = parse_addr6(host)?;
    let mac: Mac = mac.parse().map_err(CmdError::usage)?;
    if addr.is_multicast() || addr.is_unspecified() {
        return Err(CmdError::usage(format!(
            "{addr}: not a unicast neighbour address"
        )));
    }
    let index = match scope {
        Some(s) => scope_index(stack, s)?,
        None if is_link_local(addr) => {
            return Err(CmdError::usage(format!(
                "{addr}: a link-local address needs its interface ({addr}%shmif0)"
            )))
        }
        None => stack
            .ifaces
            .iter()
            .find(|i| i.addrs.iter().any(|a| a.contains(addr)))
            .map(|i| i.index)
            .ok_or_else(|| {
                CmdError::fail(format!(
                    "{addr}: not on any connected network (no interface for it)"
                ))
            })?,
    };
    if temp {
        // Forgotten with the unused stale entries, after NetBSD's 20 minutes for temp.
        stack.nd.remove((index, addr));
        stack
            .nd
            .entries
            .insert((index, addr), State::Stale { mac, since: now });
    } else {
        // Packets that waited for resolution are dropped: the stack has no public way to
        // send queued IPv6 packets.
        let _waiting = stack.nd.set_static((index, addr), mac);
    }
    Ok(())
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(args) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    let _ = args.numeric;
    let modes = [args.all, args.clear, args.delete.is_some(), args.set];
    if modes.iter().filter(|m| **m).count() > 1 {
        return Err(CmdError::usage("-a, -c, -d and -s are exclusive"));
    }
    // NetBSD: "fe80::1%shmif0 (fe80::1) deleted".
    let say = |host: &str, addr: Ipv6Addr| {
        if !args.json {
            ctx.out.out(format!("{host} ({addr}) deleted"));
        }
    };
    if args.set {
        set(stack, ctx.now, &args.args)?;
        return Ok(Done::Exit(0));
    }
    if let Some(host) = &args.delete {
        if !args.args.is_empty() {
            return Err(CmdError::usage("-d takes one address"));
        }
        let (addr, keys) = keys(stack, host)?;
        if keys.is_empty() {
            return Err(no_entry(host, addr));
        }
        let mut gone = Vec::new();
        for k in keys {
            let d = Deleted {
                neighbor: scoped(stack, addr, Some(k.0)),
                interface: stack
                    .iface_by_index(k.0)
                    .map_or("?".into(), |i| i.name.clone()),
            };
            stack.nd.remove(k);
            say(host, addr);
            gone.push(d);
        }
        if args.json {
            ctx.out.json(&gone);
        }
        return Ok(Done::Exit(0));
    }
    if args.clear {
        if !args.args.is_empty() {
            return Err(CmdError::usage("-c takes no address"));
        }
        let keys: Vec<_> = stack
            .nd
            .entries
            .iter()
            .filter(|(_, st)| !matches!(st, State::Static { .. }))
            .map(|(k, _)| *k)
            .collect();
        let mut gone = Vec::new();
        for k in keys {
            let d = Deleted {
                neighbor: scoped(stack, k.1, Some(k.0)),
                interface: stack
                    .iface_by_index(k.0)
                    .map_or("?".into(), |i| i.name.clone()),
            };
            stack.nd.remove(k);
            say(&d.neighbor, k.1);
            gone.push(d);
        }
        if args.json {
            ctx.out.json(&gone);
        }
        return Ok(Done::Exit(0));
    }
    let mut list = entries(stack, ctx.now);
    if args.all {
        if !args.args.is_empty() {
            return Err(CmdError::usage("-a takes no address"));
        }
    } else {
        let [host] = args.args.as_slice() else {
            return Err(CmdError::usage(
                "expected -a, -c, ADDR, -d ADDR or -s ADDR MAC [temp]",
            ));
        };
        let (addr, keys) = keys(stack, host)?;
        if keys.is_empty() {
            return Err(no_entry(host, addr));
        }
        list.retain(|e| keys.contains(&(e.ifindex, e.addr)));
    }
    if args.json {
        ctx.out.json(&list);
    } else {
        ctx.out.out(header());
        for e in &list {
            ctx.out.out(render(e));
        }
    }
    Ok(Done::Exit(0))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::super::testutil::{ok, run, stack};
    use super::*;

    const M: Mac = Mac([0xb2, 0xa0, 0, 0, 0, 9]);

    fn after(now: Instant, secs: u64) -> Instant {
        now + std::time::Duration::from_secs(secs)
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn sec2str_as_netbsd() {
        assert_eq!(sec2str(0), "0s");
        assert_eq!(sec2str(59), "59s");
        assert_eq!(sec2str(61), "1m1s");
        assert_eq!(sec2str(3600), "1h0m0s");
        assert_eq!(sec2str(86400 + 5), "1d0h0m5s");
    }

    #[test]
    fn dump_uses_netbsd_columns_states_and_expiry() {
        let mut s = stack(1);
        ok(&mut s, "ifconfig shmif0 inet6 fd00:1::1/64");
        let now = Instant::now();
        s.nd.entries.insert(
            (1, a("fd00:1::2")),
            State::Reachable {
                mac: M,
                until: after(now, 25),
            },
        );
        s.nd.entries
            .insert((1, a("fe80::2")), State::Stale { mac: M, since: now });
        s.nd.entries.insert(
            (1, a("fd00:1::3")),
            State::Incomplete {
                tries: 2,
                next: after(now, 1),
                queue: VecDeque::new(),
            },
        );
        s.nd.set_static((1, a("fd00:1::4")), M);
        let rx = super::super::testutil::start(&mut s, now, "ndp -n -a");
        let out = super::super::testutil::collect(&rx).out;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "Neighbor                                Linklayer Address  Netif Expire    S Fl"
        );
        assert_eq!(
            lines[1],
            "fd00:1::2                               b2:a0:00:00:00:09 shmif0 25s       R "
        );
        assert_eq!(
            lines[2],
            "fd00:1::3                               (incomplete)      shmif0 1s        I  2"
        );
        assert_eq!(
            lines[3],
            "fd00:1::4                               b2:a0:00:00:00:09 shmif0 permanent R "
        );
        assert_eq!(
            lines[4],
            "fe80::2%shmif0                          b2:a0:00:00:00:09 shmif0 20m0s     S "
        );
        let json: serde_json::Value =
            serde_json::from_str(ok(&mut s, "ndp -a --json").trim()).unwrap();
        assert_eq!(json[0]["addr"], "fd00:1::2");
        assert_eq!(json[0]["state"], "reachable");
        assert_eq!(json[3]["neighbor"], "fe80::2%shmif0");
        assert_eq!(json[2]["expire_s"], serde_json::Value::Null);
        // One host.
        let one = ok(&mut s, "ndp fe80::2%shmif0");
        assert_eq!(one.lines().count(), 2, "{one}");
        let r = run(&mut s, "ndp fd00:1::77");
        assert_eq!(r.code, Some(1));
        assert!(
            r.err.contains("fd00:1::77 (fd00:1::77) -- no entry"),
            "{}",
            r.err
        );
    }

    #[test]
    fn set_delete_and_clear() {
        let mut s = stack(2);
        ok(&mut s, "ifconfig shmif1 inet6 fd00:2::1/64");
        ok(&mut s, "ndp -s fd00:2::9 b2:a0:00:00:00:09");
        assert_eq!(s.nd.lookup((2, a("fd00:2::9"))), Some(M));
        ok(&mut s, "ndp -s fe80::9%shmif0 b2:a0:0:0:0:9");
        assert_eq!(s.nd.lookup((1, a("fe80::9"))), Some(M));
        ok(&mut s, "ndp -s fd00:2::8 b2:a0:00:00:00:09 temp");
        assert_eq!(s.nd.entries[&(2, a("fd00:2::8"))].name(), "stale");
        for (argv, want) in [
            ("ndp -s fe80::9 b2:a0:00:00:00:09", "needs its interface"),
            (
                "ndp -s fd00:9::9 b2:a0:00:00:00:09",
                "not on any connected network",
            ),
            ("ndp -s fd00:2::9 nonsense", "invalid MAC"),
            ("ndp -s fd00:2::9 b2:a0:00:00:00:09 proxy", "not supported"),
            (
                "ndp -s fe80::9%shmif7 b2:a0:00:00:00:09",
                "no such interface",
            ),
            ("ndp -s fd00:2::9", "expected ADDR MAC"),
        ] {
            let r = run(&mut s, argv);
            assert_ne!(r.code, Some(0), "{argv}");
            assert!(r.err.contains(want), "{argv}: {}", r.err);
        }
        // -c keeps static entries.
        let out = ok(&mut s, "ndp -c");
        assert_eq!(out, "fd00:2::8 (fd00:2::8) deleted\n");
        assert_eq!(s.nd.entries.len(), 2);
        let out = ok(&mut s, "ndp -d fe80::9%shmif0");
        assert_eq!(out, "fe80::9%shmif0 (fe80::9) deleted\n");
        let r = run(&mut s, "ndp -d fe80::9%shmif0");
        assert_eq!(r.code, Some(1));
        assert!(r.err.contains("-- no entry"), "{}", r.err);
        let r = run(&mut s, "ndp -d fd00:2::77");
        assert_eq!(r.code, Some(1));
        assert!(
            r.err.contains("ndp: fd00:2::77 (fd00:2::77) -- no entry"),
            "{}",
            r.err
        );
        let r = run(&mut s, "ndp -a -c");
        assert_eq!(r.code, Some(crate::cmd::EX_USAGE));
        assert_eq!(ok(&mut s, "ndp -n -a").lines().count(), 2);
    }
}
