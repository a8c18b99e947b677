//! Helpers for tests that run `shmif-peer` processes on real bus files.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout};

pub const PEER: &str = env!("CARGO_BIN_EXE_shmif-peer");

/// A running peer process; killed on drop so a failing test leaves nothing behind.
pub struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts a peer and waits for its `ready` line (it is attached to the bus then).
    pub fn start(args: &[&str]) -> Peer {
        let mut child = shmlab_tests::spawn_peer(PEER, args);
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut peer = Peer {
            child,
            stdin,
            stdout,
        };
        peer.expect_line("ready");
        peer
    }

    pub fn expect_line(&mut self, want: &str) {
        let line = self.line();
        assert_eq!(line.trim(), want, "peer said {line:?}");
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read peer stdout");
        line
    }

    pub fn say(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{text}").expect("write peer stdin");
    }

    /// Closes stdin (the signal for receivers to drain) and reads the JSON report.
    pub fn finish(mut self) -> serde_json::Value {
        self.stdin.take();
        let line = self.line();
        let status = self.child.wait().expect("wait peer");
        assert!(status.success(), "peer failed: {status}; said {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad report {line:?}: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn field(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}
