//! The common case of summarising a non-streamed chat completion, read in
//! one pass without serde.
//!
//! Every logged completion is summarised (its answer text, finish reason
//! and token usage), and with serde that parse was the largest single cost
//! logging added to a request in the load harness (about 0.6 us of a
//! 660-byte body on a 2-vCPU VM). This scanner reads the same body in one
//! forward pass: strings are skipped eight bytes at a time, numbers and
//! literals checked byte by byte, and only the members a summary needs are
//! looked at.
//!
//! It is only a fast path. Whenever a body is anything but plainly what it
//! expects (an escaped key, a duplicate member, an `error` member, two
//! first choices, a token count that is not a plain integer, anything that
//! is not JSON), it gives up and the caller parses the body with serde,
//! which decides what the body means or what is wrong with it. So what it
//! does return must be exactly what serde would have made of the body; the
//! tests check that on hand-written cases and on many thousands of random
//! mutations of real bodies.

use std::borrow::Cow;

use crate::sse::{ResponseSummary, Usage};

/// Nesting deeper than this is left to serde (whose own limit is 128).
const MAX_DEPTH: usize = 100;

/// The summary of `body`, a whole chat completion, or `None` when the body
/// needs serde to read it (see the module's documentation).
pub(crate) fn summarize(body: &str) -> Option<ResponseSummary<'_>> {
    let mut scanner = Scanner {
        text: body,
        bytes: body.as_bytes(),
        pos: 0,
    };
    let summary = scanner.completion()?;
    scanner.skip_whitespace();
    (scanner.pos == scanner.bytes.len()).then_some(summary)
}

