//! `/v1/models` and `/v1/embeddings`, with one upstream and with several.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, error_of};
use serde_json::json;
use uno_core::config::UpstreamConfig;
use uno_testkit::MockUpstream;

#[tokio::test]
async fn models_are_passed_through() {
    let mock = MockUpstream::builder()
        .models(["mock-model", "org/tuned"])
        .start()
        .await;
    let app = TestApp::start(&mock.base_url()).await;
    let list: serde_json::Value = app
        .get("/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["mock-model", "org/tuned"]);

    let one = app.get("/v1/models/org/tuned").send().await.unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(
        one.json::<serde_json::Value>().await.unwrap()["id"],
        "org/tuned"
    );

    let missing = app.get("/v1/models/nope").send().await.unwrap();
    let (status, error) = error_of(missing).await;
    assert_eq!(status, 404);
    assert_eq!(
        error["code"], "model_not_found",
        "upstream's 404 passed on: {error}"
    );
    let paths: Vec<String> = mock.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.contains(&"/v1/models/org%2Ftuned".to_owned()),
        "{paths:?}"
    );
}

#[tokio::test]
async fn several_upstreams_route_by_model_and_merge_model_lists() {
    let openai = MockUpstream::builder()
        .models(["gpt-4o", "shared"])
        .start()
        .await;
    let local = MockUpstream::builder()
        .models(["qwen3-8b", "shared"])
        .start()
        .await;
    let mut config = common::test_config(&openai.base_url());
    config.upstreams[0].models = vec!["gpt-*".into()];
    config.upstreams.push(UpstreamConfig {
        name: "local".into(),
        url: local.base_url(),
        api_key: None,
        models: vec![],
    });
    let app = TestApp::start_with(config).await;

    let list: serde_json::Value = app
        .get("/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["gpt-4o", "shared", "qwen3-8b"],
        "union, first upstream wins duplicates"
    );

    for model in ["gpt-4o", "qwen3-8b", "anything-else"] {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let response = app
            .post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{model}");
    }
    assert_eq!(openai.chat_requests().len(), 1);
    assert_eq!(local.chat_requests().len(), 2);
    // The second upstream has no key: no Authorization header at all.
    assert!(
        local.chat_requests()[0]
            .headers
            .get("authorization")
            .is_none()
    );

    // A model list still answers when one upstream is down.
    drop(local);
    let response = app.get("/v1/models").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let list: serde_json::Value = response.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn embeddings_are_forwarded() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;
    let body = json!({"model": "embed-1", "input": ["alpha", "beta"], "encoding_format": "float", "x_extra": 1});
    let response = app.post("/v1/embeddings").json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-uno-interaction-id"));
    let out: serde_json::Value = response.json().await.unwrap();
    assert_eq!(out["data"].as_array().unwrap().len(), 2);
    assert_eq!(out["data"][0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(mock.requests()[0].json(), body, "forwarded unchanged");
    assert!(
        app.sink.records().is_empty(),
        "embeddings are not chat interactions"
    );
}
