//! A low-dimensional orthonormal projection used to prune exact Ward's
//! nearest-neighbour scans.
//!
//! For any matrix `P` with orthonormal columns, `‖Pᵀ(a − b)‖ ≤ ‖a − b‖`: the
//! distance between two projected centroids is a lower bound on their true
//! distance. With `P` spanning the leading principal directions of the data,
//! clusters from different topics are already far apart in the projection,
//! so most candidates of a scan are ruled out at a fraction of the cost of a
//! full-dimensional distance. Only pruning uses the projection, never the
//! result, so its quality (and the randomness used to find it) affects speed
//! but not the tree.

use super::parallel::{for_each_chunk, for_each_row_chunk};
use super::rng::SplitMix64;

/// Minimum dimension for which projecting pays.
pub(crate) const PROJECTION_MIN_DIM: usize = 64;

/// `r` orthonormal directions in `dim`-space (row-major `r × dim`, i.e. `Pᵀ`).
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    pub(crate) rank: usize,
    dim: usize,
    basis: Vec<f64>,
}

impl Projection {
    /// The leading principal directions of `rows` (row-major `n × dim`),
    /// found by a randomized range finder with two power iterations
    /// (Halko, Martinsson and Tropp 2011). `None` when `dim` is too small to
    /// gain anything, or the data has no spread.
    pub(crate) fn fit(rows: &[f64], dim: usize, threads: usize) -> Option<Projection> {
        let n = rows.len() / dim;
        if dim < PROJECTION_MIN_DIM || n < 2 {
            return None;
        }
        let rank = (dim / 8).clamp(16, 128).min(n);
        let mut mean = vec![0.0f64; dim];
        for r in rows.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(r) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        // Start from a Gaussian sketch; Pᵀ rows are directions in dim-space.
        let mut g = SplitMix64::new(0x5052_4F4A);
        let mut basis: Vec<f64> = (0..rank * dim)
            .map(|_| {
                let (u, v) = (g.next_f64().max(f64::MIN_POSITIVE), g.next_f64());
                (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect();
        orthonormalize(&mut basis, dim);
        for _ in 0..2 {
            // Y = Xc·P (n × rank), then Pᵀ ← orth((Xcᵀ·Y)ᵀ).
            let mut y = vec![0.0f64; n * rank];
            for_each_row_chunk(&mut y, rank, threads, 64, |i, out| {
                let r = &rows[i * dim..(i + 1) * dim];
                for (o, b) in out.iter_mut().zip(basis.chunks_exact(dim)) {
                    *o = r
                        .iter()
                        .zip(&mean)
                        .zip(b)
                        .map(|((x, m), b)| (x - m) * b)
                        .sum();
                }
            });
            // Each thread owns some rows of the new basis and streams over
            // the data once for them.
            let mut next = vec![0.0f64; rank * dim];
            {
                let mut out: Vec<&mut [f64]> = next.chunks_mut(dim).collect();
                for_each_chunk(&mut out, threads, 1, |first, chunk| {
                    for (i, r) in rows.chunks_exact(dim).enumerate() {
                        let yi = &y[i * rank + first..i * rank + first + chunk.len()];
                        for (nb, &c) in chunk.iter_mut().zip(yi) {
                            for ((o, &x), &m) in nb.iter_mut().zip(r).zip(&mean) {
                                *o += c * (x - m);
                            }
                        }
                    }
                });
            }
            basis = next;
            if orthonormalize(&mut basis, dim) < rank {
                return None;
            }
        }
        Some(Projection { rank, dim, basis })
    }

    /// Writes `Pᵀ·row` into `out` (length `rank`).
    pub(crate) fn project(&self, row: &[f64], out: &mut [f64]) {
        for (o, b) in out.iter_mut().zip(self.basis.chunks_exact(self.dim)) {
            *o = row.iter().zip(b).map(|(x, b)| x * b).sum();
        }
    }

    /// Projects every row of `rows` (row-major `n × dim`) into `n × rank`.
    pub(crate) fn project_all(&self, rows: &[f64], threads: usize) -> Vec<f64> {
        let n = rows.len() / self.dim;
        let mut out = vec![0.0f64; n * self.rank];
        for_each_row_chunk(&mut out, self.rank, threads, 256, |r, o| {
            self.project(&rows[r * self.dim..(r + 1) * self.dim], o);
        });
        out
    }
}

/// Widens a lower bound on `‖Pᵀ(a − b)‖` (computed from the stored
/// projections) into one on `‖a − b‖`: the basis is orthonormal to about
/// 1e-15, so `‖Pᵀv‖ ≤ (1 + 1e-9)·‖v‖`, and each stored projection is
/// `Pᵀc` computed afresh in `f64`, off by a few ulps of `‖c‖` per dimension.
#[inline]
pub(crate) fn widen(lower: f64, norm_a: f64, norm_b: f64) -> f64 {
    lower * (1.0 - 1e-9) - 1e-10 * (norm_a + norm_b)
}

/// Modified Gram–Schmidt, twice, on the rows of `basis` (each `dim` long);
/// drops nothing but returns how many rows came out with full norm.
fn orthonormalize(basis: &mut [f64], dim: usize) -> usize {
    let rank = basis.len() / dim;
    let mut good = 0;
    for _ in 0..2 {
        good = 0;
        for i in 0..rank {
            let (done, rest) = basis.split_at_mut(i * dim);
            let row = &mut rest[..dim];
            for prev in done.chunks_exact(dim) {
                let c: f64 = row.iter().zip(prev).map(|(a, b)| a * b).sum();
                row.iter_mut().zip(prev).for_each(|(a, b)| *a -= c * b);
            }
            let norm = row.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm > 1e-300 {
                row.iter_mut().for_each(|a| *a /= norm);
                good += 1;
            } else {
                row.iter_mut().for_each(|a| *a = 0.0);
            }
        }
    }
    good
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ward::sq_dist;

    #[test]
    fn projection_is_orthonormal_and_a_lower_bound() {
        let mut g = SplitMix64::new(11);
        let (n, dim) = (301, 128);
        let rows: Vec<f64> = (0..n * dim)
            .map(|i| g.next_f64() * (1 + i % 5) as f64)
            .collect();
        let p = Projection::fit(&rows, dim, 2).unwrap();
        assert_eq!(p.rank, 16);
        assert_eq!(
            Projection::fit(&rows[..200 * 64], 64, 1).map(|p| p.rank),
            Some(16)
        );
        for i in 0..p.rank {
            for j in 0..p.rank {
                let d: f64 = (0..dim)
                    .map(|k| p.basis[i * dim + k] * p.basis[j * dim + k])
                    .sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((d - want).abs() < 1e-12);
            }
        }
        let proj = p.project_all(&rows, 3);
        let norm = |r: &[f64]| r.iter().map(|v| v * v).sum::<f64>().sqrt();
        for i in 0..20 {
            for j in 0..20 {
                let (a, b) = (&rows[i * dim..(i + 1) * dim], &rows[j * dim..(j + 1) * dim]);
                let (pa, pb) = (&proj[i * 16..(i + 1) * 16], &proj[j * 16..(j + 1) * 16]);
                let lower = widen(sq_dist(pa, pb).sqrt(), norm(a), norm(b));
                assert!(lower <= sq_dist(a, b).sqrt());
            }
        }
        // Any thread count gives the same, correct projections (row chunks
        // must not split rows: 301 rows × 16 does not divide evenly).
        let rows = &rows[..301 * 128 - 128 * 2 + 128];
        let p = Projection::fit(rows, 128, 3).unwrap();
        let one = p.project_all(rows, 1);
        for threads in [2, 3, 7] {
            assert_eq!(p.project_all(rows, threads), one);
            assert_eq!(Projection::fit(rows, 128, threads).unwrap().basis, p.basis);
        }
        let mut direct = vec![0.0; 16];
        p.project(&rows[128 * 200..128 * 201], &mut direct);
        assert_eq!(&one[16 * 200..16 * 201], &direct[..]);
        assert!(Projection::fit(&rows[..10 * 32], 32, 1).is_none());
        assert!(
            Projection::fit(&vec![1.0; 10 * 64], 64, 1).is_none(),
            "no spread"
        );
    }
}
