//! IPv4 headers (RFC 791). Options are carried but never interpreted.

use std::net::Ipv4Addr;

use pnet_packet::ipv4::Ipv4Packet;

use super::{internet_checksum, PacketBuf};
use crate::stats::DropReason;

pub const MIN_HEADER: usize = 20;
pub const MAX_DATAGRAM: usize = 65535;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// A validated IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub header_len: usize,
    pub tos: u8,
    /// Total length from the header (header + payload), already checked against the buffer.
    pub total_len: usize,
    pub id: u16,
    pub df: bool,
    pub mf: bool,
    /// Fragment offset in bytes.
    pub frag_offset: usize,
    pub ttl: u8,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Header {
    pub fn is_fragment(&self) -> bool {
        self.mf || self.frag_offset != 0
    }
}

/// A validated datagram: the header, the raw header bytes (options included) and the payload,
/// with any link padding after `total_len` cut off.
#[derive(Debug)]
pub struct Datagram<'a> {
    pub header: Header,
    /// Header and payload: the datagram's own bytes.
    pub bytes: &'a [u8],
    pub raw_header: &'a [u8],
    pub payload: &'a [u8],
}

pub fn parse(buf: &[u8]) -> Result<Datagram<'_>, DropReason> {
    if buf.len() < MIN_HEADER {
        return Err(DropReason::IpTruncated);
    }
    let p = Ipv4Packet::new(buf).ok_or(DropReason::IpTruncated)?;
    if p.get_version() != 4 {
        return Err(DropReason::IpBadVersion);
    }
    let header_len = p.get_header_length() as usize * 4;
    if header_len < MIN_HEADER {
        return Err(DropReason::IpBadHeaderLen);
    }
    if header_len > buf.len() {
        return Err(DropReason::IpTruncated);
    }
    let total_len = p.get_total_length() as usize;
    if total_len < header_len {
        return Err(DropReason::IpBadTotalLen);
    }
    if total_len > buf.len() {
        // The header claims more than arrived.
        return Err(DropReason::IpTruncated);
    }
    if internet_checksum(&buf[..header_len]) != 0 {
        return Err(DropReason::IpBadChecksum);
    }
    let flags = p.get_flags();
    let header = Header {
        header_len,
        tos: (p.get_dscp() << 2) | p.get_ecn(),
        total_len,
        id: p.get_identification(),
        df: flags & 0b010 != 0,
        mf: flags & 0b001 != 0,
        frag_offset: p.get_fragment_offset() as usize * 8,
        ttl: p.get_ttl(),
        proto: p.get_next_level_protocol().0,
        src: p.get_source(),
        dst: p.get_destination(),
    };
    if header.frag_offset + total_len - header_len > MAX_DATAGRAM {
        return Err(DropReason::FragTooBig);
    }
    Ok(Datagram {
        header,
        bytes: &buf[..total_len],
        raw_header: &buf[..header_len],
        payload: &buf[header_len..total_len],
    })
}

/// The header fields of `raw` (a header we stored earlier), without length checks against a
/// payload.
pub fn parse_header_only(raw: &[u8]) -> Option<Header> {
    let mut b = raw.to_vec();
    let hl = b.len();
    if hl < MIN_HEADER {
        return None;
    }
    b[2..4].copy_from_slice(&(hl as u16).to_be_bytes());
    b[10..12].copy_from_slice(&[0, 0]);
    let c = internet_checksum(&b);
    b[10..12].copy_from_slice(&c.to_be_bytes());
    parse(&b).ok().map(|d| d.header)
}

