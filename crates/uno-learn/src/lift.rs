//! The holdout lift check: does a cluster's learned experience make its
//! users' answers worse?
//!
//! The proxy serves `learn.holdout_percent` of each treated cluster's
//! traffic untouched (path `holdout`), chosen by a hash of the interaction
//! id, so the holdout arm sees the same kind of queries, from the same
//! users, over the same time as the treated arm. Validation judged the
//! block offline against the feedback's own rules; this is the online
//! check, on what users actually rated.
//!
//! The test: with `n1` rated treated interactions of which `d1` were rated
//! down, and `n0`, `d0` for holdout, the down-rates are `p1 = d1/n1` and
//! `p0 = d0/n0`, the pooled rate `p = (d1 + d0)/(n1 + n0)`, and
//!
//! ```text
//! z = (p1 - p0) / sqrt(p (1 - p) (1/n1 + 1/n0))
//! ```
//!
//! the one-sided pooled two-proportion z-test of "treated is rated down
//! more often". The cluster goes back to passthrough when `z >=
//! learn.lift_z` (1.645: p < 0.05 under the normal approximation) and each
//! arm has at least `learn.lift_min_rated` (20) rated interactions, so a
//! handful of early ratings cannot switch a cluster off. One-sided on
//! purpose: a treatment that is merely not better is kept (validation
//! already found it helps on the feedback's own terms); only a measured
//! harm withdraws it.
//!
//! Once withdrawn, the cluster gets no treated or holdout traffic, but its
//! figures stay in the window, so each rebuild inside the window keeps it
//! passthrough; after the window the evidence has aged out and the
//! cluster's own decision (gap, validation) applies again, which retries
//! the treatment on fresh traffic.

use uno_core::config::LearnConfig;
use uno_core::snapshot::{ClusterExperience, Lift, Mode};
use uno_store::lift::ClusterRatings;

/// The lift figures of one cluster's ratings, with the z of treated being
/// rated down more often than holdout.
pub fn lift(r: &ClusterRatings) -> Lift {
    Lift {
        treated_rated: r.treated_rated,
        treated_down: r.treated_down.min(r.treated_rated),
        holdout_rated: r.holdout_rated,
        holdout_down: r.holdout_down.min(r.holdout_rated),
        z: z_score(
            r.treated_down,
            r.treated_rated,
            r.holdout_down,
            r.holdout_rated,
        ),
    }
}

/// The pooled two-proportion z of `down1/n1` over `down0/n0`: positive
/// when the first rate is higher. 0 when an arm has no ratings or the
/// pooled rate is 0 or 1 (no variance: the rates are equal).
pub fn z_score(down1: u64, n1: u64, down0: u64, n0: u64) -> f64 {
    if n1 == 0 || n0 == 0 {
        return 0.0;
    }
    let (d1, n1) = (down1.min(n1) as f64, n1 as f64);
    let (d0, n0) = (down0.min(n0) as f64, n0 as f64);
    let pooled = (d1 + d0) / (n1 + n0);
    let variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n0);
    if variance <= 0.0 {
        return 0.0;
    }
    (d1 / n1 - d0 / n0) / variance.sqrt()
}

/// Why the treatment must be withdrawn, when `lift` shows treated traffic
/// rated down significantly more often than holdout with enough ratings in
/// both arms; `None` otherwise.
pub fn harm(config: &LearnConfig, lift: &Lift) -> Option<String> {
    let enough =
        lift.treated_rated >= config.lift_min_rated && lift.holdout_rated >= config.lift_min_rated;
    if !enough || lift.z < config.lift_z {
        return None;
    }
    let pct = |down: u64, n: u64| 100.0 * down as f64 / n.max(1) as f64;
    Some(format!(
        "holdout lift: treated answers rated down {}/{} ({:.1}%) vs holdout {}/{} ({:.1}%), \
         z {:.2} >= {:.3} (one-sided, pooled)",
        lift.treated_down,
        lift.treated_rated,
        pct(lift.treated_down, lift.treated_rated),
        lift.holdout_down,
        lift.holdout_rated,
        pct(lift.holdout_down, lift.holdout_rated),
        lift.z,
        config.lift_z,
    ))
}

