//! ICMPv6 (RFC 4443) and the Neighbor Discovery messages (RFC 4861).
//!
//! `parse` checks the checksum over the pseudo-header and each message's own shape (lengths,
//! ND codes and options); `validate_nd` adds the ND rules that involve the IP header (hop
//! limit 255, source and destination addresses). The stack calls both for every message.

use std::net::Ipv6Addr;

use super::ipv6::{self, pseudo_header_checksum, ICMPV6};
use super::{Mac, PacketBuf};
use crate::stats::DropReason;

pub use super::ipv6::{
    PARAM_ERRONEOUS_FIELD, PARAM_INCOMPLETE_CHAIN, PARAM_UNRECOGNIZED_NEXT_HEADER,
    PARAM_UNRECOGNIZED_OPTION,
};

/// Type, code, checksum and the 32-bit word every RFC 4443 message has.
pub const HEADER_LEN: usize = 8;

pub const DEST_UNREACH: u8 = 1;
pub const PACKET_TOO_BIG: u8 = 2;
pub const TIME_EXCEEDED: u8 = 3;
pub const PARAM_PROBLEM: u8 = 4;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
pub const MLD_QUERY: u8 = 130;
pub const MLD_REPORT: u8 = 131;
pub const MLD_DONE: u8 = 132;
pub const ROUTER_SOLICIT: u8 = 133;
pub const ROUTER_ADVERT: u8 = 134;
pub const NEIGHBOR_SOLICIT: u8 = 135;
pub const NEIGHBOR_ADVERT: u8 = 136;
pub const REDIRECT: u8 = 137;
pub const MLD2_REPORT: u8 = 143;

pub const UNREACH_NO_ROUTE: u8 = 0;
pub const UNREACH_ADMIN: u8 = 1;
pub const UNREACH_BEYOND_SCOPE: u8 = 2;
pub const UNREACH_ADDRESS: u8 = 3;
pub const UNREACH_PORT: u8 = 4;
pub const EXCEEDED_HOP_LIMIT: u8 = 0;
pub const EXCEEDED_REASSEMBLY: u8 = 1;

/// ND options (RFC 4861 4.6).
pub const OPT_SOURCE_LLA: u8 = 1;
pub const OPT_TARGET_LLA: u8 = 2;
pub const OPT_PREFIX_INFO: u8 = 3;
pub const OPT_REDIRECTED_HEADER: u8 = 4;
pub const OPT_MTU: u8 = 5;

/// ND messages are sent with, and only accepted at, this hop limit: proof they were not
/// forwarded from off-link (RFC 4861 3.1).
pub const ND_HOP_LIMIT: u8 = 255;
/// A lifetime of all ones is infinity (RFC 4861 4.6.2).
pub const INFINITE_LIFETIME: u32 = 0xffff_ffff;

/// The most of an offending packet an error may quote: the whole error packet (IPv6 header,
/// ICMPv6 header, quote) stays within the IPv6 minimum MTU (RFC 4443 2.4(c)).
pub const MAX_ERROR_QUOTE: usize = ipv6::MIN_MTU - ipv6::HEADER_LEN - HEADER_LEN;

/// Fills in the checksum of the ICMPv6 message in `msg` for `src` and `dst`: commands build
/// messages before the stack has chosen their source address.
pub fn set_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &mut [u8]) {
    if msg.len() < HEADER_LEN {
        return;
    }
    msg[2..4].copy_from_slice(&[0, 0]);
    let c = pseudo_header_checksum(src, dst, ICMPV6, msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
}

/// How many bytes of an offending packet of `offending_len` bytes an error may quote.
pub fn quote_len(offending_len: usize) -> usize {
    offending_len.min(MAX_ERROR_QUOTE)
}

/// The part of `offending` (from its IPv6 header on) an error may quote.
pub fn quote(offending: &[u8]) -> &[u8] {
    offending
        .get(..quote_len(offending.len()))
        .unwrap_or(offending)
}

/// Whether a message of this type is an error, to which no error is ever sent (RFC 4443 2.4(e)).
pub fn is_error_type(ty: u8) -> bool {
    ty < 128
}

/// A Prefix Information option of a Router Advertisement (RFC 4861 4.6.2), as sent: the
/// lifetimes and length are not checked against SLAAC's rules (RFC 4862 5.5.3), which is the
/// stack's job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Addr,
    /// 0..=128 (options with more are left out of the message).
    pub len: u8,
    pub on_link: bool,
    pub autonomous: bool,
    /// Seconds; `INFINITE_LIFETIME` is infinity.
    pub valid: u32,
    pub preferred: u32,
}

