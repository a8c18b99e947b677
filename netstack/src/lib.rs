//! netstack: one shmlab node, a user-space network stack attached to shmif buses.
//!
//! Work in progress (issue 3). Available now: [`control`] (the control protocol types) and
//! [`client`] (a blocking client for a node's control socket).
#![forbid(unsafe_code)]

pub mod client;
pub mod control;
