//! The `/ui` dashboard in headless Chromium against the real `uno serve`:
//! a seeded SQLite database, the binary started with an admin key, and
//! `scripts/ui-test/ui.spec.mjs` driving the page (sign-in, clusters, rules,
//! snapshot history, rollback). Needs Debian's chromium and `npm ci` in
//! scripts/ui-test, so it is ignored in the plain workspace run;
//! `scripts/ci/ui-browser.sh` installs both and runs it. The screenshot lands
//! in `target/ui-screenshot.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use cli_common::{fresh, scratch};
use serde_json::{Value, json};
use uno_core::feedback::Rating;
use uno_core::interaction::ServePath;
use uno_core::snapshot::{
    ClusterExperience, Gap, Lift, Mode, Policy, Rule, Settings, Snapshot, Validation,
};
use uno_store::Store;
use uno_store::rows::{row_for_feedback, rows_for_interaction};
use uno_testkit::Backend;
use uno_testkit::records::{feedback, record, served};
use uuid::Uuid;

const ADMIN_KEY: &str = "uno-ui-browser-admin-key-0001";
const CLIENT_KEY: &str = "uno-ui-browser-client-key-01";
const TENANT: &str = "acme";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `uno serve` on a free port; killed when dropped.
struct Serve {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(url: &str, dir: &Path) -> Serve {
    let config = dir.join("uno.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstreams]]\nurl = \"http://127.0.0.1:9\"\n\n\
             [auth]\nkeys = [{{ key = \"{CLIENT_KEY}\", tenant = \"{TENANT}\" }}]\n\n\
             [admin]\nkey = \"{ADMIN_KEY}\"\n\n[log]\nfilter = \"warn\"\n"
        ),
    )
    .unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uno"));
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("UNO_") || text == "DATABASE_URL" {
            cmd.env_remove(&name);
        }
    }
    let child = cmd
        .args([
            "--config",
            &config.display().to_string(),
            "serve",
            "--listen",
            &addr.to_string(),
        ])
        .env("DATABASE_URL", url)
        .current_dir(dir)
        .stdin(Stdio::null())
        .spawn()
        .expect("cannot run uno serve");
    let serve = Serve { child, addr };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return serve;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("uno serve did not answer /health on {addr}");
}

// ------------------------------------------------------------------ seed

const COOKING: [&str; 3] = [
    "How long should I boil spaghetti for dinner tonight?",
    "How many minutes does a soft-boiled egg take?",
    "How long do I roast a whole chicken at 200 C?",
];
const TAX: [&str; 3] = [
    "Which tax form should I file for freelance income?",
    "Do I need to pay estimated tax every quarter?",
    "Where do I report interest from a savings account?",
];
const FORMAT: [&str; 2] = [
    "Can you format these steps as a list?",
    "Turn this paragraph into bullet points please.",
];

fn snapshot(clusters: Vec<ClusterExperience>, logs: usize) -> Snapshot {
    Snapshot {
        tenant: TENANT.into(),
        version: 0,
        created_at: 0,
        embedder_id: "hash:8".into(),
        dim: 2,
        route_embedder: "hashing:v1:2".into(),
        policy: Policy::Uno,
        settings: Settings {
            distance_threshold: 4.0,
            gap_threshold: 0.4,
            win_threshold: 0.55,
            min_support: 2,
            min_validation_logs: 3,
            unseen_quantile: 0.95,
        },
        logs,
        clusters,
    }
}

struct ClusterSpec<'a> {
    id: &'a str,
    mode: Mode,
    gap: (f64, f64, f64),
    win: (usize, usize),
    rules: &'a [(&'a str, usize, bool)],
}

