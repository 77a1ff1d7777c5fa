//! `uno keys create|list|revoke` against real databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use uno_testkit::both_backends;

use cli_common::{secret_in, uno};
use uno_store::Store;
use uno_store::keys::hash_key;
use uno_testkit::{Backend, TestDatabase};

both_backends! {
    keys_are_created_listed_and_revoked,
}

async fn keys_are_created_listed_and_revoked(backend: Backend) {
    // Not migrated: `uno keys` migrates first.
    let db = TestDatabase::new(backend).await;
    let created = uno(
        &db,
        &["keys", "create", "--tenant", "acme", "--name", "prod"],
    )
    .await
    .ok();
    assert!(
        created.stdout.contains("cannot be shown again"),
        "{created:?}"
    );
    let secret = secret_in(&created.stdout);

    let store = Store::connect(&db.url).await.unwrap();
    let active = store.active_keys().await.unwrap();
    assert_eq!(active, vec![(hash_key(&secret), "acme".to_owned())]);
    let keys = store.list_keys(None).await.unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert!(created.stdout.contains(&key.id.to_string()));
    assert!(created.stdout.contains(&key.prefix));

    let listed = uno(&db, &["keys", "list"]).await.ok();
    for expected in [&key.prefix, "acme", "prod", "active", &key.id.to_string()] {
        assert!(listed.stdout.contains(expected), "{expected}: {listed:?}");
    }
    assert!(!listed.stdout.contains(&secret), "list shows the secret");
    assert!(!listed.stderr.contains(&secret), "list shows the secret");
    let other = uno(&db, &["keys", "list", "--tenant", "other"]).await.ok();
    assert!(!other.stdout.contains(&key.prefix), "{other:?}");

    // A second key, revoked by id; the first by prefix.
    let second = uno(&db, &["keys", "create", "--tenant", "acme"]).await.ok();
    let second_secret = secret_in(&second.stdout);
    assert_ne!(second_secret, secret);
    assert_eq!(store.active_keys().await.unwrap().len(), 2);
    let second_id = store
        .list_keys(Some("acme"))
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.id != key.id)
        .unwrap()
        .id;

    let unknown = uno(&db, &["keys", "revoke", "uno-sk-0000000"])
        .await
        .failed();
    assert!(unknown.stderr.contains("no active key"), "{unknown:?}");
    assert_eq!(store.active_keys().await.unwrap().len(), 2);

    uno(&db, &["keys", "revoke", &second_id.to_string()])
        .await
        .ok();
    uno(&db, &["keys", "revoke", &key.prefix]).await.ok();
    assert!(store.active_keys().await.unwrap().is_empty());
    // Revoking again matches nothing active.
    uno(&db, &["keys", "revoke", &key.prefix]).await.failed();

    let listed = uno(&db, &["keys", "list", "--tenant", "acme"]).await.ok();
    assert_eq!(listed.stdout.matches("revoked").count(), 2, "{listed:?}");
    assert!(!listed.stdout.contains("active"), "{listed:?}");
    store.close().await;
}
