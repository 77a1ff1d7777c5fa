//! The `/metrics` page: the server's own counters ([`super::ServerMetrics`])
//! and what the state knows (log writer, active snapshots), in Prometheus
//! text format; the handlers that serve it and count the requests outside
//! `/v1`. Kept apart from the counters so the state can hold them without
//! the counters depending on the state.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use uno_core::metrics::{Exposition, Kind, label_value};

use super::requests::{PathLabel, RouteLabel};
use super::{CONTENT_TYPE, write_build_info};
use crate::app::AppState;

/// The page, from these metrics and what `state` knows (log writer,
/// active snapshots).
pub fn render(state: &AppState) -> String {
    let metrics = state.metrics();
    let mut page = Exposition::new();
    write_build_info(&mut page);
    metrics.requests.write(&mut page);
    metrics.connections.write(&mut page);
    metrics.latencies.write(&mut page);
    write_feedback(state, &mut page);
    write_log_writer(state, &mut page);
    page.family(
        "uno_database_ready",
        Kind::Gauge,
        "1 when the database takes rows; 0 while it is unreachable or not yet migrated (logs go to the journal).",
    );
    let down = metrics.database_down.load(Ordering::Relaxed);
    page.sample("uno_database_ready", "", if down { 0.0 } else { 1.0 });
    metrics.worker.write(&mut page);
    write_snapshots(state, &mut page);
    metrics.serves.write(&mut page);
    metrics.ratings.write(&mut page);
    page.finish()
}

fn write_feedback(state: &AppState, page: &mut Exposition) {
    page.family(
        "uno_feedback_total",
        Kind::Counter,
        "Feedback received: explicit posts by rating, and follow-up turns recorded as implicit feedback.",
    );
    let posts = state.metrics().feedback_posts();
    for (label, count) in ["up", "down", "none"].iter().zip(posts) {
        page.sample(
            "uno_feedback_total",
            &format!("rating=\"{label}\",source=\"explicit\""),
            count as f64,
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
/// ([`super::access::MetricsAccess`]): 401 without the token, 404 when another
/// listener has the page.
pub async fn serve_metrics(State(state): State<AppState>, headers: http::HeaderMap) -> Response {
    if let Err(err) = state.metrics_access().check_main(&headers) {
        return crate::proxy::reply::error_response(&err);
    }
    let page = render(&state);
    ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], page).into_response()
}
