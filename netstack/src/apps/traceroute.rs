//! traceroute and traceroute6: UDP probes with increasing TTL (hop limit); routers answer
//! time-exceeded, the destination port-unreachable. One probe outstanding at a time.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::control::Output;
use crate::stack::{IcmpEvent, IcmpMsg, OutIp, Stack};
use crate::wire::icmp::{self, Icmp};
use crate::wire::icmpv6::{self, Icmpv6};
use crate::wire::ipv4::{parse_quoted, PROTO_UDP};
use crate::wire::ipv6;
use crate::wire::udp::{self, Udp};
use crate::wire::PacketBuf;

/// Traditional first destination port.
pub const BASE_PORT: u16 = 33434;

#[derive(Clone, Debug)]
pub struct Config {
    pub dst: IpAddr,
    pub first_ttl: u8,
    pub max_ttl: u8,
    pub nqueries: u8,
    pub wait: Duration,
    pub numeric: bool,
    /// Total IP datagram length of a probe.
    pub packet_len: usize,
    pub json: bool,
}

#[derive(Serialize, Clone)]
struct Probe {
    from: Option<IpAddr>,
    rtt_ms: Option<f64>,
    /// "!N", "!H", "!P", "!F" ... or empty.
    annotation: String,
}

#[derive(Serialize)]
struct Hop {
    ttl: u8,
    probes: Vec<Probe>,
}

pub struct Traceroute {
    cfg: Config,
    src_port: u16,
    ttl: u8,
    query: u8,
    next_port: u16,
    /// (destination port, sent at) of the probe in flight.
    outstanding: Option<(u16, Instant)>,
    probes: Vec<Probe>,
    reached: bool,
    hops: Vec<Hop>,
    /// Set when an answer completed the trace; `poll` returns it.
    pending_exit: Option<i32>,
}

