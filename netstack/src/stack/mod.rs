//! The stack: all protocol state of a node, owned by one thread (no locks).
//!
//! Input enters through [`Stack::handle_frame`] (frames from links) and leaves through
//! [`Stack::poll`] (timers: neighbour solicitations, reassembly timeouts, running commands).
//! Every entry point takes `now`, so tests can drive time. Layers, in data-flow order:
//! `l2` (Ethernet, ARP) -> `ip` (IPv4 input and forwarding, UDP stub) -> `output` (the one
//! output pipeline: route, IPsec hook, MTU/fragmentation, neighbour resolution, link), with
//! `icmp` (errors for both families) beside them. The tables they consult: [`route`] (one
//! longest-prefix table type per family), [`neighbor`] (one cache for ARP and NDP) and
//! [`reasm`]; [`addr`] has the family-neutral address types.

pub mod addr;
mod icmp;
mod ip;
pub mod ip6;
mod l2;
mod nd;
pub mod neighbor;
mod output;
pub mod reasm;
pub mod route;

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Instant;

use crate::event::EventSender;
use crate::link::{Link, LinkId};
use crate::stats::Stats;
use crate::wire::PacketBuf;

pub use addr::{AddrFlags, IfAddr};
pub use icmp::{IcmpEvent, IcmpMsg};
pub use output::{OutIp, SendError};

/// Per-interface packet counters (`ifconfig -v`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct IfCounters {
    pub ipackets: u64,
    pub ibytes: u64,
    pub ierrors: u64,
    pub opackets: u64,
    pub obytes: u64,
    pub oerrors: u64,
}

pub const DEFAULT_MTU: usize = 1500;
/// The bus carries at most 1514-byte frames.
pub const MAX_MTU: usize = 1500;
/// RFC 791: every host must accept 68-byte datagrams unfragmented.
pub const MIN_MTU: usize = 68;

pub struct Iface {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub mtu: usize,
    pub addrs: Vec<IfAddr>,
    pub link: Option<Link>,
    pub counters: IfCounters,
}

impl Iface {
    pub fn new(index: u32, name: &str) -> Iface {
        Iface {
            index,
            name: name.to_string(),
            up: false,
            mtu: DEFAULT_MTU,
            addrs: Vec::new(),
            link: None,
            counters: IfCounters::default(),
        }
    }

    /// Up with a link: can carry packets.
    pub fn running(&self) -> bool {
        self.up && self.link.is_some()
    }

    /// The IPv4 address to use as source towards `peer`: one on the same subnet, else the
    /// first usable one.
    pub fn source_for(&self, peer: Ipv4Addr) -> Option<Ipv4Addr> {
        let usable = || self.addrs.iter().filter(|a| a.usable());
        usable()
            .find(|a| a.contains(peer))
            .or_else(|| usable().find(|a| a.addr.is_ipv4()))
            .and_then(|a| a.get())
    }

    /// Whether the interface listens to IPv6 group `g`: all-nodes, all-routers on a router,
    /// and the solicited-node group of each of its addresses (tentative ones included, for
    /// DAD).
    pub fn in_group(&self, g: Ipv6Addr, router: bool) -> bool {
        g == crate::wire::ipv6::ALL_NODES
            || (router && g == crate::wire::ipv6::ALL_ROUTERS)
            || self.addrs.iter().any(|a| {
                a.get::<Ipv6Addr>()
                    .is_some_and(|v6| crate::wire::ipv6::solicited_node(v6) == g)
            })
    }

    /// The Ethernet multicast filter: IPv6 group frames (33:33:...) pass only for groups the
    /// interface joined; other group addresses (broadcast, IPv4 multicast) pass.
    pub fn wants_group_mac(&self, mac: crate::wire::Mac, router: bool) -> bool {
        let m = mac.0;
        if m[..2] != [0x33, 0x33] {
            return true;
        }
        let low = [m[2], m[3], m[4], m[5]];
        let groups = [crate::wire::ipv6::ALL_NODES, crate::wire::ipv6::ALL_ROUTERS];
        groups
            .iter()
            .filter(|g| router || **g == crate::wire::ipv6::ALL_NODES)
            .copied()
            .chain(
                self.addrs
                    .iter()
                    .filter_map(|a| Some(crate::wire::ipv6::solicited_node(a.get::<Ipv6Addr>()?))),
            )
            .any(|g| g.octets()[12..] == low)
    }

