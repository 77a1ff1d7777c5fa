//! A realistic demo dataset, written through the real store APIs, for the
//! admin API's tests, the `/ui` browser test and schemathesis.
//!
//! [`seed_demo`] writes, into a migrated store:
//!
//! - tenant **`acme`** (a tax-and-cooking help desk): two API keys (`web`
//!   active, `old` revoked); 28 questions spread over the last three
//!   days (plus 4 follow-up turns and 1 failed request: 33 interactions)
//!   by five users (`alice`, `bob`, `carol`, `dave`, `erin`) on three
//!   topics; snapshot versions 1, 2 and 3, **3 active**, with clusters
//!   `0` (tax forms, **primary**: two served rules and one below support,
//!   validation, lift), `1` (cooking, **reflective**, high gap: one served
//!   rule, one below support, critic lessons) and `2` (small talk,
//!   **passthrough**: one rule below support);
//! - tenant **`globex`** (a shop's support bot): one active key (`web`);
//!   11 questions (plus 1 follow-up turn and 1 failed request: 13
//!   interactions) by three users (`frank`, `grace`, `heidi`); snapshot
//!   versions 1 and 2, **2 active**, with clusters `0` (shipping,
//!   **primary**) and `1` (returns, **passthrough**).
//!
//! Interactions carry the version, cluster and path that served them
//! (`primary`, `reflective` with a draft and critique, `holdout`,
//! `passthrough`), tokens and latencies; one per tenant failed upstream
//! (502). Feedback: explicit ups and downs, comments and an expected output,
//! and implicit feedback (a user's follow-up turn continuing a logged
//! answer). Everything is deterministic except ids and times (ids are
//! UUIDv7, times are relative to now); [`SeedSummary`] returns the ids.
//!
//! Snapshot rules list real seeded interactions as their sources.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use uno_core::InteractionId;
use uno_core::feedback::{ExplicitFeedback, Rating, explicit_feedback_id};
use uno_core::interaction::{ExperienceTrace, InteractionRecord, Outcome, ResponseBody, ServePath};
use uno_core::snapshot::{
    ClusterExperience, Gap, Lesson, Lift, Mode, Rule, Settings, Snapshot, Validation,
};
use uno_store::Store;
use uno_store::rows::{row_for_feedback, rows_for_interaction};
use uuid::Uuid;

/// What [`seed_demo`] wrote.
#[derive(Debug, Clone)]
pub struct SeedSummary {
    /// `acme`: 33 interactions, versions 1–3 (3 active), clusters 0/1/2.
    pub acme: SeededTenant,
    /// `globex`: 13 interactions, versions 1–2 (2 active), clusters 0/1.
    pub globex: SeededTenant,
}

/// One seeded tenant.
#[derive(Debug, Clone)]
pub struct SeededTenant {
    /// Tenant id.
    pub tenant: String,
    /// The secret of its active `web` key (a client key for `/v1/*`).
    pub key: String,
    /// Its interactions, oldest first (follow-up turns included).
    pub interactions: Vec<Uuid>,
    /// Interactions that failed upstream.
    pub failed: Vec<Uuid>,
    /// Explicit ups written.
    pub ups: usize,
    /// Explicit downs written.
    pub downs: usize,
    /// Interactions that received implicit feedback (a follow-up turn).
    pub implicit: Vec<Uuid>,
    /// Snapshot versions published, oldest first.
    pub versions: Vec<i64>,
    /// The active version.
    pub active_version: i64,
    /// End users.
    pub users: Vec<String>,
}

/// A topic: questions, the answer given, and how it was served.
struct Topic {
    cluster: &'static str,
    path: ServePath,
    questions: &'static [&'static str],
    answer: &'static str,
}

const ACME_TOPICS: [Topic; 3] = [
    Topic {
        cluster: "0",
        path: ServePath::Primary,
        questions: &[
            "Which form do I use to report freelance income?",
            "How do I claim the home office deduction?",
            "What form reports dividends from my broker?",
            "Where do I report a 1099-K from a payment app?",
            "How do I amend last year's tax return?",
            "Which form do I need for estimated quarterly payments?",
            "How do I report a capital loss carryover?",
            "What form do I use for an extension?",
            "How do I report rental income from a spare room?",
            "Which form reports education credits?",
        ],
        answer: "You report it on your annual return; check the instructions for details.",
    },
    Topic {
        cluster: "1",
        path: ServePath::Reflective,
        questions: &[
            "How long should I boil spaghetti?",
            "How long do I roast a whole chicken?",
            "How long should hard-boiled eggs cook?",
            "How long do I bake salmon fillets?",
            "How long should rice simmer?",
            "How long do I steam broccoli?",
            "How long should I rest a steak?",
            "How long do I bake banana bread?",
            "How long should lentils cook?",
            "How long do I grill corn on the cob?",
        ],
        answer: "Cook it until it is done, checking regularly.",
    },
    Topic {
        cluster: "2",
        path: ServePath::Passthrough,
        questions: &[
            "Hi there!",
            "Thanks, that helped.",
            "Good morning!",
            "Are you a bot?",
            "What can you help me with?",
            "Bye for now.",
            "Can you tell me a joke?",
            "Hello again.",
        ],
        answer: "Hello! How can I help you today?",
    },
];

