//! virtif-probe: opens a tap the way a node would, prints what it found and closes it.
//!
//! `virtif-probe NAME [--netns NS] [--mtu N] [--down] [--hold SECONDS]`
//! Exits 1 with virtif's message (e.g. the missing-CAP_NET_ADMIN advice) when that fails.

use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: virtif-probe NAME [--netns NS] [--mtu N] [--down] [--hold SECONDS]";

struct Args {
    name: String,
    netns: Option<String>,
    mtu: Option<u32>,
    up: bool,
    hold: Duration,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut name = None;
    let mut args = Args {
        name: String::new(),
        netns: None,
        mtu: None,
        up: true,
        hold: Duration::ZERO,
    };
    while let Some(arg) = argv.next() {
        let mut value = |flag: &str| argv.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--netns" => args.netns = Some(value("--netns")?),
            "--mtu" => {
                let v = value("--mtu")?;
                args.mtu = Some(v.parse().map_err(|_| format!("--mtu: not a number: {v}"))?);
            }
            "--hold" => {
                let v = value("--hold")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or(format!("--hold: not a number of seconds: {v}"))?;
                args.hold = Duration::from_secs_f64(secs);
            }
            "--down" => args.up = false,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}\n{USAGE}")),
            _ if name.is_none() => name = Some(arg),
            _ => return Err(format!("unexpected argument {arg}\n{USAGE}")),
        }
    }
    args.name = name.ok_or(USAGE.to_owned())?;
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let config = virtif::TapConfig {
        name: &args.name,
        netns: args.netns.clone(),
        mtu: args.mtu,
        up: args.up,
    };
    let tap = match virtif::Tap::open(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("virtif-probe: {e}");
            return ExitCode::from(1);
        }
    };
    let mtu = tap.mtu().map_or_else(|e| e.to_string(), |m| m.to_string());
    let up = tap
        .is_up()
        .map_or_else(|e| e.to_string(), |u| u.to_string());
    println!(
        "{} netns={} mac={} mtu={mtu} up={up}",
        tap.name(),
        tap.netns().unwrap_or("-"),
        virtif::format_mac(tap.mac()),
    );
    std::thread::sleep(args.hold);
    ExitCode::SUCCESS
}
