//! `route`: add, delete, get, show and flush static routes of both families (NetBSD syntax:
//! `-inet` is the default, `-inet6` selects IPv6).

use std::net::{Ipv4Addr, Ipv6Addr};

use clap::Parser;
use serde::Serialize;

use super::netstat::Families;
use super::{
    classful_prefix, is_link_local, mask6, mask_to_prefix, parse, parse_addr, parse_addr6,
    parse_cidr, parse_cidr6, parse_prefixlen6, scope_index, scoped, CmdError, Ctx, Done,
};
use crate::stack::addr::{mask_v4, network, Family};
use crate::stack::route::{NextHop, RouteTable, StaticRoute};
use crate::stack::{Iface, Stack};

#[derive(Parser)]
#[command(name = "route", about = "manipulate the routing table")]
struct Args {
    /// Numeric output (always numeric; accepted for compatibility).
    #[arg(short = 'n')]
    numeric: bool,
    /// Quiet: print nothing on success.
    #[arg(short = 'q')]
    quiet: bool,
    #[arg(long)]
    json: bool,
    /// add|delete [-inet|-inet6] [-net|-host] DEST[/LEN] [-netmask MASK|-prefixlen N] GATEWAY |
    /// get [-inet|-inet6] DEST | show [-inet|-inet6] | flush [-inet|-inet6]
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    words: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Af {
    Inet,
    Inet6,
}

/// The words after the verb: options sorted out, addresses still text.
struct Words {
    af: Option<Af>,
    net: bool,
    host: bool,
    netmask: Option<u8>,
    prefixlen: Option<u8>,
    pos: Vec<String>,
}

fn words(w: &[String]) -> Result<Words, CmdError> {
    let mut out = Words {
        af: None,
        net: false,
        host: false,
        netmask: None,
        prefixlen: None,
        pos: Vec::new(),
    };
    let mut it = w.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-net" => out.net = true,
            "-host" => out.host = true,
            "-inet" => out.af = Some(Af::Inet),
            "-inet6" => out.af = Some(Af::Inet6),
            "-netmask" => {
                let m = it
                    .next()
                    .ok_or_else(|| CmdError::usage("-netmask: missing value"))?;
                out.netmask = Some(mask_to_prefix(m)?);
            }
            "-prefixlen" => {
                let l = it
                    .next()
                    .ok_or_else(|| CmdError::usage("-prefixlen: missing value"))?;
                out.prefixlen = Some(parse_prefixlen6(l)?);
            }
            w if w.starts_with('-') => {
                return Err(CmdError::usage(format!("{w}: unknown option")));
            }
            w => out.pos.push(w.to_string()),
        }
    }
    Ok(out)
}

/// A route as `add` and `delete` name it.
struct Spec<A> {
    dest: A,
    prefix: u8,
    gateway: Option<A>,
    /// The interface of a link-local gateway (`fe80::1%shmif0`).
    gw_scope: Option<u32>,
    /// "net 10.0.2.0/24" / "host 10.0.2.5" / "net default", as NetBSD echoes it.
    label: String,
}

fn dest_gw(w: &Words, need_gateway: bool) -> Result<(&str, Option<&str>), CmdError> {
    match w.pos.as_slice() {
        [d] if !need_gateway => Ok((d, None)),
        [d, g] => Ok((d, Some(g))),
        [] => Err(CmdError::usage("missing destination")),
        [_] => Err(CmdError::usage("missing gateway")),
        _ => Err(CmdError::usage(format!(
            "too many arguments: {}",
            w.pos.join(" ")
        ))),
    }
}

fn label<A: Family>(dest: A, prefix: u8, dest_text: impl Fn(A) -> String) -> String {
    if prefix == 0 {
        "net default".to_string()
    } else if prefix == A::BITS {
        format!("host {}", dest_text(dest))
    } else {
        format!("net {}/{prefix}", dest_text(network(dest, prefix)))
    }
}

/// Refuses IPv6 text given to `-inet` commands with a hint.
fn v4_word<T>(w: &str, r: Result<T, CmdError>) -> Result<T, CmdError> {
    r.map_err(|e| {
        if parse_cidr6(w).is_ok() {
            CmdError::usage(format!("{w}: an IPv6 address needs -inet6"))
        } else {
            e
        }
    })
}

