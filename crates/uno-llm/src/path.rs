//! Path segments built from client input.
//!
//! uno calls the upstream with the organisation's key, so which upstream
//! route a request reaches must never depend on what a client writes into
//! the path. Every piece of client input that goes into an upstream path
//! (today only a model id, for `GET|DELETE /v1/models/{id}`) becomes one
//! [`PathSegment`]: checked here, then percent-encoded so that it is one
//! segment and nothing else, whatever the upstream, or a proxy in front of
//! it, does with the path afterwards.
//!
//! What is refused, and why:
//! - `.` and `..`, and any part of the id between `/` or `\` that is one
//!   (`a/../files`): a server that decodes `%2F` and then resolves dot
//!   segments would otherwise walk out of `/models/` to another route;
//! - the same after one more round of percent-decoding (`%2e%2e`), for
//!   servers that decode twice;
//! - empty parts (`//`, a leading or trailing `/`), which some servers
//!   merge away;
//! - control characters, which have no place in a model id and which
//!   servers and logs treat inconsistently;
//! - ids over [`MAX_SEGMENT_BYTES`].

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The longest model id accepted in a path (real ids are under 100 bytes;
/// fine-tuned OpenAI ids are about 60).
pub const MAX_SEGMENT_BYTES: usize = 512;

/// Left unencoded: RFC 3986's unreserved characters, plus `:` and `@`
/// (pchar), which fine-tuned ids (`ft:gpt-4o-mini:org::abc`) contain.
/// Everything else, `/`, `\`, `%`, `?` and `#` included, is encoded.
const KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'@');

/// Why client input cannot be a path segment. The messages are written for
/// the client: they name what was wrong and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Nothing at all.
    #[error("is empty")]
    Empty,
    /// Longer than [`MAX_SEGMENT_BYTES`].
    #[error("is longer than {MAX_SEGMENT_BYTES} bytes")]
    TooLong,
    /// Percent-decoded, the bytes are not UTF-8 (overlong encodings too).
    #[error("is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    /// Holds a control character.
    #[error("contains a control character")]
    ControlCharacter,
    /// Has a `.` or `..` part, or an empty one.
    #[error("has an empty, `.` or `..` part between slashes; a model id names one model")]
    DotOrEmptyPart,
}

/// One validated path segment, held percent-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSegment {
    encoded: String,
}

impl PathSegment {
    /// Checks `raw` (already decoded text, such as a model id from a JSON
    /// body) and encodes it as one segment.
    pub fn new(raw: &str) -> Result<Self, SegmentError> {
        check(raw)?;
        Ok(PathSegment {
            encoded: utf8_percent_encode(raw, KEPT).to_string(),
        })
    }

    /// Decodes the tail of a request path as the client sent it (still
    /// percent-encoded), then checks it as [`PathSegment::new`] does.
    /// Returns the decoded text with its segment.
    pub fn from_request_path(encoded: &str) -> Result<(String, Self), SegmentError> {
        let decoded = percent_decode_str(encoded)
            .decode_utf8()
            .map_err(|_| SegmentError::NotUtf8)?
            .into_owned();
        let segment = PathSegment::new(&decoded)?;
        Ok((decoded, segment))
    }

    /// The percent-encoded segment: no `/`, `\`, `%` sequence other than
    /// an escape, `?` or `#`; never `.` or `..`.
    pub fn as_str(&self) -> &str {
        &self.encoded
    }
}

fn check(raw: &str) -> Result<(), SegmentError> {
    if raw.is_empty() {
        return Err(SegmentError::Empty);
    }
    if raw.len() > MAX_SEGMENT_BYTES {
        return Err(SegmentError::TooLong);
    }
    if raw.chars().any(char::is_control) {
        return Err(SegmentError::ControlCharacter);
    }
    check_parts(raw)?;
    // A server that decodes twice sees this; `%2e%2e` must not become `..`
    // there either. Invalid UTF-8 after a second decoding is that server's
    // problem to refuse, so it is read lossily here.
    if raw.contains('%') {
        let twice = percent_decode_str(raw).decode_utf8_lossy();
        if twice.chars().any(char::is_control) {
            return Err(SegmentError::ControlCharacter);
        }
        check_parts(&twice)?;
    }
    Ok(())
}

fn check_parts(text: &str) -> Result<(), SegmentError> {
    let bad = |part: &str| part.is_empty() || part == "." || part == "..";
    if text.split(['/', '\\']).any(bad) {
        return Err(SegmentError::DotOrEmptyPart);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_ids_pass_and_keep_their_readable_characters() {
        for (id, encoded) in [
            ("gpt-4o-mini", "gpt-4o-mini"),
            ("ft:gpt-4o-mini:org::abc123", "ft:gpt-4o-mini:org::abc123"),
            ("Qwen2.5-7B_v1~x", "Qwen2.5-7B_v1~x"),
            ("meta-llama/Llama-3.1-8B", "meta-llama%2FLlama-3.1-8B"),
            ("a b?c#d%e", "a%20b%3Fc%23d%25e"),
            ("é", "%C3%A9"),
            ("...", "..."),
        ] {
            assert_eq!(PathSegment::new(id).unwrap().as_str(), encoded, "{id}");
        }
    }

    #[test]
    fn dot_segments_empty_parts_and_controls_are_refused() {
        for id in [
            "",
            ".",
            "..",
            "../files",
            "..\\files",
            "a/../../v1/files",
            "a/./b",
            "/x",
            "x/",
            "a//b",
            "%2e%2e",
            "%2E%2e/files",
            "a%2F..%2Fb",
            "a\0b",
            "a\nb",
            "a\u{7f}",
            "a\u{85}b",
            "%0a",
        ] {
            assert!(PathSegment::new(id).is_err(), "{id:?} was accepted");
        }
        assert_eq!(
            PathSegment::new(&"x".repeat(MAX_SEGMENT_BYTES + 1)),
            Err(SegmentError::TooLong)
        );
    }

    #[test]
    fn request_paths_are_decoded_once_then_checked() {
        let (id, segment) = PathSegment::from_request_path("org%2Ftuned").unwrap();
        assert_eq!(id, "org/tuned");
        assert_eq!(segment.as_str(), "org%2Ftuned");
        for path in [
            "..%2Ffiles%2Ffile-abc123",
            "..%2F..%2Fv1%2Ffiles",
            "%2e%2e",
            "%252e%252e",
            "..%5Cfiles",
        ] {
            assert_eq!(
                PathSegment::from_request_path(path),
                Err(SegmentError::DotOrEmptyPart),
                "{path}"
            );
        }
        // Overlong UTF-8 for '.', and a lone continuation byte.
        assert_eq!(
            PathSegment::from_request_path("%C0%AE%C0%AE"),
            Err(SegmentError::NotUtf8)
        );
        assert_eq!(
            PathSegment::from_request_path("%80"),
            Err(SegmentError::NotUtf8)
        );
    }
}
