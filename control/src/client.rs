//! A small blocking client for a node's control socket (see [`crate::protocol`]).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::protocol::{Reply, Request};

/// Which output stream a line belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

/// Why a command could not be run to completion. Every message names the socket.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}: control socket does not exist (is the node running?)", path.display())]
    SocketMissing { path: PathBuf },
    #[error("{}: connection refused (the node is not listening; stale socket?)", path.display())]
    Refused { path: PathBuf },
    #[error("{}: node closed the connection in the middle of the command", path.display())]
    Closed { path: PathBuf },
    #[error("{}: node sent a malformed reply line {line:?}: {source}", path.display())]
    BadReply {
        path: PathBuf,
        line: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs `argv` on the node behind `socket`, calling `on_line` for each output line as it
/// arrives, and returns the command's exit status.
pub fn run(
    socket: &Path,
    argv: &[String],
    stdin: Option<&str>,
    on_line: impl FnMut(Stream, &str),
) -> Result<i32, ClientError> {
    let mut conn = Connection::open(socket)?;
    conn.run(argv, stdin, on_line)
}

/// A connection that can run several commands one after another.
pub struct Connection {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Connection {
    pub fn open(socket: &Path) -> Result<Connection, ClientError> {
        let path = socket.to_path_buf();
        let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ClientError::SocketMissing { path: path.clone() },
            std::io::ErrorKind::ConnectionRefused => ClientError::Refused { path: path.clone() },
            _ => ClientError::Io {
                path: path.clone(),
                source: e,
            },
        })?;
        let writer = stream.try_clone().map_err(|source| ClientError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(Connection {
            path,
            reader: BufReader::new(stream),
            writer,
        })
    }

    pub fn run(
        &mut self,
        argv: &[String],
        stdin: Option<&str>,
        mut on_line: impl FnMut(Stream, &str),
    ) -> Result<i32, ClientError> {
        let req = Request {
            argv: argv.to_vec(),
            stdin: stdin.map(str::to_string),
        };
        let io = |source| ClientError::Io {
            path: self.path.clone(),
            source,
        };
        self.writer
            .write_all(req.to_line().as_bytes())
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    ClientError::Closed {
                        path: self.path.clone(),
                    }
                } else {
                    io(e)
                }
            })?;
        let mut line = String::new();
        loop {
            line.clear();
            let n = match self.reader.read_line(&mut line) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => {
                    return Err(ClientError::Io {
                        path: self.path.clone(),
                        source: e,
                    })
                }
            };
            if n == 0 {
                return Err(ClientError::Closed {
                    path: self.path.clone(),
                });
            }
            let reply: Reply =
                serde_json::from_str(line.trim_end()).map_err(|source| ClientError::BadReply {
                    path: self.path.clone(),
                    line: line.trim_end().to_string(),
                    source,
                })?;
            match reply {
                Reply::Out(s) => on_line(Stream::Out, &s),
                Reply::Err(s) => on_line(Stream::Err, &s),
                Reply::Exit(code) => return Ok(code),
            }
        }
    }
}
