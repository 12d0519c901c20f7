//! Token lifecycle and page sessions: `api_tokens` gains `expires_at` and `last_used_at`;
//! `page_sessions` holds server-side sessions (the hash of the cookie secret, the token the
//! user logged in with, when it was opened and last used), so logout and revocation end them.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for column in ["expires_at", "last_used_at"] {
            db.execute_unprepared(&format!(
                "ALTER TABLE api_tokens ADD COLUMN {column} BIGINT"
            ))
            .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("page_sessions")
                    .col(string("session_hash").primary_key())
                    .col(big_integer("token_id"))
                    .col(big_integer("created_at"))
                    .col(big_integer("last_seen_at"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("page_sessions", "token_id")
                            .to("api_tokens", "id"),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("page_sessions_token")
                    .table("page_sessions")
                    .col("token_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("page_sessions").to_owned())
            .await?;
        let db = manager.get_connection();
        for column in ["expires_at", "last_used_at"] {
            db.execute_unprepared(&format!("ALTER TABLE api_tokens DROP COLUMN {column}"))
                .await?;
        }
        Ok(())
    }
}
