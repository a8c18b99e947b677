//! `arp`: show, add and delete ARP cache entries (NetBSD syntax and output).

use std::net::Ipv4Addr;

use clap::Parser;
use serde::Serialize;

use super::{parse, parse_addr, CmdError, Ctx, Done};
use crate::stack::Stack;
use crate::wire::Mac;

#[derive(Parser)]
#[command(name = "arp", about = "address resolution display and control")]
struct Args {
    /// All entries.
    #[arg(short = 'a')]
    all: bool,
    /// Delete HOST (or every entry with -a).
    #[arg(short = 'd')]
    delete: bool,
    /// Add a permanent entry: HOST MAC.
    #[arg(short = 's')]
    set: bool,
    /// Numeric (always; accepted for compatibility).
    #[arg(short = 'n')]
    numeric: bool,
    #[arg(long)]
    json: bool,
    args: Vec<String>,
}

#[derive(Serialize)]
struct Entry {
    addr: Ipv4Addr,
    mac: Option<Mac>,
    interface: String,
    state: &'static str,
}

fn entries(stack: &Stack) -> Vec<Entry> {
    stack
        .arp
        .entries
        .iter()
        .map(|((idx, addr), st)| {
            let (mac, state) = (st.mac(), st.name());
            Entry {
                addr: *addr,
                mac,
                interface: stack
                    .iface_by_index(*idx)
                    .map_or_else(|| "?".into(), |i| i.name.clone()),
                state,
            }
        })
        .collect()
}

fn render(e: &Entry) -> String {
    let mac = e
        .mac
        .map_or_else(|| "(incomplete)".to_string(), |m| m.to_string());
    let perm = if e.state == "permanent" {
        " permanent"
    } else {
        ""
    };
    format!("? ({}) at {} on {}{}", e.addr, mac, e.interface, perm)
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(args) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    let _ = args.numeric;
    if args.set {
        let [host, mac, ..] = args.args.as_slice() else {
            return Err(CmdError::usage("-s: expected HOST MAC"));
        };
        let addr = parse_addr(host)?;
        let mac: Mac = mac.parse().map_err(CmdError::usage)?;
        let index = stack
            .ifaces
            .iter()
            .find(|i| i.addrs.iter().any(|a| a.contains(addr)))
            .map(|i| i.index)
            .ok_or_else(|| {
                CmdError::fail(format!(
                    "{addr}: not on any connected network (no interface for it)"
                ))
            })?;
        let waiting = stack.arp.set_static((index, addr), mac);
        stack.send_waiting(index, mac, waiting);
        return Ok(Done::Exit(0));
    }
    if args.delete {
        if args.all {
            stack
                .arp
                .entries
                .keys()
                .copied()
                .collect::<Vec<_>>()
                .into_iter()
                .for_each(|k| {
                    stack.arp.remove(k);
                });
            return Ok(Done::Exit(0));
        }
        let [host] = args.args.as_slice() else {
            return Err(CmdError::usage("-d: expected HOST (or -a)"));
        };
        let addr = parse_addr(host)?;
        let keys: Vec<_> = stack
            .arp
            .entries
            .keys()
            .filter(|k| k.1 == addr)
            .copied()
            .collect();
        if keys.is_empty() {
            return Err(CmdError::fail(format!("{addr}: no entry")));
        }
        for k in keys {
            stack.arp.remove(k);
        }
        return Ok(Done::Exit(0));
    }
    let mut list = entries(stack);
    if !args.all {
        let [host] = args.args.as_slice() else {
            return Err(CmdError::usage("expected -a, HOST, -d HOST or -s HOST MAC"));
        };
        let addr = parse_addr(host)?;
        list.retain(|e| e.addr == addr);
        if list.is_empty() {
            return Err(CmdError::fail(format!("{addr} ({addr}) -- no entry")));
        }
    }
    if args.json {
        ctx.out.json(&list);
    } else {
        for e in &list {
            ctx.out.out(render(e));
        }
    }
    Ok(Done::Exit(0))
}
