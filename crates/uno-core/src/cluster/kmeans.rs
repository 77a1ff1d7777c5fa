//! Nearest-centroid assignment and a small seeded k-means (k-means++ start,
//! Lloyd iterations), the building blocks of the micro-cluster
//! approximation.

use super::parallel::for_each_chunk;
use super::rng::SplitMix64;

/// Points per thread below which assignment stays on one thread.
const MIN_ROWS_PER_THREAD: usize = 256;

/// Dot product with sixteen independent accumulators (SIMD lanes, enough of
/// them to hide the add latency).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, at) = a.as_chunks::<16>();
    let (bc, bt) = b.as_chunks::<16>();
    let mut acc = [0.0f32; 16];
    for (x, y) in ac.iter().zip(bc) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = reduce16(&acc);
    for (x, y) in at.iter().zip(bt) {
        s += x * y;
    }
    s
}

/// Pairwise sum of sixteen lanes.
#[inline]
fn reduce16(acc: &[f32; 16]) -> f32 {
    let mut h = [0.0f32; 8];
    for l in 0..8 {
        h[l] = acc[l] + acc[l + 8];
    }
    ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]))
}

/// Dot products of `a` with four rows at once: each chunk of `a` is loaded
/// once for four multiply-adds, which roughly doubles throughput over four
/// separate [`dot`] calls.
#[inline]
fn dot4(a: &[f32], r0: &[f32], r1: &[f32], r2: &[f32], r3: &[f32]) -> [f32; 4] {
    let (ac, at) = a.as_chunks::<8>();
    let (c0, t0) = r0.as_chunks::<8>();
    let (c1, t1) = r1.as_chunks::<8>();
    let (c2, t2) = r2.as_chunks::<8>();
    let (c3, t3) = r3.as_chunks::<8>();
    let mut acc = [[0.0f32; 8]; 4];
    for ((((x, y0), y1), y2), y3) in ac.iter().zip(c0).zip(c1).zip(c2).zip(c3) {
        for l in 0..8 {
            acc[0][l] += x[l] * y0[l];
            acc[1][l] += x[l] * y1[l];
            acc[2][l] += x[l] * y2[l];
            acc[3][l] += x[l] * y3[l];
        }
    }
    let mut out = [0.0f32; 4];
    for (o, a) in out.iter_mut().zip(&acc) {
        *o = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    }
    for (i, x) in at.iter().enumerate() {
        out[0] += x * t0[i];
        out[1] += x * t1[i];
        out[2] += x * t2[i];
        out[3] += x * t3[i];
    }
    out
}

