//! IPv6 headers (RFC 8200): the fixed header, the extension-header walk, the fragment header
//! and source fragmentation, and the address helpers NDP and SLAAC need (RFC 4291, 4861).
//!
//! `parse` validates only the fixed header; `walk` then goes through the extension headers and
//! says where the upper-layer data starts, or what to do with a packet it rejects (drop it, or
//! drop it and send a Parameter Problem).

use std::net::Ipv6Addr;

use super::packet::{DEFAULT_HEADROOM, DEFAULT_TAILROOM};
use super::{Mac, PacketBuf};
use crate::stats::DropReason;

pub const HEADER_LEN: usize = 40;
/// Every IPv6 link carries packets of this size (RFC 8200 5).
pub const MIN_MTU: usize = 1280;
/// Largest payload length the 16-bit field can state (no jumbograms).
pub const MAX_PAYLOAD: usize = 65535;

pub const HOPOPT: u8 = 0;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const ESP: u8 = 50;
pub const AH: u8 = 51;
pub const ICMPV6: u8 = 58;
pub const NONE: u8 = 59;
pub const DSTOPTS: u8 = 60;

/// Extension headers `walk` follows before it gives up: real chains have a handful, and a
/// bound keeps a packet of 180 empty option headers from costing 180 iterations.
pub const MAX_EXT_HEADERS: usize = 16;

pub const FRAG_HEADER_LEN: usize = 8;

/// Parameter Problem codes (RFC 4443 3.4, RFC 7112 for code 3).
pub const PARAM_ERRONEOUS_FIELD: u8 = 0;
pub const PARAM_UNRECOGNIZED_NEXT_HEADER: u8 = 1;
pub const PARAM_UNRECOGNIZED_OPTION: u8 = 2;
pub const PARAM_INCOMPLETE_CHAIN: u8 = 3;

/// Option types the walk understands.
const OPT_PAD1: u8 = 0;
const OPT_PADN: u8 = 1;
const OPT_ROUTER_ALERT: u8 = 5;

pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// Multicast scopes (RFC 4291 2.7, RFC 7346).
pub const SCOPE_RESERVED: u8 = 0x0;
pub const SCOPE_INTERFACE: u8 = 0x1;
pub const SCOPE_LINK: u8 = 0x2;
pub const SCOPE_SITE: u8 = 0x5;
pub const SCOPE_ORGANIZATION: u8 = 0x8;
pub const SCOPE_GLOBAL: u8 = 0xe;

/// A validated fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    /// From the header, already checked against the buffer.
    pub payload_len: usize,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

/// A packet whose fixed header is valid: `raw` is header + payload with link padding cut off,
/// `payload` everything after the fixed header (extension headers not yet walked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    pub raw: &'a [u8],
    pub payload: &'a [u8],
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

pub fn parse(buf: &[u8]) -> Result<Packet<'_>, DropReason> {
    let fixed = buf.get(..HEADER_LEN).ok_or(DropReason::Ip6Truncated)?;
    let word0 = be32(fixed, 0).ok_or(DropReason::Ip6Truncated)?;
    if word0 >> 28 != 6 {
        return Err(DropReason::Ip6BadVersion);
    }
    let payload_len = usize::from(be16(fixed, 4).ok_or(DropReason::Ip6Truncated)?);
    // Longer buffers carry Ethernet padding (or garbage) after the payload: cut it.
    let raw = buf
        .get(..HEADER_LEN + payload_len)
        .ok_or(DropReason::Ip6Truncated)?;
    let src = addr_at(fixed, 8).ok_or(DropReason::Ip6Truncated)?;
    let dst = addr_at(fixed, 24).ok_or(DropReason::Ip6Truncated)?;
    // RFC 4291 2.7: a multicast address is never a source, and packets to scope 0 are dropped;
    // 2.5.2: the unspecified address is never a destination.
    if src.is_multicast() || dst.is_unspecified() || multicast_scope(dst) == Some(SCOPE_RESERVED) {
        return Err(DropReason::Ip6BadAddress);
    }
    let header = Header {
        traffic_class: (word0 >> 20) as u8,
        flow_label: word0 & 0xf_ffff,
        payload_len,
        next_header: fixed[6],
        hop_limit: fixed[7],
        src,
        dst,
    };
    Ok(Packet {
        header,
        raw,
        payload: raw.get(HEADER_LEN..).unwrap_or(&[]),
    })
}

/// What a locally built header needs; `emit_header` derives the payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmitHeader {
    pub traffic_class: u8,
    pub flow_label: u32,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
}

impl EmitHeader {
    pub fn from_header(h: &Header) -> EmitHeader {
        EmitHeader {
            traffic_class: h.traffic_class,
            flow_label: h.flow_label,
            next_header: h.next_header,
            hop_limit: h.hop_limit,
            src: h.src,
            dst: h.dst,
        }
    }
}

fn write_header(h: &EmitHeader, payload_len: usize, out: &mut [u8]) {
    debug_assert!(payload_len <= MAX_PAYLOAD, "IPv6 payload over 65535 bytes");
    let word0 = (6u32 << 28) | (u32::from(h.traffic_class) << 20) | (h.flow_label & 0xf_ffff);
    let len = u16::try_from(payload_len).unwrap_or(u16::MAX);
    let mut b = [0u8; HEADER_LEN];
    b[0..4].copy_from_slice(&word0.to_be_bytes());
    b[4..6].copy_from_slice(&len.to_be_bytes());
    b[6] = h.next_header;
    b[7] = h.hop_limit;
    b[8..24].copy_from_slice(&h.src.octets());
    b[24..40].copy_from_slice(&h.dst.octets());
    out.copy_from_slice(&b);
}

/// Prepends the fixed header to the payload already in `buf` (extension headers included);
/// the payload length is `buf.len()`. Callers keep payloads within 65535 bytes (the link MTU
/// or `fragment` does).
pub fn emit_header(h: &EmitHeader, buf: &mut PacketBuf) {
    let len = buf.len();
    write_header(h, len, buf.prepend(HEADER_LEN));
}

/// A fragment header (RFC 8200 4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// The first header of the fragmentable part.
    pub next_header: u8,
    /// Offset of this fragment's data in the fragmentable part, in bytes (a multiple of 8).
    pub offset: usize,
    /// M: more fragments follow.
    pub more: bool,
    pub id: u32,
}

