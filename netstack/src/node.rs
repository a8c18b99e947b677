//! A running node: the stack loop, the event channel and its doorbell, the control socket
//! server and the optional start-up config.
//!
//! The stack thread owns the stack and every bus port. It receives from the ports itself, and
//! sleeps in one `futex_waitv` on the wake word of every attached bus plus the doorbell, a
//! process-private futex word that whoever queues an event (control connections, tap rx
//! threads, the signal thread, NetBSD-bus watchers) rings; the next timer deadline is the
//! timeout. After a wakeup it drains the ports in batches, then the channel, runs timers and
//! sends each link's queued frames in one batch. An idle node with no timer due sleeps without
//! waking. Other threads: one accept thread, one per control connection, one signal thread, one
//! rx thread per tap link, one watcher per bus in NetBSD mode.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};
use rustix::thread::futex;

use crate::cmd::{self, Output};
use crate::control::{Reply, Request, MAX_REQUEST_LINE};
use crate::event::{Doorbell, Event, EventSender};
use crate::link::LinkId;
use crate::stack::Stack;

/// A new event channel for a stack: the sender for whoever feeds it, the stack thread's end.
pub fn event_channel() -> (EventSender, Inbox) {
    let (tx, rx) = crossbeam_channel::bounded(EVENT_QUEUE);
    let bell = Arc::new(Doorbell::default());
    (EventSender::new(tx, bell.clone()), Inbox::new(rx, bell))
}

/// Frames queued for the stack before rx threads start dropping (and counting) them.
const EVENT_QUEUE: usize = 4096;
/// Frames taken from one port per step before the others get their turn.
const PORT_BATCH: usize = 64;
/// Events taken from the channel per step before timers run.
const EVENT_BATCH: usize = 256;
/// `futex_waitv` takes at most 128 words; one is the doorbell. Buses beyond that are polled:
/// the sleep is cut to [`POLL_BEYOND_WAITV`] so they are looked at that often.
const MAX_WAITV_BUSES: usize = 127;
const POLL_BEYOND_WAITV: Duration = Duration::from_millis(1);
/// Control connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// After a step that sent frames, the stack thread polls its channel this long (yielding the
/// CPU between polls) before it sleeps: an answer (echo reply, ack) that comes back in that time
/// finds the thread awake, one thread wakeup fewer on the round trip. Measured on the 2-CPU
/// dev machine (ping -i 0.01, 6000 replies per path): median RTT on one bus 290 -> 235 µs,
/// across a router 512 -> 430 µs; 100 µs gained little and 600-1000 µs no more than 300.
const SPIN_AFTER_SEND: Duration = Duration::from_micros(300);
/// Polls that find nothing this many times in a row stop; a node whose sends are not answered
/// quickly (the answering side of a ping) then sleeps at once, except for an occasional probe.
const SPIN_MAX_MISSES: u32 = 8;
/// While stopped, every this-many-th sending step polls again to see whether answers came back.
const SPIN_PROBE_EVERY: u32 = 64;

pub struct Options {
    pub socket: PathBuf,
    pub config: Option<PathBuf>,
}

/// Runs a node until `halt` or SIGTERM. `ready` is called once the socket is listening.
pub fn run(opts: &Options, ready: impl FnOnce()) -> anyhow::Result<()> {
    let (tx, mut inbox) = event_channel();
    let mut stack = Stack::new(Some(tx.clone()));
    if let Some(cfg) = &opts.config {
        run_config(&mut stack, &mut inbox, cfg)?;
    }
    let listener = bind(&opts.socket)?;
    let in_flight = Arc::new(AtomicUsize::new(0));
    {
        let tx = tx.clone();
        let in_flight = in_flight.clone();
        std::thread::Builder::new()
            .name("control".into())
            .stack_size(128 * 1024)
            .spawn(move || accept_loop(listener, tx, in_flight))
            .context("starting the control thread")?;
    }
    {
        let tx = tx.clone();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
        ])
        .context("installing SIGTERM/SIGINT handlers")?;
        std::thread::Builder::new()
            .name("signals".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    tracing::info!("signal {sig}: shutting down");
                    let _ = tx.send(Event::Shutdown);
                }
            })
            .context("starting the signal thread")?;
    }
    drop(tx);
    tracing::info!("listening on {}", opts.socket.display());
    ready();
    while step(&mut stack, &mut inbox) {}
    tracing::info!("halting");
    stack.cancel_apps();
    // Detach every interface (rx threads stop) before the socket goes.
    drop(stack);
    let _ = std::fs::remove_file(&opts.socket);
    // Let connection threads write the replies already produced (halt's own exit status).
    let deadline = Instant::now() + Duration::from_secs(2);
    while in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// One turn of the stack loop: takes what the ports and the channel have, runs timers and
