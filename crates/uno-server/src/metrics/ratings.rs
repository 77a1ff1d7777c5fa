//! Treated versus holdout feedback per cluster, as gauges.
//!
//! The figures come from the database (feedback arrives long after the
//! request), so a background task re-reads them every interval over the
//! lift window (`learn.lift_window_days`) and `/metrics` reports the last
//! reading; a scrape never waits on the database.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use uno_core::metrics::{Exposition, Kind, label_value};
use uno_store::Store;
use uno_store::lift::ClusterRatings;

/// The last reading, by tenant.
#[derive(Debug, Default)]
pub struct ClusterRatingGauges {
    reading: ArcSwap<Vec<(String, Vec<ClusterRatings>)>>,
}

impl ClusterRatingGauges {
    /// Re-reads every tenant with an active snapshot.
    pub async fn refresh(
        &self,
        store: &Store,
        window: Duration,
    ) -> Result<(), uno_store::StoreError> {
        let since = chrono::Utc::now().timestamp_micros()
            - i64::try_from(window.as_micros()).unwrap_or(i64::MAX / 2);
        let mut reading = Vec::new();
        for (tenant, _) in store.active_snapshot_versions().await? {
            let ratings = store.cluster_ratings(&tenant, since).await?;
            reading.push((tenant, ratings));
        }
        reading.sort_by(|a, b| a.0.cmp(&b.0));
        self.reading.store(Arc::new(reading));
        Ok(())
    }

    /// Appends `uno_cluster_feedback_rated` and `_down_rate`.
    pub fn write(&self, page: &mut Exposition) {
        let reading = self.reading.load();
        page.family(
            "uno_cluster_feedback_rated",
            Kind::Gauge,
            "Rated interactions per cluster and arm (treated: primary or reflective; holdout) over the lift window.",
        );
        for_each_arm(&reading, |labels, rated, _| {
            page.sample("uno_cluster_feedback_rated", labels, rated as f64);
        });
        page.family(
            "uno_cluster_feedback_down_rate",
            Kind::Gauge,
            "Share of rated interactions rated down, per cluster and arm, over the lift window.",
        );
        for_each_arm(&reading, |labels, rated, down| {
            if rated > 0 {
                page.sample(
                    "uno_cluster_feedback_down_rate",
                    labels,
                    down as f64 / rated as f64,
                );
            }
        });
    }
}

fn for_each_arm(reading: &[(String, Vec<ClusterRatings>)], mut emit: impl FnMut(&str, u64, u64)) {
    for (tenant, clusters) in reading {
        for c in clusters {
            let prefix = format!(
                "tenant=\"{}\",cluster=\"{}\"",
                label_value(tenant),
                label_value(&c.cluster_id)
            );
            emit(
                &format!("{prefix},arm=\"treated\""),
                c.treated_rated,
                c.treated_down,
            );
            emit(
                &format!("{prefix},arm=\"holdout\""),
                c.holdout_rated,
                c.holdout_down,
            );
        }
    }
}

/// Reads the ratings now, then every `interval`, until aborted. A failed
/// read keeps the previous figures and is logged.
pub fn spawn_rating_refresh(
    gauges: Arc<ClusterRatingGauges>,
    store: Store,
    window: Duration,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_secs(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = gauges.refresh(&store, window).await {
                tracing::warn!(%err, "cannot read per-cluster feedback for /metrics; keeping the last figures");
            }
        }
    })
}
