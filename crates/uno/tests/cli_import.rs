//! `uno import` against real databases: OpenAI chat and MemoryBench lines,
//! bad lines reported and skipped, re-imports adding nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use uno_testkit::both_backends;

use cli_common::{fresh, scratch, uno};
use serde_json::json;
use uno_store::import::imported_interaction_id;
use uno_testkit::{Backend, TestDatabase};

both_backends! {
    chat_and_memorybench_lines_are_imported_once,
    a_dry_run_writes_nothing,
    a_file_of_bad_lines_fails,
    tenants_import_separately,
}

/// The lines of the test file, in order; `None` is a blank line.
fn lines() -> Vec<Option<String>> {
    let chat = json!({
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "Say why it is the capital."},
            {"role": "assistant", "content": "It is the seat of government."},
        ],
        "rating": "down",
        "comment": "too terse",
        "expected_output": "Paris, the seat of government.",
        "user": "alice",
        "created_at": "2024-05-06T07:08:09Z",
    });
    let parts = json!({
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "2+2?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "4"}]},
        ],
        "rating": "up",
        "model": "gpt-4o-mini",
    });
    let dialog = json!([
        {"role": "system", "content": "You are a legal assistant."},
        {"role": "user", "content": "Is a verbal contract binding?"},
        {"role": "assistant", "content": "Usually."},
        {"role": "user", "content": "Cite the relevant article."},
        {"role": "assistant", "content": "Article 469."},
        {"role": "user", "content": "Mention the exceptions too."},
    ]);
    let bench_list =
        json!({"test_idx": 48, "dataset_name": "JRE-L", "lang": "en", "dialog": dialog});
    let short = json!([
        {"role": "user", "content": "Translate 'chat' to English."},
        {"role": "assistant", "content": "cat"},
    ]);
    let bench_string = json!({"test_idx": 7, "dataset_name": "WritingPrompts", "lang": "en", "dialog": short.to_string(), "implicit_feedback": "[]"});
    let no_answer = json!({"messages": [{"role": "user", "content": "hello?"}]});
    let python = json!({"dialog": "[{'role': 'user', 'content': 'q'}, {'role': 'assistant', 'content': 'a'}]"});
    vec![
        Some(chat.to_string()),         // 1
        Some(parts.to_string()),        // 2
        Some("{not json".to_owned()),   // 3: bad
        Some(bench_list.to_string()),   // 4
        None,                           // 5: blank
        Some(bench_string.to_string()), // 6
        Some(no_answer.to_string()),    // 7: bad
        Some(python.to_string()),       // 8: bad
        Some(chat.to_string()),         // 9: repeats line 1
    ]
}

