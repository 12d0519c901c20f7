//! The webhooks room: endpoints and their deliveries ([`WebhookStore`]). The deliveries of a
//! terminal transition are inserted by the completion itself (`lifecycle`), through
//! [`SqlRunStore::enqueue_deliveries`] here.

use async_trait::async_trait;
use opsrun_application::StoreError;
use opsrun_application::ports::{
    AttemptRecord, Delivery, DeliveryId, DueDelivery, Endpoint, NewEndpoint, TenantScope,
    WebhookId, WebhookStore,
};
use opsrun_domain::{
    DeliveryState, OperationRun, TenantId, Timestamp, UserId, WebhookEvent, WorkspaceId,
};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Value};

use super::SqlRunStore;

const ENDPOINT_COLUMNS: &str = "id, workspace_id, url, events, tenant_ids, created_by, created_at";
const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, d.run_id, d.tenant_id, d.event_type, \
    d.event_id, d.occurred_at, d.created_at, d.state, d.attempts, d.next_attempt_at, \
    d.last_attempt_at, d.last_status, d.last_latency_ms, d.last_error, d.redelivery_of";

/// `,a,b,` for a list, so one `LIKE '%,a,%'` finds a member.
fn comma_list<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let mut out = String::from(",");
    for item in items {
        out.push_str(&item.to_string());
        out.push(',');
    }
    out
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

impl SqlRunStore {
    /// Inserts a pending delivery of `event` of `run` for every endpoint of its workspace that
    /// subscribes to the event and may see the run's tenant, in `tx` (the transition's).
    pub(super) async fn enqueue_deliveries<C: ConnectionTrait>(
        &self,
        tx: &C,
        run: &OperationRun,
        event: WebhookEvent,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.exec(
            tx,
            "INSERT INTO webhook_deliveries (endpoint_id, run_id, tenant_id, event_type, event_id, \
             occurred_at, created_at, state, attempts, next_attempt_at) \
             SELECT id, $1, $2, $3, $4, $5, $5, 'pending', 0, $5 FROM webhook_endpoints \
             WHERE workspace_id = $6 AND events LIKE $7 AND (tenant_ids IS NULL OR tenant_ids LIKE $8)",
            vec![
                run.id().value().into(),
                run.tenant().value().into(),
                event.key().into(),
                event.event_id(run.id()).into(),
                at.as_millis().into(),
                run.workspace().value().into(),
                format!("%,{},%", event.key()).into(),
                format!("%,{},%", run.tenant().value()).into(),
            ],
        )
        .await?;
        Ok(())
    }

    fn endpoint_of(row: &QueryResult) -> Result<Endpoint, StoreError> {
        Self::endpoint_of_columns(row, "id", "created_at")
    }

