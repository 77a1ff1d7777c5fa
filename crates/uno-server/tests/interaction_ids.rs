//! Client-chosen interaction ids (`x-uno-interaction-id`) against real
//! databases: an id belongs to the first tenant that used it, another
//! tenant's request under it is a 409 that forwards and logs nothing, and
//! the owner's request under it again is a retry that leaves one row, the
//! latest attempt's. A second app on the same database (a restart, or
//! another replica: its memory is empty) learns the owner from the rows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{KEY, TestApp, error_of, test_config};
use serde_json::Value;
use uno_core::config::{ApiKeyConfig, Config};
use uno_testkit::http::{self, interaction_id as id_of};
use uno_testkit::stored::StoredAttempt;
use uno_testkit::{Backend, MockUpstream, TcpRelay, TestDatabase, both_backends};

const OTHER_KEY: &str = "uno-test-key-beta-0002";

both_backends! {
    another_tenants_id_is_refused_and_its_owner_keeps_it,
    a_retry_under_the_same_id_leaves_one_row_the_latest,
}

fn config(mock: &MockUpstream) -> Config {
    let mut config = test_config(&mock.base_url());
    config.auth.keys.push(ApiKeyConfig {
        key: OTHER_KEY.to_owned(),
        tenant: "beta".to_owned(),
    });
    config
}

/// A chat completion with `key`, under `id` when given.
async fn chat(app: &TestApp, key: &str, id: Option<&str>, content: &str) -> reqwest::Response {
    http::chat(&app.client, &app.url(""), key, id, content).await
}

async fn feedback(app: &TestApp, key: &str, id: &str) -> u16 {
    http::feedback(&app.client, &app.url(""), key, id).await
}

/// Checks a refusal under `id`: 409 in OpenAI's shape, with the code, the
/// header as its param, a message that says what to do, and the id.
async fn assert_in_use(response: reqwest::Response, id: &str) {
    assert_eq!(id_of(&response), id);
    let (status, error) = error_of(response).await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["code"], "interaction_id_in_use", "{error}");
    assert_eq!(error["param"], "x-uno-interaction-id", "{error}");
    assert_eq!(error["type"], "invalid_request_error", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("omit") && message.contains("another UUID") && message.contains(id),
        "{message}"
    );
}

fn asked(row: &StoredAttempt, content: &str) -> bool {
    row.request.as_deref().is_some_and(|r| r.contains(content))
}

async fn another_tenants_id_is_refused_and_its_owner_keeps_it(backend: Backend) {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::new(backend).await;
    let app = TestApp::start_with_store(config(&mock), &db.url).await;

    // An id uno made, and one the owner chose.
    let made = id_of(&chat(&app, KEY, None, "acme's question").await);
    let chosen = uuid::Uuid::now_v7().to_string();
    let response = chat(&app, KEY, Some(&chosen), "acme's own id").await;
    assert_eq!(response.status(), 200);
    assert_eq!(id_of(&response), chosen);
    for x in [&made, &chosen] {
        let forwarded = mock.chat_requests().len();
        assert_in_use(chat(&app, OTHER_KEY, Some(x), "beta takes over").await, x).await;
        assert_eq!(mock.chat_requests().len(), forwarded, "nothing forwarded");
        assert_eq!(feedback(&app, OTHER_KEY, x).await, 404, "not beta's");
        assert_eq!(feedback(&app, KEY, x).await, 200, "still acme's");
    }
    app.wait_for_rows(2).await;

    // Another app on the same database knows nothing in memory: the rows
    // name the owner, before and after its own memory has it.
    let again = TestApp::start_with_store(config(&mock), &db.url).await;
    for x in [&made, &chosen] {
        for _ in 0..2 {
            assert_in_use(chat(&again, OTHER_KEY, Some(x), "beta again").await, x).await;
            assert_eq!(feedback(&again, OTHER_KEY, x).await, 404);
            assert_eq!(feedback(&again, KEY, x).await, 200);
        }
    }
    // Give a wrongly accepted request time to be logged, then check.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for x in [&made, &chosen] {
        let rows = db.attempts(uuid::Uuid::parse_str(x).unwrap()).await;
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].tenant, "acme");
        assert!(!asked(&rows[0], "beta"), "{rows:?}");
    }
    assert_eq!(
        again
            .store()
            .count_interactions(Some("beta"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(mock.chat_requests().len(), 2, "only acme's were forwarded");
}

async fn a_retry_under_the_same_id_leaves_one_row_the_latest(backend: Backend) {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::new(backend).await;
    let app = TestApp::start_with_store(config(&mock), &db.url).await;
    let id = uuid::Uuid::now_v7().to_string();
    for attempt in 1..=3 {
        let response = chat(&app, KEY, Some(&id), &format!("attempt {attempt}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(id_of(&response), id);
        let _ = response.bytes().await.unwrap();
    }
    assert_eq!(mock.chat_requests().len(), 3, "each attempt is forwarded");
    db.attempts_of(&id, |rows| rows.iter().any(|r| asked(r, "attempt 3")))
        .await;
    // Give a wrongly kept attempt time to be written too, then check.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rows = db.attempts(uuid::Uuid::parse_str(&id).unwrap()).await;
    assert_eq!(rows.len(), 1, "one interaction, one row: {rows:?}");
    assert!(asked(&rows[0], "attempt 3"), "the latest attempt: {rows:?}");
    assert_eq!(feedback(&app, KEY, &id).await, 200);

    // A retry that reaches another app (a restart): the database says the
    // id is acme's own, so it is a retry there too.
    let again = TestApp::start_with_store(config(&mock), &db.url).await;
    let response = chat(&again, KEY, Some(&id), "attempt 4").await;
    assert_eq!(response.status(), 200);
    assert_eq!(id_of(&response), id);
    let rows = db
        .attempts_of(&id, |rows| rows.iter().any(|r| asked(r, "attempt 4")))
        .await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(db.contents_of(uuid::Uuid::parse_str(&id).unwrap()).await, 1);
    assert_eq!(feedback(&again, KEY, &id).await, 200);
    assert_eq!(again.store().count_interactions(None).await.unwrap(), 1);
}

/// When the database cannot say who owns a chosen id, the request is
/// served (never a 5xx, never under a possibly wrong owner) under a fresh
/// id of uno's own, which the response carries and feedback accepts.
#[tokio::test(flavor = "multi_thread")]
async fn an_id_whose_owner_cannot_be_checked_is_served_under_a_fresh_one() {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::postgres().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await;
    let app = TestApp::start_with_store(config(&mock), &db.url_via(relay.addr())).await;
    relay.cut();
    let chosen = uuid::Uuid::now_v7().to_string();
    let started = std::time::Instant::now();
    let response = chat(&app, KEY, Some(&chosen), "while the database is away").await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    let served = id_of(&response);
    assert_ne!(served, chosen, "not under an id whose owner is unknown");
    let served_id = uuid::Uuid::parse_str(&served).unwrap();
    assert_eq!(served_id.get_version_num(), 7, "one of uno's own");
    let body: Value = response.json().await.unwrap();
    assert!(body["choices"].is_array(), "{body}");
    assert_eq!(feedback(&app, KEY, &served).await, 200);
    assert_eq!(mock.chat_requests().len(), 1);

    // Back, the journaled row lands under the fresh id.
    relay.restore();
    let rows = db.attempts_of(&served, |rows| !rows.is_empty()).await;
    assert_eq!(rows[0].tenant, "acme");
    assert!(
        db.attempts(uuid::Uuid::parse_str(&chosen).unwrap())
            .await
            .is_empty()
    );
}
