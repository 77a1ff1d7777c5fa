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
    let stream_field = if stream { r#","stream":true"# } else { "" };
    Bytes::from(format!(
        r#"{{"model":"{MODEL}","messages":[{{"role":"system","content":"{SYSTEM_PROMPT}"}},{{"role":"user","content":"{USER_PROMPT}"}}],"temperature":0.2,"max_tokens":256{stream_field}}}"#
    ))
}
