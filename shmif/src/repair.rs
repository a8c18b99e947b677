//! Checking the ring under the lock and re-formatting it when it cannot be walked: after a
//! lock was taken over from a holder that may have died mid-record, or when the header is
//! inconsistent. Used by writers (ports) and readers (inboxes) alike.

use crate::ring::{HeaderSnapshot, Ring};
use crate::scan::{self, Counters};
use crate::sync::{Acquired, BreakReason};

pub(crate) fn reset_ring(
    ring: &Ring<'_>,
    snap: &mut HeaderSnapshot,
    last_number: u32,
    counters: &Counters,
) {
    ring.reset(snap, last_number);
    Counters::add(&counters.ring_resets, 1);
    Counters::add(&counters.corrupt, 1);
}

pub(crate) fn count_break(counters: &Counters, reason: BreakReason) {
    let counter = match reason {
        BreakReason::Dead => &counters.lock_broken_dead,
        BreakReason::Zombie => &counters.lock_broken_zombie,
        BreakReason::Silent => &counters.lock_broken_silent,
        BreakReason::Stuck => &counters.lock_broken_stuck,
    };
    Counters::add(counter, 1);
}

/// Under the lock: the header, after a full check and repair if the previous holder was given
/// up on or the cheap check fails.
/// `floor`: numbers below it were used, as far as the caller knows; a re-format carries on from
/// there when the header no longer says (readers never take numbers they have had for new
/// records).
pub(crate) fn repair_if_needed(
    ring: &Ring<'_>,
    acquired: Acquired,
    counters: &Counters,
    floor: Option<u32>,
) -> HeaderSnapshot {
    let mut snap = ring.snapshot();
    let sound = match acquired {
        Acquired::Broken(reason) => {
            count_break(counters, reason);
            ring.validate(&snap).is_ok()
        }
        Acquired::Normally => ring.span(&snap).is_ok(),
    };
    if !sound {
        let last_number = match ring.span(&snap) {
            Ok(span) => scan::next_number(ring, &snap, span, None).map(|n| n.wrapping_sub(1)),
            Err(_) => None,
        };
        let known = last_number.or(floor.map(|f| f.wrapping_sub(1)));
        reset_ring(ring, &mut snap, known.unwrap_or(0), counters);
    }
    snap
}
