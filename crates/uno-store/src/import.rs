//! Importing existing chat logs (`uno import`): one JSONL line becomes one
//! interaction and its feedback, as rows the store writes like proxied ones.
//!
//! Two line formats are recognised, per line:
//!
//! - **OpenAI chat**: `{"messages": [...], "rating"?: "up"|"down",
//!   "comment"?, "expected_output"?, "user"?, "created_at"?, "model"?,
//!   "id"?}`.
//! - **MemoryBench**: `{"dialog": [...] or a JSON string of it, "lang"?,
//!   "dataset_name"?, "test_idx"?, ...}` (method §1.1); the same optional
//!   fields as the chat format apply.
//!
//! In both, the prompt is every message before the first assistant message
//! that follows the first user message, and that assistant message is the
//! answer. Every later user turn is implicit feedback on the interaction
//! (what the UNO method learns from); `rating`/`comment`/`expected_output`
//! make one explicit feedback row.
//!
//! Parsing is pure and deterministic: the interaction id is derived from the
//! tenant and the line's bytes (unless the line gives one) and feedback ids
//! from the interaction id, so importing a file twice yields the same ids
//! and [`Store::existing_interactions`] tells which are already stored.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};
use uno_core::InteractionId;
use uno_core::conversation::{TextMessage, content_text, conversation_hash};
use uno_core::feedback::explicit_feedback_id;
use uuid::Uuid;

use crate::Store;
use crate::error::StoreError;
use crate::portable::{on_pool, sql};
use crate::rows::{FeedbackRow, InteractionRow, LogRow};

/// Namespace of imported ids (a fixed random UUID).
const IMPORT_NAMESPACE: Uuid = Uuid::from_u128(0x8b0f_3c2e_51d4_4a77_9e6b_d2a0_47c9_13e5);

/// Ids checked per statement by [`Store::existing_interactions`] (well under
/// both backends' bind-parameter limits).
const IDS_PER_QUERY: usize = 500;

/// What every imported line shares.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The tenant the interactions belong to.
    pub tenant: String,
    /// The model recorded when a line names none.
    pub model: String,
    /// The time recorded when a line has no `created_at`.
    pub now: DateTime<Utc>,
}

/// Which format a line was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// `{"messages": [...]}`.
    Chat,
    /// `{"dialog": ...}`.
    MemoryBench,
}

/// One line, read: its interaction and the feedback on it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedLine {
    /// How the line was read.
    pub format: LineFormat,
    /// The interaction.
    pub interaction: InteractionRow,
    /// Implicit feedback (one row per later user turn, in order), then the
    /// explicit feedback row if the line rates or comments.
    pub feedback: Vec<FeedbackRow>,
}

impl ImportedLine {
    /// The interaction id.
    pub fn id(&self) -> Uuid {
        self.interaction.id
    }

    /// The rows to write.
    pub fn into_rows(self) -> Vec<LogRow> {
        let mut rows = Vec::with_capacity(1 + self.feedback.len());
        rows.push(LogRow::Interaction(Box::new(self.interaction)));
        rows.extend(
            self.feedback
                .into_iter()
                .map(|f| LogRow::Feedback(Box::new(f))),
        );
        rows
    }
}

/// Why a line cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadLine(pub String);

fn bad<T>(reason: impl Into<String>) -> Result<T, BadLine> {
    Err(BadLine(reason.into()))
}

/// The id of the interaction an imported line without an `id` gets: derived
/// from the tenant and the line's exact text, so re-importing it yields the
/// same id.
pub fn imported_interaction_id(tenant: &str, line: &str) -> Uuid {
    let mut name = Vec::with_capacity(tenant.len() + line.len() + 16);
    name.extend_from_slice(b"interaction\0");
    name.extend_from_slice(tenant.as_bytes());
    name.push(0);
    name.extend_from_slice(line.as_bytes());
    Uuid::new_v5(&IMPORT_NAMESPACE, &name)
}

/// The id of the implicit feedback that the `index`-th later user turn
/// (from 0) of an imported interaction gives.
pub fn imported_implicit_feedback_id(interaction: Uuid, index: usize) -> Uuid {
    let name = format!("implicit\u{0}{interaction}\u{0}{index}");
    Uuid::new_v5(&IMPORT_NAMESPACE, name.as_bytes())
}

/// One message of a line: its JSON as given (for the stored request) and
/// its role and text (for splitting and hashing).
struct Message {
    raw: Value,
    text: TextMessage<'static>,
}

