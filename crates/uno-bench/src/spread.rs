//! How far a per-round ratio can be trusted.
//!
//! On a shared virtual machine the CPU's speed drifts by tens of percent
//! from one second to the next (other tenants' load), so one round's
//! uno+pg/uno ratio can read anywhere from 0.7 to 1.3 even when logging
//! costs a steady few percent. Many short rounds, each measuring the two
//! back to back, average that out; this summary says how well they did:
//! the median round, and the geometric mean ratio with its 95% confidence
//! interval (Student's t over the rounds' logarithms), so a reader can tell
//! a figure that clears a target from one that only happened to.
//!
//! Geometric, because a ratio's noise is multiplicative: a round at 0.7x
//! and one at 1.3x do not cancel, and the arithmetic mean of such rounds
//! reads high (by half their variance: 0.986x where the rounds' summed
//! rates gave 0.970x and the geometric mean 0.972x, in one 120-round run).

/// The per-round ratios of one comparison, summarised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioSpread {
    /// How many rounds were compared.
    pub rounds: usize,
    /// The lowest round.
    pub min: f64,
    /// The highest round.
    pub max: f64,
    /// The middle round (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The geometric mean of the rounds.
    pub geomean: f64,
    /// The 95% confidence interval of the geometric mean; `None` with one
    /// round.
    pub ci95: Option<(f64, f64)>,
}

impl RatioSpread {
    /// The summary of `ratios` (one per round); `None` when there are none
    /// or one is not a finite positive number.
    pub fn of(ratios: &[f64]) -> Option<RatioSpread> {
        if ratios.is_empty() || ratios.iter().any(|r| !r.is_finite() || *r <= 0.0) {
            return None;
        }
        let mut sorted = ratios.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let logs: Vec<f64> = sorted.iter().map(|r| r.ln()).collect();
        let mean_log = logs.iter().sum::<f64>() / n as f64;
        let ci95 = (n > 1).then(|| {
            let variance =
                logs.iter().map(|l| (l - mean_log).powi(2)).sum::<f64>() / (n - 1) as f64;
            let half = t_975(n - 1) * (variance / n as f64).sqrt();
            ((mean_log - half).exp(), (mean_log + half).exp())
        });
        Some(RatioSpread {
            rounds: n,
            min: sorted[0],
            max: sorted[n - 1],
            median,
            geomean: mean_log.exp(),
            ci95,
        })
    }

    /// One line for the report, e.g. `12 rounds: median 0.931x, geometric
    /// mean 0.928x (95% CI 0.910-0.946x), range 0.850-1.010x`.
    pub fn line(&self) -> String {
        let ci = self.ci95.map_or_else(String::new, |(low, high)| {
            format!(" (95% CI {low:.3}-{high:.3}x)")
        });
        let rounds = if self.rounds == 1 { "round" } else { "rounds" };
        format!(
            "{} {rounds}: median {:.3}x, geometric mean {:.3}x{ci}, range {:.3}-{:.3}x",
            self.rounds, self.median, self.geomean, self.min, self.max
        )
    }

    /// The summary as JSON.
    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "rounds": self.rounds,
            "min": self.min,
            "max": self.max,
            "median": self.median,
            "geomean": self.geomean,
            "ci95": self.ci95.map(|(low, high)| [low, high]),
        })
    }
}

/// The 97.5th percentile of Student's t with `df` degrees of freedom (the
/// two-sided 95% critical value); from the usual table, 1.96 past 120.
fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => TABLE[df - 1],
        31..=40 => 2.021,
        41..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn summarises_rounds() {
        let s = RatioSpread::of(&[0.9, 1.1, 0.8, 1.0]).unwrap();
        assert_eq!(s.rounds, 4);
        assert!(close(s.min, 0.8) && close(s.max, 1.1));
        assert!(close(s.median, 0.95), "{}", s.median);
        // The fourth root of the product, below the arithmetic 0.95.
        let geomean = (0.9f64 * 1.1 * 0.8 * 1.0).powf(0.25);
        assert!(close(s.geomean, geomean), "{}", s.geomean);
        // Over the logarithms: sd of ln r, half width = 3.182 * sd / 2.
        let logs = [0.9f64, 1.1, 0.8, 1.0].map(f64::ln);
        let mean_log = logs.iter().sum::<f64>() / 4.0;
        let sd = (logs.iter().map(|l| (l - mean_log).powi(2)).sum::<f64>() / 3.0).sqrt();
        let half = 3.182 * sd / 2.0;
        let (low, high) = s.ci95.unwrap();
        assert!(
            close(low, (mean_log - half).exp()) && close(high, (mean_log + half).exp()),
            "{low} {high}"
        );
        assert!(
            close(low * high, geomean * geomean),
            "symmetric in log space"
        );
        assert_eq!(
            s.line(),
            format!(
                "4 rounds: median 0.950x, geometric mean {geomean:.3}x (95% CI {:.3}-{:.3}x), range 0.800-1.100x",
                (mean_log - half).exp(),
                (mean_log + half).exp()
            )
        );
        assert_eq!(s.to_json()["rounds"], 4);
        assert!(close(s.to_json()["geomean"].as_f64().unwrap(), geomean));
    }

    #[test]
    fn a_round_and_its_inverse_cancel() {
        // Noise that halves one round and doubles the next is no cost.
        let s = RatioSpread::of(&[0.5, 2.0]).unwrap();
        assert!(close(s.geomean, 1.0), "{}", s.geomean);
    }

    #[test]
    fn odd_count_takes_the_middle_round() {
        let s = RatioSpread::of(&[1.3, 0.7, 0.92]).unwrap();
        assert!(close(s.median, 0.92));
    }

    #[test]
    fn more_rounds_narrow_the_interval() {
        let few = RatioSpread::of(&[0.8, 1.0, 0.9, 1.0, 0.8]).unwrap();
        let many: Vec<f64> = (0..8).flat_map(|_| [0.8, 1.0, 0.9, 1.0, 0.8]).collect();
        let many = RatioSpread::of(&many).unwrap();
        let width = |s: RatioSpread| s.ci95.map(|(l, h)| h - l).unwrap();
        assert!(width(many) < width(few) / 2.0);
    }

    #[test]
    fn one_round_has_no_interval_and_none_has_no_summary() {
        let one = RatioSpread::of(&[0.93]).unwrap();
        assert_eq!(one.ci95, None);
        assert!(
            one.line()
                .starts_with("1 round: median 0.930x, geometric mean 0.930x, range")
        );
        assert_eq!(RatioSpread::of(&[]), None);
        assert_eq!(RatioSpread::of(&[0.9, f64::NAN]), None);
        assert_eq!(
            RatioSpread::of(&[0.9, 0.0]),
            None,
            "a round with nothing served"
        );
    }
}
