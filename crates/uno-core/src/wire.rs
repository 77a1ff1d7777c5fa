//! Borrowed views of OpenAI request bodies.
//!
//! uno forwards the client's original bytes to the upstream, so unknown fields
//! survive untouched and nothing is re-serialised on the hot path. These views
//! read only the fields uno itself needs (to route, to validate, to log), and
//! borrow strings from the body instead of copying them. Deserialising through
//! `serde_path_to_error` makes a wrong type produce a 400 that names the field.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::json::from_json;

/// The fields of `POST /v1/chat/completions` that uno reads.
#[derive(Debug, Deserialize)]
pub struct ChatRequestView<'a> {
    /// The model the client asked for; picks the upstream.
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// The conversation so far.
    #[serde(borrow)]
    pub messages: Vec<MessageView<'a>>,
    /// Whether the client wants server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options; only `include_usage` matters to uno.
    #[serde(default)]
    pub stream_options: Option<StreamOptionsView>,
    /// The end user, as OpenAI's `user` field names them.
    #[serde(default, borrow, deserialize_with = "crate::json::borrowed_text")]
    pub user: Option<Cow<'a, str>>,
    /// Tool definitions; kept raw, only their presence matters (requests
    /// with tools are not given learned experience unless
    /// `learn.route_tools` is on).
    #[serde(default, borrow)]
    pub tools: Option<&'a RawValue>,
    /// The legacy form of `tools`.
    #[serde(default, borrow)]
    pub functions: Option<&'a RawValue>,
    /// How the model may call tools.
    #[serde(default, borrow)]
    pub tool_choice: Option<&'a RawValue>,
    /// A requested output format (JSON mode, a schema).
    #[serde(default, borrow)]
    pub response_format: Option<&'a RawValue>,
}

/// One message of a chat request.
#[derive(Debug, Deserialize)]
pub struct MessageView<'a> {
    /// `system`, `developer`, `user`, `assistant`, `tool` or `function`.
    #[serde(borrow)]
    pub role: Cow<'a, str>,
    /// Text, an array of content parts, or null (assistant tool calls).
    /// Kept raw: uno only needs it for logging, which happens off the hot path.
    #[serde(default, borrow)]
    pub content: Option<&'a RawValue>,
}

impl MessageView<'_> {
    /// The content as text: a string as is, the text parts of an array
    /// joined by newlines, nothing for null (as
    /// [`content_text`](crate::conversation::content_text) reads stored
    /// requests, so the proxy sees the query the worker learned from).
    pub fn text(&self) -> Cow<'_, str> {
        let Some(raw) = self.content else {
            return Cow::Borrowed("");
        };
        match raw.get().as_bytes().first() {
            Some(b'"') => match serde_json::from_str::<&str>(raw.get()) {
                Ok(text) => Cow::Borrowed(text),
                // Escapes: the unescaped text needs its own buffer.
                Err(_) => Cow::Owned(serde_json::from_str::<String>(raw.get()).unwrap_or_default()),
            },
            Some(b'[') => serde_json::from_str::<serde_json::Value>(raw.get())
                .map(|v| Cow::Owned(crate::conversation::content_text(&v)))
                .unwrap_or(Cow::Borrowed("")),
            _ => Cow::Borrowed(""),
        }
    }
}

/// `stream_options` of a chat request.
#[derive(Debug, Deserialize)]
pub struct StreamOptionsView {
    /// Whether the client wants a final usage chunk.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The fields of `POST /v1/embeddings` that uno reads.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequestView<'a> {
    /// The embedding model; picks the upstream.
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// A string, an array of strings, or token arrays; passed on as is.
    #[serde(borrow)]
    pub input: &'a RawValue,
    /// The end user.
    #[serde(default, borrow, deserialize_with = "crate::json::borrowed_text")]
    pub user: Option<Cow<'a, str>>,
}

impl<'a> ChatRequestView<'a> {
    /// Parses and validates a chat request body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ApiError> {
        let view: Self = parse_json(body)?;
        if view.model.is_empty() {
            return Err(ApiError::bad_request("model: must not be empty").with_param("model"));
        }
        if view.messages.is_empty() {
            return Err(
                ApiError::bad_request("messages: must contain at least one message")
                    .with_param("messages"),
            );
        }
        for (i, message) in view.messages.iter().enumerate() {
            if let Some(content) = message.content {
                let first = content.get().as_bytes().first().copied();
                if !matches!(first, Some(b'"' | b'[' | b'n')) {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}].content: expected a string, an array of content parts or null"
                    ))
                    .with_param(format!("messages[{i}].content")));
                }
            }
        }
        Ok(view)
    }

    /// Whether the client asked for a streamed answer.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

