//! Graceful shutdown: stop accepting, let in-flight requests finish.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, chat_body};
use serde_json::json;
use uno_testkit::{MockReply, MockUpstream};

#[tokio::test]
async fn in_flight_stream_finishes_and_new_connections_are_refused() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("a b c d e").chunk_gap(Duration::from_millis(100)));
    let mut app = TestApp::start(&mock.base_url()).await;
    let mut body = chat_body("x");
    body["stream"] = json!(true);
    let response = app
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A fresh connection is refused while the stream is still going.
    let fresh = reqwest::Client::new();
    assert!(fresh.get(app.url("/health")).send().await.is_err());

    let text = response.text().await.unwrap();
    assert!(
        text.trim_end().ends_with("data: [DONE]"),
        "in-flight stream was cut: {text}"
    );
    let result = tokio::time::timeout(Duration::from_secs(5), &mut app.handle).await;
    assert!(result.expect("server stopped").unwrap().is_ok());
}

#[tokio::test]
async fn shutdown_gives_up_after_the_grace_period() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("slow").delay(Duration::from_secs(30)));
    let mut config = common::test_config(&mock.base_url());
    config.server.shutdown_grace_secs = 1;
    let mut app = TestApp::start_with(config).await;
    let request = tokio::spawn(
        app.post("/v1/chat/completions")
            .json(&chat_body("x"))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    app.begin_shutdown();
    let result = tokio::time::timeout(Duration::from_secs(5), &mut app.handle).await;
    assert!(result.is_ok(), "shutdown did not respect the grace period");
    assert!(started.elapsed() >= Duration::from_millis(900));
    request.abort();
}