/// The members of one choice a summary takes.
#[derive(Default)]
struct Choice<'a> {
    index: u32,
    /// Whether a `message` or `delta` member was present (even null).
    has_message: bool,
    content: Option<Cow<'a, str>>,
    finish_reason: Option<Cow<'a, str>>,
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Skips whitespace, then takes `byte`.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_whitespace();
        if self.peek()? != byte {
            return None;
        }
        self.pos += 1;
        Some(())
    }

    /// Skips whitespace and takes `null` if it is next.
    fn null(&mut self) -> Option<bool> {
        self.skip_whitespace();
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.literal(b"null")?;
        Some(true)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end)? != word {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// Reads an object, calling `member` with each key once the value is
    /// next. Keys with escapes are left to serde (which would decode them
    /// before matching).
    fn object(&mut self, member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.object_with_keys(false, member)
    }

    /// [`Scanner::object`], taking keys with escapes too where
    /// `escaped_keys` (for objects nobody reads: their keys are not
    /// matched, only checked).
    fn object_with_keys(
        &mut self,
        escaped_keys: bool,
        mut member: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        if self.open(b'{', b'}')? {
            return Some(());
        }
        loop {
            self.skip_whitespace();
            let (key, escaped) = self.string_span()?;
            if escaped && !escaped_keys {
                return None;
            }
            self.expect(b':')?;
            member(self, key)?;
            if self.comma_or_close(b'}')? {
                return Some(());
            }
        }
    }

    /// Reads an array, calling `element` with each element next.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.open(b'[', b']')? {
            return Some(());
        }
        loop {
            element(self)?;
            if self.comma_or_close(b']')? {
                return Some(());
            }
        }
    }

    /// Takes a container's opening byte; true when it is closed at once
    /// (empty), the closing byte taken too.
    fn open(&mut self, open: u8, close: u8) -> Option<bool> {
        self.expect(open)?;
        self.skip_whitespace();
        let empty = self.peek()? == close;
        if empty {
            self.pos += 1;
        }
        Some(empty)
    }

    /// Takes what follows a member or element: a comma (false) or the
    /// container's closing byte (true).
    fn comma_or_close(&mut self, close: u8) -> Option<bool> {
        self.skip_whitespace();
        let byte = self.peek()?;
        self.pos += 1;
        match byte {
            b',' => Some(false),
            _ if byte == close => Some(true),
            _ => None,
        }
    }

    /// A string at the current position: its contents as they stand in
    /// the body, and whether they hold an escape. Refuses what JSON
    /// refuses in a string (raw control characters, unknown escapes).
    fn string_span(&mut self) -> Option<(&'a str, bool)> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.pos + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            at = next_special(self.bytes, at)?;
            match self.bytes[at] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    at += 1 + escape_len(self.bytes.get(at + 1..)?)?;
                }
                _ => return None, // a control character
            }
        }
        self.pos = at + 1;
        // Both ends are ASCII quotes, so the slice is on char boundaries.
        Some((self.text.get(start..at)?, escaped))
    }

    /// A string value: borrowed from the body when it holds no escape,
    /// decoded (by serde, for this one string) when it does.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.skip_whitespace();
        let open = self.pos;
        let (contents, escaped) = self.string_span()?;
        if !escaped {
            return Some(Cow::Borrowed(contents));
        }
        let quoted = self.text.get(open..self.pos)?;
        serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
    }

    /// `null` or a string.
    fn optional_string(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A plain non-negative integer (no sign, fraction or exponent: those
    /// are left to serde, which decides whether they fit).
    fn plain_integer(&mut self) -> Option<u64> {
        self.skip_whitespace();
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
            self.pos += 1;
        }
        let digits = self.pos - start;
        let leading_zero = digits > 1 && self.bytes[start] == b'0';
        if digits == 0 || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(value)
    }

    /// Skips any JSON value, checking that it is one.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_whitespace();
        match self.peek()? {
            b'"' => self.string_span().map(drop),
            b'{' => self.object_with_keys(true, |s, _| s.skip_value(depth + 1)),
            b'[' => self.array(|s| s.skip_value(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// Skips a number, checking JSON's grammar for one.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.at_least_one_digit()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.at_least_one_digit()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }

    /// The whole completion: an object whose `choices` and `usage` are
    /// read and whose other members are skipped.
    fn completion(&mut self) -> Option<ResponseSummary<'a>> {
        let mut summary = ResponseSummary::default();
        let (mut seen_choices, mut seen_usage) = (false, false);
        self.object(|s, key| match key {
            "choices" if first_time(&mut seen_choices) => {
                let first = s.first_choice()?;
                summary.text = first.content.unwrap_or_default();
                summary.finish_reason = first.finish_reason;
                Some(())
            }
            "usage" if first_time(&mut seen_usage) => {
                summary.usage = s.usage()?;
                Some(())
            }
            // Duplicates, and errors (whose message serde extracts).
            "choices" | "usage" | "error" => None,
            _ => s.skip_value(1),
        })?;
        Some(summary)
    }

    /// The first choice (index 0) of the `choices` array; every choice
    /// must be well formed, as serde reads them all.
    fn first_choice(&mut self) -> Option<Choice<'a>> {
        let mut first: Option<Choice<'a>> = None;
        self.array(|s| {
            let choice = s.choice()?;
            if choice.index == 0 {
                if first.is_some() {
                    return None; // serde joins their texts; rare
                }
                first = Some(choice);
            }
            Some(())
        })?;
        Some(first.unwrap_or_default())
    }

    fn choice(&mut self) -> Option<Choice<'a>> {
        let mut choice = Choice::default();
        let (mut seen_index, mut seen_reason) = (false, false);
        self.object(|s, key| match key {
            "index" if first_time(&mut seen_index) => {
                choice.index = u32::try_from(s.plain_integer()?).ok()?;
                Some(())
            }
            // One of the two, once: with both, serde prefers `delta`.
            "message" | "delta" if first_time(&mut choice.has_message) => {
                choice.content = s.message_content()?;
                Some(())
            }
            "finish_reason" if first_time(&mut seen_reason) => {
                choice.finish_reason = s.optional_string()?;
                Some(())
            }
            "index" | "message" | "delta" | "finish_reason" => None,
            _ => s.skip_value(3),
        })?;
        Some(choice)
    }

    /// A `message` (or `delta`): null, or an object whose `content` is
    /// taken.
    fn message_content(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        let mut content = None;
        let mut seen = false;
        self.object(|s, key| match key {
            "content" if first_time(&mut seen) => {
                content = s.optional_string()?;
                Some(())
            }
            "content" => None,
            _ => s.skip_value(4),
        })?;
        Some(content)
    }

    /// `usage`: null, or an object of token counts.
    fn usage(&mut self) -> Option<Option<Usage>> {
        if self.null()? {
            return Some(None);
        }
        let mut usage = Usage::default();
        let mut seen = [false; 3];
        self.object(|s, key| {
            let (slot, field) = match key {
                "prompt_tokens" => (0, &mut usage.prompt_tokens),
                "completion_tokens" => (1, &mut usage.completion_tokens),
                "total_tokens" => (2, &mut usage.total_tokens),
                _ => return s.skip_value(2),
            };
            if !first_time(&mut seen[slot]) {
                return None;
            }
            *field = s.plain_integer()?;
            Some(())
        })?;
        Some(Some(usage))
    }
}

