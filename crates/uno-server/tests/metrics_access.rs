//! Who may read `/metrics`, and where, with the real app on random ports:
//! `metrics.token` turns scrapes without `Authorization: Bearer <token>`
//! into OpenAI-shaped 401s (the worker's page too); `metrics.listen` moves
//! the page to a listener of its own and the API's listener answers 404;
//! a non-loopback `server.listen` with neither set keeps the page off the
//! API's listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{KEY, TestApp, error_of, test_config};
use uno_core::config::Config;
use uno_server::metrics::access::ScrapeToken;
use uno_server::metrics::{MetricsListener, serve_worker_metrics, start_metrics_listener};
use uno_testkit::MockUpstream;
use uno_testkit::http::get;

const TOKEN: &str = "metrics-scrape-token-5f3a";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A 200 Prometheus page with uno's build info.
async fn assert_page(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], PROMETHEUS_TEXT);
    let text = response.text().await.unwrap();
    assert!(text.contains("# TYPE uno_build_info gauge"), "{text}");
    text
}

/// A 401 in OpenAI's shape that names the setting and not the token.
async fn assert_refused(response: reqwest::Response) {
    let (status, error) = error_of(response).await;
    assert_eq!(status, 401, "{error}");
    assert_eq!(error["type"], "authentication_error", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("metrics.token"), "{message}");
    assert!(!message.contains(TOKEN), "{message}");
}

async fn start(config: Config) -> (TestApp, Option<MetricsListener>) {
    let app = TestApp::start_with(config).await;
    let listener = start_metrics_listener(&app.state, app.addr).await.unwrap();
    (app, listener)
}

#[tokio::test]
async fn a_token_guards_metrics_on_the_api_listener() {
    let mock = MockUpstream::start().await;
    let mut config = test_config(&mock.base_url());
    config.metrics.token = Some(TOKEN.to_owned());
    let (app, listener) = start(config).await;
    assert!(listener.is_none(), "served beside the API");
    let url = app.url("/metrics");

    assert_refused(get(&url, None).await).await;
    assert_refused(get(&url, Some("metrics-scrape-token-wrong")).await).await;
    assert_refused(get(&url, Some(KEY)).await).await;
    let malformed = reqwest::Client::new()
        .get(&url)
        .header("authorization", format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_refused(malformed).await;
    assert_page(get(&url, Some(TOKEN)).await).await;
    // The API itself is unchanged: /health needs nothing, /v1 its own key.
    assert_eq!(get(&app.url("/health"), None).await.status(), 200);
    assert_eq!(app.get("/v1/models").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn without_a_token_loopback_serves_metrics_as_before() {
    let mock = MockUpstream::start().await;
    let (app, listener) = start(test_config(&mock.base_url())).await;
    assert!(listener.is_none());
    assert_page(get(&app.url("/metrics"), None).await).await;
}

#[tokio::test]
async fn metrics_listen_moves_the_page_off_the_api_listener() {
    let mock = MockUpstream::start().await;
    let mut config = test_config(&mock.base_url());
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    config.metrics.token = Some(TOKEN.to_owned());
    let (app, listener) = start(config).await;
    let listener = listener.expect("a metrics listener");
    assert_ne!(listener.addr, app.addr);

    // The API's listener: 404 naming the setting, token or not.
    for token in [None, Some(TOKEN)] {
        let (status, error) = error_of(get(&app.url("/metrics"), token).await).await;
        assert_eq!(status, 404, "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("metrics.listen"), "{message}");
        assert!(!message.contains(TOKEN), "{message}");
    }

    // The metrics listener: the page behind the token, health, nothing else.
    let metrics = format!("http://{}/metrics", listener.addr);
    assert_refused(get(&metrics, None).await).await;
    assert_refused(get(&metrics, Some("metrics-scrape-token-wrong")).await).await;
    let page = assert_page(get(&metrics, Some(TOKEN)).await).await;
    // The same process's figures: the refused scrape on the API's listener
    // was counted.
    assert!(
        page.contains(r#"uno_requests_total{route="other",status="404",path="none"}"#),
        "{page}"
    );
    let health = get(&format!("http://{}/health", listener.addr), None).await;
    assert_eq!(health.status(), 200);
    let (status, error) =
        error_of(get(&format!("http://{}/v1/models", listener.addr), Some(KEY)).await).await;
    assert_eq!(status, 404, "{error}");
    // And the API still answers on its own listener.
    assert_eq!(app.get("/v1/models").send().await.unwrap().status(), 200);
    listener.task.abort();
}

#[tokio::test]
async fn a_public_listener_without_token_does_not_serve_metrics() {
    let mock = MockUpstream::start().await;
    let mut config = test_config(&mock.base_url());
    // The app binds a random loopback port, but decides from the
    // configured address, as `uno serve` does.
    config.server.listen = "0.0.0.0:8080".parse().unwrap();
    let app = TestApp::start_with(config).await;
    let (status, error) = error_of(get(&app.url("/metrics"), None).await).await;
    assert_eq!(status, 404, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("127.0.0.1:9464"), "{message}");
    assert!(message.contains("UNO_METRICS_TOKEN"), "{message}");
    assert_eq!(app.get("/v1/models").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn the_worker_page_takes_the_same_token() {
    let worker = Arc::new(uno_learn::WorkerMetrics::default());
    let token = ScrapeToken::from_config(&uno_core::config::MetricsConfig {
        token: Some(TOKEN.to_owned()),
        ..Default::default()
    });
    let listener = serve_worker_metrics("127.0.0.1:0".parse().unwrap(), worker, token)
        .await
        .unwrap();
    let url = format!("http://{}/metrics", listener.addr);
    assert_refused(get(&url, None).await).await;
    assert_refused(get(&url, Some("metrics-scrape-token-wrong")).await).await;
    let page = assert_page(get(&url, Some(TOKEN)).await).await;
    assert!(page.contains("uno_worker_stage_outcomes_total"), "{page}");
    listener.task.abort();

    let open = serve_worker_metrics(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(uno_learn::WorkerMetrics::default()),
        None,
    )
    .await
    .unwrap();
    assert_page(get(&format!("http://{}/metrics", open.addr), None).await).await;
    open.task.abort();
}
