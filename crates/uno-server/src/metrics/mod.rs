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
pub mod page;
pub mod ratings;
pub mod requests;
pub mod served;

pub use listen::{MetricsListener, serve_worker_metrics, start_metrics_listener, worker_router};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use uno_core::metrics::{Exposition, Kind};
use uno_learn::WorkerMetrics;

use connections::ConnectionMetrics;
use ratings::ClusterRatingGauges;
use requests::RequestCounts;
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

    /// The explicit feedback posts counted so far: up, down, text only.
    pub fn feedback_posts(&self) -> [u64; 3] {
        self.feedback.each_ref().map(|c| c.load(Ordering::Relaxed))
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
