//! Shared fixtures of the opsrun cross-crate tests. Test code only: nothing here ships.
