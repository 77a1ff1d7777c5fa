//! A request body that must keep arriving.
//!
//! A client can declare a 1,000-byte body and send a byte every two
//! seconds, holding its connection (and a request slot) for half an hour.
//! [`TimedBody`] gives the body `body_timeout` to arrive, plus one second
//! for every `min_rate` bytes received, as Apache's
//! `RequestReadTimeout body=20,MinRate=500` does: a large upload over a
//! slow but steady link passes, a trickle is cut. When the time is up the
//! body fails with [`BodyReadTimeout`], which the route answers with 408
//! (see [`crate::proxy::body::read_limited`]); hyper then closes the connection,
//! since the body was not read to its end.
//!
//! The clock only runs while someone reads the body, and a body that is
//! already in hyper's buffer (most are: they come with the headers) never
//! needs a timer, so the usual request allocates nothing here.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{Limits, Throttle};
use crate::metrics::connections::{ConnectionMetrics, Cut};

/// The body did not arrive at the minimum rate.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "the request body did not arrive in time (it gets server.body_timeout_secs, plus a second for \
     every server.body_min_rate bytes received); send it at once, or raise those limits"
)]
pub struct BodyReadTimeout;

/// What a [`TimedBody`] needs from its connection.
#[derive(Debug, Clone)]
pub struct BodyWatch {
    /// The limits in force.
    pub limits: Limits,
    /// Where a cut is counted.
    pub metrics: Arc<ConnectionMetrics>,
    /// Keeps the warning about cut bodies to one line in a while.
    pub throttle: Arc<Throttle>,
    /// The client, for the warning.
    pub peer: std::net::SocketAddr,
}

pin_project! {
    /// hyper's request body, failed with [`BodyReadTimeout`] when it falls
    /// behind (see the module's doc).
    pub struct TimedBody {
        #[pin]
        inner: Incoming,
        started: Instant,
        received: u64,
        sleep: Option<Pin<Box<Sleep>>>,
        watch: Arc<BodyWatch>,
        expired: bool,
    }
}

impl TimedBody {
    /// Wraps a request's body; its clock starts now.
    pub fn new(inner: Incoming, watch: Arc<BodyWatch>) -> Self {
        TimedBody {
            inner,
            started: Instant::now(),
            received: 0,
            sleep: None,
            watch,
            expired: false,
        }
    }
}

/// When a body that began at `started` and has `received` bytes so far is
/// late.
fn deadline(started: Instant, received: u64, limits: &Limits) -> Instant {
    let earned = match limits.body_min_rate {
        0 => 0,
        rate => received / rate,
    };
    started + limits.body_timeout + Duration::from_secs(earned)
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let due = deadline(*this.started, *this.received, &this.watch.limits);
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if sleep.deadline() != due {
                    sleep.as_mut().reset(due);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *this.expired = true;
                let watch = &this.watch;
                watch.metrics.cut(Cut::Body);
                if let Some(more) = watch.throttle.allow() {
                    tracing::warn!(
                        peer = %watch.peer,
                        received = *this.received,
                        also_cut = more,
                        "a request body arrived too slowly; answered 408 and closed the connection \
                         (server.body_timeout_secs, server.body_min_rate)"
                    );
                }
                Poll::Ready(Some(Err(Box::new(BodyReadTimeout))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_min_rate_bytes_earn_one_more_second() {
        let limits = Limits {
            body_timeout: Duration::from_secs(20),
            body_min_rate: 500,
            ..Limits::default()
        };
        let start = Instant::now();
        assert_eq!(deadline(start, 0, &limits), start + Duration::from_secs(20));
        assert_eq!(
            deadline(start, 499, &limits),
            start + Duration::from_secs(20)
        );
        assert_eq!(
            deadline(start, 10_000, &limits),
            start + Duration::from_secs(40)
        );
        let flat = Limits {
            body_min_rate: 0,
            ..limits
        };
        assert_eq!(
            deadline(start, 10_000, &flat),
            start + Duration::from_secs(20)
        );
    }
}
