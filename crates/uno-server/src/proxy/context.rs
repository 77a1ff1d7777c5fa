//! The layer every `/v1` request passes first: it fixes the interaction id,
//! authenticates, opens the request's tracing span, and puts the id on the
//! response, whatever the route answers (errors included).
//!
//! Each answered request is also one access-log event: DEBUG on target
//! [`ACCESS_LOG_TARGET`], with `route`, `status`, `path` and `latency_ms`,
//! inside the request's span (so it carries `interaction_id` and `tenant`).
//! Off by default (`log.filter = "info"`: its callsite is disabled, so it
//! costs nothing); `log.filter = "info,uno::access=debug"` turns it on. On,
//! it costs about 10 µs of CPU per request in JSON (uno-bench --log: 35k ->
//! 27k requests/s at 64 connections on 2 cores), which is why it is not on
//! by default; `/metrics` counts the same requests for free. Admin requests
//! get their own span and event through [`admin_context`]. Nothing secret
//! is a field: keys are never logged, only the tenant they name.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use pin_project_lite::pin_project;
use tracing::Instrument;
use tracing::instrument::Instrumented;
use uno_core::{ApiError, InteractionId};

use crate::app::AppState;
use crate::auth::Tenant;
use crate::metrics::ServerMetrics;
use crate::metrics::requests::{PathLabel, RouteLabel};
use crate::proxy::reply::error_response;

/// The request header a client may use to choose the interaction id, and the
/// response header that always carries it.
pub const INTERACTION_ID_HEADER: &str = "x-uno-interaction-id";

/// The `tracing` target of the one event per answered request.
pub const ACCESS_LOG_TARGET: &str = "uno::access";

/// What the context layer established, for the route handlers.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The interaction id (client-chosen or new).
    pub id: InteractionId,
    /// Whether the client chose `id` (sent `x-uno-interaction-id`): its
    /// owner must then be checked before it is used (see
    /// [`crate::ownership`]); an id uno made is new and needs no check.
    pub chosen_by_client: bool,
    /// The authenticated tenant.
    pub tenant: Tenant,
    /// When uno received the request (monotonic, for latencies).
    pub received: Instant,
    /// When uno received the request (wall clock, for storage).
    pub received_at: SystemTime,
}

/// A response extension: the handler served the request under this id
/// instead of the one the context layer fixed (a client-chosen id whose
/// owner could not be checked), so the response must carry this one.
#[derive(Debug, Clone, Copy)]
pub struct ServedAs(pub InteractionId);

/// The layer that puts [`ContextService`] around the `/v1` routes.
#[derive(Clone)]
pub struct ContextLayer {
    state: AppState,
}

impl ContextLayer {
    /// A layer checking keys against `state`.
    pub fn new(state: AppState) -> Self {
        ContextLayer { state }
    }
}

