//! Webhook endpoints and deliveries in memory: the reference the SQL store is checked against.

use async_trait::async_trait;
use opsrun_domain::{DeliveryState, OperationRun, Timestamp, WebhookEvent, WorkspaceId};

use super::MemoryRunStore;
use crate::StoreError;
use crate::ports::{
    AttemptRecord, Delivery, DeliveryId, DueDelivery, Endpoint, NewEndpoint, WebhookId,
    WebhookStore,
};

/// The webhook part of the memory state.
#[derive(Debug, Default)]
pub(super) struct Webhooks {
    endpoints: Vec<(Endpoint, String)>,
    deliveries: Vec<Delivery>,
    next_endpoint: i64,
    next_delivery: i64,
}

impl Webhooks {
    /// Drops at most `batch` ended deliveries created before `before`; how many.
    pub(super) fn prune(&mut self, before: Timestamp, batch: u32) -> u64 {
        let old: Vec<DeliveryId> = self
            .deliveries
            .iter()
            .filter(|d| d.state != DeliveryState::Pending && d.created_at < before)
            .take(batch as usize)
            .map(|d| d.id)
            .collect();
        self.deliveries.retain(|d| !old.contains(&d.id));
        old.len() as u64
    }

    /// Queues `event` of `run` for every endpoint of its workspace that subscribes to it and
    /// may see its tenant (called inside the transition's lock: the outbox).
    pub(super) fn enqueue(&mut self, run: &OperationRun, event: WebhookEvent, at: Timestamp) {
        let targets: Vec<_> = self
            .endpoints
            .iter()
            .filter(|(e, _)| {
                e.workspace == run.workspace()
                    && e.events.contains(&event)
                    && e.scope.allows(run.tenant())
            })
            .map(|(e, _)| e.id)
            .collect();
        for endpoint in targets {
            self.next_delivery += 1;
            self.deliveries.push(Delivery {
                id: DeliveryId(self.next_delivery),
                endpoint,
                run: run.id(),
                tenant: run.tenant(),
                event,
                event_id: event.event_id(run.id()),
                occurred_at: at,
                created_at: at,
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at: Some(at),
                last_attempt_at: None,
                last_status: None,
                last_latency_ms: None,
                last_error: None,
                redelivery_of: None,
            });
        }
    }
}

#[async_trait]
impl WebhookStore for MemoryRunStore {
    async fn add_endpoint(&self, new: NewEndpoint) -> Result<Endpoint, StoreError> {
        let mut state = self.lock();
        let hooks = &mut state.webhooks;
        hooks.next_endpoint += 1;
        let endpoint = Endpoint {
            id: WebhookId(hooks.next_endpoint),
            workspace: new.workspace,
            url: new.url,
            events: new.events,
            scope: new.scope,
            created_by: new.created_by,
            created_at: new.at,
        };
        hooks.endpoints.push((endpoint.clone(), new.secret));
        Ok(endpoint)
    }

    async fn endpoints(&self, workspace: Option<WorkspaceId>) -> Result<Vec<Endpoint>, StoreError> {
        let state = self.lock();
        let mut out: Vec<Endpoint> = state
            .webhooks
            .endpoints
            .iter()
            .filter(|(e, _)| workspace.is_none_or(|w| e.workspace == w))
            .map(|(e, _)| e.clone())
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.id));
        Ok(out)
    }

    async fn remove_endpoint(
        &self,
        workspace: Option<WorkspaceId>,
        id: WebhookId,
    ) -> Result<Option<Endpoint>, StoreError> {
        let mut state = self.lock();
        let hooks = &mut state.webhooks;
        let Some(at) = hooks
            .endpoints
            .iter()
            .position(|(e, _)| e.id == id && workspace.is_none_or(|w| e.workspace == w))
        else {
            return Ok(None);
        };
        let (endpoint, _) = hooks.endpoints.remove(at);
        hooks.deliveries.retain(|d| d.endpoint != id);
        Ok(Some(endpoint))
    }

    async fn deliveries(&self, id: WebhookId, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let state = self.lock();
        Ok(state
            .webhooks
            .deliveries
            .iter()
            .rev()
            .filter(|d| d.endpoint == id)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn redeliver(
        &self,
        id: WebhookId,
        delivery: DeliveryId,
        at: Timestamp,
    ) -> Result<Option<Delivery>, StoreError> {
        let mut state = self.lock();
        let hooks = &mut state.webhooks;
        let Some(original) = hooks
            .deliveries
            .iter()
            .find(|d| d.id == delivery && d.endpoint == id)
            .cloned()
        else {
            return Ok(None);
        };
        hooks.next_delivery += 1;
        let again = Delivery {
            id: DeliveryId(hooks.next_delivery),
            created_at: at,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: Some(at),
            last_attempt_at: None,
            last_status: None,
            last_latency_ms: None,
            last_error: None,
            redelivery_of: Some(original.id),
            ..original
        };
        hooks.deliveries.push(again.clone());
        Ok(Some(again))
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let mut state = self.lock();
        let hooks = &mut state.webhooks;
        let mut due: Vec<usize> = (0..hooks.deliveries.len())
            .filter(|i| {
                let d = &hooks.deliveries[*i];
                d.state == DeliveryState::Pending && d.next_attempt_at.is_some_and(|t| t <= now)
            })
            .collect();
        due.sort_by_key(|i| {
            (
                hooks.deliveries[*i].next_attempt_at,
                hooks.deliveries[*i].id,
            )
        });
        due.truncate(limit as usize);
        let mut out = Vec::new();
        for i in due {
            let before = hooks.deliveries[i].clone();
            hooks.deliveries[i].next_attempt_at = Some(lease_until);
            if let Some((endpoint, secret)) = hooks
                .endpoints
                .iter()
                .find(|(e, _)| e.id == before.endpoint)
            {
                out.push(DueDelivery {
                    delivery: before,
                    endpoint: endpoint.clone(),
                    secret: secret.clone(),
                    lease_until,
                });
            }
        }
        Ok(out)
    }

    async fn record_attempt(
        &self,
        id: DeliveryId,
        lease_until: Timestamp,
        attempt: AttemptRecord,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let held = state.webhooks.deliveries.iter_mut().find(|d| {
            d.id == id
                && d.state == DeliveryState::Pending
                && d.next_attempt_at == Some(lease_until)
        });
        if let Some(d) = held {
            d.attempts = d.attempts.saturating_add(1);
            d.state = attempt.state;
            d.next_attempt_at = attempt.next_attempt_at;
            d.last_attempt_at = Some(attempt.at);
            d.last_status = attempt.status;
            d.last_latency_ms = Some(attempt.latency_ms);
            d.last_error = attempt.error;
            return Ok(true);
        }
        Ok(false)
    }

    async fn delivery_counts(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError> {
        let state = self.lock();
        Ok(DeliveryState::ALL
            .into_iter()
            .map(|s| {
                let n = state
                    .webhooks
                    .deliveries
                    .iter()
                    .filter(|d| d.state == s)
                    .count();
                (s, n as u64)
            })
            .collect())
    }
}
