//! Webhooks (DESIGN §12): owners register endpoints; every terminal transition of a run the
//! endpoint may see becomes a delivery written with the transition (the run store does that);
//! a dispatcher claims due deliveries, an edge sends them, and [`WebhookDispatch::settle`]
//! decides from the attempt what happens next (delivered, retried with backoff, or failed).
//! Each rule is validated here once, so the CLI, the API and the pages refuse the same things
//! with the same words.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use opsrun_domain::{
    DeliveryState, RetrySchedule, Timestamp, UserId, WebhookEvent, WorkspaceId, is_public_address,
};

use crate::StoreError;
use crate::ports::{
    AttemptRecord, Clock, Delivery, DeliveryId, DueDelivery, Endpoint, Entropy, NewEndpoint,
    TenantScope, WebhookId, WebhookStore,
};

/// Longest accepted endpoint URL.
pub const MAX_URL_LEN: usize = 2_048;

/// Most endpoints one workspace can register (GitHub allows 20 per event).
pub const MAX_ENDPOINTS: usize = 20;

/// Most deliveries a delivery log shows.
pub const LOG_LIMIT: u32 = 100;

/// Where deliveries may go: the installation's choices (`serve --allow-http-webhooks`,
/// `--allow-private-webhooks`) and the retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WebhookPolicy {
    /// Plain `http://` endpoints are accepted (local use).
    pub allow_http: bool,
    /// Loopback, private and link-local addresses may be reached (local use; off by default
    /// so a registered URL cannot make the server call its own network: SSRF).
    pub allow_private: bool,
    /// When failed attempts are repeated, and for how long.
    pub retry: RetrySchedule,
}

/// Why a webhook request was refused (nothing changed) or failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The request is invalid: `code` is stable, the message says what to change.
    #[error("{message}")]
    Invalid {
        /// A stable snake_case code.
        code: &'static str,
        /// What to change.
        message: String,
    },
    /// No such endpoint or delivery (or not the caller's workspace's).
    #[error("{0} not found")]
    NotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(code: &'static str, message: impl Into<String>) -> WebhookError {
    WebhookError::Invalid {
        code,
        message: message.into(),
    }
}

/// Who manages endpoints: a workspace owner through the API or a page (their workspace and
/// tenant scope), or the installation's CLI (any workspace, every tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    /// The workspace managed; `None` for every workspace (listing and removal from the CLI).
    pub workspace: Option<WorkspaceId>,
    /// The tenants a new endpoint receives runs of.
    pub scope: TenantScope,
    /// Who registers (`None`: the CLI).
    pub user: Option<UserId>,
}

impl Manager {
    /// Whether this manager may see `endpoint`: an owner limited to some tenants sees only
    /// endpoints limited to tenants among them, so no delivery log shows it another tenant's
    /// runs.
    #[must_use]
    pub fn sees(&self, endpoint: &Endpoint) -> bool {
        match (&self.scope, &endpoint.scope) {
            (TenantScope::All, _) => true,
            (TenantScope::Only(_), TenantScope::All) => false,
            (TenantScope::Only(mine), TenantScope::Only(its)) => its.is_subset(mine),
        }
    }
}

/// What a new endpoint is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRequest {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// The URL.
    pub url: String,
    /// Event type names; empty: `operation.completed`.
    pub events: Vec<String>,
}

/// An endpoint just registered: its secret is shown once.
#[derive(Clone)]
pub struct RegisteredEndpoint {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its signing secret (`whsec_` and 64 hex digits).
    pub secret: String,
}

impl fmt::Debug for RegisteredEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredEndpoint")
            .field("endpoint", &self.endpoint)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Registers, lists and removes endpoints, reads their delivery logs and redelivers.
#[derive(Clone)]
pub struct ManageWebhooks {
    store: Arc<dyn WebhookStore>,
    entropy: Arc<dyn Entropy>,
    clock: Arc<dyn Clock>,
    policy: WebhookPolicy,
}

