//! Shared by the `cli_*` tests: run the real `uno` binary against a real
//! database, and seed that database through `uno_store`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use uno_core::InteractionId;
use uno_core::feedback::{ExplicitFeedback, Rating, explicit_feedback_id};
use uno_core::interaction::{InteractionRecord, Outcome, ResponseBody};
use uno_store::Store;
use uno_store::rows::{LogRow, row_for_feedback};
use uno_testkit::{Backend, TestDatabase};

/// Runs an async test body once per backend.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(uno_testkit::Backend::Postgres).await })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(uno_testkit::Backend::Sqlite).await })*
        }
    };
}

/// What a run of `uno` produced.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with both streams unless the command succeeded.
    pub fn ok(self) -> Run {
        assert!(self.success, "uno failed: {self:#?}");
        self
    }

    /// Panics unless the command failed.
    pub fn failed(self) -> Run {
        assert!(!self.success, "uno should have failed: {self:#?}");
        self
    }
}

/// A fresh database and a store on it, migrated.
pub async fn fresh(backend: Backend) -> (TestDatabase, Store) {
    let db = TestDatabase::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

/// A directory for files of this test (exists; removed with `db`).
pub fn scratch(db: &TestDatabase) -> PathBuf {
    let dir = db.scratch_dir();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `uno ARGS` with `DATABASE_URL=url`, no other uno variables, stdin
/// not a terminal, in `dir`.
pub async fn uno_with_url(url: &str, dir: &Path, args: &[&str]) -> Run {
    let url = url.to_owned();
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_uno"));
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("UNO_") || text == "DATABASE_URL" {
                cmd.env_remove(&name);
            }
        }
        let output = cmd
            .args(&args)
            .env("DATABASE_URL", &url)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run the uno binary");
        Run {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// Runs `uno ARGS` against `db`.
pub async fn uno(db: &TestDatabase, args: &[&str]) -> Run {
    uno_with_url(&db.url, &scratch(db), args).await
}

/// An interaction of `user` in `tenant`, started at `at`.
pub fn record(
    tenant: &str,
    user: &str,
    question: &str,
    answer: &str,
    at: SystemTime,
) -> InteractionRecord {
    let messages = serde_json::json!([{"role": "user", "content": question}]);
    InteractionRecord {
        id: InteractionId::new(),
        tenant: Arc::from(tenant),
        started_at: at,
        end_user: Some(user.to_owned()),
        request_body: Bytes::from(format!(r#"{{"model":"m","messages":{messages}}}"#)),
        stream: false,
        status: 200,
        outcome: Outcome::Completed,
        response: ResponseBody::Complete(Bytes::from(
            serde_json::json!({"choices":[{"index":0,"message":{"role":"assistant","content":answer},"finish_reason":"stop"}]}).to_string(),
        )),
        upstream_latency: Some(Duration::from_millis(5)),
        total_latency: Duration::from_millis(6),
        time_to_first_byte: Some(Duration::from_millis(6)),
        error: None,
    }
}

/// An interaction started now.
pub fn ask(tenant: &str, user: &str, question: &str, answer: &str) -> InteractionRecord {
    record(tenant, user, question, answer, SystemTime::now())
}

/// Explicit feedback of `user` on interaction `id`.
pub fn feedback(
    tenant: &str,
    id: InteractionId,
    user: &str,
    rating: Option<Rating>,
    expected: Option<&str>,
) -> LogRow {
    row_for_feedback(&ExplicitFeedback {
        id: explicit_feedback_id(tenant, id, user),
        tenant: tenant.to_owned(),
        interaction_id: id,
        end_user: user.to_owned(),
        rating,
        comment: None,
        expected_output: expected.map(str::to_owned),
        at: SystemTime::now(),
    })
}
