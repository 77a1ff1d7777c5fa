//! Turning a stored interaction and its feedback into a learning log
//! (method §1.2): the query, the first answer, and the user's text feedback
//! as `Feedback 1: …` lines.

use uno_core::conversation::{TextMessage, request_messages};
use uno_store::learn::{LearnSource, NewLearnLog};

use crate::prompts::Lang;

/// Builds the learning log of `source`, or `None` when the stored request
/// has no user message or no text feedback remains (nothing to learn).
pub fn learn_log(source: &LearnSource) -> Option<NewLearnLog> {
    let messages = request_messages(source.request.as_bytes())?;
    let user_query = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")?
        .text
        .to_string();
    // R_0, the judge and the language use every message of the prompt
    // joined by blank lines (system + user, as the method's chat datasets
    // do); clustering uses the user's own words ([`route_text`]).
    let query = messages
        .iter()
        .map(|m| m.text.as_ref())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    let mut lines = Vec::new();
    let mut users: Vec<String> = Vec::new();
    let mut rating = 0i32;
    let mut rated = false;
    let mut newest = 0i64;
    for f in &source.feedback {
        newest = newest.max(f.updated_at);
        if let Some(r) = f.rating {
            rating += i32::from(r);
            rated = true;
        }
        let mut text = Vec::new();
        if let Some(comment) = f
            .comment
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            text.push(comment.to_owned());
        }
        if let Some(expected) = f
            .expected_output
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            text.push(format!("The answer I expected: {expected}"));
        }
        if text.is_empty() {
            continue;
        }
        if !f.end_user.is_empty() && !users.contains(&f.end_user) {
            users.push(f.end_user.clone());
        }
        lines.push(format!("Feedback {}: {}", lines.len() + 1, text.join("\n")));
    }
    if lines.is_empty() {
        return None;
    }
    if let Some(u) = source.end_user.as_ref().filter(|u| !u.is_empty())
        && !users.contains(u)
    {
        users.insert(0, u.clone());
    }
    let feedback = lines.join("\n");
    let prompt: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role, "content": m.text}))
        .collect();
    let feedback_hash =
        crate::content_key::content_key(&[&source.model, &query, &source.response_text, &feedback]);
    Some(NewLearnLog {
        tenant: source.tenant.clone(),
        interaction_id: source.interaction_id,
        created_at: source.created_at,
        model: source.model.clone(),
        end_user: source.end_user.clone().filter(|u| !u.is_empty()),
        users,
        lang: Lang::of(&query).as_str().to_owned(),
        messages: serde_json::Value::Array(prompt).to_string(),
        query,
        user_query,
        answer: source.response_text.clone(),
        feedback,
        feedback_hash,
        feedback_at: newest,
        rating: rated.then_some(rating.signum()),
    })
}

/// The text a log is clustered on, and its routing centroid built from:
/// the user's own words of its prompt ([`uno_core::query`]), as the proxy
/// routes requests. Read from the stored prompt, so logs ingested before
/// the rule existed get it too; a prompt that cannot be read falls back
/// to the latest user message.
pub fn route_text(log: &NewLearnLog) -> String {
    match serde_json::from_str::<Vec<TextMessage<'_>>>(&log.messages) {
        Ok(messages) => uno_core::query::user_words_text(&messages),
        Err(_) => log.user_query.clone(),
    }
}

/// The routing text of a logged request that opens a conversation (no
/// assistant or tool turn yet), or `None`: what the worker makes a routing
/// example of when the interaction carries no text feedback. Later turns
/// are left out: their routing text depends on the turns before them.
pub fn first_turn_route_text(request: &str) -> Option<String> {
    let messages = request_messages(request.as_bytes())?;
    if messages
        .iter()
        .any(|m| m.role == "assistant" || m.role == "tool")
    {
        return None;
    }
    let text = uno_core::query::user_words_text(&messages);
    (!text.trim().is_empty()).then_some(text)
}