impl Fragment {
    /// RFC 6946: offset 0 and M clear; such a packet is processed on its own, never queued.
    pub fn is_atomic(&self) -> bool {
        self.offset == 0 && !self.more
    }
}

pub fn parse_fragment(buf: &[u8]) -> Result<Fragment, DropReason> {
    let b = buf
        .get(..FRAG_HEADER_LEN)
        .ok_or(DropReason::Ip6BadExtHeader)?;
    let off_flags = be16(b, 2).ok_or(DropReason::Ip6BadExtHeader)?;
    Ok(Fragment {
        next_header: b[0],
        offset: usize::from(off_flags & !7),
        more: off_flags & 1 != 0,
        id: be32(b, 4).ok_or(DropReason::Ip6BadExtHeader)?,
    })
}

fn write_fragment(f: &Fragment, out: &mut [u8]) {
    // The offset field is 13 bits of 8-byte units: the low 3 bits of the byte offset are
    // where the reserved bits and M go.
    let off_flags = (f.offset as u16 & !7) | u16::from(f.more);
    let mut b = [0u8; FRAG_HEADER_LEN];
    b[0] = f.next_header;
    b[2..4].copy_from_slice(&off_flags.to_be_bytes());
    b[4..8].copy_from_slice(&f.id.to_be_bytes());
    out.copy_from_slice(&b);
}

/// Prepends a fragment header to the fragment data already in `buf`.
pub fn emit_fragment(f: &Fragment, buf: &mut PacketBuf) {
    write_fragment(f, buf.prepend(FRAG_HEADER_LEN));
}

/// Where in `unfragmentable` (fixed header + extension headers we built) the Next Header byte
/// of the last header sits, or `None` if the headers do not add up to exactly its length.
fn last_next_header_at(unfragmentable: &[u8]) -> Option<usize> {
    let mut at = 6;
    let mut off = HEADER_LEN;
    let mut n = 0;
    while off < unfragmentable.len() {
        let nh = *unfragmentable.get(at)?;
        let len = match nh {
            HOPOPT | DSTOPTS | ROUTING => (usize::from(*unfragmentable.get(off + 1)?) + 1) * 8,
            AH => (usize::from(*unfragmentable.get(off + 1)?) + 2) * 4,
            _ => return None,
        };
        n += 1;
        if n > MAX_EXT_HEADERS {
            return None;
        }
        at = off;
        off += len;
    }
    (off == unfragmentable.len() && unfragmentable.len() >= HEADER_LEN).then_some(at)
}

/// Source fragmentation (RFC 8200 4.5).
///
/// - `unfragmentable`: the fixed header followed by the headers every fragment repeats
///   (hop-by-hop, routing, destination options before routing); usually just the 40-byte
///   header. Its payload length is ignored and its last Next Header is replaced by 44.
/// - `next_header`: the protocol of the fragmentable part (what that Next Header said).
/// - `fragmentable`: the bytes to split (upper-layer header and data, or more extension
///   headers first).
/// - `id`: the identification for all fragments (the caller keeps it unpredictable, RFC 7739).
/// - `mtu`: the link MTU; below 1280 it is taken as 1280.
///
/// Returns packets from the IPv6 header on, each at most `mtu` bytes, with every fragment
/// but the last carrying a multiple of 8 bytes, and the usual headroom for the link header.
/// Fails with `Frag6TooBig` when the datagram exceeds 65535 bytes of payload or the
/// unfragmentable part leaves no room for data, `Ip6BadExtHeader` when `unfragmentable` is not
/// a header chain.
pub fn fragment(
    unfragmentable: &[u8],
    next_header: u8,
    fragmentable: &[u8],
    id: u32,
    mtu: usize,
) -> Result<Vec<PacketBuf>, DropReason> {
    let nh_at = last_next_header_at(unfragmentable).ok_or(DropReason::Ip6BadExtHeader)?;
    let header = parse_header_fields(unfragmentable).ok_or(DropReason::Ip6BadExtHeader)?;
    let unfrag_len = unfragmentable.len();
    if unfrag_len - HEADER_LEN + FRAG_HEADER_LEN + fragmentable.len() > MAX_PAYLOAD {
        return Err(DropReason::Frag6TooBig);
    }
    let mtu = mtu.max(MIN_MTU);
    let room = mtu.saturating_sub(unfrag_len + FRAG_HEADER_LEN) / 8 * 8;
    if room == 0 {
        return Err(DropReason::Frag6TooBig);
    }
    let mut out = Vec::with_capacity(fragmentable.len().div_ceil(room));
    let mut off = 0;
    loop {
        let end = (off + room).min(fragmentable.len());
        let chunk = fragmentable.get(off..end).unwrap_or(&[]);
        let mut p = PacketBuf::with_room(
            DEFAULT_HEADROOM + unfrag_len + FRAG_HEADER_LEN,
            chunk.len(),
            DEFAULT_TAILROOM,
        );
        p.extend_from_slice(chunk);
        emit_fragment(
            &Fragment {
                next_header,
                offset: off,
                more: end < fragmentable.len(),
                id,
            },
            &mut p,
        );
        prepend_unfragmentable(&header, unfragmentable, nh_at, FRAGMENT, &mut p);
        out.push(p);
        if end >= fragmentable.len() {
            break;
        }
        off = end;
    }
    Ok(out)
}

/// Rewrites the hop limit of the packet starting at `packet[0]` in place: what a router
/// changes in a packet it forwards (IPv6 has no header checksum to fix).
pub fn set_hop_limit(packet: &mut [u8], hop_limit: u8) {
    if let Some(b) = packet.get_mut(7) {
        *b = hop_limit;
    }
}

/// The fixed header fields of `raw` without checking the payload length against it.
fn parse_header_fields(raw: &[u8]) -> Option<EmitHeader> {
    let word0 = be32(raw, 0)?;
    Some(EmitHeader {
        traffic_class: (word0 >> 20) as u8,
        flow_label: word0 & 0xf_ffff,
        next_header: *raw.get(6)?,
        hop_limit: *raw.get(7)?,
        src: addr_at(raw, 8)?,
        dst: addr_at(raw, 24)?,
    })
}

