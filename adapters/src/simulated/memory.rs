//! The simulated provider's state in memory, for the in-memory backend.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use opsrun_application::StoreError;
use opsrun_application::ports::{SimulationSettings, TenantSetup, WorkKey};
use opsrun_domain::{ItemKey, RunId, TenantId};

use super::SimulationStore;

#[derive(Default)]
struct State {
    settings: BTreeMap<TenantId, SimulationSettings>,
    restored: BTreeSet<WorkKey>,
}

/// Simulated tenants' settings and restores, in memory.
#[derive(Default)]
pub struct MemorySimulatedTenants {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemorySimulatedTenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySimulatedTenants")
            .finish_non_exhaustive()
    }
}

impl MemorySimulatedTenants {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Each call is one insert or read: a poisoned lock holds no half-applied change.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many distinct work keys were restored.
    #[must_use]
    pub fn restores(&self) -> usize {
        self.state().restored.len()
    }
}

#[async_trait]
impl SimulationStore for MemorySimulatedTenants {
    async fn settings(&self, tenant: TenantId) -> Result<SimulationSettings, StoreError> {
        self.state()
            .settings
            .get(&tenant)
            .copied()
            .ok_or_else(|| StoreError::NotFound(format!("simulated tenant {tenant}")))
    }

    async fn record_restores(
        &self,
        run: RunId,
        restored: &[(ItemKey, i64)],
        _at: i64,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        for (item, _) in restored {
            state.restored.insert(WorkKey {
                run,
                item: item.clone(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl TenantSetup for MemorySimulatedTenants {
    async fn configure(
        &self,
        tenant: TenantId,
        settings: SimulationSettings,
    ) -> Result<(), StoreError> {
        self.state().settings.insert(tenant, settings);
        Ok(())
    }
}