/// Reads one line (without its line terminator) into rows.
pub fn parse_line(line: &str, options: &ImportOptions) -> Result<ImportedLine, BadLine> {
    let value: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(err) => return bad(format!("invalid JSON: {err}")),
    };
    let Value::Object(object) = value else {
        return bad(format!(
            "a line must be a JSON object, got {}",
            type_name(&value)
        ));
    };
    let (format, messages) = if let Some(messages) = object.get("messages") {
        (LineFormat::Chat, read_messages(messages, "messages")?)
    } else if let Some(dialog) = object.get("dialog") {
        (LineFormat::MemoryBench, read_dialog(dialog)?)
    } else {
        return bad(
            "neither \"messages\" (OpenAI chat format) nor \"dialog\" (MemoryBench format) is present",
        );
    };

    let tenant = options.tenant.as_str();
    let id = match optional_str(&object, "id")? {
        Some(text) => match Uuid::try_parse(text.trim()) {
            Ok(id) => id,
            Err(_) => return bad(format!("\"id\" must be a UUID, got {text:?}")),
        },
        None => imported_interaction_id(tenant, line),
    };
    let created_at = match optional_str(&object, "created_at")? {
        Some(text) => match DateTime::parse_from_rfc3339(text.trim()) {
            Ok(t) => t.with_timezone(&Utc),
            Err(err) => {
                return bad(format!(
                    "\"created_at\" must be an RFC 3339 time such as 2025-01-31T12:00:00Z, got {text:?} ({err})"
                ));
            }
        },
        None => options.now,
    };
    let model = match optional_str(&object, "model")? {
        Some(m) if !m.trim().is_empty() => m.to_owned(),
        _ => options.model.clone(),
    };
    let end_user = optional_str(&object, "user")?
        .filter(|u| !u.is_empty())
        .map(clean);
    let rating = match object.get("rating") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if r.eq_ignore_ascii_case("up") => Some(1i16),
        Some(Value::String(r)) if r.eq_ignore_ascii_case("down") => Some(-1i16),
        Some(other) => {
            return bad(format!(
                "\"rating\" must be \"up\" or \"down\", got {other}"
            ));
        }
    };
    let comment = optional_str(&object, "comment")?
        .filter(|c| !c.trim().is_empty())
        .map(clean);
    let expected_output = optional_str(&object, "expected_output")?
        .filter(|e| !e.trim().is_empty())
        .map(clean);

    // The query: the first user message; the answer: the first assistant
    // message after it; the prompt: everything before the answer.
    let Some(first_user) = messages.iter().position(|m| m.text.role == "user") else {
        return bad("no user message");
    };
    if messages[first_user].text.text.trim().is_empty() {
        return bad(format!(
            "the user message (message {}) is empty",
            first_user + 1
        ));
    }
    let Some(answer_at) = messages[first_user + 1..]
        .iter()
        .position(|m| m.text.role == "assistant")
        .map(|i| first_user + 1 + i)
    else {
        return bad("no assistant answer after the first user message");
    };
    let answer = &messages[answer_at].text.text;
    if answer.trim().is_empty() {
        return bad(format!(
            "the assistant answer (message {}) has no text",
            answer_at + 1
        ));
    }
    let prompt = &messages[..answer_at];
    let prompt_text: Vec<TextMessage<'_>> = prompt.iter().map(|m| m.text.clone()).collect();

    let mut request = Map::new();
    request.insert("model".into(), Value::String(clean(&model)));
    request.insert(
        "messages".into(),
        Value::Array(prompt.iter().map(|m| strip_nul(m.raw.clone())).collect()),
    );
    if format == LineFormat::MemoryBench {
        let metadata = memorybench_metadata(&object);
        if !metadata.is_empty() {
            request.insert("metadata".into(), Value::Object(metadata));
        }
    }

    let interaction = InteractionRow {
        id,
        tenant: clean(tenant),
        created_at,
        model: clean(&model),
        end_user: end_user.clone(),
        streamed: false,
        status: 200,
        outcome: "completed".into(),
        finish_reason: None,
        prompt_tokens: None,
        completion_tokens: None,
        total_tokens: None,
        upstream_ms: None,
        total_ms: 0.0,
        ttfb_ms: None,
        error: None,
        snapshot_version: None,
        cluster_id: None,
        path: None,
        // Lets a live request that continues an imported conversation find it.
        conversation_hash: Some(conversation_hash(tenant, &prompt_text, answer).to_vec()),
        request: Value::Object(request).to_string().into(),
        response_text: Some(clean(answer)),
        draft: None,
        critique: None,
    };

    // Feedback times follow the interaction's, a millisecond apart, so that
    // ordering by time keeps the turns' order.
    let at = |n: usize| created_at + TimeDelta::milliseconds(n as i64 + 1);
    let user_or_empty = end_user.clone().unwrap_or_default();
    let mut feedback: Vec<FeedbackRow> = messages[answer_at + 1..]
        .iter()
        .filter(|m| m.text.role == "user" && !m.text.text.trim().is_empty())
        .enumerate()
        .map(|(index, m)| FeedbackRow {
            id: imported_implicit_feedback_id(id, index),
            tenant: clean(tenant),
            interaction_id: id,
            end_user: user_or_empty.clone(),
            kind: "implicit".to_owned(),
            rating: None,
            comment: Some(clean(&m.text.text)),
            expected_output: None,
            source_interaction_id: None,
            created_at: at(index),
        })
        .collect();
    if rating.is_some() || comment.is_some() || expected_output.is_some() {
        feedback.push(FeedbackRow {
            id: explicit_feedback_id(tenant, InteractionId(id), &user_or_empty),
            tenant: clean(tenant),
            interaction_id: id,
            end_user: user_or_empty,
            kind: "explicit".to_owned(),
            rating,
            comment,
            expected_output,
            source_interaction_id: None,
            created_at: at(feedback.len()),
        });
    }
    Ok(ImportedLine {
        format,
        interaction,
        feedback,
    })
}

