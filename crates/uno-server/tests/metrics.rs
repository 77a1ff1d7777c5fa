//! `GET /metrics` after real traffic, feedback and a published snapshot,
//! against real databases: every family the operator graphs moves by
//! exactly what was sent. The page is also saved to
//! `target/metrics-sample-<backend>.txt`, which CI hands to
//! `promtool check metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::snapshots::{cluster, snapshot};
use common::{TestApp, chat_body, test_config};
use serde_json::{Value, json};
use uno_core::snapshot::Mode;
use uno_testkit::{Backend, MockUpstream, TestDatabase, both_backends};

both_backends! {
    metrics_move_with_traffic_feedback_and_snapshots,
}

/// One scrape: `name{labels}` → value.
struct Scrape {
    samples: BTreeMap<String, f64>,
    text: String,
}

impl Scrape {
    async fn of(app: &TestApp) -> Scrape {
        let response = app.client.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let text = response.text().await.unwrap();
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().expect("numeric value");
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "duplicate series {series}"
            );
        }
        Scrape { samples, text }
    }

    /// A sample's value; 0 when the series is absent (not yet counted).
    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    fn has_family(&self, name: &str, kind: &str) -> bool {
        self.text.contains(&format!("# TYPE {name} {kind}\n"))
    }
}

async fn chat(app: &TestApp, body: &Value) -> reqwest::Response {
    let response = app
        .post("/v1/chat/completions")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response
}