    /// The interface's IPv4 addresses with their prefixes.
    pub fn addrs_v4(&self) -> impl Iterator<Item = (Ipv4Addr, u8)> + '_ {
        self.addrs
            .iter()
            .filter_map(|a| Some((a.get::<Ipv4Addr>()?, a.prefix)))
    }
}

/// Tunables (`sysctl`, NetBSD names in comments).
#[derive(Clone, Debug)]
pub struct Sysctl {
    /// net.inet.ip.forwarding
    pub forwarding: bool,
    /// net.inet.ip.ttl
    pub ttl: u8,
    /// ICMP errors per second (net.inet.icmp.errppslimit); 0 means unlimited.
    pub icmp_errppslimit: u32,
    /// net.inet6.ip6.forwarding
    pub forwarding6: bool,
    /// net.inet6.ip6.hlim
    pub hlim: u8,
    /// Neighbour solicitations DAD sends before an address is used (net.inet6.ip6.dad_count);
    /// 0 disables DAD.
    pub dad_count: u8,
    /// net.inet6.icmp6.errppslimit
    pub icmp6_errppslimit: u32,
}

impl Default for Sysctl {
    fn default() -> Self {
        Sysctl {
            forwarding: false,
            ttl: 64,
            icmp_errppslimit: 100,
            forwarding6: false,
            hlim: 64,
            dad_count: 1,
            icmp6_errppslimit: 100,
        }
    }
}

pub struct Stack {
    pub ifaces: Vec<Iface>,
    next_ifindex: u32,
    next_link: LinkId,
    pub routes: route::RouteTable<Ipv4Addr>,
    pub routes6: route::RouteTable<Ipv6Addr>,
    pub arp: neighbor::NeighborCache<Ipv4Addr>,
    pub nd: neighbor::NeighborCache<Ipv6Addr>,
    pub reasm: reasm::Reassembly,
    pub sysctl: Sysctl,
    pub stats: Stats,
    icmp_bucket: icmp::TokenBucket,
    icmp6_bucket: icmp::TokenBucket,
    pub reasm6: reasm::Reassembly6,
    /// Path MTUs learnt from ICMPv6 Packet Too Big.
    pub pmtu: ip6::PathMtu,
    /// Addresses under duplicate address detection.
    pub dad: Vec<nd::Dad>,
    next_ip6_id: u32,
    apps: Vec<Box<dyn App>>,
    /// True while `apps` is taken out to run them (ICMP offered then goes nowhere).
    apps_busy: bool,
    next_ip_id: u16,
    next_ident: u16,
    /// Datagrams sent to one of our own addresses, delivered on the next poll.
    loopback: VecDeque<PacketBuf>,
    /// Given to tap rx threads and NetBSD-bus watchers of links this stack attaches.
    events: Option<EventSender>,
    pub halt_requested: bool,
}

/// Something running on top of the stack, driven by its loop: a long-running command (ping,
/// traceroute), later a transport. The stack knows apps only through this, so it depends on
/// neither the commands nor their output.
pub trait App {
    /// Runs due work; true once finished (the app has reported its own result).
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool;
    /// When `poll` next has work, if ever.
    fn deadline(&self) -> Option<Instant>;
    /// Offered every ICMP reply or error the stack receives; true if it belonged to this app.
    fn on_icmp(&mut self, now: Instant, ev: &IcmpEvent<'_>) -> bool;
    /// The node is shutting down.
    fn cancel(&mut self);
}

/// What an interface attaches to, told by its name as on NetBSD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfKind {
    /// `shmifN`: a shmif bus file.
    Shmif,
    /// `virtN`: a host tap device (virt(4)); `create` alone attaches `tapN`.
    Virt,
}

