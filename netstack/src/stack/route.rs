//! Routing tables, one per family, with the same type: static routes as configured, and the
//! table packets are looked up in, where connected routes (one per usable interface address)
//! and static routes (with the interface their gateway is reached through) are materialised
//! whenever addresses, interfaces or statics change. A lookup is one scan of a vector kept in
//! longest-prefix-first order and allocates nothing; display strings are made by the commands.

use serde::Serialize;

use super::addr::{contains, network, Family};
use super::Iface;

/// A static route (`route add`). `ifindex` is given for gateways that only mean something on
/// one interface (IPv6 link-local `fe80::1%shmif0`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StaticRoute<A> {
    pub dest: A,
    pub prefix: u8,
    pub gateway: A,
    pub ifindex: Option<u32>,
}

/// A route in the lookup table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Route<A> {
    pub dest: A,
    pub prefix: u8,
    /// None for connected routes.
    pub gateway: Option<A>,
    pub ifindex: u32,
}

impl<A: Family> Route<A> {
    pub fn is_host(&self) -> bool {
        self.prefix == A::BITS
    }
}

/// Where a packet for some destination goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop<A> {
    pub ifindex: u32,
    /// The neighbour to hand the packet to: the gateway, or the destination itself on a
    /// connected network.
    pub addr: A,
    /// The route that matched (for `route get`).
    pub route: Route<A>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("File exists")]
    Exists,
    #[error("Network is unreachable (gateway {0} is not on a connected network)")]
    GatewayUnreachable(String),
    #[error("not in table")]
    NotInTable,
}

#[derive(Debug)]
pub struct RouteTable<A> {
    statics: Vec<StaticRoute<A>>,
    /// Longest prefix first; on equal prefixes connected before static.
    table: Vec<Route<A>>,
}

impl<A> Default for RouteTable<A> {
    fn default() -> Self {
        RouteTable {
            statics: Vec::new(),
            table: Vec::new(),
        }
    }
}

/// The interface through which `gw` is reached: the longest connected prefix containing it.
fn on_link<A: Family>(connected: &[Route<A>], gw: A) -> Option<u32> {
    connected
        .iter()
        .filter(|r| contains(r.dest, r.prefix, gw))
        .max_by_key(|r| r.prefix)
        .map(|r| r.ifindex)
}

fn connected<A: Family>(ifaces: &[Iface]) -> Vec<Route<A>> {
    let mut v = Vec::new();
    for i in ifaces.iter().filter(|i| i.up) {
        for a in i.addrs.iter().filter(|a| a.usable()) {
            let Some(addr) = a.get::<A>() else { continue };
            let r = Route {
                dest: network(addr, a.prefix),
                prefix: a.prefix,
                gateway: None,
                ifindex: i.index,
            };
            if !v.contains(&r) {
                v.push(r);
            }
        }
    }
    v
}

impl<A: Family> RouteTable<A> {
    pub fn statics(&self) -> &[StaticRoute<A>] {
        &self.statics
    }

    /// Every usable route, longest prefix first.
    pub fn routes(&self) -> &[Route<A>] {
        &self.table
    }

    /// Recomputes the lookup table; call when addresses, interfaces or statics change.
    pub fn rebuild(&mut self, ifaces: &[Iface]) {
        let conn = connected::<A>(ifaces);
        let up = |ix: u32| ifaces.iter().any(|i| i.index == ix && i.up);
        let mut table = conn.clone();
        for s in &self.statics {
            let via = match s.ifindex {
                Some(ix) => up(ix).then_some(ix),
                None => on_link(&conn, s.gateway),
            };
            if let Some(ifindex) = via {
                table.push(Route {
                    dest: s.dest,
                    prefix: s.prefix,
                    gateway: Some(s.gateway),
                    ifindex,
                });
            }
        }
        // Stable: connected routes stay ahead of statics with the same prefix.
        table.sort_by_key(|r| std::cmp::Reverse(r.prefix));
        self.table = table;
    }

    pub fn add(&mut self, r: StaticRoute<A>, ifaces: &[Iface]) -> Result<(), RouteError> {
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
        if r.ifindex.is_none() && on_link(&connected::<A>(ifaces), r.gateway).is_none() {
            return Err(RouteError::GatewayUnreachable(r.gateway.to_string()));
        }
        self.statics.push(r);
        self.rebuild(ifaces);
        Ok(())
    }

