//! shmlab-tools: the command-line tools around the bus.
//!
//! - `shmif_dumpbus` (src/bin): NetBSD's post-mortem bus dumper; reads a bus file through
//!   `shmif::dump` and writes pcap through `shmif::pcap`.
//! - `bench` (src/bin, run as `tools/bench`): the benchmark runner. [`bench`] holds the suite
//!   table, the report writer (BENCHMARKS.md, bench-results/bench.json) and the suites; suites
//!   that need several processes re-execute the binary in hidden roles (`bench::child`).
#![forbid(unsafe_code)]

pub mod bench;
