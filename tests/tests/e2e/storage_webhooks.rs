//! The storage contract of webhooks, on the in-memory store, SQLite and PostgreSQL: a winning
//! completion writes one pending delivery per subscribed endpoint that may see the run (and a
//! losing one writes none), a claim hides a delivery until its lease ends, an attempt is
//! recorded as given, a redelivery is a new row of the same event, and removal takes the log.

use std::collections::BTreeSet;

use opsrun_application::ports::{AttemptRecord, CreateRun, NewEndpoint, TenantScope};
use opsrun_application::{RunParams, TerminalEffects};
use opsrun_domain::{Completion, DeliveryState, RunOutcome, Timestamp, WebhookEvent};

use crate::contract;

fn t(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

contract!(
    a_completion_writes_one_delivery_per_endpoint_that_may_see_it,
    |store| {
        let hooks = store.webhooks();
        let contoso = store.tenant("contoso").await?;
        let fabrikam = store.tenant("fabrikam").await?;
        let endpoint = |scope: TenantScope, url: &str| NewEndpoint {
            workspace: store.workspace(),
            url: url.to_owned(),
            events: BTreeSet::from([WebhookEvent::Completed]),
            scope,
            secret: format!("whsec_{url}"),
            created_by: None,
            at: t(10),
        };
        let all = hooks
            .add_endpoint(endpoint(TenantScope::All, "https://a.example/"))
            .await?;
        let only_contoso = hooks
            .add_endpoint(endpoint(
                TenantScope::Only(BTreeSet::from([contoso.id])),
                "https://c.example/",
            ))
            .await?;
        let only_fabrikam = hooks
            .add_endpoint(endpoint(
                TenantScope::Only(BTreeSet::from([fabrikam.id])),
                "https://f.example/",
            ))
            .await?;
        assert_eq!(
            hooks
                .endpoints(Some(store.workspace()))
                .await?
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>(),
            vec![only_fabrikam.id, only_contoso.id, all.id],
            "newest first"
        );
        let run = store
            .store()
            .create_run(CreateRun {
                workspace: store.workspace(),
                tenant: contoso.id,
                params: RunParams::EvidenceSnapshotGenerate { dimensions: None },
                initiator: None,
                parent: None,
                retry_of: None,
                at: t(100),
            })
            .await?
            .run
            .id();
        let done = |at| Completion::decided(RunOutcome::Cancelled, t(at));
        let won = store
            .store()
            .complete(run, done(200), TerminalEffects { actor: None })
            .await?;
        assert!(won.won);
        let lost = store
            .store()
            .complete(run, done(300), TerminalEffects { actor: None })
            .await?;
        assert!(!lost.won);
        for (endpoint, expected) in [(all.id, 1), (only_contoso.id, 1), (only_fabrikam.id, 0)] {
            let log = hooks.deliveries(endpoint, 100).await?;
            assert_eq!(log.len(), expected, "endpoint {endpoint}");
            for d in &log {
                assert_eq!(d.run, run);
                assert_eq!(d.event_id, format!("evt_{}_completed", run.value()));
                assert_eq!(d.state, DeliveryState::Pending);
                assert_eq!(d.attempts, 0);
                assert_eq!(d.occurred_at, t(200));
                assert_eq!(d.next_attempt_at, Some(t(200)));
            }
        }

        // Claims: due ones only, each hidden until its lease ends.
        assert!(hooks.claim_due(t(199), t(10_000), 10).await?.is_empty());
        let claimed = hooks.claim_due(t(250), t(5_000), 10).await?;
        assert_eq!(claimed.len(), 2);
        assert!(hooks.claim_due(t(4_999), t(9_000), 10).await?.is_empty());
        let first = claimed
            .iter()
            .find(|c| c.endpoint.id == all.id)
            .ok_or("no claim of the first endpoint")?;
        assert_eq!(first.secret, "whsec_https://a.example/");
        assert_eq!(first.endpoint.scope, TenantScope::All);
        assert_eq!(first.lease_until, t(5_000));
        let late = AttemptRecord {
            at: t(255),
            status: Some(503),
            latency_ms: 12,
            error: Some("the endpoint answered 503".to_owned()),
            state: DeliveryState::Pending,
            next_attempt_at: Some(t(1_000)),
        };
        // A claim that no longer holds the delivery records nothing.
        assert!(
            !hooks
                .record_attempt(first.delivery.id, t(4_000), late.clone())
                .await?
        );
        hooks
            .record_attempt(
                first.delivery.id,
                first.lease_until,
                AttemptRecord {
                    at: t(260),
                    status: Some(503),
                    latency_ms: 12,
                    error: Some("the endpoint answered 503".to_owned()),
                    state: DeliveryState::Pending,
                    next_attempt_at: Some(t(1_000)),
                },
            )
            .await?;
        // Recorded once: the same claim cannot record again.
        assert!(
            !hooks
                .record_attempt(first.delivery.id, first.lease_until, late)
                .await?
        );
        let again = hooks.claim_due(t(1_000), t(2_000), 10).await?;
        assert_eq!(
            again.iter().map(|c| c.delivery.id).collect::<Vec<_>>(),
            vec![first.delivery.id],
            "the retry is due at its time; the other claim is still leased"
        );
        assert_eq!(again[0].delivery.attempts, 1);
        assert_eq!(again[0].delivery.last_status, Some(503));
        hooks
            .record_attempt(
                first.delivery.id,
                again[0].lease_until,
                AttemptRecord {
                    at: t(1_010),
                    status: Some(200),
                    latency_ms: 7,
                    error: None,
                    state: DeliveryState::Delivered,
                    next_attempt_at: None,
                },
            )
            .await?;
        let log = hooks.deliveries(all.id, 100).await?;
        assert_eq!(log[0].state, DeliveryState::Delivered);
        assert_eq!(log[0].attempts, 2);
        assert_eq!(log[0].last_latency_ms, Some(7));
        assert_eq!(log[0].last_error, None);
        assert_eq!(log[0].next_attempt_at, None);

        // A redelivery: a new pending row of the same event; a delivery of another endpoint is
        // not found through this one.
        let redelivered = hooks
            .redeliver(all.id, first.delivery.id, t(2_000))
            .await?
            .ok_or("no redelivery")?;
        assert_ne!(redelivered.id, first.delivery.id);
        assert_eq!(redelivered.event_id, first.delivery.event_id);
        assert_eq!(redelivered.redelivery_of, Some(first.delivery.id));
        assert_eq!(redelivered.created_at, t(2_000));
        assert_eq!(redelivered.occurred_at, t(200));
        assert_eq!(redelivered.state, DeliveryState::Pending);
        assert!(
            hooks
                .redeliver(only_fabrikam.id, first.delivery.id, t(2_000))
                .await?
                .is_none()
        );
        let counts = hooks.delivery_counts().await?;
        assert!(counts.contains(&(DeliveryState::Delivered, 1)));
        assert!(counts.contains(&(DeliveryState::Pending, 2)));
        assert!(counts.contains(&(DeliveryState::Failed, 0)));

        // Removal takes the endpoint and its log; another workspace cannot remove it.
        let other = opsrun_domain::WorkspaceId::new(store.workspace().value() + 1_000);
        assert!(hooks.remove_endpoint(Some(other), all.id).await?.is_none());
        assert!(
            hooks
                .remove_endpoint(Some(store.workspace()), all.id)
                .await?
                .is_some()
        );
        assert!(hooks.deliveries(all.id, 100).await?.is_empty());
        assert_eq!(hooks.endpoints(None).await?.len(), 2);
        Ok(())
    }
);
