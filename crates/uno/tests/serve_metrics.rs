//! Where the real `uno serve` and `uno worker` serve `/metrics`, set only
//! through the environment as in production: `UNO_METRICS_LISTEN` moves the
//! page to its own listener, `UNO_METRICS_TOKEN` guards it (and is never
//! printed), and a non-loopback `server.listen` with neither set keeps the
//! page off the public listener, with a warning when the loopback default
//! is taken.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use cli_common::ServeProcess;
use uno_testkit::TestDatabase;
use uno_testkit::http::get;

const TOKEN: &str = "serve-metrics-token-8c2e";

/// The status and OpenAI-shaped error message of a refusal.
async fn refusal(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("a JSON error");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not OpenAI-shaped: {body}"));
    assert!(body["error"]["type"].is_string(), "{body}");
    (status, message.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn metrics_listen_serves_the_page_apart_behind_the_token() {
    let db = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let uno = ServeProcess::command(&db.url, dir.path())
        .env("UNO_METRICS_LISTEN", &metrics)
        .env("UNO_METRICS_TOKEN", TOKEN)
        .env("UNO_JOURNAL_DIR", dir.path().join("journal"))
        .capture_output()
        .start()
        .await;

    for token in [None, Some(TOKEN)] {
        let (status, message) =
            refusal(get(&format!("{}/metrics", uno.base_url()), token).await).await;
        assert_eq!(status, 404, "{message}");
        assert!(message.contains("metrics.listen"), "{message}");
    }
    let url = format!("http://{metrics}/metrics");
    let (status, message) = refusal(get(&url, None).await).await;
    assert_eq!(status, 401, "{message}");
    let (status, _) = refusal(get(&url, Some("serve-metrics-token-wrong")).await).await;
    assert_eq!(status, 401);
    let page = get(&url, Some(TOKEN)).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("uno_build_info"));
    assert_eq!(
        get(&format!("http://{metrics}/health"), None)
            .await
            .status(),
        200
    );

    let (stdout, stderr) = uno.stop();
    let line = stderr
        .lines()
        .find(|l| l.contains("/metrics is served"))
        .unwrap_or_else(|| panic!("no line says where /metrics is:\n{stderr}"));
    assert!(line.contains(&metrics), "{line}");
    assert!(line.contains("token required"), "{line}");
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "the token was printed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn a_public_listen_without_token_keeps_metrics_off_it() {
    let db = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    // Occupy the loopback default (if something else already has it, it is
    // occupied all the same): uno must warn and keep serving the API.
    let _held = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 9464));
    let uno = ServeProcess::command(&db.url, dir.path())
        .listen_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .env("UNO_JOURNAL_DIR", dir.path().join("journal"))
        .capture_output()
        .start()
        .await;

    let (status, message) = refusal(get(&format!("{}/metrics", uno.base_url()), None).await).await;
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("127.0.0.1:9464"), "{message}");
    assert!(message.contains("UNO_METRICS_LISTEN"), "{message}");
    assert_eq!(
        get(&format!("{}/health", uno.base_url()), None)
            .await
            .status(),
        200
    );

    let (_, stderr) = uno.stop();
    let warning = stderr
        .lines()
        .find(|l| l.contains("cannot listen on 127.0.0.1:9464 for /metrics"))
        .unwrap_or_else(|| panic!("no warning about the loopback default:\n{stderr}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("UNO_METRICS_LISTEN"), "{warning}");
}

#[tokio::test]
async fn the_worker_metrics_page_takes_the_token() {
    let db = TestDatabase::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_uno"))
        .args(["worker", "--metrics-listen", &addr])
        .env("DATABASE_URL", &db.url)
        .env("UNO_EMBEDDER", "hashing")
        .env("UNO_METRICS_TOKEN", TOKEN)
        .env_remove("UNO_METRICS_LISTEN")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot run the uno binary");
    let url = format!("http://{addr}/metrics");
    let deadline = Instant::now() + Duration::from_secs(60);
    let refused = loop {
        if let Ok(response) = reqwest::get(&url).await {
            break response;
        }
        if let Ok(Some(status)) = worker.try_wait() {
            panic!("uno worker exited ({status})");
        }
        assert!(Instant::now() < deadline, "the worker never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, message) = refusal(refused).await;
    let with_token = get(&url, Some(TOKEN)).await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("metrics.token"), "{message}");
    assert_eq!(with_token.status(), 200);
    assert!(
        with_token
            .text()
            .await
            .unwrap()
            .contains("uno_worker_stage_outcomes_total")
    );
}