fn spec4(w: &Words, need_gateway: bool) -> Result<Spec<Ipv4Addr>, CmdError> {
    let (dest_word, gw_word) = dest_gw(w, need_gateway)?;
    let (dest, prefix) = if dest_word == "default" {
        (Ipv4Addr::UNSPECIFIED, 0)
    } else {
        let (a, len) = v4_word(dest_word, parse_cidr(dest_word))?;
        let prefix = match (len, w.netmask.or(w.prefixlen)) {
            (Some(l), _) => l,
            (None, Some(m)) => m,
            (None, None) if w.net && !w.host => classful_prefix(a),
            (None, None) => 32,
        };
        if prefix > 32 {
            return Err(CmdError::usage(format!("-prefixlen {prefix}: bad (0..32)")));
        }
        (a, prefix)
    };
    let gateway = gw_word.map(|g| v4_word(g, parse_addr(g))).transpose()?;
    Ok(Spec {
        dest,
        prefix,
        gateway,
        gw_scope: None,
        label: label(dest, prefix, |a| a.to_string()),
    })
}

fn spec6(stack: &Stack, w: &Words, need_gateway: bool) -> Result<Spec<Ipv6Addr>, CmdError> {
    if w.netmask.is_some() {
        return Err(CmdError::usage(
            "-netmask is for -inet; give an inet6 prefix as DEST/LEN or -prefixlen N",
        ));
    }
    let (dest_word, gw_word) = dest_gw(w, need_gateway)?;
    let (dest, dest_scope, prefix) = if dest_word == "default" {
        (Ipv6Addr::UNSPECIFIED, None, 0)
    } else {
        let (a, scope, len) = parse_cidr6(dest_word)?;
        // NetBSD: -net without a length is a /64, no -net and no length a host.
        let prefix = match (len, w.prefixlen) {
            (Some(l), _) => l,
            (None, Some(l)) => l,
            (None, None) if w.net && !w.host => 64,
            (None, None) => 128,
        };
        (a, scope, prefix)
    };
    let dest_ix = dest_scope.map(|s| scope_index(stack, s)).transpose()?;
    let (gateway, gw_scope) = match gw_word {
        None => (None, None),
        Some(g) => {
            let (a, scope) = parse_addr6(g)?;
            let ix = scope.map(|s| scope_index(stack, s)).transpose()?;
            if is_link_local(a) && ix.is_none() {
                return Err(CmdError::usage(format!(
                    "{g}: a link-local gateway needs its interface ({a}%shmif0)"
                )));
            }
            if !is_link_local(a) && ix.is_some() {
                return Err(CmdError::usage(format!(
                    "{g}: %IF only goes with link-local gateways"
                )));
            }
            if a.is_multicast() || a.is_unspecified() {
                return Err(CmdError::usage(format!("{g}: not a unicast gateway")));
            }
            (Some(a), ix)
        }
    };
    Ok(Spec {
        dest,
        prefix,
        gateway,
        gw_scope,
        label: label(dest, prefix, |a| scoped(stack, a, dest_ix)),
    })
}

#[derive(Serialize)]
struct Change<A> {
    action: &'static str,
    destination: A,
    prefix: u8,
    gateway: A,
    /// The interface of a link-local gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_scope: Option<String>,
}

#[derive(Serialize)]
struct Got<A> {
    route_to: A,
    destination: A,
    prefix: u8,
    gateway: Option<A>,
    interface: String,
    flags: String,
}

/// What `route` prints for an address of either family (link-local ones with their scope).
trait Show: Family {
    fn show(stack: &Stack, a: Self, ifindex: Option<u32>) -> String;
    fn mask(prefix: u8) -> String;
    /// The family's table, and the interfaces its changes are checked against.
    fn table_mut(stack: &mut Stack) -> (&mut RouteTable<Self>, &[Iface]);
}

impl Show for Ipv4Addr {
    fn show(_: &Stack, a: Self, _: Option<u32>) -> String {
        a.to_string()
    }
    fn mask(prefix: u8) -> String {
        mask_v4(prefix).to_string()
    }
    fn table_mut(stack: &mut Stack) -> (&mut RouteTable<Self>, &[Iface]) {
        (&mut stack.routes, &stack.ifaces)
    }
}

