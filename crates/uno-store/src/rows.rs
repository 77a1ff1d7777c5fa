//! What the store writes, in the form it writes it.
//!
//! Each [`InteractionRecord`] becomes rows here: this is where the answer is
//! parsed out of the response bytes and the conversation hashed. The log
//! sink does it as the record is handed over, while those bytes are still in
//! the CPU's cache (about 1.1 us a record, against 2 to 2.3 us once the
//! writer gets to it a few milliseconds and many requests later); nothing
//! here waits. Rows serialise to JSON so the journal can hold them verbatim
//! while the database is away.

use std::borrow::Cow;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uno_core::conversation::ConversationHash;
use uno_core::digest::RequestDigest;
use uno_core::feedback::{ExplicitFeedback, implicit_feedback_id};
use uno_core::interaction::InteractionRecord;
use uno_core::sse::ResponseSummary;
use uuid::Uuid;

pub use crate::pg_copy::EncodedInteraction;
pub use uno_core::log_text::{LogText, clean_text};

/// One interaction: metadata and content, written to separate tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionRow {
    /// The interaction id.
    pub id: Uuid,
    /// The tenant.
    pub tenant: String,
    /// When uno received the request.
    pub created_at: DateTime<Utc>,
    /// The model the client asked for.
    pub model: String,
    /// The end user, if known.
    pub end_user: Option<String>,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// The HTTP status the client got.
    pub status: i16,
    /// `completed`, `failed`, `cancelled` or `partial`.
    pub outcome: Cow<'static, str>,
    /// The first choice's finish reason.
    pub finish_reason: Option<String>,
    /// Prompt tokens, when reported.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens, when reported.
    pub completion_tokens: Option<i64>,
    /// Total tokens, when reported.
    pub total_tokens: Option<i64>,
    /// Upstream latency in milliseconds.
    pub upstream_ms: Option<f64>,
    /// Total latency in milliseconds.
    pub total_ms: f64,
    /// Time to the first byte sent to the client, in milliseconds.
    pub ttfb_ms: Option<f64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// The tenant's active snapshot version when it was served.
    pub snapshot_version: Option<i64>,
    /// The cluster it was routed to.
    pub cluster_id: Option<String>,
    /// `passthrough`, `primary`, `reflective` or `holdout`; in shadow mode
    /// `shadow:primary`, … (what would have been applied).
    pub path: Option<Cow<'static, str>>,
    /// Identifies (conversation so far, this answer) for follow-up matching.
    pub conversation_hash: Option<Vec<u8>>,
    /// The request body as the client sent it (JSON text), sharing the
    /// record's buffer.
    pub request: LogText,
    /// The answer text.
    pub response_text: Option<String>,
    /// The reflective module's draft (absent from journals written before
    /// it existed).
    #[serde(default)]
    pub draft: Option<String>,
    /// The reflective module's critique of the draft.
    #[serde(default)]
    pub critique: Option<String>,
}

