//! Chat calls the learning worker makes: plain text, and JSON that must match
//! a schema.
//!
//! Every LLM-dependent stage of the UNO pipeline (distilling rules, judging,
//! critiquing) asks for structured output. Upstreams differ in what they
//! support, so [`ChatModel::json`] degrades in steps: a strict
//! `response_format: json_schema` first; if the upstream refuses that
//! parameter, `json_object`; if it refuses that too, a plain request whose
//! prompt asks for JSON. Whatever comes back is parsed and validated by the
//! caller's type; a reply that does not parse is retried (with a new seed) up
//! to the configured number of attempts, and the last failure is returned
//! with what the model said, so it can be recorded.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{Value, json};

use crate::{Endpoint, UpstreamClient, collect_body};

/// One message of a chat request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: "system".into(),
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// Sampling settings of one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Temperature.
    pub temperature: f64,
    /// Nucleus sampling, when set.
    pub top_p: Option<f64>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Seed, for upstreams that honour it.
    pub seed: Option<u64>,
}

impl Sampling {
    /// Near-deterministic, as the method uses for extraction (T = 0.1).
    pub fn precise(max_tokens: u32) -> Self {
        Sampling {
            temperature: 0.1,
            top_p: None,
            max_tokens,
            seed: Some(42),
        }
    }
}

/// Why a chat call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChatError {
    /// The upstream could not be reached or timed out.
    #[error("{0}")]
    Upstream(String),
    /// The upstream answered with an error status.
    #[error("upstream answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The upstream's error message.
        message: String,
    },
    /// The answer was not the JSON the schema asks for, after every attempt.
    #[error("no valid JSON after {attempts} attempts: {problem}; last reply: {reply:?}")]
    InvalidJson {
        /// Attempts made.
        attempts: u32,
        /// What was wrong with the last reply.
        problem: String,
        /// The last reply (truncated).
        reply: String,
    },
    /// The answer had no message content.
    #[error("the upstream's answer had no message content")]
    Empty,
}

/// A model behind an upstream, as the worker uses it.
#[derive(Debug, Clone)]
pub struct ChatModel {
    client: UpstreamClient,
    model: String,
    attempts: u32,
    timeout: Duration,
    json_mode: Arc<AtomicU8>,
}

/// How much structure the upstream accepted, learned on first refusal so
/// later calls (of this model and its clones) do not pay for the same
/// refusal again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum JsonMode {
    /// OpenAI's `{"type": "json_schema", "json_schema": {...}}`.
    Schema = 0,
    /// `{"type": "json_object", "schema": ...}`: llama.cpp's server
    /// (llama-cpp-python) constrains output to the schema this way and
    /// refuses `json_schema`.
    ObjectWithSchema = 1,
    /// Plain JSON mode.
    Object = 2,
    /// Only an instruction in the prompt.
    Prompt = 3,
}

impl JsonMode {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => JsonMode::Schema,
            1 => JsonMode::ObjectWithSchema,
            2 => JsonMode::Object,
            _ => JsonMode::Prompt,
        }
    }

    fn simpler(self) -> Self {
        JsonMode::from_u8(self as u8 + 1)
    }
}

/// Whether an error answer is the upstream refusing the `response_format`
/// we sent (OpenAI and vLLM answer 400; llama-cpp-python answers 500 with a
/// validation error naming the accepted types).
fn refuses_response_format(err: &ChatError) -> bool {
    match err {
        ChatError::Status {
            status: 400 | 422 | 500,
            message,
        } => {
            let m = message.to_lowercase();
            m.contains("response_format") || m.contains("json_schema") || m.contains("json_object")
        }
        _ => false,
    }
}

impl ChatModel {
    /// `model` served by whichever upstream `client` routes it to.
    pub fn new(client: UpstreamClient, model: impl Into<String>) -> Self {
        ChatModel {
            client,
            model: model.into(),
            attempts: 3,
            timeout: Duration::from_secs(300),
            json_mode: Arc::new(AtomicU8::new(JsonMode::Schema as u8)),
        }
    }

    /// Attempts per JSON call (the method uses 3).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The model name sent upstream.
    pub fn model(&self) -> &str {
        &self.model
    }

