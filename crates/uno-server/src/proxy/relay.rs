//! Relaying an upstream server-sent-event stream to the client as it arrives.
//!
//! Each upstream frame is passed on the moment it is read, with no buffering
//! and no parsing; a reference-counted copy of it is kept for the log. The
//! relay also owns the stream's edge cases: it adds `data: [DONE]` when an
//! upstream ends cleanly without it (its answer has a finish reason), turns
//! an upstream break, a close before the answer finished (whatever the
//! framing) or a read timeout into an OpenAI-shaped error event, and logs the exchange however it ends,
//! including when the client goes away (the body is then dropped unfinished).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;
use http::header::CACHE_CONTROL;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use uno_core::ApiError;
use uno_core::interaction::{Outcome, ResponseBody};
use uno_core::sse::ends_with_done;

use crate::app::AppState;
use crate::proxy::headers::copy_from_upstream;
use crate::proxy::pending::{Ending, PendingInteraction};

const DONE_EVENT: &[u8] = b"data: [DONE]\n\n";

pin_project! {
    /// The response body of a streamed chat completion.
    #[project = RelayProjection]
    pub struct RelayBody {
        #[pin]
        upstream: Incoming,
        #[pin]
        idle: Sleep,
        read_timeout: Duration,
        chunks: Vec<Bytes>,
        first_byte: Option<Instant>,
        status: u16,
        finished: bool,
        pending: PendingInteraction,
    }

    impl PinnedDrop for RelayBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.finished {
                let chunks = std::mem::take(this.chunks);
                this.pending.cancel(ResponseBody::Stream(chunks), *this.first_byte);
            }
        }
    }
}

impl RelayBody {
    /// Wraps the upstream body; `pending` is logged when the stream ends.
    pub fn new(
        upstream: Incoming,
        read_timeout: Duration,
        status: u16,
        mut pending: PendingInteraction,
    ) -> Self {
        pending.status(status);
        RelayBody {
            upstream,
            idle: tokio::time::sleep(read_timeout),
            read_timeout,
            chunks: Vec::with_capacity(64),
            first_byte: None,
            status,
            finished: false,
            pending,
        }
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        loop {
            match this.upstream.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: nothing the client needs
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if this.first_byte.is_none() {
                        *this.first_byte = Some(Instant::now());
                    }
                    this.idle
                        .as_mut()
                        .reset(tokio::time::Instant::now() + *this.read_timeout);
                    this.chunks.push(data.clone());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(None) => {
                    if this.chunks.last().is_some_and(|c| ends_with_done(c)) {
                        finish(&mut this, Outcome::Completed, None);
                        return Poll::Ready(None);
                    }
                    if !finished_a_choice(this.chunks) {
                        // Closed mid-answer: whatever the framing, a stream
                        // with neither `[DONE]` nor a finish reason was cut.
                        let error = ApiError::bad_gateway(
                            "the upstream closed the stream before the answer finished: no finish_reason and no end-of-stream event",
                        );
                        return Poll::Ready(Some(Ok(fail(&mut this, error))));
                    }
                    let tail = Bytes::from_static(DONE_EVENT);
                    this.chunks.push(tail.clone());
                    finish(&mut this, Outcome::Completed, None);
                    return Poll::Ready(Some(Ok(Frame::data(tail))));
                }
                Poll::Ready(Some(Err(err))) => {
                    let error =
                        ApiError::bad_gateway(format!("the upstream stream broke off: {err}"));
                    return Poll::Ready(Some(Ok(fail(&mut this, error))));
                }
                Poll::Pending => {
                    ready!(this.idle.as_mut().poll(cx));
                    let error = ApiError::gateway_timeout(format!(
                        "the upstream sent nothing for {:?}; raise http.read_timeout_ms if the model is slow",
                        this.read_timeout
                    ));
                    return Poll::Ready(Some(Ok(fail(&mut this, error))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Whether the stream so far gave its answer a finish reason: an upstream
/// that ends cleanly without `[DONE]` then finished, and gets the `[DONE]`
/// clients wait for. Parsed only for a stream that lacks `[DONE]`, which is
/// rare, so the usual stream is never parsed on the request path.
fn finished_a_choice(chunks: &[Bytes]) -> bool {
    uno_core::sse::ResponseSummary::from_sse_chunks(chunks)
        .finish_reason
        .is_some()
}

/// Ends the stream with an error event; the status line went out long ago.
fn fail(this: &mut RelayProjection<'_>, error: ApiError) -> Frame<Bytes> {
    let event = Bytes::from(error.to_sse_event());
    this.chunks.push(event.clone());
    finish(this, Outcome::Partial, Some(error.message));
    Frame::data(event)
}

fn finish(this: &mut RelayProjection<'_>, outcome: Outcome, error: Option<String>) {
    *this.finished = true;
    let chunks = std::mem::take(this.chunks);
    // The guard is swapped out so that Drop sees nothing left to cancel.
    this.pending.finish_in_place(Ending {
        status: *this.status,
        outcome,
        response: ResponseBody::Stream(chunks),
        first_byte: *this.first_byte,
        error,
    });
}

/// The client's response for an upstream event stream: each event relayed
/// as it arrives, the exchange logged when the stream ends.
pub(crate) fn relay_stream(
    state: &AppState,
    parts: &http::response::Parts,
    upstream_body: Incoming,
    pending: PendingInteraction,
) -> axum::response::Response {
    let relay = RelayBody::new(
        upstream_body,
        state.upstream().read_timeout(),
        parts.status.as_u16(),
        pending,
    );
    let mut response = axum::response::Response::new(axum::body::Body::new(relay));
    *response.status_mut() = parts.status;
    let out = response.headers_mut();
    copy_from_upstream(&parts.headers, out);
    out.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies in front of uno not to buffer the stream.
    out.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
