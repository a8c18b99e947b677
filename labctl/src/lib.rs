//! labctl: brings up declarative shmlab topologies and runs commands inside their nodes.
//!
//! How the parts stack, from the file to running processes:
//! - [`topology`]: the lab file model. Parses TOML by hand from the spanned tree, validates the
//!   whole lab and reports every problem as `file:line:column: field.path: message`.
//! - [`graph`]: DOT and Mermaid pictures of a topology.
//! - [`lab`]: where labs live (lab dirs, `state.json`: [`lab::LabState`], each node's common
//!   part and its kind's tagged part), finding binaries, and process identity and signals.
//! - [`journal`]: every process is recorded in `state.json` before it is spawned and marked
//!   in its environment, so `down` finds it whenever labctl died.
//! - [`driver`]: [`driver::NodeDriver`], the one interface every node kind implements (start,
//!   configure, exec, status, capture point, stop, clean up after a crash); the `netstack`
//!   and `linux` kinds live under it. Nothing else branches on kind.
//! - [`node`]: talking to a node's control socket (newline-delimited JSON, the `shmlab-control`
//!   crate).
//! - [`linux`]: the mechanics Linux nodes are built from: network namespaces (named, or a
//!   holder process when unprivileged), `virtif-bridge` processes joining their taps to buses,
//!   and commands run inside them.
//! - [`lifecycle`]: `up` (preflight, buses, nodes through their drivers, configuration in
//!   parallel, a drop guard that tears down on failure) and `down` (one teardown for both).
//! - [`checks`]: `labctl test`: runs `[[checks]]`, watches buses, writes JUnit XML.
//! - [`capture`]: live pcap captures and ring dumps of a bus (passive `shmif::Reader`).
//!
//! labctl never parses packets; the one exception is the small matcher in [`checks`] that
//! compares EtherType, IPv4 protocol and addresses for `expect_on_bus`.
#![forbid(unsafe_code)]

pub mod capture;
pub mod checks;
pub mod driver;
pub mod graph;
pub mod journal;
pub mod lab;
pub mod lifecycle;
pub mod linux;
pub mod node;
pub mod topology;