fn prepend_unfragmentable(
    h: &EmitHeader,
    unfragmentable: &[u8],
    next_header_at: usize,
    next_header: u8,
    buf: &mut PacketBuf,
) {
    let payload_len = unfragmentable.len().saturating_sub(HEADER_LEN) + buf.len();
    let out = buf.prepend(unfragmentable.len());
    out.copy_from_slice(unfragmentable);
    if let Some(b) = out.get_mut(next_header_at) {
        *b = next_header;
    }
    if let Some(fixed) = out.get_mut(..HEADER_LEN) {
        write_header(
            &EmitHeader {
                next_header: if next_header_at == 6 {
                    next_header
                } else {
                    h.next_header
                },
                ..*h
            },
            payload_len,
            fixed,
        );
    }
}

/// Reassembly's last step (RFC 8200 4.5): prepends the first fragment's unfragmentable part
/// (`FragInfo::unfragmentable_len` bytes of its packet) to the reassembled fragmentable part
/// in `buf`, with the Next Header at `next_header_at` set to the fragment header's
/// `next_header` and the payload length fixed. The result goes through `parse` and `walk`
/// again. Does nothing if `unfragmentable` is shorter than a fixed header.
pub fn emit_reassembled(
    unfragmentable: &[u8],
    next_header_at: usize,
    next_header: u8,
    buf: &mut PacketBuf,
) {
    let Some(h) = parse_header_fields(unfragmentable) else {
        return;
    };
    prepend_unfragmentable(&h, unfragmentable, next_header_at, next_header, buf);
}

/// What `walk` found when the packet had a fragment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragInfo {
    pub header: Fragment,
    /// The unfragmentable part: the fixed header and the extension headers before the fragment
    /// header (the fragment header's offset in the packet).
    pub unfragmentable_len: usize,
    /// Offset of the Next Header byte that names the fragment header (6 when it follows the
    /// fixed header); reassembly rewrites it.
    pub next_header_at: usize,
}

/// The result of walking the extension headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk<'a> {
    /// The upper-layer protocol (59: nothing follows, `payload` is empty). With a fragment
    /// header the walk stops there: this is the fragment header's Next Header and `payload` is
    /// the fragment's data, walked again after reassembly.
    pub upper: u8,
    /// Offset of `payload` from the start of the IPv6 header.
    pub offset: usize,
    /// Offset of the Next Header byte that named `upper`: the pointer of a Parameter Problem
    /// code 1 when the stack does not know the protocol.
    pub upper_at: usize,
    pub payload: &'a [u8],
    pub fragment: Option<FragInfo>,
    /// The Router Alert option of the hop-by-hop header (RFC 2711), if any.
    pub router_alert: Option<u16>,
}

/// Why `walk` rejected a packet: either way the packet is dropped and `reason` counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtError {
    /// Drop silently.
    Drop(DropReason),
    /// Drop and send an ICMPv6 Parameter Problem with `code` and `pointer` (a byte offset from
    /// the start of the IPv6 header), under the usual error rules (RFC 4443 2.4(e)).
    ParamProblem {
        reason: DropReason,
        code: u8,
        pointer: u32,
        /// Send even if the packet went to a multicast address: only for options of type
        /// `10xxxxxx` (RFC 4443 2.4(e.3)).
        multicast_ok: bool,
    },
}

impl ExtError {
    pub fn reason(&self) -> DropReason {
        match *self {
            ExtError::Drop(r) => r,
            ExtError::ParamProblem { reason, .. } => reason,
        }
    }
}

fn param(reason: DropReason, code: u8, pointer: usize) -> ExtError {
    ExtError::ParamProblem {
        reason,
        code,
        pointer: u32::try_from(pointer).unwrap_or(u32::MAX),
        multicast_ok: false,
    }
}

/// The bytes of the hop-by-hop, destination options or routing header at `off` of `payload`.
fn generic_ext(payload: &[u8], off: usize) -> Result<&[u8], ExtError> {
    let len_byte = *payload
        .get(off + 1)
        .ok_or(ExtError::Drop(DropReason::Ip6BadExtHeader))?;
    let len = (usize::from(len_byte) + 1) * 8;
    payload
        .get(off..off + len)
        .ok_or(ExtError::Drop(DropReason::Ip6BadExtHeader))
}

/// Processes the TLV options of a hop-by-hop or destination options header `hdr`, which starts
/// at `base` bytes from the start of the IPv6 header. Returns the Router Alert value if seen.
fn options(
    hdr: &[u8],
    base: usize,
    hop_by_hop: bool,
    dst_multicast: bool,
) -> Result<Option<u16>, ExtError> {
    let mut alert = None;
    let mut i = 2;
    while let Some(&ty) = hdr.get(i) {
        if ty == OPT_PAD1 {
            i += 1;
            continue;
        }
        let len = usize::from(
            *hdr.get(i + 1)
                .ok_or(ExtError::Drop(DropReason::Ip6BadOption))?,
        );
        let data = hdr
            .get(i + 2..i + 2 + len)
            .ok_or(ExtError::Drop(DropReason::Ip6BadOption))?;
        match ty {
            OPT_PADN => {}
            OPT_ROUTER_ALERT if hop_by_hop => {
                if let Ok(v) = <[u8; 2]>::try_from(data) {
                    alert = Some(u16::from_be_bytes(v));
                }
            }
            // RFC 8200 4.2: the two high-order bits say what to do with an unknown option.
            _ => match ty >> 6 {
                0b00 => {}
                0b01 => return Err(ExtError::Drop(DropReason::Ip6UnknownOption)),
                0b10 => {
                    return Err(ExtError::ParamProblem {
                        reason: DropReason::Ip6UnknownOption,
                        code: PARAM_UNRECOGNIZED_OPTION,
                        pointer: u32::try_from(base + i).unwrap_or(u32::MAX),
                        multicast_ok: true,
                    })
                }
                _ if dst_multicast => return Err(ExtError::Drop(DropReason::Ip6UnknownOption)),
                _ => {
                    return Err(param(
                        DropReason::Ip6UnknownOption,
                        PARAM_UNRECOGNIZED_OPTION,
                        base + i,
                    ))
                }
            },
        }
        i += 2 + len;
    }
    Ok(alert)
}

/// Minimum upper-layer header a first fragment must hold for the chain to be complete.
fn upper_header_min(proto: u8) -> usize {
    match proto {
        TCP => 20,
        UDP => 8,
        ICMPV6 => 8,
        _ => 0,
    }
}