impl fmt::Debug for ManageWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManageWebhooks")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ManageWebhooks {
    /// The use case over the webhook store.
    #[must_use]
    pub fn new(
        store: Arc<dyn WebhookStore>,
        entropy: Arc<dyn Entropy>,
        clock: Arc<dyn Clock>,
        policy: WebhookPolicy,
    ) -> Self {
        Self {
            store,
            entropy,
            clock,
            policy,
        }
    }

    /// The installation's policy.
    #[must_use]
    pub fn policy(&self) -> WebhookPolicy {
        self.policy
    }

    /// The same use case under another installation `policy`.
    #[must_use]
    pub fn with_policy(&self, policy: WebhookPolicy) -> Self {
        Self {
            policy,
            ..self.clone()
        }
    }

    /// How many deliveries of every endpoint are in each state (for metrics).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn delivery_counts(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError> {
        self.store.delivery_counts().await
    }

    /// Registers an endpoint and returns its secret (shown this once).
    ///
    /// # Errors
    ///
    /// [`WebhookError::Invalid`] with `invalid_webhook_url` (not an absolute URL, credentials
    /// in it, over 2,048 characters), `webhook_url_not_https`, `webhook_url_private` (an
    /// address the server must not call), `invalid_webhook_events` or `too_many_webhooks`;
    /// [`WebhookError::Store`].
    pub async fn add(
        &self,
        manager: &Manager,
        request: EndpointRequest,
    ) -> Result<RegisteredEndpoint, WebhookError> {
        let url = check_url(&request.url, self.policy)?;
        let events = parse_events(&request.events)?;
        let existing = self.store.endpoints(Some(request.workspace)).await?;
        if existing.len() >= MAX_ENDPOINTS {
            return Err(invalid(
                "too_many_webhooks",
                format!("a workspace can have at most {MAX_ENDPOINTS} webhook endpoints"),
            ));
        }
        let secret = format!("whsec_{}", hex(&self.entropy.bytes()?));
        let endpoint = self
            .store
            .add_endpoint(NewEndpoint {
                workspace: request.workspace,
                url,
                events,
                scope: manager.scope.clone(),
                secret: secret.clone(),
                created_by: manager.user,
                at: self.clock.now(),
            })
            .await?;
        Ok(RegisteredEndpoint { endpoint, secret })
    }

    /// The manager's endpoints, newest first.
    ///
    /// # Errors
    ///
    /// [`WebhookError::Store`].
    pub async fn list(&self, manager: &Manager) -> Result<Vec<Endpoint>, WebhookError> {
        Ok(self
            .store
            .endpoints(manager.workspace)
            .await?
            .into_iter()
            .filter(|e| manager.sees(e))
            .collect())
    }

    /// Removes endpoint `id` and its delivery log; pending deliveries are not sent.
    ///
    /// # Errors
    ///
    /// [`WebhookError::NotFound`]; [`WebhookError::Store`].
    pub async fn remove(&self, manager: &Manager, id: WebhookId) -> Result<Endpoint, WebhookError> {
        self.endpoint(manager, id).await?;
        self.store
            .remove_endpoint(manager.workspace, id)
            .await?
            .ok_or_else(|| WebhookError::NotFound(format!("webhook {id}")))
    }

    /// Endpoint `id` and its delivery log, newest first (at most [`LOG_LIMIT`]).
    ///
    /// # Errors
    ///
    /// [`WebhookError::NotFound`]; [`WebhookError::Store`].
    pub async fn deliveries(
        &self,
        manager: &Manager,
        id: WebhookId,
    ) -> Result<(Endpoint, Vec<Delivery>), WebhookError> {
        let endpoint = self.endpoint(manager, id).await?;
        let log = self.store.deliveries(id, LOG_LIMIT).await?;
        Ok((endpoint, log))
    }

    /// Sends delivery `delivery` of endpoint `id` again, as a new delivery of the same event
    /// (same `event_id`), due now.
    ///
    /// # Errors
    ///
    /// [`WebhookError::NotFound`]; [`WebhookError::Store`].
    pub async fn redeliver(
        &self,
        manager: &Manager,
        id: WebhookId,
        delivery: DeliveryId,
    ) -> Result<Delivery, WebhookError> {
        self.endpoint(manager, id).await?;
        self.store
            .redeliver(id, delivery, self.clock.now())
            .await?
            .ok_or_else(|| WebhookError::NotFound(format!("delivery {delivery}")))
    }

    async fn endpoint(&self, manager: &Manager, id: WebhookId) -> Result<Endpoint, WebhookError> {
        self.store
            .endpoints(manager.workspace)
            .await?
            .into_iter()
            .find(|e| e.id == id && manager.sees(e))
            .ok_or_else(|| WebhookError::NotFound(format!("webhook {id}")))
    }
}

