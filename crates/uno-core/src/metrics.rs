//! Prometheus primitives: a lock-free histogram and a text-format writer.
//!
//! uno exports a few dozen series, so a metrics library would be more than
//! it needs: recording must be an atomic add on the request path, and the
//! exposition is a string built when `/metrics` is scraped. The types here
//! are shared by the server (requests, latencies) and the learning worker
//! (stage durations), which each own their instances, so tests that run
//! several apps in one process never see each other's counts.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds, in seconds, for the time uno itself adds to a request:
/// from 50 µs (routing, injection) to seconds (a reflective pass).
pub const ADDED_LATENCY_BOUNDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Bucket bounds, in seconds, for upstream latency and time to first token.
pub const UPSTREAM_LATENCY_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Bucket bounds, in seconds, for the worker's stages and rebuilds.
pub const WORKER_STAGE_BOUNDS: &[f64] = &[
    0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// A cumulative histogram of durations, recorded with atomic adds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending seconds).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let index = self.bounds.partition_point(|&bound| bound < seconds);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples; `labels` is either
    /// empty or `key="value",…` without braces.
    pub fn write_samples(&self, out: &mut Exposition, name: &str, labels: &str) {
        let mut cumulative = 0u64;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = match self.bounds.get(i) {
                Some(bound) => writeln!(
                    out.text,
                    "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
                ),
                None => writeln!(
                    out.text,
                    "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
                ),
            };
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        out.sample(&format!("{name}_sum"), labels, sum);
        out.sample(&format!("{name}_count"), labels, cumulative as f64);
    }
}

/// The kind of a metric family, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A Prometheus text-format (0.0.4) page under construction.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Self {
        Exposition {
            text: String::with_capacity(16 * 1024),
        }
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample line; `labels` is empty or `key="value",…` without braces
    /// (build values with [`label_value`]).
    pub fn sample(&mut self, name: &str, labels: &str, value: f64) {
        let _ = if labels.is_empty() {
            writeln!(self.text, "{name} {}", number(value))
        } else {
            writeln!(self.text, "{name}{{{labels}}} {}", number(value))
        };
    }

    /// The finished page.
    pub fn finish(self) -> String {
        self.text
    }
}

/// Escapes a label value: backslash, double quote and newline.
pub fn label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_with_inf_sum_and_count() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(2));
        assert_eq!(h.count(), 4);
        let mut page = Exposition::new();
        h.write_samples(&mut page, "x_seconds", "route=\"chat\"");
        let text = page.finish();
        assert!(
            text.contains("x_seconds_bucket{route=\"chat\",le=\"0.001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"chat\",le=\"0.01\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{route=\"chat\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_sum{route=\"chat\"} 2.006\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_count{route=\"chat\"} 4\n"),
            "{text}"
        );
    }

    #[test]
    fn a_value_on_a_bound_falls_in_that_bucket() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_millis(1));
        let mut page = Exposition::new();
        h.write_samples(&mut page, "y", "");
        assert!(page.finish().contains("y_bucket{le=\"0.001\"} 1\n"));
    }

    #[test]
    fn families_and_labels_are_escaped() {
        let mut page = Exposition::new();
        page.family("uno_x_total", Kind::Counter, "a \\ help\nline");
        page.sample(
            "uno_x_total",
            &format!("tenant=\"{}\"", label_value("a\"b\\c\nd")),
            3.0,
        );
        page.sample("uno_y", "", 0.25);
        let text = page.finish();
        assert_eq!(
            text,
            "# HELP uno_x_total a \\\\ help\\nline\n# TYPE uno_x_total counter\n\
             uno_x_total{tenant=\"a\\\"b\\\\c\\nd\"} 3\nuno_y 0.25\n"
        );
    }
}
