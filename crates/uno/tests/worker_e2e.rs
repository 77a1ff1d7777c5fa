//! End to end: logs with feedback on three synthetic topics go in through
//! `uno import`; `uno worker --once` runs every UNO stage against the mock
//! upstream (playing a model that answers each prompt type); the published
//! snapshot has one cluster per topic, rules with provenance and support,
//! and modes that follow the gap and win-rate rules. Then: a second run
//! does nothing, deleting a user removes their log and support from the next
//! snapshot, and UNO-Single turns the reflective clusters into passthrough.
//!
//! Runs with the hashing embedder in the default suite; with
//! `--features local-embed` (and `scripts/install-models.sh`) the same
//! scenario runs with all-MiniLM-L6-v2 as well.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use cli_common::{Run, fresh, scratch, uno_with_url};
use serde_json::{Value, json};
use uno_core::snapshot::{ClusterExperience, Mode, Snapshot};
use uno_store::Store;
use uno_testkit::{Backend, MockReply, MockUpstream, TestDatabase, both_backends};

both_backends! {
    worker_learns_three_topics_with_the_hashing_embedder,
    a_running_worker_serves_its_stage_metrics,
}

#[cfg(feature = "local-embed")]
mod local {
    uno_testkit::both_backends! {
        worker_learns_three_topics_with_minilm,
    }

    async fn worker_learns_three_topics_with_minilm(backend: uno_testkit::Backend) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/models/all-MiniLM-L6-v2");
        assert!(
            dir.join("model.safetensors").exists(),
            "run scripts/install-models.sh first (no model at {})",
            dir.display()
        );
        let embedder = format!(
            "embedder = \"local\"\nembedder_path = {:?}\n",
            dir.display().to_string()
        );
        super::scenario(backend, &embedder).await;
    }
}

async fn worker_learns_three_topics_with_the_hashing_embedder(backend: Backend) {
    scenario(backend, "embedder = \"hashing\"\nhashing_dim = 512\n").await;
}

const TENANT: &str = "acme";
const LOGS_PER_TOPIC: usize = 20;

/// A synthetic topic: how its users ask, what they say afterwards, and what
/// the mock model distils from it.
struct Topic {
    name: &'static str,
    /// A word only this topic's prompts contain.
    marker: &'static str,
    query: fn(usize) -> String,
    follow_up: &'static str,
    feedback_rule: &'static str,
    prior_rules: &'static [&'static str],
    /// Whether the prior rules cover the feedback rule (low gap).
    covered: bool,
    /// Whether answers with the rule block get a better judge score.
    block_helps: bool,
}

const TOPICS: [Topic; 3] = [
    Topic {
        name: "cooking",
        marker: "spaghetti",
        query: |i| format!("How long should I boil spaghetti pasta batch {i} for dinner tonight?"),
        follow_up: "Tell me the cooking time in minutes please.",
        feedback_rule: "State the exact cooking time in minutes.",
        prior_rules: &[
            "State the exact cooking time in minutes.",
            "List the ingredients needed.",
        ],
        covered: true,
        block_helps: true,
    },
    Topic {
        name: "tax",
        marker: "tax",
        query: |i| {
            format!("Which tax form should I file for freelance income source {i} this year?")
        },
        follow_up: "Which official form number applies to me?",
        feedback_rule: "Cite the official tax form number.",
        prior_rules: &["Explain the general idea briefly."],
        covered: false,
        block_helps: true,
    },
    Topic {
        name: "python",
        marker: "python",
        query: |i| {
            format!("Why does my python script raise KeyError inside loop {i} of the parser?")
        },
        follow_up: "Show me a small code example.",
        feedback_rule: "Include a minimal code example.",
        prior_rules: &[
            "Include a minimal code example.",
            "Explain the cause of the error.",
        ],
        covered: true,
        block_helps: false,
    },
];

fn topic_of(text: &str) -> Option<&'static Topic> {
    TOPICS.iter().find(|t| text.contains(t.marker))
}

fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    text.split_once(heading)
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .unwrap_or("")
}

