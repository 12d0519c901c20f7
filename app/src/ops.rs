//! `opsrun ops ...` and `opsrun token create`: the API's operations, for a terminal. The
//! terminal acts as the workspace's owner, through the same use cases and access policy.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use opsrun_application::RunParams;
use opsrun_application::access::{AccessError, Caller};
use opsrun_application::admin::{AdminError, TokenRequest};
use opsrun_application::ports::{Role, TenantScope, User};
use opsrun_application::read_models::CollectionFilter;
use opsrun_application::start::OperationError;
use opsrun_domain::{OperationType, RunId, RunStatus, Slug, Timestamp, WorkspaceId};

use crate::cli::{CliError, now};
use crate::render::{counts_line, duration, view_line};
use crate::wiring::Stack;

/// `opsrun ops ...`.
#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// List top-level runs, newest first.
    List(ListArgs),
    /// Show one run: status, outcome, counts, progress, failed items, timeline.
    Show {
        /// The run id.
        id: i64,
        /// Workspace slug (default: the only workspace).
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Start an operation (or show the active one with the same tenant, type and target).
    Start(StartArgs),
    /// Cancel a queued or running run.
    Cancel {
        /// The run id.
        id: i64,
        /// Workspace slug (default: the only workspace).
        #[arg(long)]
        workspace: Option<String>,
    },
}

/// Options of `opsrun ops list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this status: queued, running or completed.
    #[arg(long)]
    pub status: Option<String>,
    /// Workspace slug (default: the only workspace).
    #[arg(long)]
    pub workspace: Option<String>,
    /// At most this many runs (1 to 200).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
}

/// Options of `opsrun ops start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The operation type, e.g. inventory.sync.
    pub operation_type: String,
    /// The tenant slug.
    #[arg(long)]
    pub tenant: String,
    /// A parameter as key=value; lists are comma-separated (policy_types=a,b).
    #[arg(long = "param")]
    pub params: Vec<String>,
    /// Workspace slug (default: the only workspace).
    #[arg(long)]
    pub workspace: Option<String>,
}

/// `opsrun token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create the user if missing and a new API token; prints the token alone.
    Create(TokenArgs),
}

/// Options of `opsrun token create`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Workspace slug.
    #[arg(long)]
    pub workspace: String,
    /// The user's e-mail.
    #[arg(long)]
    pub email: String,
    /// readonly, operator or owner.
    #[arg(long)]
    pub role: String,
    /// A tenant the token may see (repeat); none means every tenant of the workspace.
    #[arg(long = "tenant")]
    pub tenants: Vec<String>,
}

fn input(message: impl Into<String>) -> CliError {
    CliError::Input(message.into())
}

async fn workspace(stack: &Stack, slug: Option<&str>) -> Result<WorkspaceId, CliError> {
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
            _ => Err(input(
                "there are several workspaces: name one with --workspace",
            )),
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
    })
}

