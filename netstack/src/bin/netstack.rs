//! `netstack`: the node daemon (our rump_server).
//!
//! `netstack --socket PATH [--config FILE] [--log FILE] [--foreground]` returns once the
//! control socket is listening; without `--foreground` the node keeps running detached in its
//! own session. It stops on SIGTERM or the `halt` command, removing the socket.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "netstack",
    about = "shmlab node: a user-space network stack on shmif buses"
)]
struct Args {
    /// Control socket to create (mode 0600).
    #[arg(long)]
    socket: PathBuf,
    /// Node commands to run before the node reports ready, one per line (# comments).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Log file (appended); default: stderr in the foreground, nowhere when detached.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Stay in the foreground instead of detaching.
    #[arg(long)]
    foreground: bool,
    /// Internal: this process is the detached child; report readiness on stdout.
    #[arg(long, hide = true)]
    daemon_child: bool,
}

const READY: &str = "ready";

fn open_log(path: &PathBuf) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open log file", path.display()))
}

/// Starts a copy of ourselves in a new session and waits until it says it is listening.
fn detach() -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    let args = Args::parse();
    let stderr = match &args.log {
        Some(p) => Stdio::from(open_log(p)?),
        None => Stdio::null(),
    };
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .arg("--daemon-child")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .context("cannot start the node process")?;
    let stdout = child.stdout.take().context("no pipe to the node process")?;
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(l)) if l == READY => Ok(()),
        Some(Ok(l)) => {
            let _ = child.wait();
            anyhow::bail!("{}", l.strip_prefix("error: ").unwrap_or(&l))
        }
        _ => {
            let status = child.wait().context("waiting for the node process")?;
            anyhow::bail!("node exited before its socket was listening ({status})")
        }
    }
}

fn init_logging(args: &Args) -> anyhow::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_target(false);
    match &args.log {
        Some(p) => {
            let f = open_log(p)?;
            builder.with_writer(std::sync::Mutex::new(f)).init();
        }
        None if args.daemon_child => builder.with_writer(std::io::sink).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

fn serve(args: &Args) -> anyhow::Result<()> {
    if args.daemon_child {
        // Our own session: no terminal signals, survives the caller's process group.
        rustix::process::setsid().context("setsid")?;
    }
    init_logging(args)?;
    let opts = netstack::node::Options {
        socket: args.socket.clone(),
        config: args.config.clone(),
    };
    let daemon = args.daemon_child;
    netstack::node::run(&opts, || {
        if daemon {
            // The parent may be gone already (killed while waiting): not our problem.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{READY}");
            let _ = out.flush();
        }
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.foreground || args.daemon_child {
        serve(&args)
    } else {
        detach()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if args.daemon_child {
                // The parent relays this line.
                let _ = writeln!(std::io::stdout(), "error: {e:#}");
            } else {
                eprintln!("netstack: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
