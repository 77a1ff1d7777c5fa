//! The exchange the benchmarks measure: one chat request of about 200
//! tokens (a system preamble and a question with pasted context, as users
//! send) and a sixty-word answer. The load harness (`uno-bench`) and the
//! log writer's bench (`log_rows`) use the same one, so their figures
//! describe the same work.

use bytes::Bytes;

/// The model every request names (the mock's default model).
pub const MODEL: &str = "mock-model";

/// The system message: a typical assistant preamble.
pub const SYSTEM_PROMPT: &str = "You are a careful technical assistant for a software company. \
Answer in plain English, keep answers short and concrete, and prefer numbered steps when \
describing a procedure. If a question is ambiguous, say what you assumed. Never invent API \
names, configuration keys or command-line flags: when you are not sure that something exists, \
say so and suggest how the user can check it in the documentation.";

/// The user message: a question with some pasted context.
pub const USER_PROMPT: &str = "Our service runs behind a reverse proxy and talks to a language model \
provider over HTTPS. Since last week, some requests take several seconds longer than usual, \
mostly in the afternoon, and a few of them fail with a gateway timeout. The proxy keeps a pool \
of keep-alive connections, retries twice with exponential backoff, and has a read timeout of \
thirty seconds. How should we find out whether the delay comes from the proxy, the network or \
the provider, and which three measurements should we collect first?";

/// The non-streamed answer: about sixty words.
pub const REPLY_TEXT: &str = "Start by timing each hop separately. Log when the proxy receives \
the request, when it sends it upstream, when the first byte comes back and when the response \
ends. Compare the proxy's added time with the upstream's time to first byte. If the upstream \
dominates, check its rate-limit headers and retry counts; if the proxy does, look at connection \
pool waits and DNS.";

/// The body of the chat completion request.
pub fn chat_body(stream: bool) -> Bytes {
    chat_body_with_context(stream, 0)
}

/// The body of the chat completion request with `context_bytes` more of
/// pasted context in the user message (a retrieved document, a long log),
/// as retrieval-augmented apps send: the size at which Postgres starts
/// compressing what it stores (about 2 kB a row) is passed with a few kB.
/// With 0 it is [`chat_body`]'s body.
pub fn chat_body_with_context(stream: bool, context_bytes: usize) -> Bytes {
    let stream_field = if stream { r#","stream":true"# } else { "" };
    let context = if context_bytes == 0 {
        String::new()
    } else {
        format!(" Context: {}", pasted_context(context_bytes))
    };
    Bytes::from(format!(
        r#"{{"model":"{MODEL}","messages":[{{"role":"system","content":"{SYSTEM_PROMPT}"}},{{"role":"user","content":"{USER_PROMPT}{context}"}}],"temperature":0.2,"max_tokens":256{stream_field}}}"#
    ))
}

/// `len` bytes of prose-like text: words of the prompts and the answer in
/// a fixed pseudo-random order, so it compresses about as well as English
/// (a repeated sentence would compress far better than anything users
/// paste, and random bytes not at all). Plain ASCII with no character that
/// JSON escapes.
pub fn pasted_context(len: usize) -> String {
    let words: Vec<&str> = [SYSTEM_PROMPT, USER_PROMPT, REPLY_TEXT]
        .iter()
        .flat_map(|text| text.split_whitespace())
        .collect();
    let mut text = String::with_capacity(len + 16);
    // xorshift64: the same text on every run and machine.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while text.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = words[(state % words.len() as u64) as usize];
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(word);
    }
    text.truncate(len);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_content(body: &[u8]) -> String {
        let value: serde_json::Value = serde_json::from_slice(body).expect("the body is JSON");
        value["messages"][1]["content"]
            .as_str()
            .expect("a user message")
            .to_owned()
    }

    #[test]
    fn the_plain_body_carries_the_question_alone() {
        assert_eq!(user_content(&chat_body(false)), USER_PROMPT);
        let streamed: serde_json::Value = serde_json::from_slice(&chat_body(true)).unwrap();
        assert_eq!(streamed["stream"], true);
    }

    #[test]
    fn pasted_context_is_as_long_as_asked_and_the_same_every_time() {
        for len in [1, 100, 20_000] {
            let text = pasted_context(len);
            assert_eq!(text.len(), len);
            assert_eq!(text, pasted_context(len));
        }
        for stream in [false, true] {
            // Still a chat request to the proxy's own parser.
            let body = chat_body_with_context(stream, 20_000);
            let view = uno_core::wire::ChatRequestView::parse(&body).expect("valid request");
            assert_eq!(view.messages.len(), 2);
            assert_eq!(view.is_stream(), stream);
            // The context and its " Context: " lead-in, nothing else.
            let extra = body.len() - chat_body(stream).len();
            assert_eq!(extra, 20_000 + " Context: ".len());
        }
        let body = chat_body_with_context(false, 20_000);
        let content = user_content(&body);
        assert!(content.starts_with(USER_PROMPT));
        assert!(content.ends_with(&pasted_context(20_000)));
        // Prose-like: many different words, not one sentence repeated.
        let distinct: std::collections::HashSet<&str> = content.split_whitespace().collect();
        assert!(distinct.len() > 100, "{} distinct words", distinct.len());
    }
}
