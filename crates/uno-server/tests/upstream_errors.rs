//! Upstream failures: retries before anything reaches the client, faithful
//! error pass-through, unreachable and slow upstreams, cancellation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestApp, chat_body, error_of};
use serde_json::json;
use uno_core::interaction::Outcome;
use uno_testkit::{MockReply, MockUpstream};

fn overloaded() -> serde_json::Value {
    json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}})
}

#[tokio::test]
async fn retries_5xx_then_succeeds() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::status(503, overloaded()));
    mock.push_reply(MockReply::status(502, overloaded()));
    let app = TestApp::start(&mock.base_url()).await;
    let response = app
        .post("/v1/chat/completions")
        .json(&chat_body("r"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(mock.request_count(), 3, "two failures then one success");
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Completed);
}

#[tokio::test]
async fn retries_429_and_streams_after_retry() {
    let mock = MockUpstream::start().await;
    mock.push_reply(
        MockReply::status(
            429,
            json!({"error": {"message": "slow down", "type": "rate_limit"}}),
        )
        .header("retry-after", "0"),
    );
    let app = TestApp::start(&mock.base_url()).await;
    let mut body = chat_body("again");
    body["stream"] = json!(true);
    let response = app
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"));
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn exhausted_retries_pass_the_upstream_error_on_faithfully() {
    let mock = MockUpstream::builder()
        .default_reply(MockReply::status(503, overloaded()).header("x-request-id", "req-9"))
        .start()
        .await;
    let app = TestApp::start(&mock.base_url()).await;
    let response = app
        .post("/v1/chat/completions")
        .json(&chat_body("r"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-request-id"], "req-9");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        overloaded(),
        "the upstream's body is passed on unchanged"
    );
    assert_eq!(mock.request_count(), 3, "1 try + max_retries (2)");
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Failed);
    assert_eq!(record.status, 503);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let mock = MockUpstream::start().await;
    let invalid = json!({"error": {"message": "bad temperature", "type": "invalid_request_error", "param": "temperature", "code": null}});
    mock.push_reply(MockReply::status(400, invalid.clone()));
    let app = TestApp::start(&mock.base_url()).await;
    let response = app
        .post("/v1/chat/completions")
        .json(&chat_body("r"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), invalid);
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn unreachable_upstream_is_a_502_after_retries() {
    // A port nothing listens on: bind, note it, close.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let app = TestApp::start(&format!("http://127.0.0.1:{port}/v1")).await;
    let response = app
        .post("/v1/chat/completions")
        .json(&chat_body("r"))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 502);
    assert_eq!(error["code"], "upstream_unavailable");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{error}"
    );
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Failed);
    assert_eq!(record.status, 502);
}

#[tokio::test]
async fn connect_errors_are_retried_until_the_upstream_appears() {
    // Nothing listens at first; the mock comes up on that port while uno is
    // backing off, and the request succeeds without the client noticing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut config = common::test_config(&format!("http://127.0.0.1:{port}/v1"));
    config.http.max_retries = 5;
    config.http.retry_initial_backoff_ms = 200;
    config.http.retry_max_backoff_ms = 400;
    let app = TestApp::start_with(config).await;
    let request = tokio::spawn({
        let req = app.post("/v1/chat/completions").json(&chat_body("late"));
        async move { req.send().await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let late = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let app_router = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(|| async {
            axum::Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "finally"}, "finish_reason": "stop"}]}))
        }),
    );
    tokio::spawn(async move { axum::serve(late, app_router).await });
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "finally");
}

#[tokio::test]
async fn slow_upstream_is_a_504() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("late").delay(Duration::from_millis(800)));
    let mut config = common::test_config(&mock.base_url());
    config.http.read_timeout_ms = 200;
    let app = TestApp::start_with(config).await;
    let response = app
        .post("/v1/chat/completions")
        .json(&chat_body("r"))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 504);
    assert_eq!(error["code"], "upstream_timeout");
    assert_eq!(mock.request_count(), 1, "timeouts are not retried");
}

#[tokio::test]
async fn upstream_dropping_the_connection_is_a_502() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::drop_connection());
    let app = TestApp::start(&mock.base_url()).await;
    let response = app
        .post("/v1/chat/completions")
        .json(&chat_body("r"))
        .send()
        .await
        .unwrap();
    let (status, _) = error_of(response).await;
    assert_eq!(status, 502);
}

#[tokio::test]
async fn client_disconnect_while_waiting_cancels_the_upstream_request() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("never read").delay(Duration::from_secs(3)));
    let app = TestApp::start(&mock.base_url()).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let result = client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(common::KEY)
        .json(&chat_body("r"))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert!(
        mock.wait_for_cancelled(1, Duration::from_secs(2)).await,
        "the upstream request kept running after the client left"
    );
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Cancelled);
}
