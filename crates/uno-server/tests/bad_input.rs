//! Bad input gets a 4xx in OpenAI's error shape, never a 500 or a panic, and
//! never reaches the upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, chat_body, error_of};
use uno_core::config::AuthConfig;
use uno_testkit::MockUpstream;

async fn post_raw(app: &TestApp, path: &str, body: &'static str) -> (u16, serde_json::Value) {
    let response = app
        .post(path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    error_of(response).await
}

#[tokio::test]
async fn malformed_json_and_wrong_types_are_400_naming_the_problem() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;
    let cases: &[(&str, &str)] = &[
        (r#"{"model": "m", "messages": [ "#, "not valid JSON"),
        (r#"{"model": 5, "messages": []}"#, "model: invalid type"),
        (
            r#"{"model": "m", "messages": "hi"}"#,
            "messages: invalid type",
        ),
        (
            r#"{"model": "m", "messages": [{"role": 1}]}"#,
            "messages[0].role",
        ),
        (
            r#"{"model": "m", "messages": [{"role": "user", "content": 1}]}"#,
            "messages[0].content",
        ),
        (
            r#"{"model": "m", "messages": [{"role":"user","content":"x"}], "stream": "yes"}"#,
            "stream: invalid type",
        ),
        (
            r#"{"model": "m", "messages": [{"role":"user","content":"x"}], "stream_options": {"include_usage": 1}}"#,
            "stream_options.include_usage",
        ),
        (
            r#"{"messages": [{"role":"user","content":"x"}]}"#,
            "missing field `model`",
        ),
        (r#"{"model": "m", "messages": []}"#, "at least one message"),
        (r#"[]"#, "request body"),
        ("", "empty"),
        ("\u{0}\u{1}", "not valid JSON"),
    ];
    for (body, expected) in cases {
        let (status, error) = post_raw(&app, "/v1/chat/completions", body).await;
        assert_eq!(status, 400, "{body}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
        assert_eq!(error["type"], "invalid_request_error");
    }
    let (status, error) = post_raw(&app, "/v1/embeddings", r#"{"model":"e","input":{}}"#).await;
    assert_eq!(status, 400);
    assert_eq!(error["param"], "input");
    assert_eq!(
        mock.request_count(),
        0,
        "bad input must never reach the upstream"
    );
    assert!(
        app.sink.records().is_empty(),
        "rejected requests are not interactions"
    );
}

#[tokio::test]
async fn invalid_utf8_is_a_400() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;
    let body: &[u8] =
        b"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}";
    let response = app
        .post("/v1/chat/completions")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let (status, _) = error_of(response).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn oversized_bodies_are_413_declared_or_chunked() {
    let mock = MockUpstream::start().await;
    let mut config = common::test_config(&mock.base_url());
    config.server.max_body_bytes = 1024;
    let app = TestApp::start_with(config).await;
    let big = "x".repeat(4096);

    let response = app
        .post("/v1/chat/completions")
        .json(&chat_body(&big))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 413);
    assert!(error["message"].as_str().unwrap().contains("1024"));

    // Chunked, with no Content-Length to trust: the limit still holds.
    let stream = futures_util::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 512]))),
    );
    let response = app
        .post("/v1/chat/completions")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    // Just under the limit still works.
    let response = app
        .post("/v1/chat/completions")
        .json(&chat_body("small"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn missing_and_wrong_keys_are_401() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;
    let url = app.url("/v1/chat/completions");
    let client = &app.client;

    let response = client
        .post(&url)
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-uno-interaction-id"));
    let (status, error) = error_of(response).await;
    assert_eq!(status, 401);
    assert_eq!(error["code"], "invalid_api_key");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("missing API key")
    );

    let response = client
        .post(&url)
        .bearer_auth("uno-wrong-key-9999")
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 401);
    assert!(
        !error["message"].as_str().unwrap().contains("wrong-key"),
        "key must be redacted"
    );

    let response = client
        .get(app.url("/v1/models"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, 401);
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn auth_can_be_switched_off_explicitly() {
    let mock = MockUpstream::start().await;
    let mut config = common::test_config(&mock.base_url());
    config.auth = AuthConfig {
        disabled: true,
        keys: vec![],
        ..AuthConfig::default()
    };
    let app = TestApp::start_with(config).await;
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(&*record.tenant, "default");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_openai_shaped() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;
    let response = app
        .post("/v1/completely/unknown")
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 404);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("/v1/completely/unknown")
    );

    let response = app.get("/v1/chat/completions").send().await.unwrap();
    let (status, _) = error_of(response).await;
    assert_eq!(status, 405);

    let response = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_model_no_upstream_serves_is_a_404() {
    let mock = MockUpstream::start().await;
    let mut config = common::test_config(&mock.base_url());
    config.upstreams[0].models = vec!["gpt-*".into()];
    let app = TestApp::start_with(config).await;
    let mut body = chat_body("x");
    body["model"] = "claude-x".into();
    let response = app
        .post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 404);
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");
}