fn access(error: AccessError) -> CliError {
    match error {
        AccessError::NotFound(what) => input(format!("{what} not found")),
        AccessError::Forbidden { .. } => input(error.to_string()),
        AccessError::Store(e) => CliError::Failure(anyhow::Error::new(e)),
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn int(key: &str, value: &str) -> Result<i64, CliError> {
    value
        .parse()
        .map_err(|_| input(format!("--param {key}={value}: not a whole number")))
}

/// Parses `key=value` parameters for an operation type.
///
/// # Errors
///
/// [`CliError::Input`] for an unknown type, an unknown or repeated key, a bad value or a
/// missing required key.
pub fn parse_params(operation_type: &str, pairs: &[String]) -> Result<RunParams, CliError> {
    let operation_type = OperationType::parse(operation_type).map_err(|e| input(e.to_string()))?;
    let mut map = std::collections::BTreeMap::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| input(format!("--param '{pair}': expected key=value")))?;
        if map.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(input(format!("--param {k} given twice")));
        }
    }
    let allowed: &[&str] = match operation_type {
        OperationType::InventorySync => &["policy_types"],
        OperationType::ReviewPackGenerate => &["sections"],
        OperationType::BackupSetAddPolicies => &["backup_set_id", "policy_ids"],
        OperationType::BackupSetRestore => &["backup_set_id", "item_ids"],
        OperationType::BaselineCompare => &["baseline_id"],
        OperationType::EvidenceSnapshotGenerate | OperationType::BaselineCapture => &[],
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(input(format!(
            "{operation_type} takes no parameter '{unknown}'"
        )));
    }
    let required = |key: &str| {
        map.get(key)
            .ok_or_else(|| input(format!("{operation_type} needs --param {key}=...")))
    };
    Ok(match operation_type {
        OperationType::InventorySync => RunParams::InventorySync {
            policy_types: map.get("policy_types").map(|v| list(v)),
        },
        OperationType::ReviewPackGenerate => RunParams::ReviewPackGenerate {
            sections: map.get("sections").map(|v| list(v)),
        },
        OperationType::EvidenceSnapshotGenerate => RunParams::EvidenceSnapshotGenerate,
        OperationType::BackupSetAddPolicies => RunParams::BackupSetAddPolicies {
            backup_set_id: int("backup_set_id", required("backup_set_id")?)?,
            policy_ids: list(required("policy_ids")?),
        },
        OperationType::BackupSetRestore => RunParams::BackupSetRestore {
            backup_set_id: int("backup_set_id", required("backup_set_id")?)?,
            item_ids: map
                .get("item_ids")
                .map(|v| {
                    list(v)
                        .iter()
                        .map(|i| int("item_ids", i))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
        },
        OperationType::BaselineCapture => RunParams::BaselineCapture,
        OperationType::BaselineCompare => RunParams::BaselineCompare {
            baseline_id: int("baseline_id", required("baseline_id")?)?,
        },
    })
}

fn time(t: Timestamp) -> String {
    // Seconds since the epoch are unambiguous without a date library.
    format!(
        "{}.{:03}",
        t.as_millis() / 1000,
        t.as_millis().rem_euclid(1000)
    )
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
            writeln!(
                out,
                "{:<6} {:<27} {:<10} {:<10} {:<20} progress",
                "id", "type", "tenant", "status", "outcome"
            )
            .context("failed to write")?;
            for s in page.items {
                writeln!(
                    out,
                    "{:<6} {:<27} {:<10} {:<10} {:<20} {}",
                    s.run.id().to_string(),
                    s.run.operation_type().key(),
                    s.tenant.as_str(),
                    s.run.status().key(),
                    s.run.outcome().key(),
                    if s.run.is_completed() {
                        counts_line(&s.run)
                    } else {
                        view_line(&s.progress)
                    }
                )
                .context("failed to write")?;
            }
            Ok(())
        }
        OpsCommand::Show { id, workspace } => {
            let caller = owner(stack, workspace.as_deref()).await?;
            let detail = models
                .detail(&caller, RunId::new(*id))
                .await
                .map_err(access)?;
            let s = &detail.summary;
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
                format!(
                    "progress   {} ({})",
                    view_line(&s.progress),
                    s.progress.mode().key()
                ),
                format!("basis      {}", s.progress.basis.as_deref().unwrap_or("-")),
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
            writeln!(out, "timeline (seconds since the epoch):").context("failed to write")?;
            for entry in &detail.timeline {
                let actor = entry
                    .actor
                    .as_deref()
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default();
                writeln!(out, "  {}  {}{}", time(entry.at), entry.event, actor)
                    .context("failed to write")?;
            }
            Ok(())
        }
        OpsCommand::Start(args) => {
            let params = parse_params(&args.operation_type, &args.params)?;
            let tenant = Slug::parse(&args.tenant).map_err(|e| input(format!("--tenant: {e}")))?;
            let caller = owner(stack, args.workspace.as_deref()).await?;
            let started = stack
                .start
                .execute(&caller, &tenant, params)
                .await
                .map_err(operation)?;
            let what = if started.reused {
                "already active"
            } else {
                "queued"
            };
            writeln!(
                out,
                "{}  {} {} ({what}; a worker runs it: `opsrun worker`)",
                started.run.id(),
                started.run.operation_type().key(),
                tenant
            )
            .context("failed to write")?;
            Ok(())
        }
        OpsCommand::Cancel { id, workspace } => {
            let caller = owner(stack, workspace.as_deref()).await?;
            let run = stack
                .cancel
                .execute(&caller, RunId::new(*id))
                .await
                .map_err(operation)?;
            writeln!(out, "{} cancelled", run.id()).context("failed to write")?;
            Ok(())
        }
    }
}

fn operation(error: OperationError) -> CliError {
    match error {
        OperationError::Access(e) => access(e),
        OperationError::Invalid { code, message } => input(format!("{message} ({code})")),
        OperationError::AlreadyCompleted(id) => {
            input(format!("operation {id} is already completed"))
        }
        other => CliError::Failure(anyhow::Error::new(other)),
    }
}

/// Runs `token create`: prints the new token alone.
///
/// # Errors
///
/// [`CliError`].
pub async fn create_token(
    stack: &Stack,
    args: &TokenArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let role = Role::parse(&args.role)
        .ok_or_else(|| input("--role must be readonly, operator or owner"))?;
    let workspace = Slug::parse(&args.workspace).map_err(|e| input(format!("--workspace: {e}")))?;
    let tenants = args
        .tenants
        .iter()
        .map(|t| Slug::parse(t).map_err(|e| input(format!("--tenant: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let token = stack
        .issue_token
        .execute(TokenRequest {
            workspace,
            create_workspace: true,
            email: args.email.clone(),
            role,
            tenants,
        })
        .await
        .map_err(admin)?;
    writeln!(out, "{}", token.expose()).context("failed to write")?;
    Ok(())
}

/// An administration refusal is bad input (exit 2); a storage failure is a failure (exit 1).
pub(crate) fn admin(error: AdminError) -> CliError {
    match error {
        AdminError::Invalid(message) => input(message),
        AdminError::Store(e) => CliError::Failure(anyhow::Error::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_parsed_per_type_and_unknown_keys_are_refused() {
        let add = parse_params(
            "backup_set.add_policies",
            &[
                "backup_set_id=3".into(),
                "policy_ids=pol-00001, pol-00002".into(),
            ],
        );
        let unknown = parse_params("inventory.sync", &["sections=a".into()]);
        let missing = parse_params("baseline.compare", &[]);
        let bad_type = parse_params("inventory.Sync", &[]);
        let not_a_number = parse_params("baseline.compare", &["baseline_id=x".into()]);

        assert!(matches!(
            add,
            Ok(RunParams::BackupSetAddPolicies { backup_set_id: 3, ref policy_ids }) if policy_ids.len() == 2
        ));
        for refused in [unknown, missing, bad_type, not_a_number] {
            assert!(matches!(refused, Err(CliError::Input(_))));
        }
    }
}
