//! Node commands. Each lives in its own module, parses its argv with clap and builds one
//! result struct that prints either as NetBSD-style text or, with `--json`, as JSON.
//! [`COMMANDS`] is the dispatch table.

mod arp;
mod halt;
mod ifconfig;
mod ndp;
mod netstat;
mod ping;
mod ping6;
mod route;
mod sysctl;
mod traceroute;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use crate::apps::Job;
use crate::control::Request;
use crate::stack::Stack;

pub use crate::control::Output;

/// How a command ended: at once with a status, or by starting a job the stack drives.
pub enum Done {
    Exit(i32),
    Job(Box<Job>),
}

/// A failed command: one line of error and a status.
#[derive(Debug)]
pub struct CmdError {
    pub msg: String,
    pub code: i32,
}

/// Exit status for bad usage (sysexits EX_USAGE).
pub const EX_USAGE: i32 = 64;

impl CmdError {
    pub fn usage(msg: impl Into<String>) -> CmdError {
        CmdError {
            msg: msg.into(),
            code: EX_USAGE,
        }
    }
    pub fn fail(msg: impl Into<String>) -> CmdError {
        CmdError {
            msg: msg.into(),
            code: 1,
        }
    }
}

pub struct Ctx<'a> {
    pub now: Instant,
    pub argv: &'a [String],
    pub stdin: Option<&'a str>,
    pub out: &'a Output,
}

type Handler = fn(&mut Stack, &Ctx<'_>) -> Result<Done, CmdError>;

/// Every command a node understands: name, one-line summary, handler.
pub const COMMANDS: &[(&str, &str, Handler)] = &[
    ("arp", "show and edit the ARP cache", arp::run),
    ("halt", "stop the node", halt::run),
    ("help", "list commands", help),
    ("ifconfig", "configure interfaces", ifconfig::run),
    ("ndp", "show and edit the IPv6 neighbour cache", ndp::run),
    (
        "netstat",
        "routing table and protocol statistics",
        netstat::run,
    ),
    ("ping", "send ICMP echo requests", ping::run),
    ("ping6", "send ICMPv6 echo requests", ping6::run),
    ("route", "edit and show the routing table", route::run),
    ("sysctl", "read and set tunables", sysctl::run),
    (
        "traceroute",
        "show the routers on the path to a host",
        traceroute::run,
    ),
    (
        "traceroute6",
        "show the routers on the IPv6 path to a host",
        traceroute::run,
    ),
];

fn help(_: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    if ctx.argv.iter().any(|a| a == "--json") {
        let list: Vec<_> = COMMANDS
            .iter()
            .map(|(n, s, _)| serde_json::json!({ "name": n, "summary": s }))
            .collect();
        ctx.out.json(&list);
        return Ok(Done::Exit(0));
    }
    for (name, summary, _) in COMMANDS {
        ctx.out.out(format!("{name:<12}{summary}"));
    }
    Ok(Done::Exit(0))
}

/// Runs one request. Commands that keep running (ping) exit later, from the stack's poll.
pub fn run(stack: &mut Stack, now: Instant, req: &Request, out: Output) {
    let Some(first) = req.argv.first() else {
        out.err("netstack: empty argv (expected a command such as \"ifconfig -a\")");
        return out.exit(EX_USAGE);
    };
    // The compatibility wrappers are named rump.ifconfig and so on.
    let name = first.rsplit('/').next().unwrap_or(first);
    let name = name.strip_prefix("rump.").unwrap_or(name);
    let Some((_, _, handler)) = COMMANDS.iter().find(|(n, _, _)| *n == name) else {
        out.err(format!("{name}: command not found (try \"help\")"));
        return out.exit(127);
    };
    let ctx = Ctx {
        now,
        argv: &req.argv,
        stdin: req.stdin.as_deref(),
        out: &out,
    };
    match handler(stack, &ctx) {
        Ok(Done::Exit(code)) => out.exit(code),
        Ok(Done::Job(job)) => stack.start_app(Box::new(crate::apps::JobSlot { job: *job, out })),
        Err(e) => {
            out.err(format!("{name}: {}", e.msg));
            out.exit(e.code);
        }
    }
}

/// Parses argv with clap. `Ok(None)`: help was printed, the command is done.
pub fn parse<T: clap::Parser>(ctx: &Ctx<'_>) -> Result<Option<T>, CmdError> {
    match T::try_parse_from(ctx.argv) {
        Ok(t) => Ok(Some(t)),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                ctx.out.out(e.render().to_string());
                Ok(None)
            }
            _ => {
                let text = e.render().to_string();
                let line = text.lines().next().unwrap_or("bad arguments");
                let line = line.strip_prefix("error: ").unwrap_or(line);
                Err(CmdError::usage(line.to_string()))
            }
        },
    }
}

