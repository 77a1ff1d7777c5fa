//! What logging needs from a chat request, taken while the request is read.
//!
//! Logging a chat exchange needs the request's model, its text, the hash of
//! its messages (to recognise a later follow-up to this answer) and the
//! follow-up it may itself carry. The proxy parses the request anyway when
//! it arrives, and the bytes are in the CPU's cache then; by the time the
//! answer is back, dozens of other requests have passed through and they
//! are not. Taking the digest on arrival, from the parse the proxy already
//! did, saves the log a second, cache-cold parse of every request.

use std::borrow::Cow;

use crate::conversation::{
    ConversationHash, PrefixHash, PrefixHasher, answer_hash, parse_chat_request,
};

/// A request continuing an earlier answer: the hash that identifies the
/// earlier exchange, and the user's reply to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    /// `conversation_hash` of the earlier exchange.
    pub parent_hash: ConversationHash,
    /// The user turn(s) that answered the earlier answer.
    pub text: String,
}

/// The request side of a logged chat exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestDigest {
    /// The model the client asked for.
    pub model: String,
    /// The hash of the tenant and the request's messages.
    pub prefix: PrefixHash,
    /// The follow-up the request carries, if it continues an answer
    /// (…, assistant, user… at the end): the last assistant message is
    /// the one reacted to, every non-blank user turn after it the reaction.
    pub follow_up: Option<FollowUp>,
}

impl RequestDigest {
    /// The digest of a request of `tenant` whose messages are `(role,
    /// text)` pairs, in order.
    pub fn new<'a, R: AsRef<str>>(
        tenant: &str,
        model: &str,
        messages: impl IntoIterator<Item = (R, Cow<'a, str>)>,
    ) -> RequestDigest {
        let mut hasher = PrefixHasher::new(tenant);
        // The last answer seen and the non-blank user turns after it.
        let mut answer: Option<(PrefixHash, Cow<'a, str>)> = None;
        let mut replies: Vec<Cow<'a, str>> = Vec::new();
        for (role, text) in messages {
            let role = role.as_ref();
            if role == "assistant" {
                let before = hasher.prefix();
                hasher.message(role, &text);
                answer = Some((before, text));
                replies.clear();
                continue;
            }
            hasher.message(role, &text);
            if role == "user" && answer.is_some() && !text.trim().is_empty() {
                replies.push(text);
            }
        }
        let follow_up = match answer {
            Some((before, answer)) if !replies.is_empty() => Some(FollowUp {
                parent_hash: answer_hash(before, &answer),
                text: replies.join("\n"),
            }),
            _ => None,
        };
        RequestDigest {
            model: model.to_owned(),
            prefix: hasher.prefix(),
            follow_up,
        }
    }

    /// The digest of a stored or recorded request body, parsed here (an
    /// unreadable body gives an empty model and no messages).
    pub fn of_body(tenant: &str, body: &[u8]) -> RequestDigest {
        let parsed = parse_chat_request(body).unwrap_or_default();
        RequestDigest::new(
            tenant,
            &parsed.model,
            parsed.messages.into_iter().map(|m| (m.role, m.text)),
        )
    }

    /// The conversation hash of this request answered by `answer`.
    pub fn answered_by(&self, answer: &str) -> ConversationHash {
        answer_hash(self.prefix, answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::{conversation_hash, request_messages};
    use crate::wire::ChatRequestView;

    const CONTINUED: &str = r#"{"model":"m","messages":[
        {"role":"system","content":"be brief"},
        {"role":"user","content":"capital of France?"},
        {"role":"assistant","content":"Paris."},
        {"role":"user","content":[{"type":"text","text":"why \"Paris\"?"},{"type":"text","text":"explain"}]},
        {"role":"user","content":"  "}
    ]}"#;

    /// The digest the proxy takes from its own parse.
    fn from_view(tenant: &str, body: &[u8]) -> RequestDigest {
        let view = ChatRequestView::parse(body).unwrap();
        RequestDigest::new(
            tenant,
            &view.model,
            view.messages.iter().map(|m| (m.role.as_ref(), m.text())),
        )
    }

    #[test]
    fn the_proxy_digest_matches_parsing_the_stored_body() {
        let digest = from_view("t", CONTINUED.as_bytes());
        assert_eq!(digest, RequestDigest::of_body("t", CONTINUED.as_bytes()));
        assert_eq!(digest.model, "m");
    }

    #[test]
    fn hashes_agree_with_the_one_pass_functions() {
        let digest = from_view("t", CONTINUED.as_bytes());
        let messages = request_messages(CONTINUED.as_bytes()).unwrap();
        assert_eq!(
            digest.answered_by("Because."),
            conversation_hash("t", &messages, "Because.")
        );
        let follow = digest.follow_up.unwrap();
        assert_eq!(
            follow.text, "why \"Paris\"?\nexplain",
            "blank turns left out"
        );
        // The follow-up points at the logged exchange it continues.
        let first = request_messages(CONTINUED.as_bytes()).unwrap()[..2].to_vec();
        assert_eq!(follow.parent_hash, conversation_hash("t", &first, "Paris."));
    }

    #[test]
    fn only_a_user_turn_after_an_answer_is_a_follow_up() {
        let answered = br#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#;
        assert!(RequestDigest::of_body("t", answered).follow_up.is_none());
        // Another tenant's identical conversation points elsewhere.
        let a = RequestDigest::of_body("t", CONTINUED.as_bytes())
            .follow_up
            .unwrap();
        let b = RequestDigest::of_body("t2", CONTINUED.as_bytes())
            .follow_up
            .unwrap();
        assert_ne!(a.parent_hash, b.parent_hash);
        assert_eq!(a.text, b.text);
    }

    #[test]
    fn a_first_turn_carries_no_follow_up_and_tenants_differ() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        let digest = from_view("t", body);
        assert!(digest.follow_up.is_none());
        assert_ne!(digest.prefix, from_view("t2", body).prefix);
        let unreadable = RequestDigest::of_body("t", b"not json");
        assert_eq!(unreadable.model, "");
        assert!(unreadable.follow_up.is_none());
    }
}