/// A validated ICMPv6 message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Icmpv6<'a> {
    EchoRequest {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq: u16,
        data: &'a [u8],
    },
    /// `quoted`: the offending packet from its IPv6 header on (see `ipv6::parse_quoted`).
    DestUnreachable {
        code: u8,
        quoted: &'a [u8],
    },
    PacketTooBig {
        mtu: u32,
        quoted: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        quoted: &'a [u8],
    },
    /// `pointer`: the byte offset of the problem from the start of the offending packet.
    ParamProblem {
        code: u8,
        pointer: u32,
        quoted: &'a [u8],
    },
    RouterSolicit {
        source_mac: Option<Mac>,
    },
    RouterAdvert {
        /// Cur Hop Limit; 0 is unspecified.
        hop_limit: u8,
        managed: bool,
        other: bool,
        /// Router lifetime in seconds; 0: not a default router.
        lifetime: u16,
        /// Reachable time in ms; 0 is unspecified.
        reachable: u32,
        /// Retransmission timer in ms; 0 is unspecified.
        retrans: u32,
        source_mac: Option<Mac>,
        mtu: Option<u32>,
        prefixes: Vec<PrefixInfo>,
    },
    NeighborSolicit {
        target: Ipv6Addr,
        source_mac: Option<Mac>,
    },
    NeighborAdvert {
        target: Ipv6Addr,
        router: bool,
        solicited: bool,
        override_: bool,
        target_mac: Option<Mac>,
    },
    Redirect {
        target: Ipv6Addr,
        dest: Ipv6Addr,
        target_mac: Option<Mac>,
        /// The Redirected Header option's packet (possibly cut), empty if absent.
        redirected: &'a [u8],
    },
    /// Any other type (MLD among them): accepted, counted, not acted on.
    Other {
        ty: u8,
        code: u8,
    },
}

fn addr_at(b: &[u8], at: usize) -> Option<Ipv6Addr> {
    let a: [u8; 16] = b.get(at..at + 16)?.try_into().ok()?;
    Some(Ipv6Addr::from(a))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The ND options a message of type `ty` uses.
#[derive(Default)]
struct NdOptions<'a> {
    source_mac: Option<Mac>,
    target_mac: Option<Mac>,
    mtu: Option<u32>,
    prefixes: Vec<PrefixInfo>,
    redirected: &'a [u8],
}

fn lla(opt: &[u8]) -> Result<Mac, DropReason> {
    // An Ethernet address fills an 8-byte option (RFC 2464 8).
    match opt {
        [_, 1, m @ ..] => Ok(Mac(
            <[u8; 6]>::try_from(m).map_err(|_| DropReason::NdBadOption)?
        )),
        _ => Err(DropReason::NdBadOption),
    }
}

/// Walks the options of a message of type `ty`. Every option must have a nonzero length and
/// fit (RFC 4861 7.1.1 etc.); the ones this message uses must have their defined size; the
/// rest are ignored (4.6). The first of a repeated option wins.
fn nd_options(ty: u8, mut opts: &[u8]) -> Result<NdOptions<'_>, DropReason> {
    let mut out = NdOptions::default();
    while let Some(&len8) = opts.get(1) {
        let len = usize::from(len8) * 8;
        if len == 0 {
            return Err(DropReason::NdBadOption);
        }
        let opt = opts.get(..len).ok_or(DropReason::NdBadOption)?;
        let opt_ty = opt.first().copied().unwrap_or(0);
        match (ty, opt_ty) {
            (ROUTER_SOLICIT | ROUTER_ADVERT | NEIGHBOR_SOLICIT, OPT_SOURCE_LLA) => {
                let m = lla(opt)?;
                out.source_mac.get_or_insert(m);
            }
            (NEIGHBOR_ADVERT | REDIRECT, OPT_TARGET_LLA) => {
                let m = lla(opt)?;
                out.target_mac.get_or_insert(m);
            }
            (ROUTER_ADVERT, OPT_MTU) => {
                if len != 8 {
                    return Err(DropReason::NdBadOption);
                }
                let mtu = be32(opt, 4).ok_or(DropReason::NdBadOption)?;
                out.mtu.get_or_insert(mtu);
            }
            (ROUTER_ADVERT, OPT_PREFIX_INFO) => {
                if len != 32 {
                    return Err(DropReason::NdBadOption);
                }
                let bad = DropReason::NdBadOption;
                let (plen, flags) = match opt.get(2..4) {
                    Some(&[l, f]) => (l, f),
                    _ => return Err(bad),
                };
                // A length past 128 names no prefix; the rest of the advertisement stands.
                if plen <= 128 {
                    out.prefixes.push(PrefixInfo {
                        prefix: addr_at(opt, 16).ok_or(bad)?,
                        len: plen,
                        on_link: flags & 0x80 != 0,
                        autonomous: flags & 0x40 != 0,
                        valid: be32(opt, 4).ok_or(bad)?,
                        preferred: be32(opt, 8).ok_or(bad)?,
                    });
                }
            }
            (REDIRECT, OPT_REDIRECTED_HEADER) if out.redirected.is_empty() => {
                out.redirected = opt.get(8..).unwrap_or(&[]);
            }
            _ => {}
        }
        opts = opts.get(len..).unwrap_or(&[]);
    }
    if !opts.is_empty() {
        // One stray byte: an option without its length.
        return Err(DropReason::NdBadOption);
    }
    Ok(out)
}