impl<S> tower_layer::Layer<S> for ContextLayer {
    type Service = ContextService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ContextService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Establishes the [`RequestContext`] and stamps the interaction id on the
/// response. Written as a plain service (no boxed future, no per-request
/// clone of the inner route) because it runs on every proxied request.
#[derive(Clone)]
pub struct ContextService<S> {
    inner: S,
    state: AppState,
}

impl<S> tower_service::Service<Request> for ContextService<S>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ContextFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let received = Instant::now();
        let received_at = SystemTime::now();
        let header = request.headers().get(INTERACTION_ID_HEADER);
        let chosen_by_client = header.is_some();
        let id = match header {
            None => Ok(InteractionId::new()),
            Some(value) => value
                .to_str()
                .map_err(|_| "non-ASCII value".to_owned())
                .and_then(|v| v.parse::<InteractionId>().map_err(|e| e.to_string()))
                .map_err(|problem| {
                    ApiError::bad_request(problem).with_param(INTERACTION_ID_HEADER)
                }),
        };
        let route = RouteLabel::of_path(request.uri().path());
        let metrics = self.state.metrics();
        let refused = |id: InteractionId, error: &ApiError| {
            metrics
                .requests
                .record(route, error.status, PathLabel::None);
            // No span yet (no tenant); the event names the id itself.
            tracing::debug!(
                target: ACCESS_LOG_TARGET,
                interaction_id = %id,
                route = route.as_str(),
                status = error.status,
                path = PathLabel::None.as_str(),
                latency_ms = received.elapsed().as_secs_f64() * 1e3,
                "refused"
            );
            ContextFuture::Refused {
                response: Some(with_interaction_id(error_response(error), id)),
            }
        };
        let id = match id {
            Ok(id) => id,
            Err(error) => return refused(InteractionId::new(), &error),
        };
        let tenant = match self.state.auth().authenticate(request.headers()) {
            Ok(tenant) => tenant,
            Err(error) => return refused(id, &error),
        };
        let span = tracing::info_span!(
            "request",
            interaction_id = %id,
            tenant = %tenant,
            uri_path = request.uri().path(),
        );
        request.extensions_mut().insert(RequestContext {
            id,
            chosen_by_client,
            tenant,
            received,
            received_at,
        });
        ContextFuture::Running {
            inner: self.inner.call(request).instrument(span),
            id,
            route,
            metrics: metrics.clone(),
            received,
        }
    }
}

pin_project! {
    /// The future of [`ContextService`].
    #[project = ContextFutureProjection]
    pub enum ContextFuture<F> {
        /// Refused before reaching the route (bad id, bad key).
        Refused { response: Option<Response> },
        /// The route is running.
        Running {
            #[pin] inner: Instrumented<F>,
            id: InteractionId,
            route: RouteLabel,
            metrics: Arc<ServerMetrics>,
            received: Instant,
        },
    }
}

impl<F> Future for ContextFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ContextFutureProjection::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_default()))
            }
            ContextFutureProjection::Running {
                mut inner,
                id,
                route,
                metrics,
                received,
            } => {
                let response = ready!(inner.as_mut().poll(cx))?;
                let path = response
                    .headers()
                    .get(crate::proxy::headers::PATH_HEADER)
                    .map(HeaderValue::as_bytes);
                let path = PathLabel::of_header(path);
                let status = response.status().as_u16();
                metrics.requests.record(*route, status, path);
                // For a stream this is the time to its response head; the
                // interaction record has the full duration. The span is the
                // event's parent without being entered, so a disabled event
                // costs nothing.
                tracing::debug!(
                    target: ACCESS_LOG_TARGET,
                    parent: inner.span(),
                    route = route.as_str(),
                    status,
                    path = path.as_str(),
                    latency_ms = received.elapsed().as_secs_f64() * 1e3,
                    "answered"
                );
                // A handler that served under another id says so.
                let id = response
                    .extensions()
                    .get::<ServedAs>()
                    .map_or(*id, |served| served.0);
                Poll::Ready(Ok(with_interaction_id(response, id)))
            }
        }
    }
}

/// Middleware for the admin routes: a span per request (method and the
/// route's template, not the concrete path, which may name an end user) and
/// the access-log event when it is answered, 401s included.
pub async fn admin_context(request: Request, next: Next) -> Response {
    let received = Instant::now();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let span = tracing::info_span!("admin_request", method = %request.method(), endpoint);
    async move {
        let response = next.run(request).await;
        tracing::debug!(
            target: ACCESS_LOG_TARGET,
            route = RouteLabel::Admin.as_str(),
            status = response.status().as_u16(),
            path = PathLabel::None.as_str(),
            latency_ms = received.elapsed().as_secs_f64() * 1e3,
            "answered"
        );
        response
    }
    .instrument(span)
    .await
}

fn with_interaction_id(mut response: Response, id: InteractionId) -> Response {
    let mut buf = [0u8; 36];
    if let Ok(value) = HeaderValue::from_str(id.encode(&mut buf)) {
        response.headers_mut().insert(INTERACTION_ID_HEADER, value);
    }
    response
}
