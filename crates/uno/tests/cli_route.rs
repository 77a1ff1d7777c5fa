//! `uno route --tenant T "text"` against real databases: a snapshot with
//! routing data is published through the store, and the command explains
//! where a text goes (the user's words, every cluster's distance and
//! threshold, the path, the block), as the admin API and the proxy decide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use cli_common::{fresh, scratch, uno};
use serde_json::{Value, json};
use uno_core::cluster::{centroids, unseen_thresholds};
use uno_core::config::LearnConfig;
use uno_core::snapshot::{ClusterExperience, Mode, Rule, Snapshot};
use uno_testkit::{Backend, both_backends};

both_backends! {
    route_explains_where_a_text_goes,
}

const BLOCK: &str = "Lessons from past users on requests like this one. Follow them where they apply:\n1. State the exact cooking time in minutes.";

fn cooking(i: usize) -> String {
    format!("How long should I boil spaghetti pasta batch {i} for dinner tonight?")
}

fn tax(i: usize) -> String {
    format!("Which tax form should I file for freelance income source {i} this year?")
}

/// A cluster routed in the default routing space, its threshold a margin
/// beyond its farthest member.
fn cluster(id: &str, mode: Mode, members: &[String], rules: &[&str]) -> ClusterExperience {
    let embedder = uno_learn::build::route_embedder(&LearnConfig::default()).unwrap();
    let dim = LearnConfig::default().route_dim;
    let points: Vec<f32> = members.iter().flat_map(|m| embedder.embed_one(m)).collect();
    let labels = vec![0; members.len()];
    let centroid = centroids(&points, dim, &labels, 1).unwrap();
    let farthest = unseen_thresholds(&points, dim, &labels, &centroid, 1.0).unwrap()[0];
    ClusterExperience {
        id: id.into(),
        size: members.len(),
        route_centroid: centroid,
        route_threshold: farthest * 1.5,
        mode,
        block: if mode == Mode::Primary {
            BLOCK.into()
        } else {
            String::new()
        },
        rules: rules
            .iter()
            .map(|t| Rule::new(*t, 3, vec![], true))
            .collect(),
        ..ClusterExperience::default()
    }
}

fn snapshot() -> Snapshot {
    let cooking: Vec<String> = (0..10).map(cooking).collect();
    let taxes: Vec<String> = (0..10).map(tax).collect();
    Snapshot {
        embedder_id: "hashing:v1:256+user-words:v1".into(),
        route_embedder: format!("hashing:v1:{}", LearnConfig::default().route_dim),
        logs: 20,
        clusters: vec![
            cluster(
                "0",
                Mode::Primary,
                &cooking,
                &["State the exact cooking time in minutes."],
            ),
            cluster("1", Mode::Reflective, &taxes, &["Cite the form number."]),
        ],
        ..Snapshot::empty("acme")
    }
}

async fn route_explains_where_a_text_goes(backend: Backend) {
    let (db, store) = fresh(backend).await;
    let version = store
        .publish_snapshot(&snapshot(), "test")
        .await
        .unwrap()
        .unwrap();

    // Primary: the block that would be added.
    let run = uno(&db, &["route", "--tenant", "acme", &cooking(42)])
        .await
        .ok();
    let out = &run.stdout;
    assert!(
        out.contains(&format!("tenant acme, snapshot version {version}")),
        "{out}"
    );
    assert!(out.contains(&format!("  {}", cooking(42))), "{out}");
    assert!(
        out.contains("cluster: 0\n") && out.contains("path: primary\n"),
        "{out}"
    );
    assert!(
        out.contains("1. State the exact cooking time in minutes."),
        "{out}"
    );
    let table = out
        .split("clusters, nearest first:\n")
        .nth(1)
        .expect("a distance table");
    let rows: Vec<&str> = table.lines().skip(1).take(2).collect();
    assert!(
        rows[0].trim_start().starts_with("0 ") && rows[0].ends_with("within"),
        "{out}"
    );
    assert!(
        rows[1].trim_start().starts_with("1 ") && !rows[1].ends_with("within"),
        "{out}"
    );

    // Reflective: the critic's rules.
    let run = uno(&db, &["route", "--tenant", "acme", &tax(42)])
        .await
        .ok();
    assert!(run.stdout.contains("path: reflective"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("rules the critic is shown:\n  1. Cite the form number."),
        "{}",
        run.stdout
    );

    // Unseen, as JSON.
    let run = uno(
        &db,
        &[
            "route",
            "--tenant",
            "acme",
            "--json",
            "Explain quantum chromodynamics to a physicist",
        ],
    )
    .await
    .ok();
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["cluster"], Value::Null);
    assert_eq!(json["path"], "passthrough");
    assert_eq!(json["clusters"].as_array().unwrap().len(), 2);

    // A whole conversation under a long system prompt: the user's words,
    // with the question before a short follow-up.
    let request = json!({"model": "m", "messages": [
        {"role": "system", "content": "You are ACME's assistant. ".repeat(80)},
        {"role": "user", "content": cooking(7)},
        {"role": "assistant", "content": "Ten minutes."},
        {"role": "user", "content": "and penne?"},
    ]});
    let file = scratch(&db).join("request.json");
    std::fs::write(&file, request.to_string()).unwrap();
    let run = uno(
        &db,
        &[
            "route",
            "--tenant",
            "acme",
            "--json",
            "--request",
            file.to_str().unwrap(),
        ],
    )
    .await
    .ok();
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["text"], format!("{}\n\nand penne?", cooking(7)));

    // No snapshot: said so; no text: refused.
    let run = uno(&db, &["route", "--tenant", "nobody", "hello"])
        .await
        .ok();
    assert!(run.stdout.contains("no active snapshot"), "{}", run.stdout);
    uno(&db, &["route", "--tenant", "acme"]).await.failed();
}