    /// Removes the static route to `dest/prefix` (and `gateway`, if given).
    pub fn delete(
        &mut self,
        dest: A,
        prefix: u8,
        gateway: Option<A>,
        ifaces: &[Iface],
    ) -> Result<StaticRoute<A>, RouteError> {
        let dest = network(dest, prefix);
        let pos = self
            .statics
            .iter()
            .position(|s| {
                s.dest == dest && s.prefix == prefix && gateway.is_none_or(|g| g == s.gateway)
            })
            .ok_or(RouteError::NotInTable)?;
        let r = self.statics.remove(pos);
        self.rebuild(ifaces);
        Ok(r)
    }

    /// Removes every static route, returning them.
    pub fn flush(&mut self, ifaces: &[Iface]) -> Vec<StaticRoute<A>> {
        let v = std::mem::take(&mut self.statics);
        self.rebuild(ifaces);
        v
    }

    /// Longest-prefix match; connected routes win ties.
    pub fn lookup(&self, dst: A) -> Option<NextHop<A>> {
        self.lookup_where(dst, |_| true)
    }

    /// Longest-prefix match among routes out of interface `ifindex` (scoped destinations such
    /// as IPv6 link-local addresses).
    pub fn lookup_on(&self, dst: A, ifindex: u32) -> Option<NextHop<A>> {
        self.lookup_where(dst, |r| r.ifindex == ifindex)
    }

    fn lookup_where(&self, dst: A, keep: impl Fn(&Route<A>) -> bool) -> Option<NextHop<A>> {
        let r = *self
            .table
            .iter()
            .find(|r| contains(r.dest, r.prefix, dst) && keep(r))?;
        Some(NextHop {
            ifindex: r.ifindex,
            addr: r.gateway.unwrap_or(dst),
            route: r,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::stack::IfAddr;

    fn ifaces() -> Vec<Iface> {
        let mut a = Iface::new(1, "shmif0");
        a.up = true;
        a.addrs.push(IfAddr::v4(Ipv4Addr::new(10, 0, 1, 2), 24));
        a.addrs.push(IfAddr::new("fd00:1::2".parse().unwrap(), 64));
        vec![a]
    }

    fn st<A: Family>(dest: A, prefix: u8, gateway: A) -> StaticRoute<A> {
        StaticRoute {
            dest,
            prefix,
            gateway,
            ifindex: None,
        }
    }

    #[test]
    fn longest_prefix_wins_and_connected_beats_equal_static() {
        let ifs = ifaces();
        let mut t = RouteTable::default();
        t.rebuild(&ifs);
        let gw = Ipv4Addr::new(10, 0, 1, 1);
        t.add(st(Ipv4Addr::UNSPECIFIED, 0, gw), &ifs).unwrap();
        t.add(st(Ipv4Addr::new(10, 0, 2, 0), 24, gw), &ifs).unwrap();
        let r = t.lookup(Ipv4Addr::new(10, 0, 2, 9)).unwrap();
        assert_eq!((r.addr, r.route.prefix), (gw, 24));
        let r = t.lookup(Ipv4Addr::new(8, 8, 8, 8)).unwrap();
        assert_eq!((r.addr, r.route.prefix), (gw, 0));
        let r = t.lookup(Ipv4Addr::new(10, 0, 1, 7)).unwrap();
        assert_eq!(r.addr, Ipv4Addr::new(10, 0, 1, 7));
        assert_eq!(
            t.add(st(Ipv4Addr::new(10, 0, 2, 0), 24, gw), &ifs),
            Err(RouteError::Exists)
        );
        t.delete(Ipv4Addr::UNSPECIFIED, 0, None, &ifs).unwrap();
        assert!(t.lookup(Ipv4Addr::new(8, 8, 8, 8)).is_none());
    }

    #[test]
    fn gateway_must_be_on_link_and_routes_follow_addresses() {
        let mut ifs = ifaces();
        let mut t = RouteTable::<Ipv6Addr>::default();
        t.rebuild(&ifs);
        let far: Ipv6Addr = "fd00:9::9".parse().unwrap();
        assert!(matches!(
            t.add(st(Ipv6Addr::UNSPECIFIED, 0, far), &ifs),
            Err(RouteError::GatewayUnreachable(_))
        ));
        let gw: Ipv6Addr = "fd00:1::1".parse().unwrap();
        t.add(st(Ipv6Addr::UNSPECIFIED, 0, gw), &ifs).unwrap();
        assert_eq!(t.lookup(far).unwrap().addr, gw);
        // The interface goes down: its connected route and the static through it go away.
        ifs[0].up = false;
        t.rebuild(&ifs);
        assert!(t.lookup(far).is_none());
        assert_eq!(t.statics().len(), 1);
    }
}
