//! The edges of the real binary, tried as an attacker and a careless client
//! would (issue 22): client paths never choose the upstream route, slow and
//! silent clients are cut at the configured timeouts while long answers are
//! not, the connection limit holds back instead of failing, and requests
//! hyper cannot parse still get OpenAI-shaped errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cli_common::{ServeProcess, scratch};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uno_testkit::{Backend, MockReply, MockUpstream, TestDatabase};

const KEY: &str = "key-alpha-0123456789";

/// uno in front of `mock` on a fresh SQLite file, with `env` on top.
async fn uno(
    db: &TestDatabase,
    mock: &MockUpstream,
    env: &[(&str, &str)],
) -> (ServeProcess, SocketAddr) {
    let mut command = ServeProcess::command(&db.url, &scratch(db))
        .env("UNO_UPSTREAM_URL", mock.base_url())
        .env("UNO_UPSTREAM_API_KEY", "sk-upstream-organisation-key")
        .env("UNO_API_KEYS", format!("alpha={KEY}"));
    for (name, value) in env {
        command = command.env(name, value);
    }
    let serve = command.capture_output().start().await;
    let addr = serve
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    (serve, addr)
}

/// What came back on a raw connection before uno closed it.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn parse(raw: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    /// The body as OpenAI's error shape; panics otherwise.
    fn error(&self) -> serde_json::Value {
        let body: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.head, self.body));
        let error = body["error"].clone();
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(error["type"].is_string(), "{body}");
        error
    }
}

/// Sends `request` as raw bytes and reads until uno closes the connection.
async fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut raw));
    read.await.expect("uno did not close the connection").ok();
    Answer::parse(&raw)
}

/// Reads until the peer closes; how long that took, and what was read.
async fn until_closed(tcp: &mut TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    until_closed_since(tcp, limit, Instant::now()).await
}

/// [`until_closed`], timed from `start`.
async fn until_closed_since(
    tcp: &mut TcpStream,
    limit: Duration,
    start: Instant,
) -> (Duration, Vec<u8>) {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(limit, tcp.read_to_end(&mut raw)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {limit:?}"
    );
    (start.elapsed(), raw)
}

async fn metric(addr: SocketAddr, sample: &str) -> f64 {
    let page = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in /metrics"))
}

#[tokio::test]
async fn client_paths_never_reach_an_upstream_route_uno_does_not_serve() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mock = MockUpstream::builder()
        .models(["mock-model", "org/tuned"])
        .start()
        .await;
    let (_serve, addr) = uno(&db, &mock, &[]).await;

    let refused = [
        "/v1/models/..%2Ffiles%2Ffile-abc123",
        "/v1/models/..%2F..%2Fv1%2Ffiles",
        "/v1/models/%2e%2e%2Ffiles",
        "/v1/models/%2E%2E/files",
        "/v1/models/../files",
        "/v1/models/mock-model/../../files",
        "/v1/models/./mock-model",
        "/v1/models//v1/files",
        "/v1/models/org//tuned",
        "/v1/models/org/tuned/",
        "/v1/models/..%5Cfiles",
        "/v1/models/%C0%AE%C0%AE%2Ffiles",
        "/v1/models/%E0%80%AE%E0%80%AE",
        "/v1/models/%252e%252e%252ffiles",
        "/v1/models/a%00b",
        "/v1/models/a%0d%0aX-Injected:%20yes",
        "/v1/models/..\\files",
    ];
    for path in refused {
        for method in ["GET", "DELETE"] {
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: uno\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
            );
            let answer = exchange(addr, request.as_bytes()).await;
            assert_eq!(answer.status, 400, "{method} {path}: {}", answer.head);
            answer.error();
        }
    }
    for path in [
        "/v1/models/org/tuned",
        "/v1/models/org%2Ftuned",
        "/v1/models/mock-model?x=../../files",
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: uno\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n"
        );
        let answer = exchange(addr, request.as_bytes()).await;
        assert_eq!(answer.status, 200, "GET {path}: {}", answer.head);
    }

    // What the upstream saw: only the models route, each id one segment.
    let seen: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        seen,
        [
            "GET /v1/models/org%2Ftuned",
            "GET /v1/models/org%2Ftuned",
            "GET /v1/models/mock-model",
        ],
        "the upstream was called on other paths"
    );
}

