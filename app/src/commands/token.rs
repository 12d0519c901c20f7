//! `opsrun token create|list|revoke`: API tokens through the `IssueToken` and `ManageTokens`
//! use cases.

use std::io::Write;

use anyhow::Context;
use opsrun_application::admin::{AdminError, TokenRequest};
use opsrun_application::ports::{Role, TenantScope, TokenId};
use opsrun_domain::Slug;

use super::{CliError, input};
use crate::config::TokenArgs;
use crate::web::api::dto::TokenDoc;
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
    let expires_in = args.expires_in.as_deref().map(lifetime).transpose()?;
    let token = stack
        .issue_token
        .execute(TokenRequest {
            workspace,
            create_workspace: args.create_workspace,
            email: args.email.clone(),
            role,
            tenants,
            expires_in,
        })
        .await
        .map_err(admin)?;
    writeln!(out, "{}", token.token.expose()).context("failed to write")?;
    Ok(())
}

/// A lifetime such as `90d`, `12h` or `30m`.
fn lifetime(text: &str) -> Result<std::time::Duration, CliError> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        input(format!(
            "--expires-in must be a duration such as 90d, 12h or 30m ({e})"
        ))
    })
}

/// Runs `token list`: a header and one tab-separated line per token, newest first; with
/// `-o json` the API's token documents (`GET /api/tokens`), each with its `workspace`.
///
/// # Errors
///
/// [`CliError`].
pub async fn list_tokens(
    stack: &Stack,
    workspace: Option<&str>,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let workspaces = stack
        .admin
        .workspaces()
        .await
        .map_err(|e| CliError::Failure(e.into()))?;
    let only = match workspace {
        None => None,
        Some(text) => {
            let slug = Slug::parse(text).map_err(|e| input(format!("--workspace: {e}")))?;
            let found = workspaces.iter().find(|(_, s)| *s == slug);
            Some(
                found
                    .ok_or_else(|| input(format!("workspace '{slug}' does not exist")))?
                    .0,
            )
        }
    };
    let tokens = stack.tokens.list(only).await.map_err(admin)?;
    let mut docs = Vec::new();
    for token in &tokens {
        let workspace = workspaces
            .iter()
            .find(|(id, _)| *id == token.workspace)
            .map_or_else(|| token.workspace.to_string(), |(_, s)| s.to_string());
        let tenants = match &token.scope {
            TenantScope::All => None,
            TenantScope::Only(ids) => Some(
                stack
                    .directory
                    .tenants_of(token.workspace)
                    .await
                    .map_err(|e| CliError::Failure(e.into()))?
                    .into_iter()
                    .filter(|t| ids.contains(&t.id))
                    .map(|t| t.slug.to_string())
                    .collect(),
            ),
        };
        let doc = TokenDoc::new(token, stack.tokens.status(token), tenants);
        docs.push((workspace, doc));
    }
    if as_json {
        let items: Vec<serde_json::Value> = docs
            .into_iter()
            .map(|(workspace, doc)| {
                let mut value = serde_json::to_value(doc).unwrap_or_default();
                value["workspace"] = serde_json::Value::String(workspace);
                value
            })
            .collect();
        return super::write_json(out, &serde_json::json!({ "items": items }));
    }
    let mut lines =
        vec!["ID\tWORKSPACE\tUSER\tROLE\tTENANTS\tCREATED\tEXPIRES\tLAST USED\tSTATUS".to_owned()];
    for (workspace, doc) in docs {
        let dash = |t: Option<String>| t.unwrap_or_else(|| "-".to_owned());
        lines.push(format!(
            "{}\t{workspace}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            doc.id,
            doc.user,
            doc.role,
            doc.tenants
                .map_or_else(|| "all".to_owned(), |t| t.join(",")),
            doc.created_at,
            dash(doc.expires_at),
            dash(doc.last_used_at),
            doc.status,
        ));
    }
    for line in lines {
        writeln!(out, "{line}").context("failed to write")?;
    }
    Ok(())
}

/// Runs `token revoke ID`: one line saying what was revoked.
///
/// # Errors
///
/// [`CliError`] (exit 2 for an id that is not a token).
pub async fn revoke_token(stack: &Stack, id: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let id = id
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| {
            input("the token id must be a positive integer (see `opsrun token list`)")
        })?;
    let record = stack
        .tokens
        .revoke(None, TokenId(id))
        .await
        .map_err(admin)?;
    writeln!(out, "revoked token {} of {}", record.id, record.email).context("failed to write")?;
    Ok(())
}

/// An administration refusal is bad input (exit 2); a storage failure is a failure (exit 1).
pub(crate) fn admin(error: AdminError) -> CliError {
    match error {
        AdminError::Invalid(message) | AdminError::NotFound(message) => input(message),
        AdminError::Store(e) => CliError::Failure(anyhow::Error::new(e)),
    }
}
