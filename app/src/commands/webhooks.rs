//! `opsrun webhooks add|list|remove`: webhook endpoints through the `ManageWebhooks` use case,
//! as the installation (any workspace, every tenant).

use std::io::Write;

use anyhow::Context;
use opsrun_application::ports::{TenantScope, WebhookId};
use opsrun_application::webhooks::{EndpointRequest, Manager, WebhookError};

use super::{CliError, input};
use crate::config::WebhookAddArgs;
use crate::web::api::webhooks::{RegisteredWebhookDoc, WebhookDoc, webhook_doc};
use crate::wiring::Stack;

fn installation(workspace: Option<opsrun_domain::WorkspaceId>) -> Manager {
    Manager {
        workspace,
        scope: TenantScope::All,
        user: None,
    }
}

/// A refusal is bad input (exit 2); a storage failure is a failure (exit 1).
fn refused(error: WebhookError) -> CliError {
    match error {
        WebhookError::Invalid { message, .. } => input(message),
        WebhookError::NotFound(what) => input(format!("{what} not found")),
        WebhookError::Store(e) => CliError::Failure(anyhow::Error::new(e)),
    }
}

fn failure(error: impl Into<anyhow::Error>) -> CliError {
    CliError::Failure(error.into())
}

/// Runs `webhooks add`: prints the id and the secret (shown this once); with `-o json` the
/// API's document (`POST /api/webhooks`).
///
/// # Errors
///
/// [`CliError`] (exit 2 for a refused URL or event).
pub async fn add(stack: Stack, args: &WebhookAddArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let policy = args.webhooks.policy().map_err(input)?;
    let stack = stack.with_webhook_policy(policy, args.webhooks.timeout());
    let workspace = super::ops::workspace(&stack, args.workspace.as_deref()).await?;
    let registered = stack
        .webhooks
        .add(
            &installation(Some(workspace)),
            EndpointRequest {
                workspace,
                url: args.url.clone(),
                events: args.events.clone(),
            },
        )
        .await
        .map_err(refused)?;
    let webhook = webhook_doc(&stack, &registered.endpoint)
        .await
        .map_err(failure)?;
    if args.output.is_json() {
        return super::write_json(
            out,
            &RegisteredWebhookDoc {
                webhook,
                secret: registered.secret,
            },
        );
    }
    writeln!(out, "webhook {} -> {}", webhook.id, webhook.url).context("failed to write")?;
    writeln!(out, "secret (shown once): {}", registered.secret).context("failed to write")?;
    Ok(())
}

/// Runs `webhooks list`: a header and one tab-separated line per endpoint; with `-o json`
/// the API's documents, each with its `workspace`.
///
/// # Errors
///
/// [`CliError`].
pub async fn list(
    stack: &Stack,
    workspace: Option<&str>,
    as_json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let only = match workspace {
        Some(_) => Some(super::ops::workspace(stack, workspace).await?),
        None => None,
    };
    let workspaces = stack.admin.workspaces().await.map_err(failure)?;
    let endpoints = stack
        .webhooks
        .list(&installation(only))
        .await
        .map_err(refused)?;
    let mut docs: Vec<(String, WebhookDoc)> = Vec::new();
    for endpoint in &endpoints {
        let slug = workspaces
            .iter()
            .find(|(id, _)| *id == endpoint.workspace)
            .map_or_else(|| endpoint.workspace.to_string(), |(_, s)| s.to_string());
        docs.push((slug, webhook_doc(stack, endpoint).await.map_err(failure)?));
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
    writeln!(out, "ID\tWORKSPACE\tURL\tEVENTS\tTENANTS\tCREATED").context("failed to write")?;
    for (workspace, doc) in docs {
        writeln!(
            out,
            "{}\t{workspace}\t{}\t{}\t{}\t{}",
            doc.id,
            doc.url,
            doc.events.join(","),
            doc.tenants
                .map_or_else(|| "all".to_owned(), |t| t.join(",")),
            doc.created_at
        )
        .context("failed to write")?;
    }
    Ok(())
}

/// Runs `webhooks remove ID`: one line saying what was removed.
///
/// # Errors
///
/// [`CliError`] (exit 2 for an id that is not an endpoint).
pub async fn remove(stack: &Stack, id: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let id = id
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| {
            input("the webhook id must be a positive integer (see `opsrun webhooks list`)")
        })?;
    let removed = stack
        .webhooks
        .remove(&installation(None), WebhookId(id))
        .await
        .map_err(refused)?;
    writeln!(out, "removed webhook {} ({})", removed.id, removed.url).context("failed to write")?;
    Ok(())
}
