//! `rump.ifconfig`, `rump.route`, `rump.ping` and the other `rump.*` commands: run the node
//! command of that name on the rump server `$RUMP_SERVER` names (`unix://PATH`, a relative
//! PATH being relative to the current directory), print its output as it comes and exit with
//! its status.
//!
//! As NetBSD's rumpclient: no RUMP_SERVER is `error: RUMP_SERVER not set` and
//! `PROG: init failed: No such file or directory`; a URL it cannot parse is `rump_sp: ...` and
//! `init failed: Invalid argument`; a server that is not there is `init failed:` with the
//! connect error; all exit 1. Error lines of the command carry this program's name, as
//! NetBSD's `err(3)` would print them (`rump.ifconfig: ...`).
//!
//! What the server was started with (`rump_server -l`) is enforced here: a command needing a
//! component the server lacks fails as NetBSD's would, with the reason added (see
//! [`needs`]). `LD_PRELOAD` and `RUMPHIJACK` (NetBSD's rumphijack, which scripts often export
//! around these commands) mean nothing to us and are ignored.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use shmlab_control::client::{self, Stream};

use super::components::{component_of, Feature, Loaded};
use super::url;

/// One thing a command needs from the server, and what it says without it.
#[derive(Debug, PartialEq, Eq)]
struct Need {
    feature: Feature,
    message: String,
}

fn need(feature: Feature, message: impl Into<String>) -> Need {
    Need {
        feature,
        message: message.into(),
    }
}

const NO_PROTO: &str = "socket: Protocol not supported";
const NO_FAMILY: &str = "socket: Address family not supported by protocol family";

fn base(v: &mut Vec<Need>) {
    v.push(need(Feature::Net, NO_PROTO));
    v.push(need(Feature::NetNet, NO_PROTO));
}

fn addr_part(w: &str) -> &str {
    w.split(['%', '/']).next().unwrap_or(w)
}

fn is_v4(w: &str) -> bool {
    addr_part(w).parse::<Ipv4Addr>().is_ok()
}

fn is_v6(w: &str) -> bool {
    let a = addr_part(w);
    a.contains(':') && a.parse::<Ipv6Addr>().is_ok()
}

fn family(v: &mut Vec<Need>, inet: bool, inet6: bool) {
    if inet {
        v.push(need(Feature::Inet, NO_FAMILY));
    }
    if inet6 {
        v.push(need(Feature::Inet6, NO_FAMILY));
    }
}

