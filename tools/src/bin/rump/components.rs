//! The `-l` components of a rump server: which NetBSD libraries shmlab knows, what each one
//! turns on, what it needs, and how a client learns what its server was started with.
//!
//! A netstack node always has the whole stack, so what a component means is enforced by the
//! `rump.*` clients: `rump_server` records the loaded set in the node's environment
//! ([`ENV`]), a client reads it back from `/proc/PID/environ` of the process at the other end
//! of the control socket (`SO_PEERCRED`) and refuses what the server does not have, as
//! NetBSD's kernel would (no IPv4 without `rumpnet_netinet`, no shmif without
//! `rumpnet_shmif`). A node not started by `rump_server` (plain `netstack`, labctl) has no
//! such variable and everything is allowed.

use std::collections::BTreeSet;
use std::os::unix::net::UnixStream;

/// The environment variable, in the node process, naming its components (comma-separated).
pub const ENV: &str = "SHMLAB_RUMP_COMPONENTS";

/// What a component gives a node, as far as shmlab can tell the difference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feature {
    /// rumpnet: the networking base (sockets, mbufs).
    Net,
    /// rumpnet_net: interfaces, routing tables, routing sockets.
    NetNet,
    /// rumpnet_netinet: IPv4, ARP, ICMP.
    Inet,
    /// rumpnet_netinet6: IPv6, NDP, ICMPv6.
    Inet6,
    /// rumpnet_shmif: shmif interfaces.
    Shmif,
    /// rumpnet_virtif: virt interfaces (host taps).
    Virtif,
}

struct Component {
    name: &'static str,
    /// `None`: accepted and there is nothing to load (shmlab has no such layer to switch).
    feature: Option<Feature>,
    needs: &'static [&'static str],
}

const fn c(
    name: &'static str,
    feature: Option<Feature>,
    needs: &'static [&'static str],
) -> Component {
    Component {
        name,
        feature,
        needs,
    }
}

/// Every component `-l` accepts. The networking ones need what they need in NetBSD (a
/// component library there cannot be loaded before the ones whose symbols it uses).
const COMPONENTS: &[Component] = &[
    c("rumpnet", Some(Feature::Net), &[]),
    c("rumpnet_net", Some(Feature::NetNet), &["rumpnet"]),
    c("rumpnet_netinet", Some(Feature::Inet), &["rumpnet_net"]),
    c(
        "rumpnet_netinet6",
        Some(Feature::Inet6),
        &["rumpnet_net", "rumpnet_netinet"],
    ),
    c("rumpnet_shmif", Some(Feature::Shmif), &["rumpnet_net"]),
    c("rumpnet_virtif", Some(Feature::Virtif), &["rumpnet_net"]),
    // Accepted, nothing to do: the rump base, devices and file systems frameworks, local
    // sockets, bpf (captures are taken from the bus), and the crypto pieces NetBSD's IPsec
    // tests load (IPsec itself, rumpnet_netipsec, is not there and is refused).
    c("rump", None, &[]),
    c("rumpuser", None, &[]),
    c("rumpkern_sysproxy", None, &[]),
    c("rumpkern_time", None, &[]),
    c("rumpkern_z", None, &[]),
    c("rumpkern_crypto", None, &[]),
    c("rumpdev", None, &[]),
    c("rumpdev_bpf", None, &[]),
    c("rumpdev_opencrypto", None, &[]),
    c("rumpvfs", None, &[]),
    c("rumpvfs_nofifofs", None, &[]),
    c("rumpnet_local", None, &["rumpnet"]),
];

/// Names `rump_allserver` loads: every component shmlab has.
pub fn all() -> Loaded {
    Loaded {
        names: COMPONENTS.iter().map(|c| c.name.to_string()).collect(),
    }
}

/// The component a `-l` argument names, as NetBSD's `dlopen(arg)` then `dlopen("lib" arg
/// ".so")` finds it: `rumpnet_shmif`, `librumpnet_shmif.so`, `/usr/lib/librumpnet_shmif.so.0`.
pub fn normalise(arg: &str) -> String {
    let base = arg.rsplit('/').next().unwrap_or(arg);
    match (base.strip_prefix("lib"), base.find(".so")) {
        (Some(rest), Some(at)) if at > 3 => rest[..at - 3].to_string(),
        _ => base.to_string(),
    }
}

/// A set of loaded components.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    names: BTreeSet<String>,
}

