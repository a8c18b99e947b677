//! `ping6`: NetBSD sbin/ping6 options; the echo exchange is the ping job (see
//! [`crate::apps::ping`]) with an IPv6 destination.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use clap::Parser;

use super::{is_link_local, parse, parse_addr6, scope_index, CmdError, Ctx, Done};
use crate::apps::ping::{Config, Ping};
use crate::apps::Job;
use crate::stack::Stack;

#[derive(Parser)]
#[command(
    name = "ping6",
    about = "send ICMPv6 ECHO_REQUEST packets to network hosts",
    disable_help_flag = true
)]
struct Args {
    /// Print help (-h is the hop limit, as in NetBSD).
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Stop after sending (and receiving) this many requests.
    #[arg(short = 'c')]
    count: Option<String>,
    /// Seconds between requests (fractions allowed, at least 0.01).
    #[arg(short = 'i')]
    interval: Option<String>,
    /// Data bytes per request.
    #[arg(short = 's')]
    size: Option<String>,
    /// Numeric output (always; accepted for compatibility).
    #[arg(short = 'n')]
    numeric: bool,
    /// Quiet: only the first line and the summary.
    #[arg(short = 'q')]
    quiet: bool,
    /// Verbose: also ICMPv6 errors about our requests, and where replies were sent to.
    #[arg(short = 'v')]
    verbose: bool,
    /// Hop limit of the requests.
    #[arg(short = 'h')]
    hoplimit: Option<String>,
    /// Stop after this many seconds whatever happened.
    #[arg(short = 'X')]
    timeout: Option<String>,
    /// Source address (one of this node's).
    #[arg(short = 'S')]
    srcaddr: Option<String>,
    /// Interface to send on (the scope of a link-local or multicast destination).
    #[arg(short = 'I')]
    iface: Option<String>,
    #[arg(long)]
    json: bool,
    /// ADDR or ADDR%IF.
    host: String,
}

/// The most data one unfragmented ICMPv6 echo request carries (65535 - 8).
const MAXDATALEN: usize = 65527;

fn illegal(what: &str, v: &str) -> CmdError {
    CmdError::fail(format!("illegal {what} -- {v}"))
}

