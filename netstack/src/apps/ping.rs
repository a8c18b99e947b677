//! ping and ping6: echo requests at an interval, replies and errors matched by identifier.
//! The family of the destination decides the wire format (ICMP or ICMPv6) and the output
//! (NetBSD's sbin/ping or sbin/ping6).
//!
//! IPv6 replies reach the app through one hook: the stack offers ICMPv6 messages as an
//! [`IcmpMsg`] variant of their own, and [`Ping::on_icmp`] hands an echo reply carrying our
//! identifier to [`Ping::on_echo6_reply`] and an error to [`Ping::on_icmp6_error`], which
//! checks that the error quotes one of our requests ([`quoted_echo6`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{exceeded_text, unreach_text};
use crate::control::Output;
use crate::stack::{IcmpEvent, IcmpMsg, OutIp, Stack};
use crate::wire::icmp::{self, Icmp};
use crate::wire::icmpv6::{self, Icmpv6};
use crate::wire::ipv4::{parse_quoted, PROTO_ICMP};
use crate::wire::PacketBuf;

/// ICMPv6's next-header number.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// ICMPv6 echo request and reply types (RFC 4443).
pub const ICMP6_ECHO_REQUEST: u8 = 128;
pub const ICMP6_ECHO_REPLY: u8 = 129;
/// ICMPv6 error types (RFC 4443).
pub const ICMP6_DST_UNREACH: u8 = 1;
pub const ICMP6_PACKET_TOO_BIG: u8 = 2;
pub const ICMP6_TIME_EXCEEDED: u8 = 3;
pub const ICMP6_PARAM_PROB: u8 = 4;

/// Appends an ICMPv6 echo request to `buf` (which holds nothing else yet). The checksum is
/// left zero: the stack fills it in once it has chosen the source address, which the
/// pseudo-header covers.
pub fn echo6_request(ident: u16, seq: u16, data: &[u8], buf: &mut PacketBuf) {
    let h = buf.append(8);
    h[0] = ICMP6_ECHO_REQUEST;
    h[1] = 0;
    h[2..4].copy_from_slice(&[0, 0]);
    h[4..6].copy_from_slice(&ident.to_be_bytes());
    h[6..8].copy_from_slice(&seq.to_be_bytes());
    buf.extend_from_slice(data);
}

/// The identifier and sequence number of the echo request an ICMPv6 error quotes (the IPv6
/// header of the offending packet and what follows it), if it quotes one.
pub fn quoted_echo6(quoted: &[u8]) -> Option<(u16, u16)> {
    let icmp = quoted.get(40..48)?;
    let is_echo = quoted[0] >> 4 == 6 && quoted[6] == NEXT_HEADER_ICMPV6;
    (is_echo && icmp[0] == ICMP6_ECHO_REQUEST).then(|| {
        (
            u16::from_be_bytes([icmp[4], icmp[5]]),
            u16::from_be_bytes([icmp[6], icmp[7]]),
        )
    })
}