/// An interaction's columns, borrowed: what the COPY encoder reads.
///
/// An owned [`InteractionRow`] lends them ([`InteractionRow::columns`]);
/// so does a record being handed over ([`EncodedRows::build`]), which is
/// encoded straight from its own buffers, without a row of copied strings
/// built first and freed at once.
#[derive(Debug, Clone, Copy)]
pub struct InteractionColumns<'a> {
    /// The interaction id.
    pub id: Uuid,
    /// The tenant.
    pub tenant: &'a str,
    /// When uno received the request.
    pub created_at: DateTime<Utc>,
    /// The model the client asked for.
    pub model: &'a str,
    /// The end user, if known.
    pub end_user: Option<&'a str>,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// The HTTP status the client got.
    pub status: i16,
    /// How the exchange ended.
    pub outcome: &'a str,
    /// The first choice's finish reason.
    pub finish_reason: Option<&'a str>,
    /// Prompt tokens, when reported.
    pub prompt_tokens: Option<i64>,
    /// Completion tokens, when reported.
    pub completion_tokens: Option<i64>,
    /// Total tokens, when reported.
    pub total_tokens: Option<i64>,
    /// Upstream latency in milliseconds.
    pub upstream_ms: Option<f64>,
    /// Total latency in milliseconds.
    pub total_ms: f64,
    /// Time to the first byte sent to the client, in milliseconds.
    pub ttfb_ms: Option<f64>,
    /// What went wrong, if anything.
    pub error: Option<&'a str>,
    /// The snapshot version served.
    pub snapshot_version: Option<i64>,
    /// The cluster it was routed to.
    pub cluster_id: Option<&'a str>,
    /// The serve path (see [`InteractionRow::path`]).
    pub path: Option<&'a str>,
    /// Identifies (conversation so far, this answer).
    pub conversation_hash: Option<&'a [u8]>,
    /// The request body: UTF-8 without NUL, as whoever lends the columns
    /// checked ([`LogText`], [`clean_text`]), so the encoder copies it
    /// without checking it again.
    pub request: &'a [u8],
    /// The answer text.
    pub response_text: Option<&'a str>,
    /// The reflective module's draft.
    pub draft: Option<&'a str>,
    /// The reflective module's critique.
    pub critique: Option<&'a str>,
}

impl InteractionRow {
    /// The row's columns, borrowed.
    pub fn columns(&self) -> InteractionColumns<'_> {
        InteractionColumns {
            id: self.id,
            tenant: &self.tenant,
            created_at: self.created_at,
            model: &self.model,
            end_user: self.end_user.as_deref(),
            streamed: self.streamed,
            status: self.status,
            outcome: &self.outcome,
            finish_reason: self.finish_reason.as_deref(),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens,
            upstream_ms: self.upstream_ms,
            total_ms: self.total_ms,
            ttfb_ms: self.ttfb_ms,
            error: self.error.as_deref(),
            snapshot_version: self.snapshot_version,
            cluster_id: self.cluster_id.as_deref(),
            path: self.path.as_deref(),
            conversation_hash: self.conversation_hash.as_deref(),
            request: self.request.as_bytes(),
            response_text: self.response_text.as_deref(),
            draft: self.draft.as_deref(),
            critique: self.critique.as_deref(),
        }
    }
}

/// Explicit or implicit feedback, upserted by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRow {
    /// Deterministic id (see `uno_core::feedback`).
    pub id: Uuid,
    /// The tenant.
    pub tenant: String,
    /// The interaction it is about.
    pub interaction_id: Uuid,
    /// Who gave it ("" when unknown).
    pub end_user: String,
    /// `explicit` or `implicit`.
    pub kind: String,
    /// +1 or -1.
    pub rating: Option<i16>,
    /// Free text.
    pub comment: Option<String>,
    /// The answer the user wanted.
    pub expected_output: Option<String>,
    /// For implicit feedback, the request that carried it.
    pub source_interaction_id: Option<Uuid>,
    /// When it was received.
    pub created_at: DateTime<Utc>,
}

/// A request that continued an earlier answer. The store resolves the
/// earlier interaction by `parent_hash` when it writes this, so the match
/// needs no database read on the request path, and works across replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowUpRow {
    /// The id the implicit feedback row will have.
    pub feedback_id: Uuid,
    /// The tenant.
    pub tenant: String,
    /// The request that continued the conversation.
    pub source_interaction_id: Uuid,
    /// Who wrote the follow-up.
    pub end_user: String,
    /// `conversation_hash` of the exchange it continues.
    pub parent_hash: Vec<u8>,
    /// The user's follow-up text.
    pub text: String,
    /// When it was received.
    pub created_at: DateTime<Utc>,
}

/// A retry's mark: the attempt of interaction `id` of `tenant` received at
/// `created_at` replaces every attempt of the same id and tenant received
/// before it. Queued just before the retry's own interaction row, and
/// self-contained, so it holds wherever a batch or a journal segment is
/// cut (see [`crate::supersede`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupersedeRow {
    /// The interaction id the client chose and used again.
    pub id: Uuid,
    /// Its tenant (the only one whose rows are replaced).
    pub tenant: String,
    /// When uno received the replacing attempt, in whole microseconds as
    /// the databases keep it.
    pub created_at: DateTime<Utc>,
}

