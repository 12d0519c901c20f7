//! The reads of the runs room.

use super::*;

impl SqlRunStore {
    /// A run row joined with its tenant's slug (`tenant_slug`, unless the caller knows it)
    /// and its initiator's e-mail (`initiator_email`).
    pub(super) fn named_run(
        row: &QueryResult,
        slug: Option<&Slug>,
    ) -> Result<NamedRun, StoreError> {
        let run = RunRow::from_query_result(row, "")
            .map_err(raw::SqlError::from)?
            .into_run()?;
        let tenant = match slug {
            Some(slug) => slug.clone(),
            None => Slug::parse(&Self::text(row, "tenant_slug")?)?,
        };
        let initiator = row
            .try_get::<Option<String>>("", "initiator_email")
            .map_err(raw::SqlError::from)?;
        Ok(NamedRun {
            run,
            tenant,
            initiator,
        })
    }

    /// The run's frozen work set, read on `conn`.
    pub(super) async fn load_work_set<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: RunId,
        basis: Option<&str>,
    ) -> Result<Option<WorkSet>, StoreError> {
        let Some(basis) = basis else {
            return Ok(None);
        };
        let rows = self
            .rows(
                conn,
                "SELECT item_key FROM operation_run_units WHERE run_id = $1 ORDER BY position",
                vec![id.value().into()],
            )
            .await?;
        let units = rows
            .iter()
            .map(|r| Ok(ItemKey::parse(&Self::text(r, "item_key")?)?))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(WorkSet::try_new(units, basis)?))
    }
}

#[async_trait]
impl RunQueries for SqlRunStore {
    async fn run(&self, id: RunId) -> Result<OperationRun, StoreError> {
        self.load(&self.db, id).await
    }

    async fn visible_run(
        &self,
        id: RunId,
        workspace: WorkspaceId,
        scope: &TenantScope,
    ) -> Result<Option<OperationRun>, StoreError> {
        // Visibility is part of the lookup: an invisible run is no row, like an absent one.
        let tenants = match scope {
            TenantScope::All => String::new(),
            // Tenant ids are integers from storage, so inlining them is safe.
            TenantScope::Only(ids) => format!(
                " AND tenant_id IN ({})",
                if ids.is_empty() {
                    "NULL".to_owned()
                } else {
                    ids.iter()
                        .map(|t| t.value().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        };
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM operation_runs WHERE id = $1 AND workspace_id = $2{tenants}"
        );
        Ok(self
            .load_many(&sql, vec![id.value().into(), workspace.value().into()])
            .await?
            .pop())
    }

    async fn run_params(&self, id: RunId) -> Result<RunParams, StoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT params FROM operation_runs WHERE id = $1",
                vec![id.value().into()],
            )
            .await?;
        let row = rows.first().ok_or(StoreError::RunNotFound(id))?;
        decode_params(&Self::text(row, "params")?)
    }

    async fn work_set(&self, id: RunId) -> Result<Option<WorkSet>, StoreError> {
        let run = self.load(&self.db, id).await?;
        self.load_work_set(&self.db, id, run.basis()).await
    }

    async fn ledger_keys(&self, id: RunId) -> Result<BTreeSet<ItemKey>, StoreError> {
        self.load(&self.db, id).await?;
        let rows = self
            .rows(
                &self.db,
                "SELECT item_key FROM operation_run_items WHERE run_id = $1",
                vec![id.value().into()],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(ItemKey::parse(&Self::text(r, "item_key")?)?))
            .collect()
    }

    async fn ledger_entries(
        &self,
        query: LedgerQuery,
    ) -> Result<Vec<(ItemKey, LedgerEntry)>, StoreError> {
        self.load(&self.db, query.run).await?;
        let order = self.byte_order();
        let mut sql = "SELECT item_key, outcome, reason, recorded_at, created, updated, deleted, items, tenants \
             FROM operation_run_items WHERE run_id = $1"
            .to_owned();
        let mut values: Vec<Value> = vec![query.run.value().into()];
        if let Some(outcome) = query.outcome {
            values.push(outcome.key().into());
            sql.push_str(&format!(" AND outcome = ${}", values.len()));
        }
        if let Some(after) = &query.after {
            values.push(after.as_str().into());
            sql.push_str(&format!(" AND item_key{order} > ${}", values.len()));
        }
        values.push(i64::from(query.limit).into());
        sql.push_str(&format!(
            " ORDER BY item_key{order} LIMIT ${}",
            values.len()
        ));
        self.rows(&self.db, &sql, values)
            .await?
            .iter()
            .map(Self::ledger_entry)
            .collect()
    }