/// A MemoryBench `dialog`: a list of messages, or (as the Hugging Face copy
/// stores it) a string holding one.
fn read_dialog(dialog: &Value) -> Result<Vec<Message>, BadLine> {
    let Value::String(text) = dialog else {
        return read_messages(dialog, "dialog");
    };
    match serde_json::from_str::<Value>(text) {
        Ok(parsed) => read_messages(&parsed, "dialog"),
        Err(err) => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('[') && (trimmed.contains("{'") || trimmed.contains("'role'")) {
                bad(
                    "\"dialog\" is a Python literal (single quotes), not JSON; convert it first, \
                     e.g. json.dumps(ast.literal_eval(row[\"dialog\"]))",
                )
            } else {
                bad(format!(
                    "\"dialog\" is a string but not a JSON list of messages: {err}"
                ))
            }
        }
    }
}

/// A list of `{role, content}` messages; `content` is a string, an array of
/// parts (their text parts are the text) or null.
fn read_messages(value: &Value, field: &str) -> Result<Vec<Message>, BadLine> {
    let Value::Array(items) = value else {
        return bad(format!(
            "\"{field}\" must be a list of messages, got {}",
            type_name(value)
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let n = i + 1;
            let Value::Object(message) = item else {
                return bad(format!(
                    "{field} message {n} must be an object, got {}",
                    type_name(item)
                ));
            };
            let role = match message.get("role") {
                Some(Value::String(role)) => role.clone(),
                Some(other) => {
                    return bad(format!(
                        "{field} message {n}: \"role\" must be a string, got {}",
                        type_name(other)
                    ));
                }
                None => return bad(format!("{field} message {n} has no \"role\"")),
            };
            let content = message.get("content").unwrap_or(&Value::Null);
            let well_formed = match content {
                Value::String(_) | Value::Null => true,
                Value::Array(parts) => parts.iter().all(|p| match p.get("text") {
                    Some(text) => text.is_string(),
                    None => p.is_object(),
                }),
                _ => false,
            };
            if !well_formed {
                return bad(format!(
                    "{field} message {n}: \"content\" must be a string or a list of text parts, got {}",
                    type_name(content)
                ));
            }
            Ok(Message {
                raw: item.clone(),
                text: TextMessage {
                    role: role.into(),
                    text: content_text(content).into(),
                },
            })
        })
        .collect()
}

/// A string field that may be absent or null.
fn optional_str<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, BadLine> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => bad(format!(
            "\"{field}\" must be a string, got {}",
            type_name(other)
        )),
    }
}

