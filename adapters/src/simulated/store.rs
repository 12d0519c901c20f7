//! The simulated provider's own tables: how each simulated tenant behaves (`simulated_tenants`)
//! and what it restored (`restore_results`).

use async_trait::async_trait;
use opsrun_application::StoreError;
use opsrun_application::ports::{SimulationSettings, TenantSetup};
use opsrun_domain::{ItemKey, RunId, TenantId};
use sea_orm::{DatabaseConnection, Statement};

use crate::sql::raw;

/// The settings store of simulated tenants.
#[derive(Debug, Clone)]
pub struct SqlSimulatedTenants {
    db: DatabaseConnection,
}

impl SqlSimulatedTenants {
    /// A store over an open, migrated connection.
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    fn stmt(&self, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        raw::statement(self.db.get_database_backend(), sql, values)
    }

    /// The settings of a simulated tenant.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the tenant is not simulated; [`StoreError::Unavailable`].
    pub async fn settings(&self, tenant: TenantId) -> Result<SimulationSettings, StoreError> {
        let rows = raw::rows(
            &self.db,
            self.stmt(
                "SELECT policies, latency_ms, failure_rate, seed FROM simulated_tenants \
                 WHERE tenant_id = $1",
                vec![tenant.value().into()],
            ),
        )
        .await
        .map_err(raw::SqlError::from)?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("simulated tenant {tenant}")))?;
        Ok(SimulationSettings {
            policies: raw::int(row, "policies").map_err(raw::SqlError::from)?,
            latency_ms: raw::int(row, "latency_ms").map_err(raw::SqlError::from)?,
            failure_rate: row
                .try_get::<f64>("", "failure_rate")
                .map_err(raw::SqlError::from)?,
            seed: raw::int(row, "seed").map_err(raw::SqlError::from)?,
        })
    }
}

#[async_trait]
impl super::SimulationStore for SqlSimulatedTenants {
    async fn settings(&self, tenant: TenantId) -> Result<SimulationSettings, StoreError> {
        Self::settings(self, tenant).await
    }

    async fn record_restores(
        &self,
        run: RunId,
        restored: &[(ItemKey, i64)],
        at: i64,
    ) -> Result<(), StoreError> {
        Self::record_restores(self, run, restored, at).await
    }
}

impl SqlSimulatedTenants {
    /// Records that the simulated tenant restored each backup item for its item key of run
    /// `run`, in one statement: one row per work key, so a retried restore writes nothing twice.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn record_restores(
        &self,
        run: RunId,
        restored: &[(ItemKey, i64)],
        at: i64,
    ) -> Result<(), StoreError> {
        // 256 rows of 4 values stay far below either database's limit of bound values.
        for rows in restored.chunks(256) {
            let mut values: Vec<sea_orm::Value> = Vec::with_capacity(rows.len() * 4);
            let mut tuples = Vec::with_capacity(rows.len());
            for (i, (item, backup_item)) in rows.iter().enumerate() {
                let n = i * 4;
                tuples.push(format!("(${}, ${}, ${}, ${})", n + 1, n + 2, n + 3, n + 4));
                values.push(run.value().into());
                values.push(item.as_str().into());
                values.push((*backup_item).into());
                values.push(at.into());
            }
            let sql = format!(
                "INSERT INTO restore_results (run_id, item_key, backup_item_id, restored_at) \
                 VALUES {} ON CONFLICT DO NOTHING",
                tuples.join(", ")
            );
            raw::exec(&self.db, self.stmt(&sql, values))
                .await
                .map_err(raw::SqlError::from)?;
        }
        Ok(())
    }
}

#[async_trait]
impl TenantSetup for SqlSimulatedTenants {
    async fn configure(
        &self,
        tenant: TenantId,
        settings: SimulationSettings,
    ) -> Result<(), StoreError> {
        raw::exec(
            &self.db,
            self.stmt(
                "INSERT INTO simulated_tenants (tenant_id, policies, latency_ms, failure_rate, seed) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO UPDATE SET \
                 policies = excluded.policies, latency_ms = excluded.latency_ms, \
                 failure_rate = excluded.failure_rate, seed = excluded.seed",
                vec![
                    tenant.value().into(),
                    settings.policies.into(),
                    settings.latency_ms.into(),
                    settings.failure_rate.into(),
                    settings.seed.into(),
                ],
            ),
        )
        .await
        .map_err(raw::SqlError::from)?;
        Ok(())
    }
}
