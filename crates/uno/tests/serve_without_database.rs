//! The real `uno serve` started while its Postgres is unreachable: it
//! serves at once (config keys, and the stored keys it cached when the
//! database was last up), `/health` stays live and `/ready` answers 503
//! until the database is back; then it applies migrations, replays the
//! journal and every request served meanwhile is in the database, once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::path::Path;
use std::time::{Duration, Instant};

use cli_common::{ServeProcess, secret_in, uno_with_url};
use uno_testkit::{MockUpstream, TcpRelay, TestDatabase, http};

const CONFIG_KEY: &str = "uno-nodb-config-key-0001";

async fn serve(url: &str, dir: &Path, upstream: &str) -> ServeProcess {
    ServeProcess::command(url, dir)
        .env("UNO_UPSTREAM_URL", upstream)
        .env("UNO_API_KEYS", format!("acme={CONFIG_KEY}"))
        .env("UNO_JOURNAL_DIR", dir.join("journal"))
        .capture_output()
        .start()
        .await
}

async fn ready(uno: &ServeProcess) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("{}/ready", uno.base_url()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Waits (20 s at most) for `/ready` to answer 200.
async fn wait_ready(uno: &ServeProcess) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = ready(uno).await;
        if status == 200 {
            assert_eq!(body["database"], "ready", "{body}");
            return;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn chat(uno: &ServeProcess, key: &str, content: &str) -> (u16, Option<String>) {
    let response = http::chat(&reqwest::Client::new(), &uno.base_url(), key, None, content).await;
    let status = response.status().as_u16();
    let id = (status == 200).then(|| http::interaction_id(&response));
    (status, id)
}

#[tokio::test]
async fn serve_starts_and_serves_while_postgres_is_unreachable_and_loses_nothing() {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::postgres().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await;
    let url = db.url_via(relay.addr());
    let dir = tempfile::tempdir().unwrap();

    // A key made in the database, seen by a serve while it was up: the
    // key cache remembers it.
    let created = uno_with_url(&url, dir.path(), &["keys", "create", "--tenant", "acme"])
        .await
        .ok();
    let stored_key = secret_in(&created.stdout);
    let first = serve(&url, dir.path(), &mock.base_url()).await;
    assert_eq!(ready(&first).await.0, 200);
    let (status, _) = chat(&first, &stored_key, "while up").await;
    if status != 200 {
        let (out, err) = first.stop();
        panic!("the stored key was refused ({status}): {created:?}\n{out}\n{err}");
    }
    let _ = first.stop();
    assert!(dir.path().join("journal/api-keys.json").is_file());

    // The database goes away; uno starts anyway.
    relay.cut();
    let started = Instant::now();
    let uno = serve(&url, dir.path(), &mock.base_url()).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "serve took {:?} to answer /health",
        started.elapsed()
    );
    let (status, body) = ready(&uno).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "unreachable", "{body}");
    let mut served = Vec::new();
    for (i, key) in [CONFIG_KEY, stored_key.as_str(), CONFIG_KEY]
        .iter()
        .enumerate()
    {
        let (status, id) = chat(&uno, key, &format!("during the outage {i}")).await;
        assert_eq!(status, 200, "key {i} refused while the database is away");
        served.push(id.unwrap());
    }
    assert_eq!(chat(&uno, "uno-sk-not-a-key", "x").await.0, 401);

    // Back: /ready turns 200, and every request served meanwhile is stored.
    relay.restore();
    wait_ready(&uno).await;
    for id in &served {
        db.attempts_of(id, |rows| rows.len() == 1).await;
    }
    let (stdout, stderr) = uno.stop();
    assert!(
        stderr.contains("database is unreachable") || stdout.contains("database is unreachable"),
        "the start-up warning says what happens: {stderr}"
    );
}

/// A database never migrated and unreachable when uno starts: uno serves
/// with its config keys, applies the migrations once the database answers,
/// and only then writes the journaled rows (none refused for a missing
/// table).
#[tokio::test]
async fn migrations_wait_for_the_database_and_rows_wait_for_the_migrations() {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::postgres().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await;
    relay.cut();
    let dir = tempfile::tempdir().unwrap();
    let uno = serve(&db.url_via(relay.addr()), dir.path(), &mock.base_url()).await;
    let (status, id) = chat(&uno, CONFIG_KEY, "before any schema").await;
    assert_eq!(status, 200);
    assert_eq!(ready(&uno).await.0, 503);
    relay.restore();
    wait_ready(&uno).await;
    db.attempts_of(&id.unwrap(), |rows| rows.len() == 1).await;
    assert!(
        !dir.path().join("journal/rejected.jsonl").exists(),
        "rows were refused for want of a schema"
    );
    let _ = uno.stop();
}