/// One unit of the log writer's work, and one line of its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LogRow {
    /// An interaction.
    Interaction(Box<InteractionRow>),
    /// An interaction encoded for Postgres as it was handed over (see
    /// [`EncodedInteraction`]). It is journaled as the `interaction` row it
    /// decodes to, so a journal reads the same whichever way its rows came,
    /// and replays them as rows.
    #[serde(
        rename = "interaction",
        skip_deserializing,
        serialize_with = "serialize_decoded"
    )]
    Encoded(EncodedInteraction),
    /// Explicit feedback (boxed, as the follow-up: both are rare, and a
    /// batch of rows, mostly interactions, is then not sized for them).
    Feedback(Box<FeedbackRow>),
    /// Implicit feedback to be matched to its interaction.
    FollowUp(Box<FollowUpRow>),
    /// A retry's interaction row replaces the earlier attempts' rows
    /// (boxed: retries are rare).
    Supersede(Box<SupersedeRow>),
}

/// Bytes a row's fixed columns and bookkeeping take, over its texts.
const ROW_OVERHEAD: usize = 256;

impl LogRow {
    /// About how many bytes the row holds: its texts plus a fixed
    /// overhead. The writer bounds its queue and batches by this, so a
    /// flood of 60 kB prompts cannot fill memory the way a count would let
    /// it.
    pub fn approx_bytes(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        ROW_OVERHEAD
            + match self {
                LogRow::Interaction(r) => {
                    r.request.as_bytes().len()
                        + opt(&r.response_text)
                        + opt(&r.draft)
                        + opt(&r.critique)
                        + opt(&r.error)
                }
                LogRow::Encoded(e) => e.tuple().len(),
                LogRow::Feedback(f) => opt(&f.comment) + opt(&f.expected_output),
                LogRow::FollowUp(f) => f.text.len(),
                LogRow::Supersede(_) => 0,
            }
    }
}

fn serialize_decoded<S: serde::Serializer>(
    encoded: &EncodedInteraction,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    encoded
        .decode()
        .map_err(S::Error::custom)?
        .serialize(serializer)
}

/// Postgres refuses NUL in text; models and clients can produce it. Strip it
/// rather than let one record poison a batch.
fn clean(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text.to_owned()
    }
}

fn clean_opt(text: Option<&str>) -> Option<String> {
    text.map(clean)
}

/// [`clean`] for a string the row can own: moved, not copied, unless it
/// holds a NUL.
fn clean_owned(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text
    }
}

/// Milliseconds as a float, for latency columns.
fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A `SystemTime` as a UTC timestamp (times before 1970 clamp to it).
pub fn to_utc(t: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

/// The rows of one finished interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionRows {
    /// The retry's mark, when it replaces earlier attempts.
    pub supersede: Option<Box<SupersedeRow>>,
    /// The interaction itself.
    pub interaction: Box<InteractionRow>,
    /// Implicit feedback, when its request continues a logged answer.
    pub follow_up: Option<Box<FollowUpRow>>,
}

/// A record taken apart for its rows: the answer parsed, the request
/// digest (the proxy's, or one parsed here), the conversation hash, and the
/// follow-up row it may carry. Both [`InteractionRows::build`] and
/// [`EncodedRows::build`] start here, so the two forms never disagree.
struct Parts<'r> {
    record: &'r InteractionRecord,
    /// Borrows the answer's texts from the record's body.
    summary: ResponseSummary<'r>,
    model: String,
    hash: Option<ConversationHash>,
    created_at: DateTime<Utc>,
    follow_up: Option<Box<FollowUpRow>>,
    supersede: Option<Box<SupersedeRow>>,
}

/// The request digest the proxy took on arrival, or one parsed from the
/// body here (records built elsewhere: imports, tests).
fn take_digest(record: &mut InteractionRecord) -> RequestDigest {
    match record.request_digest.take() {
        Some(digest) => digest,
        None => RequestDigest::of_body(&record.tenant, &record.request_body),
    }
}

