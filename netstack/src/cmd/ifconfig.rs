//! `ifconfig`: create, attach, address and show interfaces (NetBSD syntax).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use super::{
    classful_prefix, is_link_local, mask_to_prefix, parse, parse_cidr, parse_cidr6,
    parse_prefixlen6, CmdError, Ctx, Done,
};
use crate::apps::wait_dad::WaitDad;
use crate::apps::Job;
use crate::stack::{AddrFlags, IfAddr, IfCounters, IfKind, Iface, Stack, MAX_MTU, MIN_MTU};

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
    /// Wait up to this many seconds (0: for ever) until no address is tentative (DAD done).
    #[arg(short = 'w', value_name = "SECS")]
    wait: Option<String>,
    #[arg(long)]
    json: bool,
    /// INTERFACE [create|destroy|up|down|mtu N|linkstr FILE-OR-TAP [netbsd]|-linkstr|
    /// [inet] ADDR[/LEN] [netmask MASK] [alias|-alias|delete]|
    /// inet6 ADDR[%IF][/LEN] [prefixlen N] [alias|-alias|delete]]...
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    words: Vec<String>,
}

#[derive(Serialize)]
struct InetInfo {
    addr: Ipv4Addr,
    prefix: u8,
    broadcast: Ipv4Addr,
}

/// An IPv6 address as `ifconfig` shows it (NetBSD's af_inet6 line).
#[derive(Serialize)]
struct Inet6Info {
    addr: Ipv6Addr,
    prefix: u8,
    /// NetBSD's IN6_IFF_* bits.
    flags: u32,
    flag_names: Vec<&'static str>,
    /// The interface index, for link-local addresses (`scopeid 0x1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    scopeid: Option<u32>,
}

/// NetBSD's IN6_IFF_* bits, in snprintb order.
const IN6_IFF_TENTATIVE: u32 = 0x02;
const IN6_IFF_DUPLICATED: u32 = 0x04;
const IN6_IFF_DEPRECATED: u32 = 0x10;
const IN6_IFF_AUTOCONF: u32 = 0x40;

fn in6_flags(f: &AddrFlags) -> (u32, Vec<&'static str>) {
    let all = [
        (f.tentative, IN6_IFF_TENTATIVE, "TENTATIVE"),
        (f.duplicated, IN6_IFF_DUPLICATED, "DUPLICATED"),
        (f.deprecated, IN6_IFF_DEPRECATED, "DEPRECATED"),
        (f.autoconf, IN6_IFF_AUTOCONF, "AUTOCONF"),
    ];
    let set = all.iter().filter(|(on, _, _)| *on);
    (
        set.clone().map(|(_, b, _)| b).sum(),
        set.map(|(_, _, n)| *n).collect(),
    )
}

