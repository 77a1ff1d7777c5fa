//! `ChatModel::json` against the mock upstream: schema first, simpler
//! formats when refused, retries on replies that are not the JSON asked for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Deserialize;
use serde_json::json;
use uno_core::config::Config;
use uno_llm::{ChatError, ChatModel, Message, Sampling, UpstreamClient};
use uno_testkit::{MockReply, MockUpstream};

#[derive(Debug, Deserialize, PartialEq)]
struct Rules {
    rules: Vec<String>,
}

fn model(mock: &MockUpstream) -> ChatModel {
    let mut config = Config::default();
    config.upstreams[0].url = mock.base_url();
    config.http.max_retries = 0;
    ChatModel::new(UpstreamClient::new(&config).unwrap(), "mock-model")
}

fn schema() -> serde_json::Value {
    json!({"type": "object", "properties": {"rules": {"type": "array", "items": {"type": "string"}}}, "required": ["rules"]})
}

#[tokio::test]
async fn asks_for_the_schema_and_parses_the_reply() {
    let mock = MockUpstream::start().await;
    mock.push_reply(MockReply::text(r#"{"rules": ["Cite the year."]}"#));
    let rules: Rules = model(&mock)
        .json(
            &[Message::user("q")],
            Sampling::precise(256),
            "rules",
            &schema(),
        )
        .await
        .unwrap();
    assert_eq!(rules.rules, vec!["Cite the year."]);
    let sent = mock.chat_requests()[0].json();
    assert_eq!(sent["response_format"]["type"], "json_schema");
    assert_eq!(sent["response_format"]["json_schema"]["schema"], schema());
    assert_eq!(sent["temperature"], 0.1);
}

#[tokio::test]
async fn falls_back_when_the_upstream_refuses_response_format() {
    let mock = MockUpstream::start().await;
    let refusal = json!({"error": {"message": "response_format json_schema is not supported", "type": "invalid_request_error"}});
    // llama-cpp-python refuses json_schema with a 500 validation error.
    let llama = json!({"error": {"message": "1 validation error: Input should be 'text' or 'json_object'", "type": "internal_server_error"}});
    mock.push_reply(MockReply::status(500, llama));
    mock.push_reply(MockReply::status(400, refusal.clone()));
    mock.push_reply(MockReply::status(400, refusal));
    mock.push_reply(MockReply::text("Here you go: {\"rules\": []}"));
    mock.push_reply(MockReply::text("{\"rules\": [\"x\"]}"));
    let m = model(&mock);
    let rules: Rules = m
        .json(
            &[Message::user("q")],
            Sampling::precise(256),
            "rules",
            &schema(),
        )
        .await
        .unwrap();
    assert!(rules.rules.is_empty());
    let sent = mock.chat_requests();
    assert_eq!(sent[0].json()["response_format"]["type"], "json_schema");
    assert_eq!(sent[1].json()["response_format"]["type"], "json_object");
    assert_eq!(
        sent[1].json()["response_format"]["schema"],
        schema(),
        "llama.cpp's schema form"
    );
    assert_eq!(
        sent[2].json()["response_format"],
        json!({"type": "json_object"})
    );
    assert!(sent[3].json().get("response_format").is_none());
    let last = sent[3].json();
    let instruction = last["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(instruction.contains("JSON schema"), "{instruction}");
    // Learned: the next call (and clones) start where the upstream accepts.
    let again: Rules = m
        .clone()
        .json(
            &[Message::user("q")],
            Sampling::precise(256),
            "rules",
            &schema(),
        )
        .await
        .unwrap();
    assert_eq!(again.rules, vec!["x"]);
    assert_eq!(mock.chat_requests().len(), 5, "no second round of refusals");
    assert!(
        mock.chat_requests()[4]
            .json()
            .get("response_format")
            .is_none()
    );
}

#[tokio::test]
async fn gives_up_after_three_unparseable_replies_with_what_was_said() {
    let mock = MockUpstream::start().await;
    for _ in 0..3 {
        mock.push_reply(MockReply::text("I cannot answer in JSON."));
    }
    let err = model(&mock)
        .json::<Rules>(
            &[Message::user("q")],
            Sampling::precise(256),
            "rules",
            &schema(),
        )
        .await
        .unwrap_err();
    match err {
        ChatError::InvalidJson {
            attempts, reply, ..
        } => {
            assert_eq!(attempts, 3);
            assert!(reply.contains("cannot answer"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let seeds: Vec<_> = mock
        .chat_requests()
        .iter()
        .map(|r| r.json()["seed"].clone())
        .collect();
    assert_eq!(
        seeds,
        vec![json!(42), json!(43), json!(44)],
        "each retry samples anew"
    );
}

#[tokio::test]
async fn yes_probability_comes_from_first_token_logprobs() {
    let mock = MockUpstream::builder().record_requests(true).start().await;
    mock.push_reply(MockReply::status(
        200,
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "no"},
            "logprobs": {"content": [{"token": "no", "logprob": -0.2231,
                "top_logprobs": [{"token": "no", "logprob": -0.2231}, {"token": "yes", "logprob": -1.6094}]}]}}]}),
    ));
    // An upstream without logprobs (the mock's plain text reply): None, so
    // the caller falls back to sampled verdicts.
    mock.push_reply(MockReply::text("yes"));
    let m = model(&mock);
    let p = m
        .yes_probability(&[Message::user("covered?")])
        .await
        .unwrap()
        .unwrap();
    assert!(
        (p - 0.2).abs() < 1e-3,
        "P(yes) = e^-1.6094 / (e^-1.6094 + e^-0.2231) = 0.2, got {p}"
    );
    let sent = mock.chat_requests()[0].json();
    assert_eq!(
        (sent["logprobs"].clone(), sent["max_tokens"].clone()),
        (json!(true), json!(1))
    );
    assert_eq!(
        m.yes_probability(&[Message::user("covered?")])
            .await
            .unwrap(),
        None
    );
}
