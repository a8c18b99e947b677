//! The IPv4 routing table: connected routes derived from interface addresses, static routes
//! with a gateway, longest-prefix match.

use std::net::Ipv4Addr;

use serde::Serialize;

use super::Iface;

pub fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

pub fn network(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(addr) & mask(prefix))
}

pub fn contains(net: Ipv4Addr, prefix: u8, a: Ipv4Addr) -> bool {
    u32::from(a) & mask(prefix) == u32::from(net) & mask(prefix)
}

/// A static route (`route add`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StaticRoute {
    pub dest: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    pub dest: Ipv4Addr,
    pub prefix: u8,
    /// None for connected routes.
    pub gateway: Option<Ipv4Addr>,
    pub ifindex: u32,
    pub ifname: String,
    pub flags: String,
}

/// Where a packet for some destination goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub ifindex: u32,
    /// The gateway, or the destination itself on a connected network.
    pub addr: Ipv4Addr,
    /// The route that matched (display strings are made only by [`NextHop::entry`], for
    /// `route get`: this is on every packet's path).
    pub dest: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
}

impl NextHop {
    /// The matched route as `route get` shows it.
    pub fn entry(&self, ifaces: &[Iface]) -> RouteEntry {
        let ifname = ifaces
            .iter()
            .find(|i| i.index == self.ifindex)
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let host = self.prefix == 32;
        let flags = match (self.gateway.is_some(), host) {
            (true, true) => "UGHS",
            (true, false) => "UGS",
            (false, true) => "UHC",
            (false, false) => "UC",
        };
        RouteEntry {
            dest: self.dest,
            prefix: self.prefix,
            gateway: self.gateway,
            ifindex: self.ifindex,
            ifname,
            flags: flags.to_string(),
        }
    }
}

/// The connected network containing `addr` with the longest prefix: (network, prefix,
/// interface index). No allocation: this runs for every packet.
fn best_connected(ifaces: &[Iface], addr: Ipv4Addr) -> Option<(Ipv4Addr, u8, u32)> {
    ifaces
        .iter()
        .filter(|i| i.up)
        .flat_map(|i| {
            i.addrs
                .iter()
                .map(move |a| (network(a.addr, a.prefix), a.prefix, i.index))
        })
        .filter(|&(dest, prefix, _)| contains(dest, prefix, addr))
        .max_by_key(|&(_, prefix, _)| prefix)
}

#[derive(Debug, Default)]
pub struct RouteTable {
    pub statics: Vec<StaticRoute>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("File exists")]
    Exists,
    #[error("Network is unreachable (gateway {0} is not on a connected network)")]
    GatewayUnreachable(Ipv4Addr),
    #[error("not in table")]
    NotInTable,
}

fn connected(ifaces: &[Iface]) -> impl Iterator<Item = RouteEntry> + '_ {
    ifaces.iter().filter(|i| i.up).flat_map(|i| {
        i.addrs.iter().map(move |a| RouteEntry {
            dest: network(a.addr, a.prefix),
            prefix: a.prefix,
            gateway: None,
            ifindex: i.index,
            ifname: i.name.clone(),
            flags: if a.prefix == 32 { "UHC" } else { "UC" }.to_string(),
        })
    })
}

/// The interface a gateway is reached through: the longest connected prefix containing it.
fn on_link(ifaces: &[Iface], gw: Ipv4Addr) -> Option<RouteEntry> {
    connected(ifaces)
        .filter(|r| contains(r.dest, r.prefix, gw))
        .max_by_key(|r| r.prefix)
}

impl RouteTable {
    pub fn add(&mut self, r: StaticRoute, ifaces: &[Iface]) -> Result<(), RouteError> {
        let r = StaticRoute {
            dest: network(r.dest, r.prefix),
            ..r
        };
        if self
            .statics
            .iter()
            .any(|s| s.dest == r.dest && s.prefix == r.prefix)
        {
            return Err(RouteError::Exists);
        }
        if on_link(ifaces, r.gateway).is_none() {
            return Err(RouteError::GatewayUnreachable(r.gateway));
        }
        self.statics.push(r);
        Ok(())
    }

    /// Removes the static route to `dest/prefix` (and `gateway`, if given).
    pub fn delete(
        &mut self,
        dest: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    ) -> Result<StaticRoute, RouteError> {
        let dest = network(dest, prefix);
        let pos = self
            .statics
            .iter()
            .position(|s| {
                s.dest == dest && s.prefix == prefix && gateway.is_none_or(|g| g == s.gateway)
            })
            .ok_or(RouteError::NotInTable)?;
        Ok(self.statics.remove(pos))
    }

