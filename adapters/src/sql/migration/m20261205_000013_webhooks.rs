//! Webhooks: the endpoints a workspace registers, and one delivery row per event and endpoint,
//! inserted in the same transaction as the run's terminal transition (the outbox), so nothing
//! is lost on a crash and, by the partial unique index, nothing is created twice.
//!
//! `events` and `tenant_ids` are comma lists with a comma at each end (`,operation.completed,`,
//! `,3,5,`; `tenant_ids` NULL: every tenant), so the completion's one `INSERT … SELECT` picks
//! the endpoints with a `LIKE`.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, big_pk_auto, string, text, text_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("webhook_endpoints")
                    .col(big_pk_auto("id"))
                    .col(big_integer("workspace_id"))
                    .col(text("url"))
                    .col(string("events"))
                    .col(text_null("tenant_ids"))
                    .col(string("secret"))
                    .col(big_integer_null("created_by"))
                    .col(big_integer("created_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("webhook_endpoints", "workspace_id")
                            .to("workspaces", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_endpoints_workspace")
                    .table("webhook_endpoints")
                    .col("workspace_id")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("webhook_deliveries")
                    .col(big_pk_auto("id"))
                    .col(big_integer("endpoint_id"))
                    .col(big_integer("run_id"))
                    .col(big_integer("tenant_id"))
                    .col(string("event_type"))
                    .col(string("event_id"))
                    .col(big_integer("occurred_at"))
                    .col(big_integer("created_at"))
                    .col(string("state"))
                    .col(big_integer("attempts"))
                    .col(big_integer_null("next_attempt_at"))
                    .col(big_integer_null("last_attempt_at"))
                    .col(big_integer_null("last_status"))
                    .col(big_integer_null("last_latency_ms"))
                    .col(text_null("last_error"))
                    .col(big_integer_null("redelivery_of"))
                    // No foreign key to the endpoint: a completion's insert must never wait
                    // on (or fail with) an endpoint's concurrent removal. A delivery whose
                    // endpoint is gone is never claimed (claims join the endpoint) and is
                    // pruned by retention.
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // One original delivery per event and endpoint; redeliveries are extra rows.
        db.execute_unprepared(
            "CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries \
             (endpoint_id, event_id) WHERE redelivery_of IS NULL",
        )
        .await?;
        // What a dispatcher claims: pending rows by due time.
        db.execute_unprepared(
            "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) \
             WHERE state = 'pending'",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_deliveries_endpoint")
                    .table("webhook_deliveries")
                    .col("endpoint_id")
                    .col("id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("webhook_deliveries").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("webhook_endpoints").to_owned())
            .await
    }
}
