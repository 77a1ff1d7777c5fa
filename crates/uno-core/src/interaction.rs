//! The record of one proxied exchange, as the request path hands it off.
//!
//! The request path fills this in with what it already has (ids, timings, the
//! request and response bytes as reference-counted buffers) and hands it to an
//! [`InteractionSink`] without waiting. Everything that costs CPU, such as
//! parsing the answer out of a stream, happens on the sink's side.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

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
}

impl InteractionRecord {
    /// Parses the answer out of the stored bytes. Costs a JSON parse per
    /// event, which is why the request path never calls it.
    pub fn summary(&self) -> ResponseSummary {
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
