//! What can go wrong opening and driving a tap, each case with the interface name and a hint.

use std::io;
use std::path::PathBuf;

/// Opening or configuring a tap failed. Every message starts with the interface name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No CAP_NET_ADMIN: `/dev/net/tun` refused us, or the kernel refused TUNSETIFF.
    #[error(
        "{name}: opening {} needs CAP_NET_ADMIN; run as root or inside 'unshare -rn'{hint}",
        device.display()
    )]
    NeedsCapNetAdmin {
        name: String,
        device: PathBuf,
        /// Extra advice when the device node itself is not world-accessible (then a user
        /// namespace alone is not enough); empty otherwise.
        hint: String,
    },

    /// The tun/tap character device is missing.
    #[error(
        "{name}: {} does not exist; load the tun module ('modprobe tun'), or in a container \
         pass the device through (e.g. 'docker run --device /dev/net/tun')",
        device.display()
    )]
    NoTunDevice { name: String, device: PathBuf },

    /// The named network namespace does not exist.
    #[error(
        "{name}: network namespace \"{netns}\" does not exist ({} is missing); \
         create it with 'ip netns add {netns}'",
        path.display()
    )]
    NetnsNotFound {
        name: String,
        netns: String,
        path: PathBuf,
    },

    /// The named network namespace exists but we may not enter it.
    #[error(
        "{name}: entering network namespace \"{netns}\" ({}) needs CAP_SYS_ADMIN; run as root",
        path.display()
    )]
    NetnsDenied {
        name: String,
        netns: String,
        path: PathBuf,
    },

    /// Longer than the kernel's IFNAMSIZ - 1.
    #[error("{name}: interface name is {len} bytes, the kernel allows at most {max}")]
    NameTooLong {
        name: String,
        len: usize,
        max: usize,
    },

    /// Empty, or holding a character the kernel refuses in interface names.
    #[error("{name:?}: invalid interface name: {reason}")]
    InvalidName { name: String, reason: &'static str },

    /// An interface of that name exists and is not a tap (a tun, a veth, a bridge, ...).
    #[error("{name}: an interface of that name already exists{where_} and is not a tap device")]
    NotATap { name: String, where_: String },

    /// The tap exists and another descriptor (another process) is attached to it.
    #[error(
        "{name}: tap{where_} is already attached to another process; \
         stop that process or pick another name"
    )]
    Busy { name: String, where_: String },

    /// An MTU the kernel does not accept for a tap.
    #[error("{name}: MTU {mtu} is out of range (a tap accepts {MIN_MTU}..={MAX_MTU})")]
    BadMtu { name: String, mtu: u32 },

    /// Anything else, with what we were doing.
    #[error("{name}: {op}: {source}")]
    Io {
        name: String,
        op: String,
        #[source]
        source: io::Error,
    },
}

/// The kernel's limits for a tap's MTU: ETH_MIN_MTU, and 65535 minus the Ethernet header.
pub const MIN_MTU: u32 = 68;
pub const MAX_MTU: u32 = 65535 - 14;

/// A frame the tap did not take.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Shorter than an Ethernet header; never written.
    #[error("{name}: frame of {len} bytes is shorter than an Ethernet header (14 bytes)")]
    Runt { name: String, len: usize },
    /// The kernel refuses frames while the interface is down (EIO).
    #[error("{name}: the interface is down, so the kernel refuses frames; bring it up first")]
    Down { name: String },
    /// The kernel refused the write for another reason (EINVAL for an oversize frame, ...).
    #[error("{name}: writing a {len}-byte frame: {source}")]
    Io {
        name: String,
        len: usize,
        #[source]
        source: io::Error,
    },
}