impl<'a> EmbeddingsRequestView<'a> {
    /// Parses and validates an embeddings request body.
    pub fn parse(body: &'a [u8]) -> Result<Self, ApiError> {
        let view: Self = parse_json(body)?;
        if view.model.is_empty() {
            return Err(ApiError::bad_request("model: must not be empty").with_param("model"));
        }
        let first = view.input.get().as_bytes().first().copied();
        if !matches!(first, Some(b'"' | b'[')) {
            return Err(ApiError::bad_request(
                "input: expected a string, an array of strings or an array of token arrays",
            )
            .with_param("input"));
        }
        Ok(view)
    }
}

/// Deserialises `body`, turning serde's error into a 400 that names the
/// offending field path (`messages[0].role: invalid type: ...`).
///
/// The common case (a valid body) takes plain `serde_json` ([`from_json`]);
/// only a body that fails is parsed again through `serde_path_to_error`,
/// which tracks the path at twice the cost.
fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if let Ok(value) = from_json(body) {
        return Ok(value);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty; send a JSON object (Content-Type: application/json)",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("request body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::bad_request(format!("request body: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}")).with_param(path)
        }
    })?;
    de.end().map_err(|err| {
        ApiError::bad_request(format!(
            "request body is not valid JSON: trailing data ({err})"
        ))
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_known_fields_and_ignores_unknown() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi","name":"x"}],
            "stream":true,"stream_options":{"include_usage":true},"user":"u1","logit_bias":{"1":2},"x_future":[1]}"#;
        let view = ChatRequestView::parse(body).unwrap();
        assert_eq!(view.model, "m");
        assert!(view.is_stream());
        assert_eq!(view.stream_options.unwrap().include_usage, Some(true));
        assert_eq!(view.user.as_deref(), Some("u1"));
        assert_eq!(view.messages[0].content.unwrap().get(), "\"hi\"");
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = ChatRequestView::parse(br#"{"model":"m","messages":[{"role":1}]}"#).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(
            err.message.starts_with("messages[0].role: invalid type"),
            "{}",
            err.message
        );
        assert_eq!(err.param.as_deref(), Some("messages[0].role"));

        let err =
            ChatRequestView::parse(br#"{"model":"m","messages":[],"stream":"yes"}"#).unwrap_err();
        assert!(
            err.message.starts_with("stream: invalid type"),
            "{}",
            err.message
        );
    }

    #[test]
    fn missing_field_and_bad_json_are_named() {
        let err =
            ChatRequestView::parse(br#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
        assert!(
            err.message.contains("missing field `model`"),
            "{}",
            err.message
        );
        let err = ChatRequestView::parse(br#"{"model": "m", "#).unwrap_err();
        assert!(
            err.message.starts_with("request body is not valid JSON"),
            "{}",
            err.message
        );
        let err = ChatRequestView::parse(b"   ").unwrap_err();
        assert!(err.message.contains("empty"), "{}", err.message);
        let err = ChatRequestView::parse(br#"[1,2]"#).unwrap_err();
        assert_eq!(err.status, 400);
        let err = ChatRequestView::parse(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}]} {}"#,
        )
        .unwrap_err();
        assert!(err.message.contains("trailing"), "{}", err.message);
    }

    #[test]
    fn empty_messages_and_bad_content_are_rejected() {
        let err = ChatRequestView::parse(br#"{"model":"m","messages":[]}"#).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages"));
        let err =
            ChatRequestView::parse(br#"{"model":"m","messages":[{"role":"user","content":5}]}"#)
                .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[0].content"));
    }

    #[test]
    fn message_text_reads_strings_parts_and_escapes() {
        let body = br#"{"model":"m","messages":[
            {"role":"system","content":"Be \"brief\"."},
            {"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}},{"type":"text","text":"b"}]},
            {"role":"assistant","content":null},
            {"role":"user","content":"plain"}],
            "tools":[{"type":"function"}],"response_format":null}"#;
        let view = ChatRequestView::parse(body).unwrap();
        let texts: Vec<_> = view
            .messages
            .iter()
            .map(|m| m.text().into_owned())
            .collect();
        assert_eq!(texts, ["Be \"brief\".", "a\nb", "", "plain"]);
        assert!(view.tools.is_some());
        assert!(view.response_format.is_none(), "null counts as absent");
        assert!(view.functions.is_none() && view.tool_choice.is_none());
    }

    #[test]
    fn escaped_strings_still_parse() {
        let body = br#"{"model":"a\"b","messages":[{"role":"user","content":"x"}]}"#;
        assert_eq!(ChatRequestView::parse(body).unwrap().model, "a\"b");
    }

    #[test]
    fn embeddings_input_must_be_string_or_array() {
        assert!(EmbeddingsRequestView::parse(br#"{"model":"e","input":"hi"}"#).is_ok());
        assert!(EmbeddingsRequestView::parse(br#"{"model":"e","input":["a","b"]}"#).is_ok());
        let err = EmbeddingsRequestView::parse(br#"{"model":"e","input":3}"#).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("input"));
    }
}
