//! `opsrun ops ...`: the API's operations, for a terminal. The terminal acts as the
//! workspace's owner, through the same use cases and access policy.

use std::io::Write;

use anyhow::Context;
use opsrun_application::RunParams;
use opsrun_application::access::{AccessError, Caller};
use opsrun_application::families::{Families, ParamError, ParamKind, ParamMap, ParamValue};
use opsrun_application::ports::{Role, TenantScope, User};
use opsrun_application::read_models::CollectionFilter;
use opsrun_application::start::OperationError;
use opsrun_domain::{OperationType, RunId, RunStatus, Slug, Timestamp, WorkspaceId};

use super::{CliError, input, now, write_json as json};
use crate::config::{OpsCommand, RunArgs};
use crate::render::{counts_line, duration, status_line, words};
use crate::wiring::Stack;

pub(super) async fn workspace(stack: &Stack, slug: Option<&str>) -> Result<WorkspaceId, CliError> {
    let all = stack
        .admin
        .workspaces()
        .await
        .context("failed to read workspaces")?;
    match slug {
        Some(slug) => all
            .iter()
            .find(|(_, s)| s.as_str() == slug)
            .map(|(id, _)| *id)
            .ok_or_else(|| input(format!("workspace '{slug}' does not exist"))),
        None => match all.as_slice() {
            [(id, _)] => Ok(*id),
            [] => Err(input(
                "there is no workspace yet: run `opsrun demo` or `opsrun tenants add`",
            )),
            several => Err(input(format!(
                "there are several workspaces ({}): name one with --workspace or OPSRUN_WORKSPACE",
                several
                    .iter()
                    .map(|(_, s)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
    }
}

async fn owner(stack: &Stack, slug: Option<&str>) -> Result<Caller, CliError> {
    let workspace = workspace(stack, slug).await?;
    let user: User = stack
        .admin
        .ensure_user(workspace, "cli@localhost", now())
        .await
        .context("failed to create the terminal user")?;
    Ok(Caller {
        user,
        role: Role::Owner,
        scope: TenantScope::All,
        via: opsrun_application::access::Via::Local,
    })
}

fn access(error: AccessError) -> CliError {
    match error {
        AccessError::NotFound(what) => input(format!("{what} not found")),
        AccessError::Forbidden { .. } => input(error.to_string()),
        AccessError::Store(e) => CliError::Failure(anyhow::Error::new(e)),
    }
}

fn list(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn int(key: &str, value: &str) -> Result<ParamValue, CliError> {
    value
        .parse()
        .map(ParamValue::Int)
        .map_err(|_| input(format!("--param {key}={value}: not a whole number")))
}

/// Parses `key=value` parameters for an operation type: the values are read by the kind the
/// type's family declares for each name (lists are comma-separated), then checked by the
/// registry like every edge's.
///
/// # Errors
///
/// [`CliError::Input`] for an unknown type, an unknown or repeated key, a bad value or a
/// missing required key.
pub fn parse_params(
    families: &Families,
    operation_type: &str,
    pairs: &[String],
) -> Result<RunParams, CliError> {
    let family = OperationType::parse(operation_type)
        .ok()
        .and_then(|t| families.get(&t))
        .ok_or_else(|| {
            input(ParamError::unknown_type_of(operation_type, &families.keys()).to_string())
        })?;
    let mut values = ParamMap::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| input(format!("--param '{pair}': expected key=value")))?;
        let kind = family.params().iter().find(|s| s.name == k).map(|s| s.kind);
        let value = match kind {
            // An unknown name is refused by the registry with the family's own message.
            None | Some(ParamKind::Text) => ParamValue::Text(v.to_owned()),
            Some(ParamKind::Int) => int(k, v)?,
            Some(ParamKind::TextList) => ParamValue::List(
                list(v)
                    .into_iter()
                    .map(|t| ParamValue::Text(t.to_owned()))
                    .collect(),
            ),
            Some(ParamKind::IntList) => ParamValue::List(
                list(v)
                    .into_iter()
                    .map(|i| int(k, i))
                    .collect::<Result<_, _>>()?,
            ),
        };
        if values.insert(k.to_owned(), value).is_some() {
            return Err(input(format!("--param {k} given twice")));
        }
    }
    families
        .parse_params(operation_type, values)
        .map_err(|e| input(e.to_string()))
}

fn time(t: Timestamp) -> String {
    crate::web::api::dto::rfc3339(t)
}

/// The exit status `ops watch` ends with: 0 succeeded, 3 partially succeeded, 1 otherwise.
#[must_use]
pub fn watch_status(outcome: opsrun_domain::RunOutcome) -> u8 {
    match outcome {
        opsrun_domain::RunOutcome::Succeeded => 0,
        opsrun_domain::RunOutcome::PartiallySucceeded => 3,
        _ => 1,
    }
}

/// Runs an `ops` command.
///
/// # Errors
///
/// [`CliError`].
pub async fn run(stack: &Stack, command: &OpsCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let models = &stack.models;
    match command {
        OpsCommand::List(args) => {
            let caller = owner(stack, args.workspace.as_deref()).await?;
            let filter = CollectionFilter {
                tenant: args
                    .tenant
                    .as_deref()
                    .map(Slug::parse)
                    .transpose()
                    .map_err(|e| input(format!("--tenant: {e}")))?,
                status: args
                    .status
                    .as_deref()
                    .map(RunStatus::parse)
                    .transpose()
                    .map_err(|e| input(format!("--status: {e}")))?,
                ..CollectionFilter::default()
            };
            if !(1..=200).contains(&args.limit) {
                return Err(input("--limit must be 1 to 200"));
            }
            let page = models
                .collection(&caller, filter, args.limit, None)
                .await
                .map_err(access)?;
            if args.output.is_json() {
                return json(out, &crate::web::api::dto::RunPage::of(&page));
            }
            writeln!(
                out,
                "{:<6} {:<27} {:<10} {:<10} {:<20} {:<11} progress",
                "id", "type", "tenant", "status", "outcome", "created"
            )
            .context("failed to write")?;
            let now = super::now();
            for s in page.items {
                writeln!(
                    out,
                    "{:<6} {:<27} {:<10} {:<10} {:<20} {:<11} {}",
                    s.run.id().to_string(),
                    s.run.operation_type().key(),
                    s.tenant.as_str(),
                    s.run.status().key(),
                    s.run.outcome().key(),
                    crate::render::ago(s.run.created_at(), now),
                    status_line(&s.run, &s.progress)
                )
                .context("failed to write")?;
            }
            Ok(())
        }
        OpsCommand::Show(RunArgs {
            id,
            workspace,
            output,
        }) => {
            let caller = owner(stack, workspace.as_deref()).await?;
            let detail = models
                .detail(&caller, RunId::new(*id))
                .await
                .map_err(access)?;
            let s = &detail.summary;
            if output.is_json() {
                return json(out, &crate::web::api::dto::RunDoc::new(s, false));
            }
            let run = &s.run;
            let lines = [
                format!(
                    "operation {}  {} for tenant {}",
                    run.id(),
                    run.operation_type().key(),
                    s.tenant
                ),
                format!(
                    "status     {} / {}",
                    run.status().key(),
                    run.outcome().key()
                ),
                if run.is_completed() {
                    format!("progress   completed: {}", words(run.outcome().key()))
                } else {
                    format!(
                        "progress   {} ({})",
                        status_line(run, &s.progress),
                        s.progress.mode().key()
                    )
                },
                format!("basis      {}", s.progress.basis.as_deref().unwrap_or("-")),
                format!(
                    "estimate   {}",
                    s.progress
                        .pace
                        .as_ref()
                        .map_or("-".to_owned(), opsrun_application::read_models::eta_phrase)
                ),
                format!(
                    "retry of   {}",
                    run.retry_of().map_or("-".to_owned(), |r| r.to_string())
                ),
                format!(
                    "retried by {}",
                    match s.retried_by.as_deref() {
                        Some(ids) if !ids.is_empty() => ids
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        _ => "-".to_owned(),
                    }
                ),
                format!("counts     {}", counts_line(run)),
                format!("initiator  {}", s.initiator.as_deref().unwrap_or("-")),
                format!(
                    "took       {}",
                    run.completed_at().map_or("-".to_owned(), |end| duration(
                        run.started_at().unwrap_or(run.created_at()),
                        end
                    ))
                ),
            ];
            for line in lines {
                writeln!(out, "{line}").context("failed to write")?;
            }
            for failure in run.failures() {
                writeln!(out, "failure    {}: {}", failure.code, failure.message)
                    .context("failed to write")?;
            }
            if !detail.failed_items.is_empty() {
                writeln!(out, "failed items:").context("failed to write")?;
                for (key, entry) in &detail.failed_items {
                    let reason = entry
                        .reason
                        .as_ref()
                        .map_or("-".to_owned(), ToString::to_string);
                    writeln!(out, "  {key}  {reason}").context("failed to write")?;
                }
            }
            writeln!(out, "timeline:").context("failed to write")?;
            let now = super::now();
            for entry in &detail.timeline {
                let actor = entry
                    .actor
                    .as_deref()
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "  {}  ({})  {}{}",
                    time(entry.at),
                    crate::render::ago(entry.at, now),
                    entry.event,
                    actor
                )
                .context("failed to write")?;
            }
            Ok(())
        }
        OpsCommand::Start(args) => {
            let params = parse_params(&stack.families, &args.operation_type, &args.params)?;
            let tenant = Slug::parse(&args.tenant).map_err(|e| input(format!("--tenant: {e}")))?;
            let caller = owner(stack, args.workspace.as_deref()).await?;
            let started = stack
                .start
                .execute(&caller, &tenant, params)
                .await
                .map_err(operation)?;
            if args.output.is_json() {
                return run_doc(stack, &caller, started.run.id(), started.reused, out).await;
            }
            // The run as it is now: a running worker may have taken it already.
            let now = stack
                .queries
                .run(started.run.id())
                .await
                .context("failed to read the run")?;
            let state = match (now.status(), started.reused) {
                (opsrun_domain::RunStatus::Queued, reused) => format!(
                    "{}queued: `opsrun serve` or `opsrun worker` runs it",
                    if reused { "already active, " } else { "" }
                ),
                (status, true) => format!("already active, {}", status.key()),
                (status, false) => status.key().to_owned(),
            };
            writeln!(
                out,
                "{}  {} {} ({state})",
                now.id(),
                now.operation_type().key(),
                tenant
            )
            .context("failed to write")?;
            Ok(())
        }
        OpsCommand::Cancel(RunArgs {
            id,
            workspace,
            output,
        }) => {
            let caller = owner(stack, workspace.as_deref()).await?;
            let run = stack
                .cancel
                .execute(&caller, RunId::new(*id))
                .await
                .map_err(operation)?;
            if output.is_json() {
                return run_doc(stack, &caller, run.id(), false, out).await;
            }
            writeln!(out, "{} cancelled", run.id()).context("failed to write")?;
            Ok(())
        }
        OpsCommand::Watch { id, workspace } => {
            let caller = owner(stack, workspace.as_deref()).await?;
            super::watch::run(stack, &caller, RunId::new(*id), out).await
        }
        OpsCommand::Items {
            id,
            outcome,
            limit,
            cursor,
            workspace,
            output,
        } => {
            let caller = owner(stack, workspace.as_deref()).await?;
            if !(1..=200).contains(limit) {
                return Err(input("--limit must be 1 to 200"));
            }
            let outcome = outcome
                .as_deref()
                .map(opsrun_domain::ItemOutcome::parse)
                .transpose()
                .map_err(|e| input(format!("--outcome: {e}")))?;
            let after = cursor
                .as_deref()
                .map(opsrun_domain::ItemKey::parse)
                .transpose()
                .map_err(|e| input(format!("--cursor: {e}")))?;
            let page = models
                .items(&caller, RunId::new(*id), outcome, *limit, after)
                .await
                .map_err(access)?;
            if output.is_json() {
                return json(out, &crate::web::api::dto::ItemPage::of(&page));
            }
            writeln!(out, "item\toutcome\treason\trecorded_at").context("failed to write")?;
            for (key, entry) in &page.items {
                let reason = entry
                    .reason
                    .as_ref()
                    .map_or("-".to_owned(), ToString::to_string);
                writeln!(
                    out,
                    "{key}\t{}\t{reason}\t{}",
                    entry.outcome.key(),
                    time(entry.recorded_at)
                )
                .context("failed to write")?;
            }
            if let Some(next) = &page.next_cursor {
                writeln!(out, "(more: --cursor {next})").context("failed to write")?;
            }
            Ok(())
        }
        OpsCommand::Pause(RunArgs {
            id,
            workspace,
            output,
        }) => {
            let caller = owner(stack, workspace.as_deref()).await?;
            let run = stack
                .control
                .pause(&caller, RunId::new(*id))
                .await
                .map_err(operation)?;
            if output.is_json() {
                return run_doc(stack, &caller, run.id(), false, out).await;
            }
            writeln!(
                out,
                "{} paused (items in flight finish; `opsrun ops resume {}` goes on)",
                run.id(),
                run.id()
            )
            .context("failed to write")?;
            Ok(())
        }
        OpsCommand::Resume(RunArgs {
            id,
            workspace,
            output,
        }) => {
            let caller = owner(stack, workspace.as_deref()).await?;
            let run = stack
                .control
                .resume(&caller, RunId::new(*id))
                .await
                .map_err(operation)?;
            if output.is_json() {
                return run_doc(stack, &caller, run.id(), false, out).await;
            }
            writeln!(out, "{} resumed", run.id()).context("failed to write")?;
            Ok(())
        }
        OpsCommand::Retry(RunArgs {
            id,
            workspace,
            output,
        }) => {
            let caller = owner(stack, workspace.as_deref()).await?;
            let started = stack
                .retry
                .execute(&caller, RunId::new(*id))
                .await
                .map_err(operation)?;
            if output.is_json() {
                return run_doc(stack, &caller, started.run.id(), started.reused, out).await;
            }
            let what = if started.reused {
                "already active"
            } else {
                "queued"
            };
            writeln!(
                out,
                "{}  {} retrying the failed items of {id} ({what}; {})",
                started.run.id(),
                started.run.operation_type().key(),
                started
                    .run
                    .basis()
                    .unwrap_or("its total is frozen when it starts")
            )
            .context("failed to write")?;
            Ok(())
        }
    }
}

/// Prints the API's document of run `id` as it is now (`-o json` of the commands that act).
async fn run_doc(
    stack: &Stack,
    caller: &Caller,
    id: RunId,
    reused: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let summary = stack.models.run(caller, id).await.map_err(access)?;
    json(out, &crate::web::api::dto::RunDoc::new(&summary, reused))
}

fn operation(error: OperationError) -> CliError {
    match error {
        OperationError::Access(e) => access(e),
        OperationError::Invalid { code, message } => input(format!("{message} ({code})")),
        OperationError::AlreadyCompleted(id) => {
            input(format!("operation {id} is already completed"))
        }
        OperationError::Conflict { code, message } => input(format!("{message} ({code})")),
        other => CliError::Failure(anyhow::Error::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use opsrun_adapters::backend::Backend;
    use opsrun_adapters::queue::QueueSettings;

    use super::*;

    fn families() -> Families {
        let stack = Stack::wire(&Backend::memory(QueueSettings::default()), 1_000);
        stack.families.clone()
    }

    #[test]
    fn params_are_parsed_per_type_and_unknown_keys_are_refused() {
        let families = families();
        let add = parse_params(
            &families,
            "backup_set.add_policies",
            &[
                "backup_set_id=3".into(),
                "policy_ids=pol-00001, pol-00002".into(),
            ],
        );
        let unknown = parse_params(&families, "inventory.sync", &["sections=a".into()]);
        let missing = parse_params(&families, "baseline.compare", &[]);
        let bad_type = parse_params(&families, "inventory.Sync", &[]);
        let not_a_number = parse_params(&families, "baseline.compare", &["baseline_id=x".into()]);

        assert!(matches!(
            add,
            Ok(RunParams::BackupSetAddPolicies { backup_set_id: 3, ref policy_ids }) if policy_ids.len() == 2
        ));
        for refused in [unknown, missing, bad_type, not_a_number] {
            assert!(matches!(refused, Err(CliError::Input(_))));
        }
    }
}
