//! Interaction ids across a restart of the real `uno serve`, on Postgres
//! and SQLite: an id stays its first tenant's (another tenant's request
//! under it is a 409 before and after the restart, the owner's feedback is
//! accepted), and the owner's retry after the restart still leaves one row.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::path::Path;

use cli_common::ServeProcess;
use serde_json::Value;
use uno_testkit::http::{self, interaction_id as id_of};
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
    http::chat(&reqwest::Client::new(), &uno.base_url(), key, id, content).await
}

async fn feedback(uno: &ServeProcess, key: &str, id: &str) -> u16 {
    http::feedback(&reqwest::Client::new(), &uno.base_url(), key, id).await
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
    db.attempts_of(&made, |rows| !rows.is_empty()).await;
    db.attempts_of(&chosen, |rows| asked(rows, "attempt 1"))
        .await;
    let _ = uno.stop();

    // A new process: its memory is empty, the rows name the owner.
    let uno = serve(&db, dir.path(), &mock.base_url()).await;
    refused(&uno, &made).await;
    refused(&uno, &chosen).await;
    let retry = chat(&uno, ACME_KEY, Some(&chosen), "attempt 2").await;
    assert_eq!(retry.status(), 200);
    assert_eq!(id_of(&retry), chosen);
    db.attempts_of(&chosen, |rows| asked(rows, "attempt 2"))
        .await;
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
