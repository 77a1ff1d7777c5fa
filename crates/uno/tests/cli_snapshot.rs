//! `uno snapshot list|show|diff|activate|rollback` against real databases,
//! with snapshots published through the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use uno_testkit::both_backends;

use cli_common::{fresh, uno};
use serde_json::Value;
use uno_core::snapshot::{ClusterExperience, Gap, Lift, Mode, Rule, Snapshot, Validation};
use uno_store::Store;
use uno_testkit::Backend;
use uuid::Uuid;

both_backends! {
    snapshots_are_listed_shown_and_diffed,
    activate_and_rollback_move_the_active_version,
    missing_snapshots_are_explained,
}

fn cluster(id: &str, mode: Mode, rules: &[(&str, usize, bool)]) -> ClusterExperience {
    ClusterExperience {
        id: id.into(),
        size: 12,
        lang: "en".into(),
        centroid: vec![1.0, 0.0],
        unseen_threshold: 0.5,
        route_centroid: vec![1.0, 0.0],
        route_threshold: 0.5,
        mode,
        decision: format!("{} because the test says so", mode.as_str()),
        gap: Gap {
            min: 0.512,
            mean: 0.6,
            max: 0.7,
            scored_logs: 10,
        },
        high_gap: true,
        validation: Some(Validation {
            win_rate: 0.6,
            logs: 5,
            wins: 3,
            ties: 0,
            guarded: 0,
        }),
        block: String::new(),
        rules: rules
            .iter()
            .map(|(text, support, served)| {
                Rule::new(
                    *text,
                    *support,
                    (0..*support).map(|_| Uuid::now_v7()).collect(),
                    *served,
                )
            })
            .collect(),
        ..ClusterExperience::default()
    }
}

fn snapshot(tenant: &str, clusters: Vec<ClusterExperience>) -> Snapshot {
    Snapshot {
        embedder_id: "hash:8".into(),
        dim: 2,
        route_embedder: "hashing:v1:2".into(),
        logs: 40,
        clusters,
        ..Snapshot::empty(tenant)
    }
}

/// Tenant `default`: version 1 (cluster 0 primary with rules a, b served),
/// version 2 (cluster 0 reflective with a, c served and b not; cluster 1
/// new), version 2 active. Tenant `other`: one version.
async fn seed(store: &Store) {
    let v1 = snapshot(
        "default",
        vec![cluster(
            "0",
            Mode::Primary,
            &[("Cite the article.", 3, true), ("Be brief.", 4, true)],
        )],
    );
    let v2 = snapshot(
        "default",
        vec![
            cluster(
                "0",
                Mode::Reflective,
                &[
                    ("Cite the article.", 5, true),
                    ("Be brief.", 2, false),
                    ("List the exceptions.", 3, true),
                ],
            ),
            ClusterExperience {
                lift: Some(Lift {
                    treated_rated: 50,
                    treated_down: 23,
                    holdout_rated: 20,
                    holdout_down: 2,
                    z: 2.8397,
                }),
                ..cluster("1", Mode::Passthrough, &[])
            },
        ],
    );
    assert_eq!(
        store.publish_snapshot(&v1, "worker").await.unwrap(),
        Some(1)
    );
    assert_eq!(
        store.publish_snapshot(&v2, "worker").await.unwrap(),
        Some(2)
    );
    let other = snapshot(
        "other",
        vec![cluster("9", Mode::Primary, &[("x", 3, true)])],
    );
    assert_eq!(
        store.publish_snapshot(&other, "other note").await.unwrap(),
        Some(1)
    );
}

async fn active(store: &Store, tenant: &str) -> Option<i64> {
    store.active_snapshot_version(tenant).await.unwrap()
}

