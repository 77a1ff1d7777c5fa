//! Background jobs a serving process runs against the store.

use std::time::Duration;

use uno_core::config::{LogWriterConfig, RetentionConfig};

use crate::store::{RetentionPolicy, Store};
use crate::writer::WriterConfig;

impl From<&LogWriterConfig> for WriterConfig {
    fn from(config: &LogWriterConfig) -> Self {
        WriterConfig {
            queue_capacity: config.queue_capacity,
            queue_max_bytes: config.queue_max_bytes,
            batch_size: config.batch_size,
            batch_max_bytes: config.batch_max_bytes,
            flush_interval: Duration::from_millis(config.flush_interval_ms),
            durability_window: Duration::from_millis(config.durability_window_ms),
            journal_dir: config.journal_dir.clone().into(),
            journal_max_bytes: config.journal_max_bytes,
            journal_segment_bytes: config.journal_segment_bytes,
            retry_interval: Duration::from_millis(config.retry_interval_ms),
            database_down: Default::default(),
        }
    }
}

impl From<&RetentionConfig> for RetentionPolicy {
    fn from(config: &RetentionConfig) -> Self {
        RetentionPolicy {
            metadata_days: config.metadata_days,
            content_days: config.content_days,
        }
    }
}

/// Applies retention every `config.interval_secs` (first run after one
/// interval, so a restart loop cannot hammer the database). Returns `None`
/// when the interval is 0. Several replicas may run it: dropping a partition
/// or deleting rows twice is harmless.
pub fn spawn_retention(
    store: Store,
    config: &RetentionConfig,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.interval_secs == 0 || (config.metadata_days == 0 && config.content_days == 0) {
        return None;
    }
    let policy = RetentionPolicy::from(config);
    let interval = Duration::from_secs(config.interval_secs);
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            match store.apply_retention(policy, chrono::Utc::now()).await {
                Ok(report) => tracing::info!(?report, "retention applied"),
                Err(err) => tracing::warn!(%err, "retention failed; will retry next interval"),
            }
        }
    }))
}
