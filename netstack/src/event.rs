//! What the stack thread reacts to besides its buses, and how it is woken for it: the event
//! channel's sending end ([`EventSender`]), which rings the stack thread's [`Doorbell`] after
//! every event. Below `link` and `stack` (tap rx threads and NetBSD-bus watchers hold a
//! sender), above only the control protocol's types.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use crossbeam_channel::{SendError, Sender, TrySendError};
use rustix::thread::futex;

use crate::control::{Reply, Request};

/// Identifies one attachment, so frames still queued from a detached link are recognised.
pub type LinkId = u64;

/// Everything the stack thread reacts to.
pub enum Event {
    Frame {
        link: LinkId,
        frame: Vec<u8>,
    },
    Command {
        req: Request,
        reply: Sender<Reply>,
        cancelled: Arc<AtomicBool>,
    },
    Shutdown,
}

/// The stack thread's doorbell: a process-private futex word it sleeps on beside the buses. The
/// low 31 bits count rings (so a ring between arming and sleeping changes the word); the top
/// bit says the stack thread is (about to be) asleep, so ringers make a system call only then.
#[derive(Debug, Default)]
pub struct Doorbell {
    word: AtomicU32,
}

const ASLEEP: u32 = 1 << 31;

impl Doorbell {
    /// The futex word the stack thread sleeps on.
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    pub fn ring(&self) {
        let before = self
            .word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some((v & ASLEEP) | ((v + 1) & !ASLEEP))
            })
            .unwrap_or_else(|v| v);
        if before & ASLEEP != 0 {
            let _ = futex::wake(&self.word, futex::Flags::PRIVATE, 1);
        }
    }

    /// Marks the stack thread asleep; returns the value to wait on.
    pub(crate) fn arm(&self) -> u32 {
        self.word.fetch_or(ASLEEP, Ordering::SeqCst) | ASLEEP
    }

    pub(crate) fn disarm(&self) {
        self.word.fetch_and(!ASLEEP, Ordering::SeqCst);
    }
}

/// The sending end of the stack's event channel: every send rings the doorbell.
#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Event>,
    bell: Arc<Doorbell>,
}

impl EventSender {
    pub(crate) fn new(tx: Sender<Event>, bell: Arc<Doorbell>) -> EventSender {
        EventSender { tx, bell }
    }

    pub fn send(&self, ev: Event) -> Result<(), SendError<Event>> {
        self.tx.send(ev)?;
        self.bell.ring();
        Ok(())
    }

    pub fn try_send(&self, ev: Event) -> Result<(), TrySendError<Event>> {
        self.tx.try_send(ev)?;
        self.bell.ring();
        Ok(())
    }

    /// Wakes the stack thread without an event (something outside the channel changed).
    pub fn ring(&self) {
        self.bell.ring();
    }
}
