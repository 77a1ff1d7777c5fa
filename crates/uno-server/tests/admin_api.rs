//! The admin API end to end, on both databases: a seeded store
//! ([`uno_testkit::seed::seed_demo`]) behind the real app, every endpoint's
//! answer checked against what the store holds, every bad input a 4xx, and
//! rule overrides changing the served block at once and surviving the
//! worker's next rebuild.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::snapshots::{cluster, snapshot};
use common::{KEY, TestApp, test_config};
use serde_json::{Value, json};
use uno_core::config::{Config, EmbedderKind, LearnConfig};
use uno_core::snapshot::Mode;
use uno_learn::overrides::rule_id;
use uno_learn::{LogProgress, Worker, stages};
use uno_llm::{HashingEmbedder, UpstreamClient};
use uno_store::Store;
use uno_testkit::learn::ready_logs;
use uno_testkit::seed::{SeedSummary, seed_demo};
use uno_testkit::{
    Backend, MockReply, MockUpstream, TestDatabase, both_backends, validation_model,
};
use uuid::Uuid;

both_backends! {
    tenants_keys_and_the_admin_key,
    interactions_page_filter_and_stay_within_their_tenant,
    clusters_snapshots_activation_and_rollback,
    rule_overrides_publish_a_new_block_at_once,
    rule_overrides_survive_the_workers_rebuild,
    export_worker_stats_and_learned,
    bad_parameters_are_400s,
    route_explains_a_decision_with_the_proxys_own_routing,
}

const ADMIN: &str = "admin-key-for-tests-0123";

struct Admin {
    app: TestApp,
    seed: SeedSummary,
    _db: TestDatabase,
    _mock: MockUpstream,
}

async fn start(backend: Backend) -> Admin {
    let mock = MockUpstream::start().await;
    let db = TestDatabase::new(backend).await;
    let mut config = test_config(&mock.base_url());
    config.admin.key = Some(ADMIN.to_owned());
    let app = TestApp::start_with_store(config, &db.url).await;
    let seed = seed_demo(app.store()).await;
    Admin {
        app,
        seed,
        _db: db,
        _mock: mock,
    }
}