    async fn active_runs(&self) -> Result<Vec<OperationRun>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM operation_runs WHERE status <> 'completed' ORDER BY id"
        );
        self.load_many(&sql, Vec::new()).await
    }

    async fn census(&self) -> Result<Vec<opsrun_application::ports::RunCensus>, StoreError> {
        let rows = self
            .rows(
                self.connection(),
                "SELECT operation_type, status, outcome, COUNT(*) AS n FROM operation_runs \
                 WHERE parent_id IS NULL GROUP BY operation_type, status, outcome",
                Vec::new(),
            )
            .await?;
        rows.iter()
            .map(|row| {
                let kind = Self::text(row, "operation_type")?;
                let status = Self::text(row, "status")?;
                let outcome = Self::text(row, "outcome")?;
                let corrupt = |what: &str| StoreError::Corrupt(format!("a run has the {what}"));
                Ok(opsrun_application::ports::RunCensus {
                    operation_type: OperationType::parse(&kind)
                        .map_err(|_| corrupt(&format!("type '{kind}'")))?,
                    status: opsrun_domain::RunStatus::parse(&status)
                        .map_err(|_| corrupt(&format!("status '{status}'")))?,
                    outcome: RunOutcome::parse(&outcome)
                        .map_err(|_| corrupt(&format!("outcome '{outcome}'")))?,
                    count: u64::try_from(Self::int(row, "n")?).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn list_runs(&self, query: RunQuery) -> Result<Vec<NamedRun>, StoreError> {
        let mut clauses = vec!["workspace_id = $1".to_owned()];
        let mut values: Vec<Value> = vec![query.workspace.value().into()];
        if let TenantScope::Only(tenants) = &query.scope {
            if tenants.is_empty() {
                return Ok(Vec::new());
            }
            // Tenant ids are integers from storage, so inlining them is safe.
            let list: Vec<String> = tenants.iter().map(|t| t.value().to_string()).collect();
            clauses.push(format!("tenant_id IN ({})", list.join(", ")));
        }
        let filters: [(&str, Option<Value>); 6] = [
            ("tenant_id", query.tenant.map(|t| t.value().into())),
            (
                "operation_type",
                query.operation_type.map(|t| t.key().into()),
            ),
            ("status", query.status.map(|s| s.key().into())),
            ("outcome", query.outcome.map(|o| o.key().into())),
            ("id <", query.before.map(|b| b.value().into())),
            (
                "created_at >=",
                query.created_since.map(|t| t.as_millis().into()),
            ),
        ];
        for (column, value) in filters {
            if let Some(value) = value {
                values.push(value);
                // A column alone compares for equality; one with its operator says it.
                let op = if column.contains(' ') { "" } else { " =" };
                clauses.push(format!("{column}{op} ${}", values.len()));
            }
        }
        if query.top_level_only {
            clauses.push("parent_id IS NULL".to_owned());
        }
        values.push(i64::from(query.limit).into());
        // The page is chosen first (newest ids through the workspace index, stopping at the
        // limit), then only its rows are joined with their names: left to itself, SQLite's
        // planner may start from the tenants and sort every run of the workspace.
        let sql = format!(
            "SELECT {}, t.slug AS tenant_slug, u.email AS initiator_email \
             FROM (SELECT {RUN_COLUMNS} FROM operation_runs WHERE {} ORDER BY id DESC LIMIT ${}) r \
             JOIN tenants t ON t.id = r.tenant_id \
             LEFT JOIN users u ON u.id = r.initiator_id ORDER BY r.id DESC",
            run_columns_of("r"),
            clauses.join(" AND "),
            values.len()
        );
        self.rows(&self.db, &sql, values)
            .await?
            .iter()
            .map(|row| Self::named_run(row, None))
            .collect()
    }

    async fn activity(
        &self,
        workspace: WorkspaceId,
        slug: &Slug,
        completed_since: Timestamp,
    ) -> Result<TenantActivity, StoreError> {
        // From the tenant, so a tenant without runs still answers (one row of NULL run
        // columns) and an unknown slug answers nothing.
        let sql = format!(
            "SELECT t.id AS tenant_key, {}, u.email AS initiator_email FROM tenants t \
             LEFT JOIN operation_runs r ON r.tenant_id = t.id AND r.parent_id IS NULL \
             AND (r.status <> 'completed' OR r.completed_at >= $3) \
             LEFT JOIN users u ON u.id = r.initiator_id \
             WHERE t.workspace_id = $1 AND t.slug = $2 ORDER BY r.id DESC",
            run_columns_of("r")
        );
        let rows = self
            .rows(
                &self.db,
                &sql,
                vec![
                    workspace.value().into(),
                    slug.as_str().into(),
                    completed_since.as_millis().into(),
                ],
            )
            .await?;
        let first = rows
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("tenant '{slug}'")))?;
        let tenant = Tenant {
            id: TenantId::new(Self::int(first, "tenant_key")?),
            workspace,
            slug: slug.clone(),
        };
        let mut runs = Vec::with_capacity(rows.len());
        for row in &rows {
            if Self::opt_int(row, "id")?.is_some() {
                runs.push(Self::named_run(row, Some(slug))?);
            }
        }
        Ok(TenantActivity { tenant, runs })
    }

    async fn children(&self, parent: RunId) -> Result<Vec<OperationRun>, StoreError> {
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM operation_runs WHERE parent_id = $1 ORDER BY id");
        self.load_many(&sql, vec![parent.value().into()]).await
    }

    async fn audit_events(&self, run: RunId) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT id, run_id, action, actor_id, outcome, at FROM audit_events WHERE run_id = $1 ORDER BY id",
                vec![run.value().into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: Self::int(r, "id")?,
                    run: RunId::new(Self::int(r, "run_id")?),
                    action: Self::text(r, "action")?,
                    actor: Self::opt_int(r, "actor_id")?.map(UserId::new),
                    outcome: RunOutcome::parse(&Self::text(r, "outcome")?)?,
                    at: Timestamp::from_millis(Self::int(r, "at")?),
                })
            })
            .collect()
    }

    async fn notifications(&self, user: UserId) -> Result<Vec<Notification>, StoreError> {
        let rows = self
            .rows(
                &self.db,
                "SELECT id, user_id, run_id, operation_type, tenant_id, outcome, created_at, read_at \
                 FROM notifications WHERE user_id = $1 ORDER BY id DESC",
                vec![user.value().into()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Notification {
                    id: Self::int(r, "id")?,
                    user: UserId::new(Self::int(r, "user_id")?),
                    run: RunId::new(Self::int(r, "run_id")?),
                    operation_type: OperationType::parse(&Self::text(r, "operation_type")?)?,
                    tenant: TenantId::new(Self::int(r, "tenant_id")?),
                    outcome: RunOutcome::parse(&Self::text(r, "outcome")?)?,
                    created_at: Timestamp::from_millis(Self::int(r, "created_at")?),
                    read: Self::opt_int(r, "read_at")?.is_some(),
                })
            })
            .collect()
    }

    async fn record_window(
        &self,
        id: RunId,
        now: Timestamp,
    ) -> Result<Option<opsrun_domain::RecordWindow>, StoreError> {
        self.window(id, now).await
    }

    async fn record_windows(
        &self,
        ids: &[RunId],
        now: Timestamp,
    ) -> Result<BTreeMap<RunId, opsrun_domain::RecordWindow>, StoreError> {
        self.windows(ids, now).await
    }

    async fn retries_of(&self, id: RunId) -> Result<Vec<RunId>, StoreError> {
        self.retries(id).await
    }

    async fn tenant_limit(&self, tenant: TenantId) -> Result<Option<u32>, StoreError> {
        self.get_tenant_limit(tenant).await
    }
}
