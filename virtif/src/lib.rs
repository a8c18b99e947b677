//! virtif: attaches a shmlab node interface to a host tap device, the way NetBSD's
//! virt(4) attaches a rump kernel to the host.
//!
//! Not implemented yet (issue 5): this crate deliberately exports nothing, so no caller can
//! mistake it for a working tap driver.
