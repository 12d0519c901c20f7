//! The `opsrun` application: configuration, wiring, and the command line. This crate is the
//! composition root; it is the only one that reads the environment. The HTTP API, pages and
//! job runtime are wired here as they land.

pub mod wiring;

use clap::Parser;

/// Default database: the embedded SQLite file in the current folder.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://opsrun.db?mode=rwc";

/// opsrun runs long operations for many tenants with truthful progress: a determinate bar only
/// when the work has a deterministic number of units, and a count that never passes its total,
/// never goes backwards and never counts an item twice.
#[derive(Debug, Parser)]
#[command(name = "opsrun", version, about, long_about = None)]
pub struct Cli {
    /// Database to use: a SQLite file (the default) or a PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
}
