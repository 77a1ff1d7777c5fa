//! Listeners of their own for `/metrics`: `uno serve`'s (`metrics.listen`,
//! or the loopback default) and `uno worker --metrics-listen`'s. Both
//! answer `GET /metrics` (behind `metrics.token` when set) and
//! `GET /health`, and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use uno_core::ApiError;
use uno_core::config::MetricsPlacement;
use uno_core::metrics::Exposition;
use uno_learn::WorkerMetrics;

use super::access::{ScrapeToken, check_token};
use super::{CONTENT_TYPE, write_build_info};
use crate::app::AppState;
use crate::proxy::reply::error_response;

/// A metrics listener that was bound and is serving.
#[derive(Debug)]
pub struct MetricsListener {
    /// The address actually bound (port 0 picks one).
    pub addr: SocketAddr,
    /// The serving task; abort it to stop.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts `uno serve`'s metrics listener where `state`'s placement says,
/// and logs once where `/metrics` is served and whether it needs a token
/// (`main` is the API's bound address, for when the page is served there).
///
/// `Ok(None)` when the API's listener serves the page, or when the
/// loopback default cannot be bound: that is warned about and the API keeps
/// serving, since uno chose that address, not the operator. A configured
/// `metrics.listen` that cannot be bound is an error.
pub async fn start_metrics_listener(
    state: &AppState,
    main: SocketAddr,
) -> std::io::Result<Option<MetricsListener>> {
    let access = state.metrics_access();
    let token_required = access.token.is_some();
    let (addr, fallback) = match access.placement {
        MetricsPlacement::Main => {
            tracing::info!(
                metrics = %format!("http://{main}/metrics"),
                token_required,
                "/metrics is served beside the API on {main} ({})",
                token_note(token_required)
            );
            return Ok(None);
        }
        MetricsPlacement::Separate { addr, fallback } => (addr, fallback),
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) if fallback => {
            tracing::warn!(
                %addr,
                %err,
                "cannot listen on {addr} for /metrics, so /metrics is not served: uno listens on \
                 a non-loopback address without metrics.token and serves /metrics only on \
                 loopback; set metrics.listen (UNO_METRICS_LISTEN) to a free address, or \
                 metrics.token (UNO_METRICS_TOKEN) to serve it beside the API"
            );
            return Ok(None);
        }
        Err(err) => {
            return Err(std::io::Error::new(
                err.kind(),
                format!(
                    "cannot listen on {addr} for /metrics: {err}; choose another address with \
                     metrics.listen or UNO_METRICS_LISTEN"
                ),
            ));
        }
    };
    let bound = listener.local_addr()?;
    tracing::info!(
        metrics = %format!("http://{bound}/metrics"),
        token_required,
        "/metrics is served on its own listener {bound}{} ({}); the API's listener does not serve it",
        if fallback { " (loopback only, the default for a non-loopback server.listen)" } else { "" },
        token_note(token_required)
    );
    Ok(Some(spawn(listener, bound, server_router(state.clone()))))
}

fn token_note(required: bool) -> &'static str {
    if required {
        "token required: metrics.token"
    } else {
        "no token required"
    }
}

/// The routes of `uno serve`'s metrics listener. Scrapes are counted in
/// `uno_requests_total` as on the API's listener.
fn server_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(serve_here))
        .route("/health", get(crate::routes::misc::health))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::page::count_request,
        ))
        .fallback(not_here)
        .with_state(state)
}

async fn serve_here(State(state): State<AppState>, request: Request) -> Response {
    if let Err(err) = check_token(state.metrics_access().token.as_ref(), request.headers()) {
        return error_response(&err);
    }
    let page = super::page::render(&state);
    ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], page).into_response()
}

/// Anything but `/metrics` and `/health`, in the shape every uno error has.
async fn not_here(request: Request) -> Response {
    error_response(&ApiError::not_found(format!(
        "the metrics listener has no route {}; it serves GET /metrics and GET /health",
        request.uri().path()
    )))
}

/// Serves `router` on `listener` through uno's connection layer, so a
/// metrics port reachable from a network has the API's header, body and
/// idle timeouts too, with a small connection limit of its own (scrapers
/// are few). Its connections are not counted in `uno_connections_*`,
/// which describe the API's listener.
fn spawn(listener: tokio::net::TcpListener, addr: SocketAddr, router: Router) -> MetricsListener {
    let limits = crate::connection::Limits {
        max_connections: 64,
        ..crate::connection::Limits::default()
    };
    let server = crate::BoundServer::from_listener(listener, router, limits, Default::default());
    let task = tokio::spawn(async move {
        if let Err(err) = server.run(std::future::pending()).await {
            tracing::warn!(%err, "the metrics listener stopped");
        }
    });
    MetricsListener { addr, task }
}

/// Serves [`worker_router`] on `addr` until the returned task is aborted.
pub async fn serve_worker_metrics(
    addr: SocketAddr,
    metrics: Arc<WorkerMetrics>,
    token: Option<ScrapeToken>,
) -> std::io::Result<MetricsListener> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let token_required = token.is_some();
    tracing::info!(
        metrics = %format!("http://{bound}/metrics"),
        token_required,
        "worker metrics at http://{bound}/metrics ({})",
        token_note(token_required)
    );
    Ok(spawn(listener, bound, worker_router(metrics, token)))
}

/// The metrics page of a standalone `uno worker --metrics-listen`: build
/// info and the worker's stage figures, behind `metrics.token` when set.
pub fn worker_router(metrics: Arc<WorkerMetrics>, token: Option<ScrapeToken>) -> Router {
    let page = move |request: Request| {
        let metrics = metrics.clone();
        let token = token.clone();
        async move {
            if let Err(err) = check_token(token.as_ref(), request.headers()) {
                return error_response(&err);
            }
            let mut page = Exposition::new();
            write_build_info(&mut page);
            metrics.write(&mut page);
            ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], page.finish()).into_response()
        }
    };
    Router::new()
        .route("/metrics", get(page))
        .route("/health", get(crate::routes::misc::health))
        .fallback(not_here)
}
