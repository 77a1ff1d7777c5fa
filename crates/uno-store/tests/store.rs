//! The store against real databases: every test runs on Postgres and on
//! SQLite, each in a fresh database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use chrono::Utc;
use uno_core::InteractionId;
use uno_core::feedback::Rating;
use uno_core::interaction::InteractionRecord;
use uno_store::export::{ExportFormat, ExportKind, build};
use uno_store::rows::{
    EncodedInteraction, EncodedRows, InteractionRows, LogRow, row_for_feedback,
    rows_for_interaction,
};
use uno_store::{RetentionPolicy, Store};
use uno_testkit::{Backend, TestDatabase};

use uno_testkit::both_backends;

both_backends! {
    writes_are_idempotent,
    encoded_interactions_store_what_rows_store,
    feedback_upserts_merge,
    follow_ups_become_implicit_feedback,
    retention_removes_old_data,
    content_retention_keeps_metadata,
    deleting_a_user_removes_their_data_and_is_audited,
    deleting_a_tenant_removes_everything_of_it,
    the_end_user_index_serves_lookups_by_user_and_holds_no_anonymous_rows,
    keys_are_hashed_listed_and_revoked,
    export_reads_rated_interactions,
    the_owner_of_an_id_is_the_first_tenant_that_used_it,
    a_retry_leaves_one_row_in_a_batch_in_the_store_and_through_the_journal,
}

async fn fresh(backend: Backend) -> (TestDatabase, Store) {
    let db = TestDatabase::new(backend).await;
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    (db, store)
}

fn record(
    tenant: &str,
    user: &str,
    messages: &str,
    answer: &str,
    at: SystemTime,
) -> InteractionRecord {
    let messages: serde_json::Value = serde_json::from_str(messages).unwrap();
    uno_testkit::records::conversation(tenant, user, &messages, answer, at)
}

use uno_testkit::records::ask;

fn feedback(
    tenant: &str,
    id: InteractionId,
    user: &str,
    rating: Option<Rating>,
    comment: Option<&str>,
    expected: Option<&str>,
) -> LogRow {
    row_for_feedback(&uno_testkit::records::feedback(
        tenant, id, user, rating, comment, expected,
    ))
}

/// The log sink queues interactions encoded for COPY on Postgres; the
/// fresh batch goes in by COPY, a replay (ids already stored) falls back to
/// rows decoded from the tuples, and SQLite decodes them too. Each way the
/// stored interaction is the one the row describes.
async fn encoded_interactions_store_what_rows_store(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let asked = ask("t", "u", "capital of \"France\"?", "Paris, café.");
    let rows = rows_for_interaction(&asked);
    let LogRow::Interaction(row) = &rows[0] else {
        panic!("not an interaction")
    };
    let encoded = vec![LogRow::Encoded(EncodedInteraction::of(&row.columns()))];
    store.write_rows(&encoded).await.unwrap();
    store.write_rows(&encoded).await.unwrap();
    assert_eq!(store.count_interactions(Some("t")).await.unwrap(), 1);
    let view = store
        .interaction_view("t", asked.id.0)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(view.model, row.model);
    assert_eq!(view.user, row.end_user);
    assert_eq!(view.prompt_tokens, row.prompt_tokens);
    assert_eq!(view.request.as_deref(), Some(row.request.as_str()));
    assert_eq!(view.response.as_deref(), row.response_text.as_deref());
}

async fn writes_are_idempotent(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let records: Vec<_> = (0..20)
        .map(|i| ask("t", "u", &format!("q{i}"), "a"))
        .collect();
    let rows: Vec<LogRow> = records.iter().flat_map(rows_for_interaction).collect();
    store.write_rows(&rows).await.unwrap();
    store.write_rows(&rows).await.unwrap();
    store.write_rows(&rows[..5]).await.unwrap();
    assert_eq!(store.count_interactions(None).await.unwrap(), 20);
    assert_eq!(store.count_interactions(Some("t")).await.unwrap(), 20);
    assert_eq!(store.count_interactions(Some("other")).await.unwrap(), 0);
    assert_eq!(
        store
            .interaction_tenant(records[3].id.0)
            .await
            .unwrap()
            .as_deref(),
        Some("t")
    );
    assert_eq!(
        store
            .interaction_tenant(uuid::Uuid::now_v7())
            .await
            .unwrap(),
        None
    );
}

