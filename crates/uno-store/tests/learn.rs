//! The learning tables against real databases: what ingestion picks up,
//! restarts on changed feedback, row leases that never hand the same work to
//! two workers, expiry after a killed worker, and the per-tenant job lease.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use uno_core::feedback::Rating;
use uno_store::Store;
use uno_store::learn::{NewLearnLog, StageOutput};
use uno_store::rows::{row_for_feedback, rows_for_interaction};
use uno_testkit::records::ask;
use uno_testkit::{Backend, TestDatabase, both_backends};
use uuid::Uuid;

both_backends! {
    sources_are_interactions_with_text_feedback,
    changed_feedback_restarts_the_stages,
    leases_never_overlap_and_expire,
    a_stale_worker_cannot_store_its_result,
    repeated_failures_mark_a_log_failed,
    one_worker_at_a_time_rebuilds_a_tenant,
    served_ratings_are_counted_per_cluster_treated_against_holdout,
}

async fn fresh(backend: Backend) -> (TestDatabase, Store) {
    let db = TestDatabase::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

fn log(tenant: &str, id: Uuid, hash: &str) -> NewLearnLog {
    NewLearnLog {
        tenant: tenant.into(),
        interaction_id: id,
        created_at: 1,
        model: "m".into(),
        end_user: Some("u".into()),
        users: vec!["u".into()],
        lang: "en".into(),
        messages: r#"[{"role":"user","content":"q"}]"#.into(),
        query: "q".into(),
        user_query: "q".into(),
        answer: "a".into(),
        feedback: "Feedback 1: more".into(),
        feedback_hash: hash.into(),
        feedback_at: 1,
        rating: None,
    }
}

fn distilled() -> StageOutput {
    StageOutput::Distilled {
        satisfied: false,
        rules_f: vec!["Be specific.".into()],
        rules_0: vec!["Be brief.".into()],
        by: "m".into(),
    }
}

async fn sources_are_interactions_with_text_feedback(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let rated = ask("t", "u", "rated only", "a");
    let commented = ask("t", "u", "commented", "a");
    let corrected = ask("t2", "v", "corrected", "a");
    let silent = ask("t", "u", "no feedback", "a");
    for r in [&rated, &commented, &corrected, &silent] {
        store.write_rows(&rows_for_interaction(r)).await.unwrap();
    }
    let fb = |tenant, r: &uno_core::interaction::InteractionRecord, rating, comment, expected| {
        row_for_feedback(&uno_testkit::records::feedback(
            tenant, r.id, "w", rating, comment, expected,
        ))
    };
    store
        .write_rows(&[
            fb("t", &rated, Some(Rating::Up), None, None),
            fb(
                "t",
                &commented,
                Some(Rating::Down),
                Some("cite a source"),
                None,
            ),
            fb("t2", &corrected, None, None, Some("the right answer")),
        ])
        .await
        .unwrap();
    let sources = store.learn_sources(100).await.unwrap();
    let ids: HashSet<Uuid> = sources.iter().map(|s| s.interaction_id).collect();
    assert_eq!(
        ids,
        HashSet::from([commented.id.0, corrected.id.0]),
        "ratings alone teach nothing"
    );
    let c = sources
        .iter()
        .find(|s| s.interaction_id == commented.id.0)
        .unwrap();
    assert_eq!(c.tenant, "t");
    assert_eq!(c.response_text, "a");
    assert!(c.request.contains("commented"));
    assert_eq!(c.feedback.len(), 1);
    assert_eq!(c.feedback[0].comment.as_deref(), Some("cite a source"));
    assert_eq!(c.feedback[0].rating, Some(-1));
    // Once a log reflects the feedback, it is no longer a source.
    let mut l = log("t", commented.id.0, "h1");
    l.feedback_at = c.feedback[0].updated_at;
    assert!(store.upsert_learn_log(&l).await.unwrap());
    let again: Vec<Uuid> = store
        .learn_sources(100)
        .await
        .unwrap()
        .iter()
        .map(|s| s.interaction_id)
        .collect();
    assert_eq!(again, vec![corrected.id.0]);
    // The tenant's interactions without a learning log (rated or not),
    // newest first, for routing examples; another tenant's never.
    let unlearned = store.unlearned_requests("t", 100).await.unwrap();
    assert_eq!(unlearned.len(), 2, "{unlearned:?}");
    assert!(unlearned[0].contains("no feedback"), "{unlearned:?}");
    assert!(unlearned[1].contains("rated only"), "{unlearned:?}");
    assert_eq!(store.unlearned_requests("t", 1).await.unwrap().len(), 1);
    assert_eq!(store.unlearned_requests("t2", 100).await.unwrap().len(), 1);
    assert!(
        store
            .unlearned_requests("t3", 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn changed_feedback_restarts_the_stages(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let id = Uuid::now_v7();
    assert!(store.upsert_learn_log(&log("t", id, "h1")).await.unwrap());
    let leased = store.lease_learn_logs("w1", 10, 60).await.unwrap();
    assert!(
        store
            .finish_learn_stage(id, "w1", "h1", &distilled())
            .await
            .unwrap()
    );
    assert_eq!(store.learn_log(id).await.unwrap().unwrap().stage, "embed");
    assert_eq!(leased.len(), 1);
    // Same hash: nothing restarts.
    assert!(!store.upsert_learn_log(&log("t", id, "h1")).await.unwrap());
    let kept = store.learn_log(id).await.unwrap().unwrap();
    assert_eq!((kept.stage.as_str(), kept.rules_f.len()), ("embed", 1));
    // New feedback: back to distil, artefacts cleared.
    assert!(store.upsert_learn_log(&log("t", id, "h2")).await.unwrap());
    let restarted = store.learn_log(id).await.unwrap().unwrap();
    assert_eq!(restarted.stage, "distil");
    assert!(restarted.rules_f.is_empty());
    let counts = store.learn_stage_counts(Some("t")).await.unwrap();
    assert_eq!((counts.distil, counts.pending()), (1, 1));
}

async fn leases_never_overlap_and_expire(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let ids: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        store.upsert_learn_log(&log("t", *id, "h")).await.unwrap();
    }
    // Two workers at once: disjoint sets that together cover everything.
    let (a, b) = tokio::join!(
        store.lease_learn_logs("a", 6, 60),
        store.lease_learn_logs("b", 6, 60)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let a_ids: HashSet<Uuid> = a.iter().map(|l| l.input.interaction_id).collect();
    let b_ids: HashSet<Uuid> = b.iter().map(|l| l.input.interaction_id).collect();
    assert!(
        a_ids.is_disjoint(&b_ids),
        "the same log went to two workers"
    );
    assert_eq!(a_ids.len() + b_ids.len(), 10);
    assert!(
        store
            .lease_learn_logs("c", 10, 60)
            .await
            .unwrap()
            .is_empty(),
        "all leased"
    );
    // A worker killed mid-stage: once its lease runs out, another takes the
    // log at the same stage, and the dead worker can no longer store.
    let killed = Uuid::now_v7();
    store
        .upsert_learn_log(&log("t", killed, "h"))
        .await
        .unwrap();
    let k = store.lease_learn_logs("k", 10, 0).await.unwrap();
    assert_eq!(k.len(), 1);
    assert_eq!(k[0].input.interaction_id, killed);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let taken = store.lease_learn_logs("d", 10, 60).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].input.interaction_id, killed);
    assert_eq!(taken[0].stage, "distil", "nothing half-done");
    assert!(
        !store
            .finish_learn_stage(killed, "k", "h", &distilled())
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_learn_stage(killed, "d", "h", &distilled())
            .await
            .unwrap()
    );
}

async fn a_stale_worker_cannot_store_its_result(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let id = Uuid::now_v7();
    store.upsert_learn_log(&log("t", id, "h1")).await.unwrap();
    store.lease_learn_logs("w", 1, 60).await.unwrap();
    // The user's feedback changes while the worker distils the old one.
    store.upsert_learn_log(&log("t", id, "h2")).await.unwrap();
    assert!(
        !store
            .finish_learn_stage(id, "w", "h1", &distilled())
            .await
            .unwrap()
    );
    let l = store.learn_log(id).await.unwrap().unwrap();
    assert_eq!(
        (l.stage.as_str(), l.input.feedback_hash.as_str()),
        ("distil", "h2")
    );
    assert!(l.rules_f.is_empty());
}

async fn repeated_failures_mark_a_log_failed(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let id = Uuid::now_v7();
    store.upsert_learn_log(&log("t", id, "h")).await.unwrap();
    for attempt in 1..=3 {
        assert_eq!(store.lease_learn_logs("w", 1, 60).await.unwrap().len(), 1);
        store
            .fail_learn_stage(id, "w", "upstream answered 500", 3)
            .await
            .unwrap();
        let l = store.learn_log(id).await.unwrap().unwrap();
        assert_eq!(l.attempts, attempt);
        assert_eq!(l.stage, if attempt < 3 { "distil" } else { "failed" });
        assert_eq!(l.last_error.as_deref(), Some("upstream answered 500"));
    }
    assert!(store.lease_learn_logs("w", 1, 60).await.unwrap().is_empty());
    assert_eq!(store.learn_stage_counts(None).await.unwrap().failed, 1);
    // A forced run retries it from the stage it failed at.
    assert_eq!(
        store.reset_stale_learn_logs("e", "n", true).await.unwrap(),
        1
    );
    let l = store.learn_log(id).await.unwrap().unwrap();
    assert_eq!((l.stage.as_str(), l.attempts), ("distil", 0));
}

async fn one_worker_at_a_time_rebuilds_a_tenant(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    assert!(store.lease_learn_job("t", "a", 60).await.unwrap());
    assert!(
        !store.lease_learn_job("t", "b", 60).await.unwrap(),
        "a holds it"
    );
    assert!(
        store.lease_learn_job("other", "b", 60).await.unwrap(),
        "tenants are separate"
    );
    store.finish_learn_job("t", "a", 5, 9, true).await.unwrap();
    assert!(store.lease_learn_job("t", "b", 60).await.unwrap());
    let state = store
        .learn_tenants()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.tenant == "t")
        .unwrap();
    assert_eq!(
        (state.last_logs, state.last_updated, state.dirty),
        (Some(5), Some(9), false)
    );
}

async fn served_ratings_are_counted_per_cluster_treated_against_holdout(backend: Backend) {
    use std::time::{Duration, SystemTime};
    use uno_core::interaction::ServePath::{Holdout, Passthrough, Primary, Reflective};
    use uno_store::lift::ClusterRatings;
    use uno_testkit::records::{feedback, record, served};

    let (_db, store) = fresh(backend).await;
    let now = SystemTime::now();
    let month_ago = now - Duration::from_secs(30 * 86_400);
    // (tenant, cluster, path, when, ratings by distinct users)
    let seeds: Vec<(&str, &str, _, SystemTime, Vec<Rating>)> = vec![
        ("t", "0", Primary, now, vec![Rating::Down]),
        ("t", "0", Primary, now, vec![Rating::Up, Rating::Down]), // net 0: rated, not down
        ("t", "0", Primary, now, vec![Rating::Down, Rating::Down]),
        ("t", "0", Primary, now, vec![]), // unrated
        ("t", "0", Reflective, now, vec![Rating::Up]),
        ("t", "0", Holdout, now, vec![Rating::Down]),
        ("t", "0", Holdout, now, vec![Rating::Up]),
        ("t", "1", Holdout, now, vec![Rating::Up]),
        ("t", "0", Passthrough, now, vec![Rating::Down]), // neither arm
        ("t", "0", Primary, month_ago, vec![Rating::Down]), // before the window
        ("other", "0", Primary, now, vec![Rating::Down]), // another tenant
    ];
    let mut rows = Vec::new();
    let mut ratings = Vec::new();
    for (i, (tenant, cluster, path, at, votes)) in seeds.into_iter().enumerate() {
        let r = served(
            record(tenant, "u", &format!("q{i}"), "a", at),
            1,
            cluster,
            path,
        );
        for (j, vote) in votes.into_iter().enumerate() {
            let who = format!("user-{j}");
            ratings.push(row_for_feedback(&feedback(
                tenant,
                r.id,
                &who,
                Some(vote),
                None,
                None,
            )));
        }
        rows.extend(rows_for_interaction(&r));
    }
    // Shadow traffic was served untouched whatever it logs.
    let mut shadow = served(record("t", "u", "shadowed", "a", now), 1, "0", Passthrough);
    shadow.experience.shadow = Some(Primary);
    ratings.push(row_for_feedback(&feedback(
        "t",
        shadow.id,
        "w",
        Some(Rating::Down),
        None,
        None,
    )));
    rows.extend(rows_for_interaction(&shadow));
    store.write_rows(&rows).await.unwrap();
    store.write_rows(&ratings).await.unwrap();

    let fortnight = chrono::Utc::now().timestamp_micros() - 14 * 86_400 * 1_000_000;
    let got = store.cluster_ratings("t", fortnight).await.unwrap();
    let counts = |cluster: &str, tr, td, hr, hd| ClusterRatings {
        cluster_id: cluster.into(),
        treated_rated: tr,
        treated_down: td,
        holdout_rated: hr,
        holdout_down: hd,
    };
    assert_eq!(got, vec![counts("0", 4, 2, 2, 1), counts("1", 0, 0, 1, 0)]);
    // A wider window takes the month-old interaction in.
    let two_months = fortnight - 46 * 86_400 * 1_000_000;
    let wider = store.cluster_ratings("t", two_months).await.unwrap();
    assert_eq!(wider[0], counts("0", 5, 3, 2, 1));
    assert!(store.cluster_ratings("nobody", 0).await.unwrap().is_empty());
}