impl<'r> Parts<'r> {
    fn of(record: &'r InteractionRecord, digest: RequestDigest) -> Parts<'r> {
        let summary = record.summary();
        let answered =
            record.outcome == uno_core::interaction::Outcome::Completed && !summary.text.is_empty();
        let hash = answered.then(|| digest.answered_by(&summary.text));
        let created_at = to_utc(record.started_at);
        let follow_up = digest.follow_up.map(|follow| {
            Box::new(FollowUpRow {
                feedback_id: implicit_feedback_id(&record.tenant, record.id),
                tenant: clean(&record.tenant),
                source_interaction_id: record.id.0,
                end_user: clean(record.end_user.as_deref().unwrap_or("")),
                parent_hash: follow.parent_hash.to_vec(),
                text: clean_owned(follow.text),
                created_at,
            })
        });
        let supersede = record.replaces_earlier.then(|| {
            Box::new(SupersedeRow {
                id: record.id.0,
                tenant: clean(&record.tenant),
                created_at: DateTime::from_timestamp_micros(created_at.timestamp_micros())
                    .unwrap_or(created_at),
            })
        });
        Parts {
            summary,
            model: digest.model,
            hash,
            created_at,
            follow_up,
            supersede,
            record,
        }
    }

    /// The interaction's columns, with `request` the record's body made
    /// clean ([`clean_text`], [`LogText`]).
    fn columns<'a>(&'a self, request: &'a [u8]) -> InteractionColumns<'a> {
        let record = self.record;
        let usage = self.summary.usage;
        let text: &str = &self.summary.text;
        InteractionColumns {
            id: record.id.0,
            tenant: &record.tenant,
            created_at: self.created_at,
            model: &self.model,
            end_user: record.end_user.as_deref(),
            streamed: record.stream,
            status: i16::try_from(record.status).unwrap_or(i16::MAX),
            outcome: record.outcome.as_str(),
            finish_reason: self.summary.finish_reason.as_deref(),
            prompt_tokens: usage.map(|u| u.prompt_tokens as i64),
            completion_tokens: usage.map(|u| u.completion_tokens as i64),
            total_tokens: usage.map(|u| u.total_tokens as i64),
            upstream_ms: record.upstream_latency.map(ms),
            total_ms: ms(record.total_latency),
            ttfb_ms: record.time_to_first_byte.map(ms),
            error: record.error.as_deref().or(self.summary.error.as_deref()),
            snapshot_version: record.experience.snapshot_version,
            cluster_id: record.experience.cluster_id.as_deref(),
            path: record.experience.logged_path(),
            conversation_hash: self.hash.as_ref().map(|h| h.as_slice()),
            request,
            response_text: (!text.is_empty()).then_some(text),
            draft: record.experience.draft.as_deref(),
            critique: record.experience.critique.as_deref(),
        }
    }
}

impl InteractionRow {
    /// An owned row with `columns`' values, NULs stripped; `request` is
    /// the text `c.request` borrows from, shared rather than copied again.
    fn owned(
        c: &InteractionColumns<'_>,
        request: LogText,
        outcome: &'static str,
        path: Option<&'static str>,
    ) -> Self {
        InteractionRow {
            id: c.id,
            tenant: clean(c.tenant),
            created_at: c.created_at,
            model: clean(c.model),
            end_user: clean_opt(c.end_user),
            streamed: c.streamed,
            status: c.status,
            outcome: Cow::Borrowed(outcome),
            finish_reason: clean_opt(c.finish_reason),
            prompt_tokens: c.prompt_tokens,
            completion_tokens: c.completion_tokens,
            total_tokens: c.total_tokens,
            upstream_ms: c.upstream_ms,
            total_ms: c.total_ms,
            ttfb_ms: c.ttfb_ms,
            error: clean_opt(c.error),
            snapshot_version: c.snapshot_version,
            cluster_id: clean_opt(c.cluster_id),
            path: path.map(Cow::Borrowed),
            conversation_hash: c.conversation_hash.map(<[u8]>::to_vec),
            request,
            response_text: clean_opt(c.response_text),
            draft: clean_opt(c.draft),
            critique: clean_opt(c.critique),
        }
    }
}

impl InteractionRows {
    /// Builds the rows of `record` (the SQLite store's form; a Postgres
    /// store gets [`EncodedRows::build`]). The request side comes from the
    /// digest the proxy took on arrival, or one parse of the body here.
    pub fn build(mut record: InteractionRecord) -> InteractionRows {
        let digest = take_digest(&mut record);
        let parts = Parts::of(&record, digest);
        let request = LogText::copy_of(&parts.record.request_body);
        let interaction = Box::new(InteractionRow::owned(
            &parts.columns(request.as_bytes()),
            request.clone(),
            parts.record.outcome.as_str(),
            parts.record.experience.logged_path(),
        ));
        InteractionRows {
            supersede: parts.supersede,
            interaction,
            follow_up: parts.follow_up,
        }
    }