async fn snapshots_are_listed_shown_and_diffed(backend: Backend) {
    let (db, store) = fresh(backend).await;
    seed(&store).await;

    let all = uno(&db, &["snapshot", "list"]).await.ok();
    for expected in [
        "TENANT",
        "VERSION",
        "ACTIVE",
        "default",
        "other",
        "other note",
        "hash:8",
    ] {
        assert!(all.stdout.contains(expected), "{expected}: {all:?}");
    }
    let listed = uno(&db, &["snapshot", "list", "--tenant", "default"])
        .await
        .ok();
    assert!(!listed.stdout.contains("other"), "{listed:?}");
    let rows: Vec<Vec<&str>> = listed
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{listed:?}");
    // Newest first; the active marker on version 2 only; RFC 3339 times.
    assert_eq!(&rows[0][..2], ["default", "2"]);
    assert_eq!(rows[0][3], "*");
    assert_eq!(&rows[1][..2], ["default", "1"]);
    assert_ne!(rows[1][3], "*");
    assert!(
        chrono::DateTime::parse_from_rfc3339(rows[0][2]).is_ok(),
        "{listed:?}"
    );

    // show: the active version of the default tenant.
    let shown = uno(&db, &["snapshot", "show"]).await.ok();
    for expected in [
        "version 2 (active)",
        "cluster 0: 12 logs, mode reflective, gap min 0.512 (high), win rate 0.600",
        "reflective because the test says so",
        "- Cite the article. [support 5, 5 sources]",
        "- List the exceptions. [support 3, 3 sources]",
        "cluster 1: 12 logs, mode passthrough",
        "lift: treated rated down 23/50, holdout 2/20, z 2.84",
    ] {
        assert!(shown.stdout.contains(expected), "{expected}: {shown:?}");
    }
    assert!(
        !shown.stdout.contains("Be brief."),
        "unserved rule shown: {shown:?}"
    );

    let json = uno(&db, &["snapshot", "show", "v1", "--json"]).await.ok();
    let parsed: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed["version"], 1);
    assert_eq!(parsed["tenant"], "default");
    assert_eq!(parsed["clusters"][0]["mode"], "primary");

    let diffed = uno(&db, &["snapshot", "diff", "1", "2"]).await.ok();
    for expected in [
        "version 1 -> version 2",
        "+ cluster 1",
        "~ cluster 0: mode primary -> reflective",
        "+ rule: List the exceptions.",
        "- rule: Be brief.",
    ] {
        assert!(diffed.stdout.contains(expected), "{expected}: {diffed:?}");
    }
    let same = uno(&db, &["snapshot", "diff", "--tenant", "other", "1", "1"])
        .await
        .ok();
    assert!(same.stdout.contains("no changes"), "{same:?}");

    // Read-only commands change nothing.
    assert_eq!(active(&store, "default").await, Some(2));
    assert!(store.audit_entries(None).await.unwrap().is_empty());
}

async fn activate_and_rollback_move_the_active_version(backend: Backend) {
    let (db, store) = fresh(backend).await;
    seed(&store).await;

    let run = uno(&db, &["snapshot", "activate", "1"]).await.ok();
    assert!(run.stdout.contains("activated version 1"), "{run:?}");
    assert_eq!(active(&store, "default").await, Some(1));
    assert_eq!(active(&store, "other").await, Some(1));

    // Version 1 is the oldest: nothing to roll back to.
    let oldest = uno(&db, &["snapshot", "rollback"]).await.failed();
    assert!(oldest.stderr.contains("oldest"), "{oldest:?}");
    assert_eq!(active(&store, "default").await, Some(1));

    uno(&db, &["snapshot", "activate", "--tenant", "default", "2"])
        .await
        .ok();
    assert_eq!(active(&store, "default").await, Some(2));

    let run = uno(&db, &["snapshot", "rollback", "--tenant", "default"])
        .await
        .ok();
    assert!(
        run.stdout.contains("from version 2 to version 1"),
        "{run:?}"
    );
    assert_eq!(active(&store, "default").await, Some(1));

    // Activating the active version changes nothing and is not audited.
    let again = uno(&db, &["snapshot", "activate", "--tenant", "default", "1"])
        .await
        .ok();
    assert!(again.stdout.contains("already active"), "{again:?}");

    let unknown = uno(&db, &["snapshot", "activate", "9"]).await.failed();
    assert!(
        unknown.stderr.contains("no snapshot version 9")
            && unknown
                .stderr
                .contains("uno snapshot list --tenant default"),
        "{unknown:?}"
    );
    assert_eq!(active(&store, "default").await, Some(1));

    let audit = store.audit_entries(Some("default")).await.unwrap();
    let actions: Vec<(&str, &str, Option<&str>)> = audit
        .iter()
        .map(|a| (a.actor.as_str(), a.action.as_str(), a.subject.as_deref()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("cli", "snapshot_activate", Some("1")),
            ("cli", "snapshot_activate", Some("2")),
            ("cli", "snapshot_rollback", Some("1")),
        ]
    );
    // The same record the admin API writes for the same action.
    assert_eq!(audit[2].details["previous"], 2);
    assert_eq!(audit[2].details["version"], 1);
    assert_eq!(audit[1].details["previous"], 1);
}

async fn missing_snapshots_are_explained(backend: Backend) {
    let (db, store) = fresh(backend).await;

    let empty = uno(&db, &["snapshot", "list"]).await.ok();
    assert!(empty.stderr.contains("no snapshots"), "{empty:?}");
    let show = uno(&db, &["snapshot", "show", "--tenant", "nobody"])
        .await
        .failed();
    assert!(show.stderr.contains("has no snapshots yet"), "{show:?}");
    let rollback = uno(&db, &["snapshot", "rollback"]).await.failed();
    assert!(
        rollback.stderr.contains("no active snapshot"),
        "{rollback:?}"
    );

    seed(&store).await;
    let show = uno(&db, &["snapshot", "show", "5"]).await.failed();
    assert!(
        show.stderr.contains("no snapshot version 5") && show.stderr.contains("uno snapshot list"),
        "{show:?}"
    );
    let diff = uno(&db, &["snapshot", "diff", "1", "3"]).await.failed();
    assert!(diff.stderr.contains("no snapshot version 3"), "{diff:?}");
    let bad = uno(&db, &["snapshot", "activate", "latest"]).await.failed();
    assert!(bad.stderr.contains("not a snapshot version"), "{bad:?}");
}