/// sends; sleeps first if nothing was waiting. False: stop.
fn step(stack: &mut Stack, inbox: &mut Inbox) -> bool {
    let sent_before = stack.stats.counters.ether_out;
    let (worked, go_on) = work(stack, inbox);
    if !go_on {
        return false;
    }
    inbox
        .spin
        .stepped(stack.stats.counters.ether_out != sent_before);
    if !worked && !stack.halt_requested {
        inbox.sleep(stack);
    }
    !stack.halt_requested
}

/// Everything waiting now: frames on every port (a batch each), events, timers, then each
/// link's queued frames in one batch. Returns (found anything, keep running).
fn work(stack: &mut Stack, inbox: &mut Inbox) -> (bool, bool) {
    let now = Instant::now();
    let mut worked = false;
    // Copied out first: the stack cannot be borrowed for input while a port in it is.
    inbox.frames.clear();
    for (link, port) in stack.bus_ports() {
        for _ in 0..PORT_BATCH {
            let at = inbox.frames.bytes.len();
            inbox.frames.bytes.resize(at + shmif::format::MAX_FRAME, 0);
            match port.try_recv(&mut inbox.frames.bytes[at..]) {
                Some(r) => {
                    inbox.frames.bytes.truncate(at + r.len);
                    inbox.frames.spans.push((link, at, r.len));
                }
                None => {
                    inbox.frames.bytes.truncate(at);
                    break;
                }
            }
        }
    }
    for i in 0..inbox.frames.spans.len() {
        let (link, at, len) = inbox.frames.spans[i];
        input(stack, now, link, &inbox.frames.bytes[at..at + len]);
        worked = true;
    }
    for _ in 0..EVENT_BATCH {
        match inbox.rx.try_recv() {
            Ok(ev) => {
                worked = true;
                if !handle(stack, ev) {
                    return (worked, false);
                }
            }
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) => return (worked, false),
        }
    }
    stack.poll(Instant::now());
    stack.flush_links();
    (worked, true)
}

/// One frame into the stack. A bug in a protocol path must not take the node down; it is
/// counted and logged.
fn input(stack: &mut Stack, now: Instant, link: LinkId, frame: &[u8]) {
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| stack.handle_frame(now, link, frame)));
    if r.is_err() {
        tracing::error!("panic while handling a frame of {} bytes", frame.len());
        stack.stats.drop(crate::stats::DropReason::InternalError);
    }
}

/// Frames copied out of the ports in one step: one buffer, and (link, start, length) each.
#[derive(Default)]
struct FrameBatch {
    bytes: Vec<u8>,
    spans: Vec<(LinkId, usize, usize)>,
}

impl FrameBatch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }
}

/// The stack thread's end of the event channel, and how it sleeps.
pub struct Inbox {
    rx: Receiver<Event>,
    bell: Arc<Doorbell>,
    spin: SpinAfterSend,
    frames: FrameBatch,
    /// The futex words of one sleep, kept to reuse the allocation.
    waits: Vec<futex::Wait>,
}

impl Inbox {
    fn new(rx: Receiver<Event>, bell: Arc<Doorbell>) -> Inbox {
        Inbox {
            rx,
            bell,
            spin: SpinAfterSend::default(),
            frames: FrameBatch::default(),
            waits: Vec::new(),
        }
    }

