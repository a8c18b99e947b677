//! Wire formats: one `parse` per protocol that takes untrusted bytes and returns a validated
//! typed value (or the [`DropReason`](crate::stats::DropReason) that rejects it), and one `emit`
//! for the way back. Nothing above this module indexes into frames. Packets being built live in a
//! [`PacketBuf`], which keeps room in front for the headers of the layers below.
//!
//! `pnet_packet` provides the field accessors; it checks no lengths, so every `parse` checks
//! them first.

pub mod arp;
pub mod ether;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod packet;
pub mod udp;

pub use packet::PacketBuf;

use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub const ZERO: Mac = Mac([0; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == Mac::BROADCAST
    }
    /// Group bit set (broadcast included).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Mac, String> {
        let bad = || {
            format!("invalid MAC address {s:?} (expected six hex octets like b2:a0:00:00:00:01)")
        };
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for o in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || p.len() > 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

/// The Internet checksum of `data` (RFC 1071), as stored in headers.
pub fn internet_checksum(data: &[u8]) -> u16 {
    // skipword past the end: no word is skipped.
    pnet_packet::util::checksum(data, usize::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trips_through_text() {
        let m: Mac = "b2:a0:1:2:3:ff".parse().unwrap();
        assert_eq!(m.to_string(), "b2:a0:01:02:03:ff");
        assert!("b2:a0:01:02:03".parse::<Mac>().is_err());
        assert!("b2:a0:01:02:03:04:05".parse::<Mac>().is_err());
        assert!("zz:a0:01:02:03:04".parse::<Mac>().is_err());
    }

    #[test]
    fn checksum_of_a_known_header() {
        // Example from RFC 1071 discussions: a header with its checksum sums to zero.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = internet_checksum(&h);
        assert_eq!(c, 0xb861);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(internet_checksum(&h), 0);
    }
}