    /// About how many bytes the rows hold (see [`LogRow::approx_bytes`]).
    pub fn approx_bytes(&self) -> usize {
        let i = &self.interaction;
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        3 * ROW_OVERHEAD
            + i.request.as_bytes().len()
            + opt(&i.response_text)
            + opt(&i.draft)
            + opt(&i.critique)
            + self.follow_up.as_ref().map_or(0, |f| f.text.len())
    }

    /// Appends the rows to a batch: a retry's mark, the interaction, its
    /// follow-up.
    pub fn push_into(self, rows: &mut Vec<LogRow>) {
        if let Some(supersede) = self.supersede {
            rows.push(LogRow::Supersede(supersede));
        }
        rows.push(LogRow::Interaction(self.interaction));
        if let Some(follow_up) = self.follow_up {
            rows.push(LogRow::FollowUp(follow_up));
        }
    }
}

/// [`InteractionRows`] with the interaction encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedRows {
    /// The retry's mark, when it replaces earlier attempts.
    pub supersede: Option<Box<SupersedeRow>>,
    /// The interaction's tuples.
    pub interaction: EncodedInteraction,
    /// Implicit feedback, when its request continues a logged answer.
    pub follow_up: Option<Box<FollowUpRow>>,
}

impl EncodedRows {
    /// Builds the rows of `record` with the interaction encoded for COPY
    /// straight from the record's buffers: the request body is copied once,
    /// into the tuples, and no row of owned strings is built on the way.
    /// The log sink does this as the record is handed over, while its bytes
    /// are still in the CPU's cache; nothing here waits.
    pub fn build(mut record: InteractionRecord) -> EncodedRows {
        let digest = take_digest(&mut record);
        let parts = Parts::of(&record, digest);
        let request = clean_text(&parts.record.request_body);
        let interaction = EncodedInteraction::of(&parts.columns(request.as_bytes()));
        EncodedRows {
            supersede: parts.supersede,
            interaction,
            follow_up: parts.follow_up,
        }
    }

    /// About how many bytes the rows hold (see [`LogRow::approx_bytes`]).
    pub fn approx_bytes(&self) -> usize {
        3 * ROW_OVERHEAD
            + self.interaction.tuple().len()
            + self.follow_up.as_ref().map_or(0, |f| f.text.len())
    }

    /// Appends the rows to a batch: a retry's mark, the interaction, its
    /// follow-up.
    pub fn push_into(self, rows: &mut Vec<LogRow>) {
        if let Some(supersede) = self.supersede {
            rows.push(LogRow::Supersede(supersede));
        }
        rows.push(LogRow::Encoded(self.interaction));
        if let Some(follow_up) = self.follow_up {
            rows.push(LogRow::FollowUp(follow_up));
        }
    }
}

/// The rows of a finished interaction, as a batch of their own (see
/// [`InteractionRows`]).
pub fn rows_for_interaction(record: &InteractionRecord) -> Vec<LogRow> {
    let mut rows = Vec::with_capacity(3);
    InteractionRows::build(record.clone()).push_into(&mut rows);
    rows
}