/// What a locally built header needs; `emit` derives the rest.
#[derive(Clone, Copy, Debug)]
pub struct Emit {
    pub tos: u8,
    pub id: u16,
    pub df: bool,
    pub mf: bool,
    pub frag_offset: usize,
    pub ttl: u8,
    pub proto: u8,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Emit {
    pub fn from_header(h: &Header) -> Emit {
        Emit {
            tos: h.tos,
            id: h.id,
            df: h.df,
            mf: h.mf,
            frag_offset: h.frag_offset,
            ttl: h.ttl,
            proto: h.proto,
            src: h.src,
            dst: h.dst,
        }
    }
}

/// Puts a header (with `options`, padded to 32 bits) in front of the payload in `buf`,
/// checksummed; the total length is the header plus what `buf` holds.
pub fn prepend(e: &Emit, options: &[u8], buf: &mut PacketBuf) {
    let opt_len = options.len().div_ceil(4) * 4;
    let header_len = MIN_HEADER + opt_len;
    let total = header_len + buf.len();
    let b = buf.prepend(header_len);
    b[0] = 0x40 | (header_len / 4) as u8;
    b[1] = e.tos;
    b[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    b[4..6].copy_from_slice(&e.id.to_be_bytes());
    let mut ff = (e.frag_offset / 8) as u16 & 0x1fff;
    if e.df {
        ff |= 0x4000;
    }
    if e.mf {
        ff |= 0x2000;
    }
    b[6..8].copy_from_slice(&ff.to_be_bytes());
    b[8] = e.ttl;
    b[9] = e.proto;
    b[10..12].copy_from_slice(&[0, 0]);
    b[12..16].copy_from_slice(&e.src.octets());
    b[16..20].copy_from_slice(&e.dst.octets());
    b[MIN_HEADER..MIN_HEADER + options.len()].copy_from_slice(options);
    b[MIN_HEADER + options.len()..header_len].fill(0);
    let c = internet_checksum(&b[..header_len]);
    b[10..12].copy_from_slice(&c.to_be_bytes());
}

/// A whole datagram as a vector (tests and tools building packets by hand).
pub fn emit(e: &Emit, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuf::from_slice(payload);
    prepend(e, options, &mut b);
    b.to_vec()
}

/// Rewrites the TTL of the datagram starting at `packet[0]` (a parsed one) and its checksum,
/// in place: what a router changes in a packet it forwards.
pub fn set_ttl(packet: &mut [u8], ttl: u8) {
    let Some(hl) = packet.first().map(|b| (b & 0x0f) as usize * 4) else {
        return;
    };
    if hl < MIN_HEADER || packet.len() < hl {
        return;
    }
    packet[8] = ttl;
    packet[10..12].copy_from_slice(&[0, 0]);
    let c = internet_checksum(&packet[..hl]);
    packet[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The fragmentation fields of a raw datagram start (possibly cut short, as queued or quoted
/// datagrams are): (DF, MF, offset in bytes, header length). None if too short to tell.
pub fn frag_fields(raw: &[u8]) -> Option<(bool, bool, usize, usize)> {
    let hl = (*raw.first()? & 0x0f) as usize * 4;
    let flags = u16::from_be_bytes([*raw.get(6)?, *raw.get(7)?]);
    (hl >= MIN_HEADER && hl <= raw.len()).then_some((
        flags & 0x4000 != 0,
        flags & 0x2000 != 0,
        (flags & 0x1fff) as usize * 8,
        hl,
    ))
}

/// Options of `raw_header` that must be copied into every fragment (copied bit set), padded.
pub fn copied_options(raw_header: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let opts = raw_header.get(MIN_HEADER..).unwrap_or(&[]);
    let mut i = 0;
    while i < opts.len() {
        let kind = opts[i];
        match kind {
            0 => break,
            1 => i += 1,
            _ => {
                let Some(&len) = opts.get(i + 1) else { break };
                let len = len as usize;
                if len < 2 || i + len > opts.len() {
                    break;
                }
                if kind & 0x80 != 0 {
                    out.extend_from_slice(&opts[i..i + len]);
                }
                i += len;
            }
        }
    }
    out
}

/// The start of a datagram quoted inside an ICMP error: lenient, because the quote is often cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted<'a> {
    pub proto: u8,
    pub id: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Up to the first 8 bytes of the quoted payload (ports, ICMP ident/seq).
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

    /// Type, identifier and sequence number of a quoted ICMP echo header.
    pub fn echo(&self) -> Option<(u8, u16, u16)> {
        match *self.l4 {
            [ty, _, _, _, i0, i1, s0, s1, ..] => Some((
                ty,
                u16::from_be_bytes([i0, i1]),
                u16::from_be_bytes([s0, s1]),
            )),
            _ => None,
        }
    }
}

pub fn parse_quoted(buf: &[u8]) -> Option<Quoted<'_>> {
    let p = Ipv4Packet::new(buf)?;
    let hl = p.get_header_length() as usize * 4;
    if p.get_version() != 4 || hl < MIN_HEADER || hl > buf.len() {
        return None;
    }
    Some(Quoted {
        proto: p.get_next_level_protocol().0,
        id: p.get_identification(),
        src: p.get_source(),
        dst: p.get_destination(),
        l4: &buf[hl..buf.len().min(hl + 8)],
    })
}

/// Splits a datagram into fragments of at most `mtu` bytes (RFC 791). Only options with the
/// copied bit go into fragments after the first.
pub fn fragment(dgram: &Datagram<'_>, ttl: u8, mtu: usize) -> Vec<PacketBuf> {
    let h = &dgram.header;
    let first_opts = &dgram.raw_header[MIN_HEADER..];
    let later_opts = copied_options(dgram.raw_header);
    let mut out = Vec::new();
    let mut off = 0;
    let payload = dgram.payload;
    while off < payload.len() || (off == 0 && payload.is_empty()) {
        let opts: &[u8] = if off == 0 { first_opts } else { &later_opts };
        let hl = MIN_HEADER + opts.len().div_ceil(4) * 4;
        let room = (mtu.saturating_sub(hl) / 8 * 8).max(8);
        let end = (off + room).min(payload.len());
        let last = end == payload.len();
        let e = Emit {
            ttl,
            mf: !last || h.mf,
            frag_offset: h.frag_offset + off,
            ..Emit::from_header(h)
        };
        let mut b = PacketBuf::from_slice(&payload[off..end]);
        prepend(&e, opts, &mut b);
        out.push(b);
        if payload.is_empty() {
            break;
        }
        off = end;
    }
    out
}

pub fn is_martian_source(a: Ipv4Addr) -> bool {
    a.is_broadcast() || a.is_multicast() || a.is_unspecified() || a.octets()[0] == 127
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &[u8]) -> Vec<u8> {
        emit(
            &Emit {
                tos: 0,
                id: 7,
                df: false,
                mf: false,
                frag_offset: 0,
                ttl: 64,
                proto: PROTO_UDP,
                src: Ipv4Addr::new(10, 0, 0, 1),
                dst: Ipv4Addr::new(10, 0, 0, 2),
            },
            &[],
            payload,
        )
    }

    #[test]
    fn valid_datagram_parses_and_padding_is_cut() {
        let mut d = sample(&[1, 2, 3]);
        d.extend_from_slice(&[0; 20]);
        let p = parse(&d).unwrap();
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(p.header.id, 7);
        assert_eq!(p.header.proto, PROTO_UDP);
    }

    #[test]
    fn every_bad_header_gets_its_reason() {
        let d = sample(&[0; 8]);
        assert_eq!(parse(&d[..19]).unwrap_err(), DropReason::IpTruncated);
        let mut b = d.clone();
        b[0] = 0x65;
        assert_eq!(parse(&b).unwrap_err(), DropReason::IpBadVersion);
        let mut b = d.clone();
        b[0] = 0x44;
        assert_eq!(parse(&b).unwrap_err(), DropReason::IpBadHeaderLen);
        let mut b = d.clone();
        b[0] = 0x4f;
        assert_eq!(parse(&b).unwrap_err(), DropReason::IpTruncated);
        let mut b = d.clone();
        b[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(parse(&b).unwrap_err(), DropReason::IpBadTotalLen);
        let mut b = d.clone();
        b[2..4].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(parse(&b).unwrap_err(), DropReason::IpTruncated);
        let mut b = d.clone();
        b[8] = 1;
        assert_eq!(parse(&b).unwrap_err(), DropReason::IpBadChecksum);
    }

    #[test]
    fn fragments_cover_the_payload_in_multiples_of_eight() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let d = sample(&payload);
        let p = parse(&d).unwrap();
        let frags = fragment(&p, 64, 1500);
        assert_eq!(frags.len(), 3);
        let mut got = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= 1500);
            let q = parse(f.data()).unwrap();
            assert_eq!(q.header.frag_offset, got.len());
            assert_eq!(q.header.mf, i < 2);
            got.extend_from_slice(q.payload);
        }
        assert_eq!(got, payload);
    }

    #[test]
    fn only_copied_options_survive() {
        // NOP, record route (not copied, len 7), security-like copied option 0x82 len 4.
        let raw = [
            0x48, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 7, 7, 4, 0, 0, 0, 0,
            0x82, 4, 1, 2,
        ];
        assert_eq!(copied_options(&raw), vec![0x82, 4, 1, 2]);
    }
}
