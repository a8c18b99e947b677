//! ICMP for IPv4 (RFC 792, RFC 1191 for the next-hop MTU).

use pnet_packet::icmp::IcmpPacket;

use super::{internet_checksum, PacketBuf};
use crate::stats::DropReason;

pub const HEADER_LEN: usize = 8;
pub const ECHO_REPLY: u8 = 0;
pub const DEST_UNREACH: u8 = 3;
pub const SOURCE_QUENCH: u8 = 4;
pub const REDIRECT: u8 = 5;
pub const ECHO_REQUEST: u8 = 8;
pub const TIME_EXCEEDED: u8 = 11;
pub const PARAM_PROBLEM: u8 = 12;

pub const UNREACH_NET: u8 = 0;
pub const UNREACH_HOST: u8 = 1;
pub const UNREACH_PROTOCOL: u8 = 2;
pub const UNREACH_PORT: u8 = 3;
pub const UNREACH_NEEDFRAG: u8 = 4;
pub const EXCEEDED_TTL: u8 = 0;
pub const EXCEEDED_REASSEMBLY: u8 = 1;

/// A validated ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Icmp<'a> {
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
    /// Destination unreachable; `mtu` is the next-hop MTU of code 4 (0 if not given).
    Unreachable {
        code: u8,
        mtu: u16,
        quoted: &'a [u8],
    },
    TimeExceeded {
        code: u8,
        quoted: &'a [u8],
    },
    /// Any other type: accepted, counted, not acted on.
    Other {
        ty: u8,
        code: u8,
    },
}

/// Whether a message of this type is an error (which must never trigger another error).
pub fn is_error_type(ty: u8) -> bool {
    matches!(
        ty,
        DEST_UNREACH | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
    )
}

pub fn parse(buf: &[u8]) -> Result<Icmp<'_>, DropReason> {
    if buf.len() < HEADER_LEN {
        return Err(DropReason::IcmpTruncated);
    }
    if internet_checksum(buf) != 0 {
        return Err(DropReason::IcmpBadChecksum);
    }
    let p = IcmpPacket::new(buf).ok_or(DropReason::IcmpTruncated)?;
    let ty = p.get_icmp_type().0;
    let code = p.get_icmp_code().0;
    let w1 = u16::from_be_bytes([buf[4], buf[5]]);
    let w2 = u16::from_be_bytes([buf[6], buf[7]]);
    let rest = &buf[HEADER_LEN..];
    Ok(match ty {
        ECHO_REQUEST => Icmp::EchoRequest {
            ident: w1,
            seq: w2,
            data: rest,
        },
        ECHO_REPLY => Icmp::EchoReply {
            ident: w1,
            seq: w2,
            data: rest,
        },
        DEST_UNREACH => Icmp::Unreachable {
            code,
            mtu: w2,
            quoted: rest,
        },
        TIME_EXCEEDED => Icmp::TimeExceeded { code, quoted: rest },
        ty => Icmp::Other { ty, code },
    })
}

/// Appends the message, checksummed, to `buf` (which holds nothing else yet).
pub fn emit_into(m: &Icmp<'_>, buf: &mut PacketBuf) {
    let (ty, code, w1, w2, rest): (u8, u8, u16, u16, &[u8]) = match *m {
        Icmp::EchoRequest { ident, seq, data } => (ECHO_REQUEST, 0, ident, seq, data),
        Icmp::EchoReply { ident, seq, data } => (ECHO_REPLY, 0, ident, seq, data),
        Icmp::Unreachable { code, mtu, quoted } => (DEST_UNREACH, code, 0, mtu, quoted),
        Icmp::TimeExceeded { code, quoted } => (TIME_EXCEEDED, code, 0, 0, quoted),
        Icmp::Other { ty, code } => (ty, code, 0, 0, &[]),
    };
    let start = buf.len();
    let h = buf.append(HEADER_LEN);
    h[..4].copy_from_slice(&[ty, code, 0, 0]);
    h[4..6].copy_from_slice(&w1.to_be_bytes());
    h[6..8].copy_from_slice(&w2.to_be_bytes());
    buf.extend_from_slice(rest);
    let msg = &mut buf.data_mut()[start..];
    let c = internet_checksum(msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
}

/// The message as a vector (tests and tools).
pub fn emit(m: &Icmp<'_>) -> Vec<u8> {
    let mut b = PacketBuf::new();
    emit_into(m, &mut b);
    b.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_round_trip_and_bad_checksum() {
        let m = Icmp::EchoRequest {
            ident: 1,
            seq: 2,
            data: &[9, 9, 9],
        };
        let mut b = emit(&m);
        assert_eq!(parse(&b), Ok(m));
        b[9] ^= 1;
        assert_eq!(parse(&b), Err(DropReason::IcmpBadChecksum));
        assert_eq!(parse(&b[..7]), Err(DropReason::IcmpTruncated));
    }

    #[test]
    fn frag_needed_carries_the_mtu() {
        let b = emit(&Icmp::Unreachable {
            code: UNREACH_NEEDFRAG,
            mtu: 1280,
            quoted: &[0; 28],
        });
        match parse(&b).unwrap() {
            Icmp::Unreachable { code, mtu, .. } => assert_eq!((code, mtu), (4, 1280)),
            other => panic!("{other:?}"),
        }
    }
}
