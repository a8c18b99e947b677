//! Shared helpers for the shmlab integration tests.
