//! Request and response bodies the experience paths send and return.
//!
//! The primary path edits the client's bytes in place: the rule block is
//! spliced into the first system message (or a new one is put first), and
//! every other byte, unknown fields and number spellings included, goes
//! upstream as the client wrote it. The reflective path builds its three
//! calls from the client's body, and turns a completion into a stream when a
//! streaming client must get the draft.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use uno_llm::Message;

/// A body that could not be rewritten (it was parsed once already, so this
/// means a bug or a body that changed its mind).
#[derive(Debug, thiserror::Error)]
#[error("cannot rewrite the request body: {0}")]
pub struct RewriteError(String);

#[derive(Deserialize)]
struct MessagesOnly<'a> {
    #[serde(borrow)]
    messages: &'a RawValue,
}

#[derive(Deserialize)]
struct RawMessage<'a> {
    #[serde(default, borrow)]
    role: Option<&'a str>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
}

/// Where `part` (a slice of `body`) starts in `body`.
fn offset_in(body: &[u8], part: &str) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    (start + part.len() <= body.len()).then_some(start)
}

/// The client's body with `block` added to its system message exactly as
/// validation judged it (`uno_learn::validate::with_block`): appended to a
/// first `system` (or `developer`) message after a blank line, or as a new
/// first system message (also when the first one has no content). Array
/// content gets the block as one more text part.
pub fn with_block(body: &[u8], block: &str) -> Result<Bytes, RewriteError> {
    let bad = |what: &str| RewriteError(what.to_owned());
    let outer: MessagesOnly<'_> =
        serde_json::from_slice(body).map_err(|e| RewriteError(e.to_string()))?;
    let messages_raw = outer.messages.get();
    let messages: Vec<RawMessage<'_>> =
        serde_json::from_str(messages_raw).map_err(|e| RewriteError(e.to_string()))?;
    let list_start = offset_in(body, messages_raw).ok_or_else(|| bad("messages not in body"))?;
    let json_block = serde_json::to_string(block).map_err(|e| RewriteError(e.to_string()))?;
    let (at, remove, insert) = match messages.first() {
        Some(RawMessage {
            role: Some("system" | "developer"),
            content: Some(content),
        }) => {
            let raw = content.get();
            let start = offset_in(body, raw).ok_or_else(|| bad("content not in body"))?;
            match raw.as_bytes().first() {
                Some(b'"') => {
                    let text: String =
                        serde_json::from_str(raw).map_err(|e| RewriteError(e.to_string()))?;
                    let joined = serde_json::to_string(&format!("{text}\n\n{block}"))
                        .map_err(|e| RewriteError(e.to_string()))?;
                    (start, raw.len(), joined)
                }
                Some(b'[') => {
                    let empty = raw[1..].trim_start().starts_with(']');
                    let part = format!(r#"{{"type":"text","text":{json_block}}}"#);
                    let close = start + raw.len() - 1;
                    (close, 0, if empty { part } else { format!(",{part}") })
                }
                _ => (start, raw.len(), json_block),
            }
        }
        _ => (
            list_start + 1,
            0,
            format!(r#"{{"role":"system","content":{json_block}}},"#),
        ),
    };
    let mut out = Vec::with_capacity(body.len() + insert.len());
    out.extend_from_slice(body.get(..at).ok_or_else(|| bad("offset"))?);
    out.extend_from_slice(insert.as_bytes());
    out.extend_from_slice(body.get(at + remove..).ok_or_else(|| bad("offset"))?);
    Ok(Bytes::from(out))
}

/// The client's body as a JSON object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, RewriteError> {
    serde_json::from_slice(body).map_err(|e| RewriteError(e.to_string()))
}

/// The draft call: the client's request, not streamed (the draft is read
/// whole before anyone sees it).
pub fn draft_body(client: &Map<String, Value>) -> Bytes {
    let mut body = client.clone();
    body.insert("stream".to_owned(), Value::Bool(false));
    // Providers refuse stream_options on a request that does not stream.
    body.remove("stream_options");
    Bytes::from(Value::Object(body).to_string())
}

/// Most tokens the critique may use: it is a short list of suggestions.
const CRITIQUE_MAX_TOKENS: u32 = 512;

/// The critique call: the critic prompt, short and near-deterministic.
pub fn critique_body(model: &str, messages: &[Message]) -> Bytes {
    Bytes::from(
        json!({
            "model": model,
            "messages": messages,
            "max_tokens": CRITIQUE_MAX_TOKENS,
            "temperature": 0.1,
            "stream": false,
        })
        .to_string(),
    )
}

/// The revision call: the client's request (its sampling parameters and
/// stream flag) with the revision prompt as its messages.
pub fn revision_body(client: &Map<String, Value>, messages: &[Message]) -> Bytes {
    let mut body = client.clone();
    body.insert("messages".to_owned(), json!(messages));
    Bytes::from(Value::Object(body).to_string())
}

/// The first choice's message text of a completion.
pub fn completion_text(completion: &Value) -> Option<&str> {
    completion["choices"][0]["message"]["content"].as_str()
}

/// A non-streamed completion as the events of a stream: one chunk with the
/// whole text, one with the finish reason, the usage when asked for, and
/// `[DONE]`, so a streaming client that gets the draft reads a normal
/// stream.
pub fn completion_as_sse(completion: &Value, include_usage: bool) -> Bytes {
    let text = completion_text(completion).unwrap_or_default();
    let finish = completion["choices"][0]["finish_reason"].clone();
    let chunk = |choices: Value| {
        let mut c = json!({
            "id": completion["id"],
            "object": "chat.completion.chunk",
            "created": completion["created"],
            "model": completion["model"],
            "choices": choices,
        });
        if let Some(fp) = completion.get("system_fingerprint") {
            c["system_fingerprint"] = fp.clone();
        }
        c
    };
    let mut out = String::new();
    let mut event = |v: Value| {
        out.push_str("data: ");
        out.push_str(&v.to_string());
        out.push_str("\n\n");
    };
    event(chunk(json!([{
        "index": 0,
        "delta": {"role": "assistant", "content": text},
        "finish_reason": null,
    }])));
    event(chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": finish}]),
    ));
    if include_usage {
        let mut usage = chunk(json!([]));
        usage["usage"] = completion["usage"].clone();
        event(usage);
    }
    out.push_str("data: [DONE]\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn as_json(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn block_is_appended_to_a_system_message_and_the_rest_kept() {
        let body = br#"{"model":"m", "messages": [ {"role":"system","content":"Be \"kind\"."},{"role":"user","content":"Q"}],"temperature":0.70,"x_unknown":{"a":[1,2]}}"#;
        let out = with_block(body, "RULES\n1. x").unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            r#"{"model":"m", "messages": [ {"role":"system","content":"Be \"kind\".\n\nRULES\n1. x"},{"role":"user","content":"Q"}],"temperature":0.70,"x_unknown":{"a":[1,2]}}"#
        );
        // The same messages validation judged.
        let expected = uno_learn::validate::with_block(
            &[Message::system("Be \"kind\"."), Message::user("Q")],
            "RULES\n1. x",
        );
        assert_eq!(as_json(&out)["messages"], json!(expected));
    }

    #[test]
    fn without_a_system_message_one_is_put_first() {
        let body = br#"{"messages":[{"role":"user","content":"Q"}],"model":"m","stream":true}"#;
        let out = with_block(body, "B").unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"messages":[{"role":"system","content":"B"},{"role":"user","content":"Q"}],"model":"m","stream":true}"#
        );
        let expected = uno_learn::validate::with_block(&[Message::user("Q")], "B");
        assert_eq!(as_json(&out)["messages"], json!(expected));
    }

    #[test]
    fn array_and_null_system_content() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":[{"type":"text","text":"S"}]},{"role":"user","content":"Q"}]}"#;
        let out = as_json(&with_block(body, "B").unwrap());
        assert_eq!(
            out["messages"][0]["content"],
            json!([{"type":"text","text":"S"},{"type":"text","text":"B"}])
        );
        let body = br#"{"model":"m","messages":[{"role":"system","content":[ ]},{"role":"user","content":"Q"}]}"#;
        let out = as_json(&with_block(body, "B").unwrap());
        assert_eq!(
            out["messages"][0]["content"],
            json!([{"type":"text","text":"B"}])
        );
        let body = br#"{"model":"m","messages":[{"role":"developer","content":null},{"role":"user","content":"Q"}]}"#;
        let out = as_json(&with_block(body, "B").unwrap());
        assert_eq!(out["messages"][0], json!({"role":"system","content":"B"}));
        assert_eq!(
            out["messages"][1],
            json!({"role":"developer","content":null})
        );
    }

    #[test]
    fn reflective_bodies_keep_the_clients_parameters() {
        let client = object(
            br#"{"model":"m","messages":[{"role":"user","content":"Q"}],"stream":true,"stream_options":{"include_usage":true},"temperature":0.3,"seed":7}"#,
        )
        .unwrap();
        let draft = as_json(&draft_body(&client));
        assert_eq!(draft["stream"], false);
        assert!(draft.get("stream_options").is_none());
        assert_eq!(
            (draft["temperature"].clone(), draft["seed"].clone()),
            (json!(0.3), json!(7))
        );
        let revision = as_json(&revision_body(&client, &[Message::user("revise")]));
        assert_eq!(revision["stream"], true);
        assert_eq!(
            revision["messages"],
            json!([{"role":"user","content":"revise"}])
        );
        assert_eq!(revision["temperature"], json!(0.3));
        let critique = as_json(&critique_body("m", &[Message::user("c")]));
        assert_eq!(
            (
                critique["max_tokens"].clone(),
                critique["temperature"].clone()
            ),
            (json!(512), json!(0.1))
        );
    }

    #[test]
    fn a_completion_becomes_a_stream() {
        let completion = json!({"id":"c1","created":5,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"draft"},"finish_reason":"stop"}],"usage":{"total_tokens":3}});
        let sse = completion_as_sse(&completion, true);
        let summary = uno_core::sse::ResponseSummary::from_sse_chunks(std::slice::from_ref(&sse));
        assert_eq!(summary.text, "draft");
        assert_eq!(summary.finish_reason.as_deref(), Some("stop"));
        assert!(
            std::str::from_utf8(&sse)
                .unwrap()
                .ends_with("data: [DONE]\n\n")
        );
        assert!(
            std::str::from_utf8(&sse)
                .unwrap()
                .contains("\"total_tokens\":3")
        );
    }
}
