//! Plain (non-streamed) chat completions through the real app.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestApp, chat_body, error_of};
use serde_json::json;
use uno_core::interaction::Outcome;
use uno_testkit::{MockReply, MockUpstream};

#[tokio::test]
async fn forwards_a_chat_completion_and_logs_it() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;

    let response = app
        .post("/v1/chat/completions")
        .json(&chat_body("hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-uno-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let uuid = uuid::Uuid::parse_str(&id).expect("interaction id is a UUID");
    assert_eq!(uuid.get_version_num(), 7);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hello");
    // An unknown response field reaches the client unchanged.
    assert_eq!(body["mock_extra"], json!({"kept": true}));

    // The upstream got the upstream key, never the client's uno key.
    let sent = &mock.chat_requests()[0];
    assert_eq!(sent.headers["authorization"], "Bearer upstream-secret");
    assert_eq!(sent.path, "/v1/chat/completions");

    let records = app.sink.wait_for(1).await;
    let record = &records[0];
    assert_eq!(record.id.to_string(), id);
    assert_eq!(&*record.tenant, "acme");
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.status, 200);
    assert!(!record.stream);
    let summary = record.summary();
    assert_eq!(summary.text, "echo: hello");
    assert_eq!(summary.finish_reason.as_deref(), Some("stop"));
    assert!(summary.usage.is_some());
    assert!(record.upstream_latency.unwrap() <= record.total_latency);
}

#[tokio::test]
async fn unknown_request_fields_reach_the_upstream_byte_for_byte() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;
    let raw = r#"{"model":"mock-model","messages":[{"role":"user","content":"x","name":"bob"}],"temperature":0.3,"x_vendor":{"deep":[1,2,{"k":null}]},"logit_bias":{"50256":-100}}"#;
    let response = app
        .post("/v1/chat/completions")
        .header("content-type", "application/json")
        .header("openai-organization", "org-123")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = &mock.chat_requests()[0];
    assert_eq!(
        sent.body.as_ref(),
        raw.as_bytes(),
        "body must be forwarded unchanged"
    );
    assert_eq!(sent.headers["openai-organization"], "org-123");
}

#[tokio::test]
async fn client_chosen_interaction_id_is_kept_and_bad_ones_rejected() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;
    let chosen = "0190b6f4-8c1e-7d3a-9f00-1a2b3c4d5e6f";
    let response = app
        .post("/v1/chat/completions")
        .header("x-uno-interaction-id", chosen)
        .header("x-uno-user", "user-42")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-uno-interaction-id"], chosen);
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.id.to_string(), chosen);
    assert_eq!(record.end_user.as_deref(), Some("user-42"));
    // uno's own headers never travel upstream.
    assert!(mock.chat_requests()[0].headers.get("x-uno-user").is_none());

    let response = app
        .post("/v1/chat/completions")
        .header("x-uno-interaction-id", "not-a-uuid")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(error["param"], "x-uno-interaction-id");
    assert_eq!(
        mock.request_count(),
        1,
        "a rejected request must not reach the upstream"
    );
}

#[tokio::test]
async fn end_user_comes_from_the_body_when_no_header() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;
    let mut body = chat_body("hi");
    body["user"] = json!("body-user");
    app.post("/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.end_user.as_deref(), Some("body-user"));
}

#[tokio::test]
async fn upstream_response_headers_are_passed_on() {
    let mock = MockUpstream::start().await;
    mock.push_reply(
        MockReply::text("ok")
            .header("x-request-id", "req-abc")
            .header("x-ratelimit-remaining-requests", "99"),
    );
    let app = TestApp::start(&mock.base_url()).await;
    let response = app
        .post("/v1/chat/completions")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-abc");
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "99");
}
