//! `opsrun tenants add`: a tenant backed by the simulated provider, through `AddTenant`.

use opsrun_application::ports::SimulationSettings;
use opsrun_domain::Slug;

use super::{CliError, input, open, token, write_line};
use crate::config::{Cli, TenantAddArgs, TenantLimitArgs};

/// Adds the tenant; prints its slug.
///
/// # Errors
///
/// [`CliError::Input`] for a bad slug, rate or an existing tenant; a failure otherwise.
pub(super) async fn add(
    cli: &Cli,
    args: &TenantAddArgs,
    out: &mut dyn std::io::Write,
) -> Result<(), CliError> {
    let slug = Slug::parse(&args.slug).map_err(|e| input(format!("tenant {e}")))?;
    let workspace = Slug::parse(&args.workspace).map_err(|e| input(format!("workspace {e}")))?;
    // Checked before the database is opened, so bad input changes nothing.
    if !(0.0..=1.0).contains(&args.failure_rate) {
        return Err(input("--failure-rate must be between 0 and 1"));
    }
    let stack = open(cli, None).await?;
    let settings = SimulationSettings {
        policies: i64::from(args.policies),
        latency_ms: i64::from(args.latency_ms),
        failure_rate: args.failure_rate,
        seed: args.seed,
    };
    stack
        .add_tenant
        .execute(&workspace, &slug, settings, false)
        .await
        .map_err(token::admin)?;
    write_line(out, slug.as_str())
}

/// Sets or clears a tenant's own concurrency limit; prints what now applies.
///
/// # Errors
///
/// [`CliError::Input`] for a bad slug or limit, or a tenant that does not exist; a failure
/// otherwise.
pub(super) async fn limit(
    cli: &Cli,
    args: &TenantLimitArgs,
    out: &mut dyn std::io::Write,
) -> Result<(), CliError> {
    let slug = Slug::parse(&args.slug).map_err(|e| input(format!("tenant {e}")))?;
    if args.max_running.is_some_and(|n| !(1..=1_000).contains(&n)) {
        return Err(input("--max-running must be 1 to 1000"));
    }
    let stack = super::open_existing(cli).await?;
    let workspace = super::ops::workspace(&stack, args.workspace.as_deref()).await?;
    let tenant = stack
        .directory
        .tenant_by_slug(workspace, &slug)
        .await
        .map_err(|e| match e {
            opsrun_application::StoreError::NotFound(_) => {
                input(format!("tenant '{slug}' not found"))
            }
            other => CliError::Failure(other.into()),
        })?;
    let limit = if args.default { None } else { args.max_running };
    stack
        .service
        .set_tenant_limit(tenant.id, limit)
        .await
        .map_err(|e| CliError::Failure(e.into()))?;
    match limit {
        Some(n) => write_line(out, &format!("{slug}: at most {n} runs at once")),
        None => write_line(
            out,
            &format!("{slug}: the workers' --tenant-concurrency applies"),
        ),
    }
}

/// Lists the workspace's tenants: slug and concurrency limit (`default` or the tenant's own).
///
/// # Errors
///
/// [`CliError::Input`] for an unknown or ambiguous workspace; a failure otherwise.
pub(super) async fn list(
    stack: &crate::wiring::Stack,
    workspace: Option<&str>,
    as_json: bool,
    out: &mut dyn std::io::Write,
) -> Result<(), CliError> {
    let workspace = super::ops::workspace(stack, workspace).await?;
    let tenants = stack
        .directory
        .tenants_of(workspace)
        .await
        .map_err(|e| CliError::Failure(e.into()))?;
    let mut rows = Vec::new();
    for tenant in tenants {
        let limit = stack
            .queries
            .tenant_limit(tenant.id)
            .await
            .map_err(|e| CliError::Failure(e.into()))?;
        rows.push((tenant.slug, limit));
    }
    if as_json {
        // `GET /api/tenants`'s document, with each tenant's own limit (null: the default).
        let items: Vec<_> = rows
            .iter()
            .map(|(slug, limit)| serde_json::json!({"slug": slug.as_str(), "max_running": limit}))
            .collect();
        return super::write_json(out, &serde_json::json!({ "items": items }));
    }
    write_line(out, "tenant\tmax_running")?;
    for (slug, limit) in rows {
        let limit = limit.map_or_else(|| "default".to_owned(), |n| n.to_string());
        write_line(out, &format!("{slug}\t{limit}"))?;
    }
    Ok(())
}
