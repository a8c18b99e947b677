//! Ethernet II framing (no FCS: the bus carries frames without it).

use pnet_packet::ethernet::EthernetPacket;
use pnet_packet::Packet;

use super::Mac;
use super::PacketBuf;
use crate::stats::DropReason;

pub const HEADER_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// A validated Ethernet II frame.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
    pub payload: &'a [u8],
}

pub fn parse(buf: &[u8]) -> Result<Frame<'_>, DropReason> {
    let p = EthernetPacket::new(buf).ok_or(DropReason::EtherTruncated)?;
    let ethertype = p.get_ethertype().0;
    if ethertype < 0x0600 {
        // An 802.3 length field (LLC/SNAP): not Ethernet II, nothing of ours.
        return Err(DropReason::EtherUnknownType);
    }
    Ok(Frame {
        dst: Mac(p.get_destination().octets()),
        src: Mac(p.get_source().octets()),
        ethertype,
        payload: &buf[HEADER_LEN..HEADER_LEN + p.payload().len()],
    })
}

/// Puts an Ethernet header in front of the packet in `buf`.
pub fn prepend(dst: Mac, src: Mac, ethertype: u16, buf: &mut PacketBuf) {
    let h = buf.prepend(HEADER_LEN);
    h[..6].copy_from_slice(&dst.0);
    h[6..12].copy_from_slice(&src.0);
    h[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// A whole frame as a vector (tests and tools building frames by hand).
pub fn emit(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuf::from_slice(payload);
    prepend(dst, src, ethertype, &mut b);
    b.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_frames_and_8023_lengths_are_rejected() {
        assert_eq!(parse(&[0; 13]), Err(DropReason::EtherTruncated));
        let f = emit(Mac::BROADCAST, Mac([2; 6]), 0x0040, &[]);
        assert_eq!(parse(&f), Err(DropReason::EtherUnknownType));
        let f = emit(Mac::BROADCAST, Mac([2; 6]), ETHERTYPE_ARP, &[1, 2]);
        let p = parse(&f).unwrap();
        assert_eq!(
            (p.ethertype, p.payload, p.src),
            (ETHERTYPE_ARP, &[1u8, 2][..], Mac([2; 6]))
        );
    }
}
