//! The read models every adopter renders: the tenant activity feed, the operations
//! collection, the operation detail, a run's items and a user's notifications. All go through
//! [`AccessPolicy`].

use std::collections::BTreeMap;
use std::sync::Arc;

use opsrun_domain::{
    ItemKey, ItemOutcome, LedgerEntry, OperationRun, OperationRunProgressContract, OperationType,
    ProgressMode, ProgressView, RecordWindow, RunId, RunOutcome, RunStatus, Slug, Staleness,
    TenantId, Timestamp, UserId,
};

use crate::access::{AccessError, AccessPolicy, Caller};
use crate::ports::{
    AuditEvent, Clock, Directory, LedgerQuery, NamedRun, Notification, RunQueries, RunQuery,
};

/// Completed runs stay in the activity feed this long.
pub const ACTIVITY_WINDOW_MS: i64 = 60_000;
/// Largest page of any list.
pub const MAX_PAGE: u32 = 200;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 50;

/// A run as every surface shows it: the run, its progress view, and the names it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// The run.
    pub run: OperationRun,
    /// Its progress view (with staleness judged now).
    pub progress: ProgressView,
    /// Its tenant's slug.
    pub tenant: Slug,
    /// Its initiator's e-mail, if a user started it.
    pub initiator: Option<String>,
    /// The one place to view it: `/operations/{id}`.
    pub view_url: String,
    /// The runs started as retries of its failed items, oldest first; `None` in lists (looked
    /// up only when one run is read).
    pub retried_by: Option<Vec<RunId>>,
}

/// One page of a list with a cursor to the next page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C> {
    /// The entries.
    pub items: Vec<T>,
    /// Where the next page starts, or `None` on the last page.
    pub next_cursor: Option<C>,
}

impl<T, C> Page<T, C> {
    /// A page of a list already in its order: the entries after those `before_cursor` says
    /// come before the cursor, at most `limit` of them (1 to [`MAX_PAGE`]), and the cursor of
    /// the last one when more follow.
    pub fn after(
        all: impl IntoIterator<Item = T>,
        mut before_cursor: impl FnMut(&T) -> bool,
        limit: u32,
        cursor_of: impl Fn(&T) -> C,
    ) -> Self {
        let limit = limit.clamp(1, MAX_PAGE) as usize;
        let mut rest = all
            .into_iter()
            .skip_while(|item| before_cursor(item))
            .peekable();
        let items: Vec<T> = rest.by_ref().take(limit).collect();
        let next_cursor = rest
            .peek()
            .is_some()
            .then(|| items.last().map(cursor_of))
            .flatten();
        Self { items, next_cursor }
    }
}

/// Filters of the operations collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectionFilter {
    /// Only this tenant.
    pub tenant: Option<Slug>,
    /// Only this family.
    pub operation_type: Option<OperationType>,
    /// Only this status.
    pub status: Option<RunStatus>,
    /// Only this outcome.
    pub outcome: Option<RunOutcome>,
    /// Only runs created at or after this instant.
    pub created_since: Option<Timestamp>,
}

/// One line of a run's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    /// When.
    pub at: Timestamp,
    /// What happened, e.g. `created`, `started`, `operation.completed`.
    pub event: String,
    /// The user who caused it, if any.
    pub actor: Option<String>,
}

/// Everything the operation detail page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationDetail {
    /// The run.
    pub summary: RunSummary,
    /// The first failed items, by key.
    pub failed_items: Vec<(ItemKey, LedgerEntry)>,
    /// The parent run, if any.
    pub parent: Option<RunId>,
    /// Runs started by this run.
    pub children: Vec<RunSummary>,
    /// Created, started, and the audit events.
    pub timeline: Vec<TimelineEntry>,
}

/// The read models, over the store, the directory and the clock.
#[derive(Clone)]
pub struct ReadModels {
    store: Arc<dyn RunQueries>,
    directory: Arc<dyn Directory>,
    clock: Arc<dyn Clock>,
    stale_after_ms: i64,
}

