//! Long-running commands as state machines the stack loop drives: `poll` sends what is due
//! and says when it is done, `on_icmp` is offered every ICMP reply or error, `deadline` says
//! when `poll` wants to run next. The stack thread therefore never blocks on a command.

pub mod ping;
pub mod traceroute;
pub mod wait_dad;

use std::time::Instant;

use crate::control::Output;
use crate::stack::{App, IcmpEvent, Stack};

pub enum Job {
    Ping(Box<ping::Ping>),
    Traceroute(traceroute::Traceroute),
    /// `ifconfig -w`.
    WaitDad(wait_dad::WaitDad),
}

pub struct JobSlot {
    pub job: Job,
    pub out: Output,
}

impl Job {
    /// Runs due work; `Some(status)` when finished.
    pub fn poll(&mut self, stack: &mut Stack, now: Instant, out: &Output) -> Option<i32> {
        match self {
            Job::Ping(p) => p.poll(stack, now, out),
            Job::Traceroute(t) => t.poll(stack, now, out),
            Job::WaitDad(w) => w.poll(stack, now, out),
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Job::Ping(p) => p.deadline(),
            Job::Traceroute(t) => t.deadline(),
            Job::WaitDad(w) => w.deadline(),
        }
    }

    /// True if the message belonged to this job.
    pub fn on_icmp(&mut self, now: Instant, ev: &IcmpEvent<'_>, out: &Output) -> bool {
        match self {
            Job::Ping(p) => p.on_icmp(now, ev, out),
            Job::Traceroute(t) => t.on_icmp(now, ev, out),
            Job::WaitDad(_) => false,
        }
    }
}

/// A job runs on the stack as an [`App`]; its result goes to the command's output.
impl App for JobSlot {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        if self.out.is_cancelled() {
            return true;
        }
        match self.job.poll(stack, now, &self.out) {
            Some(code) => {
                self.out.exit(code);
                true
            }
            None => false,
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.job.deadline()
    }

    fn on_icmp(&mut self, now: Instant, ev: &IcmpEvent<'_>) -> bool {
        self.job.on_icmp(now, ev, &self.out)
    }

    fn cancel(&mut self) {
        self.out.err("interrupted: node is shutting down");
        self.out.exit(130);
    }
}

/// Text for an ICMP unreachable code, as BSD ping prints it.
pub fn unreach_text(code: u8, mtu: u16) -> String {
    use crate::wire::icmp::*;
    match code {
        UNREACH_NET => "Destination Net Unreachable".into(),
        UNREACH_HOST => "Destination Host Unreachable".into(),
        UNREACH_PROTOCOL => "Destination Protocol Unreachable".into(),
        UNREACH_PORT => "Destination Port Unreachable".into(),
        UNREACH_NEEDFRAG => format!("Frag needed and DF set (MTU {mtu})"),
        c => format!("Dest Unreachable, Unknown Code: {c}"),
    }
}

pub fn exceeded_text(code: u8) -> String {
    match code {
        crate::wire::icmp::EXCEEDED_TTL => "Time to live exceeded".into(),
        crate::wire::icmp::EXCEEDED_REASSEMBLY => "Frag reassembly time exceeded".into(),
        c => format!("Time exceeded, Unknown Code: {c}"),
    }
}
