//! Node commands. Each lives in its own module, parses its argv with clap and builds one
//! result struct that prints either as NetBSD-style text or, with `--json`, as JSON.
//! [`COMMANDS`] is the dispatch table.

mod arp;
mod halt;
mod ifconfig;
mod netstat;
mod ping;
mod route;
mod sysctl;
mod traceroute;

use std::net::Ipv4Addr;
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
    (
        "netstat",
        "routing table and protocol statistics",
        netstat::run,
    ),
    ("ping", "send ICMP echo requests", ping::run),
    ("route", "edit and show the routing table", route::run),
    ("sysctl", "read and set tunables", sysctl::run),
    (
        "traceroute",
        "show the routers on the path to a host",
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
}
