//! End-to-end tests of opsrun.