impl Admin {
    async fn call(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let response = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::POST, path).await;
        assert_eq!(status, 200, "POST {path}: {body}");
        body
    }

    /// Asserts an OpenAI-shaped error with `status`.
    async fn fails(&self, method: reqwest::Method, path: &str, status: u16) -> Value {
        let (got, body) = self.call(method, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{path}: not an OpenAI-shaped error: {body}"
        );
        body
    }

    fn store(&self) -> &Store {
        self.app.store()
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn tenants_keys_and_the_admin_key(backend: Backend) {
    let a = start(backend).await;
    // Without the admin key, with a wrong one or a client key: 401.
    let url = a.app.url("/admin/v1/tenants");
    for key in [
        None,
        Some("wrong"),
        Some(KEY),
        Some(a.seed.acme.key.as_str()),
    ] {
        let mut request = a.app.client.get(&url);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "key {key:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error");
    }
    // The document needs no key.
    let doc: Value = a
        .app
        .client
        .get(a.app.url("/admin/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");

    let tenants = a.get("/admin/v1/tenants").await;
    let data = tenants["data"].as_array().unwrap();
    let names: Vec<&str> = data.iter().map(|t| t["tenant"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme", "globex"]);
    assert_eq!(data[0]["interactions"], a.seed.acme.interactions.len());
    assert_eq!(data[0]["interactions"], 33);
    assert_eq!(data[0]["keys_active"], 1, "web active, old revoked");
    assert_eq!(data[0]["snapshot_version"], 3);
    assert_eq!(data[1]["interactions"], 13);
    assert_eq!(data[1]["snapshot_version"], 2);
    assert!(
        data[0]["last_interaction_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let keys = a.get("/admin/v1/tenants/acme/keys").await;
    let keys = keys["data"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k["revoked_at"].is_null()).count(), 1);
    let text = serde_json::to_string(keys).unwrap();
    assert!(!text.contains(&a.seed.acme.key), "a secret leaked");
    assert!(
        keys.iter()
            .all(|k| k.get("key").is_none() && k.get("hash").is_none())
    );

    // Create: 201 and the secret once; it works on /v1 after the refresh.
    let created = a
        .app
        .client
        .post(a.app.url("/admin/v1/tenants/acme/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert!(created["key"].as_str().unwrap().starts_with("uno-sk-"));
    assert_eq!(created["name"], "ci");
    assert_eq!(created["tenant"], "acme");
    let stored = a.store().list_keys(Some("acme")).await.unwrap();
    assert_eq!(stored.len(), 3);
    let id = created["id"].as_str().unwrap();
    // Another tenant's path: 404, and the key stays active.
    a.fails(
        reqwest::Method::DELETE,
        &format!("/admin/v1/tenants/globex/keys/{id}"),
        404,
    )
    .await;
    let revoked = a
        .call(
            reqwest::Method::DELETE,
            &format!("/admin/v1/tenants/acme/keys/{id}"),
        )
        .await;
    assert_eq!(revoked, (200, json!({"id": id, "revoked": true})));
    let stored = a.store().list_keys(Some("acme")).await.unwrap();
    assert!(
        stored
            .iter()
            .any(|k| k.id.to_string() == id && k.revoked_at.is_some())
    );
    let audit = a.store().audit_entries(None).await.unwrap();
    let by_api: Vec<&str> = audit
        .iter()
        .filter(|e| e.actor == "admin-api")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(by_api, ["key_create", "key_revoke"]);
    a.fails(
        reqwest::Method::DELETE,
        &format!("/admin/v1/tenants/acme/keys/{}", Uuid::now_v7()),
        404,
    )
    .await;
    a.fails(reqwest::Method::GET, "/admin/v1/tenants/nobody/keys", 404)
        .await;
    // A body that is not the expected JSON: 400.
    let bad = a
        .app
        .client
        .post(a.app.url("/admin/v1/tenants/acme/keys"))
        .bearer_auth(ADMIN)
        .body(r#"{"name": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

async fn interactions_page_filter_and_stay_within_their_tenant(backend: Backend) {
    let a = start(backend).await;
    // Paging: every interaction once, newest first.
    let mut seen = Vec::new();
    let mut times = Vec::new();
    let mut path = "/admin/v1/tenants/acme/interactions?limit=7".to_owned();
    loop {
        let page = a.get(&path).await;
        assert!(page["data"].as_array().unwrap().len() <= 7);
        for i in page["data"].as_array().unwrap() {
            seen.push(i["id"].as_str().unwrap().to_owned());
            times.push(i["created_at"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(next) => {
                path = format!("/admin/v1/tenants/acme/interactions?limit=7&before={next}")
            }
            None => break,
        }
    }
    let expected: HashSet<String> = a
        .seed
        .acme
        .interactions
        .iter()
        .map(Uuid::to_string)
        .collect();
    assert_eq!(seen.len(), expected.len(), "no repeats, nothing skipped");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), expected);
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Filters.
    let down = a
        .get("/admin/v1/tenants/acme/interactions?rated=down&limit=200")
        .await;
    let down = down["data"].as_array().unwrap();
    assert_eq!(down.len(), a.seed.acme.downs);
    assert!(down.iter().all(|i| {
        i["feedback"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rating"] == "down")
    }));
    let up = a
        .get("/admin/v1/tenants/acme/interactions?rated=up&limit=200")
        .await;
    assert_eq!(up["data"].as_array().unwrap().len(), a.seed.acme.ups);
    let alice = a
        .get("/admin/v1/tenants/acme/interactions?user=alice&limit=200")
        .await;
    let alice = alice["data"].as_array().unwrap();
    assert!(!alice.is_empty() && alice.iter().all(|i| i["user"] == "alice"));
    let first = &alice[0];
    assert!(
        first["query"]
            .as_str()
            .is_some_and(|q| q.chars().count() <= 200)
    );

    // Detail: content, feedback with its source, reflective draft.
    let continued = a.seed.acme.implicit[0];
    let detail = a
        .get(&format!("/admin/v1/tenants/acme/interactions/{continued}"))
        .await;
    assert_eq!(detail["id"], continued.to_string());
    assert!(detail["content_retained"].as_bool().unwrap());
    assert_eq!(detail["messages"][1]["role"], "user");
    assert!(detail["response"].as_str().is_some());
    let feedback = detail["feedback"].as_array().unwrap();
    assert!(
        feedback.iter().any(|f| f["source"] == "implicit"
            && f["comment"]
                .as_str()
                .is_some_and(|c| c.contains("not specific enough"))),
        "{detail}"
    );
    let stored = a.store().feedback_for("acme", continued).await.unwrap();
    assert_eq!(feedback.len(), stored.len());
    let reflective = a.get("/admin/v1/tenants/acme/interactions?limit=200").await["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == "reflective")
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .unwrap();
    let detail = a
        .get(&format!("/admin/v1/tenants/acme/interactions/{reflective}"))
        .await;
    assert!(detail["draft"].as_str().is_some() && detail["critique"].as_str().is_some());
    assert_eq!(detail["snapshot"], 3);

    // Another tenant's interaction is a 404, as an unknown one.
    let theirs = a.seed.globex.interactions[0];
    a.fails(
        reqwest::Method::GET,
        &format!("/admin/v1/tenants/acme/interactions/{theirs}"),
        404,
    )
    .await;
    a.fails(
        reqwest::Method::GET,
        &format!("/admin/v1/tenants/acme/interactions/{}", Uuid::now_v7()),
        404,
    )
    .await;
    // A cursor from another tenant is a 400, not a silent empty page.
    a.fails(
        reqwest::Method::GET,
        &format!("/admin/v1/tenants/acme/interactions?before={theirs}"),
        400,
    )
    .await;
    a.fails(
        reqwest::Method::GET,
        "/admin/v1/tenants/nobody/interactions",
        404,
    )
    .await;
}

async fn clusters_snapshots_activation_and_rollback(backend: Backend) {
    let a = start(backend).await;
    let clusters = a.get("/admin/v1/tenants/acme/clusters").await;
    assert_eq!(clusters["snapshot_version"], 3);
    let data = clusters["data"].as_array().unwrap();
    assert_eq!(ids(&clusters), ["0", "1", "2"]);
    let modes: Vec<&str> = data.iter().map(|c| c["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["primary", "reflective", "passthrough"]);
    let tax = &data[0];
    assert_eq!(tax["win_rate"], 0.68);
    assert_eq!(tax["validation"]["logs"], 5);
    assert_eq!(tax["lift"]["treated_rated"], 6);
    let rules = tax["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 3);
    for r in rules {
        assert_eq!(r["id"], rule_id("0", r["text"].as_str().unwrap()));
        assert!(r["override"].is_null());
    }
    assert_eq!(
        rules
            .iter()
            .map(|r| r["served"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(rules[0]["support"], 4);
    assert_eq!(rules[0]["sources"].as_array().unwrap().len(), 4);
    // Treated against holdout, as the store counts the served traffic.
    let since = chrono::Utc::now().timestamp_micros() - 30 * 86_400_000_000;
    let ratings = a.store().cluster_ratings("acme", since).await.unwrap();
    let r0 = ratings.iter().find(|r| r.cluster_id == "0").unwrap();
    assert!(r0.treated_rated > 0 && r0.holdout_rated > 0);
    assert_eq!(tax["treated"]["rated"], r0.treated_rated);
    assert_eq!(tax["treated"]["down"], r0.treated_down);
    assert_eq!(tax["holdout"]["rated"], r0.holdout_rated);

    let list = a.get("/admin/v1/tenants/acme/snapshots").await;
    let versions: Vec<i64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2, 1]);
    assert_eq!(list["data"][0]["active"], true);
    assert_eq!(list["data"][1]["active"], false);
    assert_eq!(list["data"][0]["clusters"], 3);
    assert_eq!(list["data"][0]["rules"], 3, "served rules: 2 + 1 + 0");
    assert_eq!(list["data"][0]["modes"]["reflective"], 1);

    let two = a.get("/admin/v1/tenants/acme/snapshots/2").await;
    assert_eq!(two["version"], 2);
    assert_eq!(two["clusters"].as_array().unwrap().len(), 2);
    a.fails(
        reqwest::Method::GET,
        "/admin/v1/tenants/acme/snapshots/99",
        404,
    )
    .await;
    a.fails(
        reqwest::Method::GET,
        "/admin/v1/tenants/globex/snapshots/3",
        404,
    )
    .await;

    let diff = a
        .get("/admin/v1/tenants/acme/snapshots/diff?from=2&to=3")
        .await;
    assert_eq!(diff["added"], json!(["2"]));
    assert_eq!(diff["removed"], json!([]));
    let changed = diff["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["id"], "0");
    assert_eq!(
        changed[0]["rules_added"],
        json!(["Give the filing deadline."])
    );
    let diff = a
        .get("/admin/v1/tenants/acme/snapshots/diff?from=1&to=2")
        .await;
    let modes: Vec<&Value> = diff["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["mode"])
        .collect();
    assert!(modes.contains(&&json!({"from": "passthrough", "to": "primary"})));

    // Activate 1: the oldest, so a rollback has nowhere to go.
    let active = a.post("/admin/v1/tenants/acme/snapshots/1/activate").await;
    assert_eq!(active, json!({"active_version": 1, "previous_version": 3}));
    assert_eq!(
        a.store().active_snapshot_version("acme").await.unwrap(),
        Some(1)
    );
    assert_eq!(a.app.snapshots.version("acme"), Some(1), "served at once");
    a.fails(
        reqwest::Method::POST,
        "/admin/v1/tenants/acme/snapshots/rollback",
        409,
    )
    .await;
    a.post("/admin/v1/tenants/acme/snapshots/3/activate").await;
    let back = a.post("/admin/v1/tenants/acme/snapshots/rollback").await;
    assert_eq!(back, json!({"active_version": 2, "previous_version": 3}));
    assert_eq!(
        a.store().active_snapshot_version("acme").await.unwrap(),
        Some(2)
    );
    assert_eq!(a.app.snapshots.version("acme"), Some(2));
    a.fails(
        reqwest::Method::POST,
        "/admin/v1/tenants/acme/snapshots/7/activate",
        404,
    )
    .await;
    a.fails(
        reqwest::Method::POST,
        "/admin/v1/tenants/nobody/snapshots/rollback",
        404,
    )
    .await;
    let audit = a.store().audit_entries(Some("acme")).await.unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .filter(|e| e.actor == "admin-api")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "snapshot_activate",
            "snapshot_activate",
            "snapshot_rollback"
        ]
    );
}

async fn rule_overrides_publish_a_new_block_at_once(backend: Backend) {
    let a = start(backend).await;
    let cite = rule_id("0", "Cite the exact form number and line.");
    let link = rule_id("0", "Link to the official instructions.");

    // Approve a rule below support: served, in the block of a new version.
    let approved = a
        .post(&format!("/admin/v1/tenants/acme/rules/{link}/approve"))
        .await;
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["served"], true);
    assert_eq!(approved["snapshot_version"], 4);
    let active = a.store().snapshot("acme", None).await.unwrap().unwrap();
    assert_eq!(active.version, 4);
    let tax = &active.clusters[0];
    assert!(
        tax.block.contains("Link to the official instructions."),
        "{}",
        tax.block
    );
    assert!(tax.block.contains("Cite the exact form number and line."));
    assert_eq!(tax.mode, Mode::Primary);
    assert_eq!(a.app.snapshots.version("acme"), Some(4), "served at once");
    // Other clusters are untouched.
    let before = a.store().snapshot("acme", Some(3)).await.unwrap().unwrap();
    assert_eq!(active.clusters[1], before.clusters[1]);

    // Disable a served rule: out of the block of the next version.
    let disabled = a
        .post(&format!("/admin/v1/tenants/acme/rules/{cite}/disable"))
        .await;
    assert_eq!(
        (disabled["state"].clone(), disabled["served"].clone()),
        (json!("disabled"), json!(false))
    );
    let active = a.store().snapshot("acme", None).await.unwrap().unwrap();
    assert_eq!(active.version, 5);
    assert!(!active.clusters[0].block.contains("Cite the exact form"));
    assert!(
        active.clusters[0]
            .block
            .contains("Link to the official instructions.")
    );
    let clusters = a.get("/admin/v1/tenants/acme/clusters").await;
    let rules = clusters["data"][0]["rules"].as_array().unwrap();
    let of = |id: &str| rules.iter().find(|r| r["id"] == id).unwrap().clone();
    assert_eq!(of(&cite)["override"], "disabled");
    assert_eq!(of(&cite)["served"], false);
    assert_eq!(of(&link)["override"], "approved");

    // Reset: support decides again; the audit log has all three.
    let reset = a
        .post(&format!("/admin/v1/tenants/acme/rules/{cite}/reset"))
        .await;
    assert_eq!(reset["state"], "default");
    assert_eq!(reset["served"], true);
    let active = a.store().snapshot("acme", None).await.unwrap().unwrap();
    assert!(active.clusters[0].block.contains("Cite the exact form"));
    let overrides = a.store().rule_overrides("acme").await.unwrap();
    assert_eq!(overrides.len(), 1, "only the approval is left");
    let audit = a.store().audit_entries(Some("acme")).await.unwrap();
    assert_eq!(
        audit.iter().filter(|e| e.action == "rule_override").count(),
        3
    );

    // Unknown rules, and another tenant's: 404.
    a.fails(
        reqwest::Method::POST,
        "/admin/v1/tenants/acme/rules/0123456789abcdef/approve",
        404,
    )
    .await;
    a.fails(
        reqwest::Method::POST,
        &format!("/admin/v1/tenants/globex/rules/{cite}/approve"),
        404,
    )
    .await;
    a.fails(
        reqwest::Method::POST,
        &format!("/admin/v1/tenants/acme/rules/{cite}/promote"),
        400,
    )
    .await;
}

const TENANT: &str = "kitchen";
const RULE: &str = "State the exact cooking time in minutes.";
const SALT: &str = "Mention how much salt to add.";

async fn rule_overrides_survive_the_workers_rebuild(backend: Backend) {
    let mock = MockUpstream::builder()
        .default_reply(MockReply::respond(validation_model))
        .start()
        .await;
    let db = TestDatabase::new(backend).await;
    let mut config = test_config(&mock.base_url());
    config.admin.key = Some(ADMIN.to_owned());
    let app = TestApp::start_with_store(config, &db.url).await;
    let store = app.store().clone();
    let embedder = HashingEmbedder::new(256).unwrap();
    // Twenty users teach RULE; the first two distilled also teach SALT
    // (below support).
    let rules = |n: usize| {
        let mut rules = vec![RULE.to_owned()];
        if n <= 2 {
            rules.push(SALT.to_owned());
        }
        rules
    };
    let embed = |log| {
        let embedder = &embedder;
        async move { stages::embed(embedder, &log).await.unwrap() }
    };
    ready_logs(&store, TENANT, 20, rules, embed).await;
    let mut upstream = Config::default();
    upstream.upstreams[0].url = mock.base_url();
    upstream.http.max_retries = 0;
    let learn = LearnConfig {
        embedder: EmbedderKind::Hashing,
        hashing_dim: 256,
        min_validation_logs: 3,
        judge_samples: 1,
        lift_window_days: 0,
        ..LearnConfig::default()
    };
    let worker = Worker::new(
        store.clone(),
        learn,
        UpstreamClient::new(&upstream).unwrap(),
        Arc::new(embedder),
    );
    worker.rebuild(TENANT, &LogProgress).await.unwrap().unwrap();
    let built = store.snapshot(TENANT, None).await.unwrap().unwrap();
    let cluster = &built.clusters[0];
    assert_eq!(cluster.mode, Mode::Primary, "{}", cluster.decision);
    assert!(cluster.block.contains(RULE) && !cluster.block.contains(SALT));
    let a = Admin {
        app,
        seed: seed_demo(&store).await,
        _db: db,
        _mock: mock,
    };
    let salt = rule_id(&cluster.id, SALT);
    let minutes = rule_id(&cluster.id, RULE);
    a.post(&format!("/admin/v1/tenants/{TENANT}/rules/{salt}/approve"))
        .await;
    let disabled = a
        .post(&format!(
            "/admin/v1/tenants/{TENANT}/rules/{minutes}/disable"
        ))
        .await;
    let applied = store.snapshot(TENANT, None).await.unwrap().unwrap();
    assert_eq!(disabled["snapshot_version"], applied.version);
    assert!(applied.clusters[0].block.contains(SALT));
    assert!(!applied.clusters[0].block.contains(RULE));

    // The worker's next rebuild applies the stored overrides itself.
    worker.rebuild(TENANT, &LogProgress).await.unwrap();
    let rebuilt = store.snapshot(TENANT, None).await.unwrap().unwrap();
    let c = &rebuilt.clusters[0];
    let served: Vec<&str> = c.served_rules().map(|r| r.text.as_str()).collect();
    assert_eq!(served, [SALT], "{:#?}", c.rules);
    assert!(
        c.block.contains(SALT) && !c.block.contains(RULE),
        "{}",
        c.block
    );
    assert_eq!(c.mode, Mode::Primary, "{}", c.decision);
    assert!(c.validation.is_some(), "the overridden block was validated");
}

async fn export_worker_stats_and_learned(backend: Backend) {
    let a = start(backend).await;
    let response = a
        .app
        .client
        .get(a.app.url("/admin/v1/tenants/acme/export/sft"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let rated = a.store().rated_interactions("acme").await.unwrap();
    let expected = uno_store::export::build(
        &rated,
        uno_store::export::ExportKind::Sft,
        uno_store::export::ExportFormat::OpenAi,
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty());
    assert_eq!(
        lines,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let line: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(
        line["messages"].as_array().unwrap().last().unwrap()["role"],
        "assistant"
    );
    let dpo = a
        .app
        .client
        .get(a.app.url("/admin/v1/tenants/acme/export/dpo?format=trl"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first: Value = serde_json::from_str(dpo.lines().next().unwrap()).unwrap();
    assert!(first["chosen"].is_array() && first["rejected"].is_array());
    a.fails(
        reqwest::Method::GET,
        "/admin/v1/tenants/acme/export/csv",
        400,
    )
    .await;
    a.fails(
        reqwest::Method::GET,
        "/admin/v1/tenants/nobody/export/sft",
        404,
    )
    .await;

    let worker = a.get("/admin/v1/worker").await;
    assert_eq!(worker["logs"]["total"], 0, "the seed has no learning logs");
    assert!(worker["tenants"].as_array().unwrap().is_empty());

    let traffic = a.get("/admin/v1/stats/traffic?tenant=acme&hours=96").await;
    assert_eq!(traffic["bucket_seconds"], 3600);
    let hours = traffic["data"].as_array().unwrap();
    assert!(hours.len() == 96 || hours.len() == 97, "{}", hours.len());
    let sum = |key: &str| hours.iter().map(|h| h[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("requests"), 33);
    assert_eq!(sum("errors"), 1);
    let by_path = |p: &str| {
        hours
            .iter()
            .map(|h| h["by_path"][p].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        by_path("passthrough") + by_path("primary") + by_path("reflective") + by_path("holdout"),
        33
    );
    assert!(by_path("holdout") > 0 && by_path("reflective") > 0);
    let all = a.get("/admin/v1/stats/traffic?hours=96").await;
    let total: u64 = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 33 + 13);

    let feedback = a.get("/admin/v1/stats/feedback?tenant=acme&days=5").await;
    let days = feedback["data"].as_array().unwrap();
    assert_eq!(days.len(), 5);
    let sum = |key: &str| days.iter().map(|d| d[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("up") as usize, a.seed.acme.ups);
    assert_eq!(sum("down") as usize, a.seed.acme.downs);
    assert!(sum("text") as usize >= a.seed.acme.implicit.len());
    assert_eq!(days[4]["day"].as_str().unwrap().len(), 10);

    let learned = a.get("/admin/v1/tenants/acme/learned?days=7").await;
    assert_eq!(learned["snapshots"], json!([1, 2, 3]));
    assert_eq!(learned["active_version"], 3);
    assert!(learned["baseline_version"].is_null());
    let added: Vec<&str> = learned["rules_added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    assert!(added.contains(&"Cite the exact form number and line."));
    assert!(
        !added.contains(&"Link to the official instructions."),
        "not served"
    );
    assert!(
        learned["mode_changes"]
            .as_array()
            .unwrap()
            .contains(&json!({"cluster": "1", "from": null, "to": "reflective"}))
    );
}

async fn bad_parameters_are_400s(backend: Backend) {
    let a = start(backend).await;
    let get = reqwest::Method::GET;
    for path in [
        "/admin/v1/tenants/acme/interactions?limit=0",
        "/admin/v1/tenants/acme/interactions?limit=201",
        "/admin/v1/tenants/acme/interactions?limit=abc",
        "/admin/v1/tenants/acme/interactions?limit=-1",
        "/admin/v1/tenants/acme/interactions?rated=maybe",
        "/admin/v1/tenants/acme/interactions?before=not-a-uuid",
        "/admin/v1/tenants/acme/interactions?colour=red",
        "/admin/v1/tenants/acme/interactions/not-a-uuid",
        "/admin/v1/tenants/acme/snapshots/abc",
        "/admin/v1/tenants/acme/snapshots/diff?from=1",
        "/admin/v1/tenants/acme/snapshots/diff?from=x&to=2",
        "/admin/v1/tenants/acme/clusters?days=0",
        "/admin/v1/tenants/acme/learned?days=366",
        "/admin/v1/stats/traffic?hours=0",
        "/admin/v1/stats/traffic?hours=721",
        "/admin/v1/stats/feedback?days=abc",
        "/admin/v1/tenants/ac%00me/keys",
        "/admin/v1/tenants/acme/interactions?user=a%00b",
    ] {
        let body = a.fails(get.clone(), path, 400).await;
        assert_eq!(body["error"]["type"], "invalid_request_error", "{path}");
    }
    let limit = a
        .fails(
            get.clone(),
            "/admin/v1/tenants/acme/interactions?limit=0",
            400,
        )
        .await;
    assert_eq!(limit["error"]["param"], "limit");
    a.fails(get.clone(), "/admin/v1/stats/traffic?tenant=nobody", 404)
        .await;
    a.fails(get, "/admin/v1/tenants/nobody/clusters", 404).await;
}

impl Admin {
    /// `POST /admin/v1/tenants/{tenant}/route` with `body`.
    async fn route(&self, tenant: &str, body: Value) -> (u16, Value) {
        let response = self
            .app
            .client
            .post(self.app.url(&format!("/admin/v1/tenants/{tenant}/route")))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

fn cooking(i: usize) -> String {
    format!("How long should I boil spaghetti pasta batch {i} for dinner tonight?")
}

/// The explanation names the routing text (the user's words, with the
/// question before a short follow-up), every cluster's distance and
/// threshold nearest first, the cluster and path, and the block; and it
/// matches what the proxy does with the same request.
async fn route_explains_a_decision_with_the_proxys_own_routing(backend: Backend) {
    let a = start(backend).await;
    let members: Vec<String> = (0..10).map(cooking).collect();
    let taxes: Vec<String> = (0..10)
        .map(|i| format!("Which tax form should I file for freelance income source {i} this year?"))
        .collect();
    let published = snapshot(
        "acme",
        vec![
            cluster(
                "0",
                Mode::Primary,
                &members,
                &["State the exact cooking time."],
            ),
            cluster("1", Mode::Reflective, &taxes, &["Cite the form number."]),
        ],
    );
    let version = a
        .store()
        .publish_snapshot(&published, "test")
        .await
        .unwrap()
        .unwrap();

    let prompt = "You are ACME's assistant. ".repeat(80);
    let (status, primary) = a
        .route(
            "acme",
            json!({"messages": [
                {"role": "system", "content": prompt},
                {"role": "user", "content": cooking(50)},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{primary}");
    assert_eq!(primary["snapshot_version"], version);
    assert_eq!(
        primary["text"],
        cooking(50),
        "the system prompt is not read"
    );
    assert_eq!(primary["cluster"], "0");
    assert_eq!(primary["path"], "primary");
    assert_eq!(primary["block"], published.clusters[0].block);
    let clusters = primary["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 2);
    assert_eq!(clusters[0]["id"], "0");
    assert_eq!(clusters[0]["within"], true);
    assert!(clusters[0]["distance"].as_f64() <= clusters[1]["distance"].as_f64());
    assert_eq!(
        clusters[0]["threshold"].as_f64().unwrap() as f32,
        published.clusters[0].route_threshold
    );

    // The proxy serves the same request as explained, once it has loaded
    // the new version (it polls).
    let request = json!({"model": "mock-model", "messages": [
        {"role": "system", "content": prompt},
        {"role": "user", "content": cooking(50)},
    ]});
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let response = a
            .app
            .client
            .post(a.app.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&request)
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        if headers
            .get("x-uno-snapshot")
            .is_some_and(|v| v == version.to_string().as_str())
        {
            // The explained path, or the holdout share it names.
            assert!(primary["holdout_percent"].as_u64().unwrap() > 0);
            let path = headers["x-uno-path"].to_str().unwrap();
            assert!(path == "primary" || path == "holdout", "{path}");
            assert_eq!(headers["x-uno-cluster"], "0");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "version {version} never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A short follow-up is routed with the question before it.
    let (_, follow) = a
        .route(
            "acme",
            json!({"messages": [
                {"role": "user", "content": cooking(5)},
                {"role": "assistant", "content": "Ten minutes."},
                {"role": "user", "content": "And for fusilli?"},
            ]}),
        )
        .await;
    assert_eq!(
        follow["text"],
        format!("{}\n\nAnd for fusilli?", cooking(5))
    );

    // Reflective: the critic's rules; unseen: passthrough and why.
    let (_, reflective) = a
        .route("acme", json!({"text": "Which tax form should I file for freelance income source 3 this year?"}))
        .await;
    assert_eq!(reflective["path"], "reflective");
    assert_eq!(reflective["critic_rules"], json!(["Cite the form number."]));
    let (_, unseen) = a
        .route(
            "acme",
            json!({"text": "Explain quantum chromodynamics to a physicist"}),
        )
        .await;
    assert_eq!(
        (unseen["cluster"].clone(), unseen["path"].clone()),
        (Value::Null, json!("passthrough"))
    );
    assert!(
        unseen["reason"].as_str().unwrap().starts_with("unseen"),
        "{unseen}"
    );
    // Tools keep their opt-in.
    let (_, tools) = a
        .route("acme", json!({"text": cooking(50), "tools": [{"type": "function", "function": {"name": "t"}}]}))
        .await;
    assert_eq!(tools["path"], "passthrough");
    assert!(
        tools["reason"]
            .as_str()
            .unwrap()
            .contains("learn.route_tools"),
        "{tools}"
    );

    // Bad bodies are 400s, unknown tenants 404s.
    for body in [
        json!({}),
        json!({"text": 5}),
        json!({"text": "a", "messages": []}),
        json!({"messages": []}),
        json!({"messages": [{"role": "user", "content": 5}]}),
        json!({"text": "a", "model": ""}),
    ] {
        let (status, error) = a.route("acme", body.clone()).await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    assert_eq!(a.route("nobody", json!({"text": "x"})).await.0, 404);
}