    /// Sleeps until a bus has news, an event is queued or the next timer is due. After a step
    /// that sent frames it first polls for up to [`SPIN_AFTER_SEND`] (while that keeps paying
    /// off): an answer that comes back in that time finds the thread awake.
    fn sleep(&mut self, stack: &mut Stack) {
        if self.spin.should_spin() {
            let start = Instant::now();
            loop {
                if !self.rx.is_empty() || stack.bus_ports().any(|(_, p)| p.has_news()) {
                    self.spin.outcome(true);
                    return;
                }
                if start.elapsed() >= SPIN_AFTER_SEND {
                    self.spin.outcome(false);
                    break;
                }
                // Other threads of this node or of its peers may need this CPU more; on a
                // 2-CPU machine a pure spin was slower.
                std::thread::yield_now();
            }
        }
        let mut deadline = stack.next_deadline();
        self.waits.clear();
        let mut polled = false;
        for (_, port) in stack.bus_ports() {
            if self.waits.len() >= MAX_WAITV_BUSES {
                polled = true;
                continue;
            }
            match port.prepare_sleep() {
                shmif::Sleep::Ready => return,
                shmif::Sleep::Futex { word, value } => {
                    let mut w = futex::Wait::new();
                    w.uaddr = futex::WaitPtr::new(word.as_ptr().cast());
                    w.val = value as u64;
                    w.flags = futex::WaitFlags::SIZE_U32;
                    self.waits.push(w);
                }
            }
        }
        if polled {
            let soon = Instant::now() + POLL_BEYOND_WAITV;
            deadline = Some(deadline.map_or(soon, |d| d.min(soon)));
        }
        // NetBSD kernels wake nobody's futex: a watcher thread rings the doorbell for them.
        stack.watch_netbsd_buses();
        let bell = self.bell.arm();
        if !self.rx.is_empty() {
            self.bell.disarm();
            return;
        }
        let mut w = futex::Wait::new();
        w.uaddr = futex::WaitPtr::new(self.bell.word().as_ptr().cast());
        w.val = bell as u64;
        w.flags = futex::WaitFlags::SIZE_U32 | futex::WaitFlags::PRIVATE;
        self.waits.push(w);
        let timeout = deadline.map(monotonic_timespec);
        // EAGAIN (a word changed), EINTR, ETIMEDOUT and a wake all mean: look again.
        let _ = futex::waitv(
            &self.waits,
            futex::WaitvFlags::empty(),
            timeout.as_ref(),
            rustix::time::ClockId::Monotonic,
        );
        self.bell.disarm();
    }
}

/// `deadline` as an absolute CLOCK_MONOTONIC time (what `futex_waitv` takes; `Instant` is that
/// clock on Linux, but does not expose it).
fn monotonic_timespec(deadline: Instant) -> rustix::time::Timespec {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let left = deadline.saturating_duration_since(Instant::now());
    let nanos = now.tv_nsec as u64 + left.subsec_nanos() as u64;
    rustix::time::Timespec {
        tv_sec: now.tv_sec + left.as_secs() as i64 + (nanos / 1_000_000_000) as i64,
        tv_nsec: (nanos % 1_000_000_000) as i64,
    }
}

/// When the stack thread polls its channel before sleeping: after a step that sent frames, as
/// long as such polls keep finding an answer. No clock inside, so it is tested directly.
#[derive(Debug, Default)]
struct SpinAfterSend {
    /// The last step sent frames.
    sent: bool,
    /// Polls in a row that found nothing.
    misses: u32,
    /// Sending steps without a poll since polling stopped.
    skipped: u32,
}

impl SpinAfterSend {
    fn stepped(&mut self, sent: bool) {
        self.sent = sent;
    }

    fn should_spin(&mut self) -> bool {
        if !std::mem::take(&mut self.sent) {
            return false;
        }
        if self.misses < SPIN_MAX_MISSES {
            return true;
        }
        self.skipped += 1;
        if self.skipped >= SPIN_PROBE_EVERY {
            self.skipped = 0;
            return true;
        }
        false
    }

    fn outcome(&mut self, found: bool) {
        self.misses = if found {
            0
        } else {
            self.misses.saturating_add(1)
        };
    }
}

