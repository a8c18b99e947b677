//! `sysctl`: read and set the node's tunables (NetBSD names).

use clap::Parser;
use serde::Serialize;

use super::{parse, CmdError, Ctx, Done};
use crate::stack::{Stack, Sysctl};

#[derive(Parser)]
#[command(name = "sysctl", about = "get or set node tunables")]
struct Args {
    /// Set: each NAME=VALUE.
    #[arg(short = 'w')]
    write: bool,
    /// All variables.
    #[arg(short = 'a')]
    all: bool,
    /// Values only.
    #[arg(short = 'n')]
    values_only: bool,
    /// Quiet when setting.
    #[arg(short = 'q')]
    quiet: bool,
    #[arg(long)]
    json: bool,
    names: Vec<String>,
}

struct Var {
    name: &'static str,
    get: fn(&Sysctl) -> u64,
    set: fn(&mut Sysctl, u64),
    range: (u64, u64),
}

const VARS: &[Var] = &[
    Var {
        name: "net.inet.icmp.errppslimit",
        get: |s| s.icmp_errppslimit as u64,
        set: |s, v| s.icmp_errppslimit = v as u32,
        range: (0, 1_000_000),
    },
    Var {
        name: "net.inet.ip.forwarding",
        get: |s| s.forwarding as u64,
        set: |s, v| s.forwarding = v != 0,
        range: (0, 1),
    },
    Var {
        name: "net.inet.ip.ttl",
        get: |s| s.ttl as u64,
        set: |s, v| s.ttl = v as u8,
        range: (1, 255),
    },
    Var {
        name: "net.inet6.icmp6.errppslimit",
        get: |s| s.icmp6_errppslimit as u64,
        set: |s, v| s.icmp6_errppslimit = v as u32,
        range: (0, 1_000_000),
    },
    Var {
        name: "net.inet6.ip6.dad_count",
        get: |s| s.dad_count as u64,
        set: |s, v| s.dad_count = v as u8,
        // One solicitation a second: more than 15 leaves addresses tentative for long.
        range: (0, 15),
    },
    Var {
        name: "net.inet6.ip6.forwarding",
        get: |s| s.forwarding6 as u64,
        set: |s, v| s.forwarding6 = v != 0,
        range: (0, 1),
    },
    Var {
        name: "net.inet6.ip6.hlim",
        get: |s| s.hlim as u64,
        set: |s, v| s.hlim = v as u8,
        range: (1, 255),
    },
];

#[derive(Serialize)]
struct Value {
    name: &'static str,
    value: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    old: Option<u64>,
}

fn find(name: &str) -> Result<&'static Var, CmdError> {
    VARS.iter().find(|v| v.name == name).ok_or_else(|| {
        let known: Vec<&str> = VARS.iter().map(|v| v.name).collect();
        CmdError::fail(format!(
            "{name}: no such variable (known: {})",
            known.join(", ")
        ))
    })
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(args) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    let mut results = Vec::new();
    if args.all || args.names.is_empty() {
        results.extend(VARS.iter().map(|v| Value {
            name: v.name,
            value: (v.get)(&stack.sysctl),
            old: None,
        }));
    }
    for n in &args.names {
        match n.split_once('=') {
            Some((name, val)) => {
                let v = find(name)?;
                let new: u64 = val
                    .parse()
                    .ok()
                    .filter(|x| (v.range.0..=v.range.1).contains(x))
                    .ok_or_else(|| {
                        CmdError::fail(format!(
                            "{name}: invalid value {val:?} (allowed {}..{})",
                            v.range.0, v.range.1
                        ))
                    })?;
                let old = (v.get)(&stack.sysctl);
                (v.set)(&mut stack.sysctl, new);
                results.push(Value {
                    name: v.name,
                    value: new,
                    old: Some(old),
                });
            }
            None if args.write => {
                return Err(CmdError::usage(format!("-w {n}: expected NAME=VALUE")));
            }
            None => {
                // A prefix lists everything under it (sysctl net.inet.ip).
                let matched: Vec<&Var> = VARS
                    .iter()
                    .filter(|v| v.name == n || v.name.starts_with(&format!("{n}.")))
                    .collect();
                if matched.is_empty() {
                    find(n)?;
                }
                results.extend(matched.into_iter().map(|v| Value {
                    name: v.name,
                    value: (v.get)(&stack.sysctl),
                    old: None,
                }));
            }
        }
    }
    if args.json {
        ctx.out.json(&results);
    } else {
        for r in &results {
            match (r.old, args.values_only) {
                // NetBSD: -q prints nothing for writes, -n or not.
                (Some(_), _) if args.quiet => {}
                (_, true) => ctx.out.out(r.value.to_string()),
                (Some(old), false) => ctx.out.out(format!("{}: {} -> {}", r.name, old, r.value)),
                (None, false) => ctx.out.out(format!("{} = {}", r.name, r.value)),
            }
        }
    }
    Ok(Done::Exit(0))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{ok, run, stack};

    #[test]
    fn inet6_variables_read_write_and_quiet() {
        let mut s = stack(0);
        assert_eq!(
            ok(&mut s, "sysctl net.inet6.ip6.forwarding"),
            "net.inet6.ip6.forwarding = 0\n"
        );
        assert_eq!(
            ok(&mut s, "sysctl -w net.inet6.ip6.forwarding=1"),
            "net.inet6.ip6.forwarding: 0 -> 1\n"
        );
        assert!(s.sysctl.forwarding6);
        assert_eq!(ok(&mut s, "sysctl -n -w net.inet6.ip6.hlim=32"), "32\n");
        assert_eq!(s.sysctl.hlim, 32);
        assert_eq!(ok(&mut s, "sysctl -q -w net.inet6.ip6.dad_count=0"), "");
        assert_eq!(ok(&mut s, "sysctl -q -n -w net.inet6.ip6.dad_count=2"), "");
        assert_eq!(s.sysctl.dad_count, 2);
        assert_eq!(ok(&mut s, "sysctl -n net.inet6.icmp6.errppslimit"), "100\n");
        ok(&mut s, "sysctl -w net.inet6.icmp6.errppslimit=0");
        assert_eq!(s.sysctl.icmp6_errppslimit, 0);
        let all = ok(&mut s, "sysctl net.inet6");
        assert_eq!(
            all,
            "net.inet6.icmp6.errppslimit = 0\nnet.inet6.ip6.dad_count = 2\nnet.inet6.ip6.forwarding = 1\nnet.inet6.ip6.hlim = 32\n"
        );
        assert_eq!(ok(&mut s, "sysctl -a").lines().count(), 7);
        for bad in [
            "sysctl -w net.inet6.ip6.hlim=0",
            "sysctl -w net.inet6.ip6.hlim=256",
            "sysctl -w net.inet6.ip6.forwarding=2",
            "sysctl -w net.inet6.ip6.dad_count=16",
            "sysctl net.inet6.ip6.nosuch",
        ] {
            assert_eq!(run(&mut s, bad).code, Some(1), "{bad}");
        }
        // IPv4 is unchanged.
        assert_eq!(ok(&mut s, "sysctl -n net.inet.ip.ttl"), "64\n");
    }
}
