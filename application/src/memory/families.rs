//! In-memory family stores: the reference implementation of the family ports, for embedding,
//! for the app's in-memory backend and for tests. Nothing is durable; review packs are not
//! written to files (their location is `memory://...`) and their hashes are a 64-bit FNV-1a,
//! not SHA-256.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use opsrun_domain::{ItemKey, RunId, TenantId};

use crate::FamilyStoreError;
use crate::ports::{
    ArtifactStore, BackupItem, BackupItemAdded, BackupSet, BackupSetStore, Baseline, BaselineItem,
    BaselineStore, EvidenceSnapshot, Finding, InventoryChanges, InventoryStore, Policy,
    PolicyPayload, ReviewPack, SnapshotStore, WorkKey,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every write is computed and then stored under one lock: a poisoned lock holds no
    // half-applied change.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// FNV-1a, 64 bit, as hex: a stand-in content hash (the SQL artifact and snapshot stores use
/// SHA-256).
fn fake_hash(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[derive(Default)]
struct Families {
    writes: usize,
    lose_ack_at: BTreeSet<usize>,
    inventory: BTreeMap<(TenantId, String), BTreeMap<String, String>>,
    inventory_results: BTreeMap<WorkKey, InventoryChanges>,
    sections: BTreeMap<WorkKey, String>,
    packs: BTreeMap<RunId, ReviewPack>,
    dimensions: BTreeMap<WorkKey, String>,
    snapshots: BTreeMap<RunId, EvidenceSnapshot>,
    backup_sets: Vec<BackupSet>,
    backup_items: Vec<BackupItem>,
    baselines: Vec<Baseline>,
    findings: BTreeMap<WorkKey, (i64, Finding)>,
}

/// In-memory family stores: inventory, review packs, evidence snapshots, backup sets and
/// baselines. Every write is idempotent per work key. A test can make the n-th write "lose its
/// acknowledgement": the write is applied, but the call answers unavailable, as when a process
/// dies between the write and the count.
#[derive(Default)]
pub struct MemoryFamilies {
    state: Mutex<Families>,
}

impl std::fmt::Debug for MemoryFamilies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryFamilies").finish_non_exhaustive()
    }
}

impl MemoryFamilies {
    /// Empty stores.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes write number `write` (counted from 1) apply but answer unavailable.
    pub fn lose_ack_at(&self, write: usize) {
        lock(&self.state).lose_ack_at.insert(write);
    }

