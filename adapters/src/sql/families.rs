//! SQL implementations of the family stores: inventory, review-pack artifacts, evidence
//! snapshots, backup sets and baselines. Every write is idempotent per work key (a table keyed
//! by `(run_id, item_key)`, or unique per run).

use std::path::PathBuf;

use async_trait::async_trait;
use opsrun_application::FamilyStoreError;
use opsrun_application::ports::{
    ArtifactStore, BackupItem, BackupItemAdded, BackupSet, BackupSetStore, Baseline, BaselineItem,
    BaselineStore, EvidenceSnapshot, Finding, FindingKind, InventoryChanges, InventoryStore,
    Policy, PolicyPayload, ReviewPack, SnapshotStore, WorkKey,
};
use opsrun_domain::{ItemKey, RunId, TenantId};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryResult, Statement, Value};
use sha2::{Digest, Sha256};

fn io(error: std::io::Error) -> FamilyStoreError {
    FamilyStoreError::Unavailable(Box::new(error))
}

/// SHA-256 of `bytes`, lowercase hex.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

use super::raw;
use crate::clock::now_millis;

/// The family stores over one database, writing review-pack artifacts into a folder.
#[derive(Debug, Clone)]
pub struct SqlFamilies {
    db: DatabaseConnection,
    backend: DbBackend,
    artifacts: PathBuf,
}

impl SqlFamilies {
    /// Stores over `db`; review packs are written under `artifacts` (created when needed).
    #[must_use]
    pub fn new(db: DatabaseConnection, artifacts: PathBuf) -> Self {
        let backend = db.get_database_backend();
        Self {
            db,
            backend,
            artifacts,
        }
    }

    fn stmt(&self, sql: &str, values: Vec<Value>) -> Statement {
        raw::statement(self.backend, sql, values)
    }

    async fn exec<C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<u64, FamilyStoreError> {
        raw::exec(conn, self.stmt(sql, values))
            .await
            .map_err(raw::sql)
    }

    async fn rows<C: ConnectionTrait>(
        &self,
        conn: &C,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Vec<QueryResult>, FamilyStoreError> {
        raw::rows(conn, self.stmt(sql, values))
            .await
            .map_err(raw::sql)
    }

    async fn write_tx(&self) -> Result<sea_orm::DatabaseTransaction, FamilyStoreError> {
        raw::begin_write(&self.db).await.map_err(raw::sql)
    }

    fn text(row: &QueryResult, col: &str) -> Result<String, FamilyStoreError> {
        raw::text(row, col).map_err(raw::sql)
    }

    fn int(row: &QueryResult, col: &str) -> Result<i64, FamilyStoreError> {
        raw::int(row, col).map_err(raw::sql)
    }

    fn backup_item(row: &QueryResult) -> Result<BackupItem, FamilyStoreError> {
        Ok(BackupItem {
            id: Self::int(row, "id")?,
            backup_set: Self::int(row, "backup_set_id")?,
            policy: Policy {
                id: Self::text(row, "policy_id")?,
                policy_type: Self::text(row, "policy_type")?,
                name: Self::text(row, "name")?,
            },
            body: Self::text(row, "body")?,
            added_by: row
                .try_get::<Option<i64>>("", "added_by_run")
                .map_err(raw::SqlError::from)?
                .map(RunId::new),
        })
    }

    /// The review pack a run assembled.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    pub async fn review_pack(&self, run: RunId) -> Result<Option<ReviewPack>, FamilyStoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT id, location, sha256, bytes FROM review_packs WHERE run_id = $1",
                vec![run.value().into()],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(ReviewPack {
                    id: Self::int(r, "id")?,
                    location: Self::text(r, "location")?,
                    sha256: Self::text(r, "sha256")?,
                    bytes: u64::try_from(Self::int(r, "bytes")?).unwrap_or(0),
                })
            })
            .transpose()
    }

    /// The evidence snapshot a run sealed.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    pub async fn evidence_snapshot(
        &self,
        run: RunId,
    ) -> Result<Option<EvidenceSnapshot>, FamilyStoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT id, content_hash, dimensions FROM evidence_snapshots WHERE run_id = $1",
                vec![run.value().into()],
            )
            .await?;
        rows.first()
            .map(|r| {
                Ok(EvidenceSnapshot {
                    id: Self::int(r, "id")?,
                    content_hash: Self::text(r, "content_hash")?,
                    dimensions: u64::try_from(Self::int(r, "dimensions")?).unwrap_or(0),
                })
            })
            .transpose()
    }

    /// How many policies the tenant's inventory holds.
    ///
    /// # Errors
    ///
    /// [`FamilyStoreError::Unavailable`].
    pub async fn inventory_size(&self, tenant: TenantId) -> Result<u64, FamilyStoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT COUNT(*) AS n FROM inventory_items WHERE tenant_id = $1",
                vec![tenant.value().into()],
            )
            .await?;
        Ok(rows
            .first()
            .map(|r| Self::int(r, "n"))
            .transpose()?
            .map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    async fn load_baseline(&self, row: &QueryResult) -> Result<Baseline, FamilyStoreError> {
        let id = Self::int(row, "id")?;
        let items = self
            .rows(
                &self.db,
                "SELECT policy_id, policy_type, name, body FROM baseline_items WHERE baseline_id = $1 ORDER BY policy_id",
                vec![id.into()],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(BaselineItem {
                    policy: Policy {
                        id: Self::text(r, "policy_id")?,
                        policy_type: Self::text(r, "policy_type")?,
                        name: Self::text(r, "name")?,
                    },
                    body: Self::text(r, "body")?,
                })
            })
            .collect::<Result<Vec<_>, FamilyStoreError>>()?;
        Ok(Baseline {
            id,
            tenant: TenantId::new(Self::int(row, "tenant_id")?),
            captured_by: RunId::new(Self::int(row, "run_id")?),
            items,
        })
    }
}