/// Squared Euclidean distance in `f32` with sixteen accumulators. Each lane
/// sums `dim/16` squares, then four levels of pairwise sums and at most 15
/// tail terms follow: at most `dim/16 + 21` rounded operations per term,
/// which the exact-Ward scan's error bound relies on.
#[inline]
pub(crate) fn sq_dist_f32(a: &[f32], b: &[f32]) -> f32 {
    let (ac, at) = a.as_chunks::<16>();
    let (bc, bt) = b.as_chunks::<16>();
    let mut acc = [0.0f32; 16];
    for (x, y) in ac.iter().zip(bc) {
        for l in 0..16 {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
    }
    let mut s = reduce16(&acc);
    for (x, y) in at.iter().zip(bt) {
        let t = x - y;
        s += t * t;
    }
    s
}

/// A set of centroids prepared for assignment: rows and squared norms.
#[derive(Debug, Clone)]
pub(crate) struct Centroids {
    pub(crate) dim: usize,
    pub(crate) rows: Vec<f32>,
    norms: Vec<f32>,
}

impl Centroids {
    /// Wraps `rows` (row-major `k × dim`).
    pub(crate) fn new(rows: Vec<f32>, dim: usize) -> Self {
        let norms = rows.chunks_exact(dim).map(|r| dot(r, r)).collect();
        Centroids { dim, rows, norms }
    }

    /// Number of centroids.
    pub(crate) fn len(&self) -> usize {
        self.norms.len()
    }

    /// Index of the centroid nearest to `x` (squared Euclidean, computed as
    /// `‖c‖² − 2·x·c`), lowest index on ties; 0 when there are none.
    pub(crate) fn nearest(&self, x: &[f32]) -> u32 {
        let d = self.dim;
        let mut best = (f32::INFINITY, 0u32);
        let mut quads = self.rows.chunks_exact(4 * d);
        let mut j = 0usize;
        for q in &mut quads {
            let s = dot4(x, &q[..d], &q[d..2 * d], &q[2 * d..3 * d], &q[3 * d..]);
            for (t, &dp) in s.iter().enumerate() {
                let score = self.norms[j + t] - 2.0 * dp;
                if score < best.0 {
                    best = (score, (j + t) as u32);
                }
            }
            j += 4;
        }
        for r in quads.remainder().chunks_exact(d) {
            let score = self.norms[j] - 2.0 * dot(x, r);
            if score < best.0 {
                best = (score, j as u32);
            }
            j += 1;
        }
        best.1
    }

    /// [`Centroids::nearest`] for every row of `points`, over `threads`.
    pub(crate) fn assign(&self, points: &[f32], out: &mut [u32], threads: usize) {
        let d = self.dim;
        for_each_chunk(out, threads, MIN_ROWS_PER_THREAD, |first, chunk| {
            for (i, o) in chunk.iter_mut().enumerate() {
                let r = (first + i) * d;
                *o = self.nearest(&points[r..r + d]);
            }
        });
    }
}

/// k-means on `data` (row-major `m × dim`): k-means++ seeding from `rng`,
/// then up to `iters` Lloyd iterations (stopping early when no point moves).
/// Returns at most `k` centroids (fewer when `data` has fewer distinct
/// rows); empty clusters keep their previous centroid.
pub(crate) fn kmeans(
    data: &[f32],
    dim: usize,
    k: usize,
    iters: usize,
    rng: &mut SplitMix64,
    threads: usize,
) -> Centroids {
    let m = data.len() / dim;
    let seeds = kmeans_pp(data, dim, k.min(m), rng);
    let mut cents = Centroids::new(seeds, dim);
    if cents.len() == 0 {
        return cents;
    }
    let mut labels = vec![u32::MAX; m];
    let mut next = vec![0u32; m];
    for _ in 0..iters {
        cents.assign(data, &mut next, threads);
        if next == labels {
            break;
        }
        std::mem::swap(&mut labels, &mut next);
        let kk = cents.len();
        let mut sums = vec![0.0f64; kk * dim];
        let mut counts = vec![0usize; kk];
        for (row, &l) in data.chunks_exact(dim).zip(&labels) {
            let l = l as usize;
            counts[l] += 1;
            for (s, &v) in sums[l * dim..(l + 1) * dim].iter_mut().zip(row) {
                *s += f64::from(v);
            }
        }
        let mut rows = cents.rows;
        for (j, &c) in counts.iter().enumerate() {
            if c > 0 {
                let inv = 1.0 / c as f64;
                for (r, s) in rows[j * dim..(j + 1) * dim]
                    .iter_mut()
                    .zip(&sums[j * dim..(j + 1) * dim])
                {
                    *r = (s * inv) as f32;
                }
            }
        }
        cents = Centroids::new(rows, dim);
    }
    cents
}

/// k-means++ seeding (Arthur and Vassilvitskii 2007): each next seed is drawn
/// with probability proportional to its squared distance to the seeds so
/// far. Stops early when every row coincides with a seed.
fn kmeans_pp(data: &[f32], dim: usize, k: usize, rng: &mut SplitMix64) -> Vec<f32> {
    let m = data.len() / dim;
    if m == 0 || k == 0 {
        return Vec::new();
    }
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let first = rng.below(m);
    let mut seeds = row(first).to_vec();
    let mut d2: Vec<f64> = (0..m)
        .map(|i| f64::from(sq_dist_f32(row(i), row(first))))
        .collect();
    for _ in 1..k {
        let total: f64 = d2.iter().sum();
        if total <= 0.0 {
            break;
        }
        let target = rng.next_f64() * total;
        let mut acc = 0.0;
        let mut pick = m - 1;
        for (i, &v) in d2.iter().enumerate() {
            acc += v;
            if acc > target && v > 0.0 {
                pick = i;
                break;
            }
        }
        if d2[pick] <= 0.0 {
            // Rounding pushed the draw past the end onto a seeded row: take
            // the farthest row instead.
            pick = d2
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
        }
        let seed = row(pick);
        seeds.extend_from_slice(seed);
        for (i, d) in d2.iter_mut().enumerate() {
            let nd = f64::from(sq_dist_f32(row(i), seed));
            if nd < *d {
                *d = nd;
            }
        }
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_agree_with_naive() {
        let mut g = SplitMix64::new(1);
        for dim in [1usize, 7, 8, 9, 33, 384] {
            let v: Vec<f32> = (0..dim * 9).map(|_| g.next_f64() as f32 - 0.5).collect();
            let x = &v[..dim];
            let naive: Vec<f32> = (1..9)
                .map(|j| {
                    x.iter()
                        .zip(&v[j * dim..(j + 1) * dim])
                        .map(|(a, b)| a * b)
                        .sum()
                })
                .collect();
            let c = Centroids::new(v[dim..].to_vec(), dim);
            let d4 = dot4(
                x,
                &v[dim..2 * dim],
                &v[2 * dim..3 * dim],
                &v[3 * dim..4 * dim],
                &v[4 * dim..5 * dim],
            );
            for t in 0..4 {
                assert!((d4[t] - naive[t]).abs() < 1e-4);
                assert!((dot(x, &v[(t + 1) * dim..(t + 2) * dim]) - naive[t]).abs() < 1e-4);
            }
            let brute = (0..8)
                .min_by(|&a, &b| {
                    let da = sq_dist_f32(x, &v[(a + 1) * dim..(a + 2) * dim]);
                    let db = sq_dist_f32(x, &v[(b + 1) * dim..(b + 2) * dim]);
                    da.total_cmp(&db)
                })
                .unwrap();
            assert_eq!(c.nearest(x), brute as u32);
        }
    }

    #[test]
    fn kmeans_finds_separated_groups() {
        let mut g = SplitMix64::new(5);
        let mut data = Vec::new();
        for i in 0..300 {
            let c = (i % 3) as f32 * 10.0;
            data.push(c + g.next_f64() as f32);
            data.push(-c + g.next_f64() as f32);
        }
        let cents = kmeans(&data, 2, 3, 20, &mut SplitMix64::new(9), 2);
        let mut labels = vec![0u32; 300];
        cents.assign(&data, &mut labels, 2);
        for i in 3..300 {
            assert_eq!(labels[i], labels[i % 3]);
        }
        assert_ne!(labels[0], labels[1]);
        assert_ne!(labels[1], labels[2]);
        // Fewer distinct rows than k: fewer centroids.
        let few = kmeans(&[1.0, 1.0, 1.0, 2.0], 1, 3, 5, &mut SplitMix64::new(1), 1);
        assert_eq!(few.len(), 2);
    }
}
