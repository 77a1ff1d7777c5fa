//! `GET /metrics`: everything an operator graphs, in Prometheus text format.
//!
//! Recording is cheap and never touches the database: the request path
//! counts each answered request ([`requests`]), the interaction sink reads
//! latencies and cluster serves off each finished record ([`served`]), the
//! log writer and the learning worker keep their own counters, and the
//! per-cluster feedback figures come from a background reading
//! ([`ratings`]). A scrape only reads and formats.

pub mod access;
pub mod connections;
pub mod listen;
pub mod ratings;
pub mod requests;
pub mod served;

pub use listen::{MetricsListener, serve_worker_metrics, start_metrics_listener, worker_router};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use uno_core::metrics::{Exposition, Kind, label_value};
use uno_learn::WorkerMetrics;

use crate::app::AppState;
use connections::ConnectionMetrics;
use ratings::ClusterRatingGauges;
use requests::{PathLabel, RequestCounts, RouteLabel};
use served::{ChatLatencies, ClusterServes};

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric the server records, shared by the request path, the
/// background tasks and the `/metrics` handler.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// `uno_requests_total`.
    pub requests: RequestCounts,
    /// Upstream, added and first-token latencies of chat requests.
    pub latencies: Arc<ChatLatencies>,
    /// Requests routed to each learned cluster.
    pub serves: Arc<ClusterServes>,
    /// Treated and holdout feedback per cluster.
    pub ratings: Arc<ClusterRatingGauges>,
    /// The in-process learning worker's stages (`learn.in_serve`).
    pub worker: Arc<WorkerMetrics>,
    /// Client connections: open, limit, timeouts.
    pub connections: Arc<ConnectionMetrics>,
    /// Set while the database is unreachable or not yet migrated (`uno
    /// serve` started during an outage); `/ready` and
    /// `uno_database_ready` report it.
    pub database_down: Arc<std::sync::atomic::AtomicBool>,
    feedback: [AtomicU64; 3],
}

/// A rating as the `rating` label names it.
#[derive(Debug, Clone, Copy)]
pub enum RatingLabel {
    /// Thumbs up.
    Up,
    /// Thumbs down.
    Down,
    /// Text only.
    None,
}

