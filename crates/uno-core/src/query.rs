//! The text a request is clustered and routed on: the user's own words.
//!
//! One definition, used by the worker when it embeds a learning log's query
//! and builds the routing centroids, and by the proxy when it routes a
//! request, so both place a text in the same space.
//!
//! Why not every message of the prompt (what the method's datasets have)?
//! An app sends the same system prompt, template or boilerplate with every
//! request; a long one fills a sentence embedder's window and swamps a
//! hashing embedder's features, so every query looks alike and the topics
//! vanish (issue 23). System and developer messages, assistant answers and
//! tool results are therefore never part of it: only what users wrote.
//!
//! The rule ([`user_words`]): the latest user message; when it has fewer
//! than [`ENOUGH_WORDS`] words (a follow-up such as "and in python?" or
//! "make it shorter" says little about the topic by itself), earlier user
//! messages are put before it, most recent first, until there are enough
//! words, at most [`MAX_CONTEXT_TURNS`] of them and [`MAX_CONTEXT_BYTES`] of
//! their text (the head of a long one). A first turn is its user message
//! alone, whatever its length. Empty user messages (an image alone) are
//! skipped. A conversation without user text has no routing text, and is
//! not routed.
//!
//! The full prompt keeps its other uses: the learning log's `query` (what
//! the distiller, R_0 and the judge read) is still every message's text.
//!
//! When this rule changes, [`TEXT_VERSION`] changes with it: the worker keys
//! its stored query vectors by embedder and text version, so vectors of the
//! old text are re-embedded, never mixed with new ones.

use std::borrow::Cow;

use crate::conversation::TextMessage;
use crate::wire::MessageView;

/// The version of the rule below, part of the key of stored query vectors.
pub const TEXT_VERSION: &str = "user-words:v1";

/// Words a routing text needs before earlier turns stop being added: about
/// a short question's worth ("how long do I boil pasta?").
pub const ENOUGH_WORDS: usize = 6;

/// Earlier user turns a short latest one may take as context, at most.
pub const MAX_CONTEXT_TURNS: usize = 3;

/// Bytes of earlier user turns taken as context, at most, so a long pasted
/// message earlier in a conversation does not outweigh the latest turn
/// beyond what it needs to give it a topic.
pub const MAX_CONTEXT_BYTES: usize = 1024;

/// A message as the routing text reads it: its role and its text.
pub trait Turn {
    /// `system`, `developer`, `user`, `assistant`, `tool` or `function`.
    fn role(&self) -> &str;
    /// The text content (parts joined by newlines; empty for none). Only
    /// user messages are asked for it, so a proxy never unescapes a long
    /// system prompt or answer it will not use.
    fn text(&self) -> Cow<'_, str>;
}

impl Turn for MessageView<'_> {
    fn role(&self) -> &str {
        &self.role
    }

    fn text(&self) -> Cow<'_, str> {
        MessageView::text(self)
    }
}

impl Turn for TextMessage<'_> {
    fn role(&self) -> &str {
        &self.role
    }

    fn text(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.text)
    }
}

/// The routing text of `messages` (see the module docs for the rule), as
/// parts in conversation order: joined by blank lines ([`join`]) they are
/// the text; a hashing embedder can embed them without joining. Borrowed
/// from the messages wherever their text needs no unescaping. Empty when
/// no user message has text.
pub fn user_words<M: Turn>(messages: &[M]) -> Vec<Cow<'_, str>> {
    let mut parts: Vec<Cow<'_, str>> = Vec::new();
    let mut words = 0;
    let mut context_bytes = 0;
    for message in messages.iter().rev().filter(|m| m.role() == "user") {
        let mut text = message.text();
        if text.trim().is_empty() {
            continue;
        }
        if !parts.is_empty() {
            if parts.len() > MAX_CONTEXT_TURNS || context_bytes >= MAX_CONTEXT_BYTES {
                break;
            }
            text = head(text, MAX_CONTEXT_BYTES - context_bytes);
            context_bytes += text.len();
        }
        words += count_words(&text, ENOUGH_WORDS - words);
        parts.push(text);
        if words >= ENOUGH_WORDS {
            break;
        }
    }
    parts.reverse();
    parts
}

/// [`user_words`] as one text, blank-line separated (what the worker
/// embeds, and what `uno route` shows).
pub fn user_words_text<M: Turn>(messages: &[M]) -> String {
    join(&user_words(messages))
}

/// Parts joined by blank lines.
pub fn join<S: AsRef<str>>(parts: &[S]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.as_ref().len() + 2).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str("\n\n");
        }
        out.push_str(part.as_ref());
    }
    out
}

/// The first `max` bytes of `text`, cut back to a character boundary.
fn head(text: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(&s[..cut]),
        Cow::Owned(mut s) => {
            s.truncate(cut);
            Cow::Owned(s)
        }
    }
}

/// Words in `text`, counting no further than `cap`: runs of alphanumerics,
/// and each CJK character by itself (those scripts have no spaces), as the
/// hashing embedder splits words.
fn count_words(text: &str, cap: usize) -> usize {
    let mut n = 0;
    let mut in_word = false;
    for c in text.chars() {
        if n >= cap {
            break;
        }
        if is_cjk(c) {
            n += 1;
            in_word = false;
        } else if c.is_alphanumeric() {
            if !in_word {
                n += 1;
                in_word = true;
            }
        } else {
            in_word = false;
        }
    }
    n.min(cap)
}