const GLOBEX_TOPICS: [Topic; 2] = [
    Topic {
        cluster: "0",
        path: ServePath::Primary,
        questions: &[
            "Where is my order?",
            "When will my package arrive?",
            "Has my order shipped yet?",
            "Can I change my shipping address?",
            "Why is my delivery late?",
            "Do you ship to Canada?",
            "How much is express shipping?",
        ],
        answer: "Your order is on its way and should arrive soon.",
    },
    Topic {
        cluster: "1",
        path: ServePath::Passthrough,
        questions: &[
            "How do I return a jacket?",
            "Can I exchange shoes for another size?",
            "How long do refunds take?",
            "Do I pay for return shipping?",
        ],
        answer: "You can return items within 30 days.",
    },
];

/// A logged chat completion as the proxy records it.
#[allow(clippy::too_many_arguments)]
fn interaction(
    tenant: &str,
    user: &str,
    messages: &serde_json::Value,
    answer: &str,
    at: SystemTime,
    version: i64,
    topic: &Topic,
    path: ServePath,
    i: usize,
) -> InteractionRecord {
    let response = serde_json::json!({
        "id": format!("chatcmpl-seed-{i}"),
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 40 + i % 17, "completion_tokens": 60 + (i * 7) % 50, "total_tokens": 100 + i % 17 + (i * 7) % 50}
    });
    let upstream = Duration::from_millis(300 + (i as u64 * 37) % 900);
    let added = Duration::from_micros(400 + (i as u64 * 53) % 1500);
    let reflective = path == ServePath::Reflective;
    InteractionRecord {
        id: InteractionId::new(),
        tenant: Arc::from(tenant),
        started_at: at,
        end_user: Some(user.to_owned()),
        request_digest: None,
        request_body: Bytes::from(
            serde_json::json!({"model": "gpt-4o-mini", "messages": messages}).to_string(),
        ),
        stream: i.is_multiple_of(3),
        status: 200,
        outcome: Outcome::Completed,
        response: ResponseBody::Complete(Bytes::from(response.to_string())),
        upstream_latency: Some(upstream),
        total_latency: upstream + added,
        time_to_first_byte: Some(added + Duration::from_millis(120)),
        error: None,
        experience: ExperienceTrace {
            snapshot_version: Some(version),
            cluster_id: Some(Arc::from(topic.cluster)),
            path: Some(path),
            draft: reflective.then(|| topic.answer.to_owned()),
            critique: reflective.then(|| "1. State the cooking time in minutes.".to_owned()),
            ..ExperienceTrace::default()
        },
        replaces_earlier: false,
    }
}

/// An interaction whose upstream failed.
fn failed(tenant: &str, user: &str, at: SystemTime) -> InteractionRecord {
    InteractionRecord {
        id: InteractionId::new(),
        tenant: Arc::from(tenant),
        started_at: at,
        end_user: Some(user.to_owned()),
        request_digest: None,
        request_body: Bytes::from(
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Are you there?"}]}"#,
        ),
        stream: false,
        status: 502,
        outcome: Outcome::Failed,
        response: ResponseBody::Complete(Bytes::from(
            r#"{"error":{"message":"upstream unavailable","type":"upstream_error","param":null,"code":"upstream_unavailable"}}"#,
        )),
        upstream_latency: None,
        total_latency: Duration::from_millis(3000),
        time_to_first_byte: Some(Duration::from_millis(3000)),
        error: Some("upstream connection refused".to_owned()),
        experience: ExperienceTrace::default(),
        replaces_earlier: false,
    }
}

