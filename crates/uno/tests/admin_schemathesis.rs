//! schemathesis against the real `uno serve`: the admin API must answer
//! every request generated from `/admin/openapi.json` without a server
//! error, and with statuses, content types, headers and bodies the document
//! describes.
//!
//! Needs schemathesis (`st`), so it is ignored by default;
//! `scripts/ci/schemathesis.sh` installs it and runs this test. The run is
//! deterministic (a fixed seed and a bounded number of examples) over a
//! SQLite database filled by [`uno_testkit::seed::seed_demo`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use cli_common::ServeProcess;
use uno_store::Store;
use uno_testkit::TestDatabase;
use uno_testkit::seed::seed_demo;

const ADMIN_KEY: &str = "schemathesis-admin-key-0123";

async fn serve(url: &str, dir: &std::path::Path) -> ServeProcess {
    ServeProcess::command(url, dir)
        .env("UNO_ADMIN_KEY", ADMIN_KEY)
        .env("UNO_WORKER_IN_SERVE", "false")
        .env("UNO_UPSTREAM_URL", "http://127.0.0.1:9")
        .env("UNO_LOG", "warn")
        .start()
        .await
}

/// The `st` binary: `SCHEMATHESIS_BIN`, else the script's virtualenv.
fn st() -> PathBuf {
    std::env::var_os("SCHEMATHESIS_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/schemathesis-venv/bin/st"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs schemathesis; run by scripts/ci/schemathesis.sh"]
async fn the_admin_api_conforms_to_its_openapi_document() {
    let db = TestDatabase::sqlite();
    let store = Store::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    seed_demo(&store).await;
    store.close().await;
    let dir = db.scratch_dir();
    let server = serve(&db.url, &dir).await;
    let base = server.base_url();
    let st = st();
    assert!(
        st.exists(),
        "schemathesis not found at {}; run scripts/ci/schemathesis.sh or set SCHEMATHESIS_BIN",
        st.display()
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&st)
            .args([
                "--no-color",
                "run",
                &format!("{base}/admin/openapi.json"),
                "--url",
                &base,
                "--header",
                &format!("Authorization: Bearer {ADMIN_KEY}"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,response_headers_conformance",
                "--seed",
                "20261126",
                "--max-examples",
                "60",
                // One worker: CPython 3.11's `ast.parse` is not safe across
                // threads (gh-106905), and hypothesis parses lambdas with it,
                // so two workers crash it now and then ("AST constructor
                // recursion depth mismatch").
                "--workers",
                "1",
                "--suppress-health-check",
                "all",
            ])
            .env("SCHEMATHESIS_HOOKS", "")
            // Its example cache goes under target/, not into the source tree.
            .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
            .stdin(Stdio::null())
            .output()
            .expect("cannot run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}); its report is above",
        output.status.code()
    );
    drop(server);
}
