//! netstack: one shmlab node, a user-space network stack attached to shmif buses (our
//! `rump_server`).
//!
//! Data flows through the modules in this order:
//! - [`link`]: a bus link owns its [`shmif::Port`] (`shmifN`), read by the stack thread, and
//!   sends a step's frames in one batch; a host tap [`virtif::Tap`] (`virtN`) has an rx thread
//!   that queues frames on the node's event channel.
//! - [`event`]: the event channel's sending end and the doorbell that wakes the stack thread.
//! - [`node`]: the loop. One stack thread drains the ports and the channel (frames from taps,
//!   control commands), runs timers and sleeps in one `futex_waitv` on every bus and a
//!   doorbell; a control thread serves the Unix socket ([`control`] protocol).
//! - [`stack`]: all protocol state, owned by that one thread: Ethernet and ARP (`l2`), IPv4
//!   (`ip`) and IPv6 (`ip6`, with NDP and DAD in `nd`) input and forwarding, one output
//!   pipeline for both (`output`: route, IPsec hook, MTU and fragmentation, neighbour
//!   resolution, link), ICMP errors for both families (`icmp`), and the tables they use: one
//!   routing table type per family ([`stack::route`]), one neighbour cache for ARP and NDP
//!   ([`stack::neighbor`]), reassembly ([`stack::reasm`]). The stack knows neither commands nor
//!   apps: they drive it through its API and the [`stack::App`] trait.
//! - [`wire`]: one `parse` (untrusted bytes to a validated struct or a
//!   [`stats::DropReason`]) and one `emit` per protocol, writing into a [`wire::PacketBuf`]
//!   whose headroom takes the headers of the layers below; nothing else indexes into packets.
//! - [`cmd`]: the node's commands (ifconfig, route, netstat, sysctl, arp, ping, traceroute,
//!   halt), NetBSD syntax, each with `--json`; [`apps`] holds the long-running ones (ping,
//!   traceroute) as state machines the stack loop drives.
//! - [`stats`]: drop reasons and protocol counters (`netstat -s`).
//! - [`control`] and [`client`]: the control protocol's wire types and its blocking client
//!   come from the `shmlab-control` crate (re-exported here under their old paths); `control`
//!   adds the node's side, the [`control::Output`] a command writes to.
#![forbid(unsafe_code)]

pub mod apps;
pub mod cmd;
pub mod control;
pub mod event;
pub mod link;
pub mod node;
pub mod stack;
pub mod stats;
pub mod wire;

/// The control socket's blocking client (`netstack-ctl`, `labctl exec`), from `shmlab-control`.
pub use shmlab_control::client;
