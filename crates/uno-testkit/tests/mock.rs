//! Exercises the mock upstream over real HTTP, the way uno talks to it.

// clippy's allow-unwrap-in-tests does not reach the helpers below; in a test a
// panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use uno_testkit::{MockReply, MockUpstream};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn chat_body(stream: bool) -> Value {
    json!({
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "hi there"}
        ],
        "stream": stream,
    })
}

async fn post_chat(mock: &MockUpstream, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Splits an SSE body into its `data:` payloads.
fn sse_payloads(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap().to_owned())
        .collect()
}

fn deltas(payloads: &[String]) -> String {
    payloads
        .iter()
        .filter(|p| *p != "[DONE]")
        .map(|p| serde_json::from_str::<Value>(p).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn text_reply_plain() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("Hello there friend"));
    let resp = post_chat(&mock, &chat_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(v["model"], "gpt-test");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello there friend");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], 3);
    assert_eq!(v["usage"]["total_tokens"], 7);
    assert_eq!(v["mock_extra"], json!({"kept": true}));
    assert_eq!(mock.completed_count(), 1);
    assert_eq!(mock.cancelled_count(), 0);
}

#[tokio::test]
async fn text_reply_streamed_without_usage() {
    let mock = MockUpstream::start().await;
    let text = "Hello there  friend, how\tare you?";
    mock.push_reply(MockReply::text(text));
    let resp = post_chat(&mock, &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let payloads = sse_payloads(&resp.text().await.unwrap());
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    assert_eq!(deltas(&payloads), text);

    let chunks: Vec<Value> = payloads[..payloads.len() - 1]
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    // One chunk per word between the role chunk and the finish chunk.
    assert_eq!(chunks.len(), 1 + 6 + 1);
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-test");
        assert_eq!(c["id"], chunks[0]["id"]);
        assert!(c.get("usage").is_none());
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(mock.wait_for_completed(1, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn text_reply_streamed_with_usage() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("Hello there friend"));
    let mut body = chat_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let payloads = sse_payloads(&post_chat(&mock, &body).await.text().await.unwrap());
    assert_eq!(payloads.last().unwrap(), "[DONE]");
    assert_eq!(deltas(&payloads), "Hello there friend");
    let usage: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7})
    );
    let finish: Value = serde_json::from_str(&payloads[payloads.len() - 3]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn echo_is_the_default() {
    let mock = MockUpstream::start().await;
    let v: Value = post_chat(&mock, &chat_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hi there");

    let body = json!({
        "model": "m",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "part one"},
            {"type": "image_url", "image_url": {"url": "http://x"}},
            {"type": "text", "text": "part two"}
        ]}],
    });
    let v: Value = post_chat(&mock, &body).await.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "echo: part one part two"
    );

    // Queued replies are consumed in order, then the default applies again.
    mock.push_reply(MockReply::text("first"));
    mock.push_reply(MockReply::text("second"));
    for expected in ["first", "second", "echo: hi there"] {
        let v: Value = post_chat(&mock, &chat_body(false))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], expected);
    }
    mock.set_default_reply(MockReply::text("new default"));
    let v: Value = post_chat(&mock, &chat_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "new default");
}

#[tokio::test]
async fn non_json_chat_body_is_a_400() {
    let mock = MockUpstream::start().await;
    let resp = client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn status_reply_and_headers() {
    let mock = MockUpstream::start().await;
    let err = json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}});
    mock.push_reply(
        MockReply::status(503, err.clone())
            .header("retry-after", "7")
            .header("x-multi", "a")
            .header("x-multi", "b"),
    );
    let resp = post_chat(&mock, &chat_body(true)).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "7");
    let multi: Vec<_> = resp.headers().get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    assert_eq!(resp.json::<Value>().await.unwrap(), err);

    mock.push_reply(MockReply::text("x").header("content-type", "text/plain"));
    let resp = post_chat(&mock, &chat_body(false)).await;
    assert_eq!(resp.headers()["content-type"], "text/plain");
}

