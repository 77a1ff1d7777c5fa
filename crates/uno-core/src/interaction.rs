//! The record of one proxied exchange, as the request path hands it off.
//!
//! The request path fills this in with what it already has (ids, timings, the
//! request and response bytes as reference-counted buffers) and hands it to an
//! [`InteractionSink`] without waiting. Everything that costs CPU, such as
//! parsing the answer out of a stream, happens on the sink's side.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::digest::RequestDigest;
use crate::ids::InteractionId;
use crate::sse::ResponseSummary;

/// How an exchange ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The full answer reached the client.
    Completed,
    /// uno or the upstream answered with an error status.
    Failed,
    /// The client went away before the answer was complete.
    Cancelled,
    /// A stream started but broke off (upstream reset or read timeout).
    Partial,
}

impl Outcome {
    /// A stable lower-case name, for storage and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Partial => "partial",
        }
    }
}

/// The answer's bytes, as they went to the client.
#[derive(Debug, Clone, Default)]
pub enum ResponseBody {
    /// Nothing was received (the upstream was unreachable, or the client left
    /// before the headers).
    #[default]
    None,
    /// A complete non-streamed body.
    Complete(Bytes),
    /// The chunks of a server-sent-event stream, in order.
    Stream(Vec<Bytes>),
}

/// One proxied chat completion, handed to the log writer.
#[derive(Debug, Clone)]
pub struct InteractionRecord {
    /// The exchange's id, as sent to the client.
    pub id: InteractionId,
    /// The tenant whose key made the request.
    pub tenant: Arc<str>,
    /// When uno received the request.
    pub started_at: SystemTime,
    /// The end user, from `x-uno-user` or the body's `user`.
    pub end_user: Option<String>,
    /// The request body exactly as the client sent it.
    pub request_body: Bytes,
    /// What the log needs from the request, when the proxy took it as the
    /// request arrived (see [`crate::digest`]); else the log parses
    /// `request_body`.
    pub request_digest: Option<RequestDigest>,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The HTTP status the client received.
    pub status: u16,
    /// How the exchange ended.
    pub outcome: Outcome,
    /// The answer bytes.
    pub response: ResponseBody,
    /// From sending the request upstream to the upstream's last byte.
    pub upstream_latency: Option<Duration>,
    /// From receiving the request to sending the last byte.
    pub total_latency: Duration,
    /// From receiving the request to the first body byte sent to the client.
    pub time_to_first_byte: Option<Duration>,
    /// What went wrong, for failed, partial and cancelled exchanges.
    pub error: Option<String>,
    /// Which learned experience served it, and how.
    pub experience: ExperienceTrace,
    /// A retry: the client sent an `x-uno-interaction-id` its tenant had
    /// already used. One id is one interaction (the header is an
    /// idempotency key), so the log writer replaces the earlier attempt's
    /// row with this one instead of storing a second row.
    pub replaces_earlier: bool,
}

/// Which path served an exchange: the `x-uno-path` header, and with
/// [`ExperienceTrace`] the log's `path` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServePath {
    /// Forwarded untouched.
    Passthrough,
    /// The cluster's rule block went into the system message.
    Primary,
    /// Draft, critique, revision.
    Reflective,
    /// Routed to a treated cluster but served untouched on purpose, so
    /// treated and untreated feedback can be compared.
    Holdout,
}

impl ServePath {
    /// `passthrough`, `primary`, `reflective` or `holdout`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServePath::Passthrough => "passthrough",
            ServePath::Primary => "primary",
            ServePath::Reflective => "reflective",
            ServePath::Holdout => "holdout",
        }
    }

    /// The log's name for a path taken only in shadow mode.
    pub fn shadow_str(self) -> &'static str {
        match self {
            ServePath::Passthrough => "passthrough",
            ServePath::Primary => "shadow:primary",
            ServePath::Reflective => "shadow:reflective",
            ServePath::Holdout => "shadow:holdout",
        }
    }
}

/// How learned experience met one exchange: recorded with it so any answer
/// can be traced to the snapshot that shaped it, and so feedback on treated
/// and holdout traffic can be compared per cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExperienceTrace {
    /// The tenant's active snapshot version when the request arrived.
    pub snapshot_version: Option<i64>,
    /// The cluster the request was routed to.
    pub cluster_id: Option<Arc<str>>,
    /// The path that served it; `None` before routing (a refused request).
    pub path: Option<ServePath>,
    /// In shadow mode, the path that would have served it.
    pub shadow: Option<ServePath>,
    /// The reflective module's draft answer.
    pub draft: Option<String>,
    /// The reflective module's critique of the draft.
    pub critique: Option<String>,
}

impl ExperienceTrace {
    /// The `path` column: the shadow path when there is one, else the
    /// served path.
    pub fn logged_path(&self) -> Option<&'static str> {
        match self.shadow {
            Some(p) if p != ServePath::Passthrough => Some(p.shadow_str()),
            _ => self.path.map(ServePath::as_str),
        }
    }
}

impl InteractionRecord {
    /// Parses the answer out of the stored bytes. Costs a JSON parse per
    /// event, which is why the request path never calls it.
    pub fn summary(&self) -> ResponseSummary<'_> {
        match &self.response {
            ResponseBody::None => ResponseSummary::default(),
            ResponseBody::Complete(body) => ResponseSummary::from_completion(body),
            ResponseBody::Stream(chunks) => ResponseSummary::from_sse_chunks(chunks),
        }
    }

    /// Time uno itself added: total minus the upstream's share.
    pub fn added_latency(&self) -> Option<Duration> {
        self.upstream_latency
            .map(|upstream| self.total_latency.saturating_sub(upstream))
    }
}

/// Where finished interaction records go. Implementations must return at
/// once: the request path calls this and does not wait.
pub trait InteractionSink: Send + Sync + 'static {
    /// Takes ownership of a finished record.
    fn submit(&self, record: InteractionRecord);
}