async fn feedback_upserts_merge(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let r = ask("t", "u", "q", "a");
    store.write_rows(&rows_for_interaction(&r)).await.unwrap();
    store
        .write_rows(&[feedback("t", r.id, "u", Some(Rating::Up), None, None)])
        .await
        .unwrap();
    // Second post by the same user: changes the rating, adds a comment.
    store
        .write_rows(&[feedback(
            "t",
            r.id,
            "u",
            Some(Rating::Down),
            Some("wrong year"),
            None,
        )])
        .await
        .unwrap();
    // A third with only an expected output keeps the rating and comment.
    store
        .write_rows(&[feedback("t", r.id, "u", None, None, Some("1969"))])
        .await
        .unwrap();
    // Another user is a separate row.
    store
        .write_rows(&[feedback("t", r.id, "v", Some(Rating::Up), None, None)])
        .await
        .unwrap();
    let rows = store.feedback_for("t", r.id.0).await.unwrap();
    assert_eq!(rows.len(), 2);
    let mine = rows.iter().find(|f| f.end_user == "u").unwrap();
    assert_eq!(mine.rating, Some(-1));
    assert_eq!(mine.comment.as_deref(), Some("wrong year"));
    assert_eq!(mine.expected_output.as_deref(), Some("1969"));
    assert_eq!(mine.kind, "explicit");
    assert!(
        store
            .feedback_for("other", r.id.0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn follow_ups_become_implicit_feedback(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let first = ask("t", "u", "capital of France?", "Paris.");
    let follow = record(
        "t",
        "u",
        r#"[{"role":"user","content":"capital of France?"},{"role":"assistant","content":"Paris."},{"role":"user","content":"Give the reason too."}]"#,
        "Because...",
        SystemTime::now(),
    );
    // Same conversation in another tenant: must not attach to t's log.
    let other = record(
        "t2",
        "u",
        r#"[{"role":"user","content":"capital of France?"},{"role":"assistant","content":"Paris."},{"role":"user","content":"leak?"}]"#,
        "x",
        SystemTime::now(),
    );
    // Parent and follow-up in one batch, as happens under load.
    let mut rows = rows_for_interaction(&first);
    rows.extend(rows_for_interaction(&follow));
    rows.extend(rows_for_interaction(&other));
    store.write_rows(&rows).await.unwrap();
    store.write_rows(&rows).await.unwrap(); // replay: no duplicate

    let implicit = store.feedback_for("t", first.id.0).await.unwrap();
    assert_eq!(implicit.len(), 1, "{implicit:?}");
    assert_eq!(implicit[0].kind, "implicit");
    assert_eq!(implicit[0].comment.as_deref(), Some("Give the reason too."));
    assert_eq!(implicit[0].source_interaction_id, Some(follow.id.0));
    assert!(
        store
            .feedback_for("t2", first.id.0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn retention_removes_old_data(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let day = Duration::from_secs(86_400);
    let old = record(
        "t",
        "u",
        r#"[{"role":"user","content":"old"}]"#,
        "a",
        SystemTime::now() - day * 40,
    );
    let recent = record(
        "t",
        "u",
        r#"[{"role":"user","content":"new"}]"#,
        "a",
        SystemTime::now() - day,
    );
    let mut rows = rows_for_interaction(&old);
    rows.extend(rows_for_interaction(&recent));
    let mut old_feedback = feedback("t", old.id, "u", Some(Rating::Up), None, None);
    if let LogRow::Feedback(f) = &mut old_feedback {
        f.created_at = Utc::now() - chrono::Duration::days(40);
    }
    rows.push(old_feedback);
    rows.push(feedback("t", recent.id, "u", Some(Rating::Up), None, None));
    store.write_rows(&rows).await.unwrap();

    let policy = RetentionPolicy {
        metadata_days: 30,
        content_days: 30,
    };
    let report = store.apply_retention(policy, Utc::now()).await.unwrap();
    assert_eq!(report.interactions, 1);
    assert_eq!(report.contents, 1);
    assert_eq!(report.feedback, 1);
    assert_eq!(store.count_interactions(None).await.unwrap(), 1);
    assert!(store.interaction_tenant(old.id.0).await.unwrap().is_none());
    assert!(
        store
            .interaction_tenant(recent.id.0)
            .await
            .unwrap()
            .is_some()
    );
    if let Store::Postgres(_) = store {
        // The whole day's partition went, which is what frees disk on
        // Postgres.
        assert_eq!(report.partitions_dropped, 1);
        let partitions = partition_names(&_db.url).await;
        assert!(
            partitions.iter().all(|p| !p.ends_with(&old_day(40))),
            "{partitions:?}"
        );
    }
    let audit = store.audit_entries(None).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "retention"));
    // Running again removes nothing more.
    let again = store.apply_retention(policy, Utc::now()).await.unwrap();
    assert_eq!(again.interactions, 0);
}

fn old_day(days: i64) -> String {
    (Utc::now() - chrono::Duration::days(days))
        .format("%Y%m%d")
        .to_string()
}

async fn partition_names(url: &str) -> Vec<String> {
    use sqlx::{Connection, Row};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

/// Stored interactions that still have their content.
async fn stored_contents(db: &TestDatabase) -> i64 {
    match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT count(request) FROM interactions")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query_scalar("SELECT count(*) FROM interaction_contents")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    }
}

/// The file Postgres keeps a day's partition in (a rewrite gives it a new
/// one; the old file, and the disk it held, is freed).
async fn partition_file(url: &str, days_ago: i64) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let node: sqlx::postgres::types::Oid =
        sqlx::query_scalar("SELECT relfilenode FROM pg_class WHERE relname = $1")
            .bind(format!("interactions_p{}", old_day(days_ago)))
            .fetch_one(&pool)
            .await
            .unwrap();
    i64::from(node.0)
}

async fn content_retention_keeps_metadata(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let day = Duration::from_secs(86_400);
    let r = record(
        "t",
        "u",
        r#"[{"role":"user","content":"q"}]"#,
        "a",
        SystemTime::now() - day * 10,
    );
    store.write_rows(&rows_for_interaction(&r)).await.unwrap();
    store
        .write_rows(&[feedback("t", r.id, "u", Some(Rating::Up), None, None)])
        .await
        .unwrap();
    let policy = RetentionPolicy {
        metadata_days: 90,
        content_days: 7,
    };
    let postgres = matches!(store, Store::Postgres(_));
    let file_before = if postgres {
        partition_file(&_db.url, 10).await
    } else {
        0
    };
    let report = store.apply_retention(policy, Utc::now()).await.unwrap();
    if postgres {
        // Emptied and rewritten, so the day's content no longer takes disk.
        let file_after = partition_file(&_db.url, 10).await;
        assert_ne!(file_after, file_before, "the partition was rewritten");
        let again = store.apply_retention(policy, Utc::now()).await.unwrap();
        assert_eq!(again.contents, 0);
        assert_eq!(
            partition_file(&_db.url, 10).await,
            file_after,
            "a partition already emptied is left alone"
        );
    }
    assert_eq!(report.contents, 1);
    assert_eq!(report.interactions, 0);
    assert_eq!(
        store.count_interactions(None).await.unwrap(),
        1,
        "metadata kept"
    );
    assert_eq!(stored_contents(&_db).await, 0, "content gone");
    // Without content, nothing is exportable any more.
    assert!(store.rated_interactions("t").await.unwrap().is_empty());
}

/// Rows in the end-user index, as the database's statistics count them
/// after `ANALYZE` (exact for tables this small; on Postgres, the sum over
/// the partitions' copies of the index).
async fn end_user_index_entries(db: &TestDatabase) -> f64 {
    match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query("ANALYZE interactions")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query_scalar(
                "SELECT SUM(reltuples)::float8 FROM pg_class \
                 WHERE relkind = 'i' AND relname LIKE 'interactions\\_%\\_tenant\\_id\\_end\\_user\\_idx'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query("ANALYZE").execute(&pool).await.unwrap();
            let stat: String = sqlx::query_scalar(
                "SELECT stat FROM sqlite_stat1 WHERE idx = 'interactions_tenant_user'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            stat.split(' ').next().unwrap().parse().unwrap()
        }
    }
}

/// The plan the database picks for deleting one end user's interactions,
/// as text, with sequential scans ruled out so that any index that can
/// serve it is used.
async fn deletion_plan(db: &TestDatabase) -> String {
    let statement = "DELETE FROM interactions WHERE tenant_id = $1 AND end_user = $2";
    let lines: Vec<String> = match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let mut conn = pool.acquire().await.unwrap();
            // The store binds its values: plan the statement as a prepared
            // one is planned once reused.
            for step in [
                "SET enable_seqscan = off",
                "SET plan_cache_mode = force_generic_plan",
                &format!("PREPARE probe AS {statement}"),
            ] {
                sqlx::query(step).execute(&mut *conn).await.unwrap();
            }
            sqlx::query_scalar("EXPLAIN EXECUTE probe('t', 'alice')")
                .fetch_all(&mut *conn)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            // Columns: id, parent, notused, detail.
            let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!(
                "EXPLAIN QUERY PLAN {}",
                statement.replace('$', "?")
            ))
            .bind("t")
            .bind("alice")
            .fetch_all(&pool)
            .await
            .unwrap();
            rows.into_iter().map(|(_, _, _, detail)| detail).collect()
        }
    };
    lines.join("\n")
}

/// Most apps send no end user, so the end-user index holds only rows that
/// name one (an insert fewer per logged interaction), and deleting one
/// user's data still finds their rows through it.
async fn the_end_user_index_serves_lookups_by_user_and_holds_no_anonymous_rows(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let mut anonymous = ask("t", "x", "q0", "a0");
    anonymous.end_user = None;
    let mut rows = rows_for_interaction(&ask("t", "alice", "q1", "a1"));
    rows.extend(rows_for_interaction(&anonymous));
    store.write_rows(&rows).await.unwrap();
    assert_eq!(store.count_interactions(None).await.unwrap(), 2);
    assert_eq!(end_user_index_entries(&db).await, 1.0, "only alice's row");

    let plan = deletion_plan(&db).await;
    assert!(
        plan.contains("_tenant_id_end_user_idx") || plan.contains("INDEX interactions_tenant_user"),
        "{plan}"
    );
    let report = store.delete_user("t", "alice", "test").await.unwrap();
    assert_eq!(report.interactions, 1);
    assert_eq!(store.count_interactions(None).await.unwrap(), 1);
}

async fn deleting_a_user_removes_their_data_and_is_audited(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let alice = ask("t", "alice", "q1", "a1");
    let bob = ask("t", "bob", "q2", "a2");
    let mut rows = rows_for_interaction(&alice);
    rows.extend(rows_for_interaction(&bob));
    rows.push(feedback(
        "t",
        alice.id,
        "alice",
        Some(Rating::Up),
        None,
        None,
    ));
    rows.push(feedback("t", bob.id, "bob", Some(Rating::Down), None, None));
    // Alice rating Bob's answer: her feedback goes with her.
    rows.push(feedback("t", bob.id, "alice", Some(Rating::Up), None, None));
    store.write_rows(&rows).await.unwrap();

    let report = store.delete_user("t", "alice", "test").await.unwrap();
    assert_eq!(report.interactions, 1);
    assert_eq!(report.contents, 1);
    assert_eq!(report.feedback, 2);
    assert!(
        store
            .interaction_tenant(alice.id.0)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.feedback_for("t", bob.id.0).await.unwrap().len(), 1);
    let audit = store.audit_entries(Some("t")).await.unwrap();
    let entry = audit.iter().find(|e| e.action == "delete_user").unwrap();
    assert_eq!(entry.subject.as_deref(), Some("alice"));
    assert_eq!(entry.details["interactions"], 1);
    assert_eq!(entry.actor, "test");
}

async fn deleting_a_tenant_removes_everything_of_it(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let key = store.create_key("gone", None).await.unwrap();
    store.create_key("kept", None).await.unwrap();
    let a = ask("gone", "u", "q", "a");
    let b = ask("kept", "u", "q", "a");
    let mut rows = rows_for_interaction(&a);
    rows.extend(rows_for_interaction(&b));
    rows.push(feedback("gone", a.id, "u", Some(Rating::Up), None, None));
    store.write_rows(&rows).await.unwrap();
    let report = store.delete_tenant("gone", "test").await.unwrap();
    assert_eq!(report.interactions, 1);
    assert_eq!(report.contents, 1);
    assert_eq!(report.feedback, 1);
    assert_eq!(report.api_keys, 1);
    assert_eq!(store.count_interactions(Some("gone")).await.unwrap(), 0);
    assert_eq!(store.count_interactions(Some("kept")).await.unwrap(), 1);
    let active = store.active_keys().await.unwrap();
    assert_eq!(active.len(), 1);
    assert!(active.iter().all(|(hash, _)| *hash != key.hash));
    assert!(
        store
            .audit_entries(Some("gone"))
            .await
            .unwrap()
            .iter()
            .any(|e| e.action == "delete_tenant")
    );
}

async fn keys_are_hashed_listed_and_revoked(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let k1 = store.create_key("acme", Some("prod")).await.unwrap();
    let k2 = store.create_key("acme", None).await.unwrap();
    let listed = store.list_keys(Some("acme")).await.unwrap();
    assert_eq!(listed.len(), 2);
    // Listed by prefix only: each prefix starts its secret and is much
    // shorter than it, so a listing never reveals a usable key.
    for key in [&k1, &k2] {
        let shown = listed.iter().find(|k| k.id == key.info.id).unwrap();
        assert!(key.secret.starts_with(&shown.prefix));
        assert!(shown.prefix.len() * 2 < key.secret.len());
        assert_eq!(shown.name, key.info.name);
    }
    let active = store.active_keys().await.unwrap();
    assert_eq!(active.len(), 2);
    assert!(
        active
            .iter()
            .any(|(h, t)| *h == uno_store::keys::hash_key(&k1.secret) && t == "acme")
    );
    assert_eq!(store.revoke_key(&k1.info.id.to_string()).await.unwrap(), 1);
    assert_eq!(store.revoke_key(&k2.info.prefix).await.unwrap(), 1);
    assert_eq!(store.revoke_key("nonexistent").await.unwrap(), 0);
    assert!(store.active_keys().await.unwrap().is_empty());
    assert!(
        store
            .list_keys(None)
            .await
            .unwrap()
            .iter()
            .all(|k| k.revoked_at.is_some())
    );
}

async fn export_reads_rated_interactions(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let good = ask("t", "u", "q", "great answer");
    let bad = ask("t", "v", "q", "poor answer");
    let unrated = ask("t", "w", "q", "never rated");
    let mut rows: Vec<LogRow> = [&good, &bad, &unrated]
        .into_iter()
        .flat_map(rows_for_interaction)
        .collect();
    rows.push(feedback("t", good.id, "u", Some(Rating::Up), None, None));
    rows.push(feedback(
        "t",
        bad.id,
        "v",
        Some(Rating::Down),
        None,
        Some("the answer I wanted"),
    ));
    store.write_rows(&rows).await.unwrap();
    let rated = store.rated_interactions("t").await.unwrap();
    assert_eq!(rated.len(), 2);
    let sft = build(&rated, ExportKind::Sft, ExportFormat::OpenAi);
    assert_eq!(sft.len(), 1);
    assert!(sft[0].contains("great answer"));
    let dpo = build(&rated, ExportKind::Dpo, ExportFormat::Trl);
    assert_eq!(dpo.len(), 2, "{dpo:?}");
    assert!(store.rated_interactions("other").await.unwrap().is_empty());
}

/// Postgres takes fresh interactions by binary COPY: every column must come
/// back exactly as the row had it (texts, NULLs, times to the microsecond,
/// floats, the hash), and a batch mixing new and stored ids must still
/// store each once (the writer falls back to ON CONFLICT DO NOTHING).
#[tokio::test]
async fn postgres_copy_stores_every_column_as_given() {
    use sqlx::Row;
    let (db, store) = fresh(Backend::Postgres).await;
    let mut record = uno_testkit::records::served(
        ask("t", "u", "how long to boil an egg?", "nine minutes"),
        7,
        "c1",
        uno_core::interaction::ServePath::Reflective,
    );
    record.experience.draft = Some("a draft".into());
    record.experience.critique = Some("1. be exact".into());
    record.stream = true;
    record.time_to_first_byte = None;
    record.end_user = None;
    let rows = rows_for_interaction(&record);
    let LogRow::Interaction(expected) = &rows[0] else {
        panic!("not an interaction")
    };
    store.write_rows(&rows).await.unwrap();

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let got = sqlx::query(
        "SELECT i.id, i.tenant_id, i.created_at, i.model, i.end_user, i.streamed, i.status, \
         i.outcome, i.finish_reason, i.prompt_tokens, i.completion_tokens, i.total_tokens, \
         i.upstream_ms, i.total_ms, i.ttfb_ms, i.error, i.snapshot_version, i.cluster_id, \
         i.path, i.conversation_hash, i.request, i.response_text, i.draft, i.critique \
         FROM interactions i",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(got.get::<uuid::Uuid, _>(0), expected.id);
    assert_eq!(got.get::<String, _>(1), expected.tenant);
    assert_eq!(
        got.get::<chrono::DateTime<Utc>, _>(2).timestamp_micros(),
        expected.created_at.timestamp_micros()
    );
    assert_eq!(got.get::<String, _>(3), expected.model);
    assert_eq!(got.get::<Option<String>, _>(4), None);
    assert!(got.get::<bool, _>(5));
    assert_eq!(got.get::<i16, _>(6), expected.status);
    assert_eq!(got.get::<String, _>(7), expected.outcome);
    assert_eq!(got.get::<Option<String>, _>(8), expected.finish_reason);
    assert_eq!(got.get::<Option<i64>, _>(9), expected.prompt_tokens);
    assert_eq!(got.get::<Option<i64>, _>(10), expected.completion_tokens);
    assert_eq!(got.get::<Option<i64>, _>(11), expected.total_tokens);
    assert_eq!(got.get::<Option<f64>, _>(12), expected.upstream_ms);
    assert_eq!(got.get::<f64, _>(13), expected.total_ms);
    assert_eq!(got.get::<Option<f64>, _>(14), None);
    assert_eq!(got.get::<Option<String>, _>(15), expected.error);
    assert_eq!(got.get::<Option<i64>, _>(16), Some(7));
    assert_eq!(got.get::<Option<String>, _>(17).as_deref(), Some("c1"));
    assert_eq!(
        got.get::<Option<String>, _>(18).as_deref(),
        Some("reflective")
    );
    assert_eq!(
        got.get::<Option<Vec<u8>>, _>(19),
        expected.conversation_hash
    );
    assert_eq!(got.get::<String, _>(20), &*expected.request);
    assert_eq!(
        got.get::<Option<String>, _>(21).as_deref(),
        Some("nine minutes")
    );
    assert_eq!(got.get::<Option<String>, _>(22).as_deref(), Some("a draft"));
    assert_eq!(
        got.get::<Option<String>, _>(23).as_deref(),
        Some("1. be exact")
    );

    // A batch of one stored and two new interactions: each stored once.
    let more: Vec<LogRow> = [ask("t", "u", "q2", "a2"), ask("t", "u", "q3", "a3")]
        .iter()
        .flat_map(rows_for_interaction)
        .chain(rows.iter().cloned())
        .collect();
    store.write_rows(&more).await.unwrap();
    assert_eq!(store.count_interactions(None).await.unwrap(), 3);
    let contents: i64 = sqlx::query_scalar("SELECT count(request) FROM interactions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(contents, 3);
    pool.close().await;
}

/// Applies the Postgres migrations older than `version`: a database as
/// an earlier uno left it, for a test of what migration `version` does to
/// data already there.
async fn migrate_before(pool: &sqlx::PgPool, version: i64) {
    let mut before = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/postgres"
    )))
    .await
    .unwrap();
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(pool).await.unwrap();
}