/// Parses the ICMPv6 message `buf` that `src` sent to `dst` (the whole upper-layer payload
/// after the extension headers).
pub fn parse(src: Ipv6Addr, dst: Ipv6Addr, buf: &[u8]) -> Result<Icmpv6<'_>, DropReason> {
    let (ty, code) = match buf {
        [ty, code, _, _, ..] => (*ty, *code),
        _ => return Err(DropReason::Icmp6Truncated),
    };
    if pseudo_header_checksum(src, dst, ICMPV6, buf) != 0 {
        return Err(DropReason::Icmp6BadChecksum);
    }
    let nd_min = match ty {
        ROUTER_SOLICIT => Some(8),
        ROUTER_ADVERT => Some(16),
        NEIGHBOR_SOLICIT | NEIGHBOR_ADVERT => Some(24),
        REDIRECT => Some(40),
        _ => None,
    };
    if let Some(min) = nd_min {
        if code != 0 {
            return Err(DropReason::NdBadCode);
        }
        if buf.len() < min {
            return Err(DropReason::NdBadLength);
        }
    } else if buf.len() < HEADER_LEN
        && matches!(
            ty,
            DEST_UNREACH
                | PACKET_TOO_BIG
                | TIME_EXCEEDED
                | PARAM_PROBLEM
                | ECHO_REQUEST
                | ECHO_REPLY
        )
    {
        return Err(DropReason::Icmp6Truncated);
    }
    let short = DropReason::Icmp6Truncated;
    let w16 = |at| be16(buf, at).ok_or(short);
    let w32 = |at| be32(buf, at).ok_or(short);
    let rest = buf.get(HEADER_LEN..).unwrap_or(&[]);
    let flags = buf.get(4).copied().unwrap_or(0);
    let nd_bad = DropReason::NdBadLength;
    Ok(match ty {
        ECHO_REQUEST => Icmpv6::EchoRequest {
            ident: w16(4)?,
            seq: w16(6)?,
            data: rest,
        },
        ECHO_REPLY => Icmpv6::EchoReply {
            ident: w16(4)?,
            seq: w16(6)?,
            data: rest,
        },
        DEST_UNREACH => Icmpv6::DestUnreachable { code, quoted: rest },
        PACKET_TOO_BIG => Icmpv6::PacketTooBig {
            mtu: w32(4)?,
            quoted: rest,
        },
        TIME_EXCEEDED => Icmpv6::TimeExceeded { code, quoted: rest },
        PARAM_PROBLEM => Icmpv6::ParamProblem {
            code,
            pointer: w32(4)?,
            quoted: rest,
        },
        ROUTER_SOLICIT => Icmpv6::RouterSolicit {
            source_mac: nd_options(ty, rest)?.source_mac,
        },
        ROUTER_ADVERT => {
            let o = nd_options(ty, buf.get(16..).unwrap_or(&[]))?;
            Icmpv6::RouterAdvert {
                hop_limit: flags,
                managed: buf.get(5).is_some_and(|f| f & 0x80 != 0),
                other: buf.get(5).is_some_and(|f| f & 0x40 != 0),
                lifetime: be16(buf, 6).ok_or(nd_bad)?,
                reachable: be32(buf, 8).ok_or(nd_bad)?,
                retrans: be32(buf, 12).ok_or(nd_bad)?,
                source_mac: o.source_mac,
                mtu: o.mtu,
                prefixes: o.prefixes,
            }
        }
        NEIGHBOR_SOLICIT => Icmpv6::NeighborSolicit {
            target: addr_at(buf, 8).ok_or(nd_bad)?,
            source_mac: nd_options(ty, buf.get(24..).unwrap_or(&[]))?.source_mac,
        },
        NEIGHBOR_ADVERT => Icmpv6::NeighborAdvert {
            target: addr_at(buf, 8).ok_or(nd_bad)?,
            router: flags & 0x80 != 0,
            solicited: flags & 0x40 != 0,
            override_: flags & 0x20 != 0,
            target_mac: nd_options(ty, buf.get(24..).unwrap_or(&[]))?.target_mac,
        },
        REDIRECT => {
            let o = nd_options(ty, buf.get(40..).unwrap_or(&[]))?;
            Icmpv6::Redirect {
                target: addr_at(buf, 8).ok_or(nd_bad)?,
                dest: addr_at(buf, 24).ok_or(nd_bad)?,
                target_mac: o.target_mac,
                redirected: o.redirected,
            }
        }
        ty => Icmpv6::Other { ty, code },
    })
}

