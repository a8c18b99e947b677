//! labctl: brings up declarative shmlab topologies and runs commands inside their nodes.
//!
//! Not implemented yet (issue 4): this crate exports nothing, so no caller can mistake it for
//! a working controller.
#![forbid(unsafe_code)]