/// Removes `flag` from free-form trailing words (where clap cannot see it); true if present.
pub fn take_flag(words: &mut Vec<String>, flag: &str) -> bool {
    let before = words.len();
    words.retain(|w| w != flag);
    words.len() != before
}

pub fn parse_addr(s: &str) -> Result<Ipv4Addr, CmdError> {
    s.parse()
        .map_err(|_| CmdError::usage(format!("{s}: bad IPv4 address")))
}

/// `A.B.C.D` or `A.B.C.D/LEN`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, Option<u8>), CmdError> {
    match s.split_once('/') {
        None => Ok((parse_addr(s)?, None)),
        Some((a, l)) => {
            let len: u8 =
                l.parse().ok().filter(|l| *l <= 32).ok_or_else(|| {
                    CmdError::usage(format!("{s}: bad prefix length {l:?} (0..32)"))
                })?;
            Ok((parse_addr(a)?, Some(len)))
        }
    }
}

/// A netmask like 255.255.255.0 as a prefix length.
pub fn mask_to_prefix(s: &str) -> Result<u8, CmdError> {
    let m = u32::from(parse_addr(s)?);
    let len = m.leading_ones();
    if m.checked_shl(len).unwrap_or(0) != 0 {
        return Err(CmdError::usage(format!("{s}: non-contiguous netmask")));
    }
    Ok(len as u8)
}

/// An IPv6 address as commands take it: `ADDR` or `ADDR%IF`, the interface being the scope
/// of a link-local address (`fe80::1%shmif0`).
pub fn parse_addr6(s: &str) -> Result<(Ipv6Addr, Option<&str>), CmdError> {
    let (a, scope) = match s.split_once('%') {
        Some((a, ifname)) if !ifname.is_empty() => (a, Some(ifname)),
        Some(_) => return Err(CmdError::usage(format!("{s}: empty scope after %"))),
        None => (s, None),
    };
    let addr: Ipv6Addr = a
        .parse()
        .map_err(|_| CmdError::usage(format!("{s}: bad IPv6 address")))?;
    Ok((addr, scope))
}

/// `ADDR[%IF][/LEN]` (LEN 0..128).
pub fn parse_cidr6(s: &str) -> Result<(Ipv6Addr, Option<&str>, Option<u8>), CmdError> {
    let (a, len) = match s.split_once('/') {
        None => (s, None),
        Some((a, l)) => (a, Some(parse_prefixlen6(l)?)),
    };
    let (addr, scope) = parse_addr6(a)?;
    Ok((addr, scope, len))
}

/// An IPv6 prefix length, 0..128.
pub fn parse_prefixlen6(l: &str) -> Result<u8, CmdError> {
    l.parse()
        .ok()
        .filter(|l| *l <= 128)
        .ok_or_else(|| CmdError::usage(format!("{l}: bad prefixlen (0..128)")))
}

/// fe80::/10: only meaningful together with the interface it is on.
pub fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The interface index a `%IF` scope names.
pub fn scope_index(stack: &Stack, ifname: &str) -> Result<u32, CmdError> {
    stack
        .iface(ifname)
        .map(|i| i.index)
        .ok_or_else(|| CmdError::fail(format!("{ifname}: no such interface")))
}

/// An address as NetBSD prints it: link-local ones with their interface, `fe80::1%shmif0`.
pub fn scoped(stack: &Stack, a: Ipv6Addr, ifindex: Option<u32>) -> String {
    match ifindex.filter(|_| is_link_local(a) || a.is_multicast()) {
        Some(ix) => match stack.iface_by_index(ix) {
            Some(i) => format!("{a}%{}", i.name),
            None => format!("{a}%{ix}"),
        },
        None => a.to_string(),
    }
}

/// The IPv6 netmask of a prefix (`route get` prints it as an address).
pub fn mask6(prefix: u8) -> Ipv6Addr {
    match prefix {
        0 => Ipv6Addr::UNSPECIFIED,
        p => Ipv6Addr::from(u128::MAX << (128 - p.min(128) as u32)),
    }
}

