//! `uno migrate` against real databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use uno_testkit::both_backends;

use cli_common::{uno, uno_with_url};
use uno_store::Store;
use uno_testkit::{Backend, TestDatabase};

both_backends! {
    migrate_creates_the_schema_and_is_repeatable,
}

async fn migrate_creates_the_schema_and_is_repeatable(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let file = db.url.strip_prefix("sqlite:").map(std::path::PathBuf::from);
    if let Some(file) = &file {
        assert!(!file.exists());
    }
    let first = uno(&db, &["migrate"]).await.ok();
    assert!(first.stdout.contains("migrations applied"), "{first:?}");
    let name = match backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    assert!(first.stdout.contains(name), "{first:?}");
    if let Some(file) = &file {
        assert!(file.exists(), "{} not created", file.display());
    }
    uno(&db, &["migrate"]).await.ok();
    // The schema is there: the store works without migrating itself.
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(store.count_interactions(None).await.unwrap(), 0);
    assert!(store.list_keys(None).await.unwrap().is_empty());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_fails_without_showing_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let run = uno_with_url(
        "postgres://uno:hunter2-secret@127.0.0.1:1/uno",
        dir.path(),
        &["migrate"],
    )
    .await
    .failed();
    assert!(run.stderr.contains("DATABASE_URL"), "{run:?}");
    assert!(!run.stderr.contains("hunter2"), "{run:?}");
    assert!(!run.stdout.contains("hunter2"), "{run:?}");
}
