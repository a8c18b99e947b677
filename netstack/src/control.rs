//! The node's side of the control protocol: where a command's output goes. The wire types
//! themselves ([`Request`], [`Reply`], [`MAX_REQUEST_LINE`]) are in `shmlab-control`, shared
//! with the clients, and re-exported here under their old path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

pub use shmlab_control::protocol::{Reply, Request, MAX_REQUEST_LINE};

/// Where a command writes: the reply channel of the connection that asked.
pub struct Output {
    tx: Sender<Reply>,
    cancelled: Arc<AtomicBool>,
}

impl Output {
    /// `cancelled` is set by the connection when its client goes away.
    pub fn new(tx: Sender<Reply>, cancelled: Arc<AtomicBool>) -> Output {
        Output { tx, cancelled }
    }

    fn send(&self, r: Reply) {
        if self.tx.send(r).is_err() {
            self.cancelled.store(true, Ordering::Relaxed);
        }
    }

    pub fn out(&self, text: impl AsRef<str>) {
        let text = text.as_ref();
        if text.is_empty() {
            return self.send(Reply::Out(String::new()));
        }
        for l in text.lines() {
            self.send(Reply::Out(l.to_string()));
        }
    }

    pub fn err(&self, text: impl AsRef<str>) {
        for l in text.as_ref().lines() {
            self.send(Reply::Err(l.to_string()));
        }
    }

    pub fn json<T: serde::Serialize>(&self, v: &T) {
        match serde_json::to_string(v) {
            Ok(s) => self.send(Reply::Out(s)),
            Err(e) => self.err(format!("internal error: cannot encode JSON: {e}")),
        }
    }

    pub fn exit(&self, code: i32) {
        self.send(Reply::Exit(code));
    }

    /// The client went away: long-running commands stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}
