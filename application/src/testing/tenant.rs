//! A scripted tenant: provider, review and evidence sources, restore target.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use opsrun_domain::{RunId, TenantId};

use super::lock;
use crate::ports::{
    BackupItem, EvidenceSource, Policy, PolicyPayload, PolicyProvider, RestoreTarget,
    ReviewPackSource, WorkKey,
};
use crate::{OperationRunService, ProviderError};

/// The policy types of a [`FakeTenant`].
pub const FAKE_POLICY_TYPES: [&str; 4] = [
    "device_configuration",
    "compliance_policy",
    "app_protection",
    "conditional_access",
];
/// The review-pack sections of a [`FakeTenant`].
pub const FAKE_SECTIONS: [&str; 5] = ["summary", "inventory", "compliance", "backups", "findings"];
/// The evidence dimensions of a [`FakeTenant`].
pub const FAKE_DIMENSIONS: [&str; 4] = ["identity", "devices", "data", "access"];

#[derive(Default)]
struct Script {
    calls: usize,
    transient_at: BTreeSet<usize>,
    cancel_at: Option<(usize, OperationRunService, RunId)>,
}

/// A scripted tenant: policy provider, review and evidence source, and restore target.
///
/// It has `n` policies `p1..pn` spread round-robin over [`FAKE_POLICY_TYPES`]. Any unit key in
/// its failing set (a policy id, type, section, dimension or backup item id) fails for good
/// with reason `fake.failed`. Calls are numbered from 1 across all its methods; a test can make
/// a given call fail transiently, or cancel a run just before it.
pub struct FakeTenant {
    policies: Vec<Policy>,
    failing: BTreeSet<String>,
    bodies: Mutex<BTreeMap<String, String>>,
    script: Mutex<Script>,
    restores: Mutex<BTreeSet<WorkKey>>,
}

impl std::fmt::Debug for FakeTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTenant")
            .field("policies", &self.policies.len())
            .finish_non_exhaustive()
    }
}

impl FakeTenant {
    /// A tenant with `policies` policies, where the keys in `failing` fail for good.
    #[must_use]
    pub fn new(policies: usize, failing: &[&str]) -> Self {
        let policies = (1..=policies)
            .map(|i| Policy {
                id: format!("p{i}"),
                policy_type: FAKE_POLICY_TYPES[(i - 1) % FAKE_POLICY_TYPES.len()].to_owned(),
                name: format!("Policy {i}"),
            })
            .collect();
        Self {
            policies,
            failing: failing.iter().map(|s| (*s).to_owned()).collect(),
            bodies: Mutex::new(BTreeMap::new()),
            script: Mutex::new(Script::default()),
            restores: Mutex::new(BTreeSet::new()),
        }
    }

    /// Makes call number `call` (counted from 1) fail with [`ProviderError::Unavailable`].
    pub fn fail_transiently_at(&self, call: usize) {
        lock(&self.script).transient_at.insert(call);
    }

    /// Cancels `run` through `service` just before call number `call`.
    pub fn cancel_before(&self, call: usize, service: OperationRunService, run: RunId) {
        lock(&self.script).cancel_at = Some((call, service, run));
    }

    /// Changes a policy's payload (what a baseline compare detects).
    pub fn change_policy(&self, id: &str) {
        lock(&self.bodies).insert(
            id.to_owned(),
            format!("{{\"id\":\"{id}\",\"changed\":true}}"),
        );
    }

    /// Calls made so far.
    #[must_use]
    pub fn calls(&self) -> usize {
        lock(&self.script).calls
    }

    /// Distinct restores performed (by work key).
    #[must_use]
    pub fn restores(&self) -> usize {
        lock(&self.restores).len()
    }

    /// Every policy.
    #[must_use]
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    async fn call(&self, key: &str) -> Result<(), ProviderError> {
        let (number, cancel, transient) = {
            let mut script = lock(&self.script);
            script.calls += 1;
            let number = script.calls;
            let cancel = match &script.cancel_at {
                Some((at, service, run)) if *at == number => Some((service.clone(), *run)),
                _ => None,
            };
            (number, cancel, script.transient_at.contains(&number))
        };
        if let Some((service, run)) = cancel {
            // The test's cancellation races the writer exactly here.
            let _ = service.cancel_run(run, None).await;
        }
        if transient {
            return Err(ProviderError::Unavailable(format!(
                "call {number} scripted to fail"
            )));
        }
        if self.failing.contains(key) {
            return Err(ProviderError::Failed {
                code: "fake.failed".into(),
                message: format!("'{key}' is scripted to fail"),
            });
        }
        Ok(())
    }

    fn body(&self, id: &str) -> String {
        lock(&self.bodies)
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("{{\"id\":\"{id}\"}}"))
    }
}

#[async_trait]
impl PolicyProvider for FakeTenant {
    async fn policy_types(&self, _tenant: TenantId) -> Result<Vec<String>, ProviderError> {
        Ok(FAKE_POLICY_TYPES.iter().map(|t| (*t).to_owned()).collect())
    }

    async fn policies(
        &self,
        _tenant: TenantId,
        policy_type: &str,
    ) -> Result<Vec<Policy>, ProviderError> {
        self.call(policy_type).await?;
        if !FAKE_POLICY_TYPES.contains(&policy_type) {
            return Err(ProviderError::NotFound(format!(
                "policy type '{policy_type}'"
            )));
        }
        Ok(self
            .policies
            .iter()
            .filter(|p| p.policy_type == policy_type)
            .cloned()
            .collect())
    }

    async fn all_policies(&self, _tenant: TenantId) -> Result<Vec<Policy>, ProviderError> {
        Ok(self.policies.clone())
    }

    async fn fetch_policy(
        &self,
        _tenant: TenantId,
        policy_id: &str,
    ) -> Result<PolicyPayload, ProviderError> {
        self.call(policy_id).await?;
        let policy = self
            .policies
            .iter()
            .find(|p| p.id == policy_id)
            .cloned()
            .ok_or_else(|| ProviderError::NotFound(format!("policy '{policy_id}'")))?;
        Ok(PolicyPayload {
            body: self.body(policy_id),
            policy,
        })
    }
}

#[async_trait]
impl ReviewPackSource for FakeTenant {
    async fn sections(&self) -> Vec<String> {
        FAKE_SECTIONS.iter().map(|s| (*s).to_owned()).collect()
    }

    async fn render_section(
        &self,
        tenant: TenantId,
        section: &str,
    ) -> Result<String, ProviderError> {
        self.call(section).await?;
        Ok(format!("# {section}\ntenant {tenant}\n"))
    }
}

#[async_trait]
impl EvidenceSource for FakeTenant {
    async fn dimensions(&self) -> Vec<String> {
        FAKE_DIMENSIONS.iter().map(|s| (*s).to_owned()).collect()
    }

    async fn collect(&self, tenant: TenantId, dimension: &str) -> Result<String, ProviderError> {
        self.call(dimension).await?;
        Ok(format!("{dimension} of tenant {tenant}"))
    }
}

#[async_trait]
impl RestoreTarget for FakeTenant {
    async fn restore(
        &self,
        key: &WorkKey,
        _tenant: TenantId,
        item: &BackupItem,
    ) -> Result<(), ProviderError> {
        self.call(&item.id.to_string()).await?;
        lock(&self.restores).insert(key.clone());
        Ok(())
    }
}