/// The historical classful prefix, used when no length is given (as NetBSD does).
pub fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_cidrs() {
        assert_eq!(mask_to_prefix("255.255.255.0").unwrap(), 24);
        assert_eq!(mask_to_prefix("0.0.0.0").unwrap(), 0);
        assert!(mask_to_prefix("255.0.255.0").is_err());
        assert_eq!(
            parse_cidr("10.0.0.1/24").unwrap(),
            (Ipv4Addr::new(10, 0, 0, 1), Some(24))
        );
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("10.0.0/24").is_err());
    }

    #[test]
    fn ipv6_addresses_with_scopes_and_prefixes() {
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        assert_eq!(parse_addr6("fe80::1%shmif0").unwrap(), (ll, Some("shmif0")));
        assert_eq!(parse_addr6("fd00::1").unwrap().1, None);
        assert!(parse_addr6("fe80::1%").is_err());
        assert!(parse_addr6("10.0.0.1").is_err());
        assert_eq!(
            parse_cidr6("fe80::1%shmif0/64").unwrap(),
            (ll, Some("shmif0"), Some(64))
        );
        assert!(parse_cidr6("fd00::1/129").is_err());
        assert!(is_link_local(ll));
        assert!(is_link_local("febf::1".parse().unwrap()));
        assert!(!is_link_local("fec0::1".parse().unwrap()));
        assert_eq!(mask6(64).to_string(), "ffff:ffff:ffff:ffff::");
        assert_eq!(mask6(0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(
            mask6(128).to_string(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
    }
}

/// Running commands against a stack in unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Instant;

    use crate::control::{Reply, Request};
    use crate::stack::Stack;
    use crate::wire::Mac;

    struct Discard;

    impl crate::link::LinkTx for Discard {
        fn send(&self, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
    }

    /// What a command printed: stdout lines, stderr lines, and its exit status (None while
    /// it is still running as a job).
    pub struct Ran {
        pub out: String,
        pub err: String,
        pub code: Option<i32>,
    }

    pub fn collect(rx: &crossbeam_channel::Receiver<Reply>) -> Ran {
        let mut r = Ran {
            out: String::new(),
            err: String::new(),
            code: None,
        };
        for reply in rx.try_iter() {
            match reply {
                Reply::Out(l) => {
                    r.out += &l;
                    r.out.push('\n');
                }
                Reply::Err(l) => {
                    r.err += &l;
                    r.err.push('\n');
                }
                Reply::Exit(c) => r.code = Some(c),
            }
        }
        r
    }

    /// Starts `argv` (split on whitespace); the receiver gets what it prints later (jobs).
    pub fn start(
        stack: &mut Stack,
        now: Instant,
        argv: &str,
    ) -> crossbeam_channel::Receiver<Reply> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let req = Request {
            argv: argv.split_whitespace().map(str::to_string).collect(),
            stdin: None,
        };
        super::run(
            stack,
            now,
            &req,
            super::Output::new(tx, Arc::new(AtomicBool::new(false))),
        );
        rx
    }

    pub fn run(stack: &mut Stack, argv: &str) -> Ran {
        collect(&start(stack, Instant::now(), argv))
    }

    /// Runs `argv` and insists it succeeds; returns its standard output.
    pub fn ok(stack: &mut Stack, argv: &str) -> String {
        let r = run(stack, argv);
        assert_eq!(r.code, Some(0), "{argv}: {}{}", r.out, r.err);
        r.out
    }

    /// A stack with interfaces `shmif0`.. `shmif{n-1}` up on links that discard frames.
    /// A stack with `n` interfaces up and no address at all: no DAD, so addresses are usable
    /// at once, and the automatic link-local addresses removed, so each test shows only the
    /// addresses it adds (the stack's tests cover link-local addresses).
    pub fn stack(n: u8) -> Stack {
        let mut s = Stack::new(None);
        s.sysctl.dad_count = 0;
        for i in 0..n {
            let name = format!("shmif{i}");
            s.create_iface(&name).unwrap();
            s.attach_custom(&name, Mac([0xb2, 0xa0, 0, 0, 0, i + 1]), Box::new(Discard))
                .unwrap();
            s.set_up(&name, true).unwrap();
            let auto: Vec<_> = s
                .ifaces
                .last()
                .unwrap()
                .addrs
                .iter()
                .map(|a| a.addr)
                .collect();
            for a in auto {
                s.delete_addr(&name, a).unwrap();
            }
        }
        s
    }
}
