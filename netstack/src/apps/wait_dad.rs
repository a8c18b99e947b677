//! `ifconfig -w`: waits until no address is tentative any more (duplicate address detection
//! over on every interface), polling as NetBSD's ifconfig does, or gives up at a limit.

use std::time::{Duration, Instant};

use crate::control::Output;
use crate::stack::Stack;

/// How often the addresses are looked at again (NetBSD's ifconfig polls every 10 ms).
pub const POLL: Duration = Duration::from_millis(10);

pub struct WaitDad {
    /// None: wait for ever (`-w 0`).
    limit: Option<Instant>,
    next: Option<Instant>,
}

impl WaitDad {
    pub fn new(limit: Option<Instant>) -> WaitDad {
        WaitDad { limit, next: None }
    }

    pub fn poll(&mut self, stack: &mut Stack, now: Instant, out: &Output) -> Option<i32> {
        if !stack.dad_in_progress() {
            return Some(0);
        }
        if self.limit.is_some_and(|l| now > l) {
            out.err("ifconfig: timed out");
            return Some(1);
        }
        self.next = Some(now + POLL);
        None
    }

    pub fn deadline(&self) -> Option<Instant> {
        // The first poll comes at once (the node polls after every command).
        self.next
    }
}
