//! Reading OpenAI chat completion responses after the fact.
//!
//! The proxy relays upstream bytes untouched and keeps them (reference-counted,
//! not copied) on the interaction record. Turning them into the answer text,
//! finish reason and token usage happens here, once, as the finished record is
//! handed to the log (`uno_store::rows`), so relaying does no JSON work per
//! streamed chunk.

use std::borrow::Cow;

use serde::Deserialize;

/// Token usage as OpenAI reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens in the answer.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Both together.
    #[serde(default)]
    pub total_tokens: u64,
}

/// What a chat completion (plain or streamed) said, reduced to what uno logs.
///
/// Texts borrow from a completion's body where they hold no escapes (the
/// common case): the log copies the answer once, into its row, not first
/// into a summary of its own. A stream's texts are joined from many events,
/// so they are owned (`ResponseSummary<'static>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseSummary<'a> {
    /// The text of the first choice.
    pub text: Cow<'a, str>,
    /// The first choice's finish reason, when the upstream gave one.
    pub finish_reason: Option<Cow<'a, str>>,
    /// Usage, when the upstream reported it.
    pub usage: Option<Usage>,
    /// For streams: whether `data: [DONE]` arrived.
    pub saw_done: bool,
    /// An error the upstream reported in the body or as an SSE event.
    pub error: Option<String>,
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: FirstChoice<'a>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

// Texts borrow from the body where they hold no escapes (`json::borrowed_text`):
// every logged response is summarised.
#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(default)]
    index: u32,
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    #[serde(default, borrow)]
    message: Option<Delta<'a>>,
    #[serde(default, borrow, deserialize_with = "crate::json::borrowed_text")]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow, deserialize_with = "crate::json::borrowed_text")]
    content: Option<Cow<'a, str>>,
}

/// A chunk's `choices` reduced, as they are read, to what uno logs: the
/// first choice's (index 0) text and finish reason. No vector is built for
/// every response and every streamed event.
#[derive(Default)]
struct FirstChoice<'a> {
    content: Option<Cow<'a, str>>,
    finish_reason: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for FirstChoice<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Choices<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Choices<'a> {
            type Value = FirstChoice<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of choices")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut first = FirstChoice::default();
                while let Some(choice) = seq.next_element::<ChunkChoice<'a>>()? {
                    if choice.index != 0 {
                        continue;
                    }
                    if let Some(part) = choice.delta.or(choice.message).and_then(|d| d.content) {
                        first.content = Some(match first.content.take() {
                            None => part,
                            Some(before) => Cow::Owned(before.into_owned() + &part),
                        });
                    }
                    if choice.finish_reason.is_some() {
                        first.finish_reason = choice.finish_reason;
                    }
                }
                Ok(first)
            }
        }
        deserializer.deserialize_seq(Choices(std::marker::PhantomData))
    }
}

impl<'a> ResponseSummary<'a> {
    /// Takes in one chunk; `keep` turns its texts into the summary's (as
    /// they are for a body the summary borrows, copied for a stream event).
    fn absorb<'c>(&mut self, chunk: Chunk<'c>, keep: impl Fn(Cow<'c, str>) -> Cow<'a, str>) {
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        if let Some(error) = chunk.error {
            self.error = Some(error_message(&error));
        }
        let choice = chunk.choices;
        match choice.content {
            // A whole answer (or a stream's first part) is taken as is.
            Some(part) if self.text.is_empty() => self.text = keep(part),
            Some(part) => self.text.to_mut().push_str(&part),
            None => {}
        }
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(keep(reason));
        }
    }

    /// Summarises a non-streamed `chat.completion` body, borrowing its
    /// texts from it where it can. The usual body is read by a one-pass
    /// scanner ([`crate::completion_scan`]); anything it does not expect
    /// is parsed by serde, which has the last word.
    pub fn from_completion(body: &'a [u8]) -> Self {
        // The body is checked for UTF-8 once, for the scanner and for
        // serde after it alike (as `json::from_json` does).
        match std::str::from_utf8(body) {
            Ok(text) => crate::completion_scan::summarize(text)
                .unwrap_or_else(|| Self::from_parsed(serde_json::from_str(text))),
            Err(_) => Self::from_parsed(serde_json::from_slice(body)),
        }
    }

    /// [`ResponseSummary::from_completion`] by serde alone.
    #[cfg(test)]
    pub(crate) fn from_completion_by_serde(body: &'a [u8]) -> Self {
        Self::from_parsed(crate::json::from_json(body))
    }

    /// The summary of a body serde has parsed (or could not).
    fn from_parsed(parsed: serde_json::Result<Chunk<'a>>) -> Self {
        let mut summary = ResponseSummary::default();
        match parsed {
            Ok(chunk) => summary.absorb(chunk, |text| text),
            Err(err) => summary.error = Some(format!("unreadable response body: {err}")),
        }
        summary
    }
}