#[async_trait]
impl InventoryStore for SqlFamilies {
    async fn replace_type(
        &self,
        key: &WorkKey,
        tenant: TenantId,
        policy_type: &str,
        policies: Vec<Policy>,
    ) -> Result<InventoryChanges, FamilyStoreError> {
        let tx = self.write_tx().await?;
        let done = self
            .rows(
                &tx,
                "SELECT created, updated, deleted FROM inventory_writes WHERE run_id = $1 AND item_key = $2",
                vec![key.run.value().into(), key.item.as_str().into()],
            )
            .await?;
        if let Some(row) = done.first() {
            let changes = InventoryChanges {
                created: u64::try_from(Self::int(row, "created")?).unwrap_or(0),
                updated: u64::try_from(Self::int(row, "updated")?).unwrap_or(0),
                deleted: u64::try_from(Self::int(row, "deleted")?).unwrap_or(0),
            };
            tx.rollback().await.map_err(raw::SqlError::from)?;
            return Ok(changes);
        }
        let stored: std::collections::BTreeMap<String, String> = self
            .rows(
                &tx,
                "SELECT policy_id, name FROM inventory_items WHERE tenant_id = $1 AND policy_type = $2",
                vec![tenant.value().into(), policy_type.into()],
            )
            .await?
            .iter()
            .map(|r| Ok((Self::text(r, "policy_id")?, Self::text(r, "name")?)))
            .collect::<Result<_, FamilyStoreError>>()?;
        let fresh: std::collections::BTreeMap<String, String> =
            policies.into_iter().map(|p| (p.id, p.name)).collect();
        let mut changes = InventoryChanges::default();
        let now = now_millis();
        for (id, name) in &fresh {
            match stored.get(id) {
                None => {
                    changes.created += 1;
                    self.exec(
                        &tx,
                        "INSERT INTO inventory_items (tenant_id, policy_id, policy_type, name, synced_at) VALUES ($1, $2, $3, $4, $5)",
                        vec![tenant.value().into(), id.as_str().into(), policy_type.into(), name.as_str().into(), now.into()],
                    )
                    .await?;
                }
                Some(old) if old != name => {
                    changes.updated += 1;
                    self.exec(
                        &tx,
                        "UPDATE inventory_items SET name = $3, synced_at = $4 WHERE tenant_id = $1 AND policy_id = $2",
                        vec![tenant.value().into(), id.as_str().into(), name.as_str().into(), now.into()],
                    )
                    .await?;
                }
                Some(_) => {}
            }
        }
        for id in stored.keys().filter(|id| !fresh.contains_key(*id)) {
            changes.deleted += 1;
            self.exec(
                &tx,
                "DELETE FROM inventory_items WHERE tenant_id = $1 AND policy_id = $2",
                vec![tenant.value().into(), id.as_str().into()],
            )
            .await?;
        }
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.exec(
            &tx,
            "INSERT INTO inventory_writes (run_id, item_key, created, updated, deleted) VALUES ($1, $2, $3, $4, $5)",
            vec![
                key.run.value().into(),
                key.item.as_str().into(),
                as_i64(changes.created).into(),
                as_i64(changes.updated).into(),
                as_i64(changes.deleted).into(),
            ],
        )
        .await?;
        tx.commit().await.map_err(raw::SqlError::from)?;
        Ok(changes)
    }
}

