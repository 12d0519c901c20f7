//! `opsrun ops watch ID`: follows a run to its end, drawn by the progress contract (a bar only
//! for a counted view, with the contract's floored percent), then prints its summary and exits
//! with a status that says its outcome.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use opsrun_application::access::Caller;
use opsrun_domain::{ProgressDetail, RunId};

use super::CliError;
use super::ops::watch_status;
use crate::render::{counts_line, status_line, words};
use crate::wiring::Stack;

/// How often the run is read again.
const EVERY: Duration = Duration::from_millis(250);

/// Follows run `id` until it completes.
///
/// # Errors
///
/// [`CliError::Status`] with 3 (partially succeeded) or 1 (failed, blocked, cancelled) once
/// the run completed that way; [`CliError::Input`] for a run that is not found.
pub(super) async fn run(
    stack: &Stack,
    caller: &Caller,
    id: RunId,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let mut last = String::new();
    let run = loop {
        let summary = stack
            .models
            .run(caller, id)
            .await
            .map_err(|e| super::input(format!("{e}")))?;
        if summary.run.is_completed() {
            break summary.run;
        }
        let line = status_line(&summary.run, &summary.progress);
        match (&bar, &summary.progress.detail) {
            (
                Some(bar),
                ProgressDetail::Counted {
                    processed,
                    total,
                    percent,
                },
            ) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_length(*total);
                bar.set_position(*processed);
                let estimate = summary
                    .progress
                    .pace
                    .as_ref()
                    .map(|p| format!(" · {}", opsrun_application::read_models::eta_phrase(p)))
                    .unwrap_or_default();
                bar.set_prefix(format!("{id}"));
                bar.set_message(format!("{processed}/{total} {percent:>3}%{estimate}"));
            }
            (Some(bar), _) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix} {spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{id}"));
                bar.set_message(line.clone());
            }
            (None, _) => {
                if line != last {
                    writeln!(out, "{id}  {line}").context("failed to write")?;
                }
            }
        }
        last = line;
        tokio::time::sleep(EVERY).await;
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    writeln!(
        out,
        "{id}  completed: {} ({})",
        words(run.outcome().key()),
        counts_line(&run)
    )
    .context("failed to write")?;
    match watch_status(run.outcome()) {
        0 => Ok(()),
        code => Err(CliError::Status(code)),
    }
}
