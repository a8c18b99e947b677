//! labctl: brings up declarative shmlab topologies and runs commands inside their nodes.
//!
//! How the parts stack, from the file to running processes:
//! - [`topology`]: the lab file model. Parses TOML by hand from the spanned tree, validates the
//!   whole lab and reports every problem as `file:line:column: field.path: message`.
//! - [`graph`]: DOT and Mermaid pictures of a topology.
//! - [`lab`]: where labs live (lab dirs, the `state.json` record of pids and sockets), finding
//!   the `netstack` binary, and process control (start, signal, reap).
//! - [`node`]: talking to a node's control socket (newline-delimited JSON, the `shmlab-control` crate).
//! - [`linux`]: Linux nodes: network namespaces (named, or a holder process when unprivileged),
//!   `virtif-bridge` processes joining their taps to buses, and commands run inside them.
//! - [`lifecycle`]: `up` (buses, nodes in parallel, configuration, summary) and `down`.
//! - [`checks`]: `labctl test`: runs `[[checks]]`, watches buses, writes JUnit XML.
//! - [`capture`]: live pcap captures and ring dumps of a bus (passive `shmif::Reader`).
//!
//! labctl never parses packets; the one exception is the small matcher in [`checks`] that
//! compares EtherType, IPv4 protocol and addresses for `expect_on_bus`.
#![forbid(unsafe_code)]

pub mod capture;
pub mod checks;
pub mod graph;
pub mod lab;
pub mod lifecycle;
pub mod linux;
pub mod node;
pub mod topology;