#[async_trait]
impl ArtifactStore for SqlFamilies {
    async fn put_section(&self, key: &WorkKey, content: String) -> Result<(), FamilyStoreError> {
        self.exec(
            &self.db,
            "INSERT INTO review_pack_sections (run_id, item_key, content) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            vec![key.run.value().into(), key.item.as_str().into(), content.into()],
        )
        .await?;
        Ok(())
    }

    async fn assemble(
        &self,
        run: RunId,
        tenant: TenantId,
        sections: Vec<ItemKey>,
    ) -> Result<ReviewPack, FamilyStoreError> {
        if let Some(pack) = self.review_pack(run).await? {
            return Ok(pack);
        }
        let stored: std::collections::BTreeMap<String, String> = self
            .rows(
                &self.db,
                "SELECT item_key, content FROM review_pack_sections WHERE run_id = $1",
                vec![run.value().into()],
            )
            .await?
            .iter()
            .map(|r| Ok((Self::text(r, "item_key")?, Self::text(r, "content")?)))
            .collect::<Result<_, FamilyStoreError>>()?;
        let mut body = format!("# Review pack\n\ntenant {tenant}, run {run}\n\n");
        for section in &sections {
            if let Some(content) = stored.get(section.as_str()) {
                body.push_str(content);
                body.push('\n');
            }
        }
        tokio::fs::create_dir_all(&self.artifacts)
            .await
            .map_err(io)?;
        let path = self.artifacts.join(format!("review-pack-run-{run}.md"));
        // Write to a temporary name and rename, so a crash never leaves a half file behind
        // the recorded hash.
        let partial = self
            .artifacts
            .join(format!(".review-pack-run-{run}.md.partial"));
        tokio::fs::write(&partial, body.as_bytes())
            .await
            .map_err(io)?;
        tokio::fs::rename(&partial, &path).await.map_err(io)?;
        let sha256 = sha256_hex(body.as_bytes());
        let location = path.display().to_string();
        let bytes = i64::try_from(body.len()).unwrap_or(i64::MAX);
        self.exec(
            &self.db,
            "INSERT INTO review_packs (run_id, tenant_id, location, sha256, bytes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            vec![
                run.value().into(),
                tenant.value().into(),
                location.into(),
                sha256.into(),
                bytes.into(),
                now_millis().into(),
            ],
        )
        .await?;
        self.review_pack(run)
            .await?
            .ok_or_else(|| FamilyStoreError::NotFound(format!("review pack of run {run}")))
    }

    async fn pack_of(&self, run: RunId) -> Result<Option<ReviewPack>, FamilyStoreError> {
        self.review_pack(run).await
    }
}

#[async_trait]
impl SnapshotStore for SqlFamilies {
    async fn put_dimension(&self, key: &WorkKey, content: String) -> Result<(), FamilyStoreError> {
        self.exec(
            &self.db,
            "INSERT INTO evidence_dimensions (run_id, item_key, content) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            vec![key.run.value().into(), key.item.as_str().into(), content.into()],
        )
        .await?;
        Ok(())
    }

    async fn seal(
        &self,
        run: RunId,
        tenant: TenantId,
    ) -> Result<EvidenceSnapshot, FamilyStoreError> {
        if let Some(snapshot) = self.evidence_snapshot(run).await? {
            return Ok(snapshot);
        }
        let rows = self
            .rows(
                &self.db,
                "SELECT item_key, content FROM evidence_dimensions WHERE run_id = $1",
                vec![run.value().into()],
            )
            .await?;
        let mut parts: Vec<(String, String)> = rows
            .iter()
            .map(|r| Ok((Self::text(r, "item_key")?, Self::text(r, "content")?)))
            .collect::<Result<_, FamilyStoreError>>()?;
        // Hash in key byte order so the same evidence always has the same hash.
        parts.sort();
        let mut hasher = Sha256::new();
        for (key, content) in &parts {
            hasher.update(key.as_bytes());
            hasher.update([0]);
            hasher.update(content.as_bytes());
            hasher.update([0]);
        }
        let hash: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.exec(
            &self.db,
            "INSERT INTO evidence_snapshots (run_id, tenant_id, content_hash, dimensions, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            vec![run.value().into(), tenant.value().into(), hash.into(), (parts.len() as i64).into(), now_millis().into()],
        )
        .await?;
        self.evidence_snapshot(run)
            .await?
            .ok_or_else(|| FamilyStoreError::NotFound(format!("snapshot of run {run}")))
    }