impl ResponseSummary<'static> {
    /// Summarises a server-sent-event stream given as the chunks it arrived in.
    pub fn from_sse_chunks<B: AsRef<[u8]>>(chunks: &[B]) -> Self {
        let mut summary = ResponseSummary::default();
        let mut parser = SseParser::default();
        for chunk in chunks {
            parser.feed(chunk.as_ref(), |data| summary.absorb_event(data));
        }
        parser.finish(|data| summary.absorb_event(data));
        summary
    }

    fn absorb_event(&mut self, data: &str) {
        let data = data.trim();
        if data == "[DONE]" {
            self.saw_done = true;
            return;
        }
        if data.is_empty() {
            return;
        }
        match serde_json::from_str::<Chunk<'_>>(data) {
            Ok(chunk) => self.absorb(chunk, |text| Cow::Owned(text.into_owned())),
            Err(err) => self.error = Some(format!("unreadable stream event: {err}")),
        }
    }
}

fn error_message(error: &serde_json::Value) -> String {
    error
        .get("message")
        .and_then(|m| m.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string())
}

/// An incremental parser of `text/event-stream`: feed bytes as they arrive,
/// get each event's `data` (multi-line data joined by `\n`).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; calls `on_event` with the data of each completed event.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(&str)) {
        for &b in bytes {
            if b == b'\n' {
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                self.end_line(&mut on_event);
            } else {
                self.line.push(b);
            }
        }
    }

    /// Flushes an event left open when the stream ended without a blank line.
    pub fn finish(&mut self, mut on_event: impl FnMut(&str)) {
        if !self.line.is_empty() {
            self.end_line(&mut on_event);
        }
        if self.has_data {
            on_event(&self.data);
            self.data.clear();
            self.has_data = false;
        }
    }

    fn end_line(&mut self, on_event: &mut impl FnMut(&str)) {
        if self.line.is_empty() {
            if self.has_data {
                on_event(&self.data);
                self.data.clear();
                self.has_data = false;
            }
            return;
        }
        let line = String::from_utf8_lossy(&self.line);
        if let Some(rest) = line.strip_prefix("data:") {
            let value = rest.strip_prefix(' ').unwrap_or(rest);
            if self.has_data {
                self.data.push('\n');
            }
            self.data.push_str(value);
            self.has_data = true;
        }
        self.line.clear();
    }
}

