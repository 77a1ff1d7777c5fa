//! The holdout lift check end to end on real databases: a tenant's
//! learning logs (stages written through the store as the worker writes
//! them; the mock upstream plays the validation model and judge) build a
//! primary cluster; served traffic is then logged as the proxy logs it
//! (snapshot, cluster, path) with users' ratings, and each rebuild reads it.
//! Treated traffic rated like its holdout keeps the cluster primary; treated
//! traffic rated down far more often sends it back to passthrough.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::SystemTime;

use uno_core::config::{Config, EmbedderKind, LearnConfig};
use uno_core::feedback::Rating;
use uno_core::interaction::ServePath;
use uno_core::snapshot::{Lift, Mode, Snapshot};
use uno_learn::{LogProgress, Worker, stages};
use uno_llm::{HashingEmbedder, UpstreamClient};
use uno_store::Store;
use uno_store::rows::{row_for_feedback, rows_for_interaction};
use uno_testkit::learn::{cooking_query, ready_logs};
use uno_testkit::records::{feedback, record, served};
use uno_testkit::{
    Backend, MockReply, MockUpstream, PLAIN_ANSWER, TestDatabase, both_backends, validation_model,
};

both_backends! {
    a_treatment_rated_worse_than_its_holdout_goes_back_to_passthrough,
}

const TENANT: &str = "acme";
const RULE: &str = "State the exact cooking time in minutes.";

/// Logs `rated` interactions served on `path` by `cluster` of version 1, the
/// first `down` of them rated down and the rest up.
async fn serve(store: &Store, cluster: &str, path: ServePath, rated: usize, down: usize) {
    let mut rows = Vec::new();
    let mut ratings = Vec::new();
    for i in 0..rated {
        let asked = record(
            TENANT,
            "someone",
            &cooking_query(1000 + i),
            PLAIN_ANSWER,
            SystemTime::now(),
        );
        let r = served(asked, 1, cluster, path);
        let vote = if i < down { Rating::Down } else { Rating::Up };
        ratings.push(row_for_feedback(&feedback(
            TENANT,
            r.id,
            "someone",
            Some(vote),
            None,
            None,
        )));
        rows.extend(rows_for_interaction(&r));
    }
    store.write_rows(&rows).await.unwrap();
    store.write_rows(&ratings).await.unwrap();
}

async fn rebuild(worker: &Worker, store: &Store) -> Snapshot {
    let version = worker.rebuild(TENANT, &LogProgress).await.unwrap();
    assert!(version.is_some(), "a new snapshot is published");
    store.snapshot(TENANT, None).await.unwrap().unwrap()
}

async fn a_treatment_rated_worse_than_its_holdout_goes_back_to_passthrough(backend: Backend) {
    let mock = MockUpstream::builder()
        .default_reply(MockReply::respond(validation_model))
        .start()
        .await;
    let db = TestDatabase::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let embedder = HashingEmbedder::new(256).unwrap();
    let embed = |log| {
        let embedder = &embedder;
        async move { stages::embed(embedder, &log).await.unwrap() }
    };
    ready_logs(&store, TENANT, 20, |_| vec![RULE.to_owned()], embed).await;

    let mut config = Config::default();
    config.upstreams[0].url = mock.base_url();
    config.http.max_retries = 0;
    let learn = LearnConfig {
        embedder: EmbedderKind::Hashing,
        hashing_dim: 256,
        min_validation_logs: 3,
        judge_samples: 1,
        ..LearnConfig::default()
    };
    let worker = Worker::new(
        store.clone(),
        learn,
        UpstreamClient::new(&config).unwrap(),
        Arc::new(embedder),
    );

    // Built from the logs alone: one primary cluster, no traffic yet.
    let first = rebuild(&worker, &store).await;
    assert_eq!(first.clusters.len(), 1, "{:#?}", first.clusters);
    let built = &first.clusters[0];
    assert_eq!(built.mode, Mode::Primary, "{}", built.decision);
    assert_eq!(built.lift, None);
    let id = built.id.clone();

    // Treated rated down as often as holdout (10%): kept, figures recorded.
    serve(&store, &id, ServePath::Primary, 30, 3).await;
    serve(&store, &id, ServePath::Holdout, 20, 2).await;
    // Traffic of another cluster id, and passthrough traffic, change nothing.
    serve(&store, "no-such-cluster", ServePath::Primary, 30, 30).await;
    serve(&store, &id, ServePath::Passthrough, 30, 30).await;
    let second = rebuild(&worker, &store).await;
    let kept = &second.clusters[0];
    assert_eq!(kept.id, id);
    assert_eq!(kept.mode, Mode::Primary);
    assert_eq!(kept.decision, built.decision);
    assert_eq!(
        kept.lift,
        Some(Lift {
            treated_rated: 30,
            treated_down: 3,
            holdout_rated: 20,
            holdout_down: 2,
            z: 0.0,
        })
    );

    // Twenty more treated answers, all rated down: 23/50 against 2/20.
    serve(&store, &id, ServePath::Primary, 20, 20).await;
    let third = rebuild(&worker, &store).await;
    let withdrawn = &third.clusters[0];
    assert_eq!(withdrawn.mode, Mode::Passthrough);
    let lift = withdrawn.lift.unwrap();
    assert_eq!(
        (
            lift.treated_rated,
            lift.treated_down,
            lift.holdout_rated,
            lift.holdout_down
        ),
        (50, 23, 20, 2)
    );
    assert!(lift.z > 2.8 && lift.z < 2.9, "{}", lift.z);
    assert!(
        withdrawn.decision.starts_with(
            "holdout lift: treated answers rated down 23/50 (46.0%) vs holdout 2/20 (10.0%), z 2.84 >= 1.645"
        ),
        "{}",
        withdrawn.decision
    );
    assert!(
        withdrawn.decision.ends_with(&format!(
            "passthrough instead of primary ({})",
            built.decision
        )),
        "{}",
        withdrawn.decision
    );
    // The rules stay, for audit and for when the evidence ages out.
    assert_eq!(withdrawn.block, built.block);
    mock.shutdown().await;
}