    async fn snapshot_of(&self, run: RunId) -> Result<Option<EvidenceSnapshot>, FamilyStoreError> {
        self.evidence_snapshot(run).await
    }
}

const BACKUP_ITEM_COLUMNS: &str =
    "id, backup_set_id, policy_id, policy_type, name, body, added_by_run";

#[async_trait]
impl BackupSetStore for SqlFamilies {
    async fn create_backup_set(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<BackupSet, FamilyStoreError> {
        let rows = self
            .rows(
                &self.db,
                "INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, $2, $3) RETURNING id",
                vec![tenant.value().into(), name.into(), now_millis().into()],
            )
            .await?;
        let id = rows
            .first()
            .map(|r| Self::int(r, "id"))
            .transpose()?
            .ok_or_else(|| FamilyStoreError::NotFound("new backup set".into()))?;
        Ok(BackupSet {
            id,
            tenant,
            name: name.to_owned(),
            item_count: 0,
        })
    }

    async fn backup_sets(&self, tenant: TenantId) -> Result<Vec<BackupSet>, FamilyStoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT s.id, s.name, (SELECT COUNT(*) FROM backup_items i WHERE i.backup_set_id = s.id) AS n \
                 FROM backup_sets s WHERE s.tenant_id = $1 ORDER BY s.id",
                vec![tenant.value().into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(BackupSet {
                    id: Self::int(r, "id")?,
                    tenant,
                    name: Self::text(r, "name")?,
                    item_count: u64::try_from(Self::int(r, "n")?).unwrap_or(0),
                })
            })
            .collect()
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
        let sql = format!(
            "SELECT {BACKUP_ITEM_COLUMNS} FROM backup_items WHERE backup_set_id = $1 ORDER BY id"
        );
        self.rows(&self.db, &sql, vec![backup_set.into()])
            .await?
            .iter()
            .map(Self::backup_item)
            .collect()
    }

    async fn item_ids(&self, backup_set: i64) -> Result<Vec<i64>, FamilyStoreError> {
        self.rows(
            &self.db,
            "SELECT id FROM backup_items WHERE backup_set_id = $1 ORDER BY id",
            vec![backup_set.into()],
        )
        .await?
        .iter()
        .map(|row| Self::int(row, "id"))
        .collect()
    }

    async fn items_by_id(&self, ids: &[i64]) -> Result<Vec<BackupItem>, FamilyStoreError> {
        let mut found = Vec::with_capacity(ids.len());
        // 256 ids a statement stay far below either database's limit of bound values.
        for ids in ids.chunks(256) {
            let list: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT {BACKUP_ITEM_COLUMNS} FROM backup_items WHERE id IN ({})",
                list.join(", ")
            );
            let values = ids.iter().map(|id| (*id).into()).collect();
            for row in self.rows(&self.db, &sql, values).await? {
                found.push(Self::backup_item(&row)?);
            }
        }
        Ok(found)
    }

    async fn item(&self, id: i64) -> Result<Option<BackupItem>, FamilyStoreError> {
        let sql = format!("SELECT {BACKUP_ITEM_COLUMNS} FROM backup_items WHERE id = $1");
        self.rows(&self.db, &sql, vec![id.into()])
            .await?
            .first()
            .map(Self::backup_item)
            .transpose()
    }

    async fn find_item(
        &self,
        backup_set: i64,
        policy_id: &str,
    ) -> Result<Option<BackupItem>, FamilyStoreError> {
        let sql = format!(
            "SELECT {BACKUP_ITEM_COLUMNS} FROM backup_items WHERE backup_set_id = $1 AND policy_id = $2"
        );
        self.rows(&self.db, &sql, vec![backup_set.into(), policy_id.into()])
            .await?
            .first()
            .map(Self::backup_item)
            .transpose()
    }

    async fn add_item(
        &self,
        key: &WorkKey,
        backup_set: i64,
        payload: PolicyPayload,
    ) -> Result<BackupItemAdded, FamilyStoreError> {
        self.exec(
            &self.db,
            "INSERT INTO backup_items (backup_set_id, policy_id, policy_type, name, body, added_by_run, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            vec![
                backup_set.into(),
                payload.policy.id.as_str().into(),
                payload.policy.policy_type.as_str().into(),
                payload.policy.name.as_str().into(),
                payload.body.into(),
                key.run.value().into(),
                now_millis().into(),
            ],
        )
        .await?;
        let item = self
            .find_item(backup_set, &payload.policy.id)
            .await?
            .ok_or_else(|| FamilyStoreError::NotFound(format!("backup set {backup_set}")))?;
        Ok(if item.added_by == Some(key.run) {
            BackupItemAdded::Added
        } else {
            BackupItemAdded::AlreadyPresent
        })
    }
}