/// The ND rules that involve the IP header (RFC 4861 6.1.1, 6.1.2, 7.1.1, 7.1.2, 8.1), for a
/// message `parse` accepted; other messages pass. What needs the stack's state (a Redirect
/// coming from the current first-hop router) is left to it.
pub fn validate_nd(
    hop_limit: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    m: &Icmpv6<'_>,
) -> Result<(), DropReason> {
    let mac = match *m {
        Icmpv6::RouterSolicit { source_mac } => source_mac,
        Icmpv6::RouterAdvert { source_mac, .. } => source_mac,
        Icmpv6::NeighborSolicit { source_mac, .. } => source_mac,
        Icmpv6::NeighborAdvert { target_mac, .. } => target_mac,
        Icmpv6::Redirect { target_mac, .. } => target_mac,
        _ => return Ok(()),
    };
    if hop_limit != ND_HOP_LIMIT {
        return Err(DropReason::NdBadHopLimit);
    }
    // A neighbor cache entry pointing at a group address would spray a unicast flow.
    if mac.is_some_and(|m| m.is_multicast()) {
        return Err(DropReason::NdBadLinkAddress);
    }
    // The first rule a message breaks names the drop.
    let broken = match *m {
        Icmpv6::RouterSolicit { source_mac } if src.is_unspecified() && source_mac.is_some() => {
            DropReason::NdBadSourceOption
        }
        Icmpv6::RouterAdvert { .. } if !ipv6::is_link_local(src) => DropReason::NdBadRouterSource,
        Icmpv6::NeighborSolicit { target, .. } if target.is_multicast() => DropReason::NdBadTarget,
        // Duplicate address detection probes: no address to cache for a sender that has none
        // yet, and only to the solicited-node group.
        Icmpv6::NeighborSolicit { source_mac, .. }
            if src.is_unspecified() && source_mac.is_some() =>
        {
            DropReason::NdBadSourceOption
        }
        Icmpv6::NeighborSolicit { .. } if src.is_unspecified() && !ipv6::is_solicited_node(dst) => {
            DropReason::NdBadDestination
        }
        Icmpv6::NeighborAdvert { target, .. } if target.is_multicast() => DropReason::NdBadTarget,
        Icmpv6::NeighborAdvert { solicited, .. } if solicited && dst.is_multicast() => {
            DropReason::NdBadSolicited
        }
        Icmpv6::Redirect { .. } if !ipv6::is_link_local(src) => DropReason::NdBadRouterSource,
        Icmpv6::Redirect { dest, .. } if dest.is_multicast() => DropReason::NdBadRedirectDest,
        // To a router (link-local) or to the destination itself, which is on-link.
        Icmpv6::Redirect { target, dest, .. } if !ipv6::is_link_local(target) && target != dest => {
            DropReason::NdBadTarget
        }
        _ => return Ok(()),
    };
    Err(broken)
}

fn put_lla(buf: &mut PacketBuf, ty: u8, mac: Option<Mac>) {
    if let Some(m) = mac {
        buf.extend_from_slice(&[ty, 1]);
        buf.extend_from_slice(&m.0);
    }
}