impl std::fmt::Debug for ReadModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadModels")
            .field("stale_after_ms", &self.stale_after_ms)
            .finish_non_exhaustive()
    }
}

/// Resolves tenant slugs and user e-mails once per request.
struct Names<'a> {
    directory: &'a dyn Directory,
    tenants: BTreeMap<TenantId, Slug>,
    users: BTreeMap<UserId, String>,
}

impl<'a> Names<'a> {
    fn new(directory: &'a dyn Directory) -> Self {
        Self {
            directory,
            tenants: BTreeMap::new(),
            users: BTreeMap::new(),
        }
    }

    async fn tenant(&mut self, id: TenantId) -> Result<Slug, AccessError> {
        if let Some(slug) = self.tenants.get(&id) {
            return Ok(slug.clone());
        }
        let slug = self.directory.tenant(id).await?.slug;
        self.tenants.insert(id, slug.clone());
        Ok(slug)
    }

    async fn user(&mut self, id: UserId) -> Result<String, AccessError> {
        if let Some(email) = self.users.get(&id) {
            return Ok(email.clone());
        }
        let email = self.directory.user(id).await?.email;
        self.users.insert(id, email.clone());
        Ok(email)
    }
}

/// A pace as every surface words it, always as an estimate: "about 40 s left · 2.5/s",
/// "about 3 min left", "about 2 h 5 min left"; "finishing" when nothing is left.
#[must_use]
pub fn eta_phrase(pace: &opsrun_domain::Pace) -> String {
    let secs = pace.eta_seconds;
    let left = match secs {
        0 => return "finishing".to_owned(),
        1..=59 => format!("about {secs} s left"),
        60..=3_599 => format!("about {} min left", secs.div_ceil(60)),
        _ => format!("about {} h {} min left", secs / 3_600, (secs % 3_600) / 60),
    };
    format!("{left} · {}/s", rate_text(pace.rate()))
}

