//! The simulated tenant provider: a deterministic stand-in for a real MSP tenant API, so the
//! whole product runs on one machine. A host plugs its real provider into the same ports.
//!
//! # What a simulated tenant has
//!
//! A tenant created with `--policies N` has exactly N policies, `pol-00001` ... `pol-N`
//! (ids zero-padded to 5 digits), named "Policy i", spread round-robin over
//! [`POLICY_TYPES`] (policy i has type `POLICY_TYPES[(i - 1) % 8]`). Review packs have the
//! sections [`SECTIONS`]; evidence snapshots the dimensions [`DIMENSIONS`].
//!
//! # Which items fail
//!
//! Every provider call for an item key (a policy type, a section, a dimension, a policy id, a
//! backup item id) first sleeps the tenant's latency, then fails for good (reason
//! `simulated.item_failed`) exactly when
//!
//! ```text
//! fnv1a_64(format!("{seed}:{key}")) % 1_000_000 < floor(failure_rate * 1_000_000)
//! ```
//!
//! see [`fails`]. So a test can compute the expected counts from the seed and the keys.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use opsrun_application::ProviderError;
use opsrun_application::StoreError;
use opsrun_application::coalesce::{Coalescer, Combine, Submission, combined, fail_all};
use opsrun_application::ports::SimulationSettings;
use opsrun_application::ports::{
    BackupItem, EvidenceSource, Policy, PolicyPayload, PolicyProvider, RestoreTarget,
    ReviewPackSource, WorkKey,
};
use opsrun_domain::{ItemKey, RunId, TenantId, Timestamp};

pub use memory::MemorySimulatedTenants;
pub use store::SqlSimulatedTenants;

mod memory;
mod store;

/// Where the simulated provider keeps its own state: each tenant's settings and what it
/// restored. One implementation per backend (SQL tables, or memory).
#[async_trait]
pub trait SimulationStore: Send + Sync {
    /// The settings of a simulated tenant.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when the tenant is not simulated; [`StoreError::Unavailable`].
    async fn settings(&self, tenant: TenantId) -> Result<SimulationSettings, StoreError>;

    /// Records that each backup item was restored for its item key of run `run` (once per
    /// work key), in one write.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    async fn record_restores(
        &self,
        run: RunId,
        restored: &[(ItemKey, i64)],
        at: i64,
    ) -> Result<(), StoreError>;
}

/// The simulated tenant's restore rows of concurrent restores of one run, written in one
/// statement (as the engine's records are): the tenant stands in for a remote API, so its own
/// bookkeeping should not be what a benchmark of the engine measures, and it stays exact and
/// durable (each restore returns once its row is written).
#[derive(Debug)]
struct Restores;

#[async_trait]
impl Combine for Restores {
    type Target = dyn SimulationStore;
    type Item = (ItemKey, i64);
    type Answer = ();

    async fn write(store: &dyn SimulationStore, run: RunId, batch: Vec<Submission<Self>>) -> u64 {
        let Some((at, all)) = combined(&batch) else {
            return 0;
        };
        match store.record_restores(run, &all, at.as_millis()).await {
            Ok(()) => batch.into_iter().for_each(|s| s.answer(Ok(()))),
            Err(error) => fail_all(batch, &StoreError::Unavailable(error.to_string().into())),
        }
        1
    }
}

/// The policy types every simulated tenant has, in order.
pub const POLICY_TYPES: [&str; 8] = [
    "device_configuration",
    "compliance_policy",
    "app_protection",
    "conditional_access",
    "endpoint_security",
    "windows_update",
    "app_configuration",
    "enrollment_restriction",
];

/// The review-pack sections, in pack order.
pub const SECTIONS: [&str; 6] = [
    "summary",
    "inventory",
    "compliance",
    "backups",
    "baselines",
    "recommendations",
];

/// The evidence dimensions, in snapshot order.
pub const DIMENSIONS: [&str; 5] = ["identity", "devices", "applications", "data", "access"];

/// FNV-1a, 64 bit.
#[must_use]
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Whether the item `key` of a tenant with `seed` and `failure_rate` fails (see the module
/// documentation).
#[must_use]
pub fn fails(seed: i64, failure_rate: f64, key: &str) -> bool {
    let threshold = (failure_rate.clamp(0.0, 1.0) * 1_000_000.0).floor() as u64;
    fnv1a(format!("{seed}:{key}").as_bytes()) % 1_000_000 < threshold
}

/// The id of policy `i` (1-based).
#[must_use]
pub fn policy_id(i: i64) -> String {
    format!("pol-{i:05}")
}

fn policy(i: i64) -> Policy {
    let index = usize::try_from(i - 1).unwrap_or(0) % POLICY_TYPES.len();
    Policy {
        id: policy_id(i),
        policy_type: POLICY_TYPES[index].to_owned(),
        name: format!("Policy {i}"),
    }
}

/// The simulated tenants, whose settings come from a [`SimulationStore`].
#[derive(Clone)]
pub struct SimulatedProvider {
    store: Arc<dyn SimulationStore>,
    settings: Arc<Mutex<HashMap<TenantId, SimulationSettings>>>,
    restores: Arc<Coalescer<Restores>>,
}

impl std::fmt::Debug for SimulatedProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatedProvider").finish_non_exhaustive()
    }
}