/// The source address the stack is expected to choose towards `dst` out of `scope` (or the
/// interface the route says): one of that interface's usable addresses, link-local for
/// link-local and multicast destinations, else preferably one on the destination's (or the
/// next hop's) prefix, else any other global one, link-local as a last resort.
fn source6(stack: &Stack, dst: Ipv6Addr, scope: Option<u32>) -> Result<Ipv6Addr, CmdError> {
    if stack.is_local_addr(dst.into()) {
        return Ok(dst);
    }
    let (ifindex, next) = match scope {
        Some(ix) => (ix, dst),
        None => {
            let hop = stack
                .routes6
                .lookup(dst)
                .ok_or_else(|| CmdError::fail("UDP connect: No route to host"))?;
            (hop.ifindex, hop.addr)
        }
    };
    let iface = stack
        .iface_by_index(ifindex)
        .ok_or_else(|| CmdError::fail("UDP connect: No route to host"))?;
    let mine: Vec<(Ipv6Addr, &crate::stack::IfAddr)> = iface
        .addrs
        .iter()
        .filter(|a| a.usable())
        .filter_map(|a| Some((a.get::<Ipv6Addr>()?, a)))
        .collect();
    let want_ll = is_link_local(dst) || dst.is_multicast();
    let rank = |(a, x): &(Ipv6Addr, &crate::stack::IfAddr)| {
        let ll = is_link_local(*a);
        let scope_fits = ll == want_ll;
        let on_prefix = x.contains(dst) || x.contains(next);
        (!scope_fits, !on_prefix, x.flags.deprecated)
    };
    mine.iter()
        .min_by_key(|c| rank(c))
        .map(|(a, _)| *a)
        .ok_or_else(|| CmdError::fail("UDP connect: Can't assign requested address"))
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(a) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    let _ = a.numeric;
    let count = a
        .count
        .as_deref()
        .map(|c| {
            c.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| illegal("number of packets", c))
        })
        .transpose()?;
    let size = match a.size.as_deref() {
        None => 56,
        Some(v) => {
            let n: usize = v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| illegal("datalen value", v))?;
            if n > MAXDATALEN {
                return Err(CmdError::fail(format!(
                    "datalen value too large, maximum is {MAXDATALEN}"
                )));
            }
            n
        }
    };
    let hoplimit = a
        .hoplimit
        .as_deref()
        .map(|h| h.parse::<u8>().map_err(|_| illegal("hoplimit", h)))
        .transpose()?;
    let interval = match a.interval.as_deref() {
        None => 1.0,
        Some(v) => {
            let i: f64 = v
                .parse()
                .ok()
                .filter(|i: &f64| i.is_finite() && (0.0..=1e6).contains(i))
                .ok_or_else(|| CmdError::fail(format!("illegal timing interval {v}")))?;
            if i < 0.01 {
                ctx.out.err("ping6: too small interval, raised to 0.01");
                0.01
            } else {
                i
            }
        }
    };
    let deadline = a
        .timeout
        .as_deref()
        .map(|t| {
            t.parse::<f64>()
                .ok()
                .filter(|t| t.is_finite() && *t > 0.0 && *t <= 1e6)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| illegal("timeout", t))
        })
        .transpose()?;
    let (dst, dst_scope) = parse_addr6(&a.host).map_err(|_| {
        CmdError::fail(format!(
            "{}: not an IPv6 address (ping6 takes ADDR or ADDR%IF)",
            a.host
        ))
    })?;
    let scope_name = match (dst_scope, a.iface.as_deref()) {
        (Some(s), Some(i)) if s != i => {
            return Err(CmdError::usage(format!(
                "{}: scope {s} is not the interface -I {i}",
                a.host
            )))
        }
        (s, i) => s.or(i).map(str::to_string),
    };
    let scope = scope_name
        .as_deref()
        .map(|n| {
            scope_index(stack, n)
                .map_err(|_| CmdError::fail(format!("{n}: invalid interface name")))
        })
        .transpose()?;
    if (is_link_local(dst) || dst.is_multicast()) && scope.is_none() {
        return Err(CmdError::usage(format!(
            "{dst}: a link-local or multicast destination needs its interface ({dst}%shmif0 or -I shmif0)"
        )));
    }
    if dst.is_unspecified() {
        return Err(CmdError::usage(format!("{dst}: not a destination")));
    }
    let src = match a.srcaddr.as_deref() {
        None => None,
        Some(s) => {
            let (src, _) = parse_addr6(s)
                .map_err(|_| CmdError::fail(format!("invalid source address: {s}")))?;
            if !stack.is_local_addr(src.into()) {
                return Err(CmdError::fail("bind: Can't assign requested address"));
            }
            Some(src)
        }
    };
    let shown_src = match src {
        Some(s) => s,
        None => source6(stack, dst, scope)?,
    };
    let cfg = Config {
        dst: dst.into(),
        scope,
        scope_name,
        src: src.map(IpAddr::V6),
        shown_src: Some(shown_src.into()),
        verbose: a.verbose,
        count,
        interval: Duration::from_secs_f64(interval),
        flood: false,
        size,
        deadline,
        quiet: a.quiet,
        pattern: Vec::new(),
        ttl: hoplimit,
        df: false,
        wait: None,
        json: a.json,
    };
    let ident = stack.new_ident();
    Ok(Done::Job(Box::new(Job::Ping(Box::new(Ping::start(
        cfg, ident, ctx.now, ctx.out,
    ))))))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::testutil::{collect, ok, run, stack, start};
    use super::*;

    fn lab() -> Stack {
        let mut s = stack(2);
        ok(&mut s, "ifconfig shmif0 inet6 fe80::1%shmif0");
        ok(&mut s, "ifconfig shmif0 inet6 fd00:1::1/64");
        ok(&mut s, "ifconfig shmif1 inet6 fe80::2%shmif1");
        ok(&mut s, "route add -inet6 fd00:9::/64 fd00:1::99");
        s
    }

    #[test]
    fn first_line_and_summary_as_netbsd_ping6() {
        let t0 = Instant::now();
        let mut s = lab();
        let rx = start(&mut s, t0, "ping6 -c 2 -i 0.5 fd00:1::2");
        s.poll(t0);
        s.poll(t0 + Duration::from_millis(500));
        // Nothing answers (ping6 gives up ten seconds after the last request).
        s.poll(t0 + Duration::from_millis(10_500));
        let r = collect(&rx);
        let lines: Vec<&str> = r.out.lines().collect();
        assert_eq!(lines[0], "PING6(104=40+8+56 bytes) fd00:1::1 --> fd00:1::2");
        assert_eq!(lines[2], "--- fd00:1::2 ping6 statistics ---");
        assert_eq!(
            lines[3],
            "2 packets transmitted, 0 packets received, 100.0% packet loss"
        );
        assert_eq!(r.code, Some(1), "{}{}", r.out, r.err);
    }

    #[test]
    fn sources_and_scopes() {
        let t0 = Instant::now();
        let mut s = lab();
        let first = |s: &mut Stack, argv: &str| {
            let r = collect(&start(s, t0, argv));
            s.cancel_apps();
            r.out.lines().next().unwrap_or_default().to_string()
        };
        assert_eq!(
            first(&mut s, "ping6 -c 1 fe80::9%shmif1"),
            "PING6(104=40+8+56 bytes) fe80::2%shmif1 --> fe80::9%shmif1"
        );
        assert_eq!(
            first(&mut s, "ping6 -c 1 -s 8 -I shmif0 fe80::9"),
            "PING6(56=40+8+8 bytes) fe80::1%shmif0 --> fe80::9%shmif0"
        );
        assert_eq!(
            first(&mut s, "ping6 -c 1 fd00:9::5"),
            "PING6(104=40+8+56 bytes) fd00:1::1 --> fd00:9::5"
        );
        assert_eq!(
            first(&mut s, "ping6 -c 1 -S fe80::1%shmif0 -I shmif0 ff02::1"),
            "PING6(104=40+8+56 bytes) fe80::1%shmif0 --> ff02::1%shmif0"
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let mut s = lab();
        for (argv, want) in [
            ("ping6 -c 0 fd00:1::2", "illegal number of packets -- 0"),
            ("ping6 -c x fd00:1::2", "illegal number of packets -- x"),
            ("ping6 -h 256 fd00:1::2", "illegal hoplimit -- 256"),
            ("ping6 -s 0 fd00:1::2", "illegal datalen value -- 0"),
            ("ping6 -s 70000 fd00:1::2", "datalen value too large"),
            ("ping6 -i x fd00:1::2", "illegal timing interval x"),
            ("ping6 -X 0 fd00:1::2", "illegal timeout -- 0"),
            ("ping6 fe80::9", "needs its interface"),
            ("ping6 fe80::9%shmif7", "shmif7: invalid interface name"),
            ("ping6 -I shmif1 fe80::9%shmif0", "is not the interface"),
            ("ping6 10.0.0.1", "not an IPv6 address"),
            (
                "ping6 -S fd00:1::77 fd00:1::2",
                "bind: Can't assign requested address",
            ),
            ("ping6 fd00:5::1", "No route to host"),
        ] {
            let r = run(&mut s, argv);
            assert_ne!(r.code, Some(0), "{argv}");
            assert!(r.err.contains(want), "{argv}: {}", r.err);
        }
        assert_eq!(s.apps_running(), 0);
    }
}
