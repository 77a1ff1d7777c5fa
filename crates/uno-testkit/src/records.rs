//! Ready-made interaction records and feedback, for tests that seed a store
//! directly, and a macro that runs a test body on both databases.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use uno_core::InteractionId;
use uno_core::feedback::{ExplicitFeedback, Rating, explicit_feedback_id};
use uno_core::interaction::{ExperienceTrace, InteractionRecord, Outcome, ResponseBody, ServePath};

/// Defines `postgres::NAME` and `sqlite::NAME` tests for each `NAME`, each
/// calling the async fn `NAME(Backend)` of the enclosing module.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name($crate::Backend::Postgres).await })*
        }
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name($crate::Backend::Sqlite).await })*
        }
    };
}

/// A completed, non-streamed interaction of `user` in `tenant`, asking
/// `question` (as the single user message) and answered `answer`, at `at`.
pub fn record(
    tenant: &str,
    user: &str,
    question: &str,
    answer: &str,
    at: SystemTime,
) -> InteractionRecord {
    let messages = serde_json::json!([{"role": "user", "content": question}]);
    conversation(tenant, user, &messages, answer, at)
}

/// Like [`record`] with the request's whole `messages` array given.
pub fn conversation(
    tenant: &str,
    user: &str,
    messages: &serde_json::Value,
    answer: &str,
    at: SystemTime,
) -> InteractionRecord {
    let response = serde_json::json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]
    });
    InteractionRecord {
        id: InteractionId::new(),
        tenant: Arc::from(tenant),
        started_at: at,
        end_user: Some(user.to_owned()),
        request_body: Bytes::from(format!(r#"{{"model":"m","messages":{messages}}}"#)),
        request_digest: None,
        stream: false,
        status: 200,
        outcome: Outcome::Completed,
        response: ResponseBody::Complete(Bytes::from(response.to_string())),
        upstream_latency: Some(Duration::from_millis(5)),
        total_latency: Duration::from_millis(6),
        time_to_first_byte: Some(Duration::from_millis(6)),
        error: None,
        experience: Default::default(),
        replaces_earlier: false,
    }
}

/// [`record`] at the current time.
pub fn ask(tenant: &str, user: &str, question: &str, answer: &str) -> InteractionRecord {
    record(tenant, user, question, answer, SystemTime::now())
}

/// `record` as the proxy logs it when snapshot `version` served it on
/// `path`, routed to `cluster`.
pub fn served(
    mut record: InteractionRecord,
    version: i64,
    cluster: &str,
    path: ServePath,
) -> InteractionRecord {
    record.experience = ExperienceTrace {
        snapshot_version: Some(version),
        cluster_id: Some(Arc::from(cluster)),
        path: Some(path),
        ..ExperienceTrace::default()
    };
    record
}

/// Explicit feedback of `user` on interaction `id`, with the id the API
/// would give it.
pub fn feedback(
    tenant: &str,
    id: InteractionId,
    user: &str,
    rating: Option<Rating>,
    comment: Option<&str>,
    expected_output: Option<&str>,
) -> ExplicitFeedback {
    ExplicitFeedback {
        id: explicit_feedback_id(tenant, id, user),
        tenant: tenant.to_owned(),
        interaction_id: id,
        end_user: user.to_owned(),
        rating,
        comment: comment.map(str::to_owned),
        expected_output: expected_output.map(str::to_owned),
        at: SystemTime::now(),
    }
}
