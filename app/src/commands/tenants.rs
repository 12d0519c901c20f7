//! `opsrun tenants add`: a tenant backed by the simulated provider, through `AddTenant`.

use opsrun_application::ports::SimulationSettings;
use opsrun_domain::Slug;

use super::{CliError, input, open, token, write_line};
use crate::config::{Cli, TenantAddArgs};

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
