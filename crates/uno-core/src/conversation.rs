//! Recognising a request that continues a logged conversation.
//!
//! When uno logs an answer A to messages M, it also stores
//! `conversation_hash(tenant, M, A)`. A later request whose messages are
//! `M, assistant(A), user(U), ...` carries the same hash for its prefix
//! (found by [`crate::digest::RequestDigest`]), so the writer can find the
//! earlier interaction with one indexed lookup and record U as feedback on
//! it. Hashing role and text only makes the match
//! robust to clients that re-send messages with different JSON formatting or
//! extra fields.
//!
//! The log writer reads every request, so the parse here borrows: roles and
//! texts point into the request body unless JSON escapes force a copy.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use xxhash_rust::xxh3::Xxh3;

/// The length of [`conversation_hash`], in bytes.
pub const CONVERSATION_HASH_LEN: usize = 16;

/// A conversation hash (see [`conversation_hash`]).
pub type ConversationHash = [u8; CONVERSATION_HASH_LEN];

/// One message reduced to what identifies it in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage<'a> {
    /// The role.
    pub role: Cow<'a, str>,
    /// The text content (parts joined by newlines; empty for none).
    pub text: Cow<'a, str>,
}

impl TextMessage<'_> {
    /// The message with its own copies of role and text.
    pub fn into_owned(self) -> TextMessage<'static> {
        TextMessage {
            role: Cow::Owned(self.role.into_owned()),
            text: Cow::Owned(self.text.into_owned()),
        }
    }
}

/// What the log writer needs from a chat request body, read in one parse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ChatRequestText<'a> {
    /// The model asked for.
    #[serde(default, borrow)]
    pub model: Cow<'a, str>,
    /// The messages, as text.
    #[serde(default, borrow)]
    pub messages: Vec<TextMessage<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for TextMessage<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw<'a> {
            #[serde(default, borrow)]
            role: Cow<'a, str>,
            #[serde(default, borrow)]
            content: ContentText<'a>,
        }
        let raw = Raw::deserialize(deserializer)?;
        Ok(TextMessage {
            role: raw.role,
            text: raw.content.0,
        })
    }
}

/// A message `content` read straight to its text (see [`content_text`]):
/// a string as it is, the string `text` of each part of an array joined by
/// newlines, nothing for anything else.
#[derive(Debug, Default)]
struct ContentText<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for ContentText<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = deserializer.deserialize_any(ContentVisitor {
            strings_only: false,
        })?;
        Ok(ContentText(value.unwrap_or_default()))
    }
}

/// A value kept only when it is a string (a content part's `text`).
struct StringOnly<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for StringOnly<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ContentVisitor { strings_only: true })
            .map(StringOnly)
    }
}

/// Reads a content value to its text: `None` for values that have none.
/// With `strings_only`, arrays of parts count as having none too.
struct ContentVisitor {
    strings_only: bool,
}

impl<'de> Visitor<'de> for ContentVisitor {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("message content")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.strings_only {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(None);
        }
        let mut joined: Option<Cow<'de, str>> = None;
        while let Some(part) = seq.next_element::<PartText<'de>>()? {
            let Some(part) = part.0 else { continue };
            joined = Some(match joined {
                None => part,
                Some(earlier) => {
                    let mut earlier = earlier.into_owned();
                    earlier.push('\n');
                    earlier.push_str(&part);
                    Cow::Owned(earlier)
                }
            });
        }
        Ok(Some(joined.unwrap_or_default()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// One content part: its `text` when that is a string, else nothing.
struct PartText<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for PartText<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PartVisitor)
    }
}

/// Reads a part object's `text`; anything but an object has none.
struct PartVisitor;

impl<'de> Visitor<'de> for PartVisitor {
    type Value = PartText<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a content part")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut text = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "text" && text.is_none() {
                text = map.next_value::<StringOnly<'de>>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(PartText(text))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(PartText(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(PartText(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(PartText(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(PartText(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(PartText(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(PartText(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(PartText(None))
    }
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

/// The model and messages of a chat request body, as text borrowed from
/// it. `None` if it is not a chat request.
pub fn parse_chat_request(body: &[u8]) -> Option<ChatRequestText<'_>> {
    crate::json::from_json(body).ok()
}

/// The messages of a chat request body, as text. `None` if it is not a chat
/// request.
pub fn request_messages(body: &[u8]) -> Option<Vec<TextMessage<'static>>> {
    parse_chat_request(body).map(|r| {
        r.messages
            .into_iter()
            .map(TextMessage::into_owned)
            .collect()
    })
}

/// The first stage of [`conversation_hash`]: the tenant and the messages
/// before the answer. Kept apart so the proxy can hash a request's
/// messages as it reads them and the answer once it has it.
pub type PrefixHash = u128;