/// RFC 8200 4.5 / RFC 7112: whether the fragmentable part of a first fragment holds the whole
/// header chain through the upper-layer header. Only lengths are checked: options and routing
/// are processed after reassembly.
fn chain_complete(mut nh: u8, data: &[u8], mut count: usize) -> bool {
    let mut off = 0;
    loop {
        let len = match nh {
            HOPOPT | DSTOPTS | ROUTING => match data.get(off + 1) {
                Some(&l) => (usize::from(l) + 1) * 8,
                None => return false,
            },
            AH => match data.get(off + 1) {
                Some(&l) => (usize::from(l) + 2) * 4,
                None => return false,
            },
            // A nested fragment header, ESP or no next header: nothing more to check here.
            FRAGMENT | ESP | NONE => return true,
            upper => return data.len() >= off + upper_header_min(upper),
        };
        count += 1;
        if count > MAX_EXT_HEADERS {
            // Too long a chain is rejected by the walk after reassembly, not counted as cut.
            return true;
        }
        if data.len() < off + len {
            return false;
        }
        nh = data.get(off).copied().unwrap_or(NONE);
        off += len;
    }
}

/// Walks the extension headers of `p` (RFC 8200 4): hop-by-hop (only first), destination
/// options, routing and fragment headers, processing their options. Stops at the first
/// upper-layer protocol (ESP and AH included: they are not walked here), at no next header
/// (59), or at a fragment header. At most `MAX_EXT_HEADERS` headers are followed.
pub fn walk<'a>(p: &Packet<'a>) -> Result<Walk<'a>, ExtError> {
    let payload = p.payload;
    let dst_multicast = p.header.dst.is_multicast();
    let mut nh = p.header.next_header;
    let mut nh_at = 6;
    let mut off = 0;
    let mut count = 0;
    let mut router_alert = None;
    loop {
        let base = HEADER_LEN + off;
        match nh {
            HOPOPT | DSTOPTS | ROUTING | FRAGMENT if count == MAX_EXT_HEADERS => {
                return Err(ExtError::Drop(DropReason::Ip6ExtChainTooLong));
            }
            HOPOPT if count != 0 => {
                return Err(param(
                    DropReason::Ip6HopByHopNotFirst,
                    PARAM_UNRECOGNIZED_NEXT_HEADER,
                    nh_at,
                ));
            }
            HOPOPT | DSTOPTS => {
                let hdr = generic_ext(payload, off)?;
                let alert = options(hdr, base, nh == HOPOPT, dst_multicast)?;
                router_alert = router_alert.or(alert);
                nh_at = base;
                nh = hdr.first().copied().unwrap_or(NONE);
                off += hdr.len();
            }
            ROUTING => {
                let hdr = generic_ext(payload, off)?;
                let (ty, segments_left) = match hdr.get(2..4) {
                    Some(&[t, s]) => (t, s),
                    _ => return Err(ExtError::Drop(DropReason::Ip6BadExtHeader)),
                };
                // No routing type is implemented: with segments left the packet would have to
                // be forwarded along the route, which we cannot do (RFC 8200 4.4). Type 0 is
                // deprecated (RFC 5095) and counted on its own.
                if segments_left != 0 {
                    let reason = if ty == 0 {
                        DropReason::Ip6RoutingType0
                    } else {
                        DropReason::Ip6UnknownRoutingType
                    };
                    return Err(param(reason, PARAM_ERRONEOUS_FIELD, base + 2));
                }
                nh_at = base;
                nh = hdr.first().copied().unwrap_or(NONE);
                off += hdr.len();
            }
            FRAGMENT => {
                let frag =
                    parse_fragment(payload.get(off..).unwrap_or(&[])).map_err(ExtError::Drop)?;
                let data_off = off + FRAG_HEADER_LEN;
                let data = payload.get(data_off..).unwrap_or(&[]);
                if frag.more && data.len() % 8 != 0 {
                    // Pointer at the payload length field (RFC 8200 4.5).
                    return Err(param(DropReason::Frag6BadLength, PARAM_ERRONEOUS_FIELD, 4));
                }
                if off + frag.offset + data.len() > MAX_PAYLOAD {
                    // Pointer at the fragment offset field.
                    return Err(param(
                        DropReason::Frag6TooBig,
                        PARAM_ERRONEOUS_FIELD,
                        base + 2,
                    ));
                }
                if frag.offset == 0 && !chain_complete(frag.next_header, data, count + 1) {
                    return Err(param(
                        DropReason::Frag6IncompleteChain,
                        PARAM_INCOMPLETE_CHAIN,
                        0,
                    ));
                }
                return Ok(Walk {
                    upper: frag.next_header,
                    offset: HEADER_LEN + data_off,
                    upper_at: base,
                    payload: data,
                    fragment: Some(FragInfo {
                        header: frag,
                        unfragmentable_len: base,
                        next_header_at: nh_at,
                    }),
                    router_alert,
                });
            }
            NONE => {
                // RFC 8200 4.7: bytes after a header saying "no next header" are ignored.
                return Ok(Walk {
                    upper: NONE,
                    offset: base,
                    upper_at: nh_at,
                    payload: &[],
                    fragment: None,
                    router_alert,
                });
            }
            upper => {
                return Ok(Walk {
                    upper,
                    offset: base,
                    upper_at: nh_at,
                    payload: payload.get(off..).unwrap_or(&[]),
                    fragment: None,
                    router_alert,
                });
            }
        }
        count += 1;
    }
}

/// The start of a packet quoted inside an ICMPv6 error: lenient, because the quote is often
/// cut, and the extension headers are skipped without processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted<'a> {
    /// The upper-layer protocol, or the header where the quote ended.
    pub upper: u8,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// Up to the first 8 bytes of the upper-layer header (ports, ICMPv6 ident/seq); empty for
    /// a non-first fragment.
    pub l4: &'a [u8],
}

impl Quoted<'_> {
    /// Source and destination port of a quoted UDP or TCP header.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match *self.l4 {
            [a, b, c, d, ..] => Some((u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))),
            _ => None,
        }
    }
}

