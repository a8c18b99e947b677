//! Addresses of either family: prefixes, interface addresses with their flags, and the
//! [`Family`] trait that lets one routing table and one neighbour cache serve IPv4 and IPv6.

use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// What the tables need of an address family: its addresses as bits.
pub trait Family:
    Copy + Eq + Ord + Hash + Debug + Display + Serialize + Into<IpAddr> + 'static
{
    const BITS: u8;
    const UNSPECIFIED: Self;
    fn to_bits(self) -> u128;
    fn from_bits(bits: u128) -> Self;
    /// The address of this family inside `a`, if it is one.
    fn from_ip(a: IpAddr) -> Option<Self>;
}

impl Family for Ipv4Addr {
    const BITS: u8 = 32;
    const UNSPECIFIED: Self = Ipv4Addr::UNSPECIFIED;
    fn to_bits(self) -> u128 {
        u32::from(self) as u128
    }
    fn from_bits(bits: u128) -> Self {
        Ipv4Addr::from(bits as u32)
    }
    fn from_ip(a: IpAddr) -> Option<Self> {
        match a {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
}

impl Family for Ipv6Addr {
    const BITS: u8 = 128;
    const UNSPECIFIED: Self = Ipv6Addr::UNSPECIFIED;
    fn to_bits(self) -> u128 {
        u128::from(self)
    }
    fn from_bits(bits: u128) -> Self {
        Ipv6Addr::from(bits)
    }
    fn from_ip(a: IpAddr) -> Option<Self> {
        match a {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }
}

/// The mask of a `prefix`-bit prefix in a family of `bits` bits, right-aligned in a u128.
fn mask_bits(bits: u8, prefix: u8) -> u128 {
    let prefix = prefix.min(bits);
    if prefix == 0 {
        return 0;
    }
    (u128::MAX << (128 - prefix as u32)) >> (128 - bits as u32)
}

pub fn network<A: Family>(addr: A, prefix: u8) -> A {
    A::from_bits(addr.to_bits() & mask_bits(A::BITS, prefix))
}

pub fn contains<A: Family>(net: A, prefix: u8, a: A) -> bool {
    let m = mask_bits(A::BITS, prefix);
    a.to_bits() & m == net.to_bits() & m
}

/// The IPv4 netmask of a prefix, as a number (`route get` prints it as an address).
pub fn mask_v4(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(mask_bits(32, prefix) as u32)
}

/// Address states (NetBSD's IN6_IFF_* flags, shown by `ifconfig`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AddrFlags {
    /// Duplicate address detection is still running: not used as a source or for receiving.
    pub tentative: bool,
    /// DAD found another node with this address: never used.
    pub duplicated: bool,
    /// Preferred lifetime over: still received on, not chosen as a source.
    pub deprecated: bool,
    /// Made by the node itself (the link-local address), not configured.
    pub autoconf: bool,
}

/// An address on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix: u8,
    pub flags: AddrFlags,
}

impl IfAddr {
    pub fn new(addr: IpAddr, prefix: u8) -> IfAddr {
        IfAddr {
            addr,
            prefix,
            flags: AddrFlags::default(),
        }
    }

    pub fn v4(addr: Ipv4Addr, prefix: u8) -> IfAddr {
        IfAddr::new(IpAddr::V4(addr), prefix)
    }

    /// Neither tentative nor duplicated: the node answers for it and may send from it.
    pub fn usable(&self) -> bool {
        !self.flags.tentative && !self.flags.duplicated
    }

    /// The address if it is of family `A`.
    pub fn get<A: Family>(&self) -> Option<A> {
        A::from_ip(self.addr)
    }

    /// Whether `a` is on this address's network (false across families).
    pub fn contains<A: Family>(&self, a: A) -> bool {
        self.get::<A>()
            .is_some_and(|mine| contains(mine, self.prefix, a))
    }

    /// The IPv4 directed broadcast address, None for IPv6 and for /31 and /32 (RFC 3021).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        let a = self.get::<Ipv4Addr>()?;
        (self.prefix < 31).then(|| Ipv4Addr::from(u32::from(a) | !u32::from(mask_v4(self.prefix))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_containment_in_both_families() {
        let a = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(network(a, 24), Ipv4Addr::new(10, 1, 2, 0));
        assert_eq!(network(a, 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(network(a, 32), a);
        assert_eq!(mask_v4(20), Ipv4Addr::new(255, 255, 240, 0));
        let b: Ipv6Addr = "fd00:1:2:3::9".parse().unwrap();
        assert_eq!(network(b, 64), "fd00:1:2:3::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(network(b, 128), b);
        assert!(contains(network(b, 48), 48, b));
        assert!(!contains(
            "fd00:1:2:3::".parse::<Ipv6Addr>().unwrap(),
            64,
            "fd00:1:2:4::1".parse::<Ipv6Addr>().unwrap()
        ));
        let x = IfAddr::v4(a, 24);
        assert_eq!(x.broadcast(), Some(Ipv4Addr::new(10, 1, 2, 255)));
        assert!(!x.contains(b));
        assert_eq!(IfAddr::v4(a, 31).broadcast(), None);
    }
}