    /// The inventory of one policy type: policy id to name.
    #[must_use]
    pub fn inventory(&self, tenant: TenantId, policy_type: &str) -> BTreeMap<String, String> {
        lock(&self.state)
            .inventory
            .get(&(tenant, policy_type.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// The review pack a run assembled.
    #[must_use]
    pub fn pack(&self, run: RunId) -> Option<ReviewPack> {
        lock(&self.state).packs.get(&run).cloned()
    }

    /// The snapshot a run sealed.
    #[must_use]
    pub fn snapshot(&self, run: RunId) -> Option<EvidenceSnapshot> {
        lock(&self.state).snapshots.get(&run).cloned()
    }

    /// Every finding of a baseline.
    #[must_use]
    pub fn findings(&self, baseline: i64) -> Vec<Finding> {
        lock(&self.state)
            .findings
            .values()
            .filter(|(b, _)| *b == baseline)
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// Adds a backup item directly (as if captured outside any run).
    pub fn put_backup_item(&self, backup_set: i64, policy: Policy) -> BackupItem {
        let mut state = lock(&self.state);
        let item = BackupItem {
            id: state.backup_items.len() as i64 + 1,
            backup_set,
            body: format!("{{\"id\":\"{}\"}}", policy.id),
            policy,
            added_by: None,
        };
        state.backup_items.push(item.clone());
        item
    }

    fn write<T>(&self, apply: impl FnOnce(&mut Families) -> T) -> Result<T, FamilyStoreError> {
        let mut state = lock(&self.state);
        let value = apply(&mut state);
        state.writes += 1;
        if state.lose_ack_at.contains(&state.writes) {
            return Err(FamilyStoreError::Unavailable(
                format!("write {} lost its acknowledgement", state.writes).into(),
            ));
        }
        Ok(value)
    }
}

#[async_trait]
impl InventoryStore for MemoryFamilies {
    async fn replace_type(
        &self,
        key: &WorkKey,
        tenant: TenantId,
        policy_type: &str,
        policies: Vec<Policy>,
    ) -> Result<InventoryChanges, FamilyStoreError> {
        self.write(|state| {
            if let Some(done) = state.inventory_results.get(key) {
                return *done;
            }
            let stored = state
                .inventory
                .entry((tenant, policy_type.to_owned()))
                .or_default();
            let mut changes = InventoryChanges::default();
            let fresh: BTreeMap<String, String> =
                policies.into_iter().map(|p| (p.id, p.name)).collect();
            for (id, name) in &fresh {
                match stored.get(id) {
                    None => changes.created += 1,
                    Some(old) if old != name => changes.updated += 1,
                    Some(_) => {}
                }
            }
            changes.deleted = stored.keys().filter(|id| !fresh.contains_key(*id)).count() as u64;
            *stored = fresh;
            state.inventory_results.insert(key.clone(), changes);
            changes
        })
    }
}

#[async_trait]
impl ArtifactStore for MemoryFamilies {
    async fn put_section(&self, key: &WorkKey, content: String) -> Result<(), FamilyStoreError> {
        self.write(|state| {
            state.sections.entry(key.clone()).or_insert(content);
        })
    }

    async fn assemble(
        &self,
        run: RunId,
        _tenant: TenantId,
        sections: Vec<ItemKey>,
    ) -> Result<ReviewPack, FamilyStoreError> {
        self.write(|state| {
            if let Some(pack) = state.packs.get(&run) {
                return pack.clone();
            }
            let body: String = sections
                .into_iter()
                .filter_map(|item| state.sections.get(&WorkKey { run, item }).cloned())
                .collect();
            let pack = ReviewPack {
                id: state.packs.len() as i64 + 1,
                location: format!("memory://review-packs/{run}"),
                sha256: fake_hash(body.as_bytes()),
                bytes: body.len() as u64,
            };
            state.packs.insert(run, pack.clone());
            pack
        })
    }

    async fn pack_of(&self, run: RunId) -> Result<Option<ReviewPack>, FamilyStoreError> {
        Ok(lock(&self.state).packs.get(&run).cloned())
    }
}

#[async_trait]
impl SnapshotStore for MemoryFamilies {
    async fn put_dimension(&self, key: &WorkKey, content: String) -> Result<(), FamilyStoreError> {
        self.write(|state| {
            state.dimensions.entry(key.clone()).or_insert(content);
        })
    }

    async fn seal(
        &self,
        run: RunId,
        _tenant: TenantId,
    ) -> Result<EvidenceSnapshot, FamilyStoreError> {
        self.write(|state| {
            if let Some(snapshot) = state.snapshots.get(&run) {
                return snapshot.clone();
            }
            let parts: Vec<&String> = state
                .dimensions
                .iter()
                .filter(|(k, _)| k.run == run)
                .map(|(_, v)| v)
                .collect();
            let joined: String = parts.iter().map(|s| s.as_str()).collect();
            let snapshot = EvidenceSnapshot {
                id: state.snapshots.len() as i64 + 1,
                content_hash: fake_hash(joined.as_bytes()),
                dimensions: parts.len() as u64,
            };
            state.snapshots.insert(run, snapshot.clone());
            snapshot
        })
    }

    async fn snapshot_of(&self, run: RunId) -> Result<Option<EvidenceSnapshot>, FamilyStoreError> {
        Ok(lock(&self.state).snapshots.get(&run).cloned())
    }
}

#[async_trait]
impl BackupSetStore for MemoryFamilies {
    async fn create_backup_set(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<BackupSet, FamilyStoreError> {
        let mut state = lock(&self.state);
        let set = BackupSet {
            id: state.backup_sets.len() as i64 + 1,
            tenant,
            name: name.to_owned(),
            item_count: 0,
        };
        state.backup_sets.push(set.clone());
        Ok(set)
    }

    async fn backup_sets(&self, tenant: TenantId) -> Result<Vec<BackupSet>, FamilyStoreError> {
        let state = lock(&self.state);
        Ok(state
            .backup_sets
            .iter()
            .filter(|s| s.tenant == tenant)
            .map(|s| BackupSet {
                item_count: state
                    .backup_items
                    .iter()
                    .filter(|i| i.backup_set == s.id)
                    .count() as u64,
                ..s.clone()
            })
            .collect())
    }

    async fn backup_set(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<BackupSet>, FamilyStoreError> {
        Ok(self
            .backup_sets(tenant)
            .await?
            .into_iter()
            .find(|s| s.id == id))
    }

    async fn items(&self, backup_set: i64) -> Result<Vec<BackupItem>, FamilyStoreError> {
        let state = lock(&self.state);
        Ok(state
            .backup_items
            .iter()
            .filter(|i| i.backup_set == backup_set)
            .cloned()
            .collect())
    }

    async fn item(&self, id: i64) -> Result<Option<BackupItem>, FamilyStoreError> {
        let state = lock(&self.state);
        Ok(state.backup_items.iter().find(|i| i.id == id).cloned())
    }

    async fn find_item(
        &self,
        backup_set: i64,
        policy_id: &str,
    ) -> Result<Option<BackupItem>, FamilyStoreError> {
        let state = lock(&self.state);
        Ok(state
            .backup_items
            .iter()
            .find(|i| i.backup_set == backup_set && i.policy.id == policy_id)
            .cloned())
    }

    async fn add_item(
        &self,
        key: &WorkKey,
        backup_set: i64,
        payload: PolicyPayload,
    ) -> Result<BackupItemAdded, FamilyStoreError> {
        self.write(|state| {
            if let Some(existing) = state
                .backup_items
                .iter()
                .find(|i| i.backup_set == backup_set && i.policy.id == payload.policy.id)
            {
                return if existing.added_by == Some(key.run) {
                    BackupItemAdded::Added
                } else {
                    BackupItemAdded::AlreadyPresent
                };
            }
            let id = state.backup_items.len() as i64 + 1;
            state.backup_items.push(BackupItem {
                id,
                backup_set,
                policy: payload.policy,
                body: payload.body,
                added_by: Some(key.run),
            });
            BackupItemAdded::Added
        })
    }
}

#[async_trait]
impl BaselineStore for MemoryFamilies {
    async fn save_baseline(
        &self,
        run: RunId,
        tenant: TenantId,
        items: Vec<BaselineItem>,
    ) -> Result<Baseline, FamilyStoreError> {
        self.write(|state| {
            if let Some(existing) = state.baselines.iter().find(|b| b.captured_by == run) {
                return existing.clone();
            }
            let baseline = Baseline {
                id: state.baselines.len() as i64 + 1,
                tenant,
                captured_by: run,
                items,
            };
            state.baselines.push(baseline.clone());
            baseline
        })
    }

    async fn baseline(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<Baseline>, FamilyStoreError> {
        let state = lock(&self.state);
        Ok(state
            .baselines
            .iter()
            .find(|b| b.id == id && b.tenant == tenant)
            .cloned())
    }

    async fn baselines(&self, tenant: TenantId) -> Result<Vec<Baseline>, FamilyStoreError> {
        let state = lock(&self.state);
        Ok(state
            .baselines
            .iter()
            .filter(|b| b.tenant == tenant)
            .cloned()
            .collect())
    }

    async fn save_finding(
        &self,
        key: &WorkKey,
        baseline: i64,
        finding: Finding,
    ) -> Result<(), FamilyStoreError> {
        self.write(|state| {
            state
                .findings
                .entry(key.clone())
                .or_insert((baseline, finding));
        })
    }

    async fn findings_of(&self, run: RunId) -> Result<Vec<Finding>, FamilyStoreError> {
        let mut findings: Vec<Finding> = lock(&self.state)
            .findings
            .iter()
            .filter(|(key, _)| key.run == run)
            .map(|(_, (_, f))| f.clone())
            .collect();
        findings.sort_by(|a, b| a.policy_id.cmp(&b.policy_id));
        Ok(findings)
    }
}
