//! Passive readers: see every frame on the bus, from every sender, with no filter and no
//! sending, for captures.
//!
//! They read as ports do (see `scan`): on shmlab-mode buses without the lock while the record
//! numbers vouch for what they copy, under the lock on NetBSD-mode buses and whenever the
//! lock-free path meets something it cannot judge (a lap, a foreign record). A capture on a
//! busy shmlab bus therefore does not slow the writers down.

use std::sync::Arc;
use std::time::Duration;

use crate::bus::Bus;
use crate::inbox::Inbox;
use crate::scan::Received;
use crate::scan::{Counters, Stats, Verdict};

pub struct Reader {
    bus: Arc<Bus>,
    inbox: Inbox,
    counters: Counters,
}

impl Reader {
    pub(crate) fn new(bus: Arc<Bus>) -> Reader {
        let mut inbox = Inbox::new(&bus);
        let counters = Counters::default();
        inbox.start_at_newest(&bus, &counters);
        Reader {
            bus,
            inbox,
            counters,
        }
    }

    /// Moves back to the oldest record still in the ring, so the next frames are everything the
    /// ring holds (what `shmif_dumpbus` would show) and then whatever follows.
    pub fn rewind_to_oldest(&mut self) {
        self.inbox.rewind_to_oldest(&self.bus, &self.counters);
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    pub fn stats(&self) -> Stats {
        self.counters.stats()
    }

    pub fn try_recv(&mut self, buf: &mut [u8]) -> Option<Received> {
        let (bus, counters) = (&self.bus, &self.counters);
        self.inbox
            .try_recv(buf, |inbox| refill(bus, counters, inbox))
    }

    pub fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Option<Received> {
        let (bus, counters) = (&self.bus, &self.counters);
        self.inbox
            .recv(bus, buf, timeout, |inbox| refill(bus, counters, inbox))
    }
}

fn refill(bus: &Bus, counters: &Counters, inbox: &mut Inbox) -> bool {
    inbox.refill(bus, counters, &|_, _| Verdict::Deliver)
}