/// Whether the bytes seen so far end with a `data: [DONE]` event. Checked on
/// the last chunk only, so the relay can add the terminator when an upstream
/// closes a stream cleanly without one.
pub fn ends_with_done(tail: &[u8]) -> bool {
    let trimmed = tail.trim_ascii_end();
    trimmed.ends_with(b"data: [DONE]") || trimmed.ends_with(b"data:[DONE]")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"id\":\"c\",\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world\"}},{\"index\":1,\"delta\":{\"content\":\"other\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n"
    );

    #[test]
    fn assembles_stream_split_anywhere() {
        let whole = ResponseSummary::from_sse_chunks(&[STREAM]);
        assert_eq!(whole.text, "Hello world");
        assert_eq!(whole.finish_reason.as_deref(), Some("stop"));
        assert_eq!(whole.usage.unwrap().total_tokens, 5);
        assert!(whole.saw_done);
        // Byte-by-byte and CRLF variants give the same result.
        let bytes: Vec<[u8; 1]> = STREAM.bytes().map(|b| [b]).collect();
        assert_eq!(ResponseSummary::from_sse_chunks(&bytes), whole);
        let crlf = STREAM.replace('\n', "\r\n");
        assert_eq!(ResponseSummary::from_sse_chunks(&[crlf]), whole);
    }

    #[test]
    fn truncated_stream_has_no_done_and_keeps_partial_text() {
        let cut = &STREAM[..STREAM.find(" world").unwrap()];
        let s = ResponseSummary::from_sse_chunks(&[cut]);
        assert_eq!(s.text, "Hello");
        assert!(!s.saw_done);
        assert!(s.finish_reason.is_none());
    }

    #[test]
    fn error_event_is_captured() {
        let s = ResponseSummary::from_sse_chunks(&["data: {\"error\":{\"message\":\"boom\"}}\n\n"]);
        assert_eq!(s.error.as_deref(), Some("boom"));
    }

    #[test]
    fn completion_body_is_summarised() {
        let body = br#"{"id":"x","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        let s = ResponseSummary::from_completion(body);
        assert_eq!(s.text, "Hi");
        assert_eq!(s.finish_reason.as_deref(), Some("length"));
        assert_eq!(s.usage.unwrap().prompt_tokens, 1);
        assert!(ResponseSummary::from_completion(b"<html>").error.is_some());
    }

    #[test]
    fn a_completions_texts_are_borrowed_unless_escaped() {
        let body =
            br#"{"choices":[{"index":0,"message":{"content":"plain"},"finish_reason":"stop"}]}"#;
        let s = ResponseSummary::from_completion(body);
        assert!(matches!(s.text, Cow::Borrowed("plain")), "{:?}", s.text);
        assert!(matches!(s.finish_reason, Some(Cow::Borrowed("stop"))));
        let escaped = br#"{"choices":[{"index":0,"message":{"content":"two\nlines"}}]}"#;
        let s = ResponseSummary::from_completion(escaped);
        assert_eq!(s.text, "two\nlines");
        assert!(matches!(s.text, Cow::Owned(_)));
    }

    #[test]
    fn only_the_first_choice_is_kept_wherever_it_is_listed() {
        let body = br#"{"choices":[{"index":1,"message":{"content":"other"},"finish_reason":"length"},{"index":0,"message":{"content":"say \"hi\""},"finish_reason":"stop"}]}"#;
        let s = ResponseSummary::from_completion(body);
        assert_eq!(s.text, "say \"hi\"", "escapes decoded, index 1 ignored");
        assert_eq!(s.finish_reason.as_deref(), Some("stop"));
        let empty = ResponseSummary::from_completion(br#"{"choices":[]}"#);
        assert_eq!(empty, ResponseSummary::default());
    }

    #[test]
    fn done_detection() {
        assert!(ends_with_done(b"data: [DONE]\n\n"));
        assert!(ends_with_done(b"data:[DONE]\r\n\r\n"));
        assert!(!ends_with_done(b"data: {\"x\":1}\n\n"));
    }

    #[test]
    fn multi_line_data_is_joined() {
        let mut p = SseParser::default();
        let mut got = Vec::new();
        p.feed(b"event: x\ndata: a\ndata: b\n\n: comment\n\n", |d| {
            got.push(d.to_owned())
        });
        assert_eq!(got, vec!["a\nb".to_owned()]);
    }
}