fn cluster(spec: &ClusterSpec<'_>, sources: &[Uuid], decision: &str) -> ClusterExperience {
    let rules: Vec<Rule> = spec
        .rules
        .iter()
        .map(|(text, support, served)| Rule {
            text: (*text).into(),
            support: *support,
            sources: sources.iter().take(*support).copied().collect(),
            served: *served,
        })
        .collect();
    let block = rules
        .iter()
        .filter(|r| r.served)
        .enumerate()
        .map(|(i, r)| format!("{}. {}", i + 1, r.text))
        .collect::<Vec<_>>()
        .join("\n");
    let (wins, logs) = spec.win;
    ClusterExperience {
        id: spec.id.into(),
        size: sources.len() * 3,
        lang: "en".into(),
        centroid: vec![1.0, 0.0],
        unseen_threshold: 0.5,
        route_centroid: vec![1.0, 0.0],
        route_threshold: 0.5,
        mode: spec.mode,
        decision: decision.into(),
        gap: Gap {
            min: spec.gap.0,
            mean: spec.gap.1,
            max: spec.gap.2,
            scored_logs: logs,
        },
        high_gap: spec.gap.0 >= 0.4,
        validation: Some(Validation {
            win_rate: wins as f64 / logs as f64,
            logs,
            wins,
            ties: 0,
            guarded: 0,
        }),
        block,
        rules,
        lift: Some(Lift {
            treated_rated: 12,
            treated_down: 2,
            holdout_rated: 4,
            holdout_down: 2,
            z: -1.2,
        }),
        ..ClusterExperience::default()
    }
}

