//! Scale-out: two real `uno serve` processes on one Postgres. Under load
//! through both, every interaction is stored once; feedback posted to
//! either proxy for an interaction the other served is stored; and a
//! snapshot published to the database is served by both within a second,
//! through LISTEN/NOTIFY (polling is set to an hour, so it cannot be the
//! poll). Two workers on the same logs are in `worker_e2e.rs`
//! (`two_workers_never_take_the_same_log`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::path::Path;
use std::time::{Duration, Instant};

use cli_common::ServeProcess;
use uno_core::snapshot::Snapshot;
use uno_store::Store;
use uno_testkit::{MockUpstream, TestDatabase, http};

const KEY: &str = "uno-scale-out-key-00001";

async fn serve(db: &TestDatabase, dir: &Path, upstream: &str) -> ServeProcess {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("uno.toml");
    std::fs::write(&config, "[learn]\nsnapshot_poll_secs = 3600\n").unwrap();
    ServeProcess::command(&db.url, dir)
        .config(&config)
        .env("UNO_UPSTREAM_URL", upstream)
        .env("UNO_API_KEYS", format!("acme={KEY}"))
        .env("UNO_JOURNAL_DIR", dir.join("journal"))
        .capture_output()
        .start()
        .await
}

/// The snapshot version `uno` reports serving for tenant acme.
async fn served_version(uno: &ServeProcess) -> Option<i64> {
    let page = reqwest::get(format!("{}/metrics", uno.base_url()))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    page.lines()
        .find_map(|l| l.strip_prefix("uno_snapshot_version{tenant=\"acme\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as i64)
}

/// Publishes a new acme snapshot and returns how long until both proxies
/// serve it.
async fn publish_and_time(store: &Store, logs: usize, proxies: [&ServeProcess; 2]) -> Duration {
    let snapshot = Snapshot {
        logs,
        ..Snapshot::empty("acme")
    };
    let version = store
        .publish_snapshot(&snapshot, "scale-out test")
        .await
        .unwrap()
        .expect("a new version");
    let published = Instant::now();
    loop {
        let mut both = true;
        for uno in proxies {
            both &= served_version(uno).await == Some(version);
        }
        if both {
            return published.elapsed();
        }
        assert!(
            published.elapsed() < Duration::from_secs(10),
            "version {version} not served by both proxies after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn two_proxies_on_one_postgres_store_once_share_feedback_and_follow_snapshots() {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::postgres().await;
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = serve(&db, &dir.path().join("a"), &mock.base_url()).await;
    let b = serve(&db, &dir.path().join("b"), &mock.base_url()).await;
    let proxies = [&a, &b];

    // Load through both: 8 clients, each alternating proxies.
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for c in 0..8 {
        let client = client.clone();
        let urls = [a.base_url(), b.base_url()];
        tasks.push(tokio::spawn(async move {
            let mut served = Vec::new();
            for n in 0..40 {
                let on = (c + n) % 2;
                let response = http::chat(
                    &client,
                    &urls[on],
                    KEY,
                    None,
                    &format!("client {c} asks {n}"),
                )
                .await;
                assert_eq!(response.status(), 200);
                let id = http::interaction_id(&response);
                // Feedback goes to the proxy that did not serve it.
                let status = http::feedback(&client, &urls[1 - on], KEY, &id).await;
                assert_eq!(status, 200, "feedback through the other proxy");
                served.push(id);
            }
            served
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    assert_eq!(ids.len(), 320);

    // Every interaction once, with its feedback.
    let deadline = Instant::now() + Duration::from_secs(20);
    let counts = loop {
        let counts = db.interaction_counts().await;
        if ids
            .iter()
            .all(|id| counts.contains_key(&uuid::Uuid::parse_str(id).unwrap()))
            || Instant::now() > deadline
        {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for id in &ids {
        let id = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(counts.get(&id), Some(&1), "interaction {id} stored once");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in &ids {
        let id = uuid::Uuid::parse_str(id).unwrap();
        loop {
            let feedback = store.feedback_for("acme", id).await.unwrap();
            if feedback.len() == 1 {
                break;
            }
            assert!(feedback.len() < 2, "feedback for {id} stored twice");
            assert!(Instant::now() < deadline, "no feedback stored for {id}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A published snapshot reaches both within a second, twice over.
    for logs in [10, 20] {
        let took = publish_and_time(&store, logs, proxies).await;
        eprintln!("snapshot served by both proxies {took:?} after publishing");
        assert!(
            took < Duration::from_secs(1),
            "both proxies served the new snapshot only after {took:?}"
        );
    }
    let _ = a.stop();
    let _ = b.stop();
}
