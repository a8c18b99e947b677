//! ARP for IPv4 over Ethernet (RFC 826).

use std::net::Ipv4Addr;

use pnet_packet::arp::ArpPacket;

use super::Mac;
use crate::stats::DropReason;

pub const LEN: usize = 28;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sha: Mac,
    pub spa: Ipv4Addr,
    pub tha: Mac,
    pub tpa: Ipv4Addr,
}

pub fn parse(buf: &[u8]) -> Result<Arp, DropReason> {
    if buf.len() < LEN {
        return Err(DropReason::ArpTruncated);
    }
    let p = ArpPacket::new(buf).ok_or(DropReason::ArpTruncated)?;
    if p.get_hardware_type().0 != 1
        || p.get_protocol_type().0 != super::ether::ETHERTYPE_IPV4
        || p.get_hw_addr_len() != 6
        || p.get_proto_addr_len() != 4
    {
        return Err(DropReason::ArpBadFormat);
    }
    let op = p.get_operation().0;
    if op != OP_REQUEST && op != OP_REPLY {
        return Err(DropReason::ArpBadFormat);
    }
    Ok(Arp {
        op,
        sha: Mac(p.get_sender_hw_addr().octets()),
        spa: p.get_sender_proto_addr(),
        tha: Mac(p.get_target_hw_addr().octets()),
        tpa: p.get_target_proto_addr(),
    })
}

pub fn emit(a: &Arp) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[0..2].copy_from_slice(&1u16.to_be_bytes());
    b[2..4].copy_from_slice(&super::ether::ETHERTYPE_IPV4.to_be_bytes());
    b[4] = 6;
    b[5] = 4;
    b[6..8].copy_from_slice(&a.op.to_be_bytes());
    b[8..14].copy_from_slice(&a.sha.0);
    b[14..18].copy_from_slice(&a.spa.octets());
    b[18..24].copy_from_slice(&a.tha.0);
    b[24..28].copy_from_slice(&a.tpa.octets());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let a = Arp {
            op: OP_REQUEST,
            sha: Mac([0xb2, 0xa0, 1, 2, 3, 4]),
            spa: Ipv4Addr::new(10, 0, 0, 1),
            tha: Mac::ZERO,
            tpa: Ipv4Addr::new(10, 0, 0, 2),
        };
        let b = emit(&a);
        assert_eq!(parse(&b), Ok(a));
        assert_eq!(parse(&b[..27]), Err(DropReason::ArpTruncated));
        let mut bad = b;
        bad[4] = 8;
        assert_eq!(parse(&bad), Err(DropReason::ArpBadFormat));
        let mut bad = b;
        bad[7] = 9;
        assert_eq!(parse(&bad), Err(DropReason::ArpBadFormat));
    }
}
