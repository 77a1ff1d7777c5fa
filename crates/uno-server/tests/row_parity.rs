//! Row parity: every request through uno becomes exactly one stored row,
//! with Postgres up, with the connection cut for part of the run, and across
//! a restart with a non-empty journal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{KEY, TestApp, chat_body, test_config};
use uno_testkit::{MockUpstream, TcpRelay, TestDatabase};

/// Sends `total` chat requests over `concurrency` connections; returns how
/// many got a 200. `during` runs once `total / 3` requests have completed.
async fn load(
    app: &TestApp,
    total: usize,
    concurrency: usize,
    during: impl std::future::Future<Output = ()>,
) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let url = app.url("/v1/chat/completions");
    let body = serde_json::to_vec(&chat_body("row parity")).unwrap();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, done, ok, url, body) = (
            next.clone(),
            done.clone(),
            ok.clone(),
            url.clone(),
            body.clone(),
        );
        let client = reqwest::Client::new();
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let response = client
                    .post(&url)
                    .bearer_auth(KEY)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                if response.status() == 200 {
                    response.bytes().await.unwrap();
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    while done.load(Ordering::Relaxed) < total / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    during.await;
    for worker in workers {
        worker.await.unwrap();
    }
    ok.load(Ordering::Relaxed)
}

/// The writer's counters, for a failure message.
fn writer_counts(stats: &uno_store::writer::WriterStats) -> String {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    format!(
        "written {}, spilled {}, replayed {}, dropped {}, rejected {}, timed-out writes {}, journal {} bytes, queue {}",
        get(&stats.rows_written),
        get(&stats.rows_spilled),
        get(&stats.rows_replayed),
        get(&stats.rows_dropped),
        get(&stats.rows_rejected),
        get(&stats.writes_timed_out),
        get(&stats.journal_bytes),
        stats.queue_depth()
    )
}

async fn app_via_relay(mock: &MockUpstream, db: &TestDatabase, relay: &TcpRelay) -> TestApp {
    let mut config = test_config(&mock.base_url());
    config.log_writer.retry_interval_ms = 100;
    TestApp::start_with_store(config, &db.url_via(relay.addr())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_ten_thousand_rows() {
    let mock = MockUpstream::builder().record_requests(false).start().await;
    let db = TestDatabase::postgres().await;
    let app = TestApp::start_with_store(test_config(&mock.base_url()), &db.url).await;
    let ok = load(&app, 10_000, 32, async {}).await;
    assert_eq!(ok, 10_000);
    app.wait_for_rows(10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_survive_the_database_connection_being_cut_mid_run() {
    let mock = MockUpstream::builder().record_requests(false).start().await;
    let db = TestDatabase::postgres().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = app_via_relay(&mock, &db, &relay).await;
    let relay = &relay;
    let ok = load(&app, 10_000, 32, async move {
        relay.cut();
        // Serving goes on while the database is unreachable.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        relay.restore();
    })
    .await;
    assert_eq!(
        ok, 10_000,
        "serving must not fail while the database is down"
    );
    let stats = app
        .persisted
        .as_ref()
        .unwrap()
        .writer
        .as_ref()
        .unwrap()
        .stats();
    assert!(
        stats.rows_spilled.load(Ordering::Relaxed) > 0,
        "the cut never made the writer journal"
    );
    let direct = uno_store::Store::connect(&db.url).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let count = direct.count_interactions(None).await.unwrap();
        assert!(count <= 10_000, "duplicates: {count}");
        if count == 10_000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {count} rows after restore; writer: {}",
            writer_counts(&stats)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stats.rows_dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_non_empty_journal_loses_and_duplicates_nothing() {
    let mock = MockUpstream::builder().record_requests(false).start().await;
    let db = TestDatabase::postgres().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await;
    let mut app = app_via_relay(&mock, &db, &relay).await;
    let journal_dir = app
        .persisted
        .as_ref()
        .unwrap()
        .journal
        .path()
        .join("journal");

    let ok = load(&app, 3_000, 16, async {
        relay.cut();
    })
    .await;
    assert_eq!(ok, 3_000);
    // Stop this uno while the database is still away: what it could not
    // write must be in the journal.
    app.begin_shutdown();
    (&mut app.handle).await.unwrap().unwrap();
    let persisted = app.persisted.as_mut().unwrap();
    persisted.key_refresh.abort();
    persisted.snapshot_refresh.abort();
    persisted.writer.take().unwrap().shutdown().await;
    let journal = uno_store::writer::Journal::open(&journal_dir, u64::MAX).unwrap();
    assert!(!journal.is_empty(), "nothing was journaled");
    let direct = uno_store::Store::connect(&db.url).await.unwrap();
    let before = direct.count_interactions(None).await.unwrap();
    assert!(before < 3_000);

    // A new uno on the same journal, the database reachable again.
    relay.restore();
    let mut config = test_config(&mock.base_url());
    config.log_writer.journal_dir = journal_dir.display().to_string();
    let store = uno_store::Store::connect(&db.url).await.unwrap();
    let writer = uno_store::writer::LogWriter::start(
        store.clone(),
        uno_store::writer::WriterConfig::from(&config.log_writer),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let count = direct.count_interactions(None).await.unwrap();
        assert!(count <= 3_000, "duplicates: {count}");
        if count == 3_000 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {count} rows after restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.shutdown().await;
    assert!(
        uno_store::writer::Journal::open(&journal_dir, u64::MAX)
            .unwrap()
            .is_empty()
    );
}
