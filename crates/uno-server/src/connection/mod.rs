//! Client connections: accepted up to a limit, each served by hyper with
//! the timeouts that keep a slow or silent client from holding it.
//!
//! axum's `serve` has no header, body or idle timeout and no connection
//! limit: partial headers then silence held a connection forever, and 1,100
//! such sockets exhausted a 1,024 open-file limit. Here:
//! - a request head must arrive within `header_timeout` of its first byte
//!   (of the connection's opening, for its first request);
//! - a body must keep to a minimum rate ([`body`]; cut with 408);
//! - a keep-alive connection with no request in progress is closed after
//!   `idle_timeout`;
//! - at most `max_connections` are open; beyond that uno stops accepting,
//!   and new connections wait in the kernel's backlog (back-pressure)
//!   instead of failing `accept` with EMFILE.
//!
//! Nothing here limits a request being answered: a stream may run for
//! hours and an upstream may think for as long as `http.read_timeout_ms`
//! allows. Every cut is counted in `uno_connection_timeouts_total`, and
//! header and body cuts and the limit are logged as warnings, one line per
//! ten seconds at most (so an attack does not flood the log).

pub mod body;
pub mod io;
pub mod watchdog;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use uno_core::config::ServerConfig;

use crate::metrics::connections::{ConnectionMetrics, Cut};
use body::{BodyWatch, TimedBody};
use watchdog::{Check, ConnState};

/// The limits of the connection layer (`[server]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From a head's first byte to its end.
    pub header_timeout: Duration,
    /// A body's time to arrive, before what its bytes earn.
    pub body_timeout: Duration,
    /// Bytes a second that earn a body one more second (0: none).
    pub body_min_rate: u64,
    /// A keep-alive connection with no request in progress.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// After shutdown begins, how long in-flight requests may take.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The limits a `[server]` section sets.
    pub fn from_config(server: &ServerConfig) -> Self {
        Limits {
            header_timeout: Duration::from_secs(server.header_timeout_secs),
            body_timeout: Duration::from_secs(server.body_timeout_secs),
            body_min_rate: server.body_min_rate,
            idle_timeout: Duration::from_secs(server.idle_timeout_secs),
            max_connections: server.max_connections.max(1),
            shutdown_grace: Duration::from_secs(server.shutdown_grace_secs),
        }
    }

    /// How long a connection's watchdog sleeps at most (see [`watchdog`]).
    fn period(&self) -> Duration {
        self.header_timeout
            .min(self.idle_timeout)
            .max(Duration::from_millis(10))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&ServerConfig::default())
    }
}

/// Lets a warning through at most once per ten seconds, and says how many
/// were held back in between.
#[derive(Debug)]
pub struct Throttle {
    epoch: Instant,
    next_ms: AtomicU64,
    held_back: AtomicU64,
}

impl Throttle {
    const EVERY_MS: u64 = 10_000;