/// What `cmd args` needs: the networking base for every network command, IPv4 or IPv6 for
/// the address family its words name (`inet6`, `-inet6`, `-f inet6`, an IPv6 address,
/// `net.inet6.*`; `route` and `ifconfig` default to inet when given addresses), and the
/// interface driver for `ifconfig shmifN create` / `virtN create`. `halt` needs nothing.
fn needs(cmd: &str, args: &[String]) -> Vec<Need> {
    let mut v = Vec::new();
    match cmd {
        "ifconfig" => {
            base(&mut v);
            let (mut inet, mut inet6, mut skip) = (false, false, false);
            let mut ifname = None;
            for w in args {
                if std::mem::take(&mut skip) {
                    continue;
                }
                match w.as_str() {
                    "inet" => inet = true,
                    "inet6" => inet6 = true,
                    "linkstr" | "description" | "descr" | "-w" | "-W" | "mtu" => skip = true,
                    w if is_v6(w) => inet6 = true,
                    w if is_v4(w) => inet = true,
                    w if !w.starts_with('-') && ifname.is_none() => ifname = Some(w.to_string()),
                    _ => {}
                }
            }
            family(&mut v, inet, inet6);
            if args.iter().any(|w| w == "create") {
                let name = ifname.unwrap_or_default();
                let driver = if name.starts_with("shmif") {
                    Some(Feature::Shmif)
                } else if name.starts_with("virt") {
                    Some(Feature::Virtif)
                } else {
                    None
                };
                if let Some(f) = driver {
                    v.push(need(f, "SIOCIFCREATE: Invalid argument"));
                }
            }
        }
        "route" => {
            base(&mut v);
            let words: Vec<&str> = args
                .iter()
                .map(String::as_str)
                .filter(|w| !w.starts_with('-'))
                .collect();
            let inet6 = args.iter().any(|w| w == "-inet6") || words.iter().any(|w| is_v6(w));
            let explicit_inet = args.iter().any(|w| w == "-inet");
            let sub = words.first().copied().unwrap_or("");
            let edits = ["add", "delete", "change", "get"].contains(&sub) && words.len() > 1;
            family(&mut v, explicit_inet || (edits && !inet6), inet6);
        }
        "netstat" => {
            base(&mut v);
            let mut fam = None;
            for (i, w) in args.iter().enumerate() {
                if w == "-f" {
                    fam = args.get(i + 1).map(String::as_str);
                } else if let Some(f) = w.strip_prefix("-f").filter(|f| !f.is_empty()) {
                    fam = Some(f);
                }
            }
            family(&mut v, fam == Some("inet"), fam == Some("inet6"));
        }
        "arp" | "ping" | "traceroute" => {
            base(&mut v);
            family(&mut v, true, false);
        }
        "ndp" | "ping6" => {
            base(&mut v);
            family(&mut v, false, true);
        }
        "sysctl" => {
            let mut skip = false;
            for w in args {
                if std::mem::take(&mut skip) {
                    continue;
                }
                if w == "-f" {
                    skip = true;
                    continue;
                }
                if w.starts_with('-') {
                    continue;
                }
                let name = w.split('=').next().unwrap_or(w);
                let mut levels = name.split('.');
                if levels.next() != Some("net") {
                    continue;
                }
                let top = format!("top level name 'net' in '{name}' is invalid");
                v.push(need(Feature::Net, top.clone()));
                v.push(need(Feature::NetNet, top));
                let second = levels.next();
                let what = |l: &str| format!("second level name '{l}' in '{name}' is invalid");
                match second {
                    Some("inet") => v.push(need(Feature::Inet, what("inet"))),
                    Some("inet6") => v.push(need(Feature::Inet6, what("inet6"))),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    v
}

/// The C library's text for an error (without Rust's " (os error N)").
fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map(str::to_string)
            .unwrap_or(text),
        None => text,
    }
}

fn init_failed(prog: &str, why: &str) -> ExitCode {
    eprintln!("{prog}: init failed: {why}");
    ExitCode::FAILURE
}

pub fn main(prog: &str, cmd: &str, args: &[String]) -> ExitCode {
    let Some(server) = std::env::var_os("RUMP_SERVER") else {
        eprintln!("error: RUMP_SERVER not set");
        return init_failed(prog, "No such file or directory");
    };
    let server = server.to_string_lossy().into_owned();
    let socket = match url::parse(&server) {
        Ok(p) => p,
        Err(e) => {
            if let Some(d) = e.detail {
                eprintln!("{d}");
            }
            return init_failed(prog, e.errno);
        }
    };
    let stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!(" (RUMP_SERVER={server}: no such socket; is the rump_server running?)")
                }
                std::io::ErrorKind::ConnectionRefused => {
                    format!(" (RUMP_SERVER={server}: nothing listens on this socket any more)")
                }
                _ => String::new(),
            };
            return init_failed(prog, &format!("{}{hint}", strerror(&e)));
        }
    };
    let loaded = Loaded::of_peer(&stream);
    drop(stream);
    if let Some(loaded) = loaded {
        if let Some(n) = needs(cmd, args)
            .into_iter()
            .find(|n| !loaded.has(n.feature))
        {
            eprintln!(
                "{prog}: {} (the rump server was started without -l{})",
                n.message,
                component_of(n.feature)
            );
            return ExitCode::FAILURE;
        }
    }
    let mut argv = Vec::with_capacity(args.len() + 1);
    argv.push(prog.to_string());
    argv.extend(args.iter().cloned());
    let theirs = format!("{cmd}: ");
    let (out, err) = (std::io::stdout(), std::io::stderr());
    let r = client::run(&socket, &argv, None, |s, line| {
        let _ = match s {
            Stream::Out => writeln!(out.lock(), "{line}"),
            Stream::Err => match line.strip_prefix(&theirs) {
                Some(rest) => writeln!(err.lock(), "{prog}: {rest}"),
                None => writeln!(err.lock(), "{line}"),
            },
        };
    });
    match r {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("{prog}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(cmd: &str, line: &str) -> Vec<Feature> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let mut f: Vec<Feature> = needs(cmd, &args).into_iter().map(|n| n.feature).collect();
        f.dedup();
        f
    }

    use Feature::*;

    #[test]
    fn ifconfig_families_and_drivers() {
        assert_eq!(features("ifconfig", "-a"), [Net, NetNet]);
        assert_eq!(
            features("ifconfig", "shmif0 inet 10.0.0.1/24"),
            [Net, NetNet, Inet]
        );
        assert_eq!(features("ifconfig", "shmif0 10.0.0.1"), [Net, NetNet, Inet]);
        assert_eq!(
            features("ifconfig", "shmif0 inet6 fd00::1 prefixlen 64"),
            [Net, NetNet, Inet6]
        );
        assert_eq!(features("ifconfig", "shmif0 create"), [Net, NetNet, Shmif]);
        assert_eq!(features("ifconfig", "virt0 create"), [Net, NetNet, Virtif]);
        // A bus path is not an address, whatever it looks like.
        assert_eq!(
            features("ifconfig", "shmif0 linkstr 10.0.0.1"),
            [Net, NetNet]
        );
        assert_eq!(features("ifconfig", "-w 10"), [Net, NetNet]);
    }

    #[test]
    fn route_netstat_sysctl() {
        assert_eq!(features("route", "-n show"), [Net, NetNet]);
        assert_eq!(features("route", "flush"), [Net, NetNet]);
        assert_eq!(
            features("route", "add default 10.0.0.1"),
            [Net, NetNet, Inet]
        );
        assert_eq!(
            features("route", "add -inet6 default fe80::1%shmif0"),
            [Net, NetNet, Inet6]
        );
        assert_eq!(features("route", "get fd00::1"), [Net, NetNet, Inet6]);
        assert_eq!(features("route", "show -inet6"), [Net, NetNet, Inet6]);
        assert_eq!(features("netstat", "-rn -f inet6"), [Net, NetNet, Inet6]);
        assert_eq!(features("netstat", "-rn -finet"), [Net, NetNet, Inet]);
        assert_eq!(features("netstat", "-s"), [Net, NetNet]);
        assert_eq!(
            features("sysctl", "-w net.inet6.ip6.forwarding=1"),
            [Net, NetNet, Inet6]
        );
        assert_eq!(
            features("sysctl", "-n net.inet.ip.ttl"),
            [Net, NetNet, Inet]
        );
        assert_eq!(features("sysctl", "-a"), []);
        assert_eq!(features("halt", ""), []);
        assert_eq!(features("ping6", "-c 1 fd00::1"), [Net, NetNet, Inet6]);
        assert_eq!(features("arp", "-a"), [Net, NetNet, Inet]);
    }
}