/// A database logged to before content moved into the interactions row
/// (migration 0006) keeps every content: the migration copies it over.
#[tokio::test]
async fn postgres_content_logged_before_migration_6_survives_it() {
    use sqlx::Row;
    let db = TestDatabase::new(Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    migrate_before(&pool, 6).await;
    let day = Utc::now().date_naive();
    for sql in [
        format!(
            "CREATE TABLE interactions_p1 PARTITION OF interactions FOR VALUES FROM ('{day}') TO ('{}')",
            day.succ_opt().unwrap()
        ),
        format!(
            "CREATE TABLE interaction_contents_p1 PARTITION OF interaction_contents \
             FOR VALUES FROM ('{day}') TO ('{}')",
            day.succ_opt().unwrap()
        ),
        "INSERT INTO interactions (id, tenant_id, created_at, model, streamed, status, outcome, total_ms) \
         VALUES ('00000000-0000-7000-8000-000000000001', 't', now(), 'm', false, 200, 'completed', 1), \
                ('00000000-0000-7000-8000-000000000002', 't', now(), 'm', false, 200, 'completed', 1)"
            .to_owned(),
        // The second interaction's content was already removed by retention.
        "INSERT INTO interaction_contents (interaction_id, tenant_id, created_at, request, response_text, draft) \
         SELECT id, tenant_id, created_at, '{\"q\":1}', 'the answer', 'a draft' FROM interactions \
         WHERE id = '00000000-0000-7000-8000-000000000001'"
            .to_owned(),
    ] {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }

    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let rows =
        sqlx::query("SELECT request, response_text, draft, critique FROM interactions ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].get::<Option<String>, _>(0).as_deref(),
        Some("{\"q\":1}")
    );
    assert_eq!(
        rows[0].get::<Option<String>, _>(1).as_deref(),
        Some("the answer")
    );
    assert_eq!(
        rows[0].get::<Option<String>, _>(2).as_deref(),
        Some("a draft")
    );
    assert_eq!(rows[0].get::<Option<String>, _>(3), None);
    assert_eq!(
        rows[1].get::<Option<String>, _>(0),
        None,
        "no content to copy"
    );
    let contents_table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('interaction_contents')::text")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(contents_table, None, "the separate table is gone");
    store.close().await;
    pool.close().await;
}

/// Content is compressed with lz4 (migration 0007) where the server has
/// it: in partitions made before the migration and after it, and a large
/// request comes back as it was written. pglz took the writer's backend
/// several times longer per row of pasted context (log_rows bench).
#[tokio::test]
async fn postgres_content_is_lz4_compressed_in_old_and_new_partitions() {
    use sqlx::Row;
    let db = TestDatabase::new(Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    migrate_before(&pool, 7).await;
    let today = Utc::now().date_naive();
    let yesterday = today.pred_opt().unwrap();
    sqlx::query(&format!(
        "CREATE TABLE interactions_old PARTITION OF interactions FOR VALUES FROM ('{yesterday}') TO ('{today}')"
    ))
    .execute(&pool)
    .await
    .unwrap();

    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let mut large = ask("t", "u", "", "a short answer");
    large.request_body = uno_testkit::payload::chat_body_with_context(false, 20_000);
    store
        .write_rows(&rows_for_interaction(&large))
        .await
        .unwrap();

    let has_lz4: bool = sqlx::query_scalar(
        "SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'",
    )
    .fetch_optional(&pool)
    .await
    .unwrap()
    .unwrap_or(false);
    let expected = if has_lz4 { "l" } else { "" };
    // Every content column of the parent, the old partition and the one
    // the writer made for today.
    let columns = sqlx::query(
        "SELECT c.relname, a.attname, a.attcompression::text FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid \
         WHERE c.relname LIKE 'interactions%' AND c.relkind IN ('p', 'r') \
         AND a.attname IN ('request', 'response_text', 'draft', 'critique')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let tables: std::collections::BTreeSet<String> =
        columns.iter().map(|r| r.get::<String, _>(0)).collect();
    assert_eq!(
        tables.len(),
        3,
        "parent, old and today's partition: {tables:?}"
    );
    assert_eq!(columns.len(), 12);
    for column in &columns {
        assert_eq!(
            column.get::<String, _>(2),
            expected,
            "{}.{}",
            column.get::<String, _>(0),
            column.get::<String, _>(1)
        );
    }
    let stored = sqlx::query("SELECT request, pg_column_compression(request) FROM interactions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        stored.get::<String, _>(0).as_bytes(),
        &large.request_body[..],
        "the request comes back as written"
    );
    assert_eq!(
        stored.get::<Option<String>, _>(1).as_deref(),
        Some(if has_lz4 { "lz4" } else { "pglz" })
    );
    store.close().await;
    pool.close().await;
}

/// Rows logged before ids were owned may name two tenants for one id; the
/// owner is the tenant that used it first, whichever row was written first.
async fn the_owner_of_an_id_is_the_first_tenant_that_used_it(backend: Backend) {
    let (_db, store) = fresh(backend).await;
    let now = SystemTime::now();
    let later = ask("b", "u", "q", "a");
    let mut first = record(
        "a",
        "u",
        r#"[{"role":"user","content":"q"}]"#,
        "a",
        now - Duration::from_secs(1),
    );
    first.id = later.id;
    store
        .write_rows(&rows_for_interaction(&later))
        .await
        .unwrap();
    store
        .write_rows(&rows_for_interaction(&first))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            store
                .interaction_tenant(first.id.0)
                .await
                .unwrap()
                .as_deref(),
            Some("a")
        );
    }
}

/// The rows of `records` as the log sink queues them on `backend`
/// (encoded for COPY on Postgres).
fn queued(backend: Backend, records: &[InteractionRecord]) -> Vec<LogRow> {
    let mut rows = Vec::new();
    for record in records {
        match backend {
            Backend::Postgres => EncodedRows::build(record.clone()).push_into(&mut rows),
            Backend::Sqlite => InteractionRows::build(record.clone()).push_into(&mut rows),
        }
    }
    rows
}

/// A client retrying with its own interaction id gets one row per id, the
/// latest attempt's: an attempt and its retry in one batch, a retry of a
/// stored row, a batch replayed after a later retry was stored, a retry
/// replayed from the journal, a mark cut from its row by a batch boundary,
/// and retries finishing out of order. Another tenant's row under the same
/// id (logged before ids were owned) is never touched.
async fn a_retry_leaves_one_row_in_a_batch_in_the_store_and_through_the_journal(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let x = InteractionId::new();
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let attempt = |tenant: &str, answer: &str, secs: u64, retry: bool| {
        let mut record = record(
            tenant,
            "u",
            r#"[{"role":"user","content":"the question"}]"#,
            answer,
            t0 + Duration::from_secs(secs),
        );
        record.id = x;
        record.replaces_earlier = retry;
        record
    };
    let answers = async || {
        db.attempts(x.0)
            .await
            .into_iter()
            .map(|a| (a.tenant, a.response_text.unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    let expect = |theirs: bool, answer: &str| {
        let mut rows = Vec::new();
        if theirs {
            rows.push(("o".to_owned(), "theirs".to_owned()));
        }
        rows.push(("t".to_owned(), answer.to_owned()));
        rows
    };

    // Another tenant's row first (as logged before ids were owned).
    let theirs = attempt("o", "theirs", 0, false);
    store.write_rows(&queued(backend, &[theirs])).await.unwrap();

    let first_batch = queued(
        backend,
        &[
            attempt("t", "first", 1, false),
            attempt("t", "second", 2, true),
        ],
    );
    store.write_rows(&first_batch).await.unwrap();
    assert_eq!(answers().await, expect(true, "second"), "within a batch");

    store
        .write_rows(&queued(backend, &[attempt("t", "third", 3, true)]))
        .await
        .unwrap();
    assert_eq!(
        answers().await,
        expect(true, "third"),
        "a stored row replaced"
    );

    store.write_rows(&first_batch).await.unwrap();
    assert_eq!(
        answers().await,
        expect(true, "third"),
        "an older batch replayed replaces nothing newer"
    );

    let journal_dir = tempfile::tempdir().unwrap();
    let mut journal = uno_store::writer::Journal::open(journal_dir.path(), u64::MAX).unwrap();
    journal
        .append(&queued(backend, &[attempt("t", "fourth", 4, true)]))
        .unwrap();
    // Read back as replay reads it: the oldest segment, in a chunk.
    let segment = journal.oldest_segment().unwrap().expect("a segment");
    let line = std::fs::read_to_string(&segment).unwrap();
    assert!(line.contains(r#""type":"supersede""#), "{line}");
    let replayed = journal
        .read_chunk(&segment, 0, usize::MAX, u64::MAX)
        .unwrap();
    assert!(replayed.at_end);
    store.write_rows(&replayed.rows).await.unwrap();
    store.write_rows(&replayed.rows).await.unwrap();
    assert_eq!(
        answers().await,
        expect(true, "fourth"),
        "replayed from the journal, twice"
    );

    let cut = queued(backend, &[attempt("t", "fifth", 5, true)]);
    assert!(
        matches!(cut[0], LogRow::Supersede(_)),
        "the mark comes first"
    );
    store.write_rows(&cut[..1]).await.unwrap();
    store.write_rows(&cut[1..]).await.unwrap();
    assert_eq!(
        answers().await,
        expect(true, "fifth"),
        "the mark and its row in two batches"
    );

    store
        .write_rows(&queued(backend, &[attempt("t", "seventh", 7, true)]))
        .await
        .unwrap();
    store
        .write_rows(&queued(backend, &[attempt("t", "sixth", 6, true)]))
        .await
        .unwrap();
    assert_eq!(
        answers().await,
        expect(true, "seventh"),
        "a slower earlier retry finishing last replaces nothing"
    );

    assert_eq!(store.count_interactions(Some("t")).await.unwrap(), 1);
    assert_eq!(store.count_interactions(Some("o")).await.unwrap(), 1);
    assert_eq!(db.contents_of(x.0).await, 2, "no content left behind");
    assert_eq!(
        store.interaction_tenant(x.0).await.unwrap().as_deref(),
        Some("o"),
        "the first owner"
    );
}
