//! Interaction ids across a restart of the real `uno serve`, on Postgres
//! and SQLite: an id stays its first tenant's (another tenant's request
//! under it is a 409 before and after the restart, the owner's feedback is
//! accepted), and the owner's retry after the restart still leaves one row.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::path::Path;

use cli_common::ServeProcess;
use serde_json::{Value, json};
use uno_testkit::stored::StoredAttempt;
use uno_testkit::{Backend, MockUpstream, TestDatabase, both_backends};

const ACME_KEY: &str = "uno-ids-acme-key-0001";
const BETA_KEY: &str = "uno-ids-beta-key-0002";

both_backends! {
    an_id_stays_its_first_tenants_and_a_retry_one_row_across_a_restart,
}

async fn serve(db: &TestDatabase, dir: &Path, upstream: &str) -> ServeProcess {
    ServeProcess::command(&db.url, dir)
        .env("UNO_UPSTREAM_URL", upstream)
        .env("UNO_API_KEYS", format!("acme={ACME_KEY},beta={BETA_KEY}"))
        .env("UNO_JOURNAL_DIR", dir.join("journal"))
        .capture_output()
        .start()
        .await
}

async fn chat(uno: &ServeProcess, key: &str, id: Option<&str>, content: &str) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", uno.base_url()))
        .bearer_auth(key)
        .json(&json!({"model": "mock-model", "messages": [{"role": "user", "content": content}]}));
    if let Some(id) = id {
        request = request.header("x-uno-interaction-id", id);
    }
    request.send().await.unwrap()
}

fn id_of(response: &reqwest::Response) -> String {
    response.headers()["x-uno-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn feedback(uno: &ServeProcess, key: &str, id: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/v1/feedback", uno.base_url()))
        .bearer_auth(key)
        .json(&json!({"interaction_id": id, "rating": "up"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Beta's request under acme's `id`: 409 with the code, nothing served.
async fn refused(uno: &ServeProcess, id: &str) {
    let response = chat(uno, BETA_KEY, Some(id), "beta takes over").await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "interaction_id_in_use", "{body}");
    assert_eq!(body["error"]["param"], "x-uno-interaction-id", "{body}");
    assert_eq!(feedback(uno, BETA_KEY, id).await, 404, "not beta's");
    assert_eq!(feedback(uno, ACME_KEY, id).await, 200, "acme's");
}

/// The rows of `id` once `done` holds (10 s at most).
async fn rows_of(
    db: &TestDatabase,
    id: &str,
    done: impl Fn(&[StoredAttempt]) -> bool,
) -> Vec<StoredAttempt> {
    db.attempts_when(uuid::Uuid::parse_str(id).unwrap(), done)
        .await
}

fn asked(rows: &[StoredAttempt], content: &str) -> bool {
    rows.iter()
        .any(|r| r.request.as_deref().is_some_and(|q| q.contains(content)))
}

async fn an_id_stays_its_first_tenants_and_a_retry_one_row_across_a_restart(backend: Backend) {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::new(backend).await;
    let dir = tempfile::tempdir().unwrap();

    let uno = serve(&db, dir.path(), &mock.base_url()).await;
    let made = chat(&uno, ACME_KEY, None, "acme asks").await;
    assert_eq!(made.status(), 200);
    let made = id_of(&made);
    let chosen = uuid::Uuid::now_v7().to_string();
    let first = chat(&uno, ACME_KEY, Some(&chosen), "attempt 1").await;
    assert_eq!(first.status(), 200);
    assert_eq!(id_of(&first), chosen);
    refused(&uno, &made).await;
    refused(&uno, &chosen).await;
    rows_of(&db, &made, |rows| !rows.is_empty()).await;
    rows_of(&db, &chosen, |rows| asked(rows, "attempt 1")).await;
    let _ = uno.stop();

    // A new process: its memory is empty, the rows name the owner.
    let uno = serve(&db, dir.path(), &mock.base_url()).await;
    refused(&uno, &made).await;
    refused(&uno, &chosen).await;
    let retry = chat(&uno, ACME_KEY, Some(&chosen), "attempt 2").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(id_of(&retry), chosen);
    rows_of(&db, &chosen, |rows| asked(rows, "attempt 2")).await;
    assert_eq!(feedback(&uno, ACME_KEY, &chosen).await, 200);
    let (_, stderr) = uno.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");

    for (id, latest) in [(&made, "acme asks"), (&chosen, "attempt 2")] {
        let rows = db.attempts(uuid::Uuid::parse_str(id).unwrap()).await;
        assert_eq!(rows.len(), 1, "one row for {id}: {rows:?}");
        assert_eq!(rows[0].tenant, "acme");
        assert!(asked(&rows, latest), "{rows:?}");
    }
    assert_eq!(
        mock.chat_requests().len(),
        3,
        "acme's three requests, none of beta's"
    );
}
