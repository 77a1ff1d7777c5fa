//! From feedback to served experience, with the real binaries: history with
//! feedback on two topics goes in through `uno import`, `uno worker --once`
//! learns and publishes a snapshot (cooking primary, tax reflective), and a
//! `uno serve` started afterwards applies it. Asserted on what the mock
//! upstream received: the learned block in the system message of a cooking
//! question, the draft–critique–revision calls of a tax question, an
//! unrelated question and another tenant's question byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::path::Path;
use std::time::Duration;

use cli_common::{ServeProcess, fresh, scratch, uno_with_url};
use serde_json::{Value, json};
use uno_core::snapshot::Mode;
use uno_testkit::{Backend, MockReply, MockUpstream, RecordedRequest, both_backends};

both_backends! {
    a_snapshot_the_worker_published_is_served,
    the_worker_inside_serve_learns_and_serves,
}

const TENANT: &str = "acme";
const KEY: &str = "uno-serve-experience-key-a";
const OTHER_KEY: &str = "uno-serve-experience-key-b";
const LOGS: usize = 20;
const BLOCK_MARKER: &str = "Lessons from past users";
const COOKING_RULE: &str = "State the exact cooking time in minutes.";
const TAX_RULE: &str = "Cite the official tax form number.";
const CRITIQUE: &str = "1. Name the form.";
const REVISED: &str = "Revised: file form 1040-ES.";

fn cooking(i: usize) -> String {
    format!("How long should I boil spaghetti pasta batch {i} for dinner tonight?")
}

fn tax(i: usize) -> String {
    format!("Which tax form should I file for freelance income source {i} this year?")
}

/// The mock model, for the worker's prompts and the proxy's: cooking's
/// feedback rule is covered by the model's own prior rules (low gap) and
/// answers with the block win; tax's is not (high gap: reflective).
fn model(request: &Value) -> String {
    let text = uno_testkit::message_texts(request);
    let is_tax = text.contains("tax");
    if text.contains("You analyse conversations") {
        let rule = if is_tax { TAX_RULE } else { COOKING_RULE };
        return json!({"satisfied": false, "rules": [rule]}).to_string();
    }
    if text.contains("write at most 5 rules") {
        let rules = if is_tax {
            vec!["Explain the general idea briefly."]
        } else {
            vec![COOKING_RULE]
        };
        return json!({ "rules": rules }).to_string();
    }
    if text.contains("<Instruct>") {
        return "yes".to_owned();
    }
    if text.contains("already semantically covered") {
        return json!({ "covered": text.contains(COOKING_RULE) }).to_string();
    }
    if text.contains("rigorous, objective evaluator") {
        let answer = text.split("## Answer").nth(1).unwrap_or_default();
        let score = if answer.contains("precise detail") {
            8
        } else {
            5
        };
        return json!({"reason": "r", "score": score}).to_string();
    }
    if text.contains("Give numbered suggestions") {
        return CRITIQUE.to_owned();
    }
    if text.contains("Revise the Initial Answer") {
        return REVISED.to_owned();
    }
    if text.contains(BLOCK_MARKER) {
        "A careful answer, with one more precise detail.".to_owned()
    } else {
        "A careful answer.".to_owned()
    }
}

