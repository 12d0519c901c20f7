//! `opsrun demo`: seeds a demo workspace with two simulated tenants, runs every run family with
//! in-process workers, shows live progress that follows the contract, then a summary.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use opsrun_adapters::simulated::policy_id;
use opsrun_application::access::Caller;
use opsrun_application::ports::SimulationSettings;
use opsrun_application::ports::{Role, Tenant, TenantScope};
use opsrun_application::read_models::eta_phrase;
use opsrun_application::{RunParams, StartRun};
use opsrun_domain::{
    OperationRun, OperationRunProgressContract, ProgressDetail, RunId, Slug, Staleness,
};

use opsrun_application::worker::RuntimeSettings;

use super::{CliError, now};
use crate::config::{Cli, STALE_AFTER_SECS, WorkerArgs, runtime_settings};
use crate::render::{component_line, counts_line, duration, view_line};
use crate::wiring::Stack;

/// A run the demo follows.
struct Tracked {
    id: RunId,
    label: String,
    bar: Option<ProgressBar>,
    components: Vec<ProgressBar>,
    last_line: String,
    done: bool,
}

/// How progress is shown: redrawn bars on a terminal, plain lines otherwise.
struct Display {
    multi: Option<MultiProgress>,
    runs: Vec<Tracked>,
}

fn counted_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:<34} [{bar:30.cyan/blue}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:<34} {spinner} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn line_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:<34} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Display {
    fn new() -> Self {
        let multi = std::io::stdout()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Self {
            multi,
            runs: Vec::new(),
        }
    }

    fn follow(&mut self, id: RunId, label: String) {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(spinner_style());
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        self.runs.push(Tracked {
            id,
            label,
            bar,
            components: Vec::new(),
            last_line: String::new(),
            done: false,
        });
    }

    fn update(
        &mut self,
        run: &OperationRun,
        now: opsrun_domain::Timestamp,
        window: Option<opsrun_domain::RecordWindow>,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        let view = OperationRunProgressContract::resolve_at(
            run,
            Staleness {
                now,
                threshold_ms: 60_000,
                window,
            },
        );
        let multi = self.multi.clone();
        let Some(tracked) = self.runs.iter_mut().find(|t| t.id == run.id()) else {
            return Ok(());
        };
        let line = if run.is_completed() {
            format!("{} ({})", run.outcome().key(), counts_line(run))
        } else {
            view_line(&view)
        };
        match (&tracked.bar, &multi) {
            (Some(bar), Some(multi)) => {
                match &view.detail {
                    ProgressDetail::Counted {
                        processed,
                        total,
                        percent,
                    } => {
                        bar.set_style(counted_style());
                        bar.set_length(*total);
                        bar.set_position(*processed);
                        // The estimate, when the ledger gives enough evidence, never as a fact.
                        // The contract's numbers (its percent floors: 299/300 is 99 %), not
                        // indicatif's rounded `{percent}`.
                        let basis = view.basis.clone().unwrap_or_default();
                        let numbers = format!("{processed}/{total} {percent:>3}% {basis}");
                        bar.set_message(match &view.pace {
                            Some(pace) => format!("{numbers} · {}", eta_phrase(pace)),
                            None => numbers,
                        });
                    }
                    ProgressDetail::None { .. } => {
                        bar.set_style(line_style());
                        bar.finish_with_message(line.clone());
                    }
                    ProgressDetail::Composite { components, .. } => {
                        bar.set_style(spinner_style());
                        bar.set_message("composite");
                        while tracked.components.len() < components.len() {
                            let sub = multi.insert_after(
                                tracked.components.last().unwrap_or(bar),
                                ProgressBar::new_spinner(),
                            );
                            sub.set_style(line_style());
                            tracked.components.push(sub);
                        }
                        for (sub, component) in tracked.components.iter().zip(components) {
                            sub.set_prefix(format!("  └ {}", component.label));
                            sub.set_message(component_line(component));
                        }
                    }
                    _ => {
                        bar.set_style(spinner_style());
                        bar.set_message(line.clone());
                    }
                }
                if run.is_completed() {
                    for sub in &tracked.components {
                        sub.finish();
                    }
                }
            }
            _ => {
                if line != tracked.last_line {
                    writeln!(out, "{:<34} {line}", tracked.label)
                        .context("failed to write progress")?;
                }
            }
        }
        tracked.last_line = line;
        tracked.done = run.is_completed();
        Ok(())
    }

    fn all_done(&self) -> bool {
        self.runs.iter().all(|t| t.done)
    }
}

