//! The adjusted Rand index, to compare two partitions.

use std::collections::HashMap;

use super::error::ClusterError;

/// scikit-learn's `adjusted_rand_score(a, b)`: the Rand index (share of point
/// pairs on which the two partitions agree) corrected for chance, so that
/// 1.0 means identical partitions (whatever the label numbers) and about 0.0
/// means no better than random; it can be negative.
///
/// Labels are arbitrary ids. Follows scikit-learn exactly, including its
/// special case: 1.0 when no pair is split differently (also for 0 or 1
/// points). Exact integer pair counts (no overflow up to billions of
/// points), O(n) time with hashing.
///
/// # Errors
///
/// [`ClusterError::Length`] when `a` and `b` differ in length.
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> Result<f64, ClusterError> {
    if a.len() != b.len() {
        return Err(ClusterError::Length {
            what: "second labelling",
            got: b.len(),
            expected: a.len(),
        });
    }
    let n = a.len() as i128;
    let mut row: HashMap<usize, i128> = HashMap::new();
    let mut col: HashMap<usize, i128> = HashMap::new();
    let mut cell: HashMap<(usize, usize), i128> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *row.entry(x).or_default() += 1;
        *col.entry(y).or_default() += 1;
        *cell.entry((x, y)).or_default() += 1;
    }
    // scikit-learn's pair_confusion_matrix (ordered pairs).
    let sum_squares: i128 = cell.values().map(|c| c * c).sum();
    let mut c01 = -sum_squares;
    let mut c10 = -sum_squares;
    for (&(x, y), &c) in &cell {
        c01 += c * col[&y];
        c10 += c * row[&x];
    }
    let c11 = sum_squares - n;
    let c00 = n * n - c01 - c10 - sum_squares;
    let (tn, fp, fn_, tp) = (c00, c01, c10, c11);
    if fn_ == 0 && fp == 0 {
        return Ok(1.0);
    }
    let num = 2 * (tp * tn - fn_ * fp);
    let den = (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn);
    Ok(num as f64 / den as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sklearn_values() {
        // Values from sklearn.metrics.adjusted_rand_score.
        let ari = |a: &[usize], b: &[usize]| adjusted_rand_index(a, b).unwrap();
        assert_eq!(ari(&[0, 0, 1, 1], &[1, 1, 0, 0]), 1.0);
        assert_eq!(ari(&[], &[]), 1.0);
        assert_eq!(ari(&[3], &[7]), 1.0);
        assert!((ari(&[0, 0, 1, 2], &[0, 0, 1, 1]) - 0.5714285714285714).abs() < 1e-15);
        assert!((ari(&[0, 0, 0, 0], &[0, 1, 2, 3]) - 0.0).abs() < 1e-15);
        assert!((ari(&[0, 0, 1, 1], &[0, 1, 0, 1]) - -0.5).abs() < 1e-15);
        assert!(
            (ari(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]) - 0.24242424242424243).abs() < 1e-15
        );
        assert!(adjusted_rand_index(&[0], &[]).is_err());
    }
}
