//! Structured logs end to end, with the real `uno serve`: JSON logs at
//! debug level, a client key, an admin key, an upstream key and a Postgres
//! URL with a password. After a plain and a streamed chat, feedback, a wrong
//! client key and admin requests (right and wrong admin key), every stderr
//! line is one JSON object; each answered request has its access-log event
//! with its interaction id, tenant, route, status, path and latency; and none
//! of the secrets appears anywhere in what uno printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::path::Path;

use cli_common::ServeProcess;
use serde_json::{Value, json};
use uno_testkit::{MockUpstream, TestDatabase};

const CLIENT_KEY: &str = "uno-logs-client-key-secret-0c1f";
const ADMIN_KEY: &str = "uno-logs-admin-key-secret-9a7e";
const UPSTREAM_KEY: &str = "sk-logs-upstream-secret-5b2d";
const WRONG_KEY: &str = "uno-logs-wrong-key-secret-77aa";
const DB_PASSWORD: &str = "pg-logs-password-secret-3e4f";

/// `url` with `password` for its user (kept if it already has one, since
/// the server may check it); returns the URL and the password in it.
fn with_password(url: &str, password: &str) -> (String, String) {
    let scheme = url.find("://").expect("a URL") + 3;
    let at = url.rfind('@').expect("a user in the Postgres URL");
    let user = &url[scheme..at];
    match user.split_once(':') {
        Some((_, existing)) => (url.to_owned(), existing.to_owned()),
        None => (
            format!("{}{user}:{password}{}", &url[..scheme], &url[at..]),
            password.to_owned(),
        ),
    }
}

/// `uno serve` with JSON logs at debug level and every secret set; its
/// output captured for [`ServeProcess::stop`].
async fn serve(dir: &Path, database_url: &str, upstream: &str) -> ServeProcess {
    ServeProcess::command(database_url, dir)
        .env("UNO_LOG", "debug")
        .env("UNO_LOG_FORMAT", "json")
        .env("UNO_UPSTREAM_URL", upstream)
        .env("UNO_UPSTREAM_API_KEY", UPSTREAM_KEY)
        .env("UNO_API_KEYS", format!("acme={CLIENT_KEY}"))
        .env("UNO_ADMIN_KEY", ADMIN_KEY)
        .env("UNO_JOURNAL_DIR", dir.join("journal"))
        .capture_output()
        .start()
        .await
}

