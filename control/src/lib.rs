//! shmlab-control: the protocol a node speaks on its control socket, and a blocking client for
//! it, without the stack.
//!
//! - [`protocol`]: the wire types, one JSON [`protocol::Request`] per line in, zero or more
//!   output [`protocol::Reply`] lines and one exit line out.
//! - [`client`]: connects to a socket, sends requests and streams the replies back
//!   (`netstack-ctl`, `labctl exec`, labctl's configuration of nodes).
//!
//! The node's side (running commands, its reply channel) lives in `netstack`, which re-exports
//! these modules as `netstack::control` and `netstack::client`. Keeping them here lets labctl
//! and command-line tools talk to nodes without building the stack and its tap and packet
//! crates.
#![forbid(unsafe_code)]

pub mod client;
pub mod protocol;