fn explicit(
    tenant: &str,
    id: InteractionId,
    user: &str,
    rating: Option<Rating>,
    comment: Option<&str>,
    expected: Option<&str>,
    at: SystemTime,
) -> ExplicitFeedback {
    ExplicitFeedback {
        id: explicit_feedback_id(tenant, id, user),
        tenant: tenant.to_owned(),
        interaction_id: id,
        end_user: user.to_owned(),
        rating,
        comment: comment.map(str::to_owned),
        expected_output: expected.map(str::to_owned),
        at,
    }
}

/// Writes one tenant's traffic and feedback; returns what it wrote and,
/// per topic, the interactions served on it.
async fn traffic(
    store: &Store,
    tenant: &str,
    users: &[&str],
    topics: &[Topic],
    version: i64,
) -> (SeededTenant, Vec<Vec<Uuid>>) {
    let now = SystemTime::now();
    let total: usize = topics.iter().map(|t| t.questions.len()).sum();
    let mut seeded = SeededTenant {
        tenant: tenant.to_owned(),
        key: String::new(),
        interactions: Vec::new(),
        failed: Vec::new(),
        ups: 0,
        downs: 0,
        implicit: Vec::new(),
        versions: Vec::new(),
        active_version: version,
        users: users.iter().map(|u| (*u).to_owned()).collect(),
    };
    let mut by_topic = vec![Vec::new(); topics.len()];
    let mut n = 0;
    for (t, topic) in topics.iter().enumerate() {
        for (q, question) in topic.questions.iter().enumerate() {
            // Spread over the last three days, oldest first.
            let age = Duration::from_secs(((total - n) as u64) * 3 * 86_400 / (total as u64 + 1));
            let at = now - age;
            let user = users[(n + t) % users.len()];
            // Every fourth treated request is served untouched as holdout.
            let path = if topic.path != ServePath::Passthrough && q % 4 == 3 {
                ServePath::Holdout
            } else {
                topic.path
            };
            let messages = serde_json::json!([
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": question}
            ]);
            let record = interaction(
                tenant,
                user,
                &messages,
                topic.answer,
                at,
                version,
                topic,
                path,
                n,
            );
            let id = record.id;
            write(store, &rows_for_interaction(&record)).await;
            seeded.interactions.push(id.0);
            by_topic[t].push(id.0);
            let later = at + Duration::from_secs(90);
            // Feedback: ups and downs with comments, a correction, and a
            // follow-up turn (implicit feedback) on some.
            let feedback = match n % 5 {
                0 => Some(explicit(
                    tenant,
                    id,
                    user,
                    Some(Rating::Up),
                    None,
                    None,
                    later,
                )),
                1 => Some(explicit(
                    tenant,
                    id,
                    user,
                    Some(Rating::Down),
                    Some("Too vague: give the exact number."),
                    None,
                    later,
                )),
                2 => Some(explicit(
                    tenant,
                    id,
                    user,
                    Some(Rating::Up),
                    Some("Clear and specific, thanks."),
                    None,
                    later,
                )),
                3 if t == 0 => Some(explicit(
                    tenant,
                    id,
                    user,
                    Some(Rating::Down),
                    None,
                    Some("Use Schedule C (Form 1040) and cite the line number."),
                    later,
                )),
                _ => None,
            };
            if let Some(f) = feedback {
                match f.rating {
                    Some(Rating::Up) => seeded.ups += 1,
                    Some(Rating::Down) => seeded.downs += 1,
                    None => {}
                }
                write(store, &[row_for_feedback(&f)]).await;
            }
            if n % 7 == 4 {
                let follow = serde_json::json!([
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": topic.answer},
                    {"role": "user", "content": "That's not specific enough, I need exact numbers."}
                ]);
                let next = interaction(
                    tenant,
                    user,
                    &follow,
                    "Sorry: here are the exact figures.",
                    later,
                    version,
                    topic,
                    path,
                    n + 100,
                );
                write(store, &rows_for_interaction(&next)).await;
                seeded.interactions.push(next.id.0);
                seeded.implicit.push(id.0);
            }
            n += 1;
        }
    }
    let broken = failed(tenant, users[0], now - Duration::from_secs(1800));
    write(store, &rows_for_interaction(&broken)).await;
    seeded.interactions.push(broken.id.0);
    seeded.failed.push(broken.id.0);
    (seeded, by_topic)
}

async fn write(store: &Store, rows: &[uno_store::rows::LogRow]) {
    if let Err(err) = store.write_rows(rows).await {
        panic!("seed: cannot write rows: {err}");
    }
}

fn block(rules: &[&str]) -> String {
    let numbered: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{}. {r}", i + 1))
        .collect();
    format!(
        "Lessons from past users on requests like this one. Follow them where they apply:\n{}",
        numbered.join("\n")
    )
}

