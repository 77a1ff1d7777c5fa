//! The layer every `/v1` request passes first: it fixes the interaction id,
//! authenticates, opens the request's tracing span, and puts the id on the
//! response, whatever the route answers (errors included).

use std::time::{Instant, SystemTime};

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::response::Response;
use http::HeaderValue;
use pin_project_lite::pin_project;
use tracing::Instrument;
use tracing::instrument::Instrumented;
use uno_core::{ApiError, InteractionId};

use std::sync::Arc;

use crate::app::AppState;
use crate::auth::Tenant;
use crate::metrics::ServerMetrics;
use crate::metrics::requests::{PathLabel, RouteLabel};
use crate::reply::error_response;

/// The request header a client may use to choose the interaction id, and the
/// response header that always carries it.
pub const INTERACTION_ID_HEADER: &str = "x-uno-interaction-id";

/// What the context layer established, for the route handlers.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The interaction id (client-chosen or new).
    pub id: InteractionId,
    /// The authenticated tenant.
    pub tenant: Tenant,
    /// When uno received the request (monotonic, for latencies).
    pub received: Instant,
    /// When uno received the request (wall clock, for storage).
    pub received_at: SystemTime,
}

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
        let id = match request.headers().get(INTERACTION_ID_HEADER) {
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
            path = request.uri().path(),
        );
        request.extensions_mut().insert(RequestContext {
            id,
            tenant,
            received,
            received_at,
        });
        ContextFuture::Running {
            inner: self.inner.call(request).instrument(span),
            id,
            route,
            metrics: metrics.clone(),
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
                inner,
                id,
                route,
                metrics,
            } => {
                let response = ready!(inner.poll(cx))?;
                let path = response
                    .headers()
                    .get(crate::experience::PATH_HEADER)
                    .map(HeaderValue::as_bytes);
                metrics.requests.record(
                    *route,
                    response.status().as_u16(),
                    PathLabel::of_header(path),
                );
                Poll::Ready(Ok(with_interaction_id(response, *id)))
            }
        }
    }
}

fn with_interaction_id(mut response: Response, id: InteractionId) -> Response {
    let mut buf = [0u8; 36];
    if let Ok(value) = HeaderValue::from_str(id.encode(&mut buf)) {
        response.headers_mut().insert(INTERACTION_ID_HEADER, value);
    }
    response
}
