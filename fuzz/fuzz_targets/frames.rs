//! Untrusted frames into a forwarding node with two interfaces and both families, on virtual
//! time: whatever arrives, the node must count and drop or answer, never panic.
//!
//! Input: records of [interface: 1 byte][length: 2 bytes LE][frame], the clock advancing 1 ms
//! per record, the node polled after each.
#![no_main]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netstack::link::LinkTx;
use netstack::stack::{IfAddr, Stack};
use netstack::wire::Mac;

/// Counts what the node sends, so replies are built but go nowhere.
struct Sink(Arc<Mutex<usize>>);

impl LinkTx for Sink {
    fn send(&self, _frame: &[u8]) -> Result<(), String> {
        *self.0.lock().unwrap() += 1;
        Ok(())
    }
}

fn router() -> (Stack, [u64; 2]) {
    let mut stack = Stack::new(None);
    // Addresses usable at once, so frames meet the node as it runs, not its DAD.
    stack.sysctl.dad_count = 0;
    let mut links = [0; 2];
    for (i, (name, addr)) in [("shmif0", [10, 0, 0, 1]), ("shmif1", [10, 0, 1, 1])]
        .into_iter()
        .enumerate()
    {
        stack.create_iface(name).unwrap();
        let mac = Mac([0xb2, 0xa0, 0, 0, 0, i as u8 + 1]);
        links[i] = stack
            .attach_custom(name, mac, Box::new(Sink(Arc::default())))
            .unwrap();
        let a = IfAddr::v4(addr.into(), 24);
        stack.add_addr(name, a, false).unwrap();
        let v6 = IfAddr::new(format!("fd00:{i}::1").parse().unwrap(), 64);
        stack.add_addr(name, v6, true).unwrap();
        stack.set_up(name, true).unwrap();
    }
    stack.sysctl.forwarding = true;
    stack.sysctl.forwarding6 = true;
    (stack, links)
}

fuzz_target!(|data: &[u8]| {
    let (mut stack, links) = router();
    let start = Instant::now();
    let mut now = start;
    let mut rest = data;
    while rest.len() >= 3 {
        let link = links[usize::from(rest[0] & 1)];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        rest = &rest[3..];
        let frame = &rest[..len.min(rest.len())];
        rest = &rest[frame.len()..];
        stack.handle_frame(now, link, frame);
        now += Duration::from_millis(1);
        stack.poll(now);
    }
    // Let every timer (ARP retries, reassembly timeouts) fire once.
    stack.poll(start + Duration::from_secs(120));
});
