//! UDP headers (RFC 768). Only what the node needs before sockets exist (issue "transport"):
//! validating datagrams so it can answer port-unreachable, and building traceroute probes.

use std::net::{Ipv4Addr, Ipv6Addr};

use pnet_packet::udp::UdpPacket;

use super::ipv4::PROTO_UDP;
use super::{ipv6, PacketBuf};
use crate::stats::DropReason;

pub const HEADER_LEN: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Udp<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

fn checksum(src: Ipv4Addr, dst: Ipv4Addr, datagram: &[u8]) -> u16 {
    pnet_packet::util::ipv4_checksum(
        datagram,
        3,
        &[],
        &src,
        &dst,
        pnet_packet::ip::IpNextHeaderProtocol(PROTO_UDP),
    )
}

pub fn parse(src: Ipv4Addr, dst: Ipv4Addr, buf: &[u8]) -> Result<Udp<'_>, DropReason> {
    if buf.len() < HEADER_LEN {
        return Err(DropReason::UdpTruncated);
    }
    let p = UdpPacket::new(buf).ok_or(DropReason::UdpTruncated)?;
    let len = p.get_length() as usize;
    if len < HEADER_LEN || len > buf.len() {
        return Err(DropReason::UdpBadLength);
    }
    let stored = p.get_checksum();
    // Zero means "no checksum" in IPv4.
    if stored != 0 {
        let mut want = checksum(src, dst, &buf[..len]);
        if want == 0 {
            want = 0xffff;
        }
        if want != stored {
            return Err(DropReason::UdpBadChecksum);
        }
    }
    Ok(Udp {
        src_port: p.get_source(),
        dst_port: p.get_destination(),
        payload: &buf[HEADER_LEN..len],
    })
}

/// UDP over IPv6. The checksum is mandatory there (RFC 8200 8.1): a zero one is a bad one.
pub fn parse_v6(src: Ipv6Addr, dst: Ipv6Addr, buf: &[u8]) -> Result<Udp<'_>, DropReason> {
    let (ports, len) = match buf {
        [a, b, c, d, l0, l1, _, _, ..] => (
            [*a, *b, *c, *d],
            usize::from(u16::from_be_bytes([*l0, *l1])),
        ),
        _ => return Err(DropReason::UdpTruncated),
    };
    let datagram = buf
        .get(..len)
        .filter(|_| len >= HEADER_LEN)
        .ok_or(DropReason::UdpBadLength)?;
    let stored = buf.get(6..8).filter(|c| c != &[0, 0]);
    // The pseudo-header length is UDP's own length field (RFC 8200 8.1).
    if stored.is_none() || ipv6::pseudo_header_checksum(src, dst, ipv6::UDP, datagram) != 0 {
        return Err(DropReason::UdpBadChecksum);
    }
    Ok(Udp {
        src_port: u16::from_be_bytes([ports[0], ports[1]]),
        dst_port: u16::from_be_bytes([ports[2], ports[3]]),
        payload: datagram.get(HEADER_LEN..).unwrap_or(&[]),
    })
}

/// Appends a UDP-over-IPv6 datagram to `buf`, checksummed.
pub fn emit_v6(src: Ipv6Addr, dst: Ipv6Addr, u: &Udp<'_>, buf: &mut PacketBuf) {
    let start = buf.len();
    let len = HEADER_LEN + u.payload.len();
    debug_assert!(len <= ipv6::MAX_PAYLOAD, "UDP datagram over 65535 bytes");
    buf.extend_from_slice(&u.src_port.to_be_bytes());
    buf.extend_from_slice(&u.dst_port.to_be_bytes());
    buf.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(u.payload);
    let d = buf.data().get(start..).unwrap_or(&[]);
    // Zero would mean "no checksum"; its one's complement twin is sent instead.
    let c = match ipv6::pseudo_header_checksum(src, dst, ipv6::UDP, d) {
        0 => 0xffff,
        c => c,
    };
    if let Some(field) = buf.data_mut().get_mut(start + 6..start + 8) {
        field.copy_from_slice(&c.to_be_bytes());
    }
}

pub fn emit(src: Ipv4Addr, dst: Ipv4Addr, u: &Udp<'_>) -> Vec<u8> {
    let len = HEADER_LEN + u.payload.len();
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&u.src_port.to_be_bytes());
    b.extend_from_slice(&u.dst_port.to_be_bytes());
    b.extend_from_slice(&(len as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(u.payload);
    let mut c = checksum(src, dst, &b);
    if c == 0 {
        c = 0xffff;
    }
    b[6..8].copy_from_slice(&c.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksum() {
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let u = Udp {
            src_port: 40000,
            dst_port: 33434,
            payload: &[1, 2, 3, 4, 5],
        };
        let mut b = emit(s, d, &u);
        assert_eq!(parse(s, d, &b), Ok(u));
        b[9] ^= 0xff;
        assert_eq!(parse(s, d, &b), Err(DropReason::UdpBadChecksum));
        b[4..6].copy_from_slice(&200u16.to_be_bytes());
        assert_eq!(parse(s, d, &b), Err(DropReason::UdpBadLength));
    }

    #[test]
    fn over_ipv6_matches_an_independent_vector() {
        // raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=40000, dport=33434)
        //     / b"probe")[40:] with scapy 2.8.0.
        let want = [
            0x9c, 0x40, 0x82, 0x9a, 0x00, 0x0d, 0x40, 0xaf, b'p', b'r', b'o', b'b', b'e',
        ];
        let (s, d): (Ipv6Addr, Ipv6Addr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        let u = Udp {
            src_port: 40000,
            dst_port: 33434,
            payload: b"probe",
        };
        let mut b = PacketBuf::new();
        emit_v6(s, d, &u, &mut b);
        assert_eq!(b.data(), &want);
        assert_eq!(parse_v6(s, d, &want), Ok(u));
        // Trailing bytes past the length field are not the datagram's.
        let mut long = want.to_vec();
        long.push(0);
        assert_eq!(parse_v6(s, d, &long), Ok(u));
        let mut zero = want;
        zero[6..8].fill(0);
        assert_eq!(parse_v6(s, d, &zero), Err(DropReason::UdpBadChecksum));
        assert_eq!(parse_v6(d, s, &want[..]), Ok(u),);
        let mut bad = want;
        bad[12] ^= 1;
        assert_eq!(parse_v6(s, d, &bad), Err(DropReason::UdpBadChecksum));
        assert_eq!(parse_v6(s, d, &want[..7]), Err(DropReason::UdpTruncated));
        assert_eq!(parse_v6(s, d, &want[..12]), Err(DropReason::UdpBadLength));
        let mut tiny = want;
        tiny[4..6].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(parse_v6(s, d, &tiny), Err(DropReason::UdpBadLength));
    }
}
