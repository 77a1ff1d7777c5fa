//! Golden test: our exact Ward clustering against scikit-learn's
//! `AgglomerativeClustering(distance_threshold=t, linkage="ward")`.
//!
//! Fixtures come from `scripts/golden/ward_fixtures.py` (see its header to
//! regenerate). For every dataset and threshold, our partition must equal
//! scikit-learn's (as partitions: a label bijection, ARI = 1), with the same
//! cluster count, and our merge heights must match `distances_` (to 1e-9
//! relative; they agree to about 1e-15).

use std::collections::HashMap;

use serde::Deserialize;
use uno_core::cluster::{adjusted_rand_index, ward, ward_tree};

#[derive(Deserialize)]
struct Fixtures {
    versions: HashMap<String, String>,
    datasets: Vec<Dataset>,
}

#[derive(Deserialize)]
struct Dataset {
    name: String,
    n: usize,
    dim: usize,
    scale_log2: i32,
    points: Vec<i64>,
    heights: Vec<f64>,
    cuts: Vec<Cut>,
}

#[derive(Deserialize)]
struct Cut {
    threshold: f64,
    n_clusters: usize,
    labels: Vec<usize>,
}

fn load() -> Fixtures {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ward_golden.json"
    );
    let text =
        std::fs::read_to_string(path).expect("fixture file (run scripts/golden/ward_fixtures.py)");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn points(d: &Dataset) -> Vec<f32> {
    let scale = 2f64.powi(-d.scale_log2);
    let pts: Vec<f32> = d
        .points
        .iter()
        .map(|&q| (q as f64 * scale) as f32)
        .collect();
    assert_eq!(pts.len(), d.n * d.dim, "{}", d.name);
    // The quantised values are exact in f32, so both sides saw the same data.
    assert!(
        pts.iter()
            .zip(&d.points)
            .all(|(&p, &q)| f64::from(p) == q as f64 * scale)
    );
    pts
}

/// `true` when `a` and `b` are the same partition: a bijection maps labels.
fn same_partition(a: &[usize], b: &[usize]) -> bool {
    let mut ab = HashMap::new();
    let mut ba = HashMap::new();
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| *ab.entry(x).or_insert(y) == y && *ba.entry(y).or_insert(x) == x)
}

#[test]
fn partitions_and_heights_match_scikit_learn() {
    let fixtures = load();
    eprintln!("fixtures from {:?}", fixtures.versions);
    assert!(fixtures.datasets.len() >= 5);
    let mut cuts_checked = 0;
    for d in &fixtures.datasets {
        let pts = points(d);
        let tree = ward_tree(&pts, d.dim, 0).expect("valid input");
        let heights = tree.heights();
        assert_eq!(heights.len(), d.heights.len(), "{}", d.name);
        for (i, (&ours, &theirs)) in heights.iter().zip(&d.heights).enumerate() {
            // In practice they agree to ~1e-15 relative.
            let tol = 1e-9 * theirs.abs() + 1e-12;
            assert!(
                (ours - theirs).abs() <= tol,
                "{}: height {i}: ours {ours} vs scikit-learn {theirs}",
                d.name
            );
        }
        for cut in &d.cuts {
            let ours = tree.cut(cut.threshold);
            assert_eq!(
                ours.n_clusters, cut.n_clusters,
                "{} at {}",
                d.name, cut.threshold
            );
            assert!(
                same_partition(&ours.labels, &cut.labels),
                "{} at {}: partitions differ (ARI {})",
                d.name,
                cut.threshold,
                adjusted_rand_index(&ours.labels, &cut.labels).unwrap_or(f64::NAN)
            );
            assert_eq!(adjusted_rand_index(&ours.labels, &cut.labels), Ok(1.0));
            cuts_checked += 1;
        }
        // The one-call API agrees with cutting the tree (small sets only, to
        // keep the debug-mode run short).
        if d.n <= 100 {
            let t = d.cuts[d.cuts.len() / 2].threshold;
            assert_eq!(
                ward(&pts, d.dim, t).expect("valid input"),
                tree.cut(t),
                "{}",
                d.name
            );
        }
    }
    assert!(cuts_checked >= 25);
}