#[tokio::test]
async fn delay_holds_back_the_response() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("late").delay(Duration::from_millis(300)));
    let start = Instant::now();
    let resp = post_chat(&mock, &chat_body(false)).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn chunk_gap_spaces_events() {
    let mock = MockUpstream::start().await;
    let gap = Duration::from_millis(120);
    mock.push_reply(MockReply::raw_sse(["1", "2", "3", "4"]).chunk_gap(gap));
    let resp = post_chat(&mock, &chat_body(true)).await;
    let mut stream = resp.bytes_stream();
    let mut arrivals = Vec::new();
    let mut body = String::new();
    let start = Instant::now();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        body.push_str(std::str::from_utf8(&chunk).unwrap());
        arrivals.push((start.elapsed(), chunk.len()));
    }
    assert_eq!(sse_payloads(&body), ["1", "2", "3", "4"]);
    // Each event arrives separately, roughly one gap after the previous one.
    assert_eq!(arrivals.len(), 4, "{arrivals:?}");
    for pair in arrivals.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= gap * 8 / 10, "{arrivals:?}");
    }
    assert!(mock.wait_for_completed(1, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn raw_sse_adds_nothing() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::raw_sse([r#"{"weird":true}"#, "not json"]));
    let body = post_chat(&mock, &chat_body(false))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(body, "data: {\"weird\":true}\n\ndata: not json\n\n");
}

#[tokio::test]
async fn reset_after_truncates_the_stream() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::raw_sse(["1", "2", "3", "4"]).reset_after(2));
    let resp = post_chat(&mock, &chat_body(true)).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut body = String::new();
    let mut saw_error = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => body.push_str(std::str::from_utf8(&bytes).unwrap()),
            Err(_) => {
                saw_error = true;
                break;
            }
        }
    }
    assert!(saw_error, "the body must end in an error, got {body:?}");
    assert_eq!(sse_payloads(&body), ["1", "2"]);
    // A scripted reset is neither a completion nor a peer cancellation.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(mock.completed_count(), 0);
    assert_eq!(mock.cancelled_count(), 0);

    // Non-streamed bodies are truncated after n bytes.
    mock.push_reply(MockReply::text("Hello").reset_after(5));
    let resp = post_chat(&mock, &chat_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.is_err());
}

#[tokio::test]
async fn drop_connection_gives_no_response() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::drop_connection());
    let result = client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&chat_body(false))
        .send()
        .await;
    // Nothing at all is sent back: not even a response head.
    assert!(result.is_err(), "{result:?}");
    assert_eq!(mock.completed_count() + mock.cancelled_count(), 0);
    // The mock keeps serving afterwards.
    let resp = post_chat(&mock, &chat_body(false)).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn requests_are_recorded() {
    let mock = MockUpstream::start().await;
    let http = client();
    http.post(format!("{}/chat/completions", mock.base_url()))
        .header("authorization", "Bearer sk-upstream")
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    http.get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap();
    http.get(format!("http://{}/nope?x=1", mock.addr()))
        .send()
        .await
        .unwrap();

    assert_eq!(mock.request_count(), 3);
    let all = mock.requests();
    let paths: Vec<_> = all.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/v1/chat/completions", "/v1/models", "/nope"]);
    assert_eq!(all[1].method, http::Method::GET);
    assert_eq!(all[1].json(), Value::Null);

    let chats = mock.chat_requests();
    assert_eq!(chats.len(), 1);
    assert_eq!(chats[0].method, http::Method::POST);
    assert_eq!(chats[0].headers["authorization"], "Bearer sk-upstream");
    assert_eq!(chats[0].json(), chat_body(false));
}

#[tokio::test]
async fn recording_can_be_disabled() {
    let mock = MockUpstream::builder().record_requests(false).start().await;
    for _ in 0..3 {
        post_chat(&mock, &chat_body(false)).await;
    }
    assert_eq!(mock.request_count(), 3);
    assert!(mock.requests().is_empty());
    assert!(mock.chat_requests().is_empty());
}