impl Show for Ipv6Addr {
    fn show(stack: &Stack, a: Self, ifindex: Option<u32>) -> String {
        scoped(stack, a, ifindex)
    }
    fn mask(prefix: u8) -> String {
        mask6(prefix).to_string()
    }
    fn table_mut(stack: &mut Stack) -> (&mut RouteTable<Self>, &[Iface]) {
        (&mut stack.routes6, &stack.ifaces)
    }
}

fn add<A: Show>(stack: &mut Stack, s: Spec<A>, args: &Args, ctx: &Ctx<'_>) -> Result<(), CmdError> {
    let Some(gw) = s.gateway else {
        return Err(CmdError::usage("add: missing gateway"));
    };
    let gw_text = A::show(stack, gw, s.gw_scope);
    let r = StaticRoute {
        dest: s.dest,
        prefix: s.prefix,
        gateway: gw,
        ifindex: s.gw_scope,
    };
    let (table, ifaces) = A::table_mut(stack);
    table
        .add(r, ifaces)
        .map_err(|e| CmdError::fail(format!("add {}: gateway {gw_text}: {e}", s.label)))?;
    if args.json {
        ctx.out.json(&Change {
            action: "add",
            destination: network(s.dest, s.prefix),
            prefix: s.prefix,
            gateway: gw,
            gateway_scope: s.gw_scope.and_then(|ix| ifname(stack, ix)),
        });
    } else if !args.quiet {
        ctx.out.out(format!("add {}: gateway {gw_text}", s.label));
    }
    Ok(())
}

fn ifname(stack: &Stack, ix: u32) -> Option<String> {
    stack.iface_by_index(ix).map(|i| i.name.clone())
}

fn delete<A: Show>(
    stack: &mut Stack,
    s: Spec<A>,
    args: &Args,
    ctx: &Ctx<'_>,
) -> Result<(), CmdError> {
    let (table, ifaces) = A::table_mut(stack);
    let r = table
        .delete(s.dest, s.prefix, s.gateway, ifaces)
        .map_err(|e| CmdError::fail(format!("delete {}: {e}", s.label)))?;
    if args.json {
        ctx.out.json(&Change {
            action: "delete",
            destination: r.dest,
            prefix: r.prefix,
            gateway: r.gateway,
            gateway_scope: r.ifindex.and_then(|ix| ifname(stack, ix)),
        });
    } else if !args.quiet {
        let gw = A::show(stack, r.gateway, r.ifindex);
        ctx.out.out(format!("delete {}: gateway {gw}", s.label));
    }
    Ok(())
}

fn get<A: Show>(
    stack: &Stack,
    dst: A,
    hop: Option<NextHop<A>>,
    scope: Option<u32>,
    args: &Args,
    ctx: &Ctx<'_>,
) -> Result<(), CmdError> {
    let shown = A::show(stack, dst, scope);
    let hop = hop.ok_or_else(|| CmdError::fail(format!("route to {shown}: not in table")))?;
    let entry = super::netstat::route_row(&hop.route, &stack.ifaces);
    let g = Got {
        route_to: dst,
        destination: entry.dest,
        prefix: entry.prefix,
        gateway: entry.gateway,
        interface: entry.ifname,
        flags: entry.flags.to_string(),
    };
    if args.json {
        ctx.out.json(&g);
        return Ok(());
    }
    let ix = Some(hop.route.ifindex);
    ctx.out.out(format!("   route to: {shown}"));
    ctx.out.out(format!(
        "destination: {}",
        if g.prefix == 0 {
            "default".to_string()
        } else {
            A::show(stack, g.destination, ix)
        }
    ));
    ctx.out.out(format!("       mask: {}", A::mask(g.prefix)));
    if let Some(gw) = g.gateway {
        ctx.out
            .out(format!("    gateway: {}", A::show(stack, gw, ix)));
    }
    ctx.out.out(format!("  interface: {}", g.interface));
    ctx.out
        .out(format!("      flags: <{}>", flag_words(&g.flags)));
    Ok(())
}

