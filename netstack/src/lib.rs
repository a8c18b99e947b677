//! netstack: one shmlab node, a user-space network stack attached to shmif buses.
//!
//! Not implemented yet (issue 3): this crate exports nothing, so no caller can mistake it for
//! a working stack.
#![forbid(unsafe_code)]
