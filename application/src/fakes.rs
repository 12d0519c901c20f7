//! Test fakes of the non-storage ports (feature `mocks`): a manual clock, a queue that keeps
//! its jobs for a test to run, a scripted tenant (provider, sources, restore target), and
//! in-memory family stores. They are small and deterministic, for unit tests and for trying
//! the writers out while embedding; production adapters live in `opsrun-adapters`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use opsrun_domain::{ItemKey, RunId, TenantId, Timestamp};

use crate::ports::{
    ArtifactStore, BackupItem, BackupItemAdded, BackupSet, BackupSetStore, Baseline, BaselineItem,
    BaselineStore, Clock, EvidenceSnapshot, EvidenceSource, Finding, InventoryChanges,
    InventoryStore, Job, JobQueue, Policy, PolicyPayload, PolicyProvider, RestoreTarget,
    ReviewPack, ReviewPackSource, SnapshotStore, WorkKey,
};
use crate::{FamilyStoreError, OperationRunService, ProviderError, QueueError};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A clock that moves only when told to, by 1 ms on each reading so instants stay ordered.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `millis`.
    #[must_use]
    pub fn at(millis: i64) -> Self {
        Self(AtomicI64::new(millis))
    }

    /// Moves the clock forward.
    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// A queue that keeps its jobs in order until a test takes them.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    jobs: Mutex<VecDeque<Job>>,
    enqueue_calls: AtomicI64,
}

impl MemoryQueue {
    /// An empty queue.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next job.
    pub fn pop(&self) -> Option<Job> {
        lock(&self.jobs).pop_front()
    }

    /// Jobs waiting.
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.jobs).len()
    }

    /// Whether no job waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many enqueue calls were made (a fan-out is one call).
    #[must_use]
    pub fn enqueue_calls(&self) -> i64 {
        self.enqueue_calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, job: Job) -> Result<(), QueueError> {
        self.enqueue_calls.fetch_add(1, Ordering::SeqCst);
        lock(&self.jobs).push_back(job);
        Ok(())
    }

    async fn enqueue_children(&self, parent: RunId, items: Vec<ItemKey>) -> Result<(), QueueError> {
        self.enqueue_calls.fetch_add(1, Ordering::SeqCst);
        let mut jobs = lock(&self.jobs);
        jobs.extend(
            items
                .into_iter()
                .map(|item| Job::RestoreChild { parent, item }),
        );
        Ok(())
    }
}

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

/// FNV-1a, 64 bit, as hex: a stand-in content hash for the fakes (the production artifact
/// and snapshot stores use SHA-256).
#[must_use]
pub fn fake_hash(bytes: &[u8]) -> String {
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
}
