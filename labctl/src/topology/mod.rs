//! The topology model: what a lab file says, after parsing and validation.
//!
//! [`load`] reads a file, [`parse`] turns the spanned TOML tree into these types (reporting
//! unknown keys and type errors), and `validate` checks what only the whole lab can tell (unknown
//! buses, duplicate addresses, gateways, routes). Every value that a later check may complain
//! about keeps its [`Loc`], so each message names `file:line:column: field.path`.

mod diag;
mod parse;
mod validate;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Source, TopologyError};

/// Where a value sits in the file: its byte span and its field path (`nodes.r1.routes[0].via`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    pub span: Range<usize>,
    pub path: String,
}

/// A value with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A whole lab.
#[derive(Clone, Debug)]
pub struct Topology {
    /// The file it came from (as given), for messages and for `down FILE`.
    pub file: PathBuf,
    pub name: At<String>,
    /// Declared and implied buses, in order of first mention.
    pub buses: Vec<BusSpec>,
    /// Nodes in file order.
    pub nodes: Vec<Node>,
    pub checks: Vec<Check>,
}

#[derive(Clone, Debug)]
pub struct BusSpec {
    pub name: String,
    /// Size in bytes of the bus file (default: shmif's, 8 MiB; 1 MiB with `netbsd`).
    pub size: Option<u64>,
    /// Record the bus to `NAME.pcap` in the lab dir for the lab's whole life.
    pub capture: bool,
    /// `netbsd = true`: created for NetBSD rump peers, 1 MiB and in NetBSD mode from the start
    /// (`shmif::BusConfig::netbsd()`). Parsing refuses it with any other `size`.
    pub netbsd: bool,
    /// Declared with a `[buses.NAME]` table (otherwise implied by the interfaces on it).
    pub declared: bool,
    pub loc: Loc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// Our own stack, the `netstack` daemon.
    Netstack,
    /// The Linux kernel in a network namespace, each interface a tap bridged to its bus by a
    /// `virtif-bridge` process.
    Linux,
    /// A real NetBSD `rump_server` (parsed, not started yet).
    Rump,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Netstack => "netstack",
            NodeKind::Linux => "linux",
            NodeKind::Rump => "rump",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: At<String>,
    pub kind: At<NodeKind>,
    pub forwarding: bool,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    /// `sysctl -w KEY=VALUE` settings, in file order.
    pub sysctl: Vec<(String, String)>,
    pub ipsec: Option<At<Ipsec>>,
    /// Node commands run after configuration, each an argv.
    pub exec: Vec<At<Vec<String>>>,
}

#[derive(Clone, Debug)]
pub struct Interface {
    /// Unless given: `shmifN` (bus) or `virtN` (tap) on netstack nodes, counting interfaces of
    /// that link type; `ethN` on linux nodes, N the interface's index.
    pub name: At<String>,
    /// What the interface is attached to.
    pub link: Link,
    pub addrs: Vec<At<IfAddr>>,
    pub mtu: Option<u32>,
}

/// Where an interface's frames go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// `bus = "NAME"`: a bus of the lab.
    Bus(At<String>),
    /// `tap = "NAME"`: a host tap device (netstack nodes only), outside the lab.
    Tap(At<String>),
}

impl Link {
    /// What the link is, without its location: (is a tap, name).
    pub fn key(&self) -> (bool, &str) {
        match self {
            Link::Bus(b) => (false, &b.value),
            Link::Tap(t) => (true, &t.value),
        }
    }
}

impl Interface {
    /// The bus this interface sits on, if it sits on one.
    pub fn bus(&self) -> Option<&At<String>> {
        match &self.link {
            Link::Bus(b) => Some(b),
            Link::Tap(_) => None,
        }
    }

    /// The host tap this interface is attached to, if any.
    pub fn tap(&self) -> Option<&At<String>> {
        match &self.link {
            Link::Tap(t) => Some(t),
            Link::Bus(_) => None,
        }
    }
}

/// An interface address with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IfAddr {
    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Does `ip` fall inside this address's subnet?
    pub fn contains(&self, ip: IpAddr) -> bool {
        Prefix {
            addr: self.addr,
            len: self.prefix,
        }
        .contains(ip)
    }
}

