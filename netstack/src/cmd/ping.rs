//! `ping`: NetBSD options; the echo exchange runs as a job (see [`crate::apps::ping`]).

use std::time::Duration;

use clap::Parser;

use super::{parse, parse_addr, CmdError, Ctx, Done};
use crate::apps::ping::{Config, Ping};
use crate::apps::Job;
use crate::stack::Stack;

#[derive(Parser)]
#[command(name = "ping", about = "send ICMP ECHO_REQUEST packets to a host")]
struct Args {
    /// Stop after sending this many requests.
    #[arg(short = 'c')]
    count: Option<u64>,
    /// Seconds between requests (fractions allowed); 1, or 0.01 with -f.
    #[arg(short = 'i')]
    interval: Option<f64>,
    /// Flood: send the next request as soon as the reply to the last one arrives, or after the
    /// interval (0.01 s unless -i says otherwise) if none does; prints only the summary.
    #[arg(short = 'f')]
    flood: bool,
    /// Data bytes per request.
    #[arg(short = 's', default_value_t = 56)]
    size: usize,
    /// Stop after this many seconds whatever happened.
    #[arg(short = 'w')]
    deadline: Option<f64>,
    /// Seconds to wait for replies after the last request.
    #[arg(short = 'W', default_value_t = 2.0)]
    wait: f64,
    /// Numeric output (always; accepted for compatibility).
    #[arg(short = 'n')]
    numeric: bool,
    /// Quiet: only the summary.
    #[arg(short = 'q')]
    quiet: bool,
    /// Fill pattern, up to 16 bytes in hex (e.g. ff00).
    #[arg(short = 'p')]
    pattern: Option<String>,
    /// IP time to live.
    #[arg(short = 'T')]
    ttl: Option<u8>,
    /// Set the Don't Fragment bit.
    #[arg(short = 'D')]
    dont_fragment: bool,
    #[arg(long)]
    json: bool,
    host: String,
}

/// NetBSD's default interval with -f: a hundred requests a second when nothing answers.
const FLOOD_INTERVAL: f64 = 0.01;

fn secs(v: f64, what: &str, min: f64) -> Result<Duration, CmdError> {
    if !v.is_finite() || v < min || v > 1e6 {
        return Err(CmdError::usage(format!(
            "{what} {v}: must be between {min} and 1000000 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

fn pattern(p: &str) -> Result<Vec<u8>, CmdError> {
    let bad = || CmdError::usage(format!("-p {p}: pattern must be 1 to 32 hex digits"));
    if p.is_empty() || p.len() > 32 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let padded = if p.len() % 2 == 1 {
        format!("{p}0")
    } else {
        p.to_string()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).map_err(|_| bad()))
        .collect()
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(a) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    let _ = a.numeric;
    let dst = parse_addr(&a.host).map_err(|_| CmdError {
        msg: format!("Cannot resolve \"{}\" (Unknown host)", a.host),
        code: 68,
    })?;
    if a.size > 65507 {
        return Err(CmdError::usage(format!(
            "-s {}: packet size too large (max 65507)",
            a.size
        )));
    }
    if a.count == Some(0) {
        return Err(CmdError::usage("-c 0: count must be at least 1"));
    }
    if a.ttl == Some(0) {
        return Err(CmdError::usage("-T 0: ttl must be 1..255"));
    }
    let cfg = Config {
        dst: dst.into(),
        scope: None,
        scope_name: None,
        src: None,
        shown_src: None,
        verbose: false,
        count: a.count,
        interval: secs(
            a.interval
                .unwrap_or(if a.flood { FLOOD_INTERVAL } else { 1.0 }),
            "-i",
            0.01,
        )?,
        flood: a.flood,
        size: a.size,
        deadline: a.deadline.map(|d| secs(d, "-w", 0.001)).transpose()?,
        quiet: a.quiet,
        pattern: a
            .pattern
            .as_deref()
            .map(pattern)
            .transpose()?
            .unwrap_or_default(),
        ttl: a.ttl,
        df: a.dont_fragment,
        wait: Some(secs(a.wait, "-W", 0.0)?),
        json: a.json,
    };
    let ident = stack.new_ident();
    Ok(Done::Job(Box::new(Job::Ping(Box::new(Ping::start(
        cfg, ident, ctx.now, ctx.out,
    ))))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(pattern("ff00").unwrap(), vec![0xff, 0]);
        assert_eq!(pattern("abc").unwrap(), vec![0xab, 0xc0]);
        assert!(pattern("xyz").is_err());
        assert!(pattern(&"a".repeat(33)).is_err());
    }
}