#[tokio::test]
async fn slow_heads_silent_connections_and_trickled_bodies_are_cut_at_their_timeouts() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mock = MockUpstream::start().await;
    let (serve, addr) = uno(
        &db,
        &mock,
        &[
            ("UNO_HEADER_TIMEOUT_SECS", "2"),
            ("UNO_BODY_TIMEOUT_SECS", "3"),
            ("UNO_IDLE_TIMEOUT_SECS", "30"),
        ],
    )
    .await;

    // Partial headers, then silence.
    let opened = Instant::now();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nx-a: ")
        .await
        .unwrap();
    // One header byte every half second, for ever.
    let mut dripping = TcpStream::connect(addr).await.unwrap();
    let drip = tokio::spawn(async move {
        let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: uno\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let started = Instant::now();
        for byte in head {
            if dripping.write_all(&[*byte]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("uno read the whole dripped head without closing the connection");
    });
    // Connected, never a byte.
    let mut silent = TcpStream::connect(addr).await.unwrap();

    let limit = Duration::from_secs(15);
    let (partial_after, _) = until_closed_since(&mut partial, limit, opened).await;
    let (silent_after, _) = until_closed_since(&mut silent, limit, opened).await;
    let drip_after = drip.await.unwrap();
    for (what, after) in [
        ("partial head", partial_after),
        ("silent connection", silent_after),
        ("dripped head", drip_after),
    ] {
        assert!(
            after >= Duration::from_millis(1500) && after < Duration::from_secs(6),
            "{what} was cut after {after:?}, header timeout 2 s"
        );
    }

    // A declared 1,000-byte body sent a byte every half second: 408.
    let mut slow_body = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: uno\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut raw = Vec::new();
    loop {
        tokio::select! {
            read = slow_body.read_buf(&mut raw) => {
                if read.unwrap_or(0) == 0 {
                    break;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                let _ = slow_body.write_all(b" ").await;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the slow body was never cut"
        );
    }
    let body_after = started.elapsed();
    assert!(
        body_after >= Duration::from_millis(2500) && body_after < Duration::from_secs(8),
        "the slow body was cut after {body_after:?}, body timeout 3 s"
    );
    let answer = Answer::parse(&raw);
    assert_eq!(answer.status, 408, "{}", answer.head);
    assert_eq!(answer.error()["code"], "request_timeout");
    assert_eq!(
        mock.request_count(),
        0,
        "a cut request reached the upstream"
    );

    assert!(metric(addr, "uno_connection_timeouts_total{kind=\"header\"}").await >= 3.0);
    assert!(metric(addr, "uno_connection_timeouts_total{kind=\"body\"}").await >= 1.0);
    let (_, stderr) = serve.stop();
    assert!(
        stderr.contains("did not arrive within server.header_timeout_secs"),
        "no warning for the header timeouts:\n{stderr}"
    );
    assert!(
        stderr.contains("request body arrived too slowly"),
        "no warning for the body timeout:\n{stderr}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_not_the_header_one() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mock = MockUpstream::start().await;
    let (_serve, addr) = uno(
        &db,
        &mock,
        &[
            ("UNO_HEADER_TIMEOUT_SECS", "1"),
            ("UNO_IDLE_TIMEOUT_SECS", "4"),
        ],
    )
    .await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: uno\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 512];
    let n = tcp.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    let (after, rest) = until_closed(&mut tcp, Duration::from_secs(15)).await;
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(
        after >= Duration::from_millis(3500) && after < Duration::from_secs(8),
        "closed {after:?} after the response; idle timeout 4 s, header timeout 1 s"
    );
    assert!(metric(addr, "uno_connection_timeouts_total{kind=\"idle\"}").await >= 1.0);
}

#[tokio::test]
async fn at_the_connection_limit_new_clients_wait_and_are_served_when_a_slot_frees() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mock = MockUpstream::start().await;
    let (_serve, addr) = uno(
        &db,
        &mock,
        &[
            ("UNO_MAX_CONNECTIONS", "4"),
            ("UNO_HEADER_TIMEOUT_SECS", "3"),
        ],
    )
    .await;
    // The start-up probe's connection may still be open (idle); holding
    // four silent ones fills the limit whatever it left.
    let mut holders = Vec::new();
    for _ in 0..4 {
        holders.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let waiting = exchange(
        addr,
        b"GET /health HTTP/1.1\r\nHost: uno\r\nConnection: close\r\n\r\n",
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(waiting.status, 200, "{}", waiting.head);
    assert!(
        waited >= Duration::from_millis(2000),
        "served after {waited:?}: the limit of 4 did not hold it back"
    );
    assert!(metric(addr, "uno_connection_limit_reached_total").await >= 1.0);
    assert_eq!(metric(addr, "uno_connections_limit").await, 4.0);
    drop(holders);
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_openai_shaped_errors() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mock = MockUpstream::start().await;
    let (_serve, addr) = uno(&db, &mock, &[]).await;

    let mut many_headers = String::from("GET /health HTTP/1.1\r\nHost: uno\r\n");
    for i in 0..120 {
        many_headers.push_str(&format!("x-h{i}: v\r\n"));
    }
    many_headers.push_str("\r\n");
    let cases: [(&str, Vec<u8>, u16); 4] = [
        (
            "NUL in a header value",
            b"GET /health HTTP/1.1\r\nHost: uno\r\nx-a: a\0b\r\n\r\n".to_vec(),
            400,
        ),
        ("more than 100 headers", many_headers.into_bytes(), 431),
        ("a bad request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "a space in the request target",
            b"GET /v1/models/a b HTTP/1.1\r\nHost: uno\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, request, status) in cases {
        let answer = exchange(addr, &request).await;
        assert_eq!(answer.status, status, "{what}: {}", answer.head);
        assert!(
            answer
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{what}: {}",
            answer.head
        );
        answer.error();
    }
    // The server is unharmed.
    let health = exchange(
        addr,
        b"GET /health HTTP/1.1\r\nHost: uno\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(health.status, 200);
}

/// A long stream and a long-thinking upstream, with every timeout at its
/// default: neither is cut, since no timeout applies to a request being
/// answered. Takes three minutes; it runs beside the rest of this file.
#[tokio::test]
async fn a_three_minute_stream_and_a_90_second_silent_upstream_are_not_cut() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let words: Vec<String> = (0..30).map(|i| format!("w{i} ")).collect();
    let streamer = MockUpstream::builder()
        .default_reply(MockReply::text(words.concat()).chunk_gap(Duration::from_secs(6)))
        .start()
        .await;
    let thinker = MockUpstream::builder()
        .default_reply(MockReply::text("after a long think").delay(Duration::from_secs(90)))
        .start()
        .await;
    let dir = scratch(&db);
    let config = dir.join("uno.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nread_timeout_ms = 120000\n\n\
             [[upstreams]]\nname = \"streamer\"\nurl = \"{}\"\nmodels = [\"slow-stream\"]\n\n\
             [[upstreams]]\nname = \"thinker\"\nurl = \"{}\"\nmodels = []\n",
            streamer.base_url(),
            thinker.base_url()
        ),
    )
    .unwrap();
    let serve = ServeProcess::command(&db.url, &dir)
        .config(&config)
        .env("UNO_API_KEYS", format!("alpha={KEY}"))
        .start()
        .await;
    let client = reqwest::Client::new();
    let chat = |model: &str, stream: bool| {
        client
            .post(format!("{}/v1/chat/completions", serve.base_url()))
            .bearer_auth(KEY)
            .json(&serde_json::json!({
                "model": model,
                "stream": stream,
                "messages": [{"role": "user", "content": "take your time"}],
            }))
            .send()
    };
    let started = Instant::now();
    let stream = async {
        let response = chat("slow-stream", true).await.unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        (started.elapsed(), text)
    };
    let think = async {
        let response = chat("slow-think", false).await.unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        (started.elapsed(), status, body)
    };
    let ((streamed_for, text), (thought_for, status, body)) = tokio::join!(stream, think);
    assert!(
        streamed_for >= Duration::from_secs(170),
        "streamed {streamed_for:?}"
    );
    for word in &words {
        assert!(
            text.contains(word.trim()),
            "{word} missing: the stream was cut"
        );
    }
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(thought_for >= Duration::from_secs(90), "{thought_for:?}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "after a long think"
    );
}