async fn ensure_tenant(
    stack: &Stack,
    workspace: &Slug,
    slug: &str,
    settings: SimulationSettings,
) -> anyhow::Result<Tenant> {
    let slug = Slug::parse(slug)?;
    Ok(stack
        .add_tenant
        .execute(workspace, &slug, settings, true)
        .await?)
}

/// Follows the display until every tracked run (and `until`) is completed.
async fn follow(
    stack: &Stack,
    display: &mut Display,
    out: &mut dyn Write,
    until: &[RunId],
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ids: Vec<RunId> = display
            .runs
            .iter()
            .filter(|t| !t.done)
            .map(|t| t.id)
            .collect();
        for id in ids {
            let run = stack.queries.run(id).await?;
            let window = if run.status() == opsrun_domain::RunStatus::Running {
                stack.queries.record_window(id, now()).await?
            } else {
                None
            };
            display.update(&run, now(), window, out)?;
        }
        let waiting = until
            .iter()
            .any(|id| display.runs.iter().any(|t| t.id == *id && !t.done));
        if until.is_empty() && display.all_done() || !until.is_empty() && !waiting {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the demo's runs did not finish within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `opsrun demo` with the demo's worker settings.
///
/// # Errors
///
/// [`CliError`] when the database or a run fails.
pub(super) async fn command(cli: &Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let demo_workers = WorkerArgs {
        workers: 8,
        heartbeat_ms: 2_000,
        missed_heartbeats: 3,
        max_attempts: 5,
        stale_after_secs: STALE_AFTER_SECS,
        give_up_after_secs: 600,
        retention_days: 14,
        maintenance_secs: 30,
        tenant_concurrency: opsrun_application::DEFAULT_TENANT_LIMIT,
        metrics_bind: None,
        webhooks: crate::config::WebhookArgs::default(),
    };
    let url = if cli.database_url_given {
        cli.database_url.expose()
    } else {
        crate::config::DEMO_DATABASE_URL
    };
    let stack = super::open_url(cli, url, Some(&demo_workers)).await?;
    let others: Vec<String> = stack
        .admin
        .workspaces()
        .await
        .context("failed to read workspaces")?
        .into_iter()
        .map(|(_, slug)| slug.to_string())
        .filter(|slug| slug != "demo")
        .collect();
    if !others.is_empty() {
        return Err(super::input(format!(
            "this database holds other workspaces than demo ({}): the demo seeds only a database \
             of its own (leave out --database-url to use ./opsrun-demo.db)",
            others.join(", ")
        )));
    }
    run(stack, runtime_settings(&demo_workers), out).await
}

/// Runs the demo.
///
/// # Errors
///
/// [`CliError`] when the database or a run fails.
pub async fn run(
    stack: Stack,
    runtime: RuntimeSettings,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    let demo = Slug::parse("demo").map_err(anyhow::Error::from)?;
    let workspace = stack
        .admin
        .workspace(&demo, true, now())
        .await
        .context("failed to create the demo workspace")?;
    let contoso = ensure_tenant(
        &stack,
        &demo,
        "contoso",
        SimulationSettings {
            policies: 300,
            latency_ms: 2,
            failure_rate: 0.0,
            seed: 1,
        },
    )
    .await?;
    let fabrikam = ensure_tenant(
        &stack,
        &demo,
        "fabrikam",
        SimulationSettings {
            policies: 80,
            latency_ms: 3,
            failure_rate: 0.15,
            seed: 7,
        },
    )
    .await?;
    let user = stack
        .admin
        .ensure_user(workspace, "demo@opsrun.local", now())
        .await
        .context("failed to create the demo user")?;
    writeln!(out, "opsrun demo: workspace 'demo', tenants 'contoso' (300 policies) and 'fabrikam' (80 policies, 15% of items fail)\n").context("failed to write")?;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let workers_stack = stack.clone();
    let workers = tokio::spawn(async move {
        crate::runtime::run_until_shutdown(&workers_stack, runtime, async move {
            let _ = stopped.await;
        })
        .await
    });

    let start = |tenant: Tenant, params: RunParams| {
        let service = stack.service.clone();
        async move {
            service
                .start_run(StartRun {
                    workspace: tenant.workspace,
                    tenant: tenant.id,
                    params,
                    initiator: Some(user.id),
                    parent: None,
                    retry_of: None,
                })
                .await
                .map(|s| s.run.id())
                .context("failed to start a run")
        }
    };
    let mut display = Display::new();
    let label = |tenant: &Tenant, what: &str| format!("{} {}", tenant.slug, what);

    let first = [
        (
            contoso.clone(),
            RunParams::InventorySync { policy_types: None },
            "inventory.sync",
        ),
        (
            contoso.clone(),
            RunParams::ReviewPackGenerate { sections: None },
            "review_pack.generate",
        ),
        (
            contoso.clone(),
            RunParams::EvidenceSnapshotGenerate { dimensions: None },
            "evidence_snapshot",
        ),
        (
            contoso.clone(),
            RunParams::BaselineCapture,
            "baseline.capture",
        ),
        (
            fabrikam.clone(),
            RunParams::InventorySync { policy_types: None },
            "inventory.sync",
        ),
        (
            fabrikam.clone(),
            RunParams::EvidenceSnapshotGenerate { dimensions: None },
            "evidence_snapshot",
        ),
    ];
    let mut capture = None;
    for (tenant, params, what) in first {
        let is_capture = matches!(params, RunParams::BaselineCapture);
        let id = start(tenant.clone(), params).await?;
        if is_capture {
            capture = Some(id);
        }
        display.follow(id, label(&tenant, what));
    }
    let owner = Caller {
        user: user.clone(),
        role: Role::Owner,
        scope: TenantScope::All,
        via: opsrun_application::access::Via::Local,
    };
    let set = stack
        .catalog
        .create_backup_set(
            &owner,
            &contoso.slug,
            &format!("demo nightly {}", now().as_millis()),
        )
        .await
        .context("failed to create a backup set")?;
    let add = start(
        contoso.clone(),
        RunParams::BackupSetAddPolicies {
            backup_set_id: set.id,
            policy_ids: (1..=300).map(policy_id).collect(),
        },
    )
    .await?;
    display.follow(add, label(&contoso, "backup_set.add_policies"));
    let fab_set = stack
        .catalog
        .create_backup_set(
            &owner,
            &fabrikam.slug,
            &format!("demo weekly {}", now().as_millis()),
        )
        .await
        .context("failed to create a backup set")?;
    let fab_add = start(
        fabrikam.clone(),
        RunParams::BackupSetAddPolicies {
            backup_set_id: fab_set.id,
            policy_ids: (1..=80).map(policy_id).collect(),
        },
    )
    .await?;
    display.follow(fab_add, label(&fabrikam, "backup_set.add_policies"));

    let capture = capture.ok_or_else(|| anyhow::anyhow!("baseline capture did not start"))?;
    follow(&stack, &mut display, out, &[add, capture]).await?;

    let restore = start(
        contoso.clone(),
        RunParams::BackupSetRestore {
            backup_set_id: set.id,
            item_ids: None,
        },
    )
    .await?;
    display.follow(restore, label(&contoso, "backup_set.restore (fan-out)"));
    let baselines = stack
        .catalog
        .baselines(&owner, &contoso.slug)
        .await
        .context("failed to read baselines")?;
    if let Some(baseline) = baselines.iter().find(|b| b.captured_by == capture) {
        let compare = start(
            contoso.clone(),
            RunParams::BaselineCompare {
                baseline_id: baseline.id,
            },
        )
        .await?;
        display.follow(compare, label(&contoso, "baseline.compare"));
    }
    follow(&stack, &mut display, out, &[]).await?;
    let _ = stop.send(());
    workers.await.context("the workers panicked")??;
    if let Some(multi) = &display.multi {
        multi.clear().ok();
    }

    // The summary.
    writeln!(
        out,
        "\n{:<6} {:<28} {:<9} {:<20} {:>7}  counts",
        "run", "type", "tenant", "outcome", "time"
    )
    .context("failed to write")?;
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for tracked in &display.runs {
        let run = stack
            .queries
            .run(tracked.id)
            .await
            .context("failed to read a run")?;
        let tenant = if run.tenant() == contoso.id {
            "contoso"
        } else {
            "fabrikam"
        };
        let took = duration(
            run.started_at().unwrap_or(run.created_at()),
            run.completed_at().unwrap_or_else(now),
        );
        *outcomes.entry(run.outcome().key()).or_default() += 1;
        writeln!(
            out,
            "{:<6} {:<28} {:<9} {:<20} {:>7}  {}",
            run.id().to_string(),
            run.operation_type().key(),
            tenant,
            run.outcome().key(),
            took,
            counts_line(&run)
        )
        .context("failed to write")?;
    }
    let summary: Vec<String> = outcomes.iter().map(|(k, v)| format!("{v} {k}")).collect();
    writeln!(
        out,
        "\n{} runs in {:.1}s: {}.",
        display.runs.len(),
        started.elapsed().as_secs_f64(),
        summary.join(", ")
    )
    .context("failed to write")?;
    writeln!(
        out,
        "Next: `opsrun ops list --workspace demo` in this terminal, or the pages: \
         `opsrun token create --workspace demo --email you@example.com --role owner`, then \
         `opsrun serve` and open http://127.0.0.1:8080 (log in with the token)."
    )
    .context("failed to write")?;
    Ok(())
}
