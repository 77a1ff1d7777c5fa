//! The `/ui` dashboard in headless Chromium against the real `uno serve`:
//! a seeded SQLite database, the binary started with an admin key, and
//! `scripts/ui-test/ui.spec.mjs` driving the page (sign-in, clusters, rules,
//! snapshot history, rollback, rule approval) on the test kit's demo
//! dataset. Needs Debian's chromium and `npm ci` in scripts/ui-test, so it
//! is ignored in the plain workspace run; `scripts/ci/ui-browser.sh`
//! installs both and runs it. The screenshot lands in
//! `target/ui-screenshot.png`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cli_common::{ServeProcess, fresh, scratch};
use serde_json::{Value, json};
use uno_store::Store;
use uno_testkit::Backend;
use uno_testkit::seed::seed_demo;

const ADMIN_KEY: &str = "uno-ui-browser-admin-key-0001";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn serve(url: &str, dir: &Path) -> ServeProcess {
    let config = dir.join("uno.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstreams]]\nurl = \"http://127.0.0.1:9\"\n\n\
             [admin]\nkey = \"{ADMIN_KEY}\"\n\n[log]\nfilter = \"warn\"\n"
        ),
    )
    .unwrap();
    ServeProcess::command(url, dir)
        .config(&config)
        .start()
        .await
}

/// The rules `seed_demo` gives acme's active version (3), by cluster.
const ACME_RULES: [&str; 6] = [
    "Cite the exact form number and line.",
    "Give the filing deadline.",
    "Link to the official instructions.",
    "State cooking times in minutes.",
    "Mention safe internal temperatures.",
    "Keep greetings short.",
];

/// Seeds the demo dataset; returns what the page must show for acme.
async fn seed(store: &Store) -> Value {
    let summary = seed_demo(store).await;
    let acme = &summary.acme;
    json!({
        "tenant": acme.tenant,
        "clusters": ["0", "1", "2"],
        "rules": ACME_RULES,
        "versions": acme.versions,
        "active": acme.active_version,
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
    let base = serve.base_url();
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