/// What identifies a MemoryBench row, kept with the request as OpenAI-style
/// string metadata.
fn memorybench_metadata(object: &Map<String, Value>) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert("source".into(), json!("memorybench"));
    for field in ["dataset_name", "test_idx", "lang"] {
        let text = match object.get(field) {
            Some(Value::String(s)) => clean(s),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        metadata.insert(field.into(), Value::String(text));
    }
    metadata
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Postgres refuses NUL in text.
fn clean(text: &str) -> String {
    text.replace('\0', "")
}

fn strip_nul(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains('\0') => Value::String(clean(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nul).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (clean(&k), strip_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

impl Store {
    /// Which of `ids` are stored as interactions, with the tenant each
    /// belongs to.
    pub async fn existing_interactions(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, String>, StoreError> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let text = format!(
                "SELECT DISTINCT id, tenant_id FROM interactions WHERE id IN ({})",
                placeholders.join(", ")
            );
            let rows: Vec<(Uuid, String)> = on_pool!(self, |pool, sqlite| {
                let statement = sql(sqlite, &text);
                let mut query = sqlx::query_as(&statement);
                for id in chunk {
                    query = query.bind(*id);
                }
                query.fetch_all(pool).await?
            });
            found.extend(rows);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn options() -> ImportOptions {
        ImportOptions {
            tenant: "t".into(),
            model: "imported".into(),
            now: DateTime::parse_from_rfc3339("2025-03-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    fn parse(line: &str) -> Result<ImportedLine, BadLine> {
        parse_line(line, &options())
    }

    fn request(line: &ImportedLine) -> Value {
        serde_json::from_str(&line.interaction.request).unwrap()
    }

    #[test]
    fn a_chat_line_gives_prompt_answer_and_feedback() {
        let line = r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"capital of France?"},{"role":"assistant","content":"Paris."},{"role":"user","content":"explain why"},{"role":"assistant","content":"Because."},{"role":"user","content":[{"type":"text","text":"still"},{"type":"text","text":"too short"}]}],"rating":"down","comment":"terse","expected_output":"Paris, the capital since...","user":"u1","created_at":"2024-05-06T07:08:09Z","model":"gpt-x"}"#;
        let parsed = parse(line).unwrap();
        assert_eq!(parsed.format, LineFormat::Chat);
        let i = &parsed.interaction;
        assert_eq!(i.tenant, "t");
        assert_eq!(i.model, "gpt-x");
        assert_eq!(i.end_user.as_deref(), Some("u1"));
        assert_eq!(i.created_at.to_rfc3339(), "2024-05-06T07:08:09+00:00");
        assert_eq!(
            (i.status, i.outcome.as_ref(), i.streamed),
            (200, "completed", false)
        );
        assert_eq!(i.response_text.as_deref(), Some("Paris."));
        assert_eq!(
            request(&parsed),
            json!({"model": "gpt-x", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "capital of France?"},
            ]})
        );
        let kinds: Vec<(&str, Option<&str>)> = parsed
            .feedback
            .iter()
            .map(|f| (f.kind.as_str(), f.comment.as_deref()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("implicit", Some("explain why")),
                ("implicit", Some("still\ntoo short")),
                ("explicit", Some("terse")),
            ]
        );
        let explicit = &parsed.feedback[2];
        assert_eq!(explicit.rating, Some(-1));
        assert_eq!(
            explicit.expected_output.as_deref(),
            Some("Paris, the capital since...")
        );
        assert_eq!(
            explicit.id,
            explicit_feedback_id("t", InteractionId(i.id), "u1")
        );
        assert!(
            parsed
                .feedback
                .iter()
                .all(|f| f.interaction_id == i.id && f.end_user == "u1")
        );
        // Later turns keep their order in time.
        assert!(
            parsed
                .feedback
                .windows(2)
                .all(|w| w[0].created_at < w[1].created_at)
        );
        assert!(parsed.feedback[0].created_at > i.created_at);
        assert_eq!(parsed.clone().into_rows().len(), 4);
    }

    #[test]
    fn ids_are_deterministic_per_tenant_and_line() {
        let line = r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"},{"role":"user","content":"f"}]}"#;
        let a = parse(line).unwrap();
        let b = parse(line).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.id(), imported_interaction_id("t", line));
        let mut other = options();
        other.tenant = "t2".into();
        assert_ne!(parse_line(line, &other).unwrap().id(), a.id());
        let spaced = line.replace(",\"content\"", ", \"content\"");
        assert_ne!(parse(&spaced).unwrap().id(), a.id());
        // Defaults: the import's model and time, no user.
        assert_eq!(a.interaction.model, "imported");
        assert_eq!(a.interaction.created_at, options().now);
        assert_eq!(a.interaction.end_user, None);
        assert_eq!(a.feedback[0].end_user, "");
    }

    #[test]
    fn a_given_id_is_kept() {
        let id = "0190b6f4-8c1e-7d3a-9f00-1a2b3c4d5e6f";
        let line = format!(
            r#"{{"id":"{id}","messages":[{{"role":"user","content":"q"}},{{"role":"assistant","content":"a"}}],"rating":"up"}}"#
        );
        let parsed = parse(&line).unwrap();
        assert_eq!(parsed.id().to_string(), id);
        assert_eq!(parsed.feedback.len(), 1);
        assert_eq!(parsed.feedback[0].rating, Some(1));
        assert!(
            parse(r#"{"id":"nope","messages":[]}"#)
                .unwrap_err()
                .0
                .contains("UUID")
        );
    }

    #[test]
    fn a_memorybench_dialog_reads_as_list_or_json_string() {
        let dialog = json!([
            {"role": "system", "content": "You are a lawyer."},
            {"role": "user", "content": "Is this contract valid?"},
            {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": "Cite the statute."},
            {"role": "assistant", "content": "Article 5."},
            {"role": "user", "content": "Better."},
        ]);
        let as_list =
            json!({"test_idx": 48, "dataset_name": "JRE-L", "lang": "en", "dialog": dialog});
        let as_string = json!({"test_idx": 48, "dataset_name": "JRE-L", "lang": "en", "dialog": dialog.to_string(), "implicit_feedback": "[]"});
        for line in [as_list, as_string] {
            let parsed = parse(&line.to_string()).unwrap();
            assert_eq!(parsed.format, LineFormat::MemoryBench);
            assert_eq!(parsed.interaction.response_text.as_deref(), Some("Yes."));
            let req = request(&parsed);
            assert_eq!(req["messages"].as_array().unwrap().len(), 2);
            assert_eq!(
                req["metadata"],
                json!({"source": "memorybench", "dataset_name": "JRE-L", "test_idx": "48", "lang": "en"})
            );
            let comments: Vec<&str> = parsed
                .feedback
                .iter()
                .map(|f| f.comment.as_deref().unwrap())
                .collect();
            assert_eq!(comments, vec!["Cite the statute.", "Better."]);
            assert!(parsed.feedback.iter().all(|f| f.kind == "implicit"));
        }
    }

    #[test]
    fn a_short_dialog_is_an_interaction_without_feedback() {
        let line = json!({"dialog": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]});
        let parsed = parse(&line.to_string()).unwrap();
        assert!(parsed.feedback.is_empty());
        assert_eq!(parsed.into_rows().len(), 1);
    }

    #[test]
    fn a_python_literal_dialog_is_refused_with_a_hint() {
        let line = json!({"dialog": "[{'role': 'user', 'content': 'q'}, {'role': 'assistant', 'content': 'a'}]"});
        let err = parse(&line.to_string()).unwrap_err();
        assert!(err.0.contains("Python literal"), "{err}");
    }

    #[test]
    fn bad_lines_say_why() {
        let cases = [
            ("{not json", "invalid JSON"),
            ("[1, 2]", "JSON object"),
            (r#"{"prompt":"q"}"#, "neither"),
            (r#"{"messages":"hi"}"#, "must be a list"),
            (
                r#"{"messages":[{"role":"system","content":"s"}]}"#,
                "no user message",
            ),
            (
                r#"{"messages":[{"role":"user","content":"q"}]}"#,
                "no assistant answer",
            ),
            (
                r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":""}]}"#,
                "no text",
            ),
            (
                r#"{"messages":[{"role":"user","content":5},{"role":"assistant","content":"a"}]}"#,
                "\"content\"",
            ),
            (r#"{"messages":[{"content":"q"}]}"#, "no \"role\""),
            (
                r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],"rating":1}"#,
                "\"rating\"",
            ),
            (
                r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],"user":7}"#,
                "\"user\"",
            ),
            (
                r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}],"created_at":"yesterday"}"#,
                "RFC 3339",
            ),
            (r#"{"dialog":"not a list"}"#, "not a JSON list"),
        ];
        for (line, expected) in cases {
            let err = parse(line).unwrap_err();
            assert!(err.0.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn nul_is_stripped_from_stored_text() {
        let line = r#"{"messages":[{"role":"user","content":"q\u0000"},{"role":"assistant","content":"a\u0000"},{"role":"user","content":"f\u0000"}]}"#;
        let parsed = parse(line).unwrap();
        assert!(!parsed.interaction.request.contains("\\u0000"));
        assert_eq!(parsed.interaction.response_text.as_deref(), Some("a"));
        assert_eq!(parsed.feedback[0].comment.as_deref(), Some("f"));
    }

    #[test]
    fn the_hash_matches_a_live_follow_up() {
        let line =
            r#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}"#;
        let parsed = parse(line).unwrap();
        let follow = uno_core::digest::RequestDigest::of_body(
            "t",
            br#"{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"},{"role":"user","content":"more"}]}"#,
        )
        .follow_up
        .unwrap();
        assert_eq!(
            parsed.interaction.conversation_hash.as_deref(),
            Some(&follow.parent_hash[..])
        );
    }
}