/// Appends message `m` from `src` to `dst` to `buf`, with its checksum. ND messages carry the
/// link-layer address options given; a Redirect's redirected packet is cut (to a multiple of
/// 8) so the Redirect stays within 1280 bytes. Errors quote what they are given: pass
/// `quote(offending)`.
pub fn emit(src: Ipv6Addr, dst: Ipv6Addr, m: &Icmpv6<'_>, buf: &mut PacketBuf) {
    let start = buf.len();
    let head = |buf: &mut PacketBuf, ty: u8, code: u8, word: [u8; 4]| {
        buf.extend_from_slice(&[ty, code, 0, 0]);
        buf.extend_from_slice(&word);
    };
    let pair = |a: u16, b: u16| {
        let (a, b) = (a.to_be_bytes(), b.to_be_bytes());
        [a[0], a[1], b[0], b[1]]
    };
    match m {
        Icmpv6::EchoRequest { ident, seq, data } => {
            head(buf, ECHO_REQUEST, 0, pair(*ident, *seq));
            buf.extend_from_slice(data);
        }
        Icmpv6::EchoReply { ident, seq, data } => {
            head(buf, ECHO_REPLY, 0, pair(*ident, *seq));
            buf.extend_from_slice(data);
        }
        Icmpv6::DestUnreachable { code, quoted } => {
            head(buf, DEST_UNREACH, *code, [0; 4]);
            buf.extend_from_slice(quoted);
        }
        Icmpv6::PacketTooBig { mtu, quoted } => {
            head(buf, PACKET_TOO_BIG, 0, mtu.to_be_bytes());
            buf.extend_from_slice(quoted);
        }
        Icmpv6::TimeExceeded { code, quoted } => {
            head(buf, TIME_EXCEEDED, *code, [0; 4]);
            buf.extend_from_slice(quoted);
        }
        Icmpv6::ParamProblem {
            code,
            pointer,
            quoted,
        } => {
            head(buf, PARAM_PROBLEM, *code, pointer.to_be_bytes());
            buf.extend_from_slice(quoted);
        }
        Icmpv6::RouterSolicit { source_mac } => {
            head(buf, ROUTER_SOLICIT, 0, [0; 4]);
            put_lla(buf, OPT_SOURCE_LLA, *source_mac);
        }
        Icmpv6::RouterAdvert {
            hop_limit,
            managed,
            other,
            lifetime,
            reachable,
            retrans,
            source_mac,
            mtu,
            prefixes,
        } => {
            let flags = (u8::from(*managed) << 7) | (u8::from(*other) << 6);
            let l = lifetime.to_be_bytes();
            head(buf, ROUTER_ADVERT, 0, [*hop_limit, flags, l[0], l[1]]);
            buf.extend_from_slice(&reachable.to_be_bytes());
            buf.extend_from_slice(&retrans.to_be_bytes());
            put_lla(buf, OPT_SOURCE_LLA, *source_mac);
            if let Some(mtu) = mtu {
                buf.extend_from_slice(&[OPT_MTU, 1, 0, 0]);
                buf.extend_from_slice(&mtu.to_be_bytes());
            }
            for p in prefixes {
                let flags = (u8::from(p.on_link) << 7) | (u8::from(p.autonomous) << 6);
                buf.extend_from_slice(&[OPT_PREFIX_INFO, 4, p.len, flags]);
                buf.extend_from_slice(&p.valid.to_be_bytes());
                buf.extend_from_slice(&p.preferred.to_be_bytes());
                buf.extend_from_slice(&[0; 4]);
                buf.extend_from_slice(&p.prefix.octets());
            }
        }
        Icmpv6::NeighborSolicit { target, source_mac } => {
            head(buf, NEIGHBOR_SOLICIT, 0, [0; 4]);
            buf.extend_from_slice(&target.octets());
            put_lla(buf, OPT_SOURCE_LLA, *source_mac);
        }
        Icmpv6::NeighborAdvert {
            target,
            router,
            solicited,
            override_,
            target_mac,
        } => {
            let flags = (u8::from(*router) << 7)
                | (u8::from(*solicited) << 6)
                | (u8::from(*override_) << 5);
            head(buf, NEIGHBOR_ADVERT, 0, [flags, 0, 0, 0]);
            buf.extend_from_slice(&target.octets());
            put_lla(buf, OPT_TARGET_LLA, *target_mac);
        }
        Icmpv6::Redirect {
            target,
            dest,
            target_mac,
            redirected,
        } => {
            head(buf, REDIRECT, 0, [0; 4]);
            buf.extend_from_slice(&target.octets());
            buf.extend_from_slice(&dest.octets());
            put_lla(buf, OPT_TARGET_LLA, *target_mac);
            if !redirected.is_empty() {
                // RFC 4861 4.5: as much as fits in the minimum MTU, padded to 8 bytes.
                let used = ipv6::HEADER_LEN + 40 + if target_mac.is_some() { 8 } else { 0 } + 8;
                let room = (ipv6::MIN_MTU - used) / 8 * 8;
                let r = redirected.get(..room).unwrap_or(redirected);
                let padded = r.len().div_ceil(8) * 8;
                buf.extend_from_slice(&[OPT_REDIRECTED_HEADER, (1 + padded / 8) as u8]);
                buf.extend_from_slice(&[0; 6]);
                buf.extend_from_slice(r);
                buf.append(padded - r.len()).fill(0);
            }
        }
        Icmpv6::Other { ty, code } => head(buf, *ty, *code, [0; 4]),
    }
    let c = pseudo_header_checksum(src, dst, ICMPV6, buf.data().get(start..).unwrap_or(&[]));
    if let Some(field) = buf.data_mut().get_mut(start + 2..start + 4) {
        field.copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LL1: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const LL2: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
    const G2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    const MAC: Mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn bytes(src: Ipv6Addr, dst: Ipv6Addr, m: &Icmpv6<'_>) -> Vec<u8> {
        let mut b = PacketBuf::new();
        emit(src, dst, m, &mut b);
        b.to_vec()
    }

    fn round_trip(src: Ipv6Addr, dst: Ipv6Addr, m: Icmpv6<'_>) {
        let b = bytes(src, dst, &m);
        assert_eq!(parse(src, dst, &b).as_ref(), Ok(&m), "{b:02x?}");
    }

    /// Fixes the checksum of `b` (for tests that must get past it).
    fn reseal(src: Ipv6Addr, dst: Ipv6Addr, b: &mut [u8]) {
        if b.len() >= 4 {
            b[2..4].fill(0);
            let c = pseudo_header_checksum(src, dst, ICMPV6, b);
            b[2..4].copy_from_slice(&c.to_be_bytes());
        }
    }

    // The vectors below were built with scapy 2.8.0, independently of this code:
    //   raw(IPv6(src="fe80::1", dst="fe80::2", hlim=64)
    //       / ICMPv6EchoRequest(id=0x1234, seq=1, data=b"shmlab"))
    // and so on for the ND messages; the fixed header is checked too.
    #[test]
    fn echo_request_matches_an_independent_vector() {
        let ip =
            hex("60000000000e3a40fe800000000000000000000000000001fe800000000000000000000000000002");
        let icmp = hex("80002e461234000173686d6c6162");
        let m = Icmpv6::EchoRequest {
            ident: 0x1234,
            seq: 1,
            data: b"shmlab",
        };
        assert_eq!(bytes(LL1, LL2, &m), icmp);
        assert_eq!(parse(LL1, LL2, &icmp), Ok(m));
        let mut pkt = ip.clone();
        pkt.extend_from_slice(&icmp);
        let p = ipv6::parse(&pkt).unwrap();
        assert_eq!(
            (p.header.src, p.header.dst, p.header.hop_limit),
            (LL1, LL2, 64)
        );
        let mut b = PacketBuf::from_slice(&icmp);
        ipv6::emit_header(
            &ipv6::EmitHeader {
                traffic_class: 0,
                flow_label: 0,
                next_header: ICMPV6,
                hop_limit: 64,
                src: LL1,
                dst: LL2,
            },
            &mut b,
        );
        assert_eq!(b.to_vec(), pkt);
        // Wrong pseudo-header, flipped bit, cut header.
        assert_eq!(parse(LL2, LL2, &icmp), Err(DropReason::Icmp6BadChecksum));
        let mut bad = icmp.clone();
        bad[9] ^= 1;
        assert_eq!(parse(LL1, LL2, &bad), Err(DropReason::Icmp6BadChecksum));
        assert_eq!(parse(LL1, LL2, &icmp[..3]), Err(DropReason::Icmp6Truncated));
        let mut short = icmp[..6].to_vec();
        reseal(LL1, LL2, &mut short);
        assert_eq!(parse(LL1, LL2, &short), Err(DropReason::Icmp6Truncated));
    }

    #[test]
    fn nd_messages_match_independent_vectors() {
        let node: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
        let sn: Ipv6Addr = "ff02::1:ff00:2".parse().unwrap();
        let ns = Icmpv6::NeighborSolicit {
            target: G2,
            source_mac: Some(MAC),
        };
        let v = hex("870042e80000000020010db80000000000000000000000020101525400123456");
        assert_eq!(bytes(node, sn, &ns), v);
        assert_eq!(parse(node, sn, &v), Ok(ns.clone()));
        assert_eq!(validate_nd(255, node, sn, &ns), Ok(()));

        let na = Icmpv6::NeighborAdvert {
            target: G2,
            router: false,
            solicited: true,
            override_: true,
            target_mac: Some(Mac([0x52, 0x54, 0, 0xaa, 0xbb, 0xcc])),
        };
        let v = hex("880029256000000020010db80000000000000000000000020201525400aabbcc");
        assert_eq!(bytes(G2, node, &na), v);
        assert_eq!(parse(G2, node, &v), Ok(na.clone()));
        assert_eq!(validate_nd(255, G2, node, &na), Ok(()));

        let ra = Icmpv6::RouterAdvert {
            hop_limit: 64,
            managed: false,
            other: true,
            lifetime: 1800,
            reachable: 30000,
            retrans: 1000,
            source_mac: Some(Mac([0x52, 0x54, 0, 0, 0, 1])),
            mtu: Some(1500),
            prefixes: vec![PrefixInfo {
                prefix: "2001:db8:1::".parse().unwrap(),
                len: 64,
                on_link: true,
                autonomous: true,
                valid: 86400,
                preferred: 14400,
            }],
        };
        let v = hex(concat!(
            "8600622b4040070800007530000003e8010152540000000105010000000005dc",
            "030440c000015180000038400000000020010db8000100000000000000000000"
        ));
        assert_eq!(bytes(LL1, ipv6::ALL_NODES, &ra), v);
        assert_eq!(parse(LL1, ipv6::ALL_NODES, &v), Ok(ra.clone()));
        assert_eq!(validate_nd(255, LL1, ipv6::ALL_NODES, &ra), Ok(()));
    }

    #[test]
    fn every_message_round_trips() {
        let q = &[0x60, 0, 0, 0, 0, 8, 17, 64][..];
        for m in [
            Icmpv6::EchoReply {
                ident: 7,
                seq: 65535,
                data: &[],
            },
            Icmpv6::DestUnreachable {
                code: UNREACH_PORT,
                quoted: q,
            },
            Icmpv6::PacketTooBig {
                mtu: 1280,
                quoted: q,
            },
            Icmpv6::TimeExceeded {
                code: EXCEEDED_REASSEMBLY,
                quoted: q,
            },
            Icmpv6::ParamProblem {
                code: PARAM_UNRECOGNIZED_NEXT_HEADER,
                pointer: 6,
                quoted: q,
            },
            Icmpv6::RouterSolicit { source_mac: None },
            Icmpv6::RouterSolicit {
                source_mac: Some(MAC),
            },
            Icmpv6::NeighborSolicit {
                target: LL2,
                source_mac: None,
            },
            Icmpv6::NeighborAdvert {
                target: LL2,
                router: true,
                solicited: false,
                override_: false,
                target_mac: None,
            },
            Icmpv6::Redirect {
                target: LL2,
                dest: G2,
                target_mac: Some(MAC),
                redirected: &[1; 16],
            },
            Icmpv6::Redirect {
                target: G2,
                dest: G2,
                target_mac: None,
                redirected: &[],
            },
            Icmpv6::Other {
                ty: MLD_REPORT,
                code: 0,
            },
            Icmpv6::Other { ty: 200, code: 9 },
        ] {
            round_trip(LL1, ipv6::ALL_NODES, m);
        }
    }

    #[test]
    fn error_quotes_keep_the_packet_within_the_minimum_mtu() {
        assert_eq!(quote_len(100), 100);
        assert_eq!(quote_len(5000), MAX_ERROR_QUOTE);
        let offending = vec![0x60; 5000];
        let m = Icmpv6::TimeExceeded {
            code: EXCEEDED_HOP_LIMIT,
            quoted: quote(&offending),
        };
        let b = bytes(G2, LL1, &m);
        assert_eq!(ipv6::HEADER_LEN + b.len(), ipv6::MIN_MTU);
        assert!(is_error_type(PARAM_PROBLEM) && !is_error_type(ECHO_REQUEST));

        // A Redirect's quoted packet is cut to fit too, padded to 8 bytes.
        let r = Icmpv6::Redirect {
            target: LL2,
            dest: G2,
            target_mac: Some(MAC),
            redirected: &offending,
        };
        let b = bytes(LL1, LL2, &r);
        assert!(ipv6::HEADER_LEN + b.len() <= ipv6::MIN_MTU);
        match parse(LL1, LL2, &b).unwrap() {
            Icmpv6::Redirect { redirected, .. } => assert_eq!(redirected.len() % 8, 0),
            other => panic!("{other:?}"),
        }
        let b = bytes(
            LL1,
            LL2,
            &Icmpv6::Redirect {
                target: LL2,
                dest: G2,
                target_mac: None,
                redirected: &[1, 2, 3],
            },
        );
        match parse(LL1, LL2, &b).unwrap() {
            Icmpv6::Redirect { redirected, .. } => {
                assert_eq!(redirected, &[1, 2, 3, 0, 0, 0, 0, 0])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nd_shape_failures_in_parse() {
        let ns = bytes(
            LL1,
            LL2,
            &Icmpv6::NeighborSolicit {
                target: G2,
                source_mac: Some(MAC),
            },
        );
        let check = |mut b: Vec<u8>, want: DropReason| {
            reseal(LL1, LL2, &mut b);
            assert_eq!(parse(LL1, LL2, &b), Err(want), "{b:02x?}");
        };
        let mut b = ns.clone();
        b[1] = 1;
        check(b, DropReason::NdBadCode);
        check(ns[..23].to_vec(), DropReason::NdBadLength);
        // Option of length zero.
        let mut b = ns.clone();
        b[25] = 0;
        check(b, DropReason::NdBadOption);
        // Option running past the message.
        let mut b = ns.clone();
        b[25] = 2;
        check(b, DropReason::NdBadOption);
        // A source link-layer option of the wrong size for Ethernet.
        let mut b = ns.clone();
        b[25] = 2;
        b.extend_from_slice(&[0; 8]);
        check(b, DropReason::NdBadOption);
        // A lone byte after the options.
        let mut b = ns.clone();
        b.push(OPT_SOURCE_LLA);
        check(b, DropReason::NdBadOption);
        // An option this message does not use is ignored even if misshapen, but must have a
        // length.
        let mut b = ns[..24].to_vec();
        b.extend_from_slice(&[OPT_PREFIX_INFO, 1, 0, 0, 0, 0, 0, 0]);
        reseal(LL1, LL2, &mut b);
        assert!(matches!(
            parse(LL1, LL2, &b),
            Ok(Icmpv6::NeighborSolicit {
                source_mac: None,
                ..
            })
        ));
        // RS shorter than 8, RA shorter than 16, Redirect shorter than 40.
        for (ty, len) in [(ROUTER_SOLICIT, 7), (ROUTER_ADVERT, 15), (REDIRECT, 39)] {
            let mut b = vec![0; len];
            b[0] = ty;
            check(b, DropReason::NdBadLength);
        }
        // A prefix of length 129 is left out; the advertisement stands.
        let mut ra = bytes(
            LL1,
            LL2,
            &Icmpv6::RouterAdvert {
                hop_limit: 0,
                managed: true,
                other: false,
                lifetime: 0,
                reachable: 0,
                retrans: 0,
                source_mac: None,
                mtu: None,
                prefixes: vec![PrefixInfo {
                    prefix: G2,
                    len: 129,
                    on_link: false,
                    autonomous: false,
                    valid: INFINITE_LIFETIME,
                    preferred: 0,
                }],
            },
        );
        reseal(LL1, LL2, &mut ra);
        match parse(LL1, LL2, &ra).unwrap() {
            Icmpv6::RouterAdvert {
                prefixes, managed, ..
            } => assert!(prefixes.is_empty() && managed),
            other => panic!("{other:?}"),
        }
        // An MTU option of the wrong size.
        let mut b = ra[..16].to_vec();
        b.extend_from_slice(&[OPT_MTU, 2, 0, 0, 0, 0, 5, 0xdc, 0, 0, 0, 0, 0, 0, 0, 0]);
        check(b, DropReason::NdBadOption);
    }

    #[test]
    fn nd_rules_in_validate_nd() {
        let sn = ipv6::solicited_node(G2);
        let un = Ipv6Addr::UNSPECIFIED;
        let ns = |target, source_mac| Icmpv6::NeighborSolicit { target, source_mac };
        let na = |target, solicited| Icmpv6::NeighborAdvert {
            target,
            router: false,
            solicited,
            override_: false,
            target_mac: Some(MAC),
        };
        let redirect = |target, dest| Icmpv6::Redirect {
            target,
            dest,
            target_mac: None,
            redirected: &[],
        };
        let ra = Icmpv6::RouterAdvert {
            hop_limit: 64,
            managed: false,
            other: false,
            lifetime: 0,
            reachable: 0,
            retrans: 0,
            source_mac: None,
            mtu: None,
            prefixes: vec![],
        };
        use DropReason::*;
        // hop limit, source, destination, message, verdict
        type Case<'a> = (u8, Ipv6Addr, Ipv6Addr, Icmpv6<'a>, Result<(), DropReason>);
        let cases: Vec<Case<'_>> = vec![
            (255, LL1, sn, ns(G2, Some(MAC)), Ok(())),
            (254, LL1, sn, ns(G2, Some(MAC)), Err(NdBadHopLimit)),
            (64, LL1, sn, ra.clone(), Err(NdBadHopLimit)),
            (255, LL1, sn, ns(sn, Some(MAC)), Err(NdBadTarget)),
            (
                255,
                LL1,
                sn,
                ns(G2, Some(Mac([0x33, 0x33, 0, 0, 0, 1]))),
                Err(NdBadLinkAddress),
            ),
            // DAD probes.
            (255, un, sn, ns(G2, None), Ok(())),
            (255, un, sn, ns(G2, Some(MAC)), Err(NdBadSourceOption)),
            (255, un, LL2, ns(G2, None), Err(NdBadDestination)),
            (
                255,
                un,
                ipv6::ALL_NODES,
                ns(G2, None),
                Err(NdBadDestination),
            ),
            (255, G2, LL1, na(G2, true), Ok(())),
            (255, G2, ipv6::ALL_NODES, na(G2, false), Ok(())),
            (255, G2, ipv6::ALL_NODES, na(G2, true), Err(NdBadSolicited)),
            (255, G2, LL1, na(ipv6::ALL_NODES, false), Err(NdBadTarget)),
            (
                255,
                un,
                ipv6::ALL_ROUTERS,
                Icmpv6::RouterSolicit { source_mac: None },
                Ok(()),
            ),
            (
                255,
                un,
                ipv6::ALL_ROUTERS,
                Icmpv6::RouterSolicit {
                    source_mac: Some(MAC),
                },
                Err(NdBadSourceOption),
            ),
            (255, LL1, ipv6::ALL_NODES, ra.clone(), Ok(())),
            (255, G2, ipv6::ALL_NODES, ra, Err(NdBadRouterSource)),
            (255, LL1, LL2, redirect(LL2, G2), Ok(())),
            (255, LL1, LL2, redirect(G2, G2), Ok(())),
            (255, G2, LL2, redirect(LL2, G2), Err(NdBadRouterSource)),
            (
                255,
                LL1,
                LL2,
                redirect(LL2, ipv6::ALL_NODES),
                Err(NdBadRedirectDest),
            ),
            (
                255,
                LL1,
                LL2,
                redirect("2001:db8::3".parse().unwrap(), G2),
                Err(NdBadTarget),
            ),
            // Not ND: nothing to check.
            (1, G2, G2, Icmpv6::Other { ty: 1, code: 0 }, Ok(())),
        ];
        for (hop_limit, src, dst, m, want) in cases {
            assert_eq!(
                validate_nd(hop_limit, src, dst, &m),
                want,
                "{m:?} {src} -> {dst}"
            );
        }
    }

    #[test]
    fn truncations_never_panic() {
        let prefix = PrefixInfo {
            prefix: G2,
            len: 64,
            on_link: true,
            autonomous: true,
            valid: 1,
            preferred: 1,
        };
        let msgs = [
            Icmpv6::EchoRequest {
                ident: 1,
                seq: 2,
                data: &[3; 20],
            },
            Icmpv6::ParamProblem {
                code: 0,
                pointer: 40,
                quoted: &[0x60; 48],
            },
            Icmpv6::RouterAdvert {
                hop_limit: 64,
                managed: true,
                other: true,
                lifetime: 9000,
                reachable: 1,
                retrans: 2,
                source_mac: Some(MAC),
                mtu: Some(9000),
                prefixes: vec![prefix, prefix],
            },
            Icmpv6::NeighborAdvert {
                target: LL2,
                router: true,
                solicited: true,
                override_: true,
                target_mac: Some(MAC),
            },
            Icmpv6::Redirect {
                target: LL2,
                dest: G2,
                target_mac: Some(MAC),
                redirected: &[0x60; 40],
            },
        ];
        for m in &msgs {
            let b = bytes(LL1, LL2, m);
            for len in 0..=b.len() {
                let mut cut = b[..len].to_vec();
                let _ = parse(LL1, LL2, &cut);
                reseal(LL1, LL2, &mut cut);
                if let Ok(m) = parse(LL1, LL2, &cut) {
                    let _ = validate_nd(255, LL1, LL2, &m);
                }
            }
            for at in 4..b.len() {
                for v in [0u8, 1, 2, 3, 4, 5, 0x80, 0xff] {
                    let mut c = b.clone();
                    c[at] = v;
                    reseal(LL1, LL2, &mut c);
                    let _ = parse(LL1, LL2, &c);
                }
            }
        }
    }
}