fn write_file(db: &TestDatabase, name: &str, lines: &[Option<String>]) -> String {
    let path = scratch(db).join(name);
    let text: String = lines
        .iter()
        .map(|l| format!("{}\n", l.as_deref().unwrap_or("")))
        .collect();
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn id_of(tenant: &str, line: &Option<String>) -> uuid::Uuid {
    imported_interaction_id(tenant, line.as_deref().unwrap())
}

async fn chat_and_memorybench_lines_are_imported_once(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let lines = lines();
    let file = write_file(&db, "logs.jsonl", &lines);

    let run = uno(&db, &["import", &file, "--tenant", "team"]).await.ok();
    assert!(
        run.stdout.contains(&format!(
            "imported 4 interactions with 5 feedback rows from {file} \
             (3 bad lines skipped, 1 already imported)"
        )),
        "{run:?}"
    );
    for bad in [
        "line 3: invalid JSON",
        "line 7: no assistant answer",
        "line 8: ",
    ] {
        assert!(run.stderr.contains(bad), "{bad}: {run:?}");
    }
    assert!(run.stderr.contains("Python literal"), "{run:?}");
    assert!(
        run.stderr
            .contains("line 9: the same interaction as line 1"),
        "{run:?}"
    );
    assert!(
        !run.stderr.contains("line 5"),
        "blank lines are not bad: {run:?}"
    );
    assert_eq!(store.count_interactions(Some("team")).await.unwrap(), 4);
    assert_eq!(store.count_interactions(None).await.unwrap(), 4);

    // The chat line: its later user turn as implicit feedback, and the
    // rating, comment and correction as one explicit row.
    let chat = store
        .feedback_for("team", id_of("team", &lines[0]))
        .await
        .unwrap();
    assert_eq!(chat.len(), 2, "{chat:?}");
    assert_eq!(chat[0].kind, "implicit");
    assert_eq!(
        chat[0].comment.as_deref(),
        Some("Say why it is the capital.")
    );
    assert_eq!(chat[0].end_user, "alice");
    assert_eq!(chat[1].kind, "explicit");
    assert_eq!(chat[1].rating, Some(-1));
    assert_eq!(chat[1].comment.as_deref(), Some("too terse"));
    assert_eq!(
        chat[1].expected_output.as_deref(),
        Some("Paris, the seat of government.")
    );
    assert_eq!(
        chat[0].created_at.to_rfc3339(),
        "2024-05-06T07:08:09.001+00:00"
    );

    let parts = store
        .feedback_for("team", id_of("team", &lines[1]))
        .await
        .unwrap();
    assert_eq!(parts.len(), 1, "{parts:?}");
    assert_eq!(
        (parts[0].kind.as_str(), parts[0].rating),
        ("explicit", Some(1))
    );

    // MemoryBench: every user turn after the first answer, in order.
    let bench = store
        .feedback_for("team", id_of("team", &lines[3]))
        .await
        .unwrap();
    let turns: Vec<(&str, Option<&str>)> = bench
        .iter()
        .map(|f| (f.kind.as_str(), f.comment.as_deref()))
        .collect();
    assert_eq!(
        turns,
        vec![
            ("implicit", Some("Cite the relevant article.")),
            ("implicit", Some("Mention the exceptions too.")),
        ]
    );
    // A two-message dialog: the interaction, no feedback.
    let short_id = id_of("team", &lines[5]);
    assert_eq!(
        store.interaction_tenant(short_id).await.unwrap().as_deref(),
        Some("team")
    );
    assert!(
        store
            .feedback_for("team", short_id)
            .await
            .unwrap()
            .is_empty()
    );

    // Again: nothing new.
    let again = uno(&db, &["import", &file, "--tenant", "team"]).await.ok();
    assert!(
        again.stdout.contains(&format!(
            "imported 0 interactions with 0 feedback rows from {file} \
             (3 bad lines skipped, 5 already imported)"
        )),
        "{again:?}"
    );
    assert_eq!(store.count_interactions(None).await.unwrap(), 4);
    assert_eq!(
        store
            .feedback_for("team", id_of("team", &lines[0]))
            .await
            .unwrap()
            .len(),
        2
    );
    let audit = store.audit_entries(Some("team")).await.unwrap();
    assert_eq!(
        audit.len(),
        1,
        "only the import that wrote is audited: {audit:?}"
    );
    assert_eq!(audit[0].action, "import");
    assert_eq!(audit[0].details["interactions"], 4);
}

async fn a_dry_run_writes_nothing(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let file = write_file(&db, "logs.jsonl", &lines());
    let run = uno(&db, &["import", &file, "--dry-run"]).await.ok();
    assert!(
        run.stdout
            .contains("dry run: would import 4 interactions with 5 feedback rows"),
        "{run:?}"
    );
    assert_eq!(store.count_interactions(None).await.unwrap(), 0);

    // The default tenant.
    uno(&db, &["import", &file]).await.ok();
    assert_eq!(store.count_interactions(Some("default")).await.unwrap(), 4);
}

async fn a_file_of_bad_lines_fails(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let file = write_file(
        &db,
        "bad.jsonl",
        &[
            Some("nope".to_owned()),
            Some(json!({"messages": []}).to_string()),
        ],
    );
    let run = uno(&db, &["import", &file]).await.failed();
    assert!(run.stderr.contains("line 1: invalid JSON"), "{run:?}");
    assert!(run.stderr.contains("line 2: no user message"), "{run:?}");
    assert!(run.stderr.contains("none of the 2 lines"), "{run:?}");
    assert_eq!(store.count_interactions(None).await.unwrap(), 0);

    let missing = scratch(&db).join("missing.jsonl");
    let run = uno(&db, &["import", missing.to_str().unwrap()])
        .await
        .failed();
    assert!(run.stderr.contains("cannot read"), "{run:?}");
}

async fn tenants_import_separately(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let lines = lines();
    let file = write_file(&db, "logs.jsonl", &lines);
    uno(&db, &["import", &file, "--tenant", "a"]).await.ok();
    let run = uno(&db, &["import", &file, "--tenant", "b"]).await.ok();
    assert!(run.stdout.contains("imported 4 interactions"), "{run:?}");
    assert_eq!(store.count_interactions(Some("a")).await.unwrap(), 4);
    assert_eq!(store.count_interactions(Some("b")).await.unwrap(), 4);
    assert_ne!(id_of("a", &lines[0]), id_of("b", &lines[0]));
    assert_eq!(
        store
            .feedback_for("b", id_of("b", &lines[0]))
            .await
            .unwrap()
            .len(),
        2
    );

    // A line naming its own id: kept; the same id in another tenant is
    // refused rather than mixed in.
    let id = "0190b6f4-8c1e-7d3a-9f00-1a2b3c4d5e6f";
    let own = write_file(
        &db,
        "own-id.jsonl",
        &[Some(
            json!({"id": id, "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
            ]})
            .to_string(),
        )],
    );
    uno(&db, &["import", &own, "--tenant", "a"]).await.ok();
    let id: uuid::Uuid = id.parse().unwrap();
    assert_eq!(
        store.interaction_tenant(id).await.unwrap().as_deref(),
        Some("a")
    );
    let clash = uno(&db, &["import", &own, "--tenant", "b"]).await.failed();
    assert!(clash.stderr.contains("another tenant"), "{clash:?}");
    assert_eq!(store.count_interactions(Some("b")).await.unwrap(), 4);
}