/// `0x0`, `0x2<TENTATIVE>`: NetBSD's snprintb(3) of the flags.
fn bits_text(flags: u32, names: &[&str]) -> String {
    if names.is_empty() {
        format!("0x{flags:x}")
    } else {
        format!("0x{flags:x}<{}>", names.join(","))
    }
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
    inet6: Vec<Inet6Info>,
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
        inet6: i
            .addrs
            .iter()
            .filter_map(|a| {
                let addr: Ipv6Addr = a.get()?;
                let (flags, flag_names) = in6_flags(&a.flags);
                Some(Inet6Info {
                    addr,
                    prefix: a.prefix,
                    flags,
                    flag_names,
                    scopeid: is_link_local(addr).then_some(i.index),
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

/// Which address families `ifconfig IF inet6` (or `-a inet`) shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fam {
    Inet,
    Inet6,
}

fn fam_of(word: &str) -> Option<Fam> {
    match word {
        "inet" => Some(Fam::Inet),
        "inet6" => Some(Fam::Inet6),
        _ => None,
    }
}

/// Keeps only the addresses of `fam` (as `ifconfig IF inet6` shows them).
fn only(mut i: IfInfo, fam: Option<Fam>) -> IfInfo {
    match fam {
        Some(Fam::Inet) => i.inet6.clear(),
        Some(Fam::Inet6) => i.inet.clear(),
        None => {}
    }
    i
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
        s += &format!("\taddress: {a}\n");
    }
    if let Some(l) = &i.linkstr {
        s += &format!("\tlinkstr: {l}\n");
    }
    if let Some(m) = i.bus_mode {
        s += &format!("\tbus mode: {m}\n");
    }
    for a in &i.inet {
        s += &format!(
            "\tinet {}/{} broadcast {} flags 0x0\n",
            a.addr, a.prefix, a.broadcast
        );
    }
    for a in &i.inet6 {
        let scope = if a.scopeid.is_some() {
            format!("%{}", i.name)
        } else {
            String::new()
        };
        s += &format!(
            "\tinet6 {}{scope}/{} flags {}",
            a.addr,
            a.prefix,
            bits_text(a.flags, &a.flag_names)
        );
        if let Some(id) = a.scopeid {
            s += &format!(" scopeid 0x{id:x}");
        }
        s.push('\n');
    }
    if let Some(c) = &i.counters {
        s += &format!(
            "\tinput: {} packets, {} bytes, {} errors\n\toutput: {} packets, {} bytes, {} errors\n",
            c.ipackets, c.ibytes, c.ierrors, c.opackets, c.obytes, c.oerrors
        );
    }
    if let Some(b) = &i.bus {
        s += &format!(
            "\tbus: sent {} ({} bytes), received {} ({} bytes), filtered {}, lost {}, foreign {}, corrupt {}, resyncs {}, uncounted_resyncs {}, lock_recoveries {} (dead {}, zombie {}, silent {}, stuck {}), ring_resets {}, rx_queue_drops {}\n",
            b.sent, b.sent_bytes, b.received, b.received_bytes, b.filtered, b.lost, b.foreign,
            b.corrupt, b.resyncs, b.uncounted_resyncs, b.lock_recoveries, b.lock_broken_dead,
            b.lock_broken_zombie, b.lock_broken_silent, b.lock_broken_stuck, b.ring_resets,
            b.rx_queue_drops
        );
    }
    if let Some(t) = &i.tap {
        s += &format!(
            "\ttap: sent {} ({} bytes), received {} ({} bytes), send_errors {}, recv_errors {}, truncated {}, rx_queue_drops {}\n",
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
    addr: Option<AddrArg>,
    netmask: Option<u8>,
    /// `prefixlen N` (inet6).
    prefixlen: Option<u8>,
    /// The last `inet` / `inet6` keyword.
    family: Option<Fam>,
    alias: bool,
    delete: bool,
}

enum AddrArg {
    V4(Ipv4Addr, Option<u8>),
    /// The address, the `%IF` it was given with, the `/LEN`.
    V6(Ipv6Addr, Option<String>, Option<u8>),
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
            "inet" => a.family = Some(Fam::Inet),
            "inet6" => a.family = Some(Fam::Inet6),
            "prefixlen" => a.prefixlen = Some(parse_prefixlen6(&value(&mut it, "prefixlen")?)?),
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
                a.addr = Some(if a.family == Some(Fam::Inet6) {
                    let (addr, scope, len) = parse_cidr6(other)?;
                    AddrArg::V6(addr, scope.map(str::to_string), len)
                } else {
                    let (addr, len) = parse_cidr(other).map_err(|_| {
                        if parse_cidr6(other).is_ok() {
                            return CmdError::usage(format!(
                                "{other}: an IPv6 address needs the inet6 keyword (ifconfig IF inet6 {other})"
                            ));
                        }
                        CmdError::usage(format!(
                            "{other}: unknown keyword or bad address (expected create, destroy, up, down, mtu N, linkstr FILE [netbsd], inet ADDR[/LEN], netmask M, inet6 ADDR[/LEN], prefixlen N, alias, delete)"
                        ))
                    })?;
                    AddrArg::V4(addr, len)
                });
            }
        }
    }
    if a.prefixlen.is_some() && !matches!(a.addr, Some(AddrArg::V6(..))) {
        return Err(CmdError::usage("prefixlen: goes with an inet6 address"));
    }
    if a.netmask.is_some() && matches!(a.addr, Some(AddrArg::V6(..))) {
        return Err(CmdError::usage(
            "netmask: is for inet; give an inet6 prefix as ADDR/LEN or prefixlen N",
        ));
    }
    Ok(a)
}

/// NetBSD's default inet6 prefix length.
const DEFAULT_PREFIXLEN6: u8 = 64;

/// Why `addr` cannot be an interface's IPv6 address, if it cannot.
fn bad_host6(addr: Ipv6Addr) -> Option<&'static str> {
    if addr.is_unspecified() {
        Some("the unspecified address cannot be assigned")
    } else if addr.is_multicast() {
        Some("a multicast address cannot be assigned (interfaces join groups instead)")
    } else if addr.to_ipv4_mapped().is_some() {
        Some("an IPv4-mapped address cannot be assigned (use inet for IPv4)")
    } else if addr.is_loopback() {
        Some("the loopback address belongs to lo0, which this node does not have")
    } else {
        None
    }
}

/// Adds or deletes an IPv6 address. NetBSD's inet6 never replaces an address: without `alias`
/// it adds one all the same.
fn inet6(
    stack: &mut Stack,
    name: &str,
    act: &Actions,
    (addr, scope, len): (Ipv6Addr, Option<&str>, Option<u8>),
) -> Result<(), CmdError> {
    let err = |e: crate::stack::IfError| CmdError::fail(e.to_string());
    if let Some(sc) = scope {
        if sc != name {
            return Err(CmdError::usage(format!(
                "{addr}%{sc}: scope is not this interface ({name})"
            )));
        }
    }
    if act.delete {
        if !stack.delete_addr(name, addr.into()).map_err(err)? {
            return Err(CmdError::fail(format!(
                "{name}: {addr}: no such address on this interface"
            )));
        }
        return Ok(());
    }
    if let Some(why) = bad_host6(addr) {
        return Err(CmdError::usage(format!("{addr}: {why}")));
    }
    let prefix = act.prefixlen.or(len).unwrap_or(DEFAULT_PREFIXLEN6);
    stack
        .add_addr(name, IfAddr::new(addr.into(), prefix), true)
        .map_err(err)
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(mut args) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    args.json |= super::take_flag(&mut args.words, "--json");
    if let Some(w) = &args.wait {
        return wait_dad(stack, ctx, w, &args);
    }
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
        let fam = match args.words.as_slice() {
            [] => None,
            [f] if fam_of(f).is_some() => fam_of(f),
            _ => {
                return Err(CmdError::usage(
                    "-a takes no interface (only a family: inet, inet6)",
                ))
            }
        };
        let all: Vec<IfInfo> = stack
            .ifaces
            .iter()
            .map(|i| only(info(i, args.verbose), fam))
            .collect();
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
    if let Some(AddrArg::V6(addr, scope, len)) = &act.addr {
        inet6(stack, name, &act, (*addr, scope.as_deref(), *len))?;
    } else if let Some(AddrArg::V4(addr, len)) = act.addr {
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
    // Giving an Ethernet interface an address brings it up on NetBSD (ether_ioctl's
    // SIOCINITIFADDR), unless the same command says `down`.
    let added = act.addr.is_some() && !act.delete;
    if let Some(up) = act.up.or(added.then_some(true)) {
        stack.set_up(name, up).map_err(err)?;
    }
    let nothing = !act.create
        && act.linkstr.is_none()
        && act.mtu.is_none()
        && act.addr.is_none()
        && act.up.is_none();
    if nothing {
        let i = only(
            info(stack.iface(name).expect("checked above"), args.verbose),
            act.family,
        );
        if args.json {
            ctx.out.json(&i);
        } else {
            ctx.out.out(render(&i));
        }
    }
    Ok(Done::Exit(0))
}

/// `ifconfig -w SECS`: at once if no address is tentative, else as a job that ends when DAD is
/// over everywhere or fails ("timed out") after SECS seconds (0: never).
fn wait_dad(stack: &Stack, ctx: &Ctx<'_>, secs: &str, args: &Args) -> Result<Done, CmdError> {
    if args.all || args.list || args.verbose || !args.words.is_empty() {
        return Err(CmdError::usage(
            "-w waits for DAD on every interface and takes no other option or interface",
        ));
    }
    let secs: u32 = secs
        .parse()
        .ok()
        .filter(|s| *s < i32::MAX as u32)
        .ok_or_else(|| CmdError::fail(format!("{secs}: not a number")))?;
    if !stack.dad_in_progress() {
        return Ok(Done::Exit(0));
    }
    let limit = (secs > 0).then(|| ctx.now + Duration::from_secs(secs.into()));
    Ok(Done::Job(Box::new(Job::WaitDad(WaitDad::new(limit)))))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::testutil::{collect, ok, run, stack, start};
    use super::*;

    #[test]
    fn inet6_addresses_are_added_shown_and_deleted() {
        let mut s = stack(1);
        ok(&mut s, "ifconfig shmif0 inet 10.0.0.1/24");
        ok(&mut s, "ifconfig shmif0 inet6 fd00:1::1");
        ok(&mut s, "ifconfig shmif0 inet6 fd00:2::1/48");
        ok(&mut s, "ifconfig shmif0 inet6 fd00:3::1 prefixlen 56 alias");
        ok(&mut s, "ifconfig shmif0 inet6 fe80::1%shmif0/64");
        let out = ok(&mut s, "ifconfig shmif0");
        let lines: Vec<&str> = out.lines().filter(|l| l.contains("inet")).collect();
        assert_eq!(
            lines,
            [
                "\tinet 10.0.0.1/24 broadcast 10.0.0.255 flags 0x0",
                "\tinet6 fd00:1::1/64 flags 0x0",
                "\tinet6 fd00:2::1/48 flags 0x0",
                "\tinet6 fd00:3::1/56 flags 0x0",
                "\tinet6 fe80::1%shmif0/64 flags 0x0 scopeid 0x1",
            ],
            "{out}"
        );
        // A family word shows that family only.
        let v6 = ok(&mut s, "ifconfig shmif0 inet6");
        assert!(!v6.contains("inet "), "{v6}");
        assert!(v6.contains("inet6 fd00:1::1/64"), "{v6}");
        let v4 = ok(&mut s, "ifconfig -a inet");
        assert!(!v4.contains("inet6"), "{v4}");
        ok(&mut s, "ifconfig shmif0 inet6 fd00:2::1 delete");
        ok(&mut s, "ifconfig shmif0 inet6 fd00:3::1 -alias");
        let out = ok(&mut s, "ifconfig -a");
        assert!(
            !out.contains("fd00:2::1") && !out.contains("fd00:3::1"),
            "{out}"
        );
        assert!(out.contains("inet 10.0.0.1/24") && out.contains("inet6 fd00:1::1/64"));
        let r = run(&mut s, "ifconfig shmif0 inet6 fd00:9::9 delete");
        assert_eq!(r.code, Some(1));
        assert!(r.err.contains("no such address"), "{}", r.err);
    }

    #[test]
    fn address_flags_print_as_netbsd_snprintb() {
        let mut s = stack(1);
        ok(&mut s, "ifconfig shmif0 inet6 fe80::2%shmif0");
        let a = s.ifaces[0].addrs.iter_mut().next().unwrap();
        a.flags.tentative = true;
        a.flags.autoconf = true;
        let out = ok(&mut s, "ifconfig shmif0");
        assert!(
            out.contains("inet6 fe80::2%shmif0/64 flags 0x42<TENTATIVE,AUTOCONF> scopeid 0x1"),
            "{out}"
        );
        s.ifaces[0].addrs[0].flags = AddrFlags {
            duplicated: true,
            deprecated: true,
            ..AddrFlags::default()
        };
        let out = ok(&mut s, "ifconfig shmif0");
        assert!(out.contains("flags 0x14<DUPLICATED,DEPRECATED>"), "{out}");
        let json: serde_json::Value =
            serde_json::from_str(ok(&mut s, "ifconfig shmif0 --json").trim()).unwrap();
        let a = &json["inet6"][0];
        assert_eq!(a["addr"], "fe80::2");
        assert_eq!(a["prefix"], 64);
        assert_eq!(a["flags"], 0x14);
        assert_eq!(
            a["flag_names"],
            serde_json::json!(["DUPLICATED", "DEPRECATED"])
        );
        assert_eq!(a["scopeid"], 1);
    }

    #[test]
    fn bad_inet6_arguments_are_refused() {
        let mut s = stack(2);
        for (argv, want) in [
            ("ifconfig shmif0 inet6 fd00::1/129", "bad prefixlen"),
            (
                "ifconfig shmif0 inet6 fd00::1 prefixlen 200",
                "bad prefixlen",
            ),
            ("ifconfig shmif0 inet6 fd00::1 prefixlen x", "bad prefixlen"),
            ("ifconfig shmif0 inet6 ff02::1", "multicast"),
            ("ifconfig shmif0 inet6 ::", "unspecified"),
            ("ifconfig shmif0 inet6 ::ffff:10.0.0.1", "IPv4-mapped"),
            ("ifconfig shmif0 inet6 ::1", "loopback"),
            ("ifconfig shmif0 inet6 10.0.0.1", "bad IPv6 address"),
            (
                "ifconfig shmif0 inet6 fe80::1%shmif1",
                "scope is not this interface",
            ),
            ("ifconfig shmif0 fd00::1/64", "needs the inet6 keyword"),
            (
                "ifconfig shmif0 inet 10.0.0.1 prefixlen 24",
                "goes with an inet6 address",
            ),
            (
                "ifconfig shmif0 inet6 fd00::1 netmask 255.0.0.0",
                "netmask: is for inet",
            ),
            ("ifconfig shmif9 inet6 fd00::1", "no such interface"),
        ] {
            let r = run(&mut s, argv);
            assert_ne!(r.code, Some(0), "{argv}");
            assert!(r.err.contains(want), "{argv}: {}", r.err);
        }
        assert!(s.ifaces.iter().all(|i| i.addrs.is_empty()));
    }

    #[test]
    fn wait_for_dad_ends_when_nothing_is_tentative_or_times_out() {
        let t0 = Instant::now();
        let mut s = stack(1);
        // Nothing tentative: done at once.
        let r = collect(&start(&mut s, t0, "ifconfig -w 5"));
        assert_eq!(r.code, Some(0));
        ok(&mut s, "ifconfig shmif0 inet6 fd00::1");
        s.ifaces[0].addrs[0].flags.tentative = true;
        let rx = start(&mut s, t0, "ifconfig -w 2");
        assert_eq!(collect(&rx).code, None, "still waiting");
        assert_eq!(s.apps_running(), 1);
        s.poll(t0 + Duration::from_millis(500));
        assert_eq!(collect(&rx).code, None);
        s.ifaces[0].addrs[0].flags.tentative = false;
        s.poll(t0 + Duration::from_millis(600));
        assert_eq!(collect(&rx).code, Some(0));
        assert_eq!(s.apps_running(), 0);
        // Still tentative after the limit: "timed out", status 1.
        s.ifaces[0].addrs[0].flags.tentative = true;
        let rx = start(&mut s, t0, "ifconfig -w 1");
        s.poll(t0 + Duration::from_millis(1001));
        let r = collect(&rx);
        assert_eq!(r.code, Some(1));
        assert!(r.err.contains("timed out"), "{}", r.err);
        for bad in ["ifconfig -w x", "ifconfig -w 1 shmif0", "ifconfig -a -w 1"] {
            assert_ne!(run(&mut s, bad).code, Some(0), "{bad}");
        }
    }
}