pub fn parse_quoted(buf: &[u8]) -> Option<Quoted<'_>> {
    let h = parse_header_fields(buf)?;
    if buf.first()? >> 4 != 6 {
        return None;
    }
    let rest = buf.get(HEADER_LEN..)?;
    let mut nh = h.next_header;
    let mut off = 0;
    for _ in 0..MAX_EXT_HEADERS {
        let len = match nh {
            HOPOPT | DSTOPTS | ROUTING => (usize::from(*rest.get(off + 1)?) + 1) * 8,
            FRAGMENT => {
                let f = parse_fragment(rest.get(off..)?).ok()?;
                if f.offset != 0 {
                    return Some(Quoted {
                        upper: f.next_header,
                        src: h.src,
                        dst: h.dst,
                        l4: &[],
                    });
                }
                FRAG_HEADER_LEN
            }
            _ => break,
        };
        nh = *rest.get(off)?;
        off += len;
    }
    let l4 = rest.get(off..).unwrap_or(&[]);
    Some(Quoted {
        upper: nh,
        src: h.src,
        dst: h.dst,
        l4: l4.get(..8).unwrap_or(l4),
    })
}

/// The Internet checksum of `upper` (an ICMPv6, UDP or TCP message) over the IPv6
/// pseudo-header (RFC 8200 8.1). Summing a message that holds its correct checksum gives 0.
pub fn pseudo_header_checksum(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, upper: &[u8]) -> u16 {
    let len = upper.len() as u64;
    let mut sum = sum_words(&src.octets())
        + sum_words(&dst.octets())
        + (len >> 16)
        + (len & 0xffff)
        + u64::from(next_header)
        + sum_words(upper);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// RFC 1071 sum of big-endian 16-bit words, an odd last byte padded with zero. A u64 cannot
/// overflow for any buffer that fits in memory.
fn sum_words(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    let mut sum: u64 = words
        .by_ref()
        .map(|w| match *w {
            [a, b] => u64::from(u16::from_be_bytes([a, b])),
            _ => 0,
        })
        .sum();
    if let [last] = *words.remainder() {
        sum += u64::from(last) << 8;
    }
    sum
}

/// The solicited-node multicast group of `addr`: ff02::1:ff00:0/104 plus its low 24 bits
/// (RFC 4291 2.7.1).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, o[13], o[14], o[15],
    ])
}

pub fn is_solicited_node(addr: Ipv6Addr) -> bool {
    addr.octets()[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]
}