/// Tenant `acme`: interactions over the last day on three topics with
/// ratings, three snapshot versions (v3 active); tenant `globex`: a few
/// interactions and no snapshot. Returns what the page must show.
async fn seed(store: &Store) -> Value {
    let now = SystemTime::now();
    let mut ids: Vec<(usize, Uuid)> = Vec::new();
    let mut rows = Vec::new();
    let topics: [(&[&str], &str, ServePath); 3] = [
        (&COOKING, "c0", ServePath::Primary),
        (&TAX, "c1", ServePath::Reflective),
        (&FORMAT, "c2", ServePath::Passthrough),
    ];
    for i in 0..36usize {
        let topic = i % 3;
        let (questions, cluster_id, path) = topics[topic];
        let question = questions[i / 3 % questions.len()];
        let at = now - Duration::from_secs(60 * (37 * i as u64 % 1380));
        let path = if i % 7 == 3 { ServePath::Holdout } else { path };
        let rec = served(
            record(
                TENANT,
                &format!("user-{}", i % 5),
                question,
                "Here is a careful answer.",
                at,
            ),
            3,
            cluster_id,
            path,
        );
        let id = rec.id;
        rows.extend(rows_for_interaction(&rec));
        if i % 2 == 0 {
            let rating = if i % 6 == 0 { Rating::Down } else { Rating::Up };
            let comment = (rating == Rating::Down).then_some("Tell me the exact time please.");
            // Ratings spread over the last two weeks, for the trend chart.
            let mut given = feedback(
                TENANT,
                id,
                &format!("user-{}", i % 5),
                Some(rating),
                comment,
                None,
            );
            given.at = now - Duration::from_secs(86_400 * (i as u64 % 14));
            rows.push(row_for_feedback(&given));
        }
        ids.push((topic, id.0));
    }
    for i in 0..4 {
        let rec = record(
            "globex",
            "g-user",
            &format!("Globex question {i}"),
            "An answer.",
            now - Duration::from_secs(600 * i),
        );
        rows.extend(rows_for_interaction(&rec));
    }
    store.write_rows(&rows).await.unwrap();

    let sources = |topic: usize| -> Vec<Uuid> {
        ids.iter()
            .filter(|(t, _)| *t == topic)
            .map(|(_, id)| *id)
            .collect()
    };
    let cooking_v1 = ClusterSpec {
        id: "c0",
        mode: Mode::Primary,
        gap: (0.1, 0.2, 0.3),
        win: (6, 10),
        rules: &[("State the exact cooking time in minutes.", 4, true)],
    };
    let cooking = ClusterSpec {
        id: "c0",
        mode: Mode::Primary,
        gap: (0.12, 0.21, 0.34),
        win: (10, 14),
        rules: &[
            ("State the exact cooking time in minutes.", 6, true),
            ("Say whether to salt the water.", 3, true),
            ("Offer a vegetarian alternative.", 1, false),
        ],
    };
    let tax_v2 = ClusterSpec {
        id: "c1",
        mode: Mode::Primary,
        gap: (0.3, 0.4, 0.5),
        win: (5, 9),
        rules: &[("Cite the official tax form number.", 4, true)],
    };
    let tax = ClusterSpec {
        id: "c1",
        mode: Mode::Reflective,
        gap: (0.44, 0.58, 0.77),
        win: (7, 11),
        rules: &[
            ("Cite the official tax form number.", 5, true),
            ("Say which tax year the answer applies to.", 3, true),
        ],
    };
    let format = ClusterSpec {
        id: "c2",
        mode: Mode::Passthrough,
        gap: (0.05, 0.11, 0.2),
        win: (3, 7),
        rules: &[("Use bullet points for lists of steps.", 2, false)],
    };
    let decide = |spec: &ClusterSpec<'_>| {
        let (wins, logs) = spec.win;
        let rate = wins as f64 / logs as f64;
        match spec.mode {
            Mode::Primary => format!(
                "primary: gap {:.2} below 0.40 and win rate {rate:.2} >= 0.55 over {logs} logs",
                spec.gap.0
            ),
            Mode::Reflective => format!(
                "reflective: gap {:.2} >= 0.40, the model lacks this; win rate {rate:.2} over {logs} logs",
                spec.gap.0
            ),
            Mode::Passthrough => format!("passthrough: win rate {rate:.2} below 0.55"),
        }
    };
    let build = |specs: &[&ClusterSpec<'_>], logs: usize| {
        snapshot(
            specs
                .iter()
                .map(|s| {
                    let topic = s.id[1..].parse::<usize>().unwrap();
                    cluster(s, &sources(topic), &decide(s))
                })
                .collect(),
            logs,
        )
    };
    let versions = [
        (build(&[&cooking_v1], 12), "worker rebuild"),
        (build(&[&cooking_v1, &tax_v2], 24), "worker rebuild"),
        (
            build(&[&cooking, &tax, &format], 36),
            "worker rebuild: 12 new learning logs",
        ),
    ];
    let mut published = Vec::new();
    for (snapshot, note) in &versions {
        published.push(
            store
                .publish_snapshot(snapshot, note)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let rules: Vec<&str> = [&cooking, &tax, &format]
        .iter()
        .flat_map(|s| s.rules.iter().map(|r| r.0))
        .collect();
    json!({
        "tenant": TENANT,
        "clusters": ["c0", "c1", "c2"],
        "rules": rules,
        "versions": published,
        "active": published.last(),
    })
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by scripts/ci/ui-browser.sh"]
async fn the_dashboard_signs_in_shows_what_was_learned_and_rolls_back() {
    let root = repo_root();
    let spec = root.join("scripts/ui-test/ui.spec.mjs");
    assert!(
        root.join("scripts/ui-test/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is not installed: run `npm ci` in scripts/ui-test (scripts/ci/ui-browser.sh does)"
    );
    let (db, store) = fresh(Backend::Sqlite).await;
    let expect = seed(&store).await;
    store.close().await;
    let dir = scratch(&db);
    let serve = serve(&db.url, &dir).await;
    let base = format!("http://{}", serve.addr);
    let status = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&spec)
            .arg(&base)
            .arg(ADMIN_KEY)
            .arg(expect.to_string())
            .current_dir(&root)
            .stdin(Stdio::null())
            .status()
            .expect("cannot run node")
    })
    .await
    .unwrap();
    drop(serve);
    assert!(
        status.success(),
        "ui.spec.mjs failed ({status}); its output above says where"
    );
}
