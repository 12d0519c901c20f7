//! Storage on SQLite and PostgreSQL with SeaORM: the schema (migrations), the connection
//! settings, and the SQL implementation of the run store, directory and token ports.
//!
//! Statements are written once for both databases (`$N` placeholders work on both); where a
//! database needs its own code, the item is named for it.

mod codec;
mod connect;
mod directory;
mod families;
pub mod migration;
pub(crate) mod raw;
mod runs;
mod tokens;
mod webhooks;

pub use connect::{Backend, CONNECT_TIMEOUT, connect, migrate, sqlite_creating, sqlite_file};
pub use families::{SqlFamilies, sha256_hex};
pub use runs::SqlRunStore;