impl IfKind {
    /// The kind of `shmifN` / `virtN` names (N up to 4 digits), None for anything else.
    pub fn of(name: &str) -> Option<IfKind> {
        let unit = |n: &str| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit());
        if name.strip_prefix("shmif").is_some_and(unit) {
            Some(IfKind::Shmif)
        } else if name.strip_prefix("virt").is_some_and(unit) {
            Some(IfKind::Virt)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IfError {
    #[error("{0}: no such interface")]
    NoSuchInterface(String),
    #[error("{0}: interface already exists")]
    Exists(String),
    #[error("{0}: unsupported interface name (expected shmifN for a bus or virtN for a host tap, e.g. shmif0, virt0)")]
    BadName(String),
    #[error("{name}: linkstr of a {kind} interface: {why}")]
    WrongLink {
        name: String,
        kind: &'static str,
        why: &'static str,
    },
    /// A stack built without an event channel (unit tests) cannot receive on real links.
    #[error("{0}: linkstr: this stack has no event channel for links")]
    NoEventChannel(String),
    #[error("{name}: linkstr: {source}")]
    AttachTap {
        name: String,
        #[source]
        source: virtif::Error,
    },
    #[error("{name}: linkstr: {source}")]
    Attach {
        name: String,
        path: String,
        #[source]
        source: shmif::BusError,
    },
}

impl Stack {
    /// A stack whose links report to `events` (None in unit tests that attach custom links).
    pub fn new(events: Option<EventSender>) -> Stack {
        let seed = std::process::id() as u16;
        Stack {
            ifaces: Vec::new(),
            next_ifindex: 1,
            next_link: 1,
            routes: route::RouteTable::default(),
            routes6: route::RouteTable::default(),
            arp: neighbor::NeighborCache::default(),
            nd: neighbor::NeighborCache::default(),
            reasm: reasm::Reassembly::default(),
            sysctl: Sysctl::default(),
            stats: Stats::default(),
            icmp_bucket: icmp::TokenBucket::full(Sysctl::default().icmp_errppslimit),
            icmp6_bucket: icmp::TokenBucket::full(Sysctl::default().icmp6_errppslimit),
            reasm6: reasm::Reassembly6::default(),
            pmtu: ip6::PathMtu::default(),
            dad: Vec::new(),
            next_ip6_id: (seed as u32).wrapping_mul(2_654_435_761),
            apps: Vec::new(),
            apps_busy: false,
            next_ip_id: seed.wrapping_mul(7919),
            next_ident: seed,
            loopback: VecDeque::new(),
            events,
            halt_requested: false,
        }
    }

    pub fn iface(&self, name: &str) -> Option<&Iface> {
        self.ifaces.iter().find(|i| i.name == name)
    }

    pub fn iface_mut(&mut self, name: &str) -> Result<&mut Iface, IfError> {
        self.ifaces
            .iter_mut()
            .find(|i| i.name == name)
            .ok_or_else(|| IfError::NoSuchInterface(name.to_string()))
    }

    pub fn iface_by_index(&self, index: u32) -> Option<&Iface> {
        self.ifaces.iter().find(|i| i.index == index)
    }

    fn iface_by_index_mut(&mut self, index: u32) -> Option<&mut Iface> {
        self.ifaces.iter_mut().find(|i| i.index == index)
    }

    pub fn create_iface(&mut self, name: &str) -> Result<u32, IfError> {
        if IfKind::of(name).is_none() {
            return Err(IfError::BadName(name.to_string()));
        }
        if self.iface(name).is_some() {
            return Err(IfError::Exists(name.to_string()));
        }
        let index = self.next_ifindex;
        self.next_ifindex += 1;
        self.ifaces.push(Iface::new(index, name));
        Ok(index)
    }

    pub fn destroy_iface(&mut self, name: &str) -> Result<(), IfError> {
        self.collect_link_drops();
        let pos = self
            .ifaces
            .iter()
            .position(|i| i.name == name)
            .ok_or_else(|| IfError::NoSuchInterface(name.to_string()))?;
        let iface = self.ifaces.remove(pos);
        self.arp.flush_interface(iface.index);
        self.nd.flush_interface(iface.index);
        self.routes_changed();
        Ok(())
    }

    /// Attaches `name` to the bus file at `path`, creating it as `config` says if it is missing
    /// (replacing any previous link).
    pub fn attach_bus(
        &mut self,
        name: &str,
        path: &Path,
        config: &shmif::BusConfig,
    ) -> Result<(), IfError> {
        if IfKind::of(name) != Some(IfKind::Shmif) {
            return Err(IfError::WrongLink {
                name: name.to_string(),
                kind: "virt",
                why: "a virt interface attaches to a host tap; give a tap name, not a bus file",
            });
        }
        self.collect_link_drops();
        self.iface_mut(name)?;
        let link =
            Link::attach_shmif(self.next_link, path, config).map_err(|source| IfError::Attach {
                name: name.to_string(),
                path: path.display().to_string(),
                source,
            })?;
        self.install_link(name, link)
    }

    /// Attaches virt interface `name` to host tap `tap` in the node's network namespace,
    /// creating the tap if it does not exist (replacing any previous link).
    pub fn attach_tap(&mut self, name: &str, tap: &str) -> Result<(), IfError> {
        if IfKind::of(name) != Some(IfKind::Virt) {
            return Err(IfError::WrongLink {
                name: name.to_string(),
                kind: "shmif",
                why: "a shmif interface attaches to a bus file; use a virtN interface for taps",
            });
        }
        self.collect_link_drops();
        self.iface_mut(name)?;
        let events = self
            .events
            .clone()
            .ok_or_else(|| IfError::NoEventChannel(name.into()))?;
        // Close the old tap first: re-attaching to the same name would find it busy.
        if let Some(old) = self.iface_mut(name)?.link.take() {
            old.close();
        }
        let link =
            Link::attach_tap(self.next_link, tap, events).map_err(|source| IfError::AttachTap {
                name: name.to_string(),
                source,
            })?;
        self.install_link(name, link)
    }

    /// Puts a freshly attached link on `name` (dropping any previous one), forgets the ARP
    /// entries learnt through the old link and announces the interface's addresses.
    fn install_link(&mut self, name: &str, link: Link) -> Result<(), IfError> {
        let iface = self.iface_mut(name)?;
        iface.link = Some(link);
        let index = iface.index;
        self.next_link += 1;
        self.arp.flush_interface(index);
        self.nd.flush_interface(index);
        self.announce(index);
        self.ensure_link_local(index);
        Ok(())
    }

    /// Attaches a custom link (unit tests). Returns its id.
    pub fn attach_custom(
        &mut self,
        name: &str,
        mac: crate::wire::Mac,
        tx: Box<dyn crate::link::LinkTx>,
    ) -> Result<LinkId, IfError> {
        let id = self.next_link;
        self.next_link += 1;
        let iface = self.iface_mut(name)?;
        iface.link = Some(Link::custom(id, mac, "custom", tx));
        Ok(id)
    }

    pub fn detach(&mut self, name: &str) -> Result<(), IfError> {
        self.collect_link_drops();
        let iface = self.iface_mut(name)?;
        iface.link = None;
        let index = iface.index;
        self.arp.flush_interface(index);
        self.nd.flush_interface(index);
        Ok(())
    }

    pub fn set_up(&mut self, name: &str, up: bool) -> Result<(), IfError> {
        let iface = self.iface_mut(name)?;
        let was = iface.up;
        iface.up = up;
        let index = iface.index;
        if up != was {
            self.routes_changed();
        }
        if up && !was {
            self.announce(index);
            self.ensure_link_local(index);
        }
        if !up {
            self.arp.flush_interface(index);
            self.nd.flush_interface(index);
        }
        Ok(())
    }

    /// Adds an address, or replaces the first one of its family if `alias` is false.
    pub fn add_addr(&mut self, name: &str, a: IfAddr, alias: bool) -> Result<(), IfError> {
        let iface = self.iface_mut(name)?;
        let v4 = a.addr.is_ipv4();
        if let Some(existing) = iface.addrs.iter_mut().find(|x| x.addr == a.addr) {
            existing.prefix = a.prefix;
        } else if let Some(first) = iface
            .addrs
            .iter_mut()
            .find(|x| x.addr.is_ipv4() == v4 && !x.flags.autoconf)
            .filter(|_| !alias)
        {
            *first = a;
        } else {
            iface.addrs.push(a);
        }
        let index = iface.index;
        match a.addr {
            std::net::IpAddr::V4(v4) => {
                self.routes_changed();
                self.gratuitous_arp(index, v4);
            }
            std::net::IpAddr::V6(v6) => {
                self.start_dad(index, v6);
                self.routes_changed();
            }
        }
        Ok(())
    }

    pub fn delete_addr(&mut self, name: &str, addr: std::net::IpAddr) -> Result<bool, IfError> {
        let iface = self.iface_mut(name)?;
        let before = iface.addrs.len();
        iface.addrs.retain(|a| a.addr != addr);
        let removed = iface.addrs.len() != before;
        let index = iface.index;
        self.dad
            .retain(|d| !(d.ifindex == index && std::net::IpAddr::V6(d.addr) == addr));
        self.routes_changed();
        Ok(removed)
    }

    /// Materialises the routing tables again after addresses or interfaces changed.
    fn routes_changed(&mut self) {
        self.routes.rebuild(&self.ifaces);
        self.routes6.rebuild(&self.ifaces);
    }

    /// Whether any address is still tentative (DAD running), for `ifconfig -w`.
    pub fn dad_in_progress(&self) -> bool {
        self.ifaces
            .iter()
            .any(|i| i.addrs.iter().any(|a| a.flags.tentative))
    }

    /// Gratuitous ARP for every address of an interface that just came up or got a link.
    fn announce(&mut self, index: u32) {
        let addrs: Vec<Ipv4Addr> = self
            .iface_by_index(index)
            .map(|i| i.addrs_v4().map(|(a, _)| a).collect())
            .unwrap_or_default();
        for a in addrs {
            self.gratuitous_arp(index, a);
        }
    }

    /// Whether `a` is one of this node's usable addresses.
    pub fn is_local_addr(&self, a: std::net::IpAddr) -> bool {
        self.ifaces
            .iter()
            .any(|i| i.addrs.iter().any(|x| x.addr == a && x.usable()))
    }

    /// A fresh ICMP identifier / UDP port base for an application.
    pub fn new_ident(&mut self) -> u16 {
        self.next_ident = self.next_ident.wrapping_add(1);
        self.next_ident
    }

    /// Runs `app` on top of the stack until it says it is done.
    pub fn start_app(&mut self, app: Box<dyn App>) {
        self.apps.push(app);
    }

    pub fn apps_running(&self) -> usize {
        self.apps.len()
    }

    /// The receiving ports of every bus link, for the node loop to drain and sleep on.
    pub fn bus_ports(&mut self) -> impl Iterator<Item = (LinkId, &mut shmif::Port)> {
        self.ifaces.iter_mut().filter_map(|i| {
            let link = i.link.as_mut()?;
            let id = link.id;
            link.port_mut().map(|p| (id, p))
        })
    }

    /// Sends every link's queued frames (one batch per bus). Frames a link could not send
    /// are counted as `LinkSendFailed`.
    pub fn flush_links(&mut self) {
        for i in &mut self.ifaces {
            let Some(link) = i.link.as_ref() else {
                continue;
            };
            let queued = link.queued() as u64;
            if let Err(e) = link.flush() {
                i.counters.oerrors += queued;
                tracing::warn!("{}: send failed: {e}", i.name);
                self.stats.drops[crate::stats::DropReason::LinkSendFailed as usize] += queued;
            }
        }
    }

    /// Starts a doorbell-ringing watcher on every bus link whose bus is in NetBSD mode (once).
    pub fn watch_netbsd_buses(&mut self) {
        let Some(events) = self.events.as_ref() else {
            return;
        };
        for i in &mut self.ifaces {
            if let Some(link) = i.link.as_mut() {
                if link.netbsd_mode() == Some(true) {
                    link.watch_netbsd_bus(events);
                }
            }
        }
    }

    /// Handles one frame from link `link`. Frames from links since detached are ignored.
    pub fn handle_frame(&mut self, now: Instant, link: LinkId, frame: &[u8]) {
        let Some(index) = self
            .ifaces
            .iter()
            .find(|i| i.link.as_ref().is_some_and(|l| l.id == link))
            .map(|i| i.index)
        else {
            return;
        };
        self.ether_input(now, index, frame);
        self.drain_loopback(now);
    }

    /// Counts the frames rx threads dropped on a full queue since the last call as
    /// `RxQueueFull`. Called before counters are shown and before a link goes away.
    pub fn collect_link_drops(&mut self) {
        for i in &mut self.ifaces {
            if let Some(l) = i.link.as_mut() {
                let total = l.rx_queue_drops();
                let new = total.saturating_sub(l.rx_queue_drops_counted);
                l.rx_queue_drops_counted = total;
                self.stats.drops[crate::stats::DropReason::RxQueueFull as usize] += new;
            }
        }
    }

    fn drain_loopback(&mut self, now: Instant) {
        // Bounded: an ICMP error about a looped packet may queue one more, never a cycle.
        for _ in 0..64 {
            let Some(d) = self.loopback.pop_front() else {
                return;
            };
            match d.data().first().map(|b| b >> 4) {
                Some(6) => self.ip6_input(now, None, false, d.data()),
                _ => self.ip_input(now, None, false, d.data()),
            }
        }
    }

    /// Runs timers and running commands. Call after every event and at `next_deadline`.
    pub fn poll(&mut self, now: Instant) {
        self.drain_loopback(now);
        for action in self.arp.poll(now) {
            match action {
                neighbor::TimerAction::Solicit {
                    key: (index, ip),
                    unicast,
                } => self.send_arp_request(index, ip, unicast),
                neighbor::TimerAction::Failed(_, queue) => {
                    for d in queue {
                        self.stats.drop(crate::stats::DropReason::ArpResolveFailed);
                        let kind = icmp::ErrorKind::HostUnreachable;
                        self.icmp4_error_about(now, d.data(), None, kind);
                    }
                }
            }
        }
        for exp in self.reasm.poll(now, &mut self.stats) {
            let kind = icmp::ErrorKind::ReassemblyTimeout;
            self.icmp4_error_about(now, &exp.first, None, kind);
        }
        for action in self.nd.poll(now) {
            match action {
                neighbor::TimerAction::Solicit {
                    key: (index, ip),
                    unicast,
                } => self.send_ns(index, ip, unicast),
                neighbor::TimerAction::Failed(_, queue) => {
                    for p in queue {
                        self.stats.drop(crate::stats::DropReason::NdResolveFailed);
                        let kind = icmp::ErrorKind6::AddressUnreachable;
                        self.icmp6_error_about(now, p.data(), kind);
                    }
                }
            }
        }
        for exp in self.reasm6.poll(now, &mut self.stats) {
            let kind = icmp::ErrorKind6::ReassemblyTimeout;
            self.icmp6_error_about(now, &exp.first, kind);
        }
        self.poll_dad(now);
        if !self.apps.is_empty() {
            let mut apps = std::mem::take(&mut self.apps);
            self.apps_busy = true;
            apps.retain_mut(|app| !app.poll(self, now));
            self.apps_busy = false;
            apps.append(&mut self.apps);
            self.apps = apps;
        }
        self.drain_loopback(now);
    }

    /// When `poll` next has work, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut d = [
            self.arp.next_deadline(),
            self.nd.next_deadline(),
            self.reasm.next_deadline(),
            self.reasm6.next_deadline(),
            self.next_dad_deadline(),
            self.apps.iter().filter_map(|a| a.deadline()).min(),
        ]
        .into_iter()
        .flatten()
        .min();
        if !self.loopback.is_empty() {
            d = Some(Instant::now());
        }
        d
    }

    /// Sends IPv4 datagrams that waited for `mac` (after `arp -s`).
    pub fn send_waiting(&mut self, index: u32, mac: crate::wire::Mac, waiting: Vec<PacketBuf>) {
        for d in waiting {
            self.send_frame(index, mac, crate::wire::ether::ETHERTYPE_IPV4, d);
        }
    }

    /// Cancels everything running on the stack (node shutting down).
    pub fn cancel_apps(&mut self) {
        for mut app in self.apps.drain(..) {
            app.cancel();
        }
    }
}

#[cfg(test)]
mod tests;