/// What ping6 -v prints for an ICMPv6 error (NetBSD's pr_icmph).
pub fn icmp6_error_text(ty: u8, code: u8, mtu: u32) -> String {
    match (ty, code) {
        (ICMP6_DST_UNREACH, 0) => "No Route to Destination".into(),
        (ICMP6_DST_UNREACH, 1) => "Destination Administratively Unreachable".into(),
        (ICMP6_DST_UNREACH, 2) => "Destination Unreachable Beyond Scope".into(),
        (ICMP6_DST_UNREACH, 3) => "Destination Host Unreachable".into(),
        (ICMP6_DST_UNREACH, 4) => "Destination Port Unreachable".into(),
        (ICMP6_DST_UNREACH, c) => format!("Destination Unreachable, Bad Code: {c}"),
        (ICMP6_PACKET_TOO_BIG, _) => format!("Packet too big mtu = {mtu}"),
        (ICMP6_TIME_EXCEEDED, 0) => "Time to live exceeded".into(),
        (ICMP6_TIME_EXCEEDED, 1) => "Frag reassembly time exceeded".into(),
        (ICMP6_TIME_EXCEEDED, c) => format!("Time exceeded, Bad Code: {c}"),
        (ICMP6_PARAM_PROB, 0) => "Parameter problem: Erroneous Header".into(),
        (ICMP6_PARAM_PROB, 1) => "Parameter problem: Unknown Nextheader".into(),
        (ICMP6_PARAM_PROB, 2) => "Parameter problem: Unrecognized Option".into(),
        (ICMP6_PARAM_PROB, c) => format!("Parameter problem: Bad Code: {c}"),
        (t, c) => format!("Bad ICMP type: {t} code {c}"),
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    /// IPv4: ping's output and ICMP; IPv6: ping6's output and ICMPv6.
    pub dst: IpAddr,
    /// The interface the destination's scope names (`fe80::1%shmif0`, ping6 -I).
    pub scope: Option<u32>,
    /// Its name, to print link-local addresses with (`fe80::1%shmif0`).
    pub scope_name: Option<String>,
    /// The source to send from (ping6 -S); None: the stack chooses.
    pub src: Option<IpAddr>,
    /// The source ping6's first line shows: -S, else the one the stack is expected to choose.
    pub shown_src: Option<IpAddr>,
    /// ping6 -v: print ICMPv6 errors about our requests (ping prints them always).
    pub verbose: bool,
    pub count: Option<u64>,
    pub interval: Duration,
    /// -f: the next request goes out as soon as the last one is answered (`interval` is then
    /// the longest wait); no line per reply, only the summary.
    pub flood: bool,
    /// ICMP data bytes (-s).
    pub size: usize,
    /// Total run time (-w).
    pub deadline: Option<Duration>,
    pub quiet: bool,
    pub pattern: Vec<u8>,
    /// TTL / hop limit.
    pub ttl: Option<u8>,
    pub df: bool,
    /// How long to wait for answers after the last request; None: ping6's rule, twice the
    /// longest round trip (at least a second) once something answered, else 10 seconds.
    pub wait: Option<Duration>,
    pub json: bool,
}

impl Config {
    fn v6(&self) -> bool {
        self.dst.is_ipv6()
    }

    /// An address as ping6 prints it: link-local ones with the scope's interface.
    fn show(&self, a: IpAddr) -> String {
        match (a, &self.scope_name) {
            (IpAddr::V6(v6), Some(name))
                if v6.segments()[0] & 0xffc0 == 0xfe80 || v6.is_multicast() =>
            {
                format!("{v6}%{name}")
            }
            _ => a.to_string(),
        }
    }
}

/// ping6 waits this long for a first answer after its last request (NetBSD's MAXWAIT).
const PING6_MAXWAIT: Duration = Duration::from_secs(10);

pub struct Ping {
    cfg: Config,
    ident: u16,
    started: Instant,
    end_at: Option<Instant>,
    next_send: Instant,
    last_send: Option<Instant>,
    sent: u64,
    received: u64,
    dups: u64,
    errors: u64,
    pending: HashMap<u16, Instant>,
    /// Requests with a reply (for duplicate detection).
    replied: HashSet<u16>,
    /// Requests with a reply, an error, or that failed to leave: nothing more to wait for.
    answered: HashSet<u16>,
    rtt_min: f64,
    rtt_max: f64,
    rtt_sum: f64,
    rtt_sumsq: f64,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Event<'a> {
    Start {
        dst: IpAddr,
        #[serde(skip_serializing_if = "Option::is_none")]
        src: Option<IpAddr>,
        data_bytes: usize,
    },
    Reply {
        from: IpAddr,
        seq: u16,
        ttl: u8,
        bytes: usize,
        time_ms: f64,
        dup: bool,
    },
    Error {
        from: IpAddr,
        bytes: usize,
        message: &'a str,
    },
    Summary {
        dst: IpAddr,
        transmitted: u64,
        received: u64,
        duplicates: u64,
        errors: u64,
        loss_percent: f64,
        rtt_ms: Option<Rtt>,
        /// From the start to the summary.
        elapsed_ms: f64,
    },
}

#[derive(Serialize)]
struct Rtt {
    min: f64,
    avg: f64,
    max: f64,
    stddev: f64,
}

impl Ping {
    pub fn start(cfg: Config, ident: u16, now: Instant, out: &Output) -> Ping {
        if cfg.json {
            out.json(&Event::Start {
                dst: cfg.dst,
                src: cfg.shown_src.filter(|_| cfg.v6()),
                data_bytes: cfg.size,
            });
        } else if cfg.v6() {
            // PING6(104=40+8+56 bytes) fd00:1::1 --> fd00:1::2
            let src = cfg
                .shown_src
                .map_or_else(|| "::".to_string(), |a| cfg.show(a));
            out.out(format!(
                "PING6({}=40+8+{} bytes) {src} --> {}",
                48 + cfg.size,
                cfg.size,
                cfg.show(cfg.dst)
            ));
        } else {
            out.out(format!("PING {0} ({0}): {1} data bytes", cfg.dst, cfg.size));
        }
        Ping {
            end_at: cfg.deadline.map(|d| now + d),
            cfg,
            ident,
            started: now,
            next_send: now,
            last_send: None,
            sent: 0,
            received: 0,
            dups: 0,
            errors: 0,
            pending: HashMap::new(),
            replied: HashSet::new(),
            answered: HashSet::new(),
            rtt_min: f64::MAX,
            rtt_max: 0.0,
            rtt_sum: 0.0,
            rtt_sumsq: 0.0,
        }
    }

    fn more_to_send(&self) -> bool {
        self.cfg.count.is_none_or(|c| self.sent < c)
    }

    /// How long answers are waited for after the last request.
    fn linger(&self) -> Duration {
        self.cfg.wait.unwrap_or_else(|| {
            if self.received == 0 {
                PING6_MAXWAIT
            } else {
                Duration::from_secs_f64(2.0 * self.rtt_max / 1000.0).max(Duration::from_secs(1))
            }
        })
    }

    pub fn deadline(&self) -> Option<Instant> {
        let send = self.more_to_send().then_some(self.next_send);
        let linger = if self.more_to_send() {
            None
        } else {
            self.last_send.map(|l| l + self.linger())
        };
        [send, linger, self.end_at].into_iter().flatten().min()
    }

    fn payload(&self, now: Instant) -> Vec<u8> {
        let mut data = Vec::with_capacity(self.cfg.size);
        // A timestamp like BSD's struct timeval, for packet captures; timing uses `pending`.
        let _ = now;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
            .to_be_bytes();
        for i in 0..self.cfg.size {
            data.push(if i < 8 && self.cfg.size >= 16 {
                stamp.get(i).copied().unwrap_or(0)
            } else if self.cfg.pattern.is_empty() {
                i as u8
            } else {
                self.cfg.pattern[i % self.cfg.pattern.len()]
            });
        }
        data
    }

    pub fn poll(&mut self, stack: &mut Stack, now: Instant, out: &Output) -> Option<i32> {
        if self.end_at.is_some_and(|e| now >= e) {
            return Some(self.finish(now, out));
        }
        if self.more_to_send() && now >= self.next_send {
            let seq = self.sent as u16;
            let mut msg = PacketBuf::new();
            let data = self.payload(now);
            if self.cfg.v6() {
                echo6_request(self.ident, seq, &data, &mut msg);
            } else {
                icmp::emit_into(
                    &Icmp::EchoRequest {
                        ident: self.ident,
                        seq,
                        data: &data,
                    },
                    &mut msg,
                );
            }
            self.sent += 1;
            self.last_send = Some(now);
            self.next_send = now + self.cfg.interval;
            self.pending.insert(seq, now);
            // Sequence numbers wrap after 65536 requests: forget the previous round's answers.
            self.replied.remove(&seq);
            self.answered.remove(&seq);
            let sent = stack.ip_output(
                now,
                OutIp {
                    src: self.cfg.src,
                    dst: self.cfg.dst,
                    proto: if self.cfg.v6() {
                        NEXT_HEADER_ICMPV6
                    } else {
                        PROTO_ICMP
                    },
                    ttl: self.cfg.ttl,
                    df: self.cfg.df,
                    scope: self.cfg.scope,
                    payload: msg,
                },
            );
            if let Err(e) = sent {
                if self.cfg.v6() {
                    out.err(format!("ping6: sendmsg: {e}"));
                } else {
                    out.err(format!("ping: sendto: {e}"));
                }
                // Nothing will answer a request that never left.
                self.answered.insert(seq);
            }
        }
        if let (Some(c), Some(last)) = (self.cfg.count, self.last_send) {
            let all_answered = self.answered.len() as u64 >= c.min(1 << 16);
            if self.sent >= c && (all_answered || now >= last + self.linger()) {
                return Some(self.finish(now, out));
            }
        }
        None
    }

    fn quotes_our_request(&self, quoted: &[u8]) -> bool {
        parse_quoted(quoted).is_some_and(|q| {
            q.proto == PROTO_ICMP
                && q.echo()
                    .is_some_and(|(ty, ident, _)| ty == icmp::ECHO_REQUEST && ident == self.ident)
        })
    }

    fn quoted_seq(quoted: &[u8]) -> Option<u16> {
        parse_quoted(quoted)?.echo().map(|(_, _, seq)| seq)
    }

    /// Offered every ICMP message the stack receives; true if it was ours.
    pub fn on_icmp(&mut self, now: Instant, ev: &IcmpEvent<'_>, out: &Output) -> bool {
        match ev.msg {
            IcmpMsg::V4(ref msg) if !self.cfg.v6() => self.on_icmp4(now, ev, msg, out),
            IcmpMsg::V6(Icmpv6::EchoReply { ident, seq, .. }) => {
                self.on_echo6_reply(now, ev, ident, seq, out)
            }
            IcmpMsg::V6(Icmpv6::DestUnreachable { code, quoted }) => {
                self.on_icmp6_error(ev, icmpv6::DEST_UNREACH, code, 0, quoted, out)
            }
            IcmpMsg::V6(Icmpv6::PacketTooBig { mtu, quoted }) => {
                self.on_icmp6_error(ev, icmpv6::PACKET_TOO_BIG, 0, mtu, quoted, out)
            }
            IcmpMsg::V6(Icmpv6::TimeExceeded { code, quoted }) => {
                self.on_icmp6_error(ev, icmpv6::TIME_EXCEEDED, code, 0, quoted, out)
            }
            IcmpMsg::V6(Icmpv6::ParamProblem { code, quoted, .. }) => {
                self.on_icmp6_error(ev, icmpv6::PARAM_PROBLEM, code, 0, quoted, out)
            }
            _ => false,
        }
    }

    fn on_icmp4(&mut self, now: Instant, ev: &IcmpEvent<'_>, msg: &Icmp<'_>, out: &Output) -> bool {
        match *msg {
            Icmp::EchoReply { ident, seq, .. } if ident == self.ident => {
                self.reply(now, ev, seq, out);
                true
            }
            Icmp::Unreachable { code, mtu, quoted } if self.quotes_our_request(quoted) => {
                self.error(ev, &unreach_text(code, mtu), Self::quoted_seq(quoted), out);
                true
            }
            Icmp::TimeExceeded { code, quoted } if self.quotes_our_request(quoted) => {
                self.error(ev, &exceeded_text(code), Self::quoted_seq(quoted), out);
                true
            }
            _ => false,
        }
    }

    /// An ICMPv6 echo reply with identifier `ident` and sequence number `seq`; true if it
    /// answers this ping6.
    pub fn on_echo6_reply(
        &mut self,
        now: Instant,
        ev: &IcmpEvent<'_>,
        ident: u16,
        seq: u16,
        out: &Output,
    ) -> bool {
        if !self.cfg.v6() || ident != self.ident {
            return false;
        }
        self.reply(now, ev, seq, out);
        true
    }

    /// An ICMPv6 error of type `ty` and `code` (`mtu` for packet too big) quoting `quoted`;
    /// true if it is about one of our requests. ping6 prints it only with -v.
    pub fn on_icmp6_error(
        &mut self,
        ev: &IcmpEvent<'_>,
        ty: u8,
        code: u8,
        mtu: u32,
        quoted: &[u8],
        out: &Output,
    ) -> bool {
        match quoted_echo6(quoted) {
            Some((ident, seq)) if self.cfg.v6() && ident == self.ident => {
                self.error(ev, &icmp6_error_text(ty, code, mtu), Some(seq), out);
                true
            }
            _ => false,
        }
    }

    /// An echo reply to request `seq`.
    fn reply(&mut self, now: Instant, ev: &IcmpEvent<'_>, seq: u16, out: &Output) {
        let Some(sent_at) = self.pending.get(&seq) else {
            return;
        };
        let ms = now.saturating_duration_since(*sent_at).as_secs_f64() * 1000.0;
        let dup = !self.replied.insert(seq);
        self.answered.insert(seq);
        if dup {
            self.dups += 1;
        } else {
            self.received += 1;
            self.rtt_min = self.rtt_min.min(ms);
            self.rtt_max = self.rtt_max.max(ms);
            self.rtt_sum += ms;
            self.rtt_sumsq += ms * ms;
            if self.cfg.flood {
                // Answered: the next request is due now (poll runs after this event).
                self.next_send = now;
            }
        }
        if self.cfg.flood {
            // NetBSD prints a dot per request and a backspace per reply; over the
            // line-based control socket only the summary is shown.
        } else if self.cfg.json {
            out.json(&Event::Reply {
                from: ev.src,
                seq,
                ttl: ev.ttl,
                bytes: ev.len,
                time_ms: ms,
                dup,
            });
        } else if self.cfg.quiet {
        } else if self.cfg.v6() {
            let mut line = format!(
                "{} bytes from {}, icmp_seq={} hlim={}",
                ev.len,
                self.cfg.show(ev.src),
                seq,
                ev.ttl
            );
            if self.cfg.verbose {
                line += &format!(" dst={}", self.cfg.show(ev.dst));
            }
            line += &format!(" time={ms:.3} ms");
            if dup {
                line += "(DUP!)";
            }
            out.out(line);
        } else {
            out.out(format!(
                "{} bytes from {}: icmp_seq={} ttl={} time={:.3} ms{}",
                ev.len,
                ev.src,
                seq,
                ev.ttl,
                ms,
                if dup { " (DUP!)" } else { "" }
            ));
        }
    }

    fn error(&mut self, ev: &IcmpEvent<'_>, text: &str, seq: Option<u16>, out: &Output) {
        self.errors += 1;
        // An error answers its probe: no point waiting for a reply to it.
        if let Some(s) = seq {
            self.answered.insert(s);
        }
        if self.cfg.json {
            out.json(&Event::Error {
                from: ev.src,
                bytes: ev.len,
                message: text,
            });
        } else if self.cfg.quiet || (self.cfg.v6() && !self.cfg.verbose) {
        } else {
            let from = self.cfg.show(ev.src);
            out.out(format!("{} bytes from {from}: {text}", ev.len));
        }
    }

    fn finish(&self, now: Instant, out: &Output) -> i32 {
        let loss = if self.sent == 0 {
            0.0
        } else {
            (self.sent.saturating_sub(self.received)) as f64 * 100.0 / self.sent as f64
        };
        let rtt = (self.received > 0).then(|| {
            let n = self.received as f64;
            let avg = self.rtt_sum / n;
            Rtt {
                min: self.rtt_min,
                avg,
                max: self.rtt_max,
                stddev: (self.rtt_sumsq / n - avg * avg).max(0.0).sqrt(),
            }
        });
        if self.cfg.json {
            out.json(&Event::Summary {
                dst: self.cfg.dst,
                transmitted: self.sent,
                received: self.received,
                duplicates: self.dups,
                errors: self.errors,
                loss_percent: loss,
                rtt_ms: rtt,
                elapsed_ms: now.saturating_duration_since(self.started).as_secs_f64() * 1000.0,
            });
        } else if self.cfg.v6() {
            out.out("");
            out.out(format!(
                "--- {} ping6 statistics ---",
                self.cfg.show(self.cfg.dst)
            ));
            let dups = if self.dups > 0 {
                format!("+{} duplicates, ", self.dups)
            } else {
                String::new()
            };
            out.out(format!(
                "{} packets transmitted, {} packets received, {dups}{:.1}% packet loss",
                self.sent, self.received, loss
            ));
            if let Some(r) = rtt {
                out.out(format!(
                    "round-trip min/avg/max/std-dev = {:.3}/{:.3}/{:.3}/{:.3} ms",
                    r.min, r.avg, r.max, r.stddev
                ));
            }
        } else {
            out.out("");
            out.out(format!("----{} PING Statistics----", self.cfg.dst));
            let dups = if self.dups > 0 {
                format!(", +{} duplicates", self.dups)
            } else {
                String::new()
            };
            out.out(format!(
                "{} packets transmitted, {} packets received{}, {:.1}% packet loss",
                self.sent, self.received, dups, loss
            ));
            if let Some(r) = rtt {
                out.out(format!(
                    "round-trip min/avg/max/stddev = {:.3}/{:.3}/{:.3}/{:.3} ms",
                    r.min, r.avg, r.max, r.stddev
                ));
            }
        }
        match (self.received > 0, self.cfg.v6()) {
            (true, _) => 0,
            // ping6 exits 1 when nothing answered, ping 2.
            (false, true) => 1,
            (false, false) => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::control::Reply;

    fn config(flood: bool) -> Config {
        Config {
            dst: Ipv4Addr::new(10, 0, 0, 2).into(),
            scope: None,
            scope_name: None,
            src: None,
            shown_src: None,
            verbose: false,
            count: Some(3),
            interval: Duration::from_millis(10),
            flood,
            size: 56,
            deadline: None,
            quiet: false,
            pattern: Vec::new(),
            ttl: None,
            df: false,
            wait: Some(Duration::from_secs(2)),
            json: true,
        }
    }

    /// A ping that has just sent request 0 (as `poll` would), and what it printed.
    fn sent_one(flood: bool, now: Instant) -> (Ping, crossbeam_channel::Receiver<Reply>, Output) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let out = Output::new(tx, Arc::new(AtomicBool::new(false)));
        let mut p = Ping::start(config(flood), 7, now, &out);
        p.sent = 1;
        p.last_send = Some(now);
        p.next_send = now + p.cfg.interval;
        p.pending.insert(0, now);
        (p, rx, out)
    }

    fn reply(seq: u16) -> IcmpEvent<'static> {
        IcmpEvent {
            src: Ipv4Addr::new(10, 0, 0, 2).into(),
            dst: Ipv4Addr::new(10, 0, 0, 1).into(),
            ttl: 64,
            len: 64,
            msg: IcmpMsg::V4(Icmp::EchoReply {
                ident: 7,
                seq,
                data: &[],
            }),
        }
    }

    fn lines(rx: &crossbeam_channel::Receiver<Reply>) -> Vec<String> {
        rx.try_iter()
            .filter_map(|r| match r {
                Reply::Out(l) => Some(l),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn flood_sends_the_next_request_when_the_reply_arrives_and_prints_no_reply_lines() {
        let t0 = Instant::now();
        let (mut p, rx, out) = sent_one(true, t0);
        assert_eq!(p.deadline(), Some(t0 + Duration::from_millis(10)));
        let t1 = t0 + Duration::from_micros(30);
        assert!(p.on_icmp(t1, &reply(0), &out));
        assert_eq!(p.deadline(), Some(t1), "next request due at once");
        assert_eq!(p.received, 1);
        // A duplicate does not hurry the next request along.
        let (mut p2, _rx2, out2) = sent_one(true, t0);
        p2.on_icmp(t1, &reply(0), &out2);
        p2.next_send = t0 + Duration::from_millis(10);
        p2.on_icmp(t1, &reply(0), &out2);
        assert_eq!(p2.dups, 1);
        assert_eq!(p2.deadline(), Some(t0 + Duration::from_millis(10)));

        assert_eq!(p.finish(t1, &out), 0);
        let printed = lines(&rx);
        assert_eq!(printed.len(), 2, "start and summary only: {printed:?}");
        let summary: serde_json::Value = serde_json::from_str(&printed[1]).unwrap();
        assert_eq!(summary["type"], "summary");
        assert!((summary["elapsed_ms"].as_f64().unwrap() - 0.03).abs() < 1e-9);
    }

    #[test]
    fn without_flood_a_reply_keeps_the_interval_and_prints_a_line() {
        let t0 = Instant::now();
        let (mut p, rx, out) = sent_one(false, t0);
        p.on_icmp(t0 + Duration::from_micros(30), &reply(0), &out);
        assert_eq!(p.deadline(), Some(t0 + Duration::from_millis(10)));
        let printed = lines(&rx);
        assert_eq!(printed.len(), 2, "start and the reply: {printed:?}");
        assert!(printed[1].contains("\"type\":\"reply\""));
    }

    fn config6(json: bool, verbose: bool) -> Config {
        Config {
            dst: "fe80::2".parse::<Ipv6Addr>().unwrap().into(),
            scope: Some(1),
            scope_name: Some("shmif0".into()),
            shown_src: Some("fe80::1".parse::<Ipv6Addr>().unwrap().into()),
            verbose,
            count: Some(2),
            wait: None,
            json,
            ..config(false)
        }
    }

    fn event6(len: usize) -> IcmpEvent<'static> {
        IcmpEvent {
            src: "fe80::2".parse::<Ipv6Addr>().unwrap().into(),
            dst: "fe80::1".parse::<Ipv6Addr>().unwrap().into(),
            ttl: 64,
            len,
            msg: IcmpMsg::V4(Icmp::Other { ty: 0, code: 0 }),
        }
    }

    #[test]
    fn echo6_request_is_type_128_with_a_zero_checksum_and_errors_are_matched_on_the_quote() {
        let mut b = PacketBuf::new();
        echo6_request(0x1234, 7, &[9, 8], &mut b);
        assert_eq!(b.data(), &[128, 0, 0, 0, 0x12, 0x34, 0, 7, 9, 8]);
        let mut quoted = vec![0u8; 40];
        quoted[0] = 0x60;
        quoted[6] = NEXT_HEADER_ICMPV6;
        quoted.extend_from_slice(b.data());
        assert_eq!(quoted_echo6(&quoted), Some((0x1234, 7)));
        quoted[6] = 17;
        assert_eq!(quoted_echo6(&quoted), None);
        assert_eq!(quoted_echo6(&quoted[..44]), None);
        assert_eq!(icmp6_error_text(1, 3, 0), "Destination Host Unreachable");
        assert_eq!(icmp6_error_text(2, 0, 1280), "Packet too big mtu = 1280");
        assert_eq!(icmp6_error_text(3, 0, 0), "Time to live exceeded");
    }

    #[test]
    fn ping6_prints_netbsd_lines_and_waits_by_its_own_rule() {
        let t0 = Instant::now();
        let (tx, rx) = crossbeam_channel::unbounded();
        let out = Output::new(tx, Arc::new(AtomicBool::new(false)));
        let mut p = Ping::start(config6(false, false), 7, t0, &out);
        p.sent = 2;
        p.last_send = Some(t0);
        p.pending.insert(0, t0);
        p.pending.insert(1, t0);
        // Nothing answered yet: ten seconds.
        assert_eq!(p.deadline(), Some(t0 + PING6_MAXWAIT));
        let t1 = t0 + Duration::from_micros(1500);
        // ICMP (v4) messages are not for ping6; a reply with another ident is not ours.
        assert!(!p.on_icmp(t1, &reply(0), &out));
        assert!(!p.on_echo6_reply(t1, &event6(64), 8, 0, &out));
        assert!(p.on_echo6_reply(t1, &event6(64), 7, 0, &out));
        assert!(p.on_echo6_reply(t1, &event6(64), 7, 0, &out));
        // Once answered: twice the longest round trip, at least a second.
        assert_eq!(p.deadline(), Some(t0 + Duration::from_secs(1)));
        // Errors are printed only with -v.
        let mut quoted = vec![0u8; 40];
        quoted[0] = 0x60;
        quoted[6] = NEXT_HEADER_ICMPV6;
        let mut req = PacketBuf::new();
        echo6_request(7, 1, &[], &mut req);
        quoted.extend_from_slice(req.data());
        assert!(p.on_icmp6_error(&event6(104), 1, 3, 0, &quoted, &out));
        assert!(!p.on_icmp6_error(&event6(104), 1, 3, 0, &quoted[..40], &out));
        assert_eq!(p.finish(t1, &out), 0);
        let printed = lines(&rx);
        assert_eq!(
            printed,
            [
                "PING6(104=40+8+56 bytes) fe80::1%shmif0 --> fe80::2%shmif0",
                "64 bytes from fe80::2%shmif0, icmp_seq=0 hlim=64 time=1.500 ms",
                "64 bytes from fe80::2%shmif0, icmp_seq=0 hlim=64 time=1.500 ms(DUP!)",
                "",
                "--- fe80::2%shmif0 ping6 statistics ---",
                "2 packets transmitted, 1 packets received, +1 duplicates, 50.0% packet loss",
                "round-trip min/avg/max/std-dev = 1.500/1.500/1.500/0.000 ms",
            ]
        );
        let mut v = Ping::start(config6(false, true), 7, t0, &out);
        v.sent = 2;
        v.pending.insert(1, t0);
        assert!(v.on_icmp6_error(&event6(104), 3, 0, 0, &quoted, &out));
        assert!(v.on_echo6_reply(t1, &event6(64), 7, 1, &out));
        assert_eq!(
            lines(&rx)[1..],
            [
                "104 bytes from fe80::2%shmif0: Time to live exceeded",
                "64 bytes from fe80::2%shmif0, icmp_seq=1 hlim=64 dst=fe80::1%shmif0 time=1.500 ms",
            ]
        );
        // Nothing received: status 1 (ping's is 2).
        let none = Ping::start(config6(true, false), 7, t0, &out);
        assert_eq!(none.finish(t0, &out), 1);
        let json = lines(&rx);
        assert!(json[0].contains("\"src\":\"fe80::1\""), "{json:?}");
    }
}