    async fn call(&self, body: Value) -> Result<Value, ChatError> {
        let upstream = self.client.select(&self.model).ok_or_else(|| {
            ChatError::Upstream(format!("no upstream serves model {:?}", self.model))
        })?;
        let bytes = Bytes::from(body.to_string());
        let response = self
            .client
            .send(
                upstream,
                Method::POST,
                upstream.endpoint(Endpoint::ChatCompletions),
                &HeaderMap::new(),
                bytes,
            )
            .await
            .map_err(|err| ChatError::Upstream(err.to_string()))?;
        let status = response.response.status();
        let body = collect_body(response.response.into_body(), self.timeout)
            .await
            .map_err(|err| ChatError::Upstream(format!("{err:?}")))?;
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value["error"]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
            return Err(ChatError::Status {
                status: status.as_u16(),
                message,
            });
        }
        Ok(value)
    }

    fn body(&self, messages: &[Message], sampling: Sampling) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "max_tokens": sampling.max_tokens,
            "stream": false,
        });
        if let Some(top_p) = sampling.top_p {
            body["top_p"] = json!(top_p);
        }
        if let Some(seed) = sampling.seed {
            body["seed"] = json!(seed);
        }
        body
    }

    /// A plain completion: the first choice's text.
    pub async fn text(
        &self,
        messages: &[Message],
        sampling: Sampling,
    ) -> Result<String, ChatError> {
        let reply = self.call(self.body(messages, sampling)).await?;
        content_of(&reply).ok_or(ChatError::Empty)
    }

    /// P("yes") for a question the model answers with one word, from the
    /// first token's log-probabilities (softmax over the "yes" and "no"
    /// alternatives, as the method's reranker scores). `Ok(None)` when the
    /// upstream returns no logprobs or neither word is among the top
    /// alternatives, so the caller can fall back to sampled verdicts.
    pub async fn yes_probability(&self, messages: &[Message]) -> Result<Option<f64>, ChatError> {
        let mut body = self.body(
            messages,
            Sampling {
                temperature: 0.0,
                top_p: None,
                max_tokens: 1,
                seed: Some(42),
            },
        );
        body["logprobs"] = json!(true);
        body["top_logprobs"] = json!(10);
        let reply = match self.call(body).await {
            Ok(reply) => reply,
            // Servers that do not know the fields may refuse them.
            Err(ChatError::Status { status: 400, .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        Ok(yes_probability_of(&reply))
    }

    /// A completion that must be JSON matching `schema`, parsed into `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        messages: &[Message],
        sampling: Sampling,
        schema_name: &str,
        schema: &Value,
    ) -> Result<T, ChatError> {
        let mut mode = JsonMode::from_u8(self.json_mode.load(Ordering::Relaxed));
        let mut last_problem = String::new();
        let mut last_reply = String::new();
        let mut attempt = 0;
        while attempt < self.attempts {
            let mut sampling = sampling;
            sampling.seed = sampling.seed.map(|s| s + u64::from(attempt));
            let mut body = self.body(messages, sampling);
            match mode {
                JsonMode::Schema => {
                    body["response_format"] = json!({
                        "type": "json_schema",
                        "json_schema": {"name": schema_name, "schema": schema, "strict": true},
                    });
                }
                JsonMode::ObjectWithSchema => {
                    body["response_format"] = json!({"type": "json_object", "schema": schema});
                }
                JsonMode::Object => body["response_format"] = json!({"type": "json_object"}),
                JsonMode::Prompt => {
                    let instruction = format!(
                        "Reply with one JSON object only, no prose, matching this JSON schema: {schema}"
                    );
                    if let Some(list) = body["messages"].as_array_mut() {
                        list.push(json!({"role": "system", "content": instruction}));
                    }
                }
            }
            let reply = match self.call(body).await {
                Ok(reply) => reply,
                Err(err) if mode != JsonMode::Prompt && refuses_response_format(&err) => {
                    tracing::info!(model = %self.model, %err, "upstream refused this response_format; trying a simpler one");
                    mode = mode.simpler();
                    self.json_mode.fetch_max(mode as u8, Ordering::Relaxed);
                    continue; // a refusal is not an attempt
                }
                Err(err) => return Err(err),
            };
            attempt += 1;
            let Some(text) = content_of(&reply) else {
                last_problem = "no message content".into();
                continue;
            };
            match parse_json_reply::<T>(&text) {
                Ok(value) => return Ok(value),
                Err(problem) => {
                    last_problem = problem;
                    last_reply = text.chars().take(500).collect();
                }
            }
        }
        Err(ChatError::InvalidJson {
            attempts: self.attempts,
            problem: last_problem,
            reply: last_reply,
        })
    }
}

/// P(yes) from a reply's first-token `top_logprobs`.
fn yes_probability_of(reply: &Value) -> Option<f64> {
    let first = reply["choices"][0]["logprobs"]["content"].get(0)?;
    let mut yes: Option<f64> = None;
    let mut no: Option<f64> = None;
    let alternatives = first["top_logprobs"].as_array().into_iter().flatten();
    for alt in std::iter::once(first).chain(alternatives) {
        let (Some(token), Some(lp)) = (alt["token"].as_str(), alt["logprob"].as_f64()) else {
            continue;
        };
        let slot = match token.trim().to_lowercase().as_str() {
            "yes" => &mut yes,
            "no" => &mut no,
            _ => continue,
        };
        *slot = Some(slot.map_or(lp, |old: f64| old.max(lp)));
    }
    match (yes, no) {
        (None, None) => None,
        (yes, no) => {
            let y = yes.map_or(0.0, f64::exp);
            let n = no.map_or(0.0, f64::exp);
            Some(y / (y + n))
        }
    }
}

fn content_of(reply: &Value) -> Option<String> {
    reply["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_owned)
}

/// Parses a model's JSON reply, tolerating the wrappers small models add
/// (code fences, text around the object).
pub fn parse_json_reply<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let trimmed = text.trim();
    let direct = serde_json::from_str::<T>(trimmed);
    let err = match direct {
        Ok(value) => return Ok(value),
        Err(err) => err,
    };
    let start = trimmed.find('{');
    let end = trimmed.rfind('}');
    if let (Some(start), Some(end)) = (start, end)
        && end > start
    {
        let object = &trimmed[start..=end];
        if let Ok(value) = serde_json::from_str::<T>(object) {
            return Ok(value);
        }
        // Grammar-constrained small models (llama.cpp) put raw newlines and
        // tabs inside strings, which JSON forbids; escaping them changes no
        // content.
        if let Ok(value) = serde_json::from_str::<T>(&escape_raw_controls(object)) {
            return Ok(value);
        }
    }
    Err(err.to_string())
}

/// `text` with raw control characters inside JSON strings escaped.
fn escape_raw_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            } else if c < ' ' {
                match c {
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    other => out.push_str(&format!("\\u{:04x}", other as u32)),
                }
                continue;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_newlines_inside_strings_are_repaired() {
        #[derive(serde::Deserialize)]
        struct Rules {
            rules: Vec<String>,
        }
        let reply = "{ \"rules\": [\"line one\nline two\", \"tab\there\"] }\n";
        let rules: Rules = super::parse_json_reply(reply).unwrap();
        assert_eq!(rules.rules, vec!["line one\nline two", "tab\there"]);
        // Newlines between tokens were always fine and stay untouched.
        assert_eq!(
            super::escape_raw_controls("{\n\"a\": \"b\"}"),
            "{\n\"a\": \"b\"}"
        );
    }

    #[test]
    fn yes_probability_is_the_softmax_of_yes_and_no() {
        let reply = serde_json::json!({"choices": [{"logprobs": {"content": [{
            "token": "Yes", "logprob": -0.1,
            "top_logprobs": [
                {"token": "Yes", "logprob": -0.1},
                {"token": " no", "logprob": -2.5},
                {"token": "maybe", "logprob": -3.0}
            ]
        }]}}]});
        let p = super::yes_probability_of(&reply).unwrap();
        let expected = (-0.1f64).exp() / ((-0.1f64).exp() + (-2.5f64).exp());
        assert!((p - expected).abs() < 1e-12, "{p} vs {expected}");
        assert_eq!(
            super::yes_probability_of(&serde_json::json!({"choices": [{}]})),
            None
        );
        let only_no = serde_json::json!({"choices": [{"logprobs": {"content": [{"token": "no", "logprob": -0.01}]}}]});
        assert_eq!(super::yes_probability_of(&only_no), Some(0.0));
    }

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Rules {
        rules: Vec<String>,
    }

    #[test]
    fn replies_with_wrappers_still_parse() {
        let plain: Rules = parse_json_reply(r#"{"rules":["a"]}"#).unwrap();
        assert_eq!(plain.rules, vec!["a"]);
        let fenced: Rules = parse_json_reply("```json\n{\"rules\": [\"b\"]}\n```").unwrap();
        assert_eq!(fenced.rules, vec!["b"]);
        let chatty: Rules = parse_json_reply("Sure! {\"rules\": []} Hope this helps.").unwrap();
        assert!(chatty.rules.is_empty());
        assert!(parse_json_reply::<Rules>("no json here").is_err());
        assert!(parse_json_reply::<Rules>(r#"{"rules": "not a list"}"#).is_err());
    }
}