impl std::fmt::Display for IfAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A network prefix (host bits may be set; they are ignored when matching).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = v4_mask(self.len);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = v6_mask(self.len);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// The prefix with host bits cleared, as `route add -net` wants it.
    pub fn network(&self) -> Prefix {
        let addr = match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(self.len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(self.len))),
        };
        Prefix {
            addr,
            len: self.len,
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn v4_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn v6_mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteDest {
    Default,
    Net(Prefix),
}

impl RouteDest {
    pub fn is_v4(&self, via: IpAddr) -> bool {
        match self {
            RouteDest::Default => via.is_ipv4(),
            RouteDest::Net(p) => p.addr.is_ipv4(),
        }
    }
}

impl std::fmt::Display for RouteDest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteDest::Default => f.write_str("default"),
            RouteDest::Net(p) => p.fmt(f),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Route {
    pub to: At<RouteDest>,
    pub via: At<IpAddr>,
    /// The interface of an IPv6 link-local gateway (`via = "fe80::1%shmif0"`).
    pub via_scope: Option<String>,
}

impl Route {
    /// The node command that installs this route (NetBSD `route(8)` syntax).
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec!["route".to_string(), "add".to_string()];
        if !self.via.value.is_ipv4() {
            argv.push("-inet6".to_string());
        }
        match self.to.value {
            RouteDest::Default => argv.push("default".to_string()),
            RouteDest::Net(p) => {
                let full = if p.addr.is_ipv4() { 32 } else { 128 };
                if p.len == full {
                    argv.push("-host".to_string());
                    argv.push(p.addr.to_string());
                } else {
                    argv.push("-net".to_string());
                    argv.push(p.network().to_string());
                }
            }
        }
        match &self.via_scope {
            Some(ifc) => argv.push(format!("{}%{ifc}", self.via.value)),
            None => argv.push(self.via.value.to_string()),
        }
        argv
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ipsec {
    /// setkey(8) text in a file (resolved against the topology's directory).
    File(PathBuf),
    /// setkey(8) text inline.
    Inline(String),
}

/// One `[[checks]]` entry: some traffic (ping, traceroute or a command) and optionally what must
/// or must not appear on a bus while it runs.
#[derive(Clone, Debug)]
pub struct Check {
    /// `name = "..."`, or a description made from the check.
    pub name: String,
    pub action: CheckAction,
    pub expect_on_bus: Option<BusExpect>,
    pub loc: Loc,
}

#[derive(Clone, Debug)]
pub enum CheckAction {
    Ping {
        from: At<String>,
        to: IpAddr,
        count: u32,
        /// Expect replies (true) or expect the ping to fail.
        expect_success: bool,
    },
    Traceroute {
        from: At<String>,
        to: IpAddr,
        /// The hop addresses in order, the destination last.
        hops: Vec<IpAddr>,
    },
    Exec {
        node: At<String>,
        argv: Vec<String>,
        status: i32,
        /// A regular expression the combined output must match.
        output: Option<String>,
    },
}

/// A protocol to look for on a bus (compared with the EtherType and the IPv4 protocol byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Arp,
    Ipv4,
    Ipv6,
    Icmp,
    /// ICMPv6 (any type, NDP included).
    Icmp6,
    /// NDP: ICMPv6 types 133 to 137 (RS, RA, NS, NA, redirect).
    Ndp,
    Tcp,
    Udp,
    Esp,
}

impl Proto {
    pub const ALL: [(&'static str, Proto); 9] = [
        ("arp", Proto::Arp),
        ("ipv4", Proto::Ipv4),
        ("ipv6", Proto::Ipv6),
        ("icmp", Proto::Icmp),
        ("icmp6", Proto::Icmp6),
        ("ndp", Proto::Ndp),
        ("tcp", Proto::Tcp),
        ("udp", Proto::Udp),
        ("esp", Proto::Esp),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(s, _)| *s)
            .unwrap_or("?")
    }
}

#[derive(Clone, Debug)]
pub struct BusExpect {
    pub bus: At<String>,
    pub proto: Proto,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    /// Expect at least one matching frame (true) or none at all.
    pub present: bool,
}

impl Topology {
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name.value == name)
    }

    pub fn bus(&self, name: &str) -> Option<&BusSpec> {
        self.buses.iter().find(|b| b.name == name)
    }

    /// Does `up` need the privileges of Linux nodes or host taps (see `lifecycle::privileges`)?
    pub fn needs_host_network(&self) -> bool {
        self.nodes.iter().any(|n| {
            n.kind.value == NodeKind::Linux || n.interfaces.iter().any(|i| i.tap().is_some())
        })
    }

    /// Features the model accepts but `up` cannot deliver yet, each as a located error.
    pub fn unsupported(&self, src: &Source) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for node in &self.nodes {
            if node.kind.value == NodeKind::Rump {
                out.push(src.diag(
                    &node.kind.loc,
                    format!(
                        "kind \"{}\" is not implemented yet; only \"netstack\" and \"linux\" nodes can be started",
                        node.kind.value.as_str()
                    ),
                ));
            }
            if let Some(ipsec) = &node.ipsec {
                out.push(src.diag(
                    &ipsec.loc,
                    "IPsec is not implemented yet: the node has no setkey; remove `ipsec` to start this lab".to_string(),
                ));
            }
        }
        out
    }
}

/// Reads and validates a topology file.
pub fn load(path: &Path) -> Result<(Topology, Source), TopologyError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let src = Source::new(path.display().to_string(), text);
    let base = path.parent().unwrap_or(Path::new("."));
    let topo = parse_source(&src, path, base)?;
    Ok((topo, src))
}

/// Parses and validates topology text; `file` names it in messages and `base` resolves
/// relative paths (`ipsec.file`).
pub fn parse_source(src: &Source, file: &Path, base: &Path) -> Result<Topology, TopologyError> {
    let mut diags = Vec::new();
    let topo = parse::parse(src, file, base, &mut diags);
    if let Some(topo) = &topo {
        validate::validate(topo, src, &mut diags);
    }
    match topo {
        Some(topo) if diags.is_empty() => Ok(topo),
        _ => {
            diags.sort_by_key(|d| (d.line, d.column));
            Err(TopologyError::Invalid(diags))
        }
    }
}

/// What is wrong with `name` as a Linux interface name, if anything: at most 15 bytes, no '/',
/// ':' or whitespace, not `.`, `..` or `lo`.
pub fn ifname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 15 {
        return Some(format!(
            "is {} bytes long; Linux interface names have at most 15",
            name.len()
        ));
    }
    if name == "." || name == ".." || name == "lo" {
        return Some(format!("\"{name}\" is reserved"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
    {
        return Some(format!(
            "contains {c:?}, which Linux interface names cannot"
        ));
    }
    None
}

/// Lab, node and bus names become file names: letters, digits, `.`, `_`, `-`; not starting with
/// `.` or `-`; at most 64 bytes.
pub fn safe_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 64 {
        return Err(format!("is {} bytes long; at most 64 allowed", name.len()));
    }
    if name.starts_with('.') || name.starts_with('-') {
        return Err("must not start with '.' or '-'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "contains {c:?}; use only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