/// CJK ideographs, kana and hangul: the scripts written without spaces,
/// where each character is a word of its own (here, and in the hashing
/// embedder's features).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF   // hiragana, katakana
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xAC00..=0xD7AF // hangul syllables
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0x20000..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ChatRequestView;

    fn text_of(body: &str) -> String {
        let view = ChatRequestView::parse(body.as_bytes()).unwrap();
        user_words_text(&view.messages)
    }

    fn body(messages: &[(&str, &str)]) -> String {
        let messages: Vec<serde_json::Value> = messages
            .iter()
            .map(|(role, content)| serde_json::json!({"role": role, "content": content}))
            .collect();
        serde_json::json!({"model": "m", "messages": messages}).to_string()
    }

    #[test]
    fn system_and_developer_prompts_are_ignored() {
        let prompt = "You are the assistant of ACME. ".repeat(70);
        let q = "How long should I boil spaghetti for dinner?";
        assert_eq!(
            text_of(&body(&[
                ("system", &prompt),
                ("developer", "Answer briefly."),
                ("user", q)
            ])),
            q
        );
        assert_eq!(text_of(&body(&[("user", q)])), q);
    }

    #[test]
    fn a_short_follow_up_gets_the_earlier_user_turns() {
        let first = "Write a function that parses ISO dates in rust";
        let text = text_of(&body(&[
            ("system", "You are a coding assistant."),
            ("user", first),
            ("assistant", "Here is a parser: fn parse() {}"),
            ("user", "and in python?"),
        ]));
        assert_eq!(text, format!("{first}\n\nand in python?"));
        // Two short turns: both earlier ones are needed, oldest first.
        let text = text_of(&body(&[
            ("user", "Boil pasta: how long?"),
            ("assistant", "Ten minutes."),
            ("user", "Fusilli too?"),
            ("assistant", "Eleven."),
            ("user", "and penne?"),
        ]));
        assert_eq!(text, "Boil pasta: how long?\n\nFusilli too?\n\nand penne?");
    }

    #[test]
    fn a_long_follow_up_stands_alone() {
        let latest = "Now explain how to deduct my home office expenses from freelance income";
        let text = text_of(&body(&[
            ("user", "Which tax form do I file?"),
            ("assistant", "Form 1040."),
            ("user", latest),
        ]));
        assert_eq!(text, latest);
    }

    #[test]
    fn context_is_bounded_in_turns_and_bytes() {
        let mut messages = Vec::new();
        for i in 0..10 {
            messages.push(("user", if i == 0 { "zero" } else { "ok" }));
            messages.push(("assistant", "sure"));
        }
        messages.push(("user", "go"));
        assert_eq!(text_of(&body(&messages)), "ok\n\nok\n\nok\n\ngo");
        let pasted = "é".repeat(2000);
        let text = text_of(&body(&[
            ("user", &pasted),
            ("assistant", "Read it."),
            ("user", "summarise"),
        ]));
        assert_eq!(text.len(), MAX_CONTEXT_BYTES + "\n\nsummarise".len());
        assert!(text.ends_with("\n\nsummarise"));
        // The latest turn is never cut.
        let long = "word ".repeat(1000);
        assert_eq!(text_of(&body(&[("user", &long)])), long);
    }

    #[test]
    fn empty_turns_are_skipped_and_no_user_text_is_nothing() {
        let b = r#"{"model":"m","messages":[{"role":"user","content":"What is in this picture of my garden?"},{"role":"assistant","content":"A rose."},{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#;
        assert_eq!(text_of(b), "What is in this picture of my garden?");
        assert_eq!(text_of(&body(&[("system", "S")])), "");
        let only_system = body(&[("system", "S")]);
        let view = ChatRequestView::parse(only_system.as_bytes()).unwrap();
        assert!(user_words(&view.messages).is_empty());
    }

    #[test]
    fn parts_borrow_from_the_body() {
        let b = body(&[("system", "S"), ("user", "plain words only here")]);
        let view = ChatRequestView::parse(b.as_bytes()).unwrap();
        let parts = user_words(&view.messages);
        assert!(matches!(
            parts[..],
            [Cow::Borrowed("plain words only here")]
        ));
    }

    #[test]
    fn stored_messages_read_the_same_as_requests() {
        let b = body(&[
            ("system", "S"),
            ("user", "Write a parser in rust"),
            ("assistant", "ok"),
            ("user", "python?"),
        ]);
        let stored = crate::conversation::request_messages(b.as_bytes()).unwrap();
        assert_eq!(user_words_text(&stored), text_of(&b));
    }

    #[test]
    fn words_are_counted_like_the_hashing_embedder_splits_them() {
        assert_eq!(count_words("and in python?", 10), 3);
        assert_eq!(count_words("什么是BLEU？", 10), 4);
        assert_eq!(count_words("a b c d e f g h", 6), 6);
        assert_eq!(count_words("--- !!", 6), 0);
    }
}