fn flush<A: Show>(stack: &mut Stack, args: &Args, ctx: &Ctx<'_>) {
    let (table, ifaces) = A::table_mut(stack);
    let gone = table.flush(ifaces);
    for r in gone {
        let label = if r.prefix == 0 {
            "default".to_string()
        } else {
            format!("{}/{}", r.dest, r.prefix)
        };
        if !args.quiet {
            let gw = A::show(stack, r.gateway, r.ifindex);
            ctx.out.out(format!("{label:<18} {gw:<18} done"));
        }
    }
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(mut args) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    args.json |= super::take_flag(&mut args.words, "--json");
    let _ = args.numeric;
    let Some((verb, rest)) = args.words.split_first() else {
        return Err(CmdError::usage("expected add, delete, get, show or flush"));
    };
    let w = words(rest)?;
    let inet6 = w.af == Some(Af::Inet6);
    match verb.as_str() {
        "add" if inet6 => add(stack, spec6(stack, &w, true)?, &args, ctx)?,
        "add" => add(stack, spec4(&w, true)?, &args, ctx)?,
        "delete" | "del" if inet6 => delete(stack, spec6(stack, &w, false)?, &args, ctx)?,
        "delete" | "del" => delete(stack, spec4(&w, false)?, &args, ctx)?,
        "get" => {
            let [d] = w.pos.as_slice() else {
                return Err(CmdError::usage("get: expected one destination"));
            };
            if inet6 {
                let (dst, scope) = if d == "default" {
                    (Ipv6Addr::UNSPECIFIED, None)
                } else {
                    parse_addr6(d)?
                };
                let ix = scope.map(|s| scope_index(stack, s)).transpose()?;
                if is_link_local(dst) && ix.is_none() {
                    return Err(CmdError::usage(format!(
                        "{d}: a link-local destination needs its interface ({dst}%shmif0)"
                    )));
                }
                let hop = match ix {
                    Some(ix) => stack.routes6.lookup_on(dst, ix),
                    None => stack.routes6.lookup(dst),
                };
                get(stack, dst, hop, ix, &args, ctx)?;
            } else {
                let dst = if d == "default" {
                    Ipv4Addr::UNSPECIFIED
                } else {
                    v4_word(d, parse_addr(d))?
                };
                get(stack, dst, stack.routes.lookup(dst), None, &args, ctx)?;
            }
        }
        "show" => {
            if !w.pos.is_empty() {
                return Err(CmdError::usage("show: takes no address"));
            }
            let fam = match w.af {
                None => Families::Both,
                Some(Af::Inet) => Families::Inet,
                Some(Af::Inet6) => Families::Inet6,
            };
            super::netstat::route_table(stack, fam, args.json, ctx.out);
        }
        "flush" => {
            if !w.pos.is_empty() {
                return Err(CmdError::usage("flush: takes no address"));
            }
            // Without a family NetBSD flushes every family.
            if w.af != Some(Af::Inet6) {
                flush::<Ipv4Addr>(stack, &args, ctx);
            }
            if w.af != Some(Af::Inet) {
                flush::<Ipv6Addr>(stack, &args, ctx);
            }
        }
        other => {
            return Err(CmdError::usage(format!(
                "{other}: unknown command (expected add, delete, get, show or flush)"
            )))
        }
    }
    Ok(Done::Exit(0))
}