/// Items per second with the digits that matter: "0.25", "2.5", "120".
#[must_use]
pub fn rate_text(rate: f64) -> String {
    if rate >= 100.0 {
        format!("{rate:.0}")
    } else if rate >= 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// Whether a view shows a count a rate could go with: counted, or a counted component.
fn has_count(view: &ProgressView) -> bool {
    view.mode() == ProgressMode::Counted
        || view
            .components()
            .is_some_and(|c| c.iter().any(|c| c.progress.mode() == ProgressMode::Counted))
}

/// Whether a summary may carry a rate and ETA (running, neither paused nor stale, with a counted
/// view or a counted component), so its run's record window is worth a read.
fn paced(summary: &RunSummary) -> bool {
    let progress = &summary.progress;
    summary.run.status() == RunStatus::Running
        && !progress.paused
        && !progress.stale
        && has_count(progress)
}

impl ReadModels {
    /// Read models over the ports; runs without a sign of life for `stale_after_ms` are shown
    /// as stale.
    #[must_use]
    pub fn new(
        store: Arc<dyn RunQueries>,
        directory: Arc<dyn Directory>,
        clock: Arc<dyn Clock>,
        stale_after_ms: i64,
    ) -> Self {
        Self {
            store,
            directory,
            clock,
            stale_after_ms,
        }
    }

    async fn summarize(
        &self,
        names: &mut Names<'_>,
        run: OperationRun,
    ) -> Result<RunSummary, AccessError> {
        let tenant = names.tenant(run.tenant()).await?;
        let initiator = match run.initiator() {
            Some(user) => Some(names.user(user).await?),
            None => None,
        };
        self.summary(run, tenant, initiator).await
    }

    /// The run's summary. Only a run that may carry a rate and ETA (running, neither paused
    /// nor stale, with a counted view or a counted component) costs a look at its ledger's
    /// recent record times.
    async fn summary(
        &self,
        run: OperationRun,
        tenant: Slug,
        initiator: Option<String>,
    ) -> Result<RunSummary, AccessError> {
        let now = self.clock.now();
        let mut summary = self.summary_at(run, tenant, initiator, now);
        if paced(&summary) {
            let window = self.store.record_window(summary.run.id(), now).await?;
            self.with_window(&mut summary, now, window);
        }
        Ok(summary)
    }

    fn staleness(&self, now: Timestamp, window: Option<RecordWindow>) -> Staleness {
        Staleness {
            now,
            threshold_ms: self.stale_after_ms,
            window,
        }
    }

    /// The summary of `run` as of `now`, without a rate.
    fn summary_at(
        &self,
        run: OperationRun,
        tenant: Slug,
        initiator: Option<String>,
        now: Timestamp,
    ) -> RunSummary {
        let progress = OperationRunProgressContract::resolve_at(&run, self.staleness(now, None));
        let view_url = format!("/operations/{}", run.id());
        RunSummary {
            run,
            progress,
            tenant,
            initiator,
            view_url,
            retried_by: None,
        }
    }

    /// Resolves `summary`'s progress again with its record window, when one was read.
    fn with_window(&self, summary: &mut RunSummary, now: Timestamp, window: Option<RecordWindow>) {
        if window.is_some() {
            summary.progress =
                OperationRunProgressContract::resolve_at(&summary.run, self.staleness(now, window));
        }
    }

    /// Runs read with their names (one query) as summaries; the record windows of those that
    /// may carry a rate, in one more read.
    async fn summarize_named(&self, runs: Vec<NamedRun>) -> Result<Vec<RunSummary>, AccessError> {
        let now = self.clock.now();
        let mut summaries: Vec<RunSummary> = runs
            .into_iter()
            .map(|named| self.summary_at(named.run, named.tenant, named.initiator, now))
            .collect();
        let wanted: Vec<RunId> = summaries
            .iter()
            .filter(|summary| paced(summary))
            .map(|summary| summary.run.id())
            .collect();
        if wanted.is_empty() {
            return Ok(summaries);
        }
        let windows = self.store.record_windows(&wanted, now).await?;
        for summary in &mut summaries {
            let window = windows.get(&summary.run.id()).copied();
            self.with_window(summary, now, window);
        }
        Ok(summaries)
    }

    /// One run as a summary.
    ///
    /// # Errors
    ///
    /// [`AccessError::NotFound`] when absent or not visible; [`AccessError::Store`].
    pub async fn run(&self, caller: &Caller, id: RunId) -> Result<RunSummary, AccessError> {
        let run = AccessPolicy::visible_run(caller, self.store.as_ref(), id).await?;
        let mut names = Names::new(self.directory.as_ref());
        let id = run.id();
        let mut summary = self.summarize(&mut names, run).await?;
        summary.retried_by = Some(self.store.retries_of(id).await?);
        Ok(summary)
    }

    /// The installation's top-level runs by family, status and outcome, and how many running
    /// runs are stale now (the same rule the pages flag them with), for metrics.
    ///
    /// # Errors
    ///
    /// [`crate::StoreError`].
    pub async fn census(&self) -> Result<(Vec<crate::ports::RunCensus>, u64), crate::StoreError> {
        let census = self.store.census().await?;
        let now = self.clock.now();
        let stale = self
            .store
            .active_runs()
            .await?
            .iter()
            .filter(|run| run.is_stale(now, self.stale_after_ms))
            .count() as u64;
        Ok((census, stale))
    }

    /// Run `id` as the workspace `workspace` sees it through tenant `scope`: what a webhook
    /// delivery carries (read with the endpoint's own scope, so a delivery never shows a run
    /// its endpoint could not see).
    ///
    /// # Errors
    ///
    /// [`AccessError::NotFound`] when absent or out of scope; [`AccessError::Store`].
    pub async fn run_in(
        &self,
        workspace: opsrun_domain::WorkspaceId,
        scope: &crate::TenantScope,
        id: RunId,
    ) -> Result<RunSummary, AccessError> {
        let run = self
            .store
            .visible_run(id, workspace, scope)
            .await?
            .ok_or_else(|| AccessError::NotFound(format!("operation {id}")))?;
        let mut names = Names::new(self.directory.as_ref());
        let mut summary = self.summarize(&mut names, run).await?;
        summary.retried_by = Some(self.store.retries_of(id).await?);
        Ok(summary)
    }

    /// The tenant shell activity feed: the tenant's queued and running top-level runs plus
    /// those completed in the last 60 s, newest first.
    ///
    /// # Errors
    ///
    /// [`AccessError::NotFound`] when the tenant is absent or not visible;
    /// [`AccessError::Store`].
    pub async fn activity(
        &self,
        caller: &Caller,
        tenant: &Slug,
    ) -> Result<Vec<RunSummary>, AccessError> {
        let since = self.clock.now().plus_millis(-ACTIVITY_WINDOW_MS);
        // One query: the tenant, its runs and their initiators; the access check follows on
        // the tenant it returned, with the same answer for absent and invisible.
        let feed = self
            .store
            .activity(caller.workspace(), tenant, since)
            .await?;
        if !AccessPolicy::can_see_tenant(caller, &feed.tenant) {
            return Err(AccessError::NotFound(format!("tenant '{tenant}'")));
        }
        self.summarize_named(feed.runs).await
    }

    /// The operations collection: top-level runs the caller may see, newest first, `limit`
    /// per page (1 to [`MAX_PAGE`]), continuing below the `before` cursor.
    ///
    /// # Errors
    ///
    /// [`AccessError::NotFound`] when the filter's tenant is absent or not visible;
    /// [`AccessError::Store`].
    pub async fn collection(
        &self,
        caller: &Caller,
        filter: CollectionFilter,
        limit: u32,
        before: Option<RunId>,
    ) -> Result<Page<RunSummary, RunId>, AccessError> {
        let tenant = match &filter.tenant {
            Some(slug) => Some(
                AccessPolicy::visible_tenant(caller, self.directory.as_ref(), slug)
                    .await?
                    .id,
            ),
            None => None,
        };
        let limit = limit.clamp(1, MAX_PAGE);
        let mut runs = self
            .store
            .list_runs(RunQuery {
                workspace: caller.workspace(),
                scope: caller.scope.clone(),
                tenant,
                operation_type: filter.operation_type,
                status: filter.status,
                outcome: filter.outcome,
                before,
                created_since: filter.created_since,
                top_level_only: true,
                limit: limit + 1,
            })
            .await?;
        let next_cursor = if runs.len() > limit as usize {
            runs.truncate(limit as usize);
            runs.last().map(|named| named.run.id())
        } else {
            None
        };
        Ok(Page {
            items: self.summarize_named(runs).await?,
            next_cursor,
        })
    }

    /// A page of a run's ledger by item key, optionally only one outcome.
    ///
    /// # Errors
    ///
    /// [`AccessError::NotFound`] when the run is absent or not visible;
    /// [`AccessError::Store`].
    pub async fn items(
        &self,
        caller: &Caller,
        id: RunId,
        outcome: Option<ItemOutcome>,
        limit: u32,
        after: Option<ItemKey>,
    ) -> Result<Page<(ItemKey, LedgerEntry), ItemKey>, AccessError> {
        AccessPolicy::visible_run(caller, self.store.as_ref(), id).await?;
        let limit = limit.clamp(1, MAX_PAGE);
        let mut items = self
            .store
            .ledger_entries(LedgerQuery {
                run: id,
                outcome,
                after,
                limit: limit + 1,
            })
            .await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|(k, _)| k.clone())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// The operation detail.
    ///
    /// # Errors
    ///
    /// [`AccessError::NotFound`] when the run is absent or not visible;
    /// [`AccessError::Store`].
    pub async fn detail(&self, caller: &Caller, id: RunId) -> Result<OperationDetail, AccessError> {
        let run = AccessPolicy::visible_run(caller, self.store.as_ref(), id).await?;
        let failed_items = self
            .store
            .ledger_entries(LedgerQuery {
                run: id,
                outcome: Some(ItemOutcome::Failed),
                after: None,
                limit: DEFAULT_PAGE,
            })
            .await?;
        let children = self.store.children(id).await?;
        let audit = self.store.audit_events(id).await?;
        let mut names = Names::new(self.directory.as_ref());
        let timeline = self.timeline(&mut names, &run, audit).await?;
        let parent = run.parent();
        let mut summary = self.summarize(&mut names, run).await?;
        summary.retried_by = Some(self.store.retries_of(id).await?);
        let mut child_summaries = Vec::with_capacity(children.len());
        for child in children {
            child_summaries.push(self.summarize(&mut names, child).await?);
        }
        Ok(OperationDetail {
            summary,
            failed_items,
            parent,
            children: child_summaries,
            timeline,
        })
    }

    async fn timeline(
        &self,
        names: &mut Names<'_>,
        run: &OperationRun,
        audit: Vec<AuditEvent>,
    ) -> Result<Vec<TimelineEntry>, AccessError> {
        let initiator = match run.initiator() {
            Some(user) => Some(names.user(user).await?),
            None => None,
        };
        let mut timeline = vec![TimelineEntry {
            at: run.created_at(),
            event: "created".into(),
            actor: initiator,
        }];
        if let Some(at) = run.started_at() {
            timeline.push(TimelineEntry {
                at,
                event: "started".into(),
                actor: None,
            });
        }
        if let Some(at) = run.paused_at().filter(|_| !run.is_completed()) {
            timeline.push(TimelineEntry {
                at,
                event: "paused".into(),
                actor: None,
            });
        }
        for event in audit {
            let actor = match event.actor {
                Some(user) => Some(names.user(user).await?),
                None => None,
            };
            timeline.push(TimelineEntry {
                at: event.at,
                event: event.action,
                actor,
            });
        }
        Ok(timeline)
    }

    /// The caller's terminal notifications, newest first, with the tenant slug of each run.
    ///
    /// # Errors
    ///
    /// [`AccessError::Store`].
    pub async fn notifications(
        &self,
        caller: &Caller,
    ) -> Result<Vec<(Notification, Slug)>, AccessError> {
        let mut names = Names::new(self.directory.as_ref());
        let mut out = Vec::new();
        for notification in self.store.notifications(caller.user.id).await? {
            if !AccessPolicy::can_see_notification(caller, notification.tenant) {
                continue;
            }
            let slug = names.tenant(notification.tenant).await?;
            out.push((notification, slug));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn a_list_pages_after_its_cursor_and_ends_without_one() {
        let first = Page::after(1..=5, |_| false, 2, |n| *n);
        let second = Page::after(1..=5, |n| *n <= 2, 2, |n| *n);
        let last = Page::after(1..=5, |n| *n <= 4, 2, |n| *n);

        assert_eq!((first.items, first.next_cursor), (vec![1, 2], Some(2)));
        assert_eq!((second.items, second.next_cursor), (vec![3, 4], Some(4)));
        assert_eq!((last.items, last.next_cursor), (vec![5], None));
    }

    use opsrun_domain::{ItemRecord, ProgressMode, ReasonCode, TenantId, WorkSet, WorkspaceId};

    use super::*;
    use crate::RunParams;
    use crate::ports::{Role, TenantScope};
    use crate::testing::harness::Harness;

    fn models(h: &Harness) -> ReadModels {
        ReadModels::new(h.store.clone(), h.store.clone(), h.clock.clone(), 60_000)
    }

    fn caller(h: &Harness, scope: TenantScope) -> Caller {
        Caller {
            user: h.user.clone(),
            role: Role::Readonly,
            scope,
            via: crate::access::Via::Local,
        }
    }

    fn contoso() -> Slug {
        Slug::parse("contoso").unwrap()
    }

    #[tokio::test]
    async fn the_feed_shows_active_runs_and_runs_completed_in_the_last_minute() {
        let h = Harness::new(4, &[]);
        let old = h.start(RunParams::BaselineCapture).await;
        h.service.cancel_run(old, None).await.unwrap();
        h.clock.advance(61_000);
        let recent = h
            .start(RunParams::EvidenceSnapshotGenerate { dimensions: None })
            .await;
        h.service.cancel_run(recent, None).await.unwrap();
        let active = h.start(RunParams::BaselineCapture).await;

        let feed = models(&h)
            .activity(&caller(&h, TenantScope::All), &contoso())
            .await
            .unwrap();

        let ids: Vec<RunId> = feed.iter().map(|s| s.run.id()).collect();
        assert_eq!(ids, vec![active, recent]);
        assert_eq!(feed[0].view_url, format!("/operations/{active}"));
        assert_eq!(feed[0].tenant, contoso());
        assert_eq!(feed[0].initiator.as_deref(), Some("ops@example.com"));
        assert_eq!(feed[1].progress.mode(), ProgressMode::None);
    }

    #[tokio::test]
    async fn a_feed_entry_is_counted_once_its_total_is_frozen() {
        let h = Harness::new(4, &[]);
        let id = h
            .start(RunParams::EvidenceSnapshotGenerate { dimensions: None })
            .await;
        let units = ["a", "b", "c", "d"].map(|k| opsrun_domain::ItemKey::parse(k).unwrap());
        h.service
            .set_total(
                id,
                WorkSet::try_new(units.to_vec(), "4 evidence dimensions").unwrap(),
            )
            .await
            .unwrap();
        h.service
            .record_item(id, ItemRecord::succeeded(units[0].clone()))
            .await
            .unwrap();

        let feed = models(&h)
            .activity(&caller(&h, TenantScope::All), &contoso())
            .await
            .unwrap();

        assert_eq!(feed[0].progress.percent(), Some(25));
        assert_eq!(
            feed[0].progress.basis.as_deref(),
            Some("4 evidence dimensions")
        );
    }

    #[tokio::test]
    async fn runs_of_tenants_outside_the_scope_are_not_found() {
        let h = Harness::new(4, &[]);
        let id = h.start(RunParams::BaselineCapture).await;
        let blind = caller(&h, TenantScope::Only(BTreeSet::new()));
        let models = models(&h);

        let run = models.run(&blind, id).await;
        let detail = models.detail(&blind, id).await;
        let items = models.items(&blind, id, None, 10, None).await;
        let feed = models.activity(&blind, &contoso()).await;
        let absent = models
            .run(&caller(&h, TenantScope::All), RunId::new(999))
            .await;

        assert!(matches!(run, Err(AccessError::NotFound(_))));
        assert!(matches!(detail, Err(AccessError::NotFound(_))));
        assert!(matches!(items, Err(AccessError::NotFound(_))));
        assert!(matches!(feed, Err(AccessError::NotFound(_))));
        assert!(matches!(absent, Err(AccessError::NotFound(_))));
    }

    #[tokio::test]
    async fn runs_of_another_workspace_are_not_found() {
        let h = Harness::new(4, &[]);
        let id = h.start(RunParams::BaselineCapture).await;
        let stranger = Caller {
            user: h.store.add_user(WorkspaceId::new(2), "x@example.com"),
            role: Role::Owner,
            scope: TenantScope::All,
            via: crate::access::Via::Local,
        };

        let result = models(&h).run(&stranger, id).await;

        assert!(matches!(result, Err(AccessError::NotFound(_))));
    }

    #[tokio::test]
    async fn the_collection_pages_newest_first_with_a_cursor() {
        let h = Harness::new(4, &[]);
        let mut ids = Vec::new();
        for _ in 0..5 {
            let id = h.start(RunParams::BaselineCapture).await;
            h.service.cancel_run(id, None).await.unwrap();
            ids.push(id);
        }
        let all = caller(&h, TenantScope::All);
        let models = models(&h);

        let first = models
            .collection(&all, CollectionFilter::default(), 2, None)
            .await
            .unwrap();
        let second = models
            .collection(&all, CollectionFilter::default(), 2, first.next_cursor)
            .await
            .unwrap();
        let last = models
            .collection(&all, CollectionFilter::default(), 2, second.next_cursor)
            .await
            .unwrap();

        let page =
            |p: &Page<RunSummary, RunId>| p.items.iter().map(|s| s.run.id()).collect::<Vec<_>>();
        assert_eq!(page(&first), vec![ids[4], ids[3]]);
        assert_eq!(page(&second), vec![ids[2], ids[1]]);
        assert_eq!(page(&last), vec![ids[0]]);
        assert_eq!(last.next_cursor, None);
    }

    #[tokio::test]
    async fn the_collection_filters_by_outcome_and_type() {
        let h = Harness::new(4, &[]);
        let cancelled = h.start(RunParams::BaselineCapture).await;
        h.service.cancel_run(cancelled, None).await.unwrap();
        let running = h
            .start(RunParams::EvidenceSnapshotGenerate { dimensions: None })
            .await;
        let models = models(&h);
        let all = caller(&h, TenantScope::All);

        let by_outcome = models
            .collection(
                &all,
                CollectionFilter {
                    outcome: Some(RunOutcome::Cancelled),
                    ..CollectionFilter::default()
                },
                10,
                None,
            )
            .await
            .unwrap();
        let by_type = models
            .collection(
                &all,
                CollectionFilter {
                    operation_type: Some(OperationType::EVIDENCE_SNAPSHOT_GENERATE),
                    ..CollectionFilter::default()
                },
                10,
                None,
            )
            .await
            .unwrap();

        assert_eq!(by_outcome.items.len(), 1);
        assert_eq!(by_outcome.items[0].run.id(), cancelled);
        assert_eq!(by_type.items[0].run.id(), running);
        assert_eq!(by_type.items.len(), 1);
    }

    #[tokio::test]
    async fn the_detail_shows_failed_items_and_a_timeline() {
        let h = Harness::new(4, &[]);
        let id = h
            .start(RunParams::EvidenceSnapshotGenerate { dimensions: None })
            .await;
        h.service.mark_running(id).await.unwrap();
        let key = opsrun_domain::ItemKey::parse("devices").unwrap();
        h.service
            .record_item(
                id,
                ItemRecord::failed(key.clone(), ReasonCode::parse("x.failed").unwrap()),
            )
            .await
            .unwrap();
        h.service.complete_run(id, None, Vec::new()).await.unwrap();

        let detail = models(&h)
            .detail(&caller(&h, TenantScope::All), id)
            .await
            .unwrap();

        assert_eq!(detail.failed_items.len(), 1);
        assert_eq!(detail.failed_items[0].0, key);
        let events: Vec<&str> = detail.timeline.iter().map(|t| t.event.as_str()).collect();
        assert_eq!(events, vec!["created", "started", "operation.completed"]);
        assert_eq!(detail.summary.run.outcome(), RunOutcome::Failed);
    }

    #[tokio::test]
    async fn notifications_are_one_per_completed_run_of_the_initiator() {
        let h = Harness::new(4, &[]);
        let id = h.start(RunParams::BaselineCapture).await;
        h.service.cancel_run(id, None).await.unwrap();
        h.service.cancel_run(id, None).await.unwrap();

        let notifications = models(&h)
            .notifications(&caller(&h, TenantScope::All))
            .await
            .unwrap();

        assert_eq!(notifications.len(), 1);
        assert_eq!(notifications[0].0.run, id);
        assert_eq!(notifications[0].0.outcome, RunOutcome::Cancelled);
        assert_eq!(notifications[0].1, contoso());
    }

    #[tokio::test]
    async fn a_token_scoped_to_other_tenants_sees_none_of_this_tenants_notifications() {
        let h = Harness::new(4, &[]);
        let id = h.start(RunParams::BaselineCapture).await;
        h.service.cancel_run(id, None).await.unwrap();
        let elsewhere = TenantId::new(h.tenant.id.value() + 1);

        let scoped = models(&h)
            .notifications(&caller(&h, TenantScope::Only(BTreeSet::from([elsewhere]))))
            .await
            .unwrap();
        let own = models(&h)
            .notifications(&caller(
                &h,
                TenantScope::Only(BTreeSet::from([h.tenant.id])),
            ))
            .await
            .unwrap();

        assert!(scoped.is_empty());
        assert_eq!(own.len(), 1);
    }
}
