//! `uno export sft|dpo` against real databases: the file written, line by
//! line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use uno_testkit::both_backends;

use std::path::Path;

use cli_common::{ask, feedback, fresh, scratch, uno};
use serde_json::{Value, json};
use uno_core::feedback::Rating;
use uno_store::Store;
use uno_store::rows::{LogRow, rows_for_interaction};
use uno_testkit::Backend;

both_backends! {
    sft_exports_up_rated_answers_only,
    dpo_exports_pairs_in_both_formats,
    an_empty_export_still_writes_the_file,
    a_failed_export_leaves_no_file,
}

/// Tenant `t`: one up-rated answer, one down-rated with a correction, one
/// unrated, all to the same question. Tenant `other`: its own rated data,
/// which must never appear in `t`'s export.
async fn seed(store: &Store) {
    let good = ask("t", "u", "q", "great answer");
    let bad = ask("t", "v", "q", "poor answer");
    let unrated = ask("t", "w", "q", "never rated");
    let other_good = ask("other", "u", "q", "other tenant up");
    let other_bad = ask("other", "v", "q", "other tenant down");
    let mut rows: Vec<LogRow> = [&good, &bad, &unrated, &other_good, &other_bad]
        .into_iter()
        .flat_map(rows_for_interaction)
        .collect();
    rows.push(feedback("t", good.id, "u", Some(Rating::Up), None));
    rows.push(feedback(
        "t",
        bad.id,
        "v",
        Some(Rating::Down),
        Some("the answer I wanted"),
    ));
    rows.push(feedback(
        "other",
        other_good.id,
        "u",
        Some(Rating::Up),
        None,
    ));
    rows.push(feedback(
        "other",
        other_bad.id,
        "v",
        Some(Rating::Down),
        Some("other tenant correction"),
    ));
    store.write_rows(&rows).await.unwrap();
}

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(!text.contains("other tenant"), "tenant leak: {text}");
    assert!(
        !text.contains("never rated"),
        "unrated answer exported: {text}"
    );
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn tmp_of(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

async fn sft_exports_up_rated_answers_only(backend: Backend) {
    let (db, store) = fresh(backend).await;
    seed(&store).await;
    let out = scratch(&db).join("sft.jsonl");
    // An older export is replaced, not appended to.
    std::fs::write(&out, "stale\n").unwrap();
    let run = uno(
        &db,
        &[
            "export",
            "sft",
            "--tenant",
            "t",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await
    .ok();
    assert!(run.stdout.contains("wrote 1 examples to"), "{run:?}");
    let lines = read_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        lines[0],
        json!({"messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "great answer"},
        ]})
    );
    assert!(!tmp_of(&out).exists());

    // TRL reads the same conversational form.
    let trl = scratch(&db).join("sft-trl.jsonl");
    uno(
        &db,
        &[
            "export",
            "sft",
            "--tenant",
            "t",
            "--out",
            trl.to_str().unwrap(),
            "--format",
            "trl",
        ],
    )
    .await
    .ok();
    assert_eq!(read_lines(&trl), lines);
}

async fn dpo_exports_pairs_in_both_formats(backend: Backend) {
    let (db, store) = fresh(backend).await;
    seed(&store).await;

    let trl = scratch(&db).join("dpo-trl.jsonl");
    let run = uno(
        &db,
        &[
            "export",
            "dpo",
            "--tenant",
            "t",
            "--out",
            trl.to_str().unwrap(),
            "--format",
            "trl",
        ],
    )
    .await
    .ok();
    assert!(run.stdout.contains("wrote 2 examples"), "{run:?}");
    let lines = read_lines(&trl);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let prompt = json!([{"role": "user", "content": "q"}]);
    let pairs: Vec<(&Value, &Value)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["prompt"], prompt, "{l}");
            assert!(l.get("input").is_none(), "{l}");
            assert_eq!(l["chosen"][0]["role"], "assistant");
            assert_eq!(l["rejected"][0]["role"], "assistant");
            (&l["chosen"][0]["content"], &l["rejected"][0]["content"])
        })
        .collect();
    assert!(pairs.contains(&(&json!("the answer I wanted"), &json!("poor answer"))));
    assert!(pairs.contains(&(&json!("great answer"), &json!("poor answer"))));
    assert!(!tmp_of(&trl).exists());

    // The default format is OpenAI's.
    let openai = scratch(&db).join("dpo-openai.jsonl");
    uno(
        &db,
        &[
            "export",
            "dpo",
            "--tenant",
            "t",
            "--out",
            openai.to_str().unwrap(),
        ],
    )
    .await
    .ok();
    let lines = read_lines(&openai);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let pairs: Vec<(&Value, &Value)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["input"]["messages"], prompt, "{l}");
            assert!(l.get("chosen").is_none(), "{l}");
            (
                &l["preferred_output"][0]["content"],
                &l["non_preferred_output"][0]["content"],
            )
        })
        .collect();
    assert!(pairs.contains(&(&json!("the answer I wanted"), &json!("poor answer"))));
    assert!(pairs.contains(&(&json!("great answer"), &json!("poor answer"))));
    assert!(!tmp_of(&openai).exists());
}

async fn an_empty_export_still_writes_the_file(backend: Backend) {
    let (db, store) = fresh(backend).await;
    seed(&store).await;
    let out = scratch(&db).join("empty.jsonl");
    let run = uno(
        &db,
        &[
            "export",
            "sft",
            "--tenant",
            "nobody",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await
    .ok();
    assert!(run.stdout.contains("wrote 0 examples"), "{run:?}");
    assert!(run.stderr.contains("hint:"), "{run:?}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
    assert!(!tmp_of(&out).exists());

    // Only a down-rated answer: nothing for SFT, with a hint saying so.
    let down = ask("down-only", "u", "q", "a");
    let mut rows = rows_for_interaction(&down);
    rows.push(feedback(
        "down-only",
        down.id,
        "u",
        Some(Rating::Down),
        None,
    ));
    store.write_rows(&rows).await.unwrap();
    let run = uno(
        &db,
        &[
            "export",
            "sft",
            "--tenant",
            "down-only",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await
    .ok();
    assert!(run.stderr.contains("rated up"), "{run:?}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "");
}

async fn a_failed_export_leaves_no_file(backend: Backend) {
    let (db, store) = fresh(backend).await;
    seed(&store).await;
    let out = scratch(&db).join("missing-dir").join("sft.jsonl");
    let run = uno(
        &db,
        &[
            "export",
            "sft",
            "--tenant",
            "t",
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await
    .failed();
    assert!(run.stderr.contains("cannot create"), "{run:?}");
    assert!(!out.exists());
    assert!(!tmp_of(&out).exists());
}