fn flag_words(flags: &str) -> String {
    let mut w = Vec::new();
    for c in flags.chars() {
        w.push(match c {
            'U' => "UP",
            'G' => "GATEWAY",
            'H' => "HOST",
            'S' => "STATIC",
            'C' => "CONNECTED",
            _ => continue,
        });
    }
    w.push("DONE");
    w.join(",")
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ok, run, stack};
    use super::*;

    fn v6_stack() -> Stack {
        let mut s = stack(2);
        ok(&mut s, "ifconfig shmif0 inet6 fd00:1::2/64");
        ok(&mut s, "ifconfig shmif0 inet6 fe80::2%shmif0/64");
        ok(&mut s, "ifconfig shmif1 inet 10.0.1.2/24");
        s
    }

    #[test]
    fn inet6_routes_are_added_got_and_deleted() {
        let mut s = v6_stack();
        assert_eq!(
            ok(&mut s, "route add -inet6 fd00:2::/64 fd00:1::1"),
            "add net fd00:2::/64: gateway fd00:1::1\n"
        );
        assert_eq!(
            ok(&mut s, "route add -inet6 default fe80::1%shmif0"),
            "add net default: gateway fe80::1%shmif0\n"
        );
        assert_eq!(
            ok(&mut s, "route add -inet6 -host fd00:3::5 fd00:1::1"),
            "add host fd00:3::5: gateway fd00:1::1\n"
        );
        // labctl's form: -net with the length in the address.
        ok(&mut s, "route add -inet6 -net fd00:4::/48 fd00:1::1");
        ok(&mut s, "route add -inet6 -net fd00:5:: fd00:1::1");
        ok(&mut s, "route add -inet6 fd00:6:: -prefixlen 56 fd00:1::1");
        let t = s.routes6.statics();
        assert_eq!(
            t.iter().map(|r| r.prefix).collect::<Vec<_>>(),
            [64, 0, 128, 48, 64, 56]
        );
        assert_eq!(t[1].ifindex, Some(1));
        let got = ok(&mut s, "route get -inet6 fd00:2::9");
        assert_eq!(
            got,
            "   route to: fd00:2::9\ndestination: fd00:2::\n       mask: ffff:ffff:ffff:ffff::\n    gateway: fd00:1::1\n  interface: shmif0\n      flags: <UP,GATEWAY,STATIC,DONE>\n"
        );
        let got = ok(&mut s, "route get -inet6 2001:db8::1");
        assert!(
            got.contains("destination: default\n       mask: ::\n    gateway: fe80::1%shmif0\n"),
            "{got}"
        );
        let got = ok(&mut s, "route get -inet6 fe80::7%shmif0");
        assert!(got.contains("destination: fe80::%shmif0\n"), "{got}");
        assert!(got.contains("flags: <UP,CONNECTED,DONE>"), "{got}");
        assert_eq!(
            ok(&mut s, "route delete -inet6 fd00:2::/64"),
            "delete net fd00:2::/64: gateway fd00:1::1\n"
        );
        assert_eq!(
            ok(&mut s, "route delete -inet6 default"),
            "delete net default: gateway fe80::1%shmif0\n"
        );
        let r = run(&mut s, "route delete -inet6 fd00:2::/64");
        assert_eq!(r.code, Some(1));
        assert!(r.err.contains("not in table"), "{}", r.err);
        // IPv4 is untouched and still the default family.
        ok(&mut s, "route add 10.0.9.0/24 10.0.1.1");
        assert_eq!(s.routes.statics().len(), 1);
        let out = ok(&mut s, "route flush -inet6");
        assert_eq!(out.lines().count(), 4, "{out}");
        assert!(s.routes6.statics().is_empty());
        assert_eq!(s.routes.statics().len(), 1);
        ok(&mut s, "route add -inet6 fd00:2::/64 fd00:1::1");
        let out = ok(&mut s, "route flush");
        assert_eq!(out.lines().count(), 2, "both families: {out}");
    }

    #[test]
    fn bad_inet6_routes_are_refused() {
        let mut s = v6_stack();
        for (argv, code, want) in [
            (
                "route add -inet6 fd00:2::/64 fd00:9::1",
                1,
                "Network is unreachable",
            ),
            (
                "route add -inet6 default fe80::1",
                64,
                "link-local gateway needs its interface",
            ),
            (
                "route add -inet6 default fe80::1%shmif9",
                1,
                "no such interface",
            ),
            (
                "route add -inet6 default fd00:1::1%shmif0",
                64,
                "only goes with link-local",
            ),
            (
                "route add -inet6 fd00:2::/129 fd00:1::1",
                64,
                "bad prefixlen",
            ),
            (
                "route add -inet6 fd00:2::/64 ff02::1",
                64,
                "not a unicast gateway",
            ),
            (
                "route add -inet6 fd00:2::/64 10.0.1.1",
                64,
                "bad IPv6 address",
            ),
            (
                "route add -inet6 fd00:2:: -netmask 255.0.0.0 fd00:1::1",
                64,
                "-netmask is for -inet",
            ),
            ("route add fd00:2::/64 fd00:1::1", 64, "needs -inet6"),
            ("route get -inet6 fe80::1", 64, "needs its interface"),
            ("route get -inet6 fd00:9::1", 1, "not in table"),
        ] {
            let r = run(&mut s, argv);
            assert_eq!(r.code, Some(code), "{argv}: {}", r.err);
            assert!(r.err.contains(want), "{argv}: {}", r.err);
        }
        ok(&mut s, "route add -inet6 fd00:2::/64 fd00:1::1");
        let r = run(&mut s, "route add -inet6 fd00:2::/64 fd00:1::1");
        assert!(r.err.contains("File exists"), "{}", r.err);
    }
}
