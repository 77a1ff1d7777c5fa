//! `uno retention` against real databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use uno_testkit::both_backends;

use std::time::{Duration, SystemTime};

use cli_common::{feedback, fresh, record, uno};
use uno_core::feedback::Rating;
use uno_store::rows::rows_for_interaction;
use uno_testkit::Backend;

both_backends! {
    retention_removes_what_is_older_than_the_flags_allow,
}

async fn retention_removes_what_is_older_than_the_flags_allow(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let day = Duration::from_secs(86_400);
    let old = record("t", "u", "old", "a", SystemTime::now() - day * 40);
    let recent = record("t", "u", "new", "a", SystemTime::now() - day);
    let mut rows = rows_for_interaction(&old);
    rows.extend(rows_for_interaction(&recent));
    rows.push(feedback("t", recent.id, "u", Some(Rating::Up), None));
    store.write_rows(&rows).await.unwrap();

    // Keeping forever removes nothing.
    uno(
        &db,
        &["retention", "--metadata-days", "0", "--content-days", "0"],
    )
    .await
    .ok();
    assert_eq!(store.count_interactions(None).await.unwrap(), 2);

    let run = uno(&db, &["retention", "--metadata-days", "30"]).await.ok();
    assert!(run.stdout.contains("metadata 30 days"), "{run:?}");
    let removed = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("interactions"))
        .unwrap_or_else(|| panic!("no report: {run:?}"));
    assert_eq!(removed.split_whitespace().last(), Some("1"), "{run:?}");

    assert_eq!(store.count_interactions(None).await.unwrap(), 1);
    assert!(store.interaction_tenant(old.id.0).await.unwrap().is_none());
    assert_eq!(
        store
            .interaction_tenant(recent.id.0)
            .await
            .unwrap()
            .as_deref(),
        Some("t")
    );
    // The recent interaction kept its content and feedback.
    assert_eq!(store.rated_interactions("t").await.unwrap().len(), 1);
    assert!(
        store
            .audit_entries(None)
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "retention")
    );
}