fn handle(stack: &mut Stack, ev: Event) -> bool {
    let now = Instant::now();
    match ev {
        Event::Frame { link, frame } => input(stack, now, link, &frame),
        Event::Command {
            req,
            reply,
            cancelled,
        } => {
            tracing::info!("command {:?}", req.argv);
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                cmd::run(stack, now, &req, Output::new(reply, cancelled))
            }));
            if r.is_err() {
                // The reply channel is gone with the panic: the client sees the connection
                // close mid-command.
                tracing::error!("panic while running {:?}", req.argv);
            }
        }
        Event::Shutdown => return false,
    }
    !stack.halt_requested
}

/// Runs the start-up config: one command per line, `#` comments. The first failing command
/// stops the start.
fn run_config(stack: &mut Stack, inbox: &mut Inbox, path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read config", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let (rtx, rrx) = crossbeam_channel::unbounded();
        let req = Request { argv, stdin: None };
        cmd::run(
            stack,
            Instant::now(),
            &req,
            Output::new(rtx, Arc::new(AtomicBool::new(false))),
        );
        let mut errors = Vec::new();
        let code = loop {
            match rrx.try_recv() {
                Ok(Reply::Out(l)) => tracing::info!("config: {l}"),
                Ok(Reply::Err(l)) => errors.push(l),
                Ok(Reply::Exit(c)) => break c,
                Err(_) => {
                    if !step(stack, inbox) {
                        bail!(
                            "{}:{}: node stopped while running {line:?}",
                            path.display(),
                            n + 1
                        );
                    }
                }
            }
        };
        if code != 0 {
            bail!(
                "{}:{}: {line:?} failed with status {code}: {}",
                path.display(),
                n + 1,
                errors.join("; ")
            );
        }
    }
    Ok(())
}

fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "{}: exists and is not a socket; refusing to replace it",
                path.display()
            );
        }
        if UnixStream::connect(path).is_ok() {
            bail!(
                "{}: another node is already listening on this socket",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("{}: removing stale socket", path.display()))?;
    }
    let l = UnixListener::bind(path)
        .with_context(|| format!("{}: cannot listen on control socket", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("{}: cannot set mode 0600", path.display()))?;
    Ok(l)
}

fn accept_loop(listener: UnixListener, tx: EventSender, in_flight: Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let me = rustix::process::getuid();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        match rustix::net::sockopt::socket_peercred(&stream) {
            Ok(cred) if cred.uid == me => {}
            Ok(cred) => {
                tracing::warn!("control: refused connection from uid {}", cred.uid.as_raw());
                let msg = format!(
                    "netstack: permission denied: uid {} does not own this node",
                    cred.uid.as_raw()
                );
                refuse_in_background(stream, msg, 77);
                continue;
            }
            Err(e) => {
                tracing::warn!("control: cannot read peer credentials: {e}");
                continue;
            }
        }
        if connections.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            let msg = format!("netstack: too many control connections (limit {MAX_CONNECTIONS})");
            refuse_in_background(stream, msg, 75);
            continue;
        }
        connections.fetch_add(1, Ordering::AcqRel);
        let (tx, connections, in_flight) = (tx.clone(), connections.clone(), in_flight.clone());
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                serve(stream, &tx, &in_flight);
                connections.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            tracing::warn!("control: cannot start a connection thread");
        }
    }
}

