//! The `opsrun` binary.
fn main() {}