    /// Every usable route, static ones first then connected, for `netstat -rn`.
    pub fn entries(&self, ifaces: &[Iface]) -> Vec<RouteEntry> {
        let mut v: Vec<RouteEntry> = self
            .statics
            .iter()
            .map(|s| {
                let via = on_link(ifaces, s.gateway);
                RouteEntry {
                    dest: s.dest,
                    prefix: s.prefix,
                    gateway: Some(s.gateway),
                    ifindex: via.as_ref().map_or(0, |v| v.ifindex),
                    ifname: via.map_or_else(|| "-".to_string(), |v| v.ifname),
                    flags: if s.prefix == 32 { "UGHS" } else { "UGS" }.to_string(),
                }
            })
            .collect();
        v.extend(connected(ifaces));
        v.sort_by(|a, b| (u32::from(a.dest), a.prefix).cmp(&(u32::from(b.dest), b.prefix)));
        v
    }

    /// Longest-prefix match; connected routes win ties. Static routes whose gateway is no
    /// longer on a connected network are skipped.
    pub fn lookup(&self, dst: Ipv4Addr, ifaces: &[Iface]) -> Option<NextHop> {
        let best_conn = best_connected(ifaces, dst);
        let best_static = self
            .statics
            .iter()
            .filter(|s| contains(s.dest, s.prefix, dst))
            .filter_map(|s| best_connected(ifaces, s.gateway).map(|(_, _, via)| (s, via)))
            .max_by_key(|(s, _)| s.prefix);
        match (best_conn, best_static) {
            (Some((dest, prefix, ifindex)), Some((s, _))) if prefix >= s.prefix => Some(NextHop {
                ifindex,
                addr: dst,
                dest,
                prefix,
                gateway: None,
            }),
            (_, Some((s, via))) => Some(NextHop {
                ifindex: via,
                addr: s.gateway,
                dest: s.dest,
                prefix: s.prefix,
                gateway: Some(s.gateway),
            }),
            (Some((dest, prefix, ifindex)), None) => Some(NextHop {
                ifindex,
                addr: dst,
                dest,
                prefix,
                gateway: None,
            }),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::IfAddr;

    fn ifaces() -> Vec<Iface> {
        let mut a = Iface::new(1, "shmif0");
        a.up = true;
        a.addrs.push(IfAddr {
            addr: Ipv4Addr::new(10, 0, 1, 2),
            prefix: 24,
        });
        vec![a]
    }

    #[test]
    fn longest_prefix_wins_and_connected_beats_equal_static() {
        let ifs = ifaces();
        let mut t = RouteTable::default();
        let gw = Ipv4Addr::new(10, 0, 1, 1);
        t.add(
            StaticRoute {
                dest: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                gateway: gw,
            },
            &ifs,
        )
        .unwrap();
        t.add(
            StaticRoute {
                dest: Ipv4Addr::new(10, 0, 2, 0),
                prefix: 24,
                gateway: gw,
            },
            &ifs,
        )
        .unwrap();
        let r = t.lookup(Ipv4Addr::new(10, 0, 2, 9), &ifs).unwrap();
        assert_eq!((r.addr, r.prefix), (gw, 24));
        let r = t.lookup(Ipv4Addr::new(8, 8, 8, 8), &ifs).unwrap();
        assert_eq!((r.addr, r.prefix), (gw, 0));
        let r = t.lookup(Ipv4Addr::new(10, 0, 1, 7), &ifs).unwrap();
        assert_eq!(r.addr, Ipv4Addr::new(10, 0, 1, 7));
        assert_eq!(
            t.add(
                StaticRoute {
                    dest: Ipv4Addr::new(10, 0, 2, 0),
                    prefix: 24,
                    gateway: gw
                },
                &ifs
            ),
            Err(RouteError::Exists)
        );
        t.delete(Ipv4Addr::UNSPECIFIED, 0, None).unwrap();
        assert!(t.lookup(Ipv4Addr::new(8, 8, 8, 8), &ifs).is_none());
    }

    #[test]
    fn gateway_must_be_on_link() {
        let ifs = ifaces();
        let mut t = RouteTable::default();
        let gw = Ipv4Addr::new(10, 9, 9, 9);
        assert_eq!(
            t.add(
                StaticRoute {
                    dest: Ipv4Addr::UNSPECIFIED,
                    prefix: 0,
                    gateway: gw
                },
                &ifs
            ),
            Err(RouteError::GatewayUnreachable(gw))
        );
    }
}
