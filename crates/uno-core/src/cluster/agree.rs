//! A second, feedback-aware pass over a query clustering: neighbouring
//! clusters whose users asked for the same thing become one.
//!
//! Why? Average linkage of the users' words finds topics where the words
//! carry the topic ("banana bread", "roast chicken"), but a task that
//! spans subjects ("what is inflation?", "what is photosynthesis?", with
//! every asker wanting a detailed answer) falls into several small
//! clusters, each with too few users for its rule to be served. Letting
//! the rules decide the clusters outright is what let a few users carve a
//! topic out for themselves (issue 23), so here they only *join* groups
//! that are already close in what was asked: two clusters merge when their
//! queries' mean cosine distance is below a looser cut and the mean
//! vectors of their members' feedback rules point the same way. A merge
//! can only add users to a group, never split one, so the community's
//! share test still sees everyone.

use super::check_matrix;
use super::error::ClusterError;

/// Merges clusters of `labels` (`0..k`) greedily, closest first (average
/// linkage of the unit-normalised `queries`), while the two are within
/// `cut` (cosine distance) and the cosine similarity of their members'
/// mean unit `rules` vectors is at least `agree`. Members whose rules
/// vector is zero (no rule) do not count in the second mean. Returns the
/// new labels, numbered by first appearance, and their count.
///
/// # Errors
///
/// Malformed matrices, or a label count other than the row count.
pub fn merge_agreeing(
    labels: &[usize],
    queries: &[f32],
    rules: &[f32],
    dim: usize,
    cut: f64,
    agree: f64,
) -> Result<(Vec<usize>, usize), ClusterError> {
    let n = check_matrix(queries, dim)?;
    if check_matrix(rules, dim)? != n || labels.len() != n {
        return Err(ClusterError::Length {
            what: "labels or rules",
            got: labels.len(),
            expected: n,
        });
    }
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let mut q = vec![vec![0.0f64; dim]; k];
    let mut r = vec![vec![0.0f64; dim]; k];
    let mut size = vec![0.0f64; k];
    let mut rsize = vec![0.0f64; k];
    for (i, &l) in labels.iter().enumerate() {
        let add = |sum: &mut [f64], row: &[f32]| -> bool {
            let norm = row
                .iter()
                .map(|v| f64::from(*v).powi(2))
                .sum::<f64>()
                .sqrt();
            if norm > 0.0 {
                for (s, v) in sum.iter_mut().zip(row) {
                    *s += f64::from(*v) / norm;
                }
            }
            norm > 0.0
        };
        if add(&mut q[l], &queries[i * dim..(i + 1) * dim]) {
            size[l] += 1.0;
        }
        if add(&mut r[l], &rules[i * dim..(i + 1) * dim]) {
            rsize[l] += 1.0;
        }
    }
    // Group of each cluster (union by merging into the lower id).
    let mut group: Vec<usize> = (0..k).collect();
    let mut alive: Vec<bool> = size.iter().map(|s| *s > 0.0).collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let cosine = |a: &[f64], b: &[f64]| {
        let d = dot(a, a).sqrt() * dot(b, b).sqrt();
        if d > 0.0 { dot(a, b) / d } else { 0.0 }
    };
    loop {
        let mut best: Option<(usize, usize, f64)> = None;
        for a in 0..k {
            if !alive[a] {
                continue;
            }
            for b in a + 1..k {
                if !alive[b] || rsize[a] == 0.0 || rsize[b] == 0.0 {
                    continue;
                }
                // The mean pairwise cosine is the dot product of the two
                // mean vectors: of the sums, scaled by both sizes.
                let d = 1.0 - dot(&q[a], &q[b]) / (size[a].max(1.0) * size[b].max(1.0));
                if d < cut && cosine(&r[a], &r[b]) >= agree && best.is_none_or(|(_, _, x)| d < x) {
                    best = Some((a, b, d));
                }
            }
        }
        let Some((a, b, _)) = best else {
            break;
        };
        let (qb, rb) = (q[b].clone(), r[b].clone());
        q[a].iter_mut().zip(&qb).for_each(|(x, y)| *x += y);
        r[a].iter_mut().zip(&rb).for_each(|(x, y)| *x += y);
        size[a] += size[b];
        rsize[a] += rsize[b];
        alive[b] = false;
        for g in &mut group {
            if *g == b {
                *g = a;
            }
        }
    }
    let merged: Vec<usize> = labels.iter().map(|&l| group[l]).collect();
    Ok(super::dendrogram::relabel_first_appearance(&merged))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn close_clusters_whose_feedback_agrees_merge_and_others_do_not() {
        // Queries: clusters 0 and 1 are near each other, 2 is far.
        // Rules: 0 and 1 agree (x), 2 agrees with them too but is far; 3
        // is near 0 but its rules disagree (y).
        let queries = [
            [1.0f32, 0.0, 0.0],
            [0.8, 0.6, 0.0],
            [0.0, 0.0, 1.0],
            [0.9, 0.0, 0.44],
        ];
        let rules = [
            [1.0f32, 0.0, 0.0],
            [0.95, 0.3, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
        ];
        let labels = [0, 1, 2, 3];
        let q: Vec<f32> = queries.iter().flatten().copied().collect();
        let r: Vec<f32> = rules.iter().flatten().copied().collect();
        let (out, k) = merge_agreeing(&labels, &q, &r, 3, 0.5, 0.9).unwrap();
        assert_eq!(k, 3);
        assert_eq!(out[0], out[1], "near and agreeing");
        assert_ne!(out[0], out[2], "agreeing but far");
        assert_ne!(out[0], out[3], "near but disagreeing");
        // A cut of 0 merges nothing.
        let (same, k) = merge_agreeing(&labels, &q, &r, 3, 0.0, 0.9).unwrap();
        assert_eq!((same, k), (vec![0, 1, 2, 3], 4));
        // A member without rules does not count against agreement.
        let mut r2 = r.clone();
        r2[3..6].fill(0.0);
        let (out, _) = merge_agreeing(&[0, 0, 1, 2], &q, &r2, 3, 0.9, 0.9).unwrap();
        assert_eq!(out[0], out[1]);
        assert!(merge_agreeing(&[0, 1], &q, &r, 3, 0.5, 0.9).is_err());
    }
}