#[tokio::test]
async fn models_and_unknown_paths() {
    let mock = MockUpstream::builder()
        .models(["alpha", "org/beta"])
        .start()
        .await;
    let http = client();
    let v: Value = http
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<_> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "org/beta"]);
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["owned_by"], "mock");

    for path in ["alpha", "org/beta", "org%2Fbeta"] {
        let resp = http
            .get(format!("{}/models/{path}", mock.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let m: Value = resp.json().await.unwrap();
        assert_eq!(m["object"], "model");
    }

    let resp = http
        .get(format!("{}/models/ghost", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v,
        json!({"error": {
            "message": "The model 'ghost' does not exist",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }})
    );

    let resp = http
        .get(format!("{}/completions/whatever", mock.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn embeddings_are_deterministic_and_normalised() {
    let mock = MockUpstream::start().await;
    let http = client();
    let embed = |input: Value| {
        let http = http.clone();
        let url = format!("{}/embeddings", mock.base_url());
        async move {
            http.post(url)
                .json(&json!({"model": "emb", "input": input}))
                .send()
                .await
                .unwrap()
        }
    };

    let one: Value = embed(json!("hello world")).await.json().await.unwrap();
    let again: Value = embed(json!("hello world")).await.json().await.unwrap();
    assert_eq!(one, again);
    assert_eq!(one["object"], "list");
    assert_eq!(one["model"], "emb");
    assert_eq!(one["usage"], json!({"prompt_tokens": 2, "total_tokens": 2}));
    let vec: Vec<f64> = one["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(vec.len(), 8);
    let norm = vec.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");

    let many: Value = embed(json!(["hello world", "other"]))
        .await
        .json()
        .await
        .unwrap();
    let data = many["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["index"], 0);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    assert_eq!(data[0]["embedding"], one["data"][0]["embedding"]);
    assert_ne!(data[1]["embedding"], data[0]["embedding"]);

    let tokens: Value = embed(json!([[1, 2, 3], [4]])).await.json().await.unwrap();
    assert_eq!(tokens["data"].as_array().unwrap().len(), 2);
    assert_eq!(tokens["usage"]["prompt_tokens"], 4);

    for bad in [json!(42), json!([]), json!([{"x": 1}]), Value::Null] {
        let resp = embed(bad.clone()).await;
        assert_eq!(resp.status(), 400, "{bad}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    let resp = http
        .post(format!("{}/embeddings", mock.base_url()))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn dropping_a_slow_stream_counts_as_cancelled() {
    let mock = MockUpstream::start().await;
    mock.push_reply(
        MockReply::text("one two three four five six seven eight nine ten")
            .chunk_gap(Duration::from_millis(50)),
    );
    let resp = post_chat(&mock, &chat_body(true)).await;
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(stream);
    assert!(mock.wait_for_cancelled(1, Duration::from_secs(3)).await);
    assert_eq!(mock.completed_count(), 0);
}

#[tokio::test]
async fn abandoning_a_delayed_request_counts_as_cancelled() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("never").delay(Duration::from_secs(10)));
    let result = client()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&chat_body(false))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(result.is_err());
    assert!(mock.wait_for_cancelled(1, Duration::from_secs(3)).await);
    assert_eq!(mock.completed_count(), 0);
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    let mock = MockUpstream::start().await;
    let http = client();
    for _ in 0..3 {
        let resp = http
            .post(format!("{}/chat/completions", mock.base_url()))
            .json(&chat_body(false))
            .send()
            .await
            .unwrap();
        resp.bytes().await.unwrap();
    }
    assert_eq!(mock.connections_accepted(), 1);
    assert_eq!(mock.completed_count(), 3);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let mock = MockUpstream::start().await;
    let http = client();
    let url = format!("{}/models", mock.base_url());
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    mock.shutdown().await;
    assert!(http.get(&url).send().await.is_err());
}

#[tokio::test]
async fn shutdown_kills_in_flight_streams() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text("a b c d e f g h").chunk_gap(Duration::from_secs(1)));
    let resp = post_chat(&mock, &chat_body(true)).await;
    let mut stream = resp.bytes_stream();
    stream.next().await.unwrap().unwrap();
    let start = Instant::now();
    mock.shutdown().await;
    let mut saw_error = false;
    while let Some(chunk) = stream.next().await {
        if chunk.is_err() {
            saw_error = true;
            break;
        }
    }
    assert!(saw_error);
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_responder_answers_from_the_request() {
    let mock = MockUpstream::builder()
        .default_reply(MockReply::respond(|req| {
            format!(
                "{} messages for {}",
                req["messages"].as_array().map_or(0, Vec::len),
                req["model"]
            )
        }))
        .start()
        .await;
    let body: Value = post_chat(&mock, &chat_body(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "2 messages for \"gpt-test\""
    );
    let mut streamed = post_chat(&mock, &chat_body(true))
        .await
        .text()
        .await
        .unwrap();
    streamed.retain(|c| c != '\n');
    assert!(streamed.contains("[DONE]"), "{streamed}");
}