    /// A throttle that lets the first warning through.
    pub fn new() -> Self {
        Throttle {
            epoch: Instant::now(),
            next_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last one)` if a warning may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + Self::EVERY_MS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

/// What every connection of one listener shares.
pub struct Listener {
    router: Router,
    builder: auto::Builder<TokioExecutor>,
    limits: Limits,
    metrics: Arc<ConnectionMetrics>,
    header_warnings: Throttle,
    body_warnings: Arc<Throttle>,
    /// For the accept loop's warning about the connection limit.
    pub limit_warnings: Throttle,
}

impl Listener {
    /// Serves `router` under `limits`, counting into `metrics`.
    pub fn new(router: Router, limits: Limits, metrics: Arc<ConnectionMetrics>) -> Self {
        metrics.set_limit(limits.max_connections);
        Listener {
            router,
            builder: auto::Builder::new(TokioExecutor::new()),
            limits,
            metrics,
            header_warnings: Throttle::new(),
            body_warnings: Arc::new(Throttle::new()),
            limit_warnings: Throttle::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The counters.
    pub fn metrics(&self) -> &ConnectionMetrics {
        &self.metrics
    }
}

/// Serves one accepted connection until it ends, is cut, or shutdown has
/// let it finish; `permit` holds its place under the connection limit.
pub async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let limits = listener.limits;
    listener.metrics.opened();
    let state = Arc::new(ConnState::new());
    let service = ConnService {
        router: listener.router.clone(),
        state: state.clone(),
        watch: Arc::new(BodyWatch {
            limits,
            metrics: listener.metrics.clone(),
            throttle: listener.body_warnings.clone(),
            peer,
        }),
    };
    let io = TokioIo::new(io::WatchedIo::new(tcp, state.clone()));
    let conn = listener.builder.serve_connection(io, service);
    tokio::pin!(conn);
    let period = limits.period();
    let watchdog = tokio::time::sleep(period);
    tokio::pin!(watchdog);
    let mut closing = false;
    if *stop.borrow_and_update() {
        closing = true;
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(%peer, %err, "a client connection ended with an error");
                }
                break;
            }
            changed = stop.changed(), if !closing => {
                if changed.is_ok() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            () = watchdog.as_mut(), if !closing => {
                let now = Instant::now();
                match state.check(now, limits.header_timeout, limits.idle_timeout, period) {
                    Check::Until(at) => watchdog.as_mut().reset(at),
                    Check::Expired(Cut::Idle) => {
                        listener.metrics.cut(Cut::Idle);
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Check::Expired(cut) => {
                        listener.metrics.cut(cut);
                        if let Some(more) = listener.header_warnings.allow() {
                            tracing::warn!(
                                %peer,
                                also_cut = more,
                                "closed a connection whose request head did not arrive within \
                                 server.header_timeout_secs ({}s)",
                                limits.header_timeout.as_secs()
                            );
                        }
                        break;
                    }
                }
            }
        }
    }
    listener.metrics.closed();
    drop(permit);
}

/// The router, as hyper calls it on one connection: each request's body is
/// timed, and its response holds the connection "in progress" until sent.
#[derive(Clone)]
struct ConnService {
    router: Router,
    state: Arc<ConnState>,
    watch: Arc<BodyWatch>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<GuardedBody>;
    type Error = Infallible;
    type Future = ConnFuture;

    fn call(&self, request: Request<Incoming>) -> ConnFuture {
        self.state.request_started();
        let in_flight = InFlight(self.state.clone());
        let request = request.map(|body| TimedBody::new(body, self.watch.clone()));
        let mut router = self.router.clone();
        ConnFuture {
            inner: tower_service::Service::call(&mut router, request),
            in_flight: Some(in_flight),
        }
    }
}

/// Marks its request finished when dropped: with the response body once
/// hyper has sent it all, or with the handler's future if the client left.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

pin_project! {
    /// The router's future, its response's body given the request's
    /// [`InFlight`].
    struct ConnFuture {
        #[pin]
        inner: axum::routing::future::RouteFuture<Infallible>,
        in_flight: Option<InFlight>,
    }
}

impl std::future::Future for ConnFuture {
    type Output = Result<Response<GuardedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|inner| GuardedBody {
            inner,
            _in_flight: in_flight,
        })))
    }
}

pin_project! {
    /// A response body that keeps its request "in progress" until dropped.
    struct GuardedBody {
        #[pin]
        inner: Body,
        _in_flight: Option<InFlight>,
    }
}

impl http_body::Body for GuardedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_throttle_lets_one_warning_through_every_ten_seconds() {
        let throttle = Throttle::new();
        assert_eq!(throttle.allow(), Some(0));
        assert_eq!(throttle.allow(), None);
        assert_eq!(throttle.allow(), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(throttle.allow(), Some(2));
        assert_eq!(throttle.allow(), None);
    }
}
