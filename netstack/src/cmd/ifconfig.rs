//! `ifconfig`: create, attach, address and show interfaces (NetBSD syntax).

use std::net::Ipv4Addr;
use std::path::Path;

use clap::Parser;
use serde::Serialize;

use super::{classful_prefix, mask_to_prefix, parse, parse_cidr, CmdError, Ctx, Done};
use crate::stack::{IfAddr, IfCounters, IfKind, Iface, Stack, MAX_MTU, MIN_MTU};

#[derive(Parser)]
#[command(name = "ifconfig", about = "configure network interfaces")]
struct Args {
    /// Show all interfaces.
    #[arg(short = 'a')]
    all: bool,
    /// List interface names only.
    #[arg(short = 'l')]
    list: bool,
    /// Verbose: packet, byte and error counters and bus statistics.
    #[arg(short = 'v')]
    verbose: bool,
    #[arg(long)]
    json: bool,
    /// INTERFACE [create|destroy|up|down|mtu N|linkstr FILE-OR-TAP [netbsd]|-linkstr|
    /// [inet] ADDR[/LEN] [netmask MASK] [alias|-alias|delete]]...
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

#[derive(Serialize)]
struct InetInfo {
    addr: Ipv4Addr,
    prefix: u8,
    broadcast: Ipv4Addr,
}

#[derive(Serialize)]
struct BusStats {
    sent: u64,
    sent_bytes: u64,
    received: u64,
    received_bytes: u64,
    filtered: u64,
    lost: u64,
    foreign: u64,
    corrupt: u64,
    resyncs: u64,
    uncounted_resyncs: u64,
    lock_recoveries: u64,
    lock_broken_dead: u64,
    lock_broken_zombie: u64,
    lock_broken_silent: u64,
    lock_broken_stuck: u64,
    ring_resets: u64,
    rx_queue_drops: u64,
}

#[derive(Serialize)]
struct IfInfo {
    name: String,
    index: u32,
    flags: u32,
    flag_names: Vec<&'static str>,
    mtu: usize,
    address: Option<String>,
    linkstr: Option<String>,
    /// `"netbsd"` or `"shmlab"` for an interface on a bus (see `shmif::Bus::netbsd_mode`).
    bus_mode: Option<&'static str>,
    inet: Vec<InetInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counters: Option<IfCounters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bus: Option<BusStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tap: Option<TapStats>,
}

#[derive(Serialize)]
struct TapStats {
    sent: u64,
    sent_bytes: u64,
    received: u64,
    received_bytes: u64,
    send_errors: u64,
    recv_errors: u64,
    truncated: u64,
    rx_queue_drops: u64,
}

const IFF_UP: u32 = 0x1;
const IFF_BROADCAST: u32 = 0x2;
const IFF_RUNNING: u32 = 0x40;
const IFF_SIMPLEX: u32 = 0x800;
const IFF_MULTICAST: u32 = 0x8000;

fn info(i: &Iface, verbose: bool) -> IfInfo {
    let mut flags = IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST;
    if i.up {
        flags |= IFF_UP;
    }
    if i.running() {
        flags |= IFF_RUNNING;
    }
    let names = [
        (IFF_UP, "UP"),
        (IFF_BROADCAST, "BROADCAST"),
        (IFF_RUNNING, "RUNNING"),
        (IFF_SIMPLEX, "SIMPLEX"),
        (IFF_MULTICAST, "MULTICAST"),
    ];
    IfInfo {
        name: i.name.clone(),
        index: i.index,
        flags,
        flag_names: names
            .iter()
            .filter(|(f, _)| flags & f != 0)
            .map(|(_, n)| *n)
            .collect(),
        mtu: i.mtu,
        address: i.link.as_ref().map(|l| l.mac.to_string()),
        linkstr: i.link.as_ref().map(|l| l.linkstr.display().to_string()),
        bus_mode: i.link.as_ref().and_then(|l| l.netbsd_mode()).map(|netbsd| {
            if netbsd {
                "netbsd"
            } else {
                "shmlab"
            }
        }),
        inet: i
            .addrs
            .iter()
            .filter_map(|a| {
                let addr: Ipv4Addr = a.get()?;
                let host_bits = !u32::from(crate::stack::addr::mask_v4(a.prefix));
                Some(InetInfo {
                    addr,
                    prefix: a.prefix,
                    broadcast: Ipv4Addr::from(u32::from(addr) | host_bits),
                })
            })
            .collect(),
        counters: verbose.then_some(i.counters),
        tap: i.link.as_ref().filter(|_| verbose).and_then(|l| {
            let t = l.tap_stats()?;
            Some(TapStats {
                sent: t.sent,
                sent_bytes: t.sent_bytes,
                received: t.received,
                received_bytes: t.received_bytes,
                send_errors: t.send_errors,
                recv_errors: t.recv_errors,
                truncated: t.truncated,
                rx_queue_drops: l.rx_queue_drops(),
            })
        }),
        bus: i
            .link
            .as_ref()
            .filter(|l| verbose && l.tap_stats().is_none())
            .map(|l| {
                let s = l.port_stats();
                BusStats {
                    sent: s.sent,
                    sent_bytes: s.sent_bytes,
                    received: s.received,
                    received_bytes: s.received_bytes,
                    filtered: s.filtered,
                    lost: s.lost,
                    foreign: s.foreign,
                    corrupt: s.corrupt,
                    resyncs: s.resyncs,
                    uncounted_resyncs: s.uncounted_resyncs,
                    lock_recoveries: s.lock_recoveries,
                    lock_broken_dead: s.lock_broken_dead,
                    lock_broken_zombie: s.lock_broken_zombie,
                    lock_broken_silent: s.lock_broken_silent,
                    lock_broken_stuck: s.lock_broken_stuck,
                    ring_resets: s.ring_resets,
                    rx_queue_drops: l.rx_queue_drops(),
                }
            }),
    }
}

fn render(i: &IfInfo) -> String {
    let mut s = format!(
        "{}: flags=0x{:x}<{}> mtu {}\n",
        i.name,
        i.flags,
        i.flag_names.join(","),
        i.mtu
    );
    if let Some(a) = &i.address {
        s += &format!("        address: {a}\n");
    }
    if let Some(l) = &i.linkstr {
        s += &format!("        linkstr: {l}\n");
    }
    if let Some(m) = i.bus_mode {
        s += &format!("        bus mode: {m}\n");
    }
    for a in &i.inet {
        s += &format!(
            "        inet {}/{} broadcast {} flags 0x0\n",
            a.addr, a.prefix, a.broadcast
        );
    }
    if let Some(c) = &i.counters {
        s += &format!(
            "        input: {} packets, {} bytes, {} errors\n        output: {} packets, {} bytes, {} errors\n",
            c.ipackets, c.ibytes, c.ierrors, c.opackets, c.obytes, c.oerrors
        );
    }
    if let Some(b) = &i.bus {
        s += &format!(
            "        bus: sent {} ({} bytes), received {} ({} bytes), filtered {}, lost {}, foreign {}, corrupt {}, resyncs {}, uncounted_resyncs {}, lock_recoveries {} (dead {}, zombie {}, silent {}, stuck {}), ring_resets {}, rx_queue_drops {}\n",
            b.sent, b.sent_bytes, b.received, b.received_bytes, b.filtered, b.lost, b.foreign,
            b.corrupt, b.resyncs, b.uncounted_resyncs, b.lock_recoveries, b.lock_broken_dead,
            b.lock_broken_zombie, b.lock_broken_silent, b.lock_broken_stuck, b.ring_resets,
            b.rx_queue_drops
        );
    }
    if let Some(t) = &i.tap {
        s += &format!(
            "        tap: sent {} ({} bytes), received {} ({} bytes), send_errors {}, recv_errors {}, truncated {}, rx_queue_drops {}\n",
            t.sent, t.sent_bytes, t.received, t.received_bytes, t.send_errors, t.recv_errors,
            t.truncated, t.rx_queue_drops
        );
    }
    s
}

/// One parsed `ifconfig IF ...` action list.
#[derive(Default)]
struct Actions {
    create: bool,
    destroy: bool,
    up: Option<bool>,
    mtu: Option<usize>,
    linkstr: Option<Option<String>>,
    /// `linkstr PATH netbsd`: attach with `shmif::BusConfig::netbsd()`.
    netbsd: bool,
    addr: Option<(Ipv4Addr, Option<u8>)>,
    netmask: Option<u8>,
    alias: bool,
    delete: bool,
}

fn parse_actions(words: &[String]) -> Result<Actions, CmdError> {
    let mut a = Actions::default();
    let mut it = words.iter();
    let value = |it: &mut std::slice::Iter<'_, String>, what: &str| {
        it.next()
            .cloned()
            .ok_or_else(|| CmdError::usage(format!("{what}: missing value")))
    };
    while let Some(w) = it.next() {
        match w.as_str() {
            "create" => a.create = true,
            "destroy" => a.destroy = true,
            "up" => a.up = Some(true),
            "down" => a.up = Some(false),
            "inet" => {}
            "alias" => a.alias = true,
            "-alias" | "delete" => a.delete = true,
            "-linkstr" => a.linkstr = Some(None),
            "linkstr" => {
                a.linkstr = Some(Some(value(&mut it, "linkstr")?));
                // A shmlab keyword after the path; NetBSD's `linkstr PATH` is unchanged.
                if it.as_slice().first().is_some_and(|w| w == "netbsd") {
                    it.next();
                    a.netbsd = true;
                }
            }
            "netbsd" => {
                return Err(CmdError::usage(
                    "netbsd: goes right after the bus path: linkstr PATH netbsd",
                ))
            }
            "mtu" => {
                let v = value(&mut it, "mtu")?;
                let m: usize = v
                    .parse()
                    .ok()
                    .filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
                    .ok_or_else(|| {
                        CmdError::usage(format!("mtu {v}: invalid (allowed {MIN_MTU}..{MAX_MTU})"))
                    })?;
                a.mtu = Some(m);
            }
            "netmask" => a.netmask = Some(mask_to_prefix(&value(&mut it, "netmask")?)?),
            "broadcast" => {
                // Derived from the prefix; accepted for script compatibility.
                value(&mut it, "broadcast")?;
            }
            other => {
                if a.addr.is_some() {
                    return Err(CmdError::usage(format!(
                        "{other}: unexpected word (one address per command)"
                    )));
                }
                a.addr = Some(parse_cidr(other).map_err(|_| {
                    CmdError::usage(format!(
                        "{other}: unknown keyword or bad address (expected create, destroy, up, down, mtu N, linkstr FILE [netbsd], inet ADDR[/LEN], netmask M, alias, delete)"
                    ))
                })?);
            }
        }
    }
    Ok(a)
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(mut args) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    args.json |= super::take_flag(&mut args.words, "--json");
    if args.list {
        let names: Vec<&str> = stack.ifaces.iter().map(|i| i.name.as_str()).collect();
        if args.json {
            ctx.out.json(&names);
        } else {
            ctx.out.out(names.join(" "));
        }
        return Ok(Done::Exit(0));
    }
    let Some((name, rest)) = args.words.split_first().filter(|_| !args.all) else {
        if args.all && !args.words.is_empty() {
            return Err(CmdError::usage("-a takes no interface"));
        }
        let all: Vec<IfInfo> = stack.ifaces.iter().map(|i| info(i, args.verbose)).collect();
        if args.json {
            ctx.out.json(&all);
        } else {
            for i in &all {
                ctx.out.out(render(i));
            }
        }
        return Ok(Done::Exit(0));
    };
    let act = parse_actions(rest)?;
    if act.netbsd && IfKind::of(name) == Some(IfKind::Virt) {
        return Err(CmdError::usage(format!(
            "{name}: linkstr ... netbsd is for buses (shmifN); a virt interface attaches to a host tap"
        )));
    }
    let err = |e: crate::stack::IfError| CmdError::fail(e.to_string());
    if act.create {
        stack.create_iface(name).map_err(err)?;
        // NetBSD's virtN opens host tap tapN unless a linkstr says otherwise.
        if IfKind::of(name) == Some(IfKind::Virt) && act.linkstr.is_none() {
            let tap = name.replacen("virt", "tap", 1);
            if let Err(e) = stack.attach_tap(name, &tap) {
                let _ = stack.destroy_iface(name);
                return Err(err(e));
            }
        }
    }
    if act.destroy {
        stack.destroy_iface(name).map_err(err)?;
        return Ok(Done::Exit(0));
    }
    if stack.iface(name).is_none() {
        return Err(CmdError::fail(format!(
            "{name}: no such interface (create it first: ifconfig {name} create)"
        )));
    }
    if let Some(l) = &act.linkstr {
        let attached = match (l, IfKind::of(name)) {
            (Some(tap), Some(IfKind::Virt)) => stack.attach_tap(name, tap),
            (Some(path), _) => {
                let config = if act.netbsd {
                    shmif::BusConfig::netbsd()
                } else {
                    shmif::BusConfig::default()
                };
                stack.attach_bus(name, Path::new(path), &config)
            }
            (None, _) => stack.detach(name),
        };
        if let Err(e) = attached {
            // A failed `create ... linkstr` leaves no half-made interface behind.
            if act.create {
                let _ = stack.destroy_iface(name);
            }
            return Err(err(e));
        }
    }
    if let Some(m) = act.mtu {
        stack.iface_mut(name).map_err(err)?.mtu = m;
    }
    if let Some((addr, len)) = act.addr {
        if act.delete {
            if !stack.delete_addr(name, addr.into()).map_err(err)? {
                return Err(CmdError::fail(format!(
                    "{name}: {addr}: no such address on this interface"
                )));
            }
        } else {
            let prefix = len.or(act.netmask).unwrap_or_else(|| classful_prefix(addr));
            if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
                return Err(CmdError::usage(format!(
                    "{addr}: not a usable host address"
                )));
            }
            stack
                .add_addr(name, IfAddr::v4(addr, prefix), act.alias)
                .map_err(err)?;
        }
    } else if act.delete || act.alias || act.netmask.is_some() {
        return Err(CmdError::usage("alias, delete and netmask need an address"));
    }
    if let Some(up) = act.up {
        stack.set_up(name, up).map_err(err)?;
    }
    let nothing = !act.create
        && act.linkstr.is_none()
        && act.mtu.is_none()
        && act.addr.is_none()
        && act.up.is_none();
    if nothing {
        let i = info(stack.iface(name).expect("checked above"), args.verbose);
        if args.json {
            ctx.out.json(&i);
        } else {
            ctx.out.out(render(&i));
        }
    }
    Ok(Done::Exit(0))
}
