//! `traceroute` and `traceroute6`: options in NetBSD style; the probing runs as a job
//! (see [`crate::apps::traceroute`]). `traceroute` takes an IPv6 address too.

use std::time::Duration;

use clap::Parser;

use super::{parse, CmdError, Ctx, Done};
use crate::apps::traceroute::{Config, Traceroute};
use crate::apps::Job;
use crate::stack::Stack;

#[derive(Parser)]
#[command(name = "traceroute", about = "print the route packets take to a host")]
struct Args {
    /// Numeric output only.
    #[arg(short = 'n')]
    numeric: bool,
    /// Maximum TTL (hops).
    #[arg(short = 'm', default_value_t = 30)]
    max_ttl: u8,
    /// First TTL.
    #[arg(short = 'f', default_value_t = 1)]
    first_ttl: u8,
    /// Probes per hop.
    #[arg(short = 'q', default_value_t = 3)]
    nqueries: u8,
    /// Seconds to wait for each answer.
    #[arg(short = 'w', default_value_t = 5.0)]
    wait: f64,
    #[arg(long)]
    json: bool,
    host: String,
    /// Probe length in bytes (IP datagram).
    #[arg(default_value_t = 40)]
    packetlen: usize,
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(a) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    let six = ctx.argv.first().is_some_and(|c| c.ends_with("traceroute6"));
    let dst: std::net::IpAddr = a
        .host
        .parse()
        .map_err(|_| CmdError::usage(format!("{}: not a numeric address", a.host)))?;
    if six && dst.is_ipv4() {
        return Err(CmdError::usage(format!(
            "{dst}: traceroute6 takes an IPv6 address (use traceroute)"
        )));
    }
    if a.max_ttl == 0 || a.first_ttl == 0 || a.first_ttl > a.max_ttl {
        return Err(CmdError::usage(
            "need 1 <= first ttl (-f) <= max ttl (-m) <= 255",
        ));
    }
    if a.nqueries == 0 || a.nqueries > 10 {
        return Err(CmdError::usage("-q: probes per hop must be 1..10"));
    }
    if !a.wait.is_finite() || !(0.01..=86400.0).contains(&a.wait) {
        return Err(CmdError::usage("-w: wait must be 0.01..86400 seconds"));
    }
    if !(28..=65000).contains(&a.packetlen) {
        return Err(CmdError::usage("packetlen must be 28..65000"));
    }
    if stack.source_for_ip(dst).is_none() {
        return Err(CmdError::fail(format!("{dst}: No route to host")));
    }
    let cfg = Config {
        dst,
        first_ttl: a.first_ttl,
        max_ttl: a.max_ttl,
        nqueries: a.nqueries,
        wait: Duration::from_secs_f64(a.wait),
        numeric: a.numeric,
        packet_len: a.packetlen,
        json: a.json,
    };
    let ident = stack.new_ident();
    Ok(Done::Job(Box::new(Job::Traceroute(Traceroute::start(
        cfg, ident, ctx.out,
    )))))
}
