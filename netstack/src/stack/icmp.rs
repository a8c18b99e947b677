//! ICMP errors for both families: the rules every error passes (never an error about an error,
//! none about fragments after the first or group-addressed packets, a token-bucket rate limit
//! per family), the messages running commands are offered, and the IPv4 encodings.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::output::OutIp;
use super::Stack;
use crate::wire::icmp::{self, Icmp};
use crate::wire::ipv4::{self, Datagram, PROTO_ICMP};
use crate::wire::PacketBuf;

/// An ICMP message handed to running commands (ping, traceroute).
#[derive(Debug)]
pub struct IcmpEvent<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL / hop limit it arrived with.
    pub ttl: u8,
    /// Length of the ICMP message (what ping prints as "N bytes from").
    pub len: usize,
    pub msg: IcmpMsg<'a>,
}

#[derive(Debug)]
pub enum IcmpMsg<'a> {
    V4(Icmp<'a>),
}

/// ICMP errors the stack generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NetUnreachable,
    HostUnreachable,
    ProtocolUnreachable,
    PortUnreachable,
    /// The next hop's MTU.
    NeedFrag(usize),
    TtlExceeded,
    ReassemblyTimeout,
}

impl ErrorKind {
    fn encode_v4<'a>(self, quoted: &'a [u8]) -> Icmp<'a> {
        let un = |code, mtu| Icmp::Unreachable { code, mtu, quoted };
        match self {
            ErrorKind::NetUnreachable => un(icmp::UNREACH_NET, 0),
            ErrorKind::HostUnreachable => un(icmp::UNREACH_HOST, 0),
            ErrorKind::ProtocolUnreachable => un(icmp::UNREACH_PROTOCOL, 0),
            ErrorKind::PortUnreachable => un(icmp::UNREACH_PORT, 0),
            ErrorKind::NeedFrag(mtu) => un(icmp::UNREACH_NEEDFRAG, mtu.min(0xffff) as u16),
            ErrorKind::TtlExceeded => Icmp::TimeExceeded {
                code: icmp::EXCEEDED_TTL,
                quoted,
            },
            ErrorKind::ReassemblyTimeout => Icmp::TimeExceeded {
                code: icmp::EXCEEDED_REASSEMBLY,
                quoted,
            },
        }
    }
}

/// A token bucket refilled continuously, for ICMP error rate limiting.
#[derive(Debug)]
pub(super) struct TokenBucket {
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    pub(super) fn full(per_sec: u32) -> TokenBucket {
        TokenBucket {
            tokens: per_sec as f64,
            last: None,
        }
    }

    fn take(&mut self, now: Instant, per_sec: u32) -> bool {
        if per_sec == 0 {
            return true;
        }
        let cap = per_sec as f64;
        let elapsed = self
            .last
            .map_or(Duration::ZERO, |l| now.saturating_duration_since(l));
        self.last = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * cap).min(cap);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why an offending packet may not get an error, as the family-specific caller found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Offence {
    /// Fine to answer.
    Answerable,
    /// It is itself an ICMP error (or too short to tell).
    IsError,
    /// A later fragment, or sent to or from a group or martian address.
    Suppressed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fam {
    V4,
}

impl Stack {
    /// The rules every ICMP error passes, both families: true if it may be sent (and counts
    /// it as sent), false with the reason counted otherwise.
    pub(super) fn icmp_error_permitted(&mut self, now: Instant, fam: Fam, o: Offence) -> bool {
        let c = &mut self.stats.counters;
        let (limit, bucket) = match fam {
            Fam::V4 => (self.sysctl.icmp_errppslimit, &mut self.icmp_bucket),
        };
        match o {
            Offence::IsError => {
                c.icmp_error_about_error += 1;
                return false;
            }
            Offence::Suppressed => {
                c.icmp_error_suppressed += 1;
                return false;
            }
            Offence::Answerable => {}
        }
        if !bucket.take(now, limit) {
            c.icmp_rate_limited += 1;
            return false;
        }
        c.icmp_out += 1;
        c.icmp_errors_out += 1;
        true
    }

    /// Sends an ICMP error about `d` if the rules allow it.
    pub(super) fn icmp4_error(
        &mut self,
        now: Instant,
        d: &Datagram<'_>,
        in_if: Option<u32>,
        kind: ErrorKind,
    ) {
        let h = d.header;
        let offence =
            if h.proto == PROTO_ICMP && d.payload.first().is_none_or(|&t| icmp::is_error_type(t)) {
                Offence::IsError
            } else if h.frag_offset != 0
                || h.dst.is_broadcast()
                || h.dst.is_multicast()
                || ipv4::is_martian_source(h.src)
                || self.is_directed_broadcast(h.dst)
            {
                Offence::Suppressed
            } else {
                Offence::Answerable
            };
        if !self.icmp_error_permitted(now, Fam::V4, offence) {
            return;
        }
        // Quote the header and the first 8 payload bytes (RFC 792).
        let quote_len = d.raw_header.len() + d.payload.len().min(8);
        let mut quoted = [0u8; 60 + 8];
        quoted[..d.raw_header.len()].copy_from_slice(d.raw_header);
        quoted[d.raw_header.len()..quote_len]
            .copy_from_slice(&d.payload[..quote_len - d.raw_header.len()]);
        let mut msg = PacketBuf::new();
        icmp::emit_into(&kind.encode_v4(&quoted[..quote_len]), &mut msg);
        // Answer from the address the offending datagram arrived on, so traceroute shows the
        // near side of each router.
        let src = in_if
            .and_then(|i| self.iface_by_index(i))
            .and_then(|i| i.source_for(h.src))
            .or_else(|| self.source_for(h.src))
            .map(IpAddr::V4);
        let _ = self.ip_output(
            now,
            OutIp {
                src,
                dst: IpAddr::V4(h.src),
                proto: PROTO_ICMP,
                ttl: None,
                df: false,
                scope: None,
                payload: msg,
            },
        );
    }

    /// Sends an ICMP error about a raw datagram start held in a queue (neighbour resolution
    /// failures, reassembly timeouts), which may be cut short.
    pub(super) fn icmp4_error_about(
        &mut self,
        now: Instant,
        raw: &[u8],
        in_if: Option<u32>,
        kind: ErrorKind,
    ) {
        let (Some(q), Some((df, mf, frag_offset, hl))) =
            (ipv4::parse_quoted(raw), ipv4::frag_fields(raw))
        else {
            return;
        };
        let h = ipv4::Header {
            header_len: hl,
            tos: 0,
            total_len: raw.len(),
            id: q.id,
            df,
            mf,
            frag_offset,
            ttl: 0,
            proto: q.proto,
            src: q.src,
            dst: q.dst,
        };
        let (raw_header, payload) = raw.split_at(hl);
        let d = Datagram {
            header: h,
            bytes: raw,
            raw_header,
            payload,
        };
        self.icmp4_error(now, &d, in_if, kind);
    }
}