fn history(dir: &Path) -> std::path::PathBuf {
    let mut lines = Vec::new();
    for (query, follow_up) in [
        (
            cooking as fn(usize) -> String,
            "Tell me the time in minutes please.",
        ),
        (tax, "Which form number applies to me?"),
    ] {
        for i in 0..LOGS {
            lines.push(
                json!({
                    "messages": [
                        {"role": "user", "content": query(i)},
                        {"role": "assistant", "content": "A first answer."},
                        {"role": "user", "content": follow_up},
                    ],
                    "user": format!("user-{i}"),
                    "model": "mock-model",
                })
                .to_string(),
            );
        }
    }
    let path = dir.join("history.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn config(dir: &Path, upstream: &str) -> String {
    config_with(dir, upstream, "uno.toml", "")
}

/// [`config`] with `extra` lines in its `[learn]` table, written to `name`.
fn config_with(dir: &Path, upstream: &str, name: &str, extra: &str) -> String {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[[upstreams]]\nurl = \"{upstream}\"\n\n\
             [auth]\nkeys = [{{ key = \"{KEY}\", tenant = \"{TENANT}\" }}, {{ key = \"{OTHER_KEY}\", tenant = \"other\" }}]\n\n\
             [learn]\nembedder = \"hashing\"\nhashing_dim = 512\nmin_validation_logs = 2\n\
             recluster_after_logs = 1\nholdout_percent = 0\n{extra}\n[log]\nfilter = \"warn\"\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn serve(url: &str, dir: &Path, config: &str) -> ServeProcess {
    ServeProcess::command(url, dir).config(config).start().await
}

async fn chat(serve: &ServeProcess, key: &str, body: &[u8]) -> (reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", serve.base_url()))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    (headers, response.json().await.unwrap())
}

fn ask(query: &str) -> Vec<u8> {
    json!({"model": "mock-model", "messages": [{"role": "user", "content": query}]})
        .to_string()
        .into_bytes()
}

fn since(mock: &MockUpstream, n: usize) -> Vec<RecordedRequest> {
    mock.chat_requests().split_off(n)
}

async fn a_snapshot_the_worker_published_is_served(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let dir = scratch(&db);
    let mock = MockUpstream::builder()
        .default_reply(MockReply::respond(model))
        .start()
        .await;
    let config = config(&dir, &mock.base_url());
    let file = history(&dir);
    uno_with_url(
        &db.url,
        &dir,
        &["import", file.to_str().unwrap(), "--tenant", TENANT],
    )
    .await
    .ok();
    uno_with_url(&db.url, &dir, &["--config", &config, "worker", "--once"])
        .await
        .ok();
    let snapshot = store
        .snapshot(TENANT, None)
        .await
        .unwrap()
        .expect("published");
    let mode_of = |marker: &str| {
        snapshot
            .clusters
            .iter()
            .find(|c| c.rules.iter().any(|r| r.text.contains(marker)))
            .map(|c| (c.id.clone(), c.mode))
            .expect("a cluster per topic")
    };
    let (cooking_id, cooking_mode) = mode_of("cooking time");
    let (tax_id, tax_mode) = mode_of("tax form");
    assert_eq!((cooking_mode, tax_mode), (Mode::Primary, Mode::Reflective));
    assert!(snapshot.route_embedder.starts_with("hashing:"));
    assert!(snapshot.clusters.iter().all(|c| c.route_threshold > 0.0));

    let uno = serve(&db.url, &dir, &config).await;

    // A learned topic: the block reaches the upstream in the system message.
    let n = mock.chat_requests().len();
    let (headers, _) = chat(&uno, KEY, &ask(&cooking(3))).await;
    assert_eq!(headers["x-uno-path"], "primary");
    assert_eq!(headers["x-uno-cluster"], cooking_id.as_str());
    assert_eq!(
        headers["x-uno-snapshot"],
        snapshot.version.to_string().as_str()
    );
    let sent = since(&mock, n);
    assert_eq!(sent.len(), 1);
    let system = &sent[0].json()["messages"][0];
    assert_eq!(system["role"], "system");
    let block = system["content"].as_str().unwrap();
    assert!(
        block.contains(BLOCK_MARKER) && block.contains(COOKING_RULE),
        "{block}"
    );

    // The reflective topic: draft, critique, revision.
    let n = mock.chat_requests().len();
    let (headers, body) = chat(&uno, KEY, &ask(&tax(3))).await;
    assert_eq!(headers["x-uno-path"], "reflective");
    assert_eq!(headers["x-uno-cluster"], tax_id.as_str());
    assert_eq!(body["choices"][0]["message"]["content"], REVISED);
    let sent = since(&mock, n);
    assert_eq!(sent.len(), 3);
    assert!(uno_testkit::message_texts(&sent[1].json()).contains(TAX_RULE));

    // Unrelated, and another tenant's: byte for byte.
    for (key, raw) in [
        (KEY, ask("Explain quantum chromodynamics to a physicist")),
        (OTHER_KEY, ask(&cooking(3))),
    ] {
        let n = mock.chat_requests().len();
        let (headers, _) = chat(&uno, key, &raw).await;
        assert_eq!(headers["x-uno-path"], "passthrough");
        assert_eq!(since(&mock, n)[0].body.as_ref(), raw.as_slice());
    }
    drop(uno);
    mock.shutdown().await;
}

/// `learn.in_serve`: `uno serve` runs the worker itself, publishes, and picks
/// up its own snapshot, with no `uno worker` anywhere.
async fn the_worker_inside_serve_learns_and_serves(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let dir = scratch(&db);
    let mock = MockUpstream::builder()
        .default_reply(MockReply::respond(model))
        .start()
        .await;
    let config = config_with(
        &dir,
        &mock.base_url(),
        "in-serve.toml",
        "in_serve = true\npoll_interval_secs = 1\nsnapshot_poll_secs = 1\n",
    );
    let file = history(&dir);
    uno_with_url(
        &db.url,
        &dir,
        &["import", file.to_str().unwrap(), "--tenant", TENANT],
    )
    .await
    .ok();
    let serve = serve(&db.url, &dir, &config).await;
    let mut version = None;
    for _ in 0..240 {
        version = store.active_snapshot_version(TENANT).await.unwrap();
        if version.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        version,
        Some(1),
        "the in-serve worker published nothing within 60 s"
    );
    // The proxy picks its own worker's snapshot up within its poll.
    let mut served = None;
    for _ in 0..40 {
        let before = mock.chat_requests().len();
        let (headers, _) = chat(&serve, KEY, &ask(&cooking(3))).await;
        if headers.get("x-uno-path").is_some_and(|p| p == "primary") {
            served = Some(since(&mock, before));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let sent = served.expect("the learned snapshot was never applied");
    assert!(uno_testkit::message_texts(&sent[0].json()).contains(COOKING_RULE));
    drop(serve);
    mock.shutdown().await;
}
