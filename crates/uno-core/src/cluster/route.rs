//! Routing a query to a cluster: centroids, nearest centroid, the
//! unseen-distance thresholds and the online running-mean update (design
//! §2.5 "Routing centroids", §2.9 and §6.1).

use super::check_matrix;
use super::error::ClusterError;
use super::kmeans::sq_dist_f32;

/// The centroid nearest to `query` and its Euclidean distance: UNO's routing
/// step (arg-min over `centroids`, row-major `k × dim`; lowest index on ties,
/// like NumPy's `argmin`).
///
/// Runs on the request path: no allocation, one pass over the centroids.
/// `None` when there are no centroids, when `dim` is 0, when `query` is not
/// `dim` long or `centroids` is not a whole number of rows, or when every
/// distance is NaN (a NaN in the query).
pub fn nearest(centroids: &[f32], dim: usize, query: &[f32]) -> Option<(usize, f32)> {
    if dim == 0 || query.len() != dim || !centroids.len().is_multiple_of(dim) {
        return None;
    }
    let mut best: Option<(usize, f32)> = None;
    for (i, c) in centroids.chunks_exact(dim).enumerate() {
        let d = sq_dist_f32(query, c);
        if best.is_none_or(|(_, b)| d < b) && !d.is_nan() {
            best = Some((i, d));
        }
    }
    best.map(|(i, d)| (i, d.sqrt()))
}

/// The mean of each cluster's rows (row-major `k × dim`, `f64`
/// accumulation, not re-normalised: UNO routes with the plain mean of the
/// members' query-only unit embeddings). A cluster without members gets a
/// zero row.
///
/// # Errors
///
/// A malformed matrix, a label count other than the row count, or a label
/// `≥ k`.
pub fn centroids(
    points: &[f32],
    dim: usize,
    labels: &[usize],
    k: usize,
) -> Result<Vec<f32>, ClusterError> {
    let n = check_rows_and_labels(points, dim, labels, k)?;
    let mut sums = vec![0.0f64; k * dim];
    let mut counts = vec![0usize; k];
    for (row, &l) in points.chunks_exact(dim).zip(&labels[..n]) {
        counts[l] += 1;
        for (s, &v) in sums[l * dim..(l + 1) * dim].iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    let mut out = vec![0.0f32; k * dim];
    for (j, &c) in counts.iter().enumerate() {
        if c > 0 {
            let inv = 1.0 / c as f64;
            for (o, s) in out[j * dim..(j + 1) * dim]
                .iter_mut()
                .zip(&sums[j * dim..(j + 1) * dim])
            {
                *o = (s * inv) as f32;
            }
        }
    }
    Ok(out)
}

/// Per-cluster unseen-distance thresholds: for each cluster, the `quantile`
/// (0.95 in the design) of its members' Euclidean distances to its centroid,
/// with NumPy's default linear interpolation. A query farther than its
/// nearest cluster's threshold is "unseen" and passed through (design §6.1,
/// an addition to the paper). Distances are computed exactly as [`nearest`]
/// computes them. A cluster without members gets 0 (nothing is inside it).
///
/// # Errors
///
/// A malformed matrix, a label count other than the row count, a label at
/// or beyond the centroid count, a centroid matrix of another width, or a
/// quantile outside `[0, 1]`.
pub fn unseen_thresholds(
    points: &[f32],
    dim: usize,
    labels: &[usize],
    centroids: &[f32],
    quantile: f64,
) -> Result<Vec<f32>, ClusterError> {
    if !(0.0..=1.0).contains(&quantile) {
        return Err(ClusterError::BadQuantile(quantile));
    }
    let k = check_matrix(centroids, dim)?;
    check_rows_and_labels(points, dim, labels, k)?;
    let mut dists: Vec<Vec<f32>> = vec![Vec::new(); k];
    for (row, &l) in points.chunks_exact(dim).zip(labels) {
        dists[l].push(sq_dist_f32(row, &centroids[l * dim..(l + 1) * dim]).sqrt());
    }
    Ok(dists
        .into_iter()
        .map(|mut d| linear_quantile(&mut d, quantile))
        .collect())
}

/// NumPy's default (linear) quantile of `values` (sorted in place); 0 for
/// no values. Shared by the unseen thresholds and their calibration.
pub fn linear_quantile(values: &mut [f32], q: f64) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable_by(f32::total_cmp);
    let pos = q * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (f64::from(values[lo]), f64::from(values[hi]));
    (a + (b - a) * (pos - lo as f64)) as f32
}

