//! Keys stored in the database, and the admin API's deletions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{KEY, TestApp, chat_body, error_of, test_config};
use serde_json::Value;
use uno_testkit::{MockUpstream, TestDatabase};

const ADMIN_KEY: &str = "admin-key-for-tests-0123";

async fn status_with(app: &TestApp, key: &str) -> u16 {
    app.client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn stored_keys_work_within_seconds_and_stop_within_seconds_of_revocation() {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::postgres().await;
    let mut config = test_config(&mock.base_url());
    config.auth.key_refresh_secs = 1;
    let app = TestApp::start_with_store(config, &db.url).await;

    let created = app.store().create_key("gamma", Some("test")).await.unwrap();
    let started = Instant::now();
    while status_with(&app, &created.secret).await != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "new key not accepted in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.wait_for_rows(1).await;
    assert_eq!(
        app.store().count_interactions(Some("gamma")).await.unwrap(),
        1
    );

    app.store().revoke_key(&created.info.prefix).await.unwrap();
    let revoked_at = Instant::now();
    while status_with(&app, &created.secret).await != 401 {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "revoked key still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Configured keys are unaffected.
    assert_eq!(status_with(&app, KEY).await, 200);
}

#[tokio::test]
async fn admin_api_deletes_a_user_and_a_tenant_and_audits_it() {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::sqlite();
    let mut config = test_config(&mock.base_url());
    config.admin.key = Some(ADMIN_KEY.to_owned());
    let app = TestApp::start_with_store(config, &db.url).await;
    for user in ["alice", "alice", "bob"] {
        let response = app
            .post("/v1/chat/completions")
            .header("x-uno-user", user)
            .json(&chat_body("hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    app.wait_for_rows(3).await;

    // A client key is not an admin key.
    let response = app
        .client
        .delete(app.url("/admin/v1/tenants/acme/users/alice"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, 401);
    assert_eq!(app.store().count_interactions(None).await.unwrap(), 3);

    let response = app
        .client
        .delete(app.url("/admin/v1/tenants/acme/users/alice"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["interactions"], 2);
    assert_eq!(app.store().count_interactions(None).await.unwrap(), 1);
    let audit = app.store().audit_entries(Some("acme")).await.unwrap();
    let entry = audit.iter().find(|e| e.action == "delete_user").unwrap();
    assert_eq!(entry.actor, "admin-api");
    assert_eq!(entry.subject.as_deref(), Some("alice"));

    let response = app
        .client
        .delete(app.url("/admin/v1/tenants/acme"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.store().count_interactions(None).await.unwrap(), 0);
}

#[tokio::test]
async fn admin_api_is_absent_without_an_admin_key() {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::sqlite();
    let app = TestApp::start_with_store(test_config(&mock.base_url()), &db.url).await;
    let response = app
        .client
        .delete(app.url("/admin/v1/tenants/acme"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 404);
    assert!(error["message"].as_str().unwrap().contains("admin.key"));
}
