//! ICMP errors for both families: the rules every error passes (never an error about an error,
//! none about fragments after the first or group-addressed packets, a token-bucket rate limit
//! per family), the messages running commands are offered, and the IPv4 encodings.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::output::OutIp;
use super::Stack;
use crate::wire::icmp::{self, Icmp};
use crate::wire::icmpv6::{self, Icmpv6};
use crate::wire::ipv4::{self, Datagram, PROTO_ICMP};
use crate::wire::ipv6::{self, Packet};
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
    V6(Icmpv6<'a>),
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

/// ICMPv6 errors the stack generates (RFC 4443).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind6 {
    NoRoute,
    BeyondScope,
    AddressUnreachable,
    PortUnreachable,
    /// The next hop's MTU.
    PacketTooBig(usize),
    HopLimitExceeded,
    ReassemblyTimeout,
    ParamProblem {
        code: u8,
        pointer: u32,
    },
}

impl ErrorKind6 {
    fn encode<'a>(self, quoted: &'a [u8]) -> Icmpv6<'a> {
        let un = |code| Icmpv6::DestUnreachable { code, quoted };
        match self {
            ErrorKind6::NoRoute => un(icmpv6::UNREACH_NO_ROUTE),
            ErrorKind6::BeyondScope => un(icmpv6::UNREACH_BEYOND_SCOPE),
            ErrorKind6::AddressUnreachable => un(icmpv6::UNREACH_ADDRESS),
            ErrorKind6::PortUnreachable => un(icmpv6::UNREACH_PORT),
            ErrorKind6::PacketTooBig(mtu) => Icmpv6::PacketTooBig {
                mtu: mtu as u32,
                quoted,
            },
            ErrorKind6::HopLimitExceeded => Icmpv6::TimeExceeded {
                code: icmpv6::EXCEEDED_HOP_LIMIT,
                quoted,
            },
            ErrorKind6::ReassemblyTimeout => Icmpv6::TimeExceeded {
                code: icmpv6::EXCEEDED_REASSEMBLY,
                quoted,
            },
            ErrorKind6::ParamProblem { code, pointer } => Icmpv6::ParamProblem {
                code,
                pointer,
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
    V6,
}

impl Stack {
    /// The rules every ICMP error passes, both families: true if it may be sent (and counts
    /// it as sent), false with the reason counted otherwise.
    pub(super) fn icmp_error_permitted(&mut self, now: Instant, fam: Fam, o: Offence) -> bool {
        let c = &mut self.stats.counters;
        let (limit, bucket, about_error, suppressed, limited, out, errors_out) = match fam {
            Fam::V4 => (
                self.sysctl.icmp_errppslimit,
                &mut self.icmp_bucket,
                &mut c.icmp_error_about_error,
                &mut c.icmp_error_suppressed,
                &mut c.icmp_rate_limited,
                &mut c.icmp_out,
                &mut c.icmp_errors_out,
            ),
            Fam::V6 => (
                self.sysctl.icmp6_errppslimit,
                &mut self.icmp6_bucket,
                &mut c.icmp6_error_about_error,
                &mut c.icmp6_error_suppressed,
                &mut c.icmp6_rate_limited,
                &mut c.icmp6_out,
                &mut c.icmp6_errors_out,
            ),
        };
        match o {
            Offence::IsError => {
                *about_error += 1;
                return false;
            }
            Offence::Suppressed => {
                *suppressed += 1;
                return false;
            }
            Offence::Answerable => {}
        }
        if !bucket.take(now, limit) {
            *limited += 1;
            return false;
        }
        *out += 1;
        *errors_out += 1;
        true
    }

    /// Offers an ICMP message to the running commands; true if one took it.
    pub(super) fn offer_icmp(&mut self, now: Instant, ev: &IcmpEvent<'_>) -> bool {
        if self.apps_busy {
            return false;
        }
        self.apps.iter_mut().any(|app| app.on_icmp(now, ev))
    }

    /// Sends an ICMPv6 error about `p` if RFC 4443 2.4 and the rate limit allow it.
    /// `multicast_ok`: Packet Too Big and unrecognised-option problems are sent even about
    /// packets to multicast groups (2.4 (e.3), (e.2)).
    pub(super) fn icmp6_error(
        &mut self,
        now: Instant,
        p: &Packet<'_>,
        in_if: Option<u32>,
        kind: ErrorKind6,
        multicast_ok: bool,
    ) {
        let h = p.header;
        // A packet whose headers do not parse may still deserve a parameter problem.
        let walk = ipv6::walk(p).ok();
        let later_fragment = walk
            .and_then(|w| w.fragment)
            .is_some_and(|f| f.header.offset != 0);
        let is_error = walk.is_some_and(|w| {
            w.upper == ipv6::ICMPV6
                && !later_fragment
                && w.payload
                    .first()
                    .is_none_or(|&t| icmpv6::is_error_type(t) || t == icmpv6::REDIRECT)
        });
        let offence = if is_error {
            Offence::IsError
        } else if (h.dst.is_multicast() && !multicast_ok)
            || h.src.is_unspecified()
            || h.src.is_multicast()
            || later_fragment
        {
            Offence::Suppressed
        } else {
            Offence::Answerable
        };
        if !self.icmp_error_permitted(now, Fam::V6, offence) {
            return;
        }
        let quoted = icmpv6::quote(p.raw);
        let dst = h.src;
        let scope = in_if.filter(|_| ipv6::is_link_local(dst));
        // From the address the packet arrived on, so traceroute6 shows each router's near side.
        let src = in_if.and_then(|i| self.source_for6(dst, i)).or_else(|| {
            let hop = self.routes6.lookup(dst)?;
            self.source_for6(dst, hop.ifindex)
        });
        let Some(src) = src else {
            return;
        };
        let mut msg = PacketBuf::new();
        icmpv6::emit(src, dst, &kind.encode(quoted), &mut msg);
        let _ = self.ip_output(
            now,
            OutIp {
                src: Some(IpAddr::V6(src)),
                dst: IpAddr::V6(dst),
                proto: ipv6::ICMPV6,
                ttl: None,
                df: false,
                scope,
                payload: msg,
            },
        );
    }

    /// An ICMPv6 error about a whole packet held in a queue (neighbour resolution failed).
    pub(super) fn icmp6_error_about(&mut self, now: Instant, raw: &[u8], kind: ErrorKind6) {
        let Ok(p) = ipv6::parse(raw) else {
            return;
        };
        self.icmp6_error(now, &p, None, kind, false);
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