/// The online update of design §2.5 (`add`): folds `vector` into a
/// cluster's running-mean `centroid`, `c ← (c·n + v)/(n+1)`, and increments
/// `count`.
///
/// # Errors
///
/// [`ClusterError::Length`] when `vector` and `centroid` differ in length
/// (nothing is changed then).
pub fn add_to_centroid(
    centroid: &mut [f32],
    count: &mut u64,
    vector: &[f32],
) -> Result<(), ClusterError> {
    if vector.len() != centroid.len() {
        return Err(ClusterError::Length {
            what: "vector",
            got: vector.len(),
            expected: centroid.len(),
        });
    }
    let n = *count as f64;
    for (c, &v) in centroid.iter_mut().zip(vector) {
        *c = ((f64::from(*c) * n + f64::from(v)) / (n + 1.0)) as f32;
    }
    *count += 1;
    Ok(())
}

/// Validates `points` and that `labels` has one entry per row, each `< k`;
/// returns the row count.
fn check_rows_and_labels(
    points: &[f32],
    dim: usize,
    labels: &[usize],
    k: usize,
) -> Result<usize, ClusterError> {
    let n = check_matrix(points, dim)?;
    if labels.len() != n {
        return Err(ClusterError::Length {
            what: "labels",
            got: labels.len(),
            expected: n,
        });
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= k) {
        return Err(ClusterError::LabelOutOfRange {
            index,
            label,
            clusters: k,
        });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_picks_the_closest_first() {
        let c = [0.0, 0.0, 3.0, 4.0, 3.0, 4.0];
        assert_eq!(nearest(&c, 2, &[3.0, 4.5]), Some((1, 0.5)));
        assert_eq!(nearest(&c, 2, &[0.0, 0.0]), Some((0, 0.0)));
        assert_eq!(nearest(&[], 2, &[0.0, 0.0]), None);
        assert_eq!(nearest(&c, 4, &[0.0; 4]), None);
        assert_eq!(nearest(&c, 2, &[0.0]), None);
        assert_eq!(nearest(&c, 0, &[]), None);
        assert_eq!(nearest(&c, 2, &[f32::NAN, 0.0]), None);
    }

    #[test]
    fn centroids_and_thresholds() {
        // Cluster 0: 1-d points 0..=100 around mean 50; cluster 1: one point.
        let mut pts: Vec<f32> = (0..=100).map(|v| v as f32).collect();
        pts.push(1000.0);
        let mut labels = vec![0usize; 101];
        labels.push(1);
        let c = centroids(&pts, 1, &labels, 3).unwrap();
        assert_eq!(c, vec![50.0, 1000.0, 0.0]);
        let t = unseen_thresholds(&pts, 1, &labels, &c, 0.95).unwrap();
        // Distances |v − 50|: 0, 1, 1, 2, 2, …, 50, 50 (101 values); NumPy's
        // np.percentile(d, 95) = 48.0.
        assert_eq!(t, vec![48.0, 0.0, 0.0]);
        assert!(unseen_thresholds(&pts, 1, &labels, &c, 1.5).is_err());
        assert!(matches!(
            centroids(&pts, 1, &labels, 1),
            Err(ClusterError::LabelOutOfRange {
                index: 101,
                label: 1,
                clusters: 1
            })
        ));
        assert!(centroids(&pts, 1, &labels[1..], 2).is_err());
    }

    #[test]
    fn running_mean() {
        let mut c = vec![1.0f32, 2.0];
        let mut n = 1;
        add_to_centroid(&mut c, &mut n, &[3.0, 4.0]).unwrap();
        assert_eq!((c.clone(), n), (vec![2.0, 3.0], 2));
        assert!(add_to_centroid(&mut c, &mut n, &[1.0]).is_err());
        assert_eq!(n, 2);
    }
}
