//! Text a log row carries: the request body above all.
//!
//! A request body arrives as a slice of the connection's read buffer
//! (kilobytes). Keeping that slice until the log batch is written would keep
//! every such buffer alive for tens of milliseconds, so the connection
//! allocates a fresh one per request and the working set swells; measured
//! in the load harness, that cost more than the copy it saved. So the text
//! is copied once when the record is handed over, checked once for UTF-8
//! and for NUL (which Postgres refuses in text): into a buffer of its exact
//! size, shared from then on by reference count (the row, the journal), or
//! on a Postgres store straight into the row's COPY tuples
//! ([`clean_text`]).

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// UTF-8 text without NUL, in shared bytes.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct LogText(Bytes);

impl LogText {
    /// `bytes` as text in a buffer of its own: copied as they are when
    /// they are UTF-8 without NUL (every well-formed JSON body), else
    /// repaired (invalid sequences replaced, NULs stripped).
    pub fn copy_of(bytes: &[u8]) -> LogText {
        match clean_text(bytes) {
            Cow::Borrowed(text) => LogText(Bytes::copy_from_slice(text.as_bytes())),
            Cow::Owned(text) => LogText::from(text),
        }
    }

    /// The text's bytes, shared.
    pub fn bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// The text's bytes, borrowed: no UTF-8 check, unlike [`LogText::as_str`]
    /// (which cannot skip it without `unsafe`), for copying the text on.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Every constructor checked or produced UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// `bytes` as text fit to store: borrowed when they are UTF-8 without NUL
/// (every well-formed JSON body), else repaired (invalid sequences
/// replaced, NULs stripped).
pub fn clean_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => Cow::Borrowed(text),
        Ok(text) => Cow::Owned(text.replace('\0', "")),
        Err(_) => Cow::Owned(String::from_utf8_lossy(bytes).replace('\0', "")),
    }
}

impl From<String> for LogText {
    /// Takes `text` as it is; NULs are stripped.
    fn from(text: String) -> Self {
        let text = if text.contains('\0') {
            text.replace('\0', "")
        } else {
            text
        };
        LogText(Bytes::from(text))
    }
}

impl Deref for LogText {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for LogText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for LogText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for LogText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(LogText::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_text_is_copied_once_then_shared() {
        let body = Bytes::from_static(b"{\"model\":\"m\"}");
        let text = LogText::copy_of(&body);
        assert_eq!(&*text, "{\"model\":\"m\"}");
        assert_ne!(text.0.as_ptr(), body.as_ptr(), "a buffer of its own");
        assert_eq!(
            text.bytes().as_ptr(),
            text.clone().0.as_ptr(),
            "then shared"
        );
    }

    #[test]
    fn nul_and_invalid_utf8_are_repaired() {
        let text = LogText::copy_of(b"a\0b");
        assert_eq!(&*text, "ab");
        let text = LogText::copy_of(b"a\xffb\0");
        assert_eq!(&*text, "a\u{fffd}b");
        assert_eq!(&*LogText::from("x\0y".to_owned()), "xy");
    }

    #[test]
    fn journal_round_trip_is_a_json_string() {
        let text = LogText::from("say \"hi\"\n".to_owned());
        let json = serde_json::to_string(&text).unwrap();
        assert_eq!(json, r#""say \"hi\"\n""#);
        let back: LogText = serde_json::from_str(&json).unwrap();
        assert_eq!(back, text);
        // A NUL escaped in an old journal line is stripped on the way in.
        let back: LogText = serde_json::from_str(r#""a\u0000b""#).unwrap();
        assert_eq!(&*back, "ab");
    }
}