/// True the first time a member is met, false after (members a summary
/// reads must appear once; serde refuses a duplicate).
fn first_time(seen: &mut bool) -> bool {
    !std::mem::replace(seen, true)
}

/// The length of the escape after a backslash (`rest` starts after it),
/// or `None` for one JSON does not have.
fn escape_len(rest: &[u8]) -> Option<usize> {
    match rest.first()? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(1),
        b'u' => rest
            .get(1..5)?
            .iter()
            .all(u8::is_ascii_hexdigit)
            .then_some(5),
        _ => None,
    }
}

/// The position of the first quote, backslash or control character at or
/// after `from`, eight bytes at a time.
fn next_special(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A high bit set in each byte equal to zero; only the lowest such byte
    // is sure (a borrow can mark the ones after it), which is the one used.
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let found = zero_bytes(x ^ (ONES * u64::from(b'"')))
            | zero_bytes(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|offset| at + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What serde makes of `body` (the path this one must agree with).
    fn by_serde(body: &[u8]) -> ResponseSummary<'_> {
        ResponseSummary::from_completion_by_serde(body)
    }

    /// The scanner's summary of `body`, if it takes it.
    fn scanned(body: &[u8]) -> Option<ResponseSummary<'_>> {
        summarize(std::str::from_utf8(body).ok()?)
    }

    const HARNESS: &str = r#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Start by timing each hop separately.","role":"assistant"}}],"created":1764200000,"id":"chatcmpl-1","mock_extra":{"kept":true},"model":"mock-model","object":"chat.completion","usage":{"completion_tokens":60,"prompt_tokens":200,"total_tokens":260}}"#;

    /// Bodies the scanner must take, each as serde reads it.
    const TAKEN: &[&str] = &[
        HARNESS,
        r#"{"id":"x","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"service_tier":"default","system_fingerprint":"fp_1"}"#,
        " {\n  \"choices\" : [ { \"index\" : 0 , \"message\" : { \"content\" : \"two\\nlines \\\"quoted\\\" caf\\u00e9 \\ud83d\\ude00\" } , \"finish_reason\" : null } ] \r\n} \t",
        r#"{"choices":[{"index":1,"message":{"content":"other"},"finish_reason":"length"},{"index":0,"message":{"content":"say \"hi\""},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"index":0,"message":{"content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":[1,2.5e-3,-0,true,false,null]}"}}]},"finish_reason":"tool_calls"}],"usage":null}"#,
        r#"{"choices":[{"index":0,"message":null,"finish_reason":"length"}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"streamed shape"}}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":3}}"#,
        r#"{"choices":[{"message":{"content":"index left out"}}]}"#,
        r#"{}"#,
        r#"{"model":"m","x":{"\u0063":"escaped keys of skipped values are fine","y":[[[]],{}]},"choices":[{"index":0,"message":{"content":"ünïcødé ☕ text"}}]}"#,
        r#"{"choices":[{"index":0,"message":{"content":""},"finish_reason":"stop"}]}"#,
        r#"{"choices":[{"index":0,"message":{"content":"x"}}],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":0,"total_tokens":0}}"#,
    ];

    /// Bodies the scanner must leave to serde (which may read them fine).
    const LEFT: &[&str] = &[
        r#"{"error":{"message":"boom","type":"server_error"}}"#,
        r#"{"choices":[],"choices":[]}"#,
        r#"{"\u0063hoices":[{"index":0,"message":{"content":"escaped key"}}]}"#,
        r#"{"choices":[{"index":0,"message":{"content":"a"}},{"index":0,"message":{"content":"b"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"message":{"content":"both"}}]}"#,
        r#"{"choices":[{"index":0.0,"message":{"content":"x"}}]}"#,
        r#"{"usage":{"prompt_tokens":1e2}}"#,
        r#"{"usage":{"prompt_tokens":-1}}"#,
        r#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
        r#"{"choices":[{"index":4294967296}]}"#,
        r#"{"choices":null}"#,
        r#"{"choices":[null]}"#,
        r#"{"choices":[{"index":0,"message":{"content":5}}]}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":"\x"}"#,
        "{\"a\":\"tab\there\"}",
        r#"{"a":tru}"#,
        r#"{"a":1} trailing"#,
        r#"[{"choices":[]}]"#,
        r#"{"a":1,}"#,
        "",
        "<html>",
    ];

    #[test]
    fn takes_the_usual_shapes_and_agrees_with_serde() {
        for body in TAKEN {
            let ours = scanned(body.as_bytes()).unwrap_or_else(|| panic!("not taken: {body}"));
            assert_eq!(ours, by_serde(body.as_bytes()), "{body}");
            assert!(ours.error.is_none(), "{body}");
        }
        let harness = scanned(HARNESS.as_bytes()).unwrap();
        assert!(matches!(harness.text, Cow::Borrowed(_)), "borrowed");
        assert_eq!(harness.usage.unwrap().total_tokens, 260);
        assert_eq!(harness.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn leaves_the_rest_to_serde() {
        for body in LEFT {
            assert!(scanned(body.as_bytes()).is_none(), "taken: {body}");
        }
        // Deeper than the scanner goes, though still JSON.
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(150), "]".repeat(150));
        assert!(scanned(deep.as_bytes()).is_none());
    }

    /// A small deterministic generator (xorshift), so a failure repeats.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Many random edits of real bodies: whenever the scanner takes one,
    /// it says what serde says.
    #[test]
    fn never_disagrees_with_serde_on_mutated_bodies() {
        const PIECES: &[&[u8]] = &[
            b"\"",
            b"\\",
            b"{",
            b"}",
            b"[",
            b"]",
            b":",
            b",",
            b" ",
            b"\n",
            b"0",
            b"7",
            b"-",
            b".",
            b"e",
            b"null",
            b"true",
            b"\\n",
            b"\\u00e9",
            b"\\ud83d",
            b"\x01",
            b"\xff",
            b"\"index\":0,",
            b"\"content\":\"x\",",
            b"\"error\":1,",
            b"\"usage\":null,",
            "é".as_bytes(),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut taken, mut trials) = (0, 0);
        for seed in TAKEN.iter().chain(LEFT) {
            for _ in 0..1500 {
                let mut body = seed.as_bytes().to_vec();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(body.len() + 1);
                    match rng.below(3) {
                        0 if at < body.len() => {
                            body.remove(at);
                        }
                        1 if at < body.len() => {
                            let piece = PIECES[rng.below(PIECES.len())];
                            body.splice(at..at + 1, piece.iter().copied());
                        }
                        _ => {
                            let piece = PIECES[rng.below(PIECES.len())];
                            body.splice(at..at, piece.iter().copied());
                        }
                    }
                }
                trials += 1;
                if let Some(ours) = scanned(&body) {
                    taken += 1;
                    assert_eq!(ours, by_serde(&body), "{}", String::from_utf8_lossy(&body));
                }
            }
        }
        // Not vacuous: a good share of the edits stay readable.
        assert!(taken > trials / 10, "{taken} of {trials} taken");
    }

    #[test]
    fn finds_specials_in_every_position() {
        for len in 0..20 {
            for at in 0..len {
                for special in [b'"', b'\\', 0x1f, 0x00] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    assert_eq!(next_special(&bytes, 0), Some(at), "{len} {at} {special}");
                    if at + 1 < len {
                        bytes[at + 1] = b'"';
                        assert_eq!(next_special(&bytes, 0), Some(at));
                    }
                }
            }
            assert_eq!(next_special(&vec![0x20u8; len], 0), None);
            assert_eq!(next_special(&vec![0xffu8; len], 0), None);
        }
    }
}