fn id_of(response: &reqwest::Response) -> String {
    response.headers()["x-uno-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn feedback(app: &TestApp, body: Value) {
    let response = app.post("/v1/feedback").json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

fn cooking(i: usize) -> String {
    format!("How long should I boil spaghetti pasta batch {i} for dinner tonight?")
}

async fn metrics_move_with_traffic_feedback_and_snapshots(backend: Backend) {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::new(backend).await;
    let mut config = test_config(&mock.base_url());
    config.learn.holdout_percent = 0;
    config.learn.snapshot_poll_secs = 1;
    config.admin.key = Some("admin-key-for-metrics-test".to_owned());
    let app = TestApp::start_with_store(config, &db.url).await;

    let before = Scrape::of(&app).await;
    for (family, kind) in [
        ("uno_build_info", "gauge"),
        ("uno_requests_total", "counter"),
        ("uno_upstream_latency_seconds", "histogram"),
        ("uno_added_latency_seconds", "histogram"),
        ("uno_time_to_first_token_seconds", "histogram"),
        ("uno_tokens_total", "counter"),
        ("uno_feedback_total", "counter"),
        ("uno_log_queue_depth", "gauge"),
        ("uno_log_rows_written_total", "counter"),
        ("uno_log_rows_spilled_total", "counter"),
        ("uno_log_rows_replayed_total", "counter"),
        ("uno_log_rows_dropped_total", "counter"),
        ("uno_log_writes_timed_out_total", "counter"),
        ("uno_log_journal_bytes", "gauge"),
        ("uno_database_ready", "gauge"),
        ("uno_worker_stage_duration_seconds", "histogram"),
        ("uno_worker_stage_outcomes_total", "counter"),
        ("uno_snapshot_version", "gauge"),
        ("uno_cluster_served_total", "counter"),
        ("uno_cluster_feedback_rated", "gauge"),
        ("uno_cluster_feedback_down_rate", "gauge"),
    ] {
        assert!(
            before.has_family(family, kind),
            "{family} missing:\n{}",
            before.text
        );
    }
    assert_eq!(
        before.get(r#"uno_requests_total{route="chat",status="200",path="passthrough"}"#),
        0.0
    );

    // Traffic: three plain requests, one streamed, one refused, one models.
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(id_of(
            &chat(&app, &chat_body(&format!("plain question {i}"))).await,
        ));
    }
    let streamed = chat(
        &app,
        &json!({"model": "mock-model", "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "stream please"}]}),
    )
    .await;
    let _ = streamed.text().await.unwrap();
    let refused = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth("not-a-key")
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(app.get("/v1/models").send().await.unwrap().status(), 200);

    // Feedback: up, down, a comment alone; then a follow-up turn.
    feedback(&app, json!({"interaction_id": ids[0], "rating": "up"})).await;
    feedback(&app, json!({"interaction_id": ids[1], "rating": "down"})).await;
    feedback(
        &app,
        json!({"interaction_id": ids[2], "comment": "too long"}),
    )
    .await;
    let first: Value = chat(&app, &chat_body("Summarise the French revolution"))
        .await
        .json()
        .await
        .unwrap();
    let answer = first["choices"][0]["message"]["content"].as_str().unwrap();
    chat(
        &app,
        &json!({"model": "mock-model", "messages": [
            {"role": "user", "content": "Summarise the French revolution"},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "Too short. Include the causes."}]}),
    )
    .await;

    // A snapshot with one primary cluster; two requests route to it and
    // get a thumbs-down each.
    let members: Vec<String> = (0..10).map(cooking).collect();
    let published = app
        .store()
        .publish_snapshot(
            &snapshot(
                "acme",
                vec![cluster(
                    "c0",
                    Mode::Primary,
                    &members,
                    &["Give the time in minutes."],
                )],
            ),
            "test",
        )
        .await
        .unwrap()
        .expect("a new version");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.snapshots.version("acme") != Some(published) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapshot never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 0..2 {
        let response = chat(&app, &chat_body(&cooking(100 + i))).await;
        assert_eq!(response.headers()["x-uno-path"], "primary");
        let id = id_of(&response);
        feedback(
            &app,
            json!({"interaction_id": id, "rating": "down", "user": "u1"}),
        )
        .await;
    }
    // 8 chat interactions logged (the refused one never reached a route);
    // the gauges read what the writer stored.
    app.wait_for_rows(8).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        app.state
            .metrics()
            .ratings
            .refresh(app.store(), Duration::from_secs(86_400))
            .await
            .unwrap();
        let scrape = Scrape::of(&app).await;
        if scrape.get(r#"uno_cluster_feedback_rated{tenant="acme",cluster="c0",arm="treated"}"#)
            >= 2.0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ratings never read:\n{}",
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let after = Scrape::of(&app).await;
    std::fs::create_dir_all(target_dir()).unwrap();
    std::fs::write(
        target_dir().join(format!("metrics-sample-{backend:?}.txt").to_lowercase()),
        &after.text,
    )
    .unwrap();
    let delta = |series: &str| after.get(series) - before.get(series);

    // Requests by route, status and path.
    assert_eq!(
        delta(r#"uno_requests_total{route="chat",status="200",path="passthrough"}"#),
        6.0
    );
    assert_eq!(
        delta(r#"uno_requests_total{route="chat",status="200",path="primary"}"#),
        2.0
    );
    assert_eq!(
        delta(r#"uno_requests_total{route="chat",status="401",path="none"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"uno_requests_total{route="models",status="200",path="none"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"uno_requests_total{route="feedback",status="200",path="none"}"#),
        5.0
    );
    assert!(delta(r#"uno_requests_total{route="other",status="200",path="none"}"#) >= 1.0);

    // Latencies: one observation per answered chat; TTFT for the stream.
    assert_eq!(
        delta(r#"uno_upstream_latency_seconds_count{route="chat"}"#),
        8.0
    );
    assert_eq!(
        delta(r#"uno_added_latency_seconds_count{route="chat"}"#),
        8.0
    );
    assert_eq!(
        delta(r#"uno_added_latency_seconds_bucket{route="chat",le="+Inf"}"#),
        8.0
    );
    assert!(after.get(r#"uno_added_latency_seconds_sum{route="chat"}"#) > 0.0);
    assert_eq!(delta("uno_time_to_first_token_seconds_count"), 1.0);

    // Tokens: the mock reports usage on every answer.
    assert!(delta(r#"uno_tokens_total{kind="prompt"}"#) >= 8.0);
    assert!(delta(r#"uno_tokens_total{kind="completion"}"#) >= 8.0);

    // Feedback by rating and source.
    assert_eq!(
        delta(r#"uno_feedback_total{rating="up",source="explicit"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"uno_feedback_total{rating="down",source="explicit"}"#),
        3.0
    );
    assert_eq!(
        delta(r#"uno_feedback_total{rating="none",source="explicit"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"uno_feedback_total{rating="none",source="implicit"}"#),
        1.0
    );

    // The log writer: 8 interactions, 5 feedback rows, 1 implicit row.
    assert!(delta("uno_log_rows_written_total") >= 8.0, "{}", after.text);
    assert_eq!(after.get("uno_log_rows_dropped_total"), 0.0);
    // No spill count is asserted: a write slower than half the durability
    // window (a loaded CI host) spills its rows to the journal and replays
    // them, which is not a loss (the fault suite measures that).

    // The snapshot and its cluster.
    assert_eq!(
        after.get(r#"uno_snapshot_version{tenant="acme"}"#),
        published as f64
    );
    assert_eq!(
        after.get(r#"uno_cluster_served_total{tenant="acme",cluster="c0",path="primary"}"#),
        2.0
    );
    assert_eq!(
        after.get(r#"uno_cluster_feedback_rated{tenant="acme",cluster="c0",arm="treated"}"#),
        2.0
    );
    assert_eq!(
        after.get(r#"uno_cluster_feedback_down_rate{tenant="acme",cluster="c0",arm="treated"}"#),
        1.0
    );
    assert_eq!(
        after.get(r#"uno_cluster_feedback_rated{tenant="acme",cluster="c0",arm="holdout"}"#),
        0.0
    );
}

/// The workspace's `target/` directory.
fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}