/// Why a set of `-l` arguments cannot be loaded: NetBSD's two lines, our reason on the second.
#[derive(Debug, PartialEq, Eq)]
pub struct LoadError {
    pub arg: String,
    pub reason: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "failed to load -libraries, last error from \"{}\":\n  {}",
            self.arg, self.reason
        )
    }
}

impl Loaded {
    /// Loads `args` (in any order, as NetBSD retries until all are in) on top of `self`.
    pub fn load(mut self, args: &[String]) -> Result<Loaded, LoadError> {
        for arg in args {
            let name = normalise(arg);
            if !COMPONENTS.iter().any(|c| c.name == name) {
                let have: Vec<&str> = COMPONENTS.iter().map(|c| c.name).collect();
                return Err(LoadError {
                    arg: arg.clone(),
                    reason: format!(
                        "lib{name}.so: no such component in shmlab (it has {})",
                        have.join(", ")
                    ),
                });
            }
            self.names.insert(name);
        }
        for arg in args {
            let name = normalise(arg);
            let comp = COMPONENTS.iter().find(|c| c.name == name);
            for need in comp.map(|c| c.needs).unwrap_or_default() {
                if !self.names.contains(*need) {
                    return Err(LoadError {
                        arg: arg.clone(),
                        reason: format!("lib{name}.so needs lib{need}.so: add -l{need}"),
                    });
                }
            }
        }
        Ok(self)
    }

    pub fn has(&self, feature: Feature) -> bool {
        COMPONENTS
            .iter()
            .any(|c| c.feature == Some(feature) && self.names.contains(c.name))
    }

    /// The value of [`ENV`].
    pub fn to_env(&self) -> String {
        self.names.iter().cloned().collect::<Vec<_>>().join(",")
    }

    pub fn from_env(value: &str) -> Loaded {
        Loaded {
            names: value
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// What the node behind `stream` was started with; `None` when it was not started by
    /// `rump_server` (or its environment cannot be read: another user's or namespace's node),
    /// which allows everything.
    pub fn of_peer(stream: &UnixStream) -> Option<Loaded> {
        let cred = rustix::net::sockopt::socket_peercred(stream).ok()?;
        let environ = std::fs::read(format!("/proc/{}/environ", cred.pid.as_raw_nonzero())).ok()?;
        let prefix = format!("{ENV}=");
        environ
            .split(|&b| b == 0)
            .find_map(|var| var.strip_prefix(prefix.as_bytes()))
            .map(|v| Loaded::from_env(&String::from_utf8_lossy(v)))
    }
}

/// The component a feature comes from, for messages.
pub fn component_of(feature: Feature) -> &'static str {
    COMPONENTS
        .iter()
        .find(|c| c.feature == Some(feature))
        .map(|c| c.name)
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str]) -> Result<Loaded, LoadError> {
        Loaded::default().load(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn names_are_found_as_dlopen_would() {
        assert_eq!(normalise("rumpnet_shmif"), "rumpnet_shmif");
        assert_eq!(normalise("librumpnet_shmif.so"), "rumpnet_shmif");
        assert_eq!(normalise("/usr/lib/librumpnet_shmif.so.0"), "rumpnet_shmif");
        assert_eq!(normalise("rumpnet_shmif.so"), "rumpnet_shmif.so");
    }

    #[test]
    fn dependencies_in_any_order() {
        let l = load(&["rumpnet_shmif", "rumpnet_netinet", "rumpnet_net", "rumpnet"]).unwrap();
        assert!(l.has(Feature::Inet) && l.has(Feature::Shmif) && !l.has(Feature::Inet6));
        let e = load(&["rumpnet", "rumpnet_netinet"]).unwrap_err();
        assert_eq!(e.arg, "rumpnet_netinet");
        assert!(e.reason.contains("-lrumpnet_net"), "{e}");
        let e = load(&["rumpnet", "rumpnet_net", "rumpnet_npf"]).unwrap_err();
        assert!(e.to_string().starts_with(
            "failed to load -libraries, last error from \"rumpnet_npf\":\n  librumpnet_npf.so: no such component"
        ));
    }

    #[test]
    fn env_round_trip_and_all() {
        let l = load(&["rumpnet", "rumpnet_net", "rumpdev"]).unwrap();
        assert_eq!(l.to_env(), "rumpdev,rumpnet,rumpnet_net");
        assert_eq!(Loaded::from_env(&l.to_env()), l);
        let a = all();
        assert!([
            Feature::Net,
            Feature::NetNet,
            Feature::Inet,
            Feature::Inet6,
            Feature::Shmif,
            Feature::Virtif
        ]
        .iter()
        .all(|f| a.has(*f)));
    }
}
