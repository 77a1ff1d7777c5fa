//! Shared by the `cli_*` tests: run the real `uno` binary against a real
//! database, and seed that database through `uno_store`.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use uno_core::InteractionId;
use uno_core::feedback::Rating;
use uno_store::Store;
use uno_store::rows::{LogRow, row_for_feedback};
use uno_testkit::{Backend, TestDatabase};

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

pub use uno_testkit::records::{ask, record};

/// Explicit feedback of `user` on interaction `id`.
pub fn feedback(
    tenant: &str,
    id: InteractionId,
    user: &str,
    rating: Option<Rating>,
    expected: Option<&str>,
) -> LogRow {
    row_for_feedback(&uno_testkit::records::feedback(
        tenant, id, user, rating, None, expected,
    ))
}
