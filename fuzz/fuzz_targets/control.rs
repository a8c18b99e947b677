//! Untrusted control-socket lines into a node: any JSON the protocol parser accepts is run as a
//! command on a stack with one interface; commands must answer with an exit status, never panic.
//! The stack has no event channel, so `ifconfig ... linkstr` cannot attach a bus or open a tap:
//! the fuzzer creates no files and no devices.
#![no_main]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netstack::cmd::{self, Output};
use netstack::control::{Reply, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<Request>(data) else {
        return;
    };
    let mut stack = netstack::stack::Stack::new(None);
    stack.create_iface("shmif0").unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let now = Instant::now();
    cmd::run(
        &mut stack,
        now,
        &req,
        Output::new(tx, Arc::new(AtomicBool::new(false))),
    );
    // Long-running commands (ping) finish from the poll loop.
    for s in 1..=30 {
        stack.poll(now + Duration::from_secs(s));
    }
    stack.cancel_apps();
    let exits = rx
        .try_iter()
        .filter(|r| matches!(r, Reply::Exit(_)))
        .count();
    assert_eq!(exits, 1, "every command ends with exactly one exit line");
});
