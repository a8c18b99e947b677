//! ping: ICMP echo requests at an interval, replies and errors matched by identifier.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{exceeded_text, unreach_text};
use crate::control::Output;
use crate::stack::{IcmpEvent, IcmpMsg, OutIp, Stack};
use crate::wire::icmp::{self, Icmp};
use crate::wire::ipv4::{parse_quoted, PROTO_ICMP};
use crate::wire::PacketBuf;

#[derive(Clone, Debug)]
pub struct Config {
    pub dst: Ipv4Addr,
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
    pub ttl: Option<u8>,
    pub df: bool,
    /// How long to wait for answers after the last request.
    pub wait: Duration,
    pub json: bool,
}

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
        dst: Ipv4Addr,
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
        dst: Ipv4Addr,
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
                data_bytes: cfg.size,
            });
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

    pub fn deadline(&self) -> Option<Instant> {
        let send = self.more_to_send().then_some(self.next_send);
        let linger = if self.more_to_send() {
            None
        } else {
            self.last_send.map(|l| l + self.cfg.wait)
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
            icmp::emit_into(
                &Icmp::EchoRequest {
                    ident: self.ident,
                    seq,
                    data: &data,
                },
                &mut msg,
            );
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
                    src: None,
                    dst: IpAddr::V4(self.cfg.dst),
                    proto: PROTO_ICMP,
                    ttl: self.cfg.ttl,
                    df: self.cfg.df,
                    scope: None,
                    payload: msg,
                },
            );
            if let Err(e) = sent {
                out.err(format!("ping: sendto: {e}"));
                // Nothing will answer a request that never left.
                self.answered.insert(seq);
            }
        }
        if let (Some(c), Some(last)) = (self.cfg.count, self.last_send) {
            let all_answered = self.answered.len() as u64 >= c.min(1 << 16);
            if self.sent >= c && (all_answered || now >= last + self.cfg.wait) {
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

    pub fn on_icmp(&mut self, now: Instant, ev: &IcmpEvent<'_>, out: &Output) -> bool {
        let IcmpMsg::V4(msg) = &ev.msg else {
            return false;
        };
        let msg = *msg;
        match msg {
            Icmp::EchoReply { ident, seq, .. } if ident == self.ident => {
                let Some(sent_at) = self.pending.get(&seq) else {
                    return true;
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
                } else if !self.cfg.quiet {
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
        } else if !self.cfg.quiet {
            out.out(format!("{} bytes from {}: {}", ev.len, ev.src, text));
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
        if self.received > 0 {
            0
        } else {
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;
    use crate::control::Reply;

    fn config(flood: bool) -> Config {
        Config {
            dst: Ipv4Addr::new(10, 0, 0, 2),
            count: Some(3),
            interval: Duration::from_millis(10),
            flood,
            size: 56,
            deadline: None,
            quiet: false,
            pattern: Vec::new(),
            ttl: None,
            df: false,
            wait: Duration::from_secs(2),
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
}