fn rule(text: &str, support: usize, sources: &[Uuid]) -> Rule {
    Rule::new(text, support, sources.to_vec(), support >= 3)
}

fn settings() -> Settings {
    Settings {
        distance_threshold: 4.0,
        gap_threshold: 0.45,
        win_threshold: 0.53,
        min_support: 3,
        min_validation_logs: 3,
        unseen_quantile: 0.95,
    }
}

fn snapshot(tenant: &str, logs: usize, clusters: Vec<ClusterExperience>) -> Snapshot {
    Snapshot {
        embedder_id: "hashing:v1:8".to_owned(),
        dim: 8,
        settings: settings(),
        logs,
        clusters,
        ..Snapshot::empty(tenant)
    }
}

fn centroid(seed: usize) -> Vec<f32> {
    (0..8)
        .map(|i| if i == seed % 8 { 1.0 } else { 0.0 })
        .collect()
}

/// A cluster of `members`, with `rules`, in `mode`.
fn cluster(
    id: &str,
    members: &[Uuid],
    mode: Mode,
    decision: &str,
    gap_min: f64,
    rules: Vec<Rule>,
) -> ClusterExperience {
    let served: Vec<&str> = rules
        .iter()
        .filter(|r| r.served)
        .map(|r| r.text.as_str())
        .collect();
    let lessons = if mode == Mode::Reflective {
        members
            .iter()
            .take(3)
            .map(|m| Lesson {
                source: *m,
                query_vec: centroid(id.len()),
                rules: vec![0],
            })
            .collect()
    } else {
        Vec::new()
    };
    let split = members.len() * 4 / 5;
    ClusterExperience {
        id: id.to_owned(),
        size: members.len(),
        lang: "en".to_owned(),
        centroid: centroid(id.parse().unwrap_or(0)),
        unseen_threshold: 0.8,
        mode,
        decision: decision.to_owned(),
        gap: Gap {
            min: gap_min,
            mean: gap_min + 0.15,
            max: gap_min + 0.3,
            scored_logs: members.len(),
        },
        high_gap: gap_min >= 0.45,
        block: if served.is_empty() {
            String::new()
        } else {
            block(&served)
        },
        rules,
        lessons,
        members: members.to_vec(),
        holdout: members[split..].to_vec(),
        ..ClusterExperience::default()
    }
}

async fn publish(store: &Store, snapshot: &Snapshot) -> i64 {
    match store.publish_snapshot(snapshot, "worker").await {
        Ok(Some(version)) => version,
        Ok(None) => panic!("seed: snapshot identical to the previous one"),
        Err(err) => panic!("seed: cannot publish a snapshot: {err}"),
    }
}

async fn acme_snapshots(store: &Store, topics: &[Vec<Uuid>]) -> Vec<i64> {
    let (tax, cooking, talk) = (&topics[0], &topics[1], &topics[2]);
    let cite = "Cite the exact form number and line.";
    let deadline = "Give the filing deadline.";
    let link = "Link to the official instructions.";
    let minutes = "State cooking times in minutes.";
    let safety = "Mention safe internal temperatures.";
    let short = "Keep greetings short.";
    let passthrough_why = "no rule has support from 3 distinct users yet; gap 0.20 < 0.45";
    let v1 = snapshot(
        "acme",
        12,
        vec![
            cluster(
                "0",
                &tax[..6],
                Mode::Passthrough,
                passthrough_why,
                0.2,
                vec![rule(cite, 2, &tax[..2])],
            ),
            cluster(
                "1",
                &cooking[..6],
                Mode::Passthrough,
                "no rule has support from 3 distinct users yet; gap 0.52 >= 0.45",
                0.52,
                vec![rule(minutes, 2, &cooking[..2])],
            ),
        ],
    );
    let primary_why = "win rate 0.68 >= 0.53 on 5 held-out logs and gap 0.20 < 0.45";
    let validation = Validation {
        win_rate: 0.68,
        logs: 5,
        wins: 3,
        ties: 1,
        guarded: 0,
    };
    let reflective_why = "gap 0.55 >= 0.45 (high gap); primary not validated: high gap";
    let mut v2_tax = cluster(
        "0",
        &tax[..8],
        Mode::Primary,
        primary_why,
        0.2,
        vec![rule(cite, 3, &tax[..3]), rule(deadline, 2, &tax[3..5])],
    );
    v2_tax.validation = Some(validation.clone());
    let v2 = snapshot(
        "acme",
        20,
        vec![
            v2_tax,
            cluster(
                "1",
                &cooking[..8],
                Mode::Reflective,
                reflective_why,
                0.55,
                vec![rule(minutes, 3, &cooking[..3])],
            ),
        ],
    );
    let mut v3_tax = cluster(
        "0",
        tax,
        Mode::Primary,
        primary_why,
        0.2,
        vec![
            rule(cite, 4, &tax[..4]),
            rule(deadline, 3, &tax[3..6]),
            rule(link, 1, &tax[6..7]),
        ],
    );
    v3_tax.validation = Some(validation);
    v3_tax.lift = Some(Lift {
        treated_rated: 6,
        treated_down: 1,
        holdout_rated: 3,
        holdout_down: 1,
        z: -0.52,
    });
    let v3 = snapshot(
        "acme",
        28,
        vec![
            v3_tax,
            cluster(
                "1",
                cooking,
                Mode::Reflective,
                reflective_why,
                0.55,
                vec![
                    rule(minutes, 3, &cooking[..4]),
                    rule(safety, 2, &cooking[4..6]),
                ],
            ),
            cluster(
                "2",
                talk,
                Mode::Passthrough,
                passthrough_why,
                0.1,
                vec![rule(short, 1, &talk[..1])],
            ),
        ],
    );
    let mut versions = Vec::new();
    for s in [v1, v2, v3] {
        versions.push(publish(store, &s).await);
    }
    versions
}