fn id_of(response: &reqwest::Response) -> String {
    response.headers()["x-uno-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The access-log events (`target = uno::access`).
fn access_events(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["target"] == "uno::access")
        .collect()
}

#[tokio::test]
async fn json_logs_carry_the_request_and_never_a_secret() {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::postgres().await;
    let (database_url, password) = with_password(&db.url, DB_PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let uno = serve(dir.path(), &database_url, &mock.base_url()).await;
    let base = uno.base_url();
    let client = reqwest::Client::new();
    let chat = |body: Value| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(CLIENT_KEY)
            .json(&body)
            .send()
    };

    let plain = chat(json!({
        "model": "mock-model",
        "messages": [{"role": "user", "content": "How long do I boil an egg?"}],
    }))
    .await
    .unwrap();
    assert_eq!(plain.status(), 200);
    let plain_id = id_of(&plain);
    let _ = plain.bytes().await.unwrap();

    let stream = chat(json!({
        "model": "mock-model",
        "stream": true,
        "messages": [{"role": "user", "content": "And a duck egg?"}],
    }))
    .await
    .unwrap();
    assert_eq!(stream.status(), 200);
    let stream_id = id_of(&stream);
    let _ = stream.bytes().await.unwrap();

    let feedback = client
        .post(format!("{base}/v1/feedback"))
        .bearer_auth(CLIENT_KEY)
        .json(&json!({"interaction_id": plain_id, "rating": "down", "comment": "too short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(feedback.status(), 200);
    let feedback_id = id_of(&feedback);

    let wrong = client
        .get(format!("{base}/v1/models"))
        .bearer_auth(WRONG_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let wrong_id = id_of(&wrong);

    let admin = client
        .delete(format!("{base}/admin/v1/tenants/ghost/users/nobody"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200, "{}", admin.text().await.unwrap());
    let admin_refused = client
        .delete(format!("{base}/admin/v1/tenants/ghost"))
        .bearer_auth(CLIENT_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(admin_refused.status(), 401);

    // The upstream key was really in use (so its absence from the logs
    // means something).
    let forwarded = mock.chat_requests();
    assert_eq!(forwarded.len(), 2);
    assert_eq!(
        forwarded[0].headers["authorization"],
        format!("Bearer {UPSTREAM_KEY}").as_str()
    );

    let (stdout, stderr) = uno.stop();

    // Every line is one JSON object, with the fields log pipelines key on.
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            assert!(value.is_object(), "not an object: {line}");
            for field in ["timestamp", "level", "target", "fields"] {
                assert!(!value[field].is_null(), "no {field}: {line}");
            }
            value
        })
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "debug level was on, yet no DEBUG event"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "uno is serving the OpenAI API")
    );
    assert!(lines.iter().any(|l| l["fields"]["message"] == "stopped"));

    // Every event inside a request's span carries its interaction id and
    // tenant; each answered request has one access event, in its span.
    for line in &lines {
        if line["span"]["name"] == "request" {
            assert!(line["span"]["interaction_id"].is_string(), "{line}");
            assert_eq!(line["span"]["tenant"], "acme", "{line}");
            assert!(line["span"]["uri_path"].is_string(), "{line}");
        }
    }
    let access = access_events(&lines);
    let answered = |id: &str| -> &Value {
        let events: Vec<_> = access
            .iter()
            .filter(|e| e["span"]["interaction_id"] == id)
            .collect();
        assert_eq!(events.len(), 1, "one access event for {id}: {access:#?}");
        let event = events[0];
        assert_eq!(event["level"], "DEBUG");
        assert_eq!(event["span"]["tenant"], "acme");
        assert!(
            event["fields"]["latency_ms"]
                .as_f64()
                .is_some_and(|ms| ms >= 0.0),
            "{event}"
        );
        event
    };
    for (id, route, path) in [
        (&plain_id, "chat", "passthrough"),
        (&stream_id, "chat", "passthrough"),
        (&feedback_id, "feedback", "none"),
    ] {
        let event = answered(id);
        assert_eq!(event["fields"]["route"], route, "{event}");
        assert_eq!(event["fields"]["status"], 200, "{event}");
        assert_eq!(event["fields"]["path"], path, "{event}");
    }
    let refused: Vec<_> = access
        .iter()
        .filter(|e| e["fields"]["interaction_id"] == wrong_id.as_str())
        .collect();
    assert_eq!(refused.len(), 1, "{access:#?}");
    assert_eq!(refused[0]["fields"]["status"], 401);
    assert_eq!(refused[0]["fields"]["route"], "models");

    // Admin requests: their own span (method and route template, not the
    // user named in the path) and an access event, 401 included.
    let admin: Vec<_> = access
        .iter()
        .filter(|e| e["span"]["name"] == "admin_request")
        .collect();
    let statuses: Vec<_> = admin.iter().map(|e| &e["fields"]["status"]).collect();
    assert_eq!(statuses, [200, 401], "{admin:#?}");
    assert_eq!(admin[0]["fields"]["route"], "admin");
    assert_eq!(admin[0]["span"]["method"], "DELETE");
    assert_eq!(
        admin[0]["span"]["endpoint"],
        "/admin/v1/tenants/{tenant}/users/{user}"
    );

    // Nothing secret, anywhere.
    let printed = format!("{stdout}\n{stderr}");
    for (what, secret) in [
        ("client key", CLIENT_KEY),
        ("admin key", ADMIN_KEY),
        ("upstream key", UPSTREAM_KEY),
        ("wrong client key", WRONG_KEY),
        ("database password", password.as_str()),
    ] {
        assert!(
            !printed.contains(secret),
            "the {what} was logged:\n{}",
            printed
                .lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The end user the admin request named is not in the logs either.
    assert!(
        !printed.contains("nobody"),
        "the admin request's user was logged"
    );
}