/// The row for explicit feedback.
pub fn row_for_feedback(feedback: &ExplicitFeedback) -> LogRow {
    LogRow::Feedback(Box::new(FeedbackRow {
        id: feedback.id,
        tenant: clean(&feedback.tenant),
        interaction_id: feedback.interaction_id.0,
        end_user: clean(&feedback.end_user),
        kind: "explicit".to_owned(),
        rating: feedback.rating.map(|r| r.as_i16()),
        comment: clean_opt(feedback.comment.as_deref()),
        expected_output: clean_opt(feedback.expected_output.as_deref()),
        source_interaction_id: None,
        created_at: to_utc(feedback.at),
    }))
}

impl LogRow {
    /// The tenant the row belongs to.
    pub fn tenant(&self) -> Cow<'_, str> {
        match self {
            LogRow::Interaction(r) => Cow::Borrowed(&r.tenant),
            LogRow::Encoded(r) => r.tenant(),
            LogRow::Feedback(r) => Cow::Borrowed(&r.tenant),
            LogRow::FollowUp(r) => Cow::Borrowed(&r.tenant),
            LogRow::Supersede(r) => Cow::Borrowed(&r.tenant),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use uno_core::InteractionId;
    use uno_core::interaction::{Outcome, ResponseBody};

    use super::*;

    fn record(body: &str, answer: &str) -> InteractionRecord {
        InteractionRecord {
            id: InteractionId::new(),
            tenant: Arc::from("t"),
            started_at: SystemTime::now(),
            end_user: Some("u\0ser".into()),
            request_body: Bytes::from(body.to_owned()),
            request_digest: None,
            stream: false,
            status: 200,
            outcome: Outcome::Completed,
            response: ResponseBody::Complete(Bytes::from(format!(
                r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"{answer}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}}}"#
            ))),
            upstream_latency: Some(Duration::from_millis(10)),
            total_latency: Duration::from_millis(12),
            time_to_first_byte: Some(Duration::from_millis(12)),
            error: None,
            experience: Default::default(),
            replaces_earlier: false,
        }
    }

    /// The interaction row of one record's rows (the first row).
    fn interaction_of(rows: &[LogRow]) -> &InteractionRow {
        match &rows[0] {
            LogRow::Interaction(row) => row,
            other => panic!("not an interaction: {other:?}"),
        }
    }

    #[test]
    fn interaction_rows_carry_parsed_answer_and_hash() {
        let rows = rows_for_interaction(&record(
            r#"{"model":"m1","messages":[{"role":"user","content":"hi"}]}"#,
            "hello",
        ));
        assert_eq!(rows.len(), 1);
        let row = interaction_of(&rows);
        assert_eq!(row.model, "m1");
        assert_eq!(row.response_text.as_deref(), Some("hello"));
        assert_eq!(row.total_tokens, Some(5));
        assert_eq!(row.end_user.as_deref(), Some("user"), "NUL stripped");
        assert!(row.conversation_hash.is_some());
    }

    #[test]
    fn request_text_is_kept_as_is_or_repaired() {
        let cafe = record("{\"a\":\"café\"}", "x");
        let rows = rows_for_interaction(&cafe);
        let row = interaction_of(&rows);
        assert_eq!(&*row.request, "{\"a\":\"café\"}");
        let broken = record("a\0b", "x");
        let rows = rows_for_interaction(&broken);
        let row = interaction_of(&rows);
        assert_eq!(&*row.request, "ab", "NUL stripped");
        let rows = rows_for_interaction(&record(
            "{\"model\":\"m\\u0000x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
            "hello",
        ));
        let row = interaction_of(&rows);
        assert_eq!(row.model, "mx", "NUL stripped from an owned field too");
        assert!(!row.request.contains('\0'));
    }

    #[test]
    fn a_continuation_yields_a_follow_up_matching_the_parent_hash() {
        let first = rows_for_interaction(&record(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            "hello",
        ));
        let parent = interaction_of(&first);
        let next = rows_for_interaction(&record(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"too terse"}]}"#,
            "sorry",
        ));
        assert_eq!(next.len(), 2);
        let LogRow::FollowUp(follow) = &next[1] else {
            panic!()
        };
        assert_eq!(Some(&follow.parent_hash), parent.conversation_hash.as_ref());
        assert_eq!(follow.text, "too terse");
    }

    #[test]
    fn journal_lines_from_before_reflection_still_parse() {
        let rows = rows_for_interaction(&record(r#"{"model":"m","messages":[]}"#, "x"));
        let mut value = serde_json::to_value(&rows[0]).unwrap();
        let object = value.as_object_mut().unwrap();
        assert!(object.remove("draft").is_some() && object.remove("critique").is_some());
        let back: LogRow = serde_json::from_value(value).unwrap();
        assert_eq!(back, rows[0]);
    }

    #[test]
    fn an_encoded_interaction_is_journaled_as_its_row() {
        let rows = rows_for_interaction(&record(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            "x",
        ));
        let row = interaction_of(&rows);
        let encoded = LogRow::Encoded(EncodedInteraction::of(&row.columns()));
        // Postgres keeps microseconds; so do the tuples.
        let mut stored = row.clone();
        stored.created_at =
            DateTime::from_timestamp_micros(row.created_at.timestamp_micros()).unwrap();
        let stored = LogRow::Interaction(Box::new(stored));
        let line = serde_json::to_string(&encoded).unwrap();
        assert_eq!(line, serde_json::to_string(&stored).unwrap());
        let back: LogRow = serde_json::from_str(&line).unwrap();
        assert_eq!(back, stored, "replayed as a row");
        assert_eq!(encoded.tenant(), "t");
    }

    /// Postgres keeps microseconds, and so do the tuples.
    fn to_micros(mut row: InteractionRow) -> InteractionRow {
        row.created_at =
            DateTime::from_timestamp_micros(row.created_at.timestamp_micros()).unwrap();
        row
    }

    #[test]
    fn encoding_a_record_directly_stores_what_its_rows_store() {
        let continued = r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}"#;
        let mut cancelled = record(r#"{"model":"m","messages":[]}"#, "x");
        cancelled.outcome = Outcome::Cancelled;
        cancelled.status = 499;
        cancelled.response = ResponseBody::None;
        cancelled.error = Some("client left\0".into());
        let mut reflected = record(r#"{"model":"m","messages":[]}"#, "final");
        reflected.experience.draft = Some("a draft".into());
        reflected.experience.critique = Some("a\0 critique".into());
        reflected.experience.cluster_id = Some(Arc::from("c-2"));
        reflected.experience.snapshot_version = Some(3);
        reflected.stream = true;
        let mut digested = record(continued, "sure");
        digested.request_digest = Some(RequestDigest::of_body("t", continued.as_bytes()));
        let mut invalid = record("", "x");
        invalid.request_body = Bytes::from_static(b"{\"a\":\"\xff\0b\"}");
        let records = [
            invalid,
            record(
                r#"{"model":"m1","messages":[{"role":"user","content":"caf\u00e9"}]}"#,
                "h\"i\"",
            ),
            record(continued, "sure"),
            digested,
            record("a\0b \u{ff}", "x"),
            record("{\"model\":\"m\\u0000x\",\"messages\":[]}", "y"),
            cancelled,
            reflected,
        ];
        for record in records {
            let rows = InteractionRows::build(record.clone());
            let encoded = EncodedRows::build(record);
            assert_eq!(
                encoded.interaction.decode().unwrap(),
                to_micros(*rows.interaction.clone())
            );
            assert_eq!(encoded.follow_up, rows.follow_up);
            assert_eq!(
                encoded.interaction,
                EncodedInteraction::of(&rows.interaction.columns()),
                "the same bytes as encoding the built row"
            );
        }
    }

    #[test]
    fn rows_round_trip_through_json() {
        let rows = rows_for_interaction(&record(r#"{"model":"m","messages":[]}"#, "x"));
        let line = serde_json::to_string(&rows[0]).unwrap();
        let back: LogRow = serde_json::from_str(&line).unwrap();
        assert_eq!(back, rows[0]);
    }
}
