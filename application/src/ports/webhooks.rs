//! The webhook store port: endpoints a workspace registers, and the deliveries the run store
//! writes for them in the same transaction as a run's terminal transition (the outbox).

use std::collections::BTreeSet;

use async_trait::async_trait;
use opsrun_domain::{DeliveryState, RunId, TenantId, Timestamp, UserId, WebhookEvent, WorkspaceId};

use crate::{StoreError, TenantScope};

/// A webhook endpoint's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WebhookId(pub i64);

impl std::fmt::Display for WebhookId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A delivery's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryId(pub i64);

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a new endpoint is registered with.
#[derive(Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    /// Its workspace: only this workspace's runs are delivered to it.
    pub workspace: WorkspaceId,
    /// Where deliveries are POSTed (validated by the use case).
    pub url: String,
    /// The events it receives (at least one).
    pub events: BTreeSet<WebhookEvent>,
    /// The tenants whose runs it receives: the registering caller's scope, so an endpoint
    /// never learns of a run its owner could not see.
    pub scope: TenantScope,
    /// The signing secret (the store keeps it: signing needs it in clear).
    pub secret: String,
    /// Who registered it (`None`: the installation's CLI).
    pub created_by: Option<UserId>,
    /// When.
    pub at: Timestamp,
}

// The secret never reaches a log line through `{:?}`.
impl std::fmt::Debug for NewEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint")
            .field("workspace", &self.workspace)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("scope", &self.scope)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A registered endpoint, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its id.
    pub id: WebhookId,
    /// Its workspace.
    pub workspace: WorkspaceId,
    /// Where deliveries go.
    pub url: String,
    /// The events it receives.
    pub events: BTreeSet<WebhookEvent>,
    /// The tenants whose runs it receives.
    pub scope: TenantScope,
    /// Who registered it.
    pub created_by: Option<UserId>,
    /// When.
    pub created_at: Timestamp,
}

/// One delivery of one event to one endpoint, and how its attempts went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id.
    pub id: DeliveryId,
    /// The endpoint.
    pub endpoint: WebhookId,
    /// The run the event is about.
    pub run: RunId,
    /// The run's tenant.
    pub tenant: TenantId,
    /// The event.
    pub event: WebhookEvent,
    /// The event's stable id (the same on every delivery of this event).
    pub event_id: String,
    /// When the event happened (the transition's time).
    pub occurred_at: Timestamp,
    /// When this delivery was queued: the event's time, or when a redelivery was asked for
    /// (its retry window runs from here).
    pub created_at: Timestamp,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<Timestamp>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<Timestamp>,
    /// The HTTP status the last attempt got, if it got an answer.
    pub last_status: Option<u16>,
    /// How long the last attempt took.
    pub last_latency_ms: Option<i64>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// The delivery this one redelivers, if it is a redelivery.
    pub redelivery_of: Option<DeliveryId>,
}

/// A due delivery claimed by one dispatcher, with what it needs to send it.
#[derive(Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// The delivery (its `attempts` before this one).
    pub delivery: Delivery,
    /// The endpoint (its URL, and the workspace and scope the run is read in).
    pub endpoint: Endpoint,
    /// The endpoint's signing secret.
    pub secret: String,
    /// Until when this claim holds it: an attempt is recorded only while it does (see
    /// [`WebhookStore::record_attempt`]).
    pub lease_until: Timestamp,
}

impl std::fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueDelivery")
            .field("delivery", &self.delivery)
            .field("endpoint", &self.endpoint)
            .field("lease_until", &self.lease_until)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The result of one attempt, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When the attempt started.
    pub at: Timestamp,
    /// The HTTP status, if the endpoint answered.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: i64,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Where the delivery stands after it.
    pub state: DeliveryState,
    /// When to try again (`Pending` only).
    pub next_attempt_at: Option<Timestamp>,
}

/// Webhook endpoints and deliveries.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Registers an endpoint.
    async fn add_endpoint(&self, new: NewEndpoint) -> Result<Endpoint, StoreError>;

    /// The endpoints of `workspace` (every workspace's for `None`), newest first.
    async fn endpoints(&self, workspace: Option<WorkspaceId>) -> Result<Vec<Endpoint>, StoreError>;

    /// Removes endpoint `id` (of `workspace`, when given) and its deliveries; `None` when there
    /// is no such endpoint.
    async fn remove_endpoint(
        &self,
        workspace: Option<WorkspaceId>,
        id: WebhookId,
    ) -> Result<Option<Endpoint>, StoreError>;

    /// Endpoint `id`'s deliveries, newest first, at most `limit`.
    async fn deliveries(&self, id: WebhookId, limit: u32) -> Result<Vec<Delivery>, StoreError>;

    /// Queues delivery `delivery` of endpoint `id` again as a new pending delivery of the same
    /// event, due at `at`; `None` when the endpoint has no such delivery.
    async fn redeliver(
        &self,
        id: WebhookId,
        delivery: DeliveryId,
        at: Timestamp,
    ) -> Result<Option<Delivery>, StoreError>;

    /// Claims at most `limit` pending deliveries due at `now`, oldest first: each is hidden from
    /// other claims until `lease_until` (a dispatcher that dies mid-attempt leaves it to be
    /// claimed again then: at least once).
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError>;

    /// Records an attempt of delivery `id` claimed until `lease_until`; `false` (nothing
    /// recorded) when that claim no longer holds it (its lease ran out and another dispatcher
    /// claimed it, or it is no longer pending), so a late answer never overwrites a newer one.
    async fn record_attempt(
        &self,
        id: DeliveryId,
        lease_until: Timestamp,
        attempt: AttemptRecord,
    ) -> Result<bool, StoreError>;

    /// How many deliveries are in each state (for metrics).
    async fn delivery_counts(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError>;
}
