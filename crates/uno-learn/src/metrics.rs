//! The worker's own metrics: how long each stage takes and how it ends.
//!
//! A worker always records (an atomic add per stage), whether or not
//! anything exports it; `uno serve` with `learn.in_serve` hands its worker
//! the instance `/metrics` renders, and `uno worker --metrics-listen`
//! serves its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use uno_core::metrics::{Exposition, Histogram, Kind, WORKER_STAGE_BOUNDS};

/// A step of the worker that is timed and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Rule extraction from feedback (R_f, R_0).
    Distil,
    /// Query and rule embeddings.
    Embed,
    /// Novelty scoring against the model's own knowledge.
    Novelty,
    /// A tenant's re-clustering, validation and publish.
    Rebuild,
}

impl Stage {
    const ALL: [Stage; 4] = [Stage::Distil, Stage::Embed, Stage::Novelty, Stage::Rebuild];

    fn as_str(self) -> &'static str {
        match self {
            Stage::Distil => "distil",
            Stage::Embed => "embed",
            Stage::Novelty => "novelty",
            Stage::Rebuild => "rebuild",
        }
    }
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Output stored (for a rebuild: a snapshot published).
    Ok,
    /// A rebuild that found nothing to change.
    Unchanged,
    /// Failed; a log stage is retried up to the attempt limit.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Unchanged, Outcome::Error];

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unchanged => "unchanged",
            Outcome::Error => "error",
        }
    }
}

/// Stage durations and outcome counts.
#[derive(Debug)]
pub struct WorkerMetrics {
    durations: [Histogram; 4],
    outcomes: [[AtomicU64; 3]; 4],
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics {
            durations: Stage::ALL.map(|_| Histogram::new(WORKER_STAGE_BOUNDS)),
            outcomes: Default::default(),
        }
    }
}

impl WorkerMetrics {
    /// Records one finished stage.
    pub fn record(&self, stage: Stage, outcome: Outcome, took: Duration) {
        self.durations[stage as usize].observe(took);
        self.outcomes[stage as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many times `stage` ended with `outcome`.
    pub fn outcomes(&self, stage: Stage, outcome: Outcome) -> u64 {
        self.outcomes[stage as usize][outcome as usize].load(Ordering::Relaxed)
    }

    /// Appends the worker's families to a metrics page.
    pub fn write(&self, page: &mut Exposition) {
        page.family(
            "uno_worker_stage_duration_seconds",
            Kind::Histogram,
            "Time the learning worker spent per stage (per log; per tenant for rebuild).",
        );
        for stage in Stage::ALL {
            self.durations[stage as usize].write_samples(
                page,
                "uno_worker_stage_duration_seconds",
                &format!("stage=\"{}\"", stage.as_str()),
            );
        }
        page.family(
            "uno_worker_stage_outcomes_total",
            Kind::Counter,
            "Learning worker stages by how they ended (ok, unchanged, error).",
        );
        for stage in Stage::ALL {
            for outcome in Outcome::ALL {
                page.sample(
                    "uno_worker_stage_outcomes_total",
                    &format!(
                        "stage=\"{}\",outcome=\"{}\"",
                        stage.as_str(),
                        outcome.as_str()
                    ),
                    self.outcomes(stage, outcome) as f64,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_land_in_their_stage_and_outcome() {
        let m = WorkerMetrics::default();
        m.record(Stage::Distil, Outcome::Ok, Duration::from_millis(20));
        m.record(Stage::Distil, Outcome::Error, Duration::from_millis(5));
        m.record(Stage::Rebuild, Outcome::Unchanged, Duration::from_secs(2));
        assert_eq!(m.outcomes(Stage::Distil, Outcome::Ok), 1);
        assert_eq!(m.outcomes(Stage::Distil, Outcome::Error), 1);
        assert_eq!(m.outcomes(Stage::Embed, Outcome::Ok), 0);
        let mut page = Exposition::new();
        m.write(&mut page);
        let text = page.finish();
        assert!(text.contains(
            "uno_worker_stage_outcomes_total{stage=\"rebuild\",outcome=\"unchanged\"} 1\n"
        ));
        assert!(text.contains("uno_worker_stage_duration_seconds_count{stage=\"distil\"} 2\n"));
        assert!(text.contains("uno_worker_stage_duration_seconds_count{stage=\"novelty\"} 0\n"));
    }
}
