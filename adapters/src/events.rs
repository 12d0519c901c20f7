//! Live change notifications: an in-process broadcast of changed run ids, fed by the service
//! and, on PostgreSQL, by `LISTEN opsrun_runs` (a trigger notifies on every change of a run
//! row, whichever process made it).

use opsrun_application::ports::RunEvents;
use opsrun_domain::RunId;
use sea_orm::DatabaseConnection;
use sea_orm::sqlx::postgres::PgListener;
use tokio::sync::broadcast;

/// The notification channel the PostgreSQL trigger uses.
pub const CHANNEL: &str = "opsrun_runs";

/// A broadcast of changed run ids.
#[derive(Debug, Clone)]
pub struct BroadcastEvents {
    sender: broadcast::Sender<RunId>,
}

impl Default for BroadcastEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl BroadcastEvents {
    /// A new broadcast (slow subscribers lose old ids, never block senders).
    #[must_use]
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(4096);
        Self { sender }
    }

    /// A new subscription.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<RunId> {
        self.sender.subscribe()
    }

    /// On PostgreSQL, forwards every `NOTIFY opsrun_runs` to this broadcast until the
    /// connection fails (then it reconnects after a second). Does nothing on SQLite.
    pub fn listen(&self, db: &DatabaseConnection) {
        if db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        let pool = db.get_postgres_connection_pool().clone();
        let sender = self.sender.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut listener) = PgListener::connect_with(&pool).await
                    && listener.listen(CHANNEL).await.is_ok()
                {
                    while let Ok(notification) = listener.recv().await {
                        if let Ok(id) = notification.payload().parse::<i64>() {
                            let _ = sender.send(RunId::new(id));
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
    }
}

impl RunEvents for BroadcastEvents {
    fn changed(&self, run: RunId) {
        // No subscriber is not an error: nobody is watching right now.
        let _ = self.sender.send(run);
    }
}