/// How one attempt went, as the sender saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// When it started.
    pub at: Timestamp,
    /// The HTTP status, if the endpoint answered.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: i64,
    /// Why it failed (no answer, refused address, timeout), if it did.
    pub error: Option<String>,
}

/// Claims due deliveries and settles their attempts: 2xx ends a delivery; anything else is
/// retried on the policy's schedule until its window closes, then the delivery is `failed`.
#[derive(Clone, Debug)]
pub struct WebhookDispatch {
    // The same store, randomness, clock and policy the endpoints are managed with.
    webhooks: ManageWebhooks,
}

impl WebhookDispatch {
    /// The dispatcher of the deliveries of `webhooks`' endpoints.
    #[must_use]
    pub fn new(webhooks: ManageWebhooks) -> Self {
        Self { webhooks }
    }

    /// The installation's policy (what the sender may reach).
    #[must_use]
    pub fn policy(&self) -> WebhookPolicy {
        self.webhooks.policy
    }

    /// Claims at most `limit` due deliveries for `lease_ms` (longer than one attempt can take).
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn claim(&self, limit: u32, lease_ms: i64) -> Result<Vec<DueDelivery>, StoreError> {
        let now = self.webhooks.clock.now();
        self.webhooks
            .store
            .claim_due(now, now.plus_millis(lease_ms), limit)
            .await
    }

    /// Records attempt `result` of `due` and returns the delivery's new state; `None` when the
    /// claim no longer held it (its lease ran out and another dispatcher took it): nothing
    /// was recorded.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    pub async fn settle(
        &self,
        due: &DueDelivery,
        result: AttemptResult,
    ) -> Result<Option<DeliveryState>, StoreError> {
        let delivery = &due.delivery;
        let attempts = delivery.attempts.saturating_add(1);
        let accepted =
            result.error.is_none() && result.status.is_some_and(|s| (200..300).contains(&s));
        let (state, next_attempt_at) = if accepted {
            (DeliveryState::Delivered, None)
        } else {
            let draw = self.webhooks.entropy.bytes()?;
            let jitter = f64::from(u16::from_le_bytes([draw[0], draw[1]])) / 65_536.0;
            // The window runs from the delivery's creation: the event for the first
            // delivery, the request for a redelivery a person asked for.
            let from = delivery.created_at;
            match self.webhooks.policy.retry.next_attempt(
                attempts,
                from,
                self.webhooks.clock.now(),
                jitter,
            ) {
                Some(next) => (DeliveryState::Pending, Some(next)),
                None => (DeliveryState::Failed, None),
            }
        };
        let error = if accepted {
            None
        } else {
            Some(result.error.clone().unwrap_or_else(|| {
                format!(
                    "the endpoint answered {}",
                    result
                        .status
                        .map_or_else(|| "nothing".to_owned(), |s| s.to_string())
                )
            }))
        };
        let recorded = self
            .webhooks
            .store
            .record_attempt(
                delivery.id,
                due.lease_until,
                AttemptRecord {
                    at: result.at,
                    status: result.status,
                    latency_ms: result.latency_ms,
                    error,
                    state,
                    next_attempt_at,
                },
            )
            .await?;
        Ok(recorded.then_some(state))
    }
}

