//! Recognising a request that continues a logged conversation.
//!
//! When uno logs an answer A to messages M, it also stores
//! `conversation_hash(tenant, M, A)`. A later request whose messages are
//! `M, assistant(A), user(U), ...` carries the same hash for its prefix, so
//! the writer can find the earlier interaction with one indexed lookup and
//! record U as feedback on it. Hashing role and text only makes the match
//! robust to clients that re-send messages with different JSON formatting or
//! extra fields.

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One message reduced to what identifies it in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    /// The role.
    pub role: String,
    /// The text content (parts joined by newlines; empty for none).
    pub text: String,
}

#[derive(Deserialize)]
struct RequestMessages {
    #[serde(default)]
    model: String,
    #[serde(default)]
    messages: Vec<RawMessage>,
}

/// What the log writer needs from a chat request body, read in one parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatRequestText {
    /// The model asked for.
    pub model: String,
    /// The messages, as text.
    pub messages: Vec<TextMessage>,
}

#[derive(Deserialize)]
struct RawMessage {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: Value,
}

/// The text of an OpenAI message `content`: a string, or the text parts of
/// an array joined by newlines.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// [`content_text`] taking the content by value, so a plain string moves
/// out instead of being copied (the log writer reads every request).
pub fn into_content_text(content: Value) -> String {
    match content {
        Value::String(s) => s,
        other => content_text(&other),
    }
}

/// The model and messages of a chat request body, as text. `None` if it is
/// not a chat request.
pub fn parse_chat_request(body: &[u8]) -> Option<ChatRequestText> {
    let parsed: RequestMessages = serde_json::from_slice(body).ok()?;
    Some(ChatRequestText {
        model: parsed.model,
        messages: parsed
            .messages
            .into_iter()
            .map(|m| TextMessage {
                text: into_content_text(m.content),
                role: m.role,
            })
            .collect(),
    })
}

/// The messages of a chat request body, as text. `None` if it is not a chat
/// request.
pub fn request_messages(body: &[u8]) -> Option<Vec<TextMessage>> {
    parse_chat_request(body).map(|r| r.messages)
}

/// The hash of a conversation up to and including an assistant answer.
pub fn conversation_hash(tenant: &str, messages: &[TextMessage], answer: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(tenant.as_bytes());
    hasher.update([0]);
    for message in messages {
        hasher.update(message.role.as_bytes());
        hasher.update([0]);
        hasher.update((message.text.len() as u64).to_le_bytes());
        hasher.update(message.text.as_bytes());
    }
    hasher.update(b"assistant");
    hasher.update([0]);
    hasher.update((answer.len() as u64).to_le_bytes());
    hasher.update(answer.as_bytes());
    hasher.finalize().into()
}

/// A request continuing an earlier answer: the hash that identifies the
/// earlier exchange, and the user's reply to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    /// `conversation_hash` of the earlier exchange.
    pub parent_hash: [u8; 32],
    /// The user turn(s) that answered the earlier answer.
    pub text: String,
}

/// If `messages` continue an earlier answer (…, assistant, user… at the
/// end), the follow-up they carry. The last assistant message is the one
/// being reacted to; every user message after it is the reaction.
pub fn follow_up(tenant: &str, messages: &[TextMessage]) -> Option<FollowUp> {
    let last_assistant = messages.iter().rposition(|m| m.role == "assistant")?;
    let replies: Vec<&str> = messages[last_assistant + 1..]
        .iter()
        .filter(|m| m.role == "user")
        .map(|m| m.text.as_str())
        .filter(|t| !t.trim().is_empty())
        .collect();
    if replies.is_empty() {
        return None;
    }
    let answer = &messages[last_assistant].text;
    Some(FollowUp {
        parent_hash: conversation_hash(tenant, &messages[..last_assistant], answer),
        text: replies.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, text: &str) -> TextMessage {
        TextMessage {
            role: role.into(),
            text: text.into(),
        }
    }

    #[test]
    fn follow_up_matches_the_logged_exchange() {
        let first = vec![msg("system", "be brief"), msg("user", "capital of France?")];
        let logged = conversation_hash("t", &first, "Paris.");
        let mut next = first.clone();
        next.push(msg("assistant", "Paris."));
        next.push(msg("user", "Too short, explain why."));
        let f = follow_up("t", &next).unwrap();
        assert_eq!(f.parent_hash, logged);
        assert_eq!(f.text, "Too short, explain why.");
        // Another tenant's identical conversation does not match.
        assert_ne!(follow_up("t2", &next).unwrap().parent_hash, logged);
    }

    #[test]
    fn first_turns_are_not_follow_ups() {
        assert!(follow_up("t", &[msg("user", "hi")]).is_none());
        assert!(follow_up("t", &[msg("user", "hi"), msg("assistant", "hello")]).is_none());
    }

    #[test]
    fn request_messages_read_strings_and_parts() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}},{"type":"text","text":"b"}]},{"role":"assistant","content":null}]}"#;
        let messages = request_messages(body).unwrap();
        assert_eq!(messages[0].text, "a\nb");
        assert_eq!(messages[1].text, "");
    }

    #[test]
    fn boundaries_matter() {
        let a = conversation_hash("t", &[msg("user", "ab")], "c");
        let b = conversation_hash("t", &[msg("user", "a")], "bc");
        assert_ne!(a, b);
    }
}