async fn globex_snapshots(store: &Store, topics: &[Vec<Uuid>]) -> Vec<i64> {
    let (shipping, returns) = (&topics[0], &topics[1]);
    let tracking = "Include the tracking link.";
    let dates = "Give the expected delivery date.";
    let v1 = snapshot(
        "globex",
        6,
        vec![cluster(
            "0",
            &shipping[..4],
            Mode::Passthrough,
            "no rule has support from 3 distinct users yet; gap 0.15 < 0.45",
            0.15,
            vec![rule(tracking, 2, &shipping[..2])],
        )],
    );
    let mut ship = cluster(
        "0",
        shipping,
        Mode::Primary,
        "win rate 0.60 >= 0.53 on 3 held-out logs and gap 0.15 < 0.45",
        0.15,
        vec![
            rule(tracking, 3, &shipping[..3]),
            rule(dates, 1, &shipping[3..4]),
        ],
    );
    ship.validation = Some(Validation {
        win_rate: 0.6,
        logs: 3,
        wins: 1,
        ties: 2,
        guarded: 0,
    });
    let v2 = snapshot(
        "globex",
        11,
        vec![
            ship,
            cluster(
                "1",
                returns,
                Mode::Passthrough,
                "no rule has support from 3 distinct users yet; gap 0.30 < 0.45",
                0.3,
                Vec::new(),
            ),
        ],
    );
    let mut versions = Vec::new();
    for s in [v1, v2] {
        versions.push(publish(store, &s).await);
    }
    versions
}

async fn key(store: &Store, tenant: &str, name: &str) -> String {
    match store.create_key(tenant, Some(name)).await {
        Ok(k) => k.secret,
        Err(err) => panic!("seed: cannot create a key: {err}"),
    }
}

/// Writes the demo dataset described in the [module docs](self) into
/// `store` (already migrated, and empty of these tenants).
///
/// # Panics
///
/// When the store refuses a write: seeding is test set-up, and a test on
/// half a dataset would mislead.
pub async fn seed_demo(store: &Store) -> SeedSummary {
    let (mut acme, acme_topics) = traffic(
        store,
        "acme",
        &["alice", "bob", "carol", "dave", "erin"],
        &ACME_TOPICS,
        3,
    )
    .await;
    acme.versions = acme_snapshots(store, &acme_topics).await;
    acme.active_version = acme.versions.last().copied().unwrap_or(0);
    acme.key = key(store, "acme", "web").await;
    let old = key(store, "acme", "old").await;
    if let Err(err) = store.revoke_key(&old[..19]).await {
        panic!("seed: cannot revoke a key: {err}");
    }
    let (mut globex, globex_topics) = traffic(
        store,
        "globex",
        &["frank", "grace", "heidi"],
        &GLOBEX_TOPICS,
        2,
    )
    .await;
    globex.versions = globex_snapshots(store, &globex_topics).await;
    globex.active_version = globex.versions.last().copied().unwrap_or(0);
    globex.key = key(store, "globex", "web").await;
    SeedSummary { acme, globex }
}