/// The URL `text` if deliveries may go there under `policy`.
///
/// # Errors
///
/// [`WebhookError::Invalid`] naming the rule it breaks.
pub fn check_url(text: &str, policy: WebhookPolicy) -> Result<String, WebhookError> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_URL_LEN {
        return Err(invalid(
            "invalid_webhook_url",
            format!("url must be an absolute https URL of at most {MAX_URL_LEN} characters"),
        ));
    }
    let url = url::Url::parse(text).map_err(|e| {
        invalid(
            "invalid_webhook_url",
            format!("url is not an absolute URL ({e})"),
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_http => {}
        "http" => {
            return Err(invalid(
                "webhook_url_not_https",
                "url must use https (this server does not allow http webhooks)",
            ));
        }
        other => {
            return Err(invalid(
                "invalid_webhook_url",
                format!("url must use https, not {other}"),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "invalid_webhook_url",
            "url must not carry credentials: verify deliveries by their signature",
        ));
    }
    if url.fragment().is_some() {
        return Err(invalid(
            "invalid_webhook_url",
            "url must not have a fragment",
        ));
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            if name.eq_ignore_ascii_case("localhost") || name.ends_with(".localhost") {
                Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
            } else {
                None
            }
        }
        None => return Err(invalid("invalid_webhook_url", "url must name a host")),
    };
    if let Some(ip) = literal
        && !policy.allow_private
        && !is_public_address(ip)
    {
        return Err(invalid(
            "webhook_url_private",
            "url points at a loopback, private or link-local address, which this server does not call",
        ));
    }
    Ok(url.to_string())
}

fn parse_events(names: &[String]) -> Result<BTreeSet<WebhookEvent>, WebhookError> {
    if names.is_empty() {
        return Ok(BTreeSet::from([WebhookEvent::Completed]));
    }
    names
        .iter()
        .map(|name| {
            WebhookEvent::parse(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.key()).collect();
                invalid(
                    "invalid_webhook_events",
                    format!("unknown event '{name}'; known: {}", known.join(", ")),
                )
            })
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_http: bool, allow_private: bool) -> WebhookPolicy {
        WebhookPolicy {
            allow_http,
            allow_private,
            retry: RetrySchedule::default(),
        }
    }

    fn code(result: Result<String, WebhookError>) -> &'static str {
        match result {
            Err(WebhookError::Invalid { code, .. }) => code,
            Ok(_) => "ok",
            Err(_) => "other",
        }
    }

    #[test]
    fn urls_must_be_https_public_and_without_credentials() {
        let strict = policy(false, false);
        assert_eq!(
            code(check_url("https://hooks.example.com/opsrun", strict)),
            "ok"
        );
        assert_eq!(
            code(check_url("http://hooks.example.com/", strict)),
            "webhook_url_not_https"
        );
        assert_eq!(
            code(check_url("ftp://hooks.example.com/", strict)),
            "invalid_webhook_url"
        );
        assert_eq!(
            code(check_url("hooks.example.com", strict)),
            "invalid_webhook_url"
        );
        assert_eq!(
            code(check_url("https://u:p@hooks.example.com/", strict)),
            "invalid_webhook_url"
        );
        assert_eq!(code(check_url("", strict)), "invalid_webhook_url");
        for private in [
            "https://127.0.0.1/",
            "https://localhost:8443/",
            "https://[::1]/",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.5/",
            "https://0x7f000001/",
            "https://[::ffff:192.168.0.1]/",
        ] {
            assert_eq!(
                code(check_url(private, strict)),
                "webhook_url_private",
                "{private}"
            );
        }
        let local = policy(true, true);
        assert_eq!(code(check_url("http://127.0.0.1:9000/hook", local)), "ok");
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(code(check_url(&long, local)), "invalid_webhook_url");
    }

    #[test]
    fn events_default_to_completed_and_unknown_ones_are_refused() {
        assert_eq!(
            parse_events(&[]).ok(),
            Some(BTreeSet::from([WebhookEvent::Completed]))
        );
        assert!(matches!(
            parse_events(&["operation.exploded".to_owned()]),
            Err(WebhookError::Invalid {
                code: "invalid_webhook_events",
                ..
            })
        ));
    }
}