const BLOCK_MARKER: &str = "Lessons from past users";
const FOLLOWING: &str = "Following the lessons from past users, here is one more precise detail.";

/// The mock model: answers each of the worker's prompt types by what the
/// prompt contains, so every stage gets a meaningful, deterministic reply.
fn model(request: &Value) -> String {
    let text = uno_testkit::message_texts(request);
    if text.contains("You analyse conversations") {
        let topic = topic_of(section(&text, "## Initial User Query")).expect("a known topic");
        return json!({"satisfied": false, "rules": [topic.feedback_rule]}).to_string();
    }
    if text.contains("write at most 5 rules") {
        let topic = topic_of(&text).expect("a known topic");
        return json!({ "rules": topic.prior_rules }).to_string();
    }
    if text.contains("<Instruct>") {
        // No logprobs in the mock's replies: the worker must fall back to
        // sampled verdicts.
        return "yes".to_owned();
    }
    if text.contains("already semantically covered") {
        let covered = TOPICS
            .iter()
            .find(|t| text.contains(t.feedback_rule))
            .expect("a known rule")
            .covered;
        return json!({ "covered": covered }).to_string();
    }
    if text.contains("rigorous, objective evaluator") {
        let topic = topic_of(section(&text, "## Question")).expect("a known topic");
        let answer = section(&text, "## Answer");
        let score = if topic.block_helps && answer.contains(FOLLOWING) {
            8
        } else {
            5
        };
        return json!({"reason": "compared with the suggestions", "score": score}).to_string();
    }
    let topic = topic_of(&text).map_or("your question", |t| t.name);
    let base = format!(
        "Here is a careful answer about {topic} with the steps you need and some useful details."
    );
    if text.contains(BLOCK_MARKER) {
        format!("{base} {FOLLOWING}")
    } else {
        base
    }
}

