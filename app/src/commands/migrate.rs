//! `opsrun migrate`: create or upgrade the schema.

use super::{CliError, open, write_line};
use crate::config::Cli;

/// Opens (and so migrates) the database.
///
/// # Errors
///
/// [`CliError`] when the database cannot be opened or migrated.
pub(super) async fn command(cli: &Cli, out: &mut dyn std::io::Write) -> Result<(), CliError> {
    open(cli, None).await?;
    write_line(
        out,
        &format!("schema is up to date ({})", cli.database_url.redacted()),
    )
}
