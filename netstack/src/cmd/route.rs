//! `route`: add, delete, get, show and flush static routes (NetBSD syntax).

use std::net::Ipv4Addr;

use clap::Parser;
use serde::Serialize;

use super::{classful_prefix, mask_to_prefix, parse, parse_addr, parse_cidr, CmdError, Ctx, Done};
use crate::stack::addr::{mask_v4, network};
use crate::stack::route::StaticRoute;
use crate::stack::Stack;

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
    /// add|delete [-net|-host] DEST[/LEN] [-netmask MASK] GATEWAY | get DEST | show | flush
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    words: Vec<String>,
}

struct Spec {
    dest: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    /// "net 10.0.2.0/24" / "host 10.0.2.5" / "net default", as NetBSD echoes it.
    label: String,
}

fn parse_spec(words: &[String], need_gateway: bool) -> Result<Spec, CmdError> {
    let mut net = false;
    let mut host = false;
    let mut netmask = None;
    let mut pos = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-net" => net = true,
            "-host" => host = true,
            "-inet" => {}
            "-netmask" => {
                let m = it
                    .next()
                    .ok_or_else(|| CmdError::usage("-netmask: missing value"))?;
                netmask = Some(mask_to_prefix(m)?);
            }
            w if w.starts_with('-') => {
                return Err(CmdError::usage(format!("{w}: unknown option")));
            }
            w => pos.push(w.to_string()),
        }
    }
    let (dest_word, gw_word) = match pos.as_slice() {
        [d] if !need_gateway => (d, None),
        [d, g] => (d, Some(g)),
        [] => return Err(CmdError::usage("missing destination")),
        [_] => return Err(CmdError::usage("missing gateway")),
        _ => {
            return Err(CmdError::usage(format!(
                "too many arguments: {}",
                pos.join(" ")
            )))
        }
    };
    let (dest, prefix) = if dest_word == "default" {
        (Ipv4Addr::UNSPECIFIED, 0)
    } else {
        let (a, len) = parse_cidr(dest_word)?;
        let prefix = match (len, netmask) {
            (Some(l), _) => l,
            (None, Some(m)) => m,
            (None, None) if net && !host => classful_prefix(a),
            (None, None) => 32,
        };
        (a, prefix)
    };
    let gateway = gw_word.map(|g| parse_addr(g)).transpose()?;
    let label = if prefix == 0 {
        "net default".to_string()
    } else if prefix == 32 {
        format!("host {dest}")
    } else {
        format!("net {}/{prefix}", network(dest, prefix))
    };
    Ok(Spec {
        dest,
        prefix,
        gateway,
        label,
    })
}

#[derive(Serialize)]
struct Change {
    action: &'static str,
    destination: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
}

#[derive(Serialize)]
struct Got {
    route_to: Ipv4Addr,
    destination: Ipv4Addr,
    prefix: u8,
    gateway: Option<Ipv4Addr>,
    interface: String,
    flags: String,
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
    let say = |s: String| {
        if !args.quiet {
            ctx.out.out(s)
        }
    };
    match verb.as_str() {
        "add" => {
            let s = parse_spec(rest, true)?;
            let Some(gw) = s.gateway else {
                return Err(CmdError::usage("add: missing gateway"));
            };
            stack
                .routes
                .add(
                    StaticRoute {
                        dest: s.dest,
                        prefix: s.prefix,
                        gateway: gw,
                        ifindex: None,
                    },
                    &stack.ifaces,
                )
                .map_err(|e| CmdError::fail(format!("add {}: gateway {gw}: {e}", s.label)))?;
            if args.json {
                ctx.out.json(&Change {
                    action: "add",
                    destination: network(s.dest, s.prefix),
                    prefix: s.prefix,
                    gateway: gw,
                });
            } else {
                say(format!("add {}: gateway {gw}", s.label));
            }
        }
        "delete" | "del" => {
            let s = parse_spec(rest, false)?;
            let r = stack
                .routes
                .delete(s.dest, s.prefix, s.gateway, &stack.ifaces)
                .map_err(|e| CmdError::fail(format!("delete {}: {e}", s.label)))?;
            if args.json {
                ctx.out.json(&Change {
                    action: "delete",
                    destination: r.dest,
                    prefix: r.prefix,
                    gateway: r.gateway,
                });
            } else {
                say(format!("delete {}: gateway {}", s.label, r.gateway));
            }
        }
        "get" => {
            let [d] = rest else {
                return Err(CmdError::usage("get: expected one destination"));
            };
            let dst = if d == "default" {
                Ipv4Addr::UNSPECIFIED
            } else {
                parse_addr(d)?
            };
            let hop = stack
                .routes
                .lookup(dst)
                .ok_or_else(|| CmdError::fail(format!("route to {dst}: not in table")))?;
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
            } else {
                let mask = mask_v4(g.prefix);
                ctx.out.out(format!("   route to: {}", g.route_to));
                ctx.out.out(format!(
                    "destination: {}",
                    if g.prefix == 0 {
                        "default".to_string()
                    } else {
                        g.destination.to_string()
                    }
                ));
                ctx.out.out(format!("       mask: {mask}"));
                if let Some(gw) = g.gateway {
                    ctx.out.out(format!("    gateway: {gw}"));
                }
                ctx.out.out(format!("  interface: {}", g.interface));
                ctx.out
                    .out(format!("      flags: <{}>", flag_words(&g.flags)));
            }
        }
        "show" => super::netstat::route_table(stack, args.json, ctx.out),
        "flush" => {
            for r in stack.routes.flush(&stack.ifaces) {
                let label = if r.prefix == 0 {
                    "default".to_string()
                } else {
                    format!("{}/{}", r.dest, r.prefix)
                };
                say(format!("{label:<18} {:<18} done", r.gateway));
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
