//! `opsrun fail-stale` and `opsrun reconcile`: one maintenance step, by hand.

use anyhow::Context;

use super::{CliError, open, write_line};
use crate::config::Cli;

/// Ends every running run without a sign of life for `stale_after_secs` as failed.
///
/// # Errors
///
/// [`CliError`] when the database fails.
pub(super) async fn fail_stale(
    cli: &Cli,
    stale_after_secs: u64,
    out: &mut dyn std::io::Write,
) -> Result<(), CliError> {
    let stack = open(cli, None).await?;
    let ms = i64::try_from(stale_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let failed = stack
        .service
        .fail_stale_runs(ms)
        .await
        .context("failed to end stale runs")?;
    write_line(
        out,
        &format!("{} stale run(s) ended as failed", failed.len()),
    )
}

/// Recounts every active run from its ledger and completes finished fan-outs.
///
/// # Errors
///
/// [`CliError`] when the database fails.
pub(super) async fn reconcile(cli: &Cli, out: &mut dyn std::io::Write) -> Result<(), CliError> {
    let stack = open(cli, None).await?;
    let report = stack
        .service
        .reconcile(&|t| stack.families.is_fan_out(t))
        .await
        .context("failed to reconcile")?;
    write_line(
        out,
        &format!(
            "{} active run(s) recounted, {} drifted and repaired, {} fan-out parent(s) completed",
            report.recounted,
            report.drifted.len(),
            report.completed.len()
        ),
    )
}
