//! `uno delete` against real databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use uno_testkit::both_backends;

use cli_common::{ask, feedback, fresh, uno};
use uno_core::feedback::Rating;
use uno_store::rows::rows_for_interaction;
use uno_testkit::Backend;

both_backends! {
    deleting_a_user_removes_only_their_data,
    deleting_a_tenant_needs_confirmation,
}

async fn deleting_a_user_removes_only_their_data(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let alice = ask("t", "alice", "q1", "a1");
    let bob = ask("t", "bob", "q2", "a2");
    // The same user name in another tenant is someone else.
    let other_alice = ask("t2", "alice", "q3", "a3");
    let mut rows: Vec<_> = [&alice, &bob, &other_alice]
        .into_iter()
        .flat_map(rows_for_interaction)
        .collect();
    rows.push(feedback("t", alice.id, "alice", Some(Rating::Up), None));
    rows.push(feedback("t", bob.id, "bob", Some(Rating::Down), None));
    // Alice's rating of Bob's answer goes with her.
    rows.push(feedback("t", bob.id, "alice", Some(Rating::Up), None));
    rows.push(feedback(
        "t2",
        other_alice.id,
        "alice",
        Some(Rating::Up),
        None,
    ));
    store.write_rows(&rows).await.unwrap();

    // Without --yes and without a terminal: refused, nothing deleted.
    let refused = uno(&db, &["delete", "--tenant", "t", "--user", "alice"])
        .await
        .failed();
    assert!(refused.stderr.contains("--yes"), "{refused:?}");
    assert_eq!(store.count_interactions(Some("t")).await.unwrap(), 2);

    let run = uno(
        &db,
        &["delete", "--tenant", "t", "--user", "alice", "--yes"],
    )
    .await
    .ok();
    assert!(run.stdout.contains("interactions  1"), "{run:?}");
    assert!(run.stdout.contains("feedback      2"), "{run:?}");

    assert!(
        store
            .interaction_tenant(alice.id.0)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .feedback_for("t", alice.id.0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.count_interactions(Some("t")).await.unwrap(), 1);
    let bob_feedback = store.feedback_for("t", bob.id.0).await.unwrap();
    assert_eq!(bob_feedback.len(), 1);
    assert_eq!(bob_feedback[0].end_user, "bob");
    assert_eq!(store.count_interactions(Some("t2")).await.unwrap(), 1);
    assert_eq!(
        store
            .feedback_for("t2", other_alice.id.0)
            .await
            .unwrap()
            .len(),
        1
    );

    let audit = store.audit_entries(Some("t")).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "delete_user")
        .expect("no audit entry");
    assert_eq!(entry.actor, "cli");
    assert_eq!(entry.subject.as_deref(), Some("alice"));
    assert_eq!(entry.details["interactions"], 1);
    assert_eq!(entry.details["feedback"], 2);
}

async fn deleting_a_tenant_needs_confirmation(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let key = store.create_key("gone", None).await.unwrap();
    store.create_key("kept", None).await.unwrap();
    let a = ask("gone", "u", "q", "a");
    let b = ask("kept", "u", "q", "a");
    let mut rows = rows_for_interaction(&a);
    rows.extend(rows_for_interaction(&b));
    rows.push(feedback("gone", a.id, "u", Some(Rating::Up), None));
    store.write_rows(&rows).await.unwrap();

    let refused = uno(&db, &["delete", "--tenant", "gone"]).await.failed();
    assert!(refused.stderr.contains("--yes"), "{refused:?}");
    assert!(refused.stderr.contains("not a terminal"), "{refused:?}");
    assert_eq!(store.count_interactions(Some("gone")).await.unwrap(), 1);
    assert_eq!(store.active_keys().await.unwrap().len(), 2);
    assert!(
        !store
            .audit_entries(Some("gone"))
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "delete_tenant")
    );

    let run = uno(&db, &["delete", "--tenant", "gone", "--yes"])
        .await
        .ok();
    assert!(run.stdout.contains("api keys      1"), "{run:?}");
    assert_eq!(store.count_interactions(Some("gone")).await.unwrap(), 0);
    assert!(store.feedback_for("gone", a.id.0).await.unwrap().is_empty());
    assert_eq!(store.count_interactions(Some("kept")).await.unwrap(), 1);
    let active = store.active_keys().await.unwrap();
    assert_eq!(active.len(), 1);
    assert!(
        active
            .iter()
            .all(|(hash, tenant)| *hash != key.hash && tenant == "kept")
    );
    let audit = store.audit_entries(Some("gone")).await.unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "delete_tenant")
        .expect("no audit entry");
    assert_eq!(entry.actor, "cli");
}