/// Answers with one error and a status, then closes. The peer's unread input is drained
/// first (bounded): closing a Unix socket with unread data resets the connection, and the
/// client would lose the answer.
fn refuse(stream: &UnixStream, msg: String, code: i32) {
    let mut w = stream;
    let _ = w.write_all(Reply::Err(msg).to_line().as_bytes());
    let _ = w.write_all(Reply::Exit(code).to_line().as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 64 * 1024];
    let mut left: usize = 64 << 20;
    let mut r = stream;
    while left > 0 {
        match r.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// `refuse` on its own thread, so the accept loop never waits on a slow peer.
fn refuse_in_background(stream: UnixStream, msg: String, code: i32) {
    let _ = std::thread::Builder::new()
        .name("refuse".into())
        .stack_size(128 * 1024)
        .spawn(move || refuse(&stream, msg, code));
}

/// Whether the peer has closed its end (EOF pending), without consuming input.
fn peer_closed(stream: &UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(
        rustix::net::recv(
            stream,
            &mut b[..],
            rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT
        ),
        Ok((0, _))
    )
}

enum Line {
    Got,
    Eof,
    TooLong,
}

fn read_line(r: &mut BufReader<UnixStream>, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    buf.clear();
    let n = r
        .by_ref()
        .take(MAX_REQUEST_LINE as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Got);
    }
    if buf.len() > MAX_REQUEST_LINE {
        return Ok(Line::TooLong);
    }
    // The client closed after a last line without newline: still a request.
    Ok(Line::Got)
}

fn serve(stream: UnixStream, tx: &EventSender, in_flight: &AtomicUsize) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut w = &stream;
    let mut buf = Vec::new();
    loop {
        let line = match read_line(&mut reader, &mut buf) {
            Ok(Line::Got) => &buf,
            Ok(Line::Eof) | Err(_) => return,
            Ok(Line::TooLong) => {
                let msg =
                    format!("netstack: request line longer than {MAX_REQUEST_LINE} bytes; closing");
                refuse(&stream, msg, cmd::EX_USAGE);
                return;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let req: Request = match serde_json::from_slice(line) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!(
                    "netstack: malformed request: {e} (expected {{\"argv\": [\"cmd\", ...]}})"
                );
                let ok = w.write_all(Reply::Err(msg).to_line().as_bytes()).is_ok()
                    && w.write_all(Reply::Exit(cmd::EX_USAGE).to_line().as_bytes())
                        .is_ok();
                if !ok {
                    return;
                }
                continue;
            }
        };
        let (rtx, rrx) = crossbeam_channel::unbounded();
        let cancelled = Arc::new(AtomicBool::new(false));
        in_flight.fetch_add(1, Ordering::AcqRel);
        let _guard = Decrement(in_flight);
        if tx
            .send(Event::Command {
                req,
                reply: rtx,
                cancelled: cancelled.clone(),
            })
            .is_err()
        {
            let _ = w.write_all(
                Reply::Err("netstack: node is shutting down".into())
                    .to_line()
                    .as_bytes(),
            );
            let _ = w.write_all(Reply::Exit(75).to_line().as_bytes());
            return;
        }
        loop {
            match rrx.recv_timeout(Duration::from_millis(250)) {
                Ok(r) => {
                    let last = matches!(r, Reply::Exit(_));
                    if w.write_all(r.to_line().as_bytes()).is_err() {
                        cancelled.store(true, Ordering::Relaxed);
                        return;
                    }
                    if last {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if peer_closed(&stream) {
                        cancelled.store(true, Ordering::Relaxed);
                        return;
                    }
                }
                // The node stopped without finishing the command.
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_after_sends_stops_when_it_finds_nothing_and_probes_to_resume() {
        let mut s = SpinAfterSend::default();
        assert!(!s.should_spin(), "nothing sent yet");
        // A node whose sends are answered quickly keeps polling.
        for _ in 0..100 {
            s.stepped(true);
            assert!(s.should_spin());
            s.outcome(true);
        }
        s.stepped(false);
        assert!(!s.should_spin(), "only after a step that sent");
        // Unanswered sends: polling stops after SPIN_MAX_MISSES misses...
        for _ in 0..SPIN_MAX_MISSES {
            s.stepped(true);
            assert!(s.should_spin());
            s.outcome(false);
        }
        let mut polls = 0;
        for _ in 0..SPIN_PROBE_EVERY * 3 {
            s.stepped(true);
            if s.should_spin() {
                polls += 1;
                s.outcome(false);
            }
        }
        // ...except for one probe every SPIN_PROBE_EVERY sending steps,
        assert_eq!(polls, 3);
        // and a probe that finds an answer turns polling back on.
        for _ in 0..SPIN_PROBE_EVERY {
            s.stepped(true);
            if s.should_spin() {
                s.outcome(true);
                break;
            }
        }
        s.stepped(true);
        assert!(s.should_spin());
    }
}