    fn endpoint_of_columns(
        row: &QueryResult,
        id: &str,
        created_at: &str,
    ) -> Result<Endpoint, StoreError> {
        let events = Self::text(row, "events")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|key| {
                WebhookEvent::parse(key).ok_or_else(|| corrupt(format!("webhook event '{key}'")))
            })
            .collect::<Result<_, _>>()?;
        let scope = match Self::opt_text(row, "tenant_ids")? {
            None => TenantScope::All,
            Some(list) => TenantScope::Only(
                list.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|id| {
                        id.parse::<i64>()
                            .map(TenantId::new)
                            .map_err(|_| corrupt(format!("webhook tenant id '{id}'")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Endpoint {
            id: WebhookId(Self::int(row, id)?),
            workspace: WorkspaceId::new(Self::int(row, "workspace_id")?),
            url: Self::text(row, "url")?,
            events,
            scope,
            created_by: Self::opt_int(row, "created_by")?.map(UserId::new),
            created_at: Timestamp::from_millis(Self::int(row, created_at)?),
        })
    }

    /// The endpoint columns of a claim row (`id` and `created_at` are the delivery's there).
    fn endpoint_of_claim(row: &QueryResult) -> Result<Endpoint, StoreError> {
        Self::endpoint_of_columns(row, "endpoint_id", "endpoint_created_at")
    }

    fn delivery_of(row: &QueryResult) -> Result<Delivery, StoreError> {
        let event = Self::text(row, "event_type")?;
        let state = Self::text(row, "state")?;
        let at = |col: &str| -> Result<Option<Timestamp>, StoreError> {
            Ok(Self::opt_int(row, col)?.map(Timestamp::from_millis))
        };
        Ok(Delivery {
            id: DeliveryId(Self::int(row, "id")?),
            endpoint: WebhookId(Self::int(row, "endpoint_id")?),
            run: opsrun_domain::RunId::new(Self::int(row, "run_id")?),
            tenant: TenantId::new(Self::int(row, "tenant_id")?),
            event: WebhookEvent::parse(&event)
                .ok_or_else(|| corrupt(format!("webhook event '{event}'")))?,
            event_id: Self::text(row, "event_id")?,
            occurred_at: Timestamp::from_millis(Self::int(row, "occurred_at")?),
            created_at: Timestamp::from_millis(Self::int(row, "created_at")?),
            state: DeliveryState::parse(&state)
                .ok_or_else(|| corrupt(format!("delivery state '{state}'")))?,
            attempts: u32::try_from(Self::int(row, "attempts")?).unwrap_or(u32::MAX),
            next_attempt_at: at("next_attempt_at")?,
            last_attempt_at: at("last_attempt_at")?,
            last_status: Self::opt_int(row, "last_status")?.and_then(|s| u16::try_from(s).ok()),
            last_latency_ms: Self::opt_int(row, "last_latency_ms")?,
            last_error: Self::opt_text(row, "last_error")?,
            redelivery_of: Self::opt_int(row, "redelivery_of")?.map(DeliveryId),
        })
    }

    async fn endpoint_rows(
        &self,
        filter: &str,
        values: Vec<Value>,
    ) -> Result<Vec<Endpoint>, StoreError> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE {filter} ORDER BY id DESC"
        );
        self.rows(self.connection(), &sql, values)
            .await?
            .iter()
            .map(Self::endpoint_of)
            .collect()
    }
}

#[async_trait]
impl WebhookStore for SqlRunStore {
    async fn add_endpoint(&self, new: NewEndpoint) -> Result<Endpoint, StoreError> {
        let tenants = match &new.scope {
            TenantScope::All => None,
            TenantScope::Only(ids) => Some(comma_list(ids.iter().map(|t| t.value()))),
        };
        let rows = self
            .rows(
                self.connection(),
                &format!(
                    "INSERT INTO webhook_endpoints (workspace_id, url, events, tenant_ids, secret, \
                     created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     RETURNING {ENDPOINT_COLUMNS}"
                ),
                vec![
                    new.workspace.value().into(),
                    new.url.into(),
                    comma_list(new.events.iter().map(|e| e.key())).into(),
                    tenants.into(),
                    new.secret.into(),
                    new.created_by.map(UserId::value).into(),
                    new.at.as_millis().into(),
                ],
            )
            .await?;
        rows.first()
            .map(Self::endpoint_of)
            .ok_or_else(|| corrupt("the new webhook endpoint was not returned"))?
    }

    async fn endpoints(&self, workspace: Option<WorkspaceId>) -> Result<Vec<Endpoint>, StoreError> {
        match workspace {
            Some(ws) => {
                self.endpoint_rows("workspace_id = $1", vec![ws.value().into()])
                    .await
            }
            None => self.endpoint_rows("1 = 1", vec![]).await,
        }
    }

    async fn remove_endpoint(
        &self,
        workspace: Option<WorkspaceId>,
        id: WebhookId,
    ) -> Result<Option<Endpoint>, StoreError> {
        let tx = self.write_tx().await?;
        let (filter, values) = match workspace {
            Some(ws) => (
                "id = $1 AND workspace_id = $2",
                vec![id.0.into(), ws.value().into()],
            ),
            None => ("id = $1", vec![id.0.into()]),
        };
        let found = self
            .rows(
                &tx,
                &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE {filter}"),
                values.clone(),
            )
            .await?;
        let Some(endpoint) = found.first().map(Self::endpoint_of).transpose()? else {
            self.rollback(tx).await?;
            return Ok(None);
        };
        self.exec(
            &tx,
            "DELETE FROM webhook_deliveries WHERE endpoint_id = $1",
            vec![id.0.into()],
        )
        .await?;
        self.exec(
            &tx,
            &format!("DELETE FROM webhook_endpoints WHERE {filter}"),
            values,
        )
        .await?;
        self.commit(tx).await?;
        Ok(Some(endpoint))
    }

    async fn deliveries(&self, id: WebhookId, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d WHERE d.endpoint_id = $1 \
             ORDER BY d.id DESC LIMIT $2"
        );
        self.rows(
            self.connection(),
            &sql,
            vec![id.0.into(), i64::from(limit).into()],
        )
        .await?
        .iter()
        .map(Self::delivery_of)
        .collect()
    }

