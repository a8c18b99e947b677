//! shmlab-tools: the command-line tools around the bus.
//!
//! - `shmif_dumpbus` (src/bin): NetBSD's post-mortem bus dumper; reads a bus file through
//!   `shmif::dump` and writes pcap through `shmif::pcap`.
#![forbid(unsafe_code)]
