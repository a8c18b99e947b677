//! `netstack-ctl [--stdin] SOCKET CMD [ARGS...]`: runs one command on a node, prints its
//! output as it arrives and exits with its status.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

// The client alone: this command needs nothing of the stack.
use shmlab_control::client::{self, Stream};

fn usage() -> ExitCode {
    eprintln!("usage: netstack-ctl [--stdin] SOCKET CMD [ARGS...]");
    eprintln!("  e.g. netstack-ctl /tmp/n1.sock ifconfig -a");
    ExitCode::from(64)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut stdin = None;
    if args.first().map(String::as_str) == Some("--stdin") {
        args.remove(0);
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("netstack-ctl: reading stdin: {e}");
            return ExitCode::from(66);
        }
        stdin = Some(s);
    }
    if args.len() < 2 || args[0] == "-h" || args[0] == "--help" {
        return usage();
    }
    if args[0].starts_with('-') {
        // Not a socket path: `--socket X` is a common guess, and "no such socket" would mislead.
        eprintln!(
            "netstack-ctl: unknown option {} (the socket comes first, without a flag)",
            args[0]
        );
        return usage();
    }
    let socket = args.remove(0);
    let out = std::io::stdout();
    let err = std::io::stderr();
    let r = client::run(Path::new(&socket), &args, stdin.as_deref(), |s, line| {
        let _ = match s {
            Stream::Out => writeln!(out.lock(), "{line}"),
            Stream::Err => writeln!(err.lock(), "{line}"),
        };
    });
    match r {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("netstack-ctl: {e}");
            ExitCode::from(69)
        }
    }
}
