//! Streamed chat completions: passed on as they arrive, ended properly, and
//! logged however they end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, chat_body, sse_data};
use futures_util::StreamExt;
use serde_json::json;
use uno_core::interaction::Outcome;
use uno_testkit::{MockReply, MockUpstream};

fn stream_body(content: &str, include_usage: bool) -> serde_json::Value {
    let mut body = chat_body(content);
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn deltas(events: &[String]) -> String {
    events
        .iter()
        .filter(|e| e.as_str() != "[DONE]")
        .filter_map(|e| {
            let v: serde_json::Value = serde_json::from_str(e).ok()?;
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The whole body of a streamed chat request ("x", no usage) to `app`.
async fn streamed_text(app: &TestApp) -> String {
    app.post("/v1/chat/completions")
        .json(&stream_body("x", false))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn stream_is_relayed_with_usage_and_done() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;
    let response = app
        .post("/v1/chat/completions")
        .json(&stream_body("stream me", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let id = response.headers()["x-uno-interaction-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    let events = sse_data(&text);
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(deltas(&events), "echo: stream me");
    let usage_event: serde_json::Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(usage_event["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(text.matches("[DONE]").count(), 1, "no second [DONE] added");

    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.id.to_string(), id);
    assert_eq!(record.outcome, Outcome::Completed);
    assert!(record.stream);
    let summary = record.summary();
    assert_eq!(summary.text, "echo: stream me");
    assert!(summary.saw_done);
    assert!(summary.usage.is_some());
    assert!(record.time_to_first_byte.is_some());
}

#[tokio::test]
async fn without_include_usage_no_usage_chunk() {
    let mock = MockUpstream::start().await;
    let app = TestApp::start(&mock.base_url()).await;
    let text = streamed_text(&app).await;
    assert!(!text.contains("\"total_tokens\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test]
async fn first_chunk_arrives_before_the_upstream_sends_the_last() {
    let mock = MockUpstream::start().await;
    // Role chunk, five words, finish and [DONE]: about 1.4 s upstream.
    mock.push_reply(
        MockReply::text("one two three four five").chunk_gap(Duration::from_millis(200)),
    );
    let app = TestApp::start(&mock.base_url()).await;
    let started = Instant::now();
    let response = app
        .post("/v1/chat/completions")
        .json(&stream_body("x", false))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("data:"));
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.push(chunk.unwrap());
    }
    let last_at = started.elapsed();
    // The upstream spaces its events 200 ms apart, so the last one leaves it
    // about a second after the first. Receiving the first chunk well before
    // the stream ends proves it was relayed, not buffered; a gap measured
    // between two client-side instants stays robust on a loaded machine.
    assert!(
        last_at.saturating_sub(first_at) >= Duration::from_millis(800),
        "first chunk at {first_at:?}, stream ended at {last_at:?}: the stream was buffered"
    );
    assert!(rest.len() >= 3, "chunks were coalesced: {}", rest.len());
}

#[tokio::test]
async fn done_is_added_when_the_upstream_omits_it() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::raw_sse([
        r#"{"choices":[{"index":0,"delta":{"content":"hi"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    ]));
    let app = TestApp::start(&mock.base_url()).await;
    let text = streamed_text(&app).await;
    let events = sse_data(&text);
    assert_eq!(events.len(), 3);
    assert_eq!(events[2], "[DONE]");
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.summary().text, "hi");
}

#[tokio::test]
async fn upstream_reset_mid_stream_ends_with_an_error_event_and_is_logged_partial() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("a b c d e f g").reset_after(3));
    let app = TestApp::start(&mock.base_url()).await;
    let response = app
        .post("/v1/chat/completions")
        .json(&stream_body("x", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The client's read ends cleanly (uno closes the stream properly) with
    // an error event instead of [DONE].
    let text = response.text().await.unwrap();
    let events = sse_data(&text);
    assert!(
        !text.contains("[DONE]"),
        "a broken stream must not claim completion"
    );
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "upstream_error");
    assert_eq!(
        events.len(),
        4,
        "three relayed events then the error: {events:?}"
    );

    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Partial);
    assert!(record.error.as_deref().unwrap().contains("broke off"));
    assert_eq!(record.summary().text, "a b ", "partial answer is kept");
    assert_eq!(
        mock.request_count(),
        1,
        "no retry once the stream has started"
    );
}

#[tokio::test]
async fn upstream_silence_mid_stream_hits_the_read_timeout() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("a b c").chunk_gap(Duration::from_millis(600)));
    let mut config = common::test_config(&mock.base_url());
    config.http.read_timeout_ms = 300;
    let app = TestApp::start_with(config).await;
    let text = streamed_text(&app).await;
    let events = sse_data(&text);
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "timeout_error", "{text}");
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Partial);
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream_and_is_logged() {
    let mock = MockUpstream::start().await;
    let words: Vec<String> = (0..50).map(|i| format!("w{i}")).collect();
    mock.push_reply(MockReply::text(words.join(" ")).chunk_gap(Duration::from_millis(50)));
    let app = TestApp::start(&mock.base_url()).await;
    let response = app
        .post("/v1/chat/completions")
        .json(&stream_body("x", false))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    body.next().await.unwrap().unwrap();
    drop(body); // the client goes away after two chunks

    assert!(
        mock.wait_for_cancelled(1, Duration::from_secs(5)).await,
        "the upstream stream was not cancelled when the client left"
    );
    assert_eq!(mock.completed_count(), 0);
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Cancelled);
    assert!(record.summary().text.starts_with("w0"));
}

/// An upstream that answers a stream with `Connection: close` framing (no
/// length, no chunks), sends `events`, then closes: the stream's end is
/// only the connection closing.
async fn close_delimited_upstream(events: &'static [&'static str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request head and body (small JSON) before answering.
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())
                                    .flatten()
                            })
                            .unwrap_or(0);
                        if seen.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                for event in events {
                    let _ = socket
                        .write_all(format!("data: {event}\n\n").as_bytes())
                        .await;
                    let _ = socket.flush().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn a_close_delimited_stream_cut_before_its_finish_is_partial_with_an_error_event() {
    let base = close_delimited_upstream(&[
        r#"{"choices":[{"index":0,"delta":{"content":"half "}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"an answer"}}]}"#,
    ])
    .await;
    let app = TestApp::start(&base).await;
    let text = streamed_text(&app).await;
    assert!(
        !text.contains("[DONE]"),
        "a cut stream must not claim completion: {text}"
    );
    let events = sse_data(&text);
    assert_eq!(
        events.len(),
        3,
        "two relayed events then the error: {events:?}"
    );
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "upstream_error", "{text}");
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Partial);
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("before the answer finished")
    );
    assert_eq!(
        record.summary().text,
        "half an answer",
        "partial answer is kept"
    );
}

#[tokio::test]
async fn a_close_delimited_stream_that_finished_gets_done_and_is_completed() {
    let base = close_delimited_upstream(&[
        r#"{"choices":[{"index":0,"delta":{"content":"whole"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    ])
    .await;
    let app = TestApp::start(&base).await;
    let text = streamed_text(&app).await;
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Completed);
    assert_eq!(record.summary().text, "whole");
}

#[tokio::test]
async fn a_chunked_stream_closed_before_its_finish_is_partial() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::raw_sse([
        r#"{"choices":[{"index":0,"delta":{"content":"cut"}}]}"#,
    ]));
    let app = TestApp::start(&mock.base_url()).await;
    let text = streamed_text(&app).await;
    assert!(!text.contains("[DONE]"), "{text}");
    let record = &app.sink.wait_for(1).await[0];
    assert_eq!(record.outcome, Outcome::Partial);
}