impl Traceroute {
    pub fn start(cfg: Config, ident: u16, out: &Output) -> Traceroute {
        if !cfg.json {
            let name = if cfg.dst.is_ipv6() {
                "traceroute6"
            } else {
                "traceroute"
            };
            out.out(format!(
                "{name} to {0} ({0}), {1} hops max, {2} byte packets",
                cfg.dst, cfg.max_ttl, cfg.packet_len
            ));
        }
        Traceroute {
            ttl: cfg.first_ttl,
            cfg,
            src_port: ident | 0x8000,
            query: 0,
            next_port: BASE_PORT,
            outstanding: None,
            probes: Vec::new(),
            reached: false,
            hops: Vec::new(),
            pending_exit: None,
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        if self.pending_exit.is_some() {
            return Some(Instant::now());
        }
        Some(match self.outstanding {
            Some((_, sent)) => sent + self.cfg.wait,
            None => Instant::now(),
        })
    }

    pub fn poll(&mut self, stack: &mut Stack, now: Instant, out: &Output) -> Option<i32> {
        if let Some(code) = self.pending_exit.take() {
            return Some(code);
        }
        if let Some((_, sent)) = self.outstanding {
            if now < sent + self.cfg.wait {
                return None;
            }
            self.outstanding = None;
            self.probes.push(Probe {
                from: None,
                rtt_ms: None,
                annotation: String::new(),
            });
            if let Some(code) = self.next_query(out) {
                return Some(code);
            }
        }
        // Send the next probe.
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1);
        let Some(src) = stack.source_for_ip(self.cfg.dst) else {
            out.err(format!("traceroute: {}: No route to host", self.cfg.dst));
            return Some(1);
        };
        let headers = if self.cfg.dst.is_ipv6() { 48 } else { 28 };
        let data = vec![0u8; self.cfg.packet_len.saturating_sub(headers)];
        let udp = Udp {
            src_port: self.src_port,
            dst_port: port,
            payload: &data,
        };
        let payload = match (src, self.cfg.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuf::from_slice(&udp::emit(s, d, &udp)),
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut b = PacketBuf::new();
                udp::emit_v6(s, d, &udp, &mut b);
                b
            }
            _ => return Some(1),
        };
        self.outstanding = Some((port, now));
        let r = stack.ip_output(
            now,
            OutIp {
                src: Some(src),
                dst: self.cfg.dst,
                proto: PROTO_UDP,
                ttl: Some(self.ttl),
                df: false,
                scope: None,
                payload,
            },
        );
        if let Err(e) = r {
            out.err(format!("traceroute: sendto: {e}"));
            return Some(1);
        }
        None
    }

    /// Moves to the next probe; prints the hop line when its probes are done.
    fn next_query(&mut self, out: &Output) -> Option<i32> {
        self.query += 1;
        if self.query < self.cfg.nqueries {
            return None;
        }
        let hop = Hop {
            ttl: self.ttl,
            probes: std::mem::take(&mut self.probes),
        };
        if !self.cfg.json {
            out.out(self.render(&hop));
        }
        self.hops.push(hop);
        self.query = 0;
        if self.reached || self.ttl >= self.cfg.max_ttl {
            if self.cfg.json {
                out.json(&serde_json::json!({
                    "dst": self.cfg.dst,
                    "reached": self.reached,
                    "hops": self.hops,
                }));
            }
            return Some(0);
        }
        self.ttl += 1;
        None
    }

    fn render(&self, hop: &Hop) -> String {
        let mut s = format!("{:2} ", hop.ttl);
        let mut last: Option<IpAddr> = None;
        for p in &hop.probes {
            match (p.from, p.rtt_ms) {
                (Some(a), Some(ms)) => {
                    if last != Some(a) {
                        if self.cfg.numeric {
                            s += &format!(" {a}");
                        } else {
                            s += &format!(" {a} ({a})");
                        }
                        last = Some(a);
                    }
                    s += &format!("  {ms:.3} ms");
                    if !p.annotation.is_empty() {
                        s += &format!(" {}", p.annotation);
                    }
                }
                _ => s += " *",
            }
        }
        s
    }

    pub fn on_icmp(&mut self, now: Instant, ev: &IcmpEvent<'_>, out: &Output) -> bool {
        let at_dst = ev.src == self.cfg.dst;
        // (quoted packet's ports, annotation, whether the trace ends here)
        let (ports, annotation, final_hop) = match &ev.msg {
            IcmpMsg::V4(m) => {
                let (quoted, annotation, final_hop) = match *m {
                    Icmp::TimeExceeded { quoted, .. } => (quoted, "", false),
                    Icmp::Unreachable { code, quoted, .. } => {
                        let a = match code {
                            icmp::UNREACH_PORT if at_dst => "",
                            icmp::UNREACH_PORT => "!P",
                            icmp::UNREACH_NET => "!N",
                            icmp::UNREACH_HOST => "!H",
                            icmp::UNREACH_PROTOCOL => "!P",
                            icmp::UNREACH_NEEDFRAG => "!F",
                            _ => "!",
                        };
                        (quoted, a, true)
                    }
                    _ => return false,
                };
                let q = parse_quoted(quoted).filter(|q| q.proto == PROTO_UDP);
                (q.and_then(|q| q.ports()), annotation, final_hop)
            }
            IcmpMsg::V6(m) => {
                // NetBSD traceroute6's annotations.
                let (quoted, annotation, final_hop) = match *m {
                    Icmpv6::TimeExceeded { quoted, .. } => (quoted, "", false),
                    Icmpv6::DestUnreachable { code, quoted } => {
                        let a = match code {
                            icmpv6::UNREACH_PORT if at_dst => "",
                            icmpv6::UNREACH_PORT => "!P",
                            icmpv6::UNREACH_NO_ROUTE => "!N",
                            icmpv6::UNREACH_ADMIN => "!P",
                            icmpv6::UNREACH_BEYOND_SCOPE => "!S",
                            icmpv6::UNREACH_ADDRESS => "!A",
                            _ => "!",
                        };
                        (quoted, a, true)
                    }
                    _ => return false,
                };
                let q = ipv6::parse_quoted(quoted).filter(|q| q.upper == ipv6::UDP);
                (q.and_then(|q| q.ports()), annotation, final_hop)
            }
        };
        let annotation = annotation.to_string();
        let Some((sport, dport)) = ports else {
            return false;
        };
        if sport != self.src_port {
            return false;
        }
        let Some((port, sent)) = self.outstanding else {
            // A late answer to a probe we already gave up on.
            return true;
        };
        if port != dport {
            return true;
        }
        self.outstanding = None;
        if final_hop {
            self.reached = true;
        }
        self.probes.push(Probe {
            from: Some(ev.src),
            rtt_ms: Some(now.saturating_duration_since(sent).as_secs_f64() * 1000.0),
            annotation,
        });
        // Only `poll` can end the job: leave the status for it.
        self.pending_exit = self.next_query(out);
        true
    }
}
