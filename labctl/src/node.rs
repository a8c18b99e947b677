//! Talking to nodes: runs node commands over the control socket (the client and protocol types
//! are `shmlab_control::client` and `shmlab_control::protocol`), collecting or streaming their output.

use std::path::Path;
use std::time::{Duration, Instant};

pub use shmlab_control::client::{ClientError, Connection, Stream};

/// A finished command: exit status and output lines in arrival order.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub status: i32,
    pub lines: Vec<(Stream, String)>,
}

impl Output {
    /// All output, stdout and stderr interleaved as they arrived.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (_, l) in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    pub fn stderr_text(&self) -> String {
        self.lines
            .iter()
            .filter(|(s, _)| *s == Stream::Err)
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Runs one command on `conn` and collects its output.
pub fn run_collect(conn: &mut Connection, argv: &[String]) -> Result<Output, ClientError> {
    let mut out = Output::default();
    out.status = conn.run(argv, None, |s, l| out.lines.push((s, l.to_string())))?;
    Ok(out)
}

/// Opens a connection to a socket, retrying until `timeout` while `still_starting` says the
/// node may yet come up.
pub fn connect_when_ready(
    socket: &Path,
    timeout: Duration,
    mut still_starting: impl FnMut() -> bool,
) -> Result<Connection, ClientError> {
    let deadline = Instant::now() + timeout;
    let mut wait = Duration::from_millis(1);
    loop {
        match Connection::open(socket) {
            Ok(c) => return Ok(c),
            Err(e @ (ClientError::SocketMissing { .. } | ClientError::Refused { .. })) => {
                if Instant::now() >= deadline || !still_starting() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(20));
    }
}

/// `argv` as a shell-like string for messages.
pub fn show(argv: &[String]) -> String {
    argv.join(" ")
}
