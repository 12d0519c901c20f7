//! `opsrun token create`: a new API token through the `IssueToken` use case.

use std::io::Write;

use anyhow::Context;
use opsrun_application::admin::{AdminError, TokenRequest};
use opsrun_application::ports::Role;
use opsrun_domain::Slug;

use super::{CliError, input};
use crate::config::TokenArgs;
use crate::wiring::Stack;

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
