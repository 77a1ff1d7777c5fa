//! An interaction in progress that is logged however it ends.
//!
//! A client can disconnect at any await point, and then the handler's future
//! (or the streaming body) is simply dropped. Holding the draft record in a
//! guard whose `Drop` submits it as cancelled means such exchanges are logged
//! too, with whatever had arrived, instead of vanishing.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use uno_core::digest::RequestDigest;
use uno_core::interaction::{
    ExperienceTrace, InteractionRecord, InteractionSink, Outcome, ResponseBody,
};

use crate::proxy::context::RequestContext;

/// The parts of a record known once the request has been read.
pub struct PendingInteraction {
    draft: Option<Draft>,
    sink: Arc<dyn InteractionSink>,
}

struct Draft {
    context: RequestContext,
    end_user: Option<String>,
    request_body: Bytes,
    request_digest: Option<RequestDigest>,
    stream: bool,
    upstream_sent: Option<Instant>,
    status: u16,
    experience: ExperienceTrace,
    replaces_earlier: bool,
}

/// How a finished exchange ended, for [`PendingInteraction::finish`].
pub struct Ending {
    /// The status the client received.
    pub status: u16,
    /// How it ended.
    pub outcome: Outcome,
    /// The answer's bytes.
    pub response: ResponseBody,
    /// When the first body byte went to the client.
    pub first_byte: Option<Instant>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl PendingInteraction {
    /// Starts the record of a chat completion; `digest` is taken when the
    /// request is logged to a store. `request_body` may be a slice of the
    /// connection's read buffer: the log sink copies what it keeps when the
    /// record is handed over, so the queue never holds that buffer.
    pub fn new(
        sink: Arc<dyn InteractionSink>,
        context: RequestContext,
        end_user: Option<String>,
        request_body: Bytes,
        digest: Option<RequestDigest>,
        stream: bool,
        experience: ExperienceTrace,
    ) -> Self {
        PendingInteraction {
            draft: Some(Draft {
                context,
                end_user,
                request_body,
                request_digest: digest,
                stream,
                upstream_sent: None,
                status: 499,
                experience,
                replaces_earlier: false,
            }),
            sink,
        }
    }

    /// Notes when the request went upstream, for the upstream latency.
    pub fn upstream_sent(&mut self, at: Instant) {
        if let Some(draft) = &mut self.draft {
            draft.upstream_sent = Some(at);
        }
    }

    /// Marks the record a retry under the tenant's own client-chosen id:
    /// its row replaces the earlier attempt's (see [`crate::ownership`]).
    pub fn replaces_earlier(&mut self) {
        if let Some(draft) = &mut self.draft {
            draft.replaces_earlier = true;
        }
    }

    /// Notes the reflective module's draft and critique as they arrive, so
    /// they are logged even if a later step fails or the client leaves.
    pub fn reflection(&mut self, draft: Option<String>, critique: Option<String>) {
        if let Some(d) = &mut self.draft {
            d.experience.draft = draft;
            d.experience.critique = critique;
        }
    }

    /// Notes the status sent to the client, in case it disconnects later.
    pub fn status(&mut self, status: u16) {
        if let Some(draft) = &mut self.draft {
            draft.status = status;
        }
    }

    /// Submits the finished record.
    pub fn finish(mut self, ending: Ending) {
        self.submit(ending);
    }

    /// Submits the finished record from behind a reference (the streaming
    /// body cannot give its guard away). Later calls do nothing.
    pub fn finish_in_place(&mut self, ending: Ending) {
        self.submit(ending);
    }

    /// Submits the record as cancelled with what arrived so far, unless it
    /// was already finished.
    pub fn cancel(&mut self, response: ResponseBody, first_byte: Option<Instant>) {
        let status = self.draft.as_ref().map_or(499, |d| d.status);
        self.submit(Ending {
            status,
            outcome: Outcome::Cancelled,
            response,
            first_byte,
            error: Some("client disconnected before the answer was complete".to_owned()),
        });
    }

    fn submit(&mut self, ending: Ending) {
        let Some(draft) = self.draft.take() else {
            return;
        };
        let now = Instant::now();
        let since = |t: Instant| now.saturating_duration_since(t);
        let record = InteractionRecord {
            id: draft.context.id,
            tenant: draft.context.tenant,
            started_at: draft.context.received_at,
            end_user: draft.end_user,
            request_body: draft.request_body,
            request_digest: draft.request_digest,
            stream: draft.stream,
            status: ending.status,
            outcome: ending.outcome,
            response: ending.response,
            upstream_latency: draft.upstream_sent.map(since),
            total_latency: since(draft.context.received),
            time_to_first_byte: ending
                .first_byte
                .map(|t| t.saturating_duration_since(draft.context.received)),
            error: ending.error,
            experience: draft.experience,
            replaces_earlier: draft.replaces_earlier,
        };
        self.sink.submit(record);
    }
}

impl Drop for PendingInteraction {
    fn drop(&mut self) {
        if self.draft.is_some() {
            self.cancel(ResponseBody::None, None);
        }
    }
}