/// Records `ratings` on `cluster` and, when its treatment is measurably
/// harmful, turns it to passthrough, keeping the decision it replaces in
/// the reason. A cluster without ratings is left as built.
pub fn apply(config: &LearnConfig, cluster: &mut ClusterExperience, ratings: &ClusterRatings) {
    let lift = lift(ratings);
    cluster.lift = Some(lift);
    if cluster.mode == Mode::Passthrough {
        return;
    }
    if let Some(why) = harm(config, &lift) {
        cluster.decision = format!(
            "{why}: passthrough instead of {} ({})",
            cluster.mode.as_str(),
            cluster.decision
        );
        cluster.mode = Mode::Passthrough;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uno_core::snapshot::Gap;

    fn ratings(tr: u64, td: u64, hr: u64, hd: u64) -> ClusterRatings {
        ClusterRatings {
            cluster_id: "0".into(),
            treated_rated: tr,
            treated_down: td,
            holdout_rated: hr,
            holdout_down: hd,
        }
    }

    fn cluster(mode: Mode) -> ClusterExperience {
        ClusterExperience {
            id: "0".into(),
            size: 10,
            lang: "en".into(),
            centroid: vec![],
            unseen_threshold: 0.0,
            route_centroid: vec![],
            route_threshold: 0.0,
            mode,
            decision: "win rate 0.60".into(),
            gap: Gap::default(),
            high_gap: false,
            validation: None,
            block: "B".into(),
            rules: vec![],
            ..ClusterExperience::default()
        }
    }

    #[test]
    fn z_is_the_pooled_two_proportion_statistic() {
        // 20/40 vs 3/30: p = 23/70, se = sqrt(p(1-p)(1/40 + 1/30)).
        let p: f64 = 23.0 / 70.0;
        let expected = (0.5 - 0.1) / (p * (1.0 - p) * (1.0 / 40.0 + 1.0 / 30.0)).sqrt();
        assert!((z_score(20, 40, 3, 30) - expected).abs() < 1e-12);
        assert!((expected - 3.526).abs() < 0.001, "{expected}");
        assert!(z_score(3, 30, 20, 40) < 0.0, "treated better is negative");
        assert_eq!(z_score(0, 30, 0, 30), 0.0, "no variance");
        assert_eq!(z_score(30, 30, 30, 30), 0.0, "no variance");
        assert_eq!(z_score(5, 10, 0, 0), 0.0, "an empty arm");
    }

    #[test]
    fn a_significantly_worse_treatment_goes_back_to_passthrough() {
        let config = LearnConfig::default();
        for mode in [Mode::Primary, Mode::Reflective] {
            let mut c = cluster(mode);
            apply(&config, &mut c, &ratings(40, 20, 30, 3));
            assert_eq!(c.mode, Mode::Passthrough);
            assert!(
                c.decision.starts_with("holdout lift: treated answers rated down 20/40 (50.0%) vs holdout 3/30 (10.0%), z 3.53 >= 1.645"),
                "{}",
                c.decision
            );
            assert!(
                c.decision
                    .ends_with(&format!("instead of {} (win rate 0.60)", mode.as_str())),
                "{}",
                c.decision
            );
            let lift = c.lift.unwrap();
            assert_eq!(
                (
                    lift.treated_rated,
                    lift.treated_down,
                    lift.holdout_rated,
                    lift.holdout_down
                ),
                (40, 20, 30, 3)
            );
        }
    }

    #[test]
    fn no_harm_too_few_ratings_or_a_weak_signal_keeps_the_mode() {
        let config = LearnConfig::default();
        for (r, why) in [
            (ratings(40, 4, 30, 3), "equal rates"),
            (ratings(40, 2, 30, 12), "treated better"),
            (ratings(40, 20, 19, 0), "holdout below lift_min_rated"),
            (ratings(19, 15, 30, 3), "treated below lift_min_rated"),
            (ratings(40, 9, 40, 4), "z 1.52 below 1.645"),
        ] {
            let mut c = cluster(Mode::Primary);
            apply(&config, &mut c, &r);
            assert_eq!(c.mode, Mode::Primary, "{why}");
            assert_eq!(c.decision, "win rate 0.60", "{why}");
            assert!(c.lift.is_some(), "{why}: figures are kept");
        }
        // Just over the line with a laxer threshold.
        let lax = LearnConfig {
            lift_z: 1.5,
            ..LearnConfig::default()
        };
        let mut c = cluster(Mode::Primary);
        apply(&lax, &mut c, &ratings(40, 9, 40, 4));
        assert_eq!(c.mode, Mode::Passthrough);
    }

    #[test]
    fn a_passthrough_cluster_only_records_its_figures() {
        let mut c = cluster(Mode::Passthrough);
        apply(&LearnConfig::default(), &mut c, &ratings(40, 20, 30, 3));
        assert_eq!(c.mode, Mode::Passthrough);
        assert_eq!(c.decision, "win rate 0.60");
        assert!(c.lift.unwrap().z > 3.0);
    }
}