fn import_file(dir: &Path) -> std::path::PathBuf {
    let mut lines = Vec::new();
    for (t, topic) in TOPICS.iter().enumerate() {
        for i in 0..LOGS_PER_TOPIC {
            lines.push(
                json!({
                    "messages": [
                        {"role": "user", "content": (topic.query)(i)},
                        {"role": "assistant", "content": format!("A first answer about {}.", topic.name)},
                        {"role": "user", "content": topic.follow_up},
                    ],
                    "user": format!("user-{t}-{i}"),
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

fn config_file(dir: &Path, upstream: &str, embedder: &str, policy: &str) -> String {
    let path = dir.join(format!("uno-{policy}.toml"));
    std::fs::write(
        &path,
        format!(
            "[[upstreams]]\nurl = \"{upstream}\"\n\n[learn]\n{embedder}policy = \"{policy}\"\n\
             min_validation_logs = 2\nrecluster_after_logs = 1\nconcurrency = 4\n\n[log]\nfilter = \"warn\"\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

async fn uno(db: &TestDatabase, args: &[&str]) -> Run {
    uno_with_url(&db.url, &scratch(db), args).await
}

/// Which topic each cluster holds, checking each holds exactly one.
async fn topics_by_cluster<'s>(
    store: &Store,
    snapshot: &'s Snapshot,
) -> BTreeMap<&'static str, &'s ClusterExperience> {
    let mut out = BTreeMap::new();
    for cluster in &snapshot.clusters {
        let mut names = HashSet::new();
        for id in &cluster.members {
            let log = store
                .learn_log(*id)
                .await
                .unwrap()
                .expect("members are learning logs");
            names.insert(topic_of(&log.input.query).expect("a known topic").name);
        }
        assert_eq!(
            names.len(),
            1,
            "cluster {} mixes topics {names:?}",
            cluster.id
        );
        let name = names.into_iter().next().unwrap();
        assert!(
            out.insert(name, cluster).is_none(),
            "topic {name} is split over clusters"
        );
    }
    out
}

async fn scenario(backend: Backend, embedder: &str) {
    let (db, store) = fresh(backend).await;
    let dir = scratch(&db);
    let mock = MockUpstream::builder()
        .record_requests(true)
        .default_reply(MockReply::respond(model))
        .start()
        .await;
    let config = config_file(&dir, &mock.base_url(), embedder, "uno");
    let file = import_file(&dir);
    uno(&db, &["import", file.to_str().unwrap(), "--tenant", TENANT])
        .await
        .ok();

    let first = uno(&db, &["--config", &config, "worker", "--once"])
        .await
        .ok();
    assert!(
        first.stdout.contains("60 logs ingested")
            && first.stdout.contains("snapshot version 1 is active"),
        "{first:#?}"
    );
    let snapshot = store
        .snapshot(TENANT, None)
        .await
        .unwrap()
        .expect("an active snapshot");
    assert_eq!(snapshot.version, 1);
    assert_eq!(snapshot.logs, 60);
    assert_eq!(
        snapshot.clusters.len(),
        3,
        "one cluster per topic: {:#?}",
        snapshot
            .clusters
            .iter()
            .map(|c| (&c.id, c.size))
            .collect::<Vec<_>>()
    );
    let by_topic = topics_by_cluster(&store, &snapshot).await;

    for topic in &TOPICS {
        let cluster = by_topic[topic.name];
        assert_eq!(cluster.size, LOGS_PER_TOPIC);
        assert_eq!(cluster.holdout.len(), LOGS_PER_TOPIC / 5, "20% held out");
        // Rules come from training members only, with provenance and support.
        let rule = &cluster.rules[0];
        assert_eq!(rule.text, topic.feedback_rule);
        assert!(rule.served);
        assert_eq!(
            rule.support,
            LOGS_PER_TOPIC - cluster.holdout.len(),
            "one distinct user per training log"
        );
        assert_eq!(rule.sources.len(), rule.support);
        assert!(
            rule.sources
                .iter()
                .all(|s| cluster.members.contains(s) && !cluster.holdout.contains(s))
        );
        assert!(
            cluster.block.contains(topic.feedback_rule),
            "{}",
            cluster.block
        );
        assert!(!cluster.lessons.is_empty());
        assert!(cluster.unseen_threshold > 0.0);
    }
    // Low gap and a winning block: primary.
    let cooking = by_topic["cooking"];
    assert_eq!(cooking.mode, Mode::Primary, "{}", cooking.decision);
    assert!(!cooking.high_gap && cooking.gap.min < 0.45);
    assert_eq!(cooking.validation.as_ref().unwrap().win_rate, 1.0);
    // High gap: reflective without validating the block.
    let tax = by_topic["tax"];
    assert_eq!(tax.mode, Mode::Reflective, "{}", tax.decision);
    assert!(tax.high_gap && tax.gap.min >= 0.45, "{:?}", tax.gap);
    assert!(
        tax.validation.is_none() && tax.decision.contains("high gap"),
        "{}",
        tax.decision
    );
    // Low gap but the block does not win (ties): reflective under UNO.
    let python = by_topic["python"];
    assert_eq!(python.mode, Mode::Reflective, "{}", python.decision);
    assert!(!python.high_gap);
    let v = python.validation.as_ref().unwrap();
    assert_eq!((v.win_rate, v.ties), (0.5, v.logs));

    // Nothing changed: a second run asks the model nothing and publishes nothing.
    let calls = mock.request_count();
    let second = uno(&db, &["--config", &config, "worker", "--once"])
        .await
        .ok();
    assert!(
        second.stdout.contains("0 logs ingested, 0 stages done"),
        "{second:#?}"
    );
    assert_eq!(
        mock.request_count(),
        calls,
        "an idle run makes no LLM calls"
    );
    assert_eq!(
        store.active_snapshot_version(TENANT).await.unwrap(),
        Some(1)
    );

    // Deleting a user removes their log, and their support, from the next snapshot.
    let gone = cooking.rules[0].sources[0];
    let gone_log = store.learn_log(gone).await.unwrap().unwrap();
    let user = gone_log.input.users[0].clone();
    uno(
        &db,
        &["delete", "--tenant", TENANT, "--user", &user, "--yes"],
    )
    .await
    .ok();
    assert!(store.learn_log(gone).await.unwrap().is_none());
    let third = uno(&db, &["--config", &config, "worker", "--once"])
        .await
        .ok();
    assert!(
        third.stdout.contains("snapshot version 2 is active"),
        "{third:#?}"
    );
    let after = store.snapshot(TENANT, None).await.unwrap().unwrap();
    assert_eq!(after.logs, 59);
    let carried: Vec<_> = after
        .clusters
        .iter()
        .flat_map(|c| {
            c.members
                .iter()
                .chain(c.rules.iter().flat_map(|r| r.sources.iter()))
        })
        .filter(|id| **id == gone)
        .collect();
    assert!(
        carried.is_empty(),
        "the deleted user's log is still in the snapshot"
    );
    let cooking_after = topics_by_cluster(&store, &after).await["cooking"].clone();
    assert_eq!(cooking_after.size, LOGS_PER_TOPIC - 1);

    // UNO-Single: what is not primary is served untouched.
    let single = config_file(&dir, &mock.base_url(), embedder, "uno-single");
    let fourth = uno(&db, &["--config", &single, "worker", "--once", "--force"])
        .await
        .ok();
    assert!(
        fourth.stdout.contains("snapshot version 3 is active"),
        "{fourth:#?}"
    );
    let single_snapshot = store.snapshot(TENANT, None).await.unwrap().unwrap();
    let modes: BTreeMap<_, _> = topics_by_cluster(&store, &single_snapshot)
        .await
        .into_iter()
        .map(|(name, c)| (name, c.mode))
        .collect();
    assert_eq!(modes["cooking"], Mode::Primary);
    assert_eq!(modes["tax"], Mode::Passthrough);
    assert_eq!(modes["python"], Mode::Passthrough);
    mock.shutdown().await;
}

/// `uno worker --metrics-listen`: while the worker runs, its /metrics page
/// shows every log's three stages and the tenant's published rebuild.
async fn a_running_worker_serves_its_stage_metrics(backend: Backend) {
    let (db, _store) = fresh(backend).await;
    let dir = scratch(&db);
    let mock = MockUpstream::builder()
        .default_reply(MockReply::respond(model))
        .start()
        .await;
    let config = config_file(
        &dir,
        &mock.base_url(),
        "embedder = \"hashing\"\nhashing_dim = 512\n",
        "uno",
    );
    let file = import_file(&dir);
    uno(&db, &["import", file.to_str().unwrap(), "--tenant", TENANT])
        .await
        .ok();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_uno"))
        .args([
            "--config",
            &config,
            "worker",
            "--metrics-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("DATABASE_URL", &db.url)
        .env_remove("UNO_WORKER_IN_SERVE")
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot run the uno binary");
    let logs = (TOPICS.len() * LOGS_PER_TOPIC) as f64;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let page = loop {
        let page = match reqwest::get(&url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if sample(
            &page,
            r#"uno_worker_stage_outcomes_total{stage="rebuild",outcome="ok"}"#,
        ) >= 1.0
        {
            break page;
        }
        if std::time::Instant::now() > deadline {
            let _ = worker.kill();
            panic!("the worker never reported a published rebuild:\n{page}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let _ = worker.kill();
    let _ = worker.wait();
    for stage in ["distil", "embed", "novelty"] {
        assert_eq!(
            sample(
                &page,
                &format!(r#"uno_worker_stage_outcomes_total{{stage="{stage}",outcome="ok"}}"#)
            ),
            logs,
            "{stage}:\n{page}"
        );
        assert_eq!(
            sample(
                &page,
                &format!(r#"uno_worker_stage_duration_seconds_count{{stage="{stage}"}}"#)
            ),
            logs
        );
    }
    assert_eq!(
        sample(
            &page,
            r#"uno_worker_stage_outcomes_total{stage="distil",outcome="error"}"#
        ),
        0.0
    );
    assert!(page.contains("# TYPE uno_build_info gauge"));
}

/// One sample's value on a metrics page (0 when absent).
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