#[async_trait]
impl BaselineStore for SqlFamilies {
    async fn save_baseline(
        &self,
        run: RunId,
        tenant: TenantId,
        items: Vec<BaselineItem>,
    ) -> Result<Baseline, FamilyStoreError> {
        let tx = self.write_tx().await?;
        let inserted = self
            .rows(
                &tx,
                "INSERT INTO baselines (run_id, tenant_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING id",
                vec![run.value().into(), tenant.value().into(), now_millis().into()],
            )
            .await?;
        if let Some(row) = inserted.first() {
            let id = Self::int(row, "id")?;
            for item in &items {
                self.exec(
                    &tx,
                    "INSERT INTO baseline_items (baseline_id, policy_id, policy_type, name, body) VALUES ($1, $2, $3, $4, $5)",
                    vec![
                        id.into(),
                        item.policy.id.as_str().into(),
                        item.policy.policy_type.as_str().into(),
                        item.policy.name.as_str().into(),
                        item.body.as_str().into(),
                    ],
                )
                .await?;
            }
        }
        tx.commit().await.map_err(raw::SqlError::from)?;
        let rows = self
            .rows(
                &self.db,
                "SELECT id, tenant_id, run_id FROM baselines WHERE run_id = $1",
                vec![run.value().into()],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| FamilyStoreError::NotFound(format!("baseline of run {run}")))?;
        self.load_baseline(row).await
    }

    async fn baseline(
        &self,
        tenant: TenantId,
        id: i64,
    ) -> Result<Option<Baseline>, FamilyStoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT id, tenant_id, run_id FROM baselines WHERE id = $1 AND tenant_id = $2",
                vec![id.into(), tenant.value().into()],
            )
            .await?;
        match rows.first() {
            Some(row) => Ok(Some(self.load_baseline(row).await?)),
            None => Ok(None),
        }
    }

    async fn baselines(&self, tenant: TenantId) -> Result<Vec<Baseline>, FamilyStoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT id, tenant_id, run_id FROM baselines WHERE tenant_id = $1 ORDER BY id",
                vec![tenant.value().into()],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.load_baseline(row).await?);
        }
        Ok(out)
    }

    async fn save_finding(
        &self,
        key: &WorkKey,
        baseline: i64,
        finding: Finding,
    ) -> Result<(), FamilyStoreError> {
        let kind = match finding.kind {
            FindingKind::Missing => "missing",
            FindingKind::Changed => "changed",
        };
        self.exec(
            &self.db,
            "INSERT INTO baseline_findings (run_id, item_key, baseline_id, policy_id, kind) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
            vec![key.run.value().into(), key.item.as_str().into(), baseline.into(), finding.policy_id.into(), kind.into()],
        )
        .await?;
        Ok(())
    }

    async fn findings_of(&self, run: RunId) -> Result<Vec<Finding>, FamilyStoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT policy_id, kind FROM baseline_findings WHERE run_id = $1 ORDER BY policy_id",
                vec![run.value().into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let kind = match Self::text(r, "kind")?.as_str() {
                    "missing" => FindingKind::Missing,
                    _ => FindingKind::Changed,
                };
                Ok(Finding {
                    policy_id: Self::text(r, "policy_id")?,
                    kind,
                })
            })
            .collect()
    }
}