/// The Ethernet address a multicast group maps to: 33:33 and its low 32 bits (RFC 2464 7).
pub fn multicast_mac(addr: Ipv6Addr) -> Mac {
    let o = addr.octets();
    Mac([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A): ff:fe in the
/// middle, the universal/local bit flipped.
pub fn interface_id(mac: Mac) -> [u8; 8] {
    let m = mac.0;
    [m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]
}

/// `prefix`'s first 64 bits followed by the interface identifier of `mac` (SLAAC, RFC 4862 5.5.3).
pub fn address_from_prefix(prefix: Ipv6Addr, mac: Mac) -> Ipv6Addr {
    let mut o = prefix.octets();
    o[8..].copy_from_slice(&interface_id(mac));
    Ipv6Addr::from(o)
}

/// fe80::/64 with the interface identifier of `mac`.
pub fn link_local_from_mac(mac: Mac) -> Ipv6Addr {
    address_from_prefix(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), mac)
}

/// fe80::/10, the link-local unicast addresses.
pub fn is_link_local(addr: Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

/// The scope of a multicast address, `None` for unicast.
pub fn multicast_scope(addr: Ipv6Addr) -> Option<u8> {
    addr.is_multicast().then_some(addr.octets()[1] & 0x0f)
}

/// Sources that must not arrive from a link: multicast, loopback (RFC 4291 2.5.3) and
/// IPv4-mapped (RFC 4942 2.1.4). The unspecified source is legal (DAD, RS).
pub fn is_martian_source(addr: Ipv6Addr) -> bool {
    addr.is_multicast() || addr.is_loopback() || addr.to_ipv4_mapped().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    fn eh(next_header: u8, dst: Ipv6Addr) -> EmitHeader {
        EmitHeader {
            traffic_class: 0xb8,
            flow_label: 0x12345,
            next_header,
            hop_limit: 64,
            src: SRC,
            dst,
        }
    }

    /// A packet: fixed header naming `first`, then `rest` (extension headers and data).
    fn packet(first: u8, dst: Ipv6Addr, rest: &[u8]) -> Vec<u8> {
        let mut b = PacketBuf::from_slice(rest);
        emit_header(&eh(first, dst), &mut b);
        b.to_vec()
    }

    /// An options header (hop-by-hop or destination) naming `next`, holding `opts` padded with
    /// PadN to a multiple of 8.
    fn opt_header(next: u8, opts: &[u8]) -> Vec<u8> {
        let mut h = vec![next, 0];
        h.extend_from_slice(opts);
        let pad = (8 - h.len() % 8) % 8;
        match pad {
            0 => {}
            1 => h.push(OPT_PAD1),
            n => {
                h.extend_from_slice(&[OPT_PADN, (n - 2) as u8]);
                h.resize(h.len() + n - 2, 0);
            }
        }
        h[1] = (h.len() / 8 - 1) as u8;
        h
    }

    fn frag_header(f: &Fragment) -> Vec<u8> {
        let mut b = PacketBuf::new();
        emit_fragment(f, &mut b);
        b.to_vec()
    }

    fn walk_of(buf: &[u8]) -> Result<Walk<'_>, ExtError> {
        walk(&parse(buf).unwrap())
    }

    #[test]
    fn header_round_trips_and_padding_is_cut() {
        let mut d = packet(UDP, DST, &[1, 2, 3]);
        d.extend_from_slice(&[0xee; 10]);
        let p = parse(&d).unwrap();
        assert_eq!(
            p.header,
            Header {
                traffic_class: 0xb8,
                flow_label: 0x12345,
                payload_len: 3,
                next_header: UDP,
                hop_limit: 64,
                src: SRC,
                dst: DST,
            }
        );
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(p.raw.len(), 43);
        assert_eq!(EmitHeader::from_header(&p.header), eh(UDP, DST));
    }

    #[test]
    fn every_bad_header_gets_its_reason() {
        let d = packet(UDP, DST, &[0; 8]);
        assert_eq!(parse(&d[..39]), Err(DropReason::Ip6Truncated));
        assert_eq!(parse(&d[..47]), Err(DropReason::Ip6Truncated));
        let mut b = d.clone();
        b[0] = 0x45;
        assert_eq!(parse(&b), Err(DropReason::Ip6BadVersion));
        let mut b = d.clone();
        b[8] = 0xff;
        assert_eq!(parse(&b), Err(DropReason::Ip6BadAddress));
        let b = packet(UDP, Ipv6Addr::UNSPECIFIED, &[]);
        assert_eq!(parse(&b), Err(DropReason::Ip6BadAddress));
        let b = packet(UDP, "ff00::1".parse().unwrap(), &[]);
        assert_eq!(parse(&b), Err(DropReason::Ip6BadAddress));
        // The unspecified source is legal (DAD).
        let mut b = d.clone();
        b[8..24].fill(0);
        assert!(parse(&b).is_ok());
    }

    #[test]
    fn address_helpers_match_known_vectors() {
        let mac = Mac([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(
            link_local_from_mac(mac),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            address_from_prefix("2001:db8:1:2::".parse().unwrap(), mac),
            "2001:db8:1:2:5054:ff:fe12:3456"
                .parse::<Ipv6Addr>()
                .unwrap()
        );
        let a: Ipv6Addr = "2001:db8::1:2345:6789".parse().unwrap();
        let sn = solicited_node(a);
        assert_eq!(sn, "ff02::1:ff45:6789".parse::<Ipv6Addr>().unwrap());
        assert!(is_solicited_node(sn));
        assert!(!is_solicited_node(ALL_NODES));
        assert_eq!(multicast_mac(sn), Mac([0x33, 0x33, 0xff, 0x45, 0x67, 0x89]));
        assert_eq!(multicast_mac(ALL_NODES).to_string(), "33:33:00:00:00:01");
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(is_link_local("febf::1".parse().unwrap()));
        assert!(!is_link_local("fec0::1".parse().unwrap()));
        assert_eq!(multicast_scope(ALL_ROUTERS), Some(SCOPE_LINK));
        assert_eq!(multicast_scope(SRC), None);
        assert!(is_martian_source("::1".parse().unwrap()));
        assert!(is_martian_source("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!is_martian_source(Ipv6Addr::UNSPECIFIED));
    }

    #[test]
    fn pseudo_header_checksum_sums_to_zero_with_itself() {
        let mut m = vec![128, 0, 0, 0, 0, 1, 0, 2, 0xab];
        let c = pseudo_header_checksum(SRC, DST, ICMPV6, &m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(pseudo_header_checksum(SRC, DST, ICMPV6, &m), 0);
        assert_ne!(pseudo_header_checksum(SRC, DST, UDP, &m), 0);
    }

    #[test]
    fn plain_upper_layer_and_no_next_header() {
        let d = packet(ICMPV6, DST, &[128, 0, 0, 0]);
        let w = walk_of(&d).unwrap();
        assert_eq!(
            (w.upper, w.offset, w.upper_at, w.payload),
            (ICMPV6, 40, 6, &[128u8, 0, 0, 0][..])
        );
        assert_eq!(w.fragment, None);
        let d = packet(NONE, DST, &[1, 2, 3]);
        let w = walk_of(&d).unwrap();
        assert_eq!((w.upper, w.payload), (NONE, &[][..]));
    }

    #[test]
    fn hop_by_hop_dst_opts_fragment_then_icmpv6() {
        // Hop-by-hop with a router alert, destination options with PadN only, an atomic
        // fragment, then an ICMPv6 echo header.
        let mut rest = opt_header(DSTOPTS, &[OPT_ROUTER_ALERT, 2, 0, 0]);
        rest.extend(opt_header(FRAGMENT, &[]));
        rest.extend(frag_header(&Fragment {
            next_header: ICMPV6,
            offset: 0,
            more: false,
            id: 0xdead_beef,
        }));
        rest.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
        let d = packet(HOPOPT, DST, &rest);
        let w = walk_of(&d).unwrap();
        assert_eq!(w.upper, ICMPV6);
        assert_eq!(w.offset, 40 + 8 + 8 + 8);
        assert_eq!(w.upper_at, 56);
        assert_eq!(w.payload, &[128, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(w.router_alert, Some(0));
        let f = w.fragment.unwrap();
        assert_eq!(f.unfragmentable_len, 56);
        assert_eq!(f.next_header_at, 48);
        assert!(f.header.is_atomic());
        assert_eq!(f.header.id, 0xdead_beef);

        // Reassembly of the atomic fragment gives the same chain without it.
        let mut r = PacketBuf::from_slice(w.payload);
        emit_reassembled(&d[..f.unfragmentable_len], f.next_header_at, ICMPV6, &mut r);
        let r = r.to_vec();
        let w2 = walk_of(&r).unwrap();
        assert_eq!((w2.upper, w2.offset, w2.fragment), (ICMPV6, 56, None));
        assert_eq!(parse(&r).unwrap().header.payload_len, 16 + 8);
    }

    #[test]
    fn hop_by_hop_not_first_is_a_param_problem() {
        let mut rest = opt_header(HOPOPT, &[]);
        rest.extend(opt_header(UDP, &[]));
        let d = packet(DSTOPTS, DST, &rest);
        assert_eq!(
            walk_of(&d),
            Err(param(
                DropReason::Ip6HopByHopNotFirst,
                PARAM_UNRECOGNIZED_NEXT_HEADER,
                40
            ))
        );
    }

    fn routing(next: u8, ty: u8, segments_left: u8) -> Vec<u8> {
        // 8 bytes + two addresses: length field 4 (in 8-byte units after the first 8).
        let mut h = vec![next, 4, ty, segments_left, 0, 0, 0, 0];
        h.extend_from_slice(&SRC.octets());
        h.extend_from_slice(&DST.octets());
        h
    }

    #[test]
    fn routing_headers_per_rfc_5095_and_8200() {
        let d = packet(ROUTING, DST, &routing(UDP, 0, 1));
        assert_eq!(
            walk_of(&d),
            Err(param(
                DropReason::Ip6RoutingType0,
                PARAM_ERRONEOUS_FIELD,
                42
            ))
        );
        let d = packet(ROUTING, DST, &routing(UDP, 0, 0));
        assert_eq!(walk_of(&d).unwrap().upper, UDP);
        let d = packet(ROUTING, DST, &routing(UDP, 4, 0));
        assert_eq!(walk_of(&d).unwrap().offset, 40 + 40);
        let mut rest = opt_header(ROUTING, &[]);
        rest.extend(routing(UDP, 4, 3));
        let d = packet(HOPOPT, DST, &rest);
        assert_eq!(
            walk_of(&d),
            Err(param(
                DropReason::Ip6UnknownRoutingType,
                PARAM_ERRONEOUS_FIELD,
                50
            ))
        );
    }

    #[test]
    fn long_chains_stop_at_the_bound() {
        let mut rest = Vec::new();
        for i in 0..20 {
            rest.extend(opt_header(if i == 19 { UDP } else { DSTOPTS }, &[]));
        }
        let d = packet(DSTOPTS, DST, &rest);
        assert_eq!(
            walk_of(&d),
            Err(ExtError::Drop(DropReason::Ip6ExtChainTooLong))
        );
        // Exactly the bound is fine.
        let mut rest = Vec::new();
        for i in 0..MAX_EXT_HEADERS {
            rest.extend(opt_header(
                if i == MAX_EXT_HEADERS - 1 {
                    UDP
                } else {
                    DSTOPTS
                },
                &[],
            ));
        }
        let d = packet(DSTOPTS, DST, &rest);
        assert_eq!(walk_of(&d).unwrap().upper, UDP);
    }

    #[test]
    fn headers_running_past_the_packet_are_dropped() {
        let bad = ExtError::Drop(DropReason::Ip6BadExtHeader);
        // Header length says 16 bytes, 8 present.
        let d = packet(DSTOPTS, DST, &[UDP, 1, 1, 4, 0, 0, 0, 0]);
        assert_eq!(walk_of(&d), Err(bad));
        // Not even the length byte.
        let d = packet(HOPOPT, DST, &[UDP]);
        assert_eq!(walk_of(&d), Err(bad));
        let d = packet(FRAGMENT, DST, &[UDP, 0, 0, 0]);
        assert_eq!(walk_of(&d), Err(bad));
        // An option longer than its header.
        let d = packet(DSTOPTS, DST, &[UDP, 0, OPT_PADN, 5, 0, 0, 0, 0]);
        assert_eq!(walk_of(&d), Err(ExtError::Drop(DropReason::Ip6BadOption)));
        // A PadN whose length byte is the header's last byte.
        let d = packet(DSTOPTS, DST, &[UDP, 0, 0, 0, 0, 0, 0, OPT_PADN]);
        assert_eq!(walk_of(&d), Err(ExtError::Drop(DropReason::Ip6BadOption)));
    }

    #[test]
    fn unknown_options_follow_their_high_bits() {
        let multicast: Ipv6Addr = "ff02::1:ff00:2".parse().unwrap();
        let with_opt = |ty: u8, dst: Ipv6Addr| packet(DSTOPTS, dst, &opt_header(UDP, &[ty, 1, 0]));
        // 00: skipped.
        assert_eq!(walk_of(&with_opt(0x1e, DST)).unwrap().upper, UDP);
        // 01: dropped silently.
        let drop = ExtError::Drop(DropReason::Ip6UnknownOption);
        assert_eq!(walk_of(&with_opt(0x5e, DST)), Err(drop));
        // 10: param problem even to multicast.
        for dst in [DST, multicast] {
            assert_eq!(
                walk_of(&with_opt(0x9e, dst)),
                Err(ExtError::ParamProblem {
                    reason: DropReason::Ip6UnknownOption,
                    code: PARAM_UNRECOGNIZED_OPTION,
                    pointer: 42,
                    multicast_ok: true,
                })
            );
        }
        // 11: param problem unless the destination is multicast.
        assert_eq!(
            walk_of(&with_opt(0xde, DST)),
            Err(param(
                DropReason::Ip6UnknownOption,
                PARAM_UNRECOGNIZED_OPTION,
                42
            ))
        );
        assert_eq!(walk_of(&with_opt(0xde, multicast)), Err(drop));
        // Pad1 and PadN before the option move the pointer.
        let d = packet(
            DSTOPTS,
            DST,
            &opt_header(UDP, &[OPT_PAD1, OPT_PADN, 1, 0, 0xc2, 0]),
        );
        match walk_of(&d) {
            Err(ExtError::ParamProblem { pointer, .. }) => assert_eq!(pointer, 46),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fragment_checks() {
        let frag = |more: bool, offset: usize, data: &[u8]| {
            let mut rest = frag_header(&Fragment {
                next_header: UDP,
                offset,
                more,
                id: 9,
            });
            rest.extend_from_slice(data);
            packet(FRAGMENT, DST, &rest)
        };
        // M set and 12 bytes of data: pointer at the payload length.
        assert_eq!(
            walk_of(&frag(true, 8, &[0; 12])),
            Err(param(DropReason::Frag6BadLength, PARAM_ERRONEOUS_FIELD, 4))
        );
        // Reassembled payload would pass 65535: pointer at the offset field.
        assert_eq!(
            walk_of(&frag(false, 65528, &[0; 16])),
            Err(param(DropReason::Frag6TooBig, PARAM_ERRONEOUS_FIELD, 42))
        );
        // A first fragment without a whole UDP header (RFC 7112).
        assert_eq!(
            walk_of(&frag(false, 0, &[0; 4])),
            Err(param(
                DropReason::Frag6IncompleteChain,
                PARAM_INCOMPLETE_CHAIN,
                0
            ))
        );
        // A later fragment may hold anything.
        let d = frag(false, 1232, &[0; 4]);
        let w = walk_of(&d).unwrap();
        assert_eq!(w.fragment.unwrap().header.offset, 1232);
        assert_eq!((w.upper, w.offset, w.payload.len()), (UDP, 48, 4));
        assert!(parse_fragment(&[0; 7]).is_err());
    }

    #[test]
    fn fragments_fit_the_mtu_and_reassemble() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let whole = packet(UDP, DST, &data);
        let unfrag = &whole[..HEADER_LEN];
        for mtu in [1280, 1500, 1281, 9000] {
            let frags = fragment(unfrag, UDP, &data, 0x1234_5678, mtu).unwrap();
            let mut got = vec![0u8; data.len()];
            let mut seen = 0;
            for (i, f) in frags.iter().enumerate() {
                assert!(f.len() <= mtu, "{} > {mtu}", f.len());
                assert!(f.headroom() >= 14);
                let b = f.to_vec();
                let p = parse(&b).unwrap();
                assert_eq!(p.header.payload_len, b.len() - HEADER_LEN);
                assert_eq!(p.header.next_header, FRAGMENT);
                assert_eq!(p.header.flow_label, 0x12345);
                let w = walk(&p).unwrap();
                let fi = w.fragment.unwrap();
                assert_eq!(fi.header.id, 0x1234_5678);
                assert_eq!(fi.header.offset % 8, 0);
                assert_eq!(fi.header.more, i + 1 < frags.len());
                if fi.header.more {
                    assert_eq!(w.payload.len() % 8, 0);
                }
                got[fi.header.offset..fi.header.offset + w.payload.len()]
                    .copy_from_slice(w.payload);
                seen += w.payload.len();
            }
            assert_eq!(seen, data.len());
            assert_eq!(got, data);
        }
        // Tiny MTUs are raised to 1280.
        assert_eq!(fragment(unfrag, UDP, &data, 1, 100).unwrap().len(), 5);
        assert_eq!(
            fragment(unfrag, UDP, &vec![0; 65535], 1, 1280),
            Err(DropReason::Frag6TooBig)
        );
        assert_eq!(
            fragment(&unfrag[..30], UDP, &data, 1, 1280),
            Err(DropReason::Ip6BadExtHeader)
        );
    }

    #[test]
    fn fragments_repeat_the_unfragmentable_headers() {
        let data = vec![0x5a; 3000];
        let mut rest = opt_header(ROUTING, &[]);
        rest.extend(routing(UDP, 4, 0));
        let unfrag = packet(HOPOPT, DST, &rest);
        let frags = fragment(&unfrag, UDP, &data, 7, 1500).unwrap();
        assert_eq!(frags.len(), 3);
        for f in &frags {
            let b = f.to_vec();
            assert!(b.len() <= 1500);
            // Byte 48, the routing header's Next Header, now names the fragment header.
            assert_eq!(&b[40..48], &unfrag[40..48]);
            assert_eq!(&b[49..88], &unfrag[49..88]);
            let w = walk_of(&b).unwrap();
            let fi = w.fragment.unwrap();
            assert_eq!((fi.unfragmentable_len, fi.next_header_at), (88, 48));
            assert_eq!(b[48], FRAGMENT);
        }
        // Reassemble: first fragment's unfragmentable part plus all data.
        let first = frags[0].to_vec();
        let mut all = PacketBuf::new();
        for f in &frags {
            let b = f.to_vec();
            all.extend_from_slice(walk_of(&b).unwrap().payload);
        }
        emit_reassembled(&first[..88], 48, UDP, &mut all);
        let r = all.to_vec();
        let w = walk_of(&r).unwrap();
        assert_eq!((w.upper, w.offset, w.payload), (UDP, 88, &data[..]));
    }

    #[test]
    fn quoted_packets_are_read_leniently() {
        let mut rest = opt_header(UDP, &[]);
        rest.extend_from_slice(&[0x9c, 0x40, 0x82, 0x9a, 0, 8, 0, 0, 1, 2]);
        let d = packet(DSTOPTS, DST, &rest);
        let q = parse_quoted(&d).unwrap();
        assert_eq!(
            (q.upper, q.src, q.dst, q.l4),
            (UDP, SRC, DST, &[0x9c, 0x40, 0x82, 0x9a, 0, 8, 0, 0][..])
        );
        assert_eq!(parse_quoted(&d[..50]).unwrap().l4, &[0x9c, 0x40]);
        // Cut after the extension header's Next Header: the protocol is still known.
        assert!(parse_quoted(&d[..44]).unwrap().l4.is_empty());
        assert!(parse_quoted(&d[..41]).is_none());
        assert!(parse_quoted(&d[..39]).is_none());
    }

    fn valid_packets() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = opt_header(DSTOPTS, &[OPT_ROUTER_ALERT, 2, 0, 0]);
        rest.extend(opt_header(ROUTING, &[OPT_PADN, 2, 0, 0]));
        rest.extend(routing(FRAGMENT, 0, 0));
        rest.extend(frag_header(&Fragment {
            next_header: DSTOPTS,
            offset: 0,
            more: true,
            id: 3,
        }));
        rest.extend(opt_header(ICMPV6, &[]));
        rest.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.push(packet(HOPOPT, DST, &rest));
        out.push(packet(UDP, DST, &[0; 12]));
        let data = vec![1u8; 2000];
        for f in fragment(&packet(UDP, DST, &[])[..40], UDP, &data, 5, 1280).unwrap() {
            out.push(f.to_vec());
        }
        out
    }

    #[test]
    fn random_mutations_never_panic() {
        // xorshift64: deterministic, so a failure reproduces.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let packets = valid_packets();
        for _ in 0..20_000 {
            let mut b = packets[next() as usize % packets.len()].clone();
            for _ in 0..1 + next() % 4 {
                let at = HEADER_LEN + next() as usize % (b.len() - HEADER_LEN);
                b[at] = next() as u8;
            }
            b.truncate(HEADER_LEN + next() as usize % (b.len() - HEADER_LEN + 1));
            let pl = (b.len() - HEADER_LEN) as u16;
            b[4..6].copy_from_slice(&pl.to_be_bytes());
            let p = parse(&b).unwrap();
            if let Ok(w) = walk(&p) {
                // What the walk hands on is the tail of the packet (nothing after header 59).
                if w.upper == NONE {
                    assert!(w.payload.is_empty());
                } else {
                    assert_eq!(w.offset + w.payload.len(), b.len());
                }
            }
            let _ = parse_quoted(&b);
        }
    }

    #[test]
    fn truncations_and_corruptions_never_panic() {
        for d in valid_packets() {
            assert!(walk_of(&d).is_ok(), "{d:02x?}");
            for len in 0..=d.len() {
                let cut = &d[..len];
                // A cut packet fails parse; with the payload length fixed it reaches walk.
                let _ = parse(cut);
                let _ = parse_quoted(cut);
                let mut fixed = cut.to_vec();
                if fixed.len() >= HEADER_LEN {
                    let pl = (fixed.len() - HEADER_LEN) as u16;
                    fixed[4..6].copy_from_slice(&pl.to_be_bytes());
                    let p = parse(&fixed).unwrap();
                    let _ = walk(&p);
                }
            }
            // Every byte value at every position of the extension headers.
            for at in HEADER_LEN..d.len().min(HEADER_LEN + 80) {
                for v in [0u8, 1, 0x2c, 0x3b, 0x3c, 0x7f, 0xc2, 0xff] {
                    let mut b = d.clone();
                    b[at] = v;
                    if let Ok(p) = parse(&b) {
                        let _ = walk(&p);
                    }
                    let _ = parse_quoted(&b);
                }
            }
        }
    }
}