/// Who a log counts as for rule support: its first known user, or the log
/// itself when nobody is known (each anonymous log then counts once, so
/// apps that send no user ids still learn; the support minimum then
/// counts logs, not people — send `user` to make it count people).
pub fn contributor(log: &NewLearnLog) -> String {
    log.users
        .first()
        .cloned()
        .unwrap_or_else(|| format!("anonymous:{}", log.interaction_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uno_store::learn::SourceFeedback;
    use uuid::Uuid;

    fn source(feedback: Vec<SourceFeedback>) -> LearnSource {
        LearnSource {
            tenant: "t".into(),
            interaction_id: Uuid::nil(),
            created_at: 1,
            model: "m".into(),
            end_user: Some("alice".into()),
            request: r#"{"model":"m","messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"What is Rust?"}]}"#.into(),
            response_text: "A language.".into(),
            feedback,
        }
    }

    fn fb(
        kind: &str,
        user: &str,
        comment: Option<&str>,
        expected: Option<&str>,
        at: i64,
    ) -> SourceFeedback {
        SourceFeedback {
            kind: kind.into(),
            end_user: user.into(),
            rating: (kind == "explicit").then_some(-1),
            comment: comment.map(Into::into),
            expected_output: expected.map(Into::into),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn feedback_becomes_numbered_lines_and_the_query_joins_the_prompt() {
        let log = learn_log(&source(vec![
            fb(
                "implicit",
                "alice",
                Some("Too short, add an example."),
                None,
                5,
            ),
            fb(
                "explicit",
                "bob",
                Some(" "),
                Some("Rust is a systems language."),
                7,
            ),
        ]))
        .unwrap();
        assert_eq!(log.query, "Be kind.\n\nWhat is Rust?");
        assert_eq!(log.user_query, "What is Rust?");
        assert_eq!(
            log.feedback,
            "Feedback 1: Too short, add an example.\nFeedback 2: The answer I expected: Rust is a systems language."
        );
        assert_eq!(log.users, vec!["alice", "bob"]);
        assert_eq!(log.feedback_at, 7);
        assert_eq!(log.rating, Some(-1));
        assert_eq!(log.lang, "en");
        assert_eq!(contributor(&log), "alice");
        assert_eq!(route_text(&log), "What is Rust?", "no system prompt");
    }

    #[test]
    fn the_route_text_is_the_users_words_of_the_stored_prompt() {
        let mut s = source(vec![fb("implicit", "", Some("More detail."), None, 1)]);
        s.request = r#"{"model":"m","messages":[{"role":"system","content":"You are ACME's assistant."},{"role":"user","content":"Explain ownership in Rust"},{"role":"assistant","content":"Ownership is..."},{"role":"user","content":"and borrowing?"}]}"#.into();
        let log = learn_log(&s).unwrap();
        assert_eq!(
            route_text(&log),
            "Explain ownership in Rust\n\nand borrowing?"
        );
        assert!(
            log.query.starts_with("You are ACME's assistant."),
            "the prompt is kept"
        );
        let unreadable = NewLearnLog {
            messages: "not json".into(),
            ..log
        };
        assert_eq!(route_text(&unreadable), "and borrowing?");
    }

    #[test]
    fn ratings_alone_teach_nothing_and_changes_change_the_hash() {
        assert!(learn_log(&source(vec![fb("explicit", "bob", None, None, 1)])).is_none());
        let a = learn_log(&source(vec![fb(
            "implicit",
            "",
            Some("More detail."),
            None,
            1,
        )]))
        .unwrap();
        let b = learn_log(&source(vec![fb(
            "implicit",
            "",
            Some("Less detail."),
            None,
            1,
        )]))
        .unwrap();
        assert_ne!(a.feedback_hash, b.feedback_hash);
        let again = learn_log(&source(vec![fb(
            "implicit",
            "",
            Some("More detail."),
            None,
            9,
        )]))
        .unwrap();
        assert_eq!(
            a.feedback_hash, again.feedback_hash,
            "time alone is not a change"
        );
    }
}
