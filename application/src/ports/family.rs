//! The ports the run-family writers work against: the tenant's provider and the stores of
//! what the families produce.
//!
//! Every write takes a [`WorkKey`] (run + item) and must be idempotent per key: the first call
//! decides the result, and a repeated call (a retried job) returns the same result without
//! changing anything again. That is what lets a writer resume after a crash with exact counts.

use async_trait::async_trait;
use opsrun_domain::{ItemKey, RunId, TenantId};

use crate::{FamilyStoreError, ProviderError};

/// The idempotency key of a family write: the run and the item of its work set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkKey {
    /// The run doing the work.
    pub run: RunId,
    /// The item being worked on.
    pub item: ItemKey,
}

/// A policy at the tenant's provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Provider-wide stable id.
    pub id: String,
    /// Its policy type key.
    pub policy_type: String,
    /// Display name.
    pub name: String,
}

impl Policy {
    /// How surfaces name it: `Policy 12 (compliance_policy)`.
    #[must_use]
    pub fn display_name(&self) -> String {
        format!("{} ({})", self.name, self.policy_type)
    }
}

/// A policy with its full payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPayload {
    /// The policy.
    pub policy: Policy,
    /// Its configuration document.
    pub body: String,
}

/// A tenant's policy provider (the simulated tenant, or a host's real one).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PolicyProvider: Send + Sync {
    /// The policy type keys the tenant has, in a stable order.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Unavailable`] for a transient failure.
    async fn policy_types(&self, tenant: TenantId) -> Result<Vec<String>, ProviderError>;

    /// The tenant's policies of one type, in a stable order.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Unavailable`] (transient), [`ProviderError::Failed`] (this type cannot
    /// be listed).
    async fn policies(
        &self,
        tenant: TenantId,
        policy_type: &str,
    ) -> Result<Vec<Policy>, ProviderError>;

    /// Every policy of the tenant, in a stable order.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Unavailable`] for a transient failure.
    async fn all_policies(&self, tenant: TenantId) -> Result<Vec<Policy>, ProviderError>;

    /// One policy with its payload.
    ///
    /// # Errors
    ///
    /// [`ProviderError::NotFound`], [`ProviderError::Failed`] (final for this policy),
    /// [`ProviderError::Unavailable`] (transient).
    async fn fetch_policy(
        &self,
        tenant: TenantId,
        policy_id: &str,
    ) -> Result<PolicyPayload, ProviderError>;
}

/// Changes an inventory write made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InventoryChanges {
    /// Policies new to the inventory.
    pub created: u64,
    /// Policies whose stored name changed.
    pub updated: u64,
    /// Policies of the type no longer at the provider.
    pub deleted: u64,
}

/// The tenant's policy inventory.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait InventoryStore: Send + Sync {
    /// Replaces the inventory of one policy type with `policies`, idempotent per `key`.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn replace_type(
        &self,
        key: &WorkKey,
        tenant: TenantId,
        policy_type: &str,
        policies: Vec<Policy>,
    ) -> Result<InventoryChanges, FamilyStoreError>;
}

/// Where review-pack sections come from.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ReviewPackSource: Send + Sync {
    /// Every section key, in pack order.
    async fn sections(&self) -> Vec<String>;

    /// Renders one section for the tenant.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Failed`] (final for this section), [`ProviderError::Unavailable`].
    async fn render_section(
        &self,
        tenant: TenantId,
        section: &str,
    ) -> Result<String, ProviderError>;
}

/// A generated review pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewPack {
    /// Id.
    pub id: i64,
    /// Where the artifact file is.
    pub location: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// File size.
    pub bytes: u64,
}

/// Stores review-pack sections and assembles the artifact.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores one rendered section, idempotent per `key`.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn put_section(&self, key: &WorkKey, content: String) -> Result<(), FamilyStoreError>;

    /// Writes the artifact from the run's stored sections (in the order given) and records the
    /// pack with its hash; idempotent per run.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn assemble(
        &self,
        run: RunId,
        tenant: TenantId,
        sections: Vec<ItemKey>,
    ) -> Result<ReviewPack, FamilyStoreError>;

    /// The pack `run` assembled, if it did.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn pack_of(&self, run: RunId) -> Result<Option<ReviewPack>, FamilyStoreError>;
}

/// Where evidence comes from.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait EvidenceSource: Send + Sync {
    /// Every evidence dimension key, in snapshot order.
    async fn dimensions(&self) -> Vec<String>;

    /// Collects one dimension for the tenant.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Failed`] (final for this dimension), [`ProviderError::Unavailable`].
    async fn collect(&self, tenant: TenantId, dimension: &str) -> Result<String, ProviderError>;
}

/// A sealed evidence snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceSnapshot {
    /// Id.
    pub id: i64,
    /// SHA-256 over the snapshot's dimensions, hex.
    pub content_hash: String,
    /// Dimensions it holds.
    pub dimensions: u64,
}

/// Stores evidence and seals snapshots.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Stores one collected dimension, idempotent per `key`.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn put_dimension(&self, key: &WorkKey, content: String) -> Result<(), FamilyStoreError>;

    /// Seals the run's stored dimensions into a snapshot with a content hash; idempotent per
    /// run.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn seal(
        &self,
        run: RunId,
        tenant: TenantId,
    ) -> Result<EvidenceSnapshot, FamilyStoreError>;

    /// The snapshot `run` sealed, if it did.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn snapshot_of(&self, run: RunId) -> Result<Option<EvidenceSnapshot>, FamilyStoreError>;
}

