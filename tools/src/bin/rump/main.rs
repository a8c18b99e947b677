//! The rump compatibility commands, one binary under several names (argv[0] decides):
//!
//! - `rump_server` / `rump_allserver`: start a netstack node serving a rump URL
//!   ([`server`]).
//! - `rump.ifconfig`, `rump.route`, `rump.ping`, `rump.ping6`, `rump.sysctl`, `rump.arp`,
//!   `rump.ndp`, `rump.netstat`, `rump.traceroute`, `rump.halt` (any `rump.CMD`): run CMD on
//!   the node `$RUMP_SERVER` names ([`client`]).
//!
//! `tools/compat/install DIR` installs the binary as `rump_server` with the other names as
//! symlinks; docs/netbsd-compat.md describes every command and where it differs from NetBSD.
#![forbid(unsafe_code)]

mod client;
mod components;
mod server;
mod url;

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut argv = Vec::new();
    for (i, a) in std::env::args_os().enumerate() {
        match a.into_string() {
            Ok(s) => argv.push(s),
            Err(a) => {
                eprintln!("rump: argument {i} is not UTF-8: {}", a.to_string_lossy());
                return ExitCode::FAILURE;
            }
        }
    }
    let prog = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rump_server".to_string());
    let args = argv.get(1..).unwrap_or_default();
    match prog.strip_prefix("rump.").filter(|c| !c.is_empty()) {
        Some(cmd) => client::main(&prog, cmd, args),
        None => server::main(&prog, prog == "rump_allserver", args),
    }
}
