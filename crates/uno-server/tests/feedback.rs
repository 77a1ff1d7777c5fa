//! `POST /v1/feedback` and implicit feedback, against real databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{KEY, TestApp, chat_body, error_of, test_config};
use serde_json::{Value, json};
use uno_core::config::ApiKeyConfig;
use uno_testkit::{Backend, MockUpstream, TestDatabase};

const OTHER_KEY: &str = "uno-test-key-beta-0002";

use uno_testkit::both_backends;

both_backends! {
    feedback_is_stored_and_a_second_post_updates_it,
    bad_feedback_gets_a_clear_4xx_and_writes_nothing,
    feedback_for_an_interaction_only_in_the_database_is_accepted,
    a_follow_up_turn_becomes_implicit_feedback,
}

async fn start(backend: Backend) -> (MockUpstream, TestDatabase, TestApp) {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::new(backend).await;
    let mut config = test_config(&mock.base_url());
    config.auth.keys.push(ApiKeyConfig {
        key: OTHER_KEY.to_owned(),
        tenant: "beta".to_owned(),
    });
    config.feedback.max_text_bytes = 1000;
    let app = TestApp::start_with_store(config, &db.url).await;
    (mock, db, app)
}

async fn chat(app: &TestApp, key: &str, content: &str) -> String {
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body(content))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.headers()["x-uno-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn feedback(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/feedback"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Waits for the writer to store feedback on `id` (10 s at most).
async fn stored_feedback(
    app: &TestApp,
    tenant: &str,
    id: &str,
    n: usize,
) -> Vec<uno_store::rows::FeedbackRow> {
    let id = uuid::Uuid::parse_str(id).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = app.store().feedback_for(tenant, id).await.unwrap();
        if rows.len() >= n {
            return rows;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "feedback never stored: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn feedback_is_stored_and_a_second_post_updates_it(backend: Backend) {
    let (_mock, _db, app) = start(backend).await;
    let id = chat(&app, KEY, "What year was the moon landing?").await;
    // Posted at once: the interaction row may not be written yet.
    let first = feedback(
        &app,
        KEY,
        json!({"interaction_id": id, "rating": "up", "user": "u1"}),
    )
    .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["status"], "accepted");
    let rows = stored_feedback(&app, "acme", &id, 1).await;
    assert_eq!(rows[0].rating, Some(1));

    let second = feedback(
        &app,
        KEY,
        json!({"interaction_id": id, "rating": "down", "comment": "It was 1969, not 1968.", "expected_output": "1969", "user": "u1"}),
    )
    .await;
    let second: Value = second.json().await.unwrap();
    assert_eq!(
        second["feedback_id"], first["feedback_id"],
        "same (interaction, user): same feedback"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows = stored_feedback(&app, "acme", &id, 1).await;
        assert_eq!(rows.len(), 1, "a second post updates, never adds");
        if rows[0].rating == Some(-1) {
            assert_eq!(rows[0].comment.as_deref(), Some("It was 1969, not 1968."));
            assert_eq!(rows[0].expected_output.as_deref(), Some("1969"));
            assert_eq!(rows[0].end_user, "u1");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "update never stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another user's feedback on the same answer is separate; the header
    // names the user when the body does not.
    let third = app
        .client
        .post(app.url("/v1/feedback"))
        .bearer_auth(KEY)
        .header("x-uno-user", "u2")
        .json(&json!({"interaction_id": id, "rating": "up"}))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);
    let rows = stored_feedback(&app, "acme", &id, 2).await;
    assert!(rows.iter().any(|r| r.end_user == "u2"));
}

async fn bad_feedback_gets_a_clear_4xx_and_writes_nothing(backend: Backend) {
    let (_mock, _db, app) = start(backend).await;
    let mine = chat(&app, KEY, "hello").await;
    let theirs = chat(&app, OTHER_KEY, "hello from beta").await;
    app.wait_for_rows(2).await;

    let unknown = uuid::Uuid::now_v7().to_string();
    let long = "x".repeat(1001);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "unknown id",
            json!({"interaction_id": unknown, "rating": "up"}),
            404,
            "no interaction",
        ),
        (
            "another tenant's id",
            json!({"interaction_id": theirs, "rating": "down"}),
            404,
            "no interaction",
        ),
        (
            "bad rating",
            json!({"interaction_id": mine, "rating": "5 stars"}),
            400,
            "rating must be",
        ),
        (
            "oversized comment",
            json!({"interaction_id": mine, "comment": long}),
            400,
            "limit is 1000",
        ),
        (
            "oversized expected output",
            json!({"interaction_id": mine, "rating": "up", "expected_output": long}),
            400,
            "expected_output is 1001 bytes",
        ),
        (
            "nothing to say",
            json!({"interaction_id": mine}),
            400,
            "at least one of",
        ),
        (
            "not a uuid",
            json!({"interaction_id": "abc", "rating": "up"}),
            400,
            "interaction_id must be",
        ),
        (
            "wrong type",
            json!({"interaction_id": mine, "rating": 1}),
            400,
            "rating: invalid type",
        ),
        (
            "unknown field",
            json!({"interaction_id": mine, "rating": "up", "stars": 5}),
            400,
            "unknown field `stars`",
        ),
        (
            "missing id",
            json!({"rating": "up"}),
            400,
            "missing field `interaction_id`",
        ),
    ];
    for (what, body, status, message) in cases {
        let response = feedback(&app, KEY, body).await;
        let (got, error) = error_of(response).await;
        assert_eq!(got, status, "{what}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{what}: {error}"
        );
    }
    let response = app
        .client
        .post(app.url("/v1/feedback"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body("{\"interaction_id\": ")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 400);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    let response = app
        .client
        .post(app.url("/v1/feedback"))
        .bearer_auth("uno-wrong-key-0000")
        .json(&json!({"interaction_id": mine, "rating": "up"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, 401);
    let huge = json!({"interaction_id": mine, "comment": "y".repeat(10_000)});
    assert_eq!(error_of(feedback(&app, KEY, huge).await).await.0, 413);

    // Give the writer time to store anything wrongly accepted, then check.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (tenant, id) in [("acme", &mine), ("beta", &theirs), ("acme", &theirs)] {
        let rows = app
            .store()
            .feedback_for(tenant, uuid::Uuid::parse_str(id).unwrap())
            .await
            .unwrap();
        assert!(
            rows.is_empty(),
            "bad feedback was written for {tenant}/{id}: {rows:?}"
        );
    }
}

async fn feedback_for_an_interaction_only_in_the_database_is_accepted(backend: Backend) {
    // As if another replica served it: the row exists, this process never
    // saw the id.
    let (_mock, _db, app) = start(backend).await;
    let record = uno_core::interaction::InteractionRecord {
        id: uno_core::InteractionId::new(),
        tenant: std::sync::Arc::from("acme"),
        started_at: std::time::SystemTime::now(),
        end_user: None,
        request_digest: None,
        request_body: bytes::Bytes::from_static(
            br#"{"model":"m","messages":[{"role":"user","content":"q"}]}"#,
        ),
        stream: false,
        status: 200,
        outcome: uno_core::interaction::Outcome::Completed,
        response: uno_core::interaction::ResponseBody::None,
        upstream_latency: None,
        total_latency: Duration::from_millis(1),
        time_to_first_byte: None,
        error: None,
        experience: Default::default(),
        replaces_earlier: false,
    };
    app.store()
        .write_rows(&uno_store::rows::rows_for_interaction(&record))
        .await
        .unwrap();
    let id = record.id.to_string();
    let response = feedback(&app, KEY, json!({"interaction_id": id, "comment": "good"})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        stored_feedback(&app, "acme", &id, 1).await[0]
            .comment
            .as_deref(),
        Some("good")
    );
    // The same id from another tenant's key: 404, nothing written.
    let response = feedback(
        &app,
        OTHER_KEY,
        json!({"interaction_id": id, "comment": "mine?"}),
    )
    .await;
    assert_eq!(error_of(response).await.0, 404);
}

async fn a_follow_up_turn_becomes_implicit_feedback(backend: Backend) {
    let (_mock, _db, app) = start(backend).await;
    let first_body = chat_body("Summarise the French revolution");
    let response = app
        .post("/v1/chat/completions")
        .json(&first_body)
        .send()
        .await
        .unwrap();
    let first_id = response.headers()["x-uno-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let answer: Value = response.json().await.unwrap();
    let answer_text = answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();

    // The client continues the conversation, re-sending the answer.
    let follow = json!({
        "model": "mock-model",
        "messages": [
            {"role": "user", "content": "Summarise the French revolution"},
            {"role": "assistant", "content": answer_text},
            {"role": "user", "content": "Too short. Include the causes."}
        ]
    });
    let response = app
        .post("/v1/chat/completions")
        .json(&follow)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let second_id = response.headers()["x-uno-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let rows = stored_feedback(&app, "acme", &first_id, 1).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].kind, "implicit");
    assert_eq!(
        rows[0].comment.as_deref(),
        Some("Too short. Include the causes.")
    );
    assert_eq!(
        rows[0].source_interaction_id.unwrap().to_string(),
        second_id
    );

    // Another tenant re-sending the same conversation attaches nothing to
    // acme's interaction.
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(OTHER_KEY)
        .json(&follow)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    app.wait_for_rows(3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stored_feedback(&app, "acme", &first_id, 1).await.len(), 1);
}
