//! The interaction sink used until the store is configured: one structured
//! log line per interaction, so that nothing passes through unrecorded.

use uno_core::interaction::{InteractionRecord, InteractionSink};

/// Writes each interaction's metadata (never its content) as a `tracing`
/// event at debug level on target `uno::interaction`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingSink;

impl InteractionSink for TracingSink {
    fn submit(&self, record: InteractionRecord) {
        tracing::debug!(
            target: "uno::interaction",
            interaction_id = %record.id,
            tenant = %record.tenant,
            status = record.status,
            outcome = record.outcome.as_str(),
            stream = record.stream,
            total_ms = record.total_latency.as_secs_f64() * 1e3,
            upstream_ms = record.upstream_latency.map(|d| d.as_secs_f64() * 1e3),
            error = record.error.as_deref(),
            "interaction"
        );
    }
}