/// Hashes the tenant and messages of a conversation, one message at a time.
pub struct PrefixHasher(Xxh3);

impl PrefixHasher {
    /// Starts a conversation of `tenant`.
    pub fn new(tenant: &str) -> Self {
        let mut hasher = Xxh3::new();
        hasher.update(tenant.as_bytes());
        hasher.update(&[0]);
        PrefixHasher(hasher)
    }

    /// Adds the next message.
    pub fn message(&mut self, role: &str, text: &str) {
        self.0.update(role.as_bytes());
        self.0.update(&[0]);
        self.0.update(&(text.len() as u64).to_le_bytes());
        self.0.update(text.as_bytes());
    }

    /// The hash of the messages so far (more may follow).
    pub fn prefix(&self) -> PrefixHash {
        self.0.digest128()
    }
}

/// The hash of a conversation up to and including an assistant answer.
///
/// xxh3-128 rather than a cryptographic hash: the proxy hashes every
/// logged exchange (kilobytes each), and at 16 bytes chance collisions are
/// out of reach. A client that engineered one could only attach its own
/// follow-up text to another interaction of its own tenant (the tenant is
/// hashed in), which the feedback API already lets it do.
pub fn conversation_hash(
    tenant: &str,
    messages: &[TextMessage<'_>],
    answer: &str,
) -> ConversationHash {
    let mut hasher = PrefixHasher::new(tenant);
    for message in messages {
        hasher.message(&message.role, &message.text);
    }
    answer_hash(hasher.prefix(), answer)
}

/// The second stage of [`conversation_hash`]: the answer after `prefix`.
pub fn answer_hash(prefix: PrefixHash, answer: &str) -> ConversationHash {
    let mut hasher = Xxh3::new();
    hasher.update(&prefix.to_le_bytes());
    hasher.update(b"assistant");
    hasher.update(&[0]);
    hasher.update(&(answer.len() as u64).to_le_bytes());
    hasher.update(answer.as_bytes());
    hasher.digest128().to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, text: &str) -> TextMessage<'static> {
        TextMessage {
            role: Cow::Owned(role.to_owned()),
            text: Cow::Owned(text.to_owned()),
        }
    }

    #[test]
    fn request_messages_read_strings_and_parts() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}},{"type":"text","text":"b"}]},{"role":"assistant","content":null}]}"#;
        let messages = request_messages(body).unwrap();
        assert_eq!(messages[0].text, "a\nb");
        assert_eq!(messages[1].text, "");
    }

    #[test]
    fn plain_texts_are_borrowed_and_escaped_ones_unescaped() {
        let body = br#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"line\none \"quoted\""}]}"#;
        let parsed = parse_chat_request(body).unwrap();
        assert_eq!(parsed.model, "m");
        assert!(matches!(parsed.model, Cow::Borrowed(_)));
        assert!(matches!(parsed.messages[0].text, Cow::Borrowed("be brief")));
        assert_eq!(parsed.messages[1].text, "line\none \"quoted\"");
    }

    #[test]
    fn content_reads_like_content_text() {
        // Every shape content can take reads as content_text reads it.
        let contents = [
            r#""plain""#,
            r#""esc\u00e9""#,
            r#"[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]"#,
            r#"[{"type":"text","text":5},{"text":["x"]},"loose",7,null,[1],{"text":"only"}]"#,
            r#"[]"#,
            r#"null"#,
            r#"{"text":"an object is not content"}"#,
            r#"12"#,
            r#"true"#,
        ];
        for content in contents {
            let body =
                format!(r#"{{"messages":[{{"role":"user","content":{content},"name":"n"}}]}}"#);
            let parsed = parse_chat_request(body.as_bytes()).unwrap();
            let value: Value = serde_json::from_str(content).unwrap();
            assert_eq!(
                parsed.messages[0].text,
                content_text(&value),
                "content {content}"
            );
        }
        let none = parse_chat_request(br#"{"messages":[{"role":"user"}]}"#).unwrap();
        assert_eq!(none.messages[0].text, "");
        assert!(parse_chat_request(b"not json").is_none());
        assert!(parse_chat_request(br#"{"messages":[{"role":null}]}"#).is_none());
    }

    #[test]
    fn the_hash_is_stable_across_releases() {
        // Stored hashes must keep matching follow-ups after an upgrade.
        let hash = conversation_hash("t", &[msg("user", "capital of France?")], "Paris.");
        assert_eq!(hash.len(), CONVERSATION_HASH_LEN);
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "4d3f8e9d336c1136b0c0e3e9c2054eaa");
    }

    #[test]
    fn boundaries_matter() {
        let a = conversation_hash("t", &[msg("user", "ab")], "c");
        let b = conversation_hash("t", &[msg("user", "a")], "bc");
        assert_ne!(a, b);
    }
}