/// A backup set of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSet {
    /// Id.
    pub id: i64,
    /// Tenant.
    pub tenant: TenantId,
    /// Name.
    pub name: String,
    /// Items it holds.
    pub item_count: u64,
}

/// An item of a backup set: one captured policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupItem {
    /// Id.
    pub id: i64,
    /// The backup set.
    pub backup_set: i64,
    /// The captured policy.
    pub policy: Policy,
    /// The captured payload.
    pub body: String,
    /// The run that added it, if a run did.
    pub added_by: Option<RunId>,
}

/// What [`BackupSetStore::add_item`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupItemAdded {
    /// Added now, or earlier under the same work key.
    Added,
    /// The policy was already in the set from elsewhere.
    AlreadyPresent,
}

/// Backup sets and their items.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait BackupSetStore: Send + Sync {
    /// Creates an empty backup set.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn create_backup_set(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<BackupSet, FamilyStoreError>;

    /// The tenant's backup sets, oldest first.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn backup_sets(&self, tenant: TenantId) -> Result<Vec<BackupSet>, FamilyStoreError>;

    /// The backup set `id` of the tenant, or `None` (also when it belongs to another tenant).
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn backup_set(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<BackupSet>, FamilyStoreError>;

    /// The set's items, by id.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::NotFound`], [`FamilyStoreError::Unavailable`].
    async fn items(&self, backup_set: i64) -> Result<Vec<BackupItem>, FamilyStoreError>;

    /// The ids of the set's items, in order: what a restore's plan needs, without every item's
    /// captured policy and payload (100,000 of them are hundreds of megabytes). A store that
    /// can read ids alone should; this default reads the items.
    ///
    /// # Errors
    ///
    /// As [`Self::items`].
    async fn item_ids(&self, backup_set: i64) -> Result<Vec<i64>, FamilyStoreError> {
        Ok(self
            .items(backup_set)
            .await?
            .into_iter()
            .map(|item| item.id)
            .collect())
    }

    /// The backup item `id`, or `None`.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn item(&self, id: i64) -> Result<Option<BackupItem>, FamilyStoreError>;

    /// The backup items of `ids` that exist, in any order: the items a fan-out's concurrent
    /// restores need, in one read. A store that can read many in one statement should; this
    /// default reads them one by one.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn items_by_id(&self, ids: &[i64]) -> Result<Vec<BackupItem>, FamilyStoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.extend(self.item(*id).await?);
        }
        Ok(found)
    }

    /// The set's item holding `policy_id`, if any.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn find_item(
        &self,
        backup_set: i64,
        policy_id: &str,
    ) -> Result<Option<BackupItem>, FamilyStoreError>;

    /// Adds a captured policy to the set, idempotent per `key`.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::NotFound`], [`FamilyStoreError::Unavailable`].
    async fn add_item(
        &self,
        key: &WorkKey,
        backup_set: i64,
        payload: PolicyPayload,
    ) -> Result<BackupItemAdded, FamilyStoreError>;
}

/// Where restores go (the tenant's provider).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RestoreTarget: Send + Sync {
    /// Restores one backup item into the tenant, idempotent per `key`.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Failed`] (final for this item), [`ProviderError::Unavailable`].
    async fn restore(
        &self,
        key: &WorkKey,
        tenant: TenantId,
        item: &BackupItem,
    ) -> Result<(), ProviderError>;
}

/// One policy as captured into a baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineItem {
    /// The policy.
    pub policy: Policy,
    /// Its payload at capture time.
    pub body: String,
}

/// A captured baseline of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    /// Id.
    pub id: i64,
    /// Tenant.
    pub tenant: TenantId,
    /// The run that captured it.
    pub captured_by: RunId,
    /// The captured policies.
    pub items: Vec<BaselineItem>,
}

/// What a comparison found about one baseline item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// The policy no longer exists in the tenant.
    Missing,
    /// The policy's payload differs from the baseline.
    Changed,
}

/// A comparison finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The compared policy.
    pub policy_id: String,
    /// What differs.
    pub kind: FindingKind,
}

/// Baselines and comparison findings.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait BaselineStore: Send + Sync {
    /// Stores the baseline captured by `run`; idempotent per run (a repeat returns the stored
    /// baseline).
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn save_baseline(
        &self,
        run: RunId,
        tenant: TenantId,
        items: Vec<BaselineItem>,
    ) -> Result<Baseline, FamilyStoreError>;

    /// The baseline `id` of the tenant, or `None` (also when it belongs to another tenant).
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn baseline(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<Baseline>, FamilyStoreError>;

    /// The tenant's baselines, oldest first.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn baselines(&self, tenant: TenantId) -> Result<Vec<Baseline>, FamilyStoreError>;

    /// Stores one finding of a comparison, idempotent per `key`.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn save_finding(
        &self,
        key: &WorkKey,
        baseline: i64,
        finding: Finding,
    ) -> Result<(), FamilyStoreError>;

    /// The findings comparison run `run` saved, by policy id.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    async fn findings_of(&self, run: RunId) -> Result<Vec<Finding>, FamilyStoreError>;
}