impl SimulatedProvider {
    /// A provider reading tenant settings from `store`.
    #[must_use]
    pub fn new(store: Arc<dyn SimulationStore>) -> Self {
        Self {
            restores: Arc::new(Coalescer::new(store.clone())),
            store,
            settings: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn settings(&self, tenant: TenantId) -> Result<SimulationSettings, ProviderError> {
        let cached = self
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tenant)
            .copied();
        if let Some(settings) = cached {
            return Ok(settings);
        }
        let settings = self
            .store
            .settings(tenant)
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))?;
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant, settings);
        Ok(settings)
    }

    /// Sleeps the tenant's latency, then fails the item if the seed says so.
    async fn call(&self, tenant: TenantId, key: &str) -> Result<SimulationSettings, ProviderError> {
        let settings = self.settings(tenant).await?;
        if settings.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(
                u64::try_from(settings.latency_ms).unwrap_or(0),
            ))
            .await;
        }
        if fails(settings.seed, settings.failure_rate, key) {
            return Err(ProviderError::Failed {
                code: opsrun_application::reasons::SIMULATED_ITEM_FAILED
                    .as_str()
                    .to_owned(),
                message: format!(
                    "the simulated tenant fails '{key}' (seed {})",
                    settings.seed
                ),
            });
        }
        Ok(settings)
    }

    fn all(settings: SimulationSettings) -> Vec<Policy> {
        (1..=settings.policies.max(0)).map(policy).collect()
    }
}

#[async_trait]
impl PolicyProvider for SimulatedProvider {
    async fn policy_types(&self, _tenant: TenantId) -> Result<Vec<String>, ProviderError> {
        Ok(POLICY_TYPES.iter().map(|t| (*t).to_owned()).collect())
    }

    async fn policies(
        &self,
        tenant: TenantId,
        policy_type: &str,
    ) -> Result<Vec<Policy>, ProviderError> {
        if !POLICY_TYPES.contains(&policy_type) {
            return Err(ProviderError::NotFound(format!(
                "policy type '{policy_type}'"
            )));
        }
        let settings = self.call(tenant, policy_type).await?;
        Ok(Self::all(settings)
            .into_iter()
            .filter(|p| p.policy_type == policy_type)
            .collect())
    }

    async fn all_policies(&self, tenant: TenantId) -> Result<Vec<Policy>, ProviderError> {
        Ok(Self::all(self.settings(tenant).await?))
    }

    async fn fetch_policy(
        &self,
        tenant: TenantId,
        id: &str,
    ) -> Result<PolicyPayload, ProviderError> {
        let settings = self.settings(tenant).await?;
        let index = id
            .strip_prefix("pol-")
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 1 && *n <= settings.policies && policy_id(*n) == id)
            .ok_or_else(|| ProviderError::NotFound(format!("policy '{id}'")))?;
        self.call(tenant, id).await?;
        let policy = policy(index);
        Ok(PolicyPayload {
            body: format!(
                "{{\"id\":\"{}\",\"type\":\"{}\",\"name\":\"{}\",\"revision\":1}}",
                policy.id, policy.policy_type, policy.name
            ),
            policy,
        })
    }
}

#[async_trait]
impl ReviewPackSource for SimulatedProvider {
    async fn sections(&self) -> Vec<String> {
        SECTIONS.iter().map(|s| (*s).to_owned()).collect()
    }

    async fn render_section(
        &self,
        tenant: TenantId,
        section: &str,
    ) -> Result<String, ProviderError> {
        if !SECTIONS.contains(&section) {
            return Err(ProviderError::NotFound(format!("section '{section}'")));
        }
        let settings = self.call(tenant, section).await?;
        Ok(format!(
            "## {section}\n\nTenant {tenant}: {} policies over {} policy types.\n",
            settings.policies,
            POLICY_TYPES.len()
        ))
    }
}

#[async_trait]
impl EvidenceSource for SimulatedProvider {
    async fn dimensions(&self) -> Vec<String> {
        DIMENSIONS.iter().map(|s| (*s).to_owned()).collect()
    }

    async fn collect(&self, tenant: TenantId, dimension: &str) -> Result<String, ProviderError> {
        if !DIMENSIONS.contains(&dimension) {
            return Err(ProviderError::NotFound(format!("dimension '{dimension}'")));
        }
        let settings = self.call(tenant, dimension).await?;
        Ok(format!(
            "{{\"dimension\":\"{dimension}\",\"tenant\":{tenant},\"policies\":{}}}",
            settings.policies
        ))
    }
}

#[async_trait]
impl RestoreTarget for SimulatedProvider {
    async fn restore(
        &self,
        key: &WorkKey,
        tenant: TenantId,
        item: &BackupItem,
    ) -> Result<(), ProviderError> {
        self.call(tenant, key.item.as_str()).await?;
        // The simulated tenant records what it restored: one row per work key, the rows of
        // concurrent restores in one write.
        let at = Timestamp::from_millis(crate::clock::now_millis());
        self.restores
            .submit(key.run, vec![(key.item.clone(), item.id)], at)
            .await
            .map_err(|e| ProviderError::Unavailable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_a_pure_function_of_seed_rate_and_key() {
        let failing: Vec<usize> = (1..=1000)
            .filter(|i| fails(7, 0.1, &policy_id(*i)))
            .map(|i| i as usize)
            .collect();

        assert_eq!(
            failing,
            (1..=1000)
                .filter(|i| fails(7, 0.1, &policy_id(*i)))
                .map(|i| i as usize)
                .collect::<Vec<_>>()
        );
        assert!(
            (60..=140).contains(&failing.len()),
            "{} of 1000 failed at 10%",
            failing.len()
        );
        assert!(!(1..=1000).any(|i| fails(7, 0.0, &policy_id(i))));
        assert!((1..=1000).all(|i| fails(7, 1.0, &policy_id(i))));
    }

    #[test]
    fn policies_spread_round_robin_over_the_types() {
        assert_eq!(policy(1).policy_type, "device_configuration");
        assert_eq!(policy(9).policy_type, "device_configuration");
        assert_eq!(policy(8).policy_type, "enrollment_restriction");
        assert_eq!(policy(12).id, "pol-00012");
    }
}
