//! virtif: attaches a shmlab node interface to a host tap device, the way NetBSD's virt(4)
//! attaches a rump kernel to the host. Linux only.
//!
//! A tap is an Ethernet interface whose "wire" is a file descriptor: every frame the kernel
//! transmits on it we read, and every frame we write the kernel receives. Put a tap in a network
//! namespace, give it an address there, and the real Linux stack becomes a peer of our nodes.
//! This crate knows nothing about IP; it moves whole Ethernet frames (no FCS).
//!
//! How the parts fit, in the order a tap comes to life:
//! - [`TapConfig`] names the tap, optionally a named network namespace (`/run/netns/NAME`), an
//!   MTU and the up state.
//! - `netns`: opening and configuring a tap in another namespace runs on a short-lived thread
//!   that has `setns`ed into it; the caller's threads never move.
//! - [`Tap::open`] checks the name and `/dev/net/tun`, creates or attaches to the tap with tun-rs
//!   (`Layer::L2`, i.e. IFF_TAP | IFF_NO_PI), applies MTU and up state and reads the MAC.
//! - [`Tap`] is the receiving half: one rx thread calls [`Tap::recv`] with a timeout.
//!   [`TapSender`] (cloneable, `Send + Sync`) writes frames from any thread and changes link
//!   settings (MTU, up/down) - the split of shmif's `Port`/`PortSender`. Both count into one
//!   [`Stats`].
//! - [`Error`] and [`SendError`] say which interface, what failed and what to do (missing
//!   CAP_NET_ADMIN, `/dev/net/tun` or namespace, bad names, busy taps). Nothing here panics.
//! - Dropping the `Tap` and every `TapSender` closes the descriptor: a tap we created vanishes,
//!   a persistent one (`ip tuntap add`) stays, without carrier.
//!
//! The `virtif-probe` binary opens a tap and prints what it found; the privilege test runs it
//! as `nobody`. The `virtif-bridge` binary joins a tap to a shmif bus (frames copied both ways,
//! counted); labctl runs one per interface of a `kind = "linux"` node.

#![cfg(target_os = "linux")]
// tun-rs does the tap ioctls and rustix the setns/poll calls, so this crate needs no unsafe.
#![forbid(unsafe_code)]

mod error;
mod netns;
mod tap;

pub use error::{Error, SendError, MAX_MTU, MIN_MTU};
pub use netns::NETNS_RUN_DIR;
pub use tap::{format_mac, Stats, Tap, TapConfig, TapSender, MAX_NAME_LEN, MIN_FRAME, TUN_DEVICE};

#[cfg(test)]
mod tests {
    /// The rx thread owns a `Tap`; the stack thread and `ifconfig` hold `TapSender`s.
    #[test]
    fn halves_move_between_threads() {
        fn rx_half<T: Send>() {}
        fn tx_half<T: Send + Sync + Clone + 'static>() {}
        rx_half::<crate::Tap>();
        tx_half::<crate::TapSender>();
        tx_half::<crate::Stats>();
    }
}
