//! UDP headers (RFC 768). Only what the node needs before sockets exist (issue "transport"):
//! validating datagrams so it can answer port-unreachable, and building traceroute probes.

use std::net::Ipv4Addr;

use pnet_packet::udp::UdpPacket;

use super::ipv4::PROTO_UDP;
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
}