    async fn redeliver(
        &self,
        id: WebhookId,
        delivery: DeliveryId,
        at: Timestamp,
    ) -> Result<Option<Delivery>, StoreError> {
        let sql = format!(
            "INSERT INTO webhook_deliveries (endpoint_id, run_id, tenant_id, event_type, event_id, \
             occurred_at, created_at, state, attempts, next_attempt_at, redelivery_of) \
             SELECT endpoint_id, run_id, tenant_id, event_type, event_id, occurred_at, $3, \
             'pending', 0, $3, id FROM webhook_deliveries WHERE id = $2 AND endpoint_id = $1 \
             RETURNING {}",
            DELIVERY_COLUMNS.replace("d.", "")
        );
        let rows = self
            .rows(
                self.connection(),
                &sql,
                vec![id.0.into(), delivery.0.into(), at.as_millis().into()],
            )
            .await?;
        rows.first().map(Self::delivery_of).transpose()
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        // A plain read first: most wake-ups find nothing due, and need no write lock.
        let any = self
            .rows(
                self.connection(),
                "SELECT id FROM webhook_deliveries WHERE state = 'pending' \
                 AND next_attempt_at <= $1 LIMIT 1",
                vec![now.as_millis().into()],
            )
            .await?;
        if any.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.write_tx().await?;
        // PostgreSQL: concurrent dispatchers skip each other's rows instead of waiting;
        // SQLite serializes write transactions already.
        let lock = match self.backend() {
            DbBackend::Postgres => " FOR UPDATE SKIP LOCKED",
            _ => "",
        };
        let due = self
            .rows(
                &tx,
                &format!(
                    "SELECT id FROM webhook_deliveries WHERE state = 'pending' \
                     AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2{lock}"
                ),
                vec![now.as_millis().into(), i64::from(limit).into()],
            )
            .await?;
        let ids = due
            .iter()
            .map(|row| Self::int(row, "id"))
            .collect::<Result<Vec<i64>, _>>()?;
        if ids.is_empty() {
            self.rollback(tx).await?;
            return Ok(Vec::new());
        }
        let list = ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .rows(
                &tx,
                &format!(
                    "SELECT {DELIVERY_COLUMNS}, e.workspace_id, e.url, e.events, e.tenant_ids, \
                     e.created_by, e.created_at AS endpoint_created_at, e.secret FROM webhook_deliveries d \
                     JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id IN ({list}) \
                     ORDER BY d.next_attempt_at, d.id"
                ),
                vec![],
            )
            .await?;
        self.exec(
            &tx,
            &format!("UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE id IN ({list})"),
            vec![lease_until.as_millis().into()],
        )
        .await?;
        self.commit(tx).await?;
        rows.iter()
            .map(|row| {
                Ok(DueDelivery {
                    delivery: Self::delivery_of(row)?,
                    endpoint: Self::endpoint_of_claim(row)?,
                    secret: Self::text(row, "secret")?,
                    lease_until,
                })
            })
            .collect()
    }

    async fn record_attempt(
        &self,
        id: DeliveryId,
        lease_until: Timestamp,
        attempt: AttemptRecord,
    ) -> Result<bool, StoreError> {
        // Fenced by the claim: only while this claim's lease is the row's due time.
        let changed = self
            .exec(
                self.connection(),
                "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $2, \
             next_attempt_at = $3, last_attempt_at = $4, last_status = $5, \
             last_latency_ms = $6, last_error = $7 \
             WHERE id = $1 AND state = 'pending' AND next_attempt_at = $8",
                vec![
                    id.0.into(),
                    attempt.state.key().into(),
                    attempt.next_attempt_at.map(Timestamp::as_millis).into(),
                    attempt.at.as_millis().into(),
                    attempt.status.map(i64::from).into(),
                    attempt.latency_ms.into(),
                    attempt.error.into(),
                    lease_until.as_millis().into(),
                ],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn delivery_counts(&self) -> Result<Vec<(DeliveryState, u64)>, StoreError> {
        let rows = self
            .rows(
                self.connection(),
                "SELECT state, COUNT(*) AS n FROM webhook_deliveries GROUP BY state",
                vec![],
            )
            .await?;
        let mut out: Vec<(DeliveryState, u64)> =
            DeliveryState::ALL.into_iter().map(|s| (s, 0)).collect();
        for row in &rows {
            let state = Self::text(row, "state")?;
            let n = u64::try_from(Self::int(row, "n")?).unwrap_or(0);
            if let Some(slot) = out.iter_mut().find(|(s, _)| s.key() == state) {
                slot.1 = n;
            }
        }
        Ok(out)
    }
}