impl ServerMetrics {
    /// Counts one explicit feedback post.
    pub fn record_feedback(&self, rating: RatingLabel) {
        self.feedback[rating as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The page, from these metrics and what `state` knows (log writer,
    /// active snapshots).
    pub fn render(&self, state: &AppState) -> String {
        let mut page = Exposition::new();
        write_build_info(&mut page);
        self.requests.write(&mut page);
        self.connections.write(&mut page);
        self.latencies.write(&mut page);
        self.write_feedback(state, &mut page);
        write_log_writer(state, &mut page);
        page.family(
            "uno_database_ready",
            Kind::Gauge,
            "1 when the database takes rows; 0 while it is unreachable or not yet migrated (logs go to the journal).",
        );
        let down = self.database_down.load(Ordering::Relaxed);
        page.sample("uno_database_ready", "", if down { 0.0 } else { 1.0 });
        self.worker.write(&mut page);
        write_snapshots(state, &mut page);
        self.serves.write(&mut page);
        self.ratings.write(&mut page);
        page.finish()
    }

    fn write_feedback(&self, state: &AppState, page: &mut Exposition) {
        page.family(
            "uno_feedback_total",
            Kind::Counter,
            "Feedback received: explicit posts by rating, and follow-up turns recorded as implicit feedback.",
        );
        for (label, count) in ["up", "down", "none"].iter().zip(&self.feedback) {
            page.sample(
                "uno_feedback_total",
                &format!("rating=\"{label}\",source=\"explicit\""),
                count.load(Ordering::Relaxed) as f64,
            );
        }
        let implicit = state
            .persistence()
            .map(|p| p.log.stats().follow_ups.load(Ordering::Relaxed))
            .unwrap_or(0);
        page.sample(
            "uno_feedback_total",
            "rating=\"none\",source=\"implicit\"",
            implicit as f64,
        );
    }
}

pub(crate) fn write_build_info(page: &mut Exposition) {
    page.family(
        "uno_build_info",
        Kind::Gauge,
        "Always 1; the version label says which uno is running.",
    );
    page.sample(
        "uno_build_info",
        concat!("version=\"", env!("CARGO_PKG_VERSION"), "\""),
        1.0,
    );
}

/// Reads one figure off the log writer's counters.
type ReadStat = fn(&uno_store::writer::WriterStats) -> u64;

fn write_log_writer(state: &AppState, page: &mut Exposition) {
    let stats = state.persistence().map(|p| p.log.stats().clone());
    let read =
        |f: fn(&uno_store::writer::WriterStats) -> u64| stats.as_deref().map(f).unwrap_or(0) as f64;
    page.family(
        "uno_tokens_total",
        Kind::Counter,
        "Tokens the upstream reported for logged chat requests.",
    );
    page.sample(
        "uno_tokens_total",
        "kind=\"prompt\"",
        read(|s| s.prompt_tokens.load(Ordering::Relaxed)),
    );
    page.sample(
        "uno_tokens_total",
        "kind=\"completion\"",
        read(|s| s.completion_tokens.load(Ordering::Relaxed)),
    );
    let families: [(&str, Kind, &str, ReadStat); 7] = [
        (
            "uno_log_queue_depth",
            Kind::Gauge,
            "Interaction and feedback records waiting for the log writer.",
            |s| s.queue_depth(),
        ),
        (
            "uno_log_rows_written_total",
            Kind::Counter,
            "Rows the log writer wrote to the database (directly or by replay).",
            |s| s.rows_written.load(Ordering::Relaxed),
        ),
        (
            "uno_log_rows_spilled_total",
            Kind::Counter,
            "Rows written to the on-disk journal: the database was unreachable, behind, or did not take them within the durability window.",
            |s| s.rows_spilled.load(Ordering::Relaxed),
        ),
        (
            "uno_log_rows_replayed_total",
            Kind::Counter,
            "Rows replayed from the journal into the database.",
            |s| s.rows_replayed.load(Ordering::Relaxed),
        ),
        (
            "uno_log_rows_dropped_total",
            Kind::Counter,
            "Records lost because the queue and the journal were both full (each is logged).",
            |s| s.rows_dropped.load(Ordering::Relaxed),
        ),
        (
            "uno_log_writes_timed_out_total",
            Kind::Counter,
            "Batch writes that missed the durability window: abandoned, their rows journaled instead.",
            |s| s.writes_timed_out.load(Ordering::Relaxed),
        ),
        (
            "uno_log_journal_bytes",
            Kind::Gauge,
            "Bytes in the on-disk journal now.",
            |s| s.journal_bytes.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in families {
        page.family(name, kind, help);
        page.sample(name, "", read(value));
    }
}

fn write_snapshots(state: &AppState, page: &mut Exposition) {
    page.family(
        "uno_snapshot_version",
        Kind::Gauge,
        "The snapshot version this process serves, per tenant.",
    );
    let mut versions = state.experience().snapshots.versions();
    versions.sort();
    for (tenant, version) in versions {
        page.sample(
            "uno_snapshot_version",
            &format!("tenant=\"{}\"", label_value(&tenant)),
            version as f64,
        );
    }
}

/// Counts a request outside `/v1` (admin, dashboard, health, metrics).
pub async fn count_request(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = RouteLabel::of_path(request.uri().path());
    let response = next.run(request).await;
    state
        .metrics()
        .requests
        .record(route, response.status().as_u16(), PathLabel::None);
    response
}

/// `GET /metrics` on the API's listener. Metrics carry no content, only
/// counts and tenant and cluster names, so they need no client key; what
/// guards them is `metrics.token` and where they are served
/// ([`access::MetricsAccess`]): 401 without the token, 404 when another
/// listener has the page.
pub async fn serve_metrics(State(state): State<AppState>, headers: http::HeaderMap) -> Response {
    if let Err(err) = state.metrics_access().check_main(&headers) {
        return crate::reply::error_response(&err);
    }
    let page = state.metrics().render(&state);
    ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], page).into_response()
}
