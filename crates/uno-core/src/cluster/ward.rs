//! Exact Ward clustering by the nearest-neighbour chain, with O(n) memory.
//!
//! Ward's distance between clusters A and B is
//! `d(A, B) = sqrt(2·|A|·|B|/(|A|+|B|)) · ‖c_A − c_B‖`, which depends only on
//! the two centroids and sizes. So instead of SciPy's condensed distance
//! matrix (O(n²) memory, updated by Lance–Williams), this keeps one `f64`
//! centroid and size per live cluster and recomputes distances on demand:
//! the Lance–Williams update for Ward is exactly the centroid-and-size
//! formula above, so both give the same tree up to rounding. Memory is
//! `n × dim` `f64`s; time is O(n² · dim) (the chain does about two
//! nearest-neighbour scans per merge, each over the live clusters).
//!
//! The nearest-neighbour chain is valid for Ward because Ward is *reducible*:
//! merging two reciprocal nearest neighbours never brings the result closer
//! to a third cluster than the nearer of its parts was. It yields the same
//! tree as greedy "merge the closest pair" agglomeration.
//!
//! Tie-breaking follows SciPy's `nn_chain` (which scikit-learn calls): scans
//! go over live clusters in index order and keep the first strict minimum,
//! the previous chain element is preferred when it ties, the merged cluster
//! takes the larger slot. With exactly representable inputs (as in the golden
//! fixtures) ties therefore resolve as in scikit-learn.

use super::check_matrix;
use super::dendrogram::{Clustering, Dendrogram};
use super::error::ClusterError;
use super::kmeans::sq_dist_f32;
use super::parallel::{resolve_threads, with_pool};
use super::projection::{Projection, widen};

/// Elements (live clusters × dim) per block of a parallel scan; smaller
/// scans stay on the calling thread, as waking the pool would cost more
/// than it saves.
const PARALLEL_SCAN_WORK: usize = 1 << 15;

/// Exact Ward clustering of `points` (row-major `n × dim`), cut at
/// `threshold` like `AgglomerativeClustering(n_clusters=None,
/// distance_threshold=threshold, linkage="ward")`: merges of height
/// `< threshold` are applied, so there are `#{heights ≥ threshold} + 1`
/// clusters.
///
/// O(n² · dim) time and O(n · dim) memory; uses every core. For more than a
/// few tens of thousands of points use [`ward_auto`](super::ward_auto).
///
/// # Errors
///
/// A malformed matrix (see [`ClusterError`]) or a NaN threshold.
pub fn ward(points: &[f32], dim: usize, threshold: f64) -> Result<Clustering, ClusterError> {
    if threshold.is_nan() {
        return Err(ClusterError::NanThreshold);
    }
    Ok(ward_tree(points, dim, 0)?.cut(threshold))
}

/// The full exact Ward tree of `points` (row-major `n × dim`), to cut at one
/// or several thresholds. `threads = 0` uses every core; the result does not
/// depend on the thread count.
///
/// The algorithm is SciPy's nearest-neighbour chain (valid for Ward, which
/// is reducible), with its tie-breaking, so the tree is scikit-learn's. Ward
/// distances depend only on cluster centroids and sizes, so they are
/// recomputed from `f64` centroids instead of kept in an n² matrix: memory
/// is O(n · dim). Each nearest-neighbour scan rules out most candidates
/// with cheap lower bounds (a principal-subspace projection, then an `f32`
/// distance with a rigorous rounding bound) and compares the rest in `f64`,
/// so results are exactly those of a plain `f64` scan.
///
/// # Errors
///
/// A malformed matrix (see [`ClusterError`]).
pub fn ward_tree(points: &[f32], dim: usize, threads: usize) -> Result<Dendrogram, ClusterError> {
    let n = check_matrix(points, dim)?;
    let centroids: Vec<f64> = points.iter().map(|&v| f64::from(v)).collect();
    Ok(nn_chain(centroids, vec![1.0; n], dim, threads))
}

/// The exact Ward tree of clusters given by their centroids (row-major
/// `n × dim`, `f64`) and weights (sizes): the tree Ward would build above
/// those clusters if each one had been formed from `weight` points with that
/// mean. Heights use the weighted formula
/// `sqrt(2·w_A·w_B/(w_A+w_B)) · ‖c_A − c_B‖`, so cutting this tree at `t`
/// is consistent with cutting the full tree at `t`.
///
/// # Errors
///
/// A malformed matrix, a weight count other than `n`, or a weight that is
/// not positive and finite.
pub fn ward_tree_weighted(
    centroids: &[f64],
    weights: &[f64],
    dim: usize,
    threads: usize,
) -> Result<Dendrogram, ClusterError> {
    let n = check_matrix(centroids, dim)?;
    if weights.len() != n {
        return Err(ClusterError::Length {
            what: "weights",
            got: weights.len(),
            expected: n,
        });
    }
    if let Some(index) = weights.iter().position(|w| !(w.is_finite() && *w > 0.0)) {
        return Err(ClusterError::BadWeight { index });
    }
    Ok(nn_chain(centroids.to_vec(), weights.to_vec(), dim, threads))
}

/// Live clusters: `f64` centroids, norms and sizes per slot, the sorted live
/// slot list, and two cheaper views of the centroids used to prune scans.
struct Clusters {
    dim: usize,
    centroids: Vec<f64>,
    /// `f32` copy of `centroids`; `None` for small dimensions, where it does
    /// not pay.
    mirror: Option<Vec<f32>>,
    /// The principal-subspace projection and the centroids' projections in
    /// `f32` (row-major `n × rank`; see [`super::projection`]); `None` when
    /// not worth it.
    proj: Option<(Projection, Vec<f32>)>,
    /// Euclidean norm of each centroid.
    norms: Vec<f64>,
    sizes: Vec<f64>,
    active: Vec<u32>,
}

/// Dimensions from which scans go through the `f32` mirror.
const FAST_SCAN_MIN_DIM: usize = 16;
/// Unit roundoff of `f32` (2⁻²⁴), rounded up a little.
const F32_UNIT: f64 = 1.0001 / 16_777_216.0;
/// Smallest positive subnormal `f32` (2⁻¹⁴⁹).
const F32_TINY: f64 = 1.401_298_464_324_817e-45;

impl Clusters {
    fn new(centroids: Vec<f64>, sizes: Vec<f64>, dim: usize, threads: usize) -> Self {
        let n = sizes.len();
        let norms = centroids
            .chunks_exact(dim)
            .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
            .collect();
        let mirror =
            (dim >= FAST_SCAN_MIN_DIM).then(|| centroids.iter().map(|&v| v as f32).collect());
        let proj = Projection::fit(&centroids, dim, threads).map(|p| {
            let all = p.project_all(&centroids, threads);
            (p, all.iter().map(|&v| v as f32).collect())
        });
        Clusters {
            dim,
            centroids,
            mirror,
            proj,
            norms,
            sizes,
            active: (0..n as u32).collect(),
        }
    }

    fn row(&self, i: u32) -> &[f64] {
        let s = i as usize * self.dim;
        &self.centroids[s..s + self.dim]
    }

    /// Squared Ward distance `2·nA·nB/(nA+nB) · ‖cA − cB‖²`, in `f64`.
    fn dist2(&self, a: u32, b: u32) -> f64 {
        let (na, nb) = (self.sizes[a as usize], self.sizes[b as usize]);
        ward_weight(na, nb) * sq_dist(self.row(a), self.row(b))
    }

    /// The nearest cluster to `x` among `candidates` that is strictly
    /// closer than `cap`: the least `(dist2, index)`, i.e. the first strict
    /// minimum in index order, skipping `x` itself; `(cap, u32::MAX)` when
    /// no candidate is closer than `cap`.
    ///
    /// The result is exactly that of computing [`Clusters::dist2`] for every
    /// candidate, but most candidates are ruled out by two cheaper lower
    /// bounds first:
    ///
    /// 1. the distance between low-dimensional projections (see
    ///    [`super::projection`]); when there is no `cap`, the scan is first
    ///    seeded with the candidate nearest in the projection so that the
    ///    bar is low from the start;
    /// 2. the distance computed in `f32` from the mirror (half the memory
    ///    traffic, twice the SIMD lanes), with a rigorous rounding bound.
    ///
    /// A candidate is computed in `f64` only when neither bound exceeds the
    /// best `f64` distance so far, so the `f64` comparisons, ties included,
    /// are exactly those of the plain scan.
    ///
    /// The `f32` distances (of the mirror, and of the projections) are
    /// turned into rigorous bounds by [`F32Bound`]; the projection's own
    /// rounding is covered by [`widen`].
    fn scan(&self, x: u32, candidates: &[u32], cap: f64) -> (f64, u32) {
        let d = self.dim;
        let xu = x as usize;
        let (cx, nx, norm_x) = (self.row(x), self.sizes[xu], self.norms[xu]);
        let mut best = (cap, u32::MAX);
        let proj = self.proj.as_ref().map(|(basis, p)| {
            let r = basis.rank;
            (r, p.as_slice(), &p[xu * r..(xu + 1) * r], F32Bound::new(r))
        });
        // Without a bar yet (the first scan of a chain), seed with the
        // candidate nearest in the projection; otherwise `cap` (the distance
        // to the previous chain element) is already a tight bar.
        if let Some((r, p, px, _)) = proj
            && cap == f64::INFINITY
        {
            let mut seed = (f64::INFINITY, u32::MAX);
            for &i in candidates {
                let iu = i as usize;
                if i != x {
                    let w = ward_weight(nx, self.sizes[iu]);
                    let v = w * f64::from(sq_dist_f32(px, &p[iu * r..(iu + 1) * r]));
                    if v < seed.0 {
                        seed = (v, i);
                    }
                }
            }
            if seed.1 != u32::MAX {
                let dd = self.dist2(x, seed.1);
                if dd < best.0 {
                    best = (dd, seed.1);
                }
            }
        }
        let seeded = best.1;
        let mirror = self
            .mirror
            .as_ref()
            .map(|m| (m.as_slice(), &m[xu * d..(xu + 1) * d], F32Bound::new(d)));
        for &i in candidates {
            if i == x || i == seeded {
                continue;
            }
            let iu = i as usize;
            let (w, norm_i) = (ward_weight(nx, self.sizes[iu]), self.norms[iu]);
            // Prune only when provably worse than the best `f64` distance,
            // strictly: an equal distance at a lower index would still win.
            // (`1 − 1e-9` covers the `f64` rounding of both sides.)
            if let Some((r, p, px, bound)) = proj {
                let s = f64::from(sq_dist_f32(px, &p[iu * r..(iu + 1) * r]));
                let lower = widen(bound.lower(s, norm_x, norm_i), norm_x, norm_i);
                if lower > 0.0 && w * lower * lower * (1.0 - 1e-9) > best.0 {
                    continue;
                }
            }
            if let Some((m, mx, bound)) = mirror {
                let s = f64::from(sq_dist_f32(mx, &m[iu * d..(iu + 1) * d]));
                let lower = bound.lower(s, norm_x, norm_i);
                if lower > 0.0 && w * lower * lower * (1.0 - 1e-9) > best.0 {
                    continue;
                }
            }
            let dd = w * sq_dist(cx, self.row(i));
            if dd < best.0 || (dd == best.0 && best.1 != u32::MAX && i < best.1) {
                best = (dd, i);
            }
        }
        best
    }

    /// Block `block` of `blocks` of a scan of all live clusters.
    fn scan_block(&self, x: u32, cap: f64, block: usize, blocks: usize) -> (f64, u32) {
        let m = self.active.len();
        let chunk = m.div_ceil(blocks.max(1));
        let lo = (block * chunk).min(m);
        let hi = ((block + 1) * chunk).min(m);
        self.scan(x, &self.active[lo..hi], cap)
    }

    /// Merges slot `x` into slot `y` (size-weighted mean), retiring `x`.
    fn merge(&mut self, x: u32, y: u32) {
        let (nx, ny) = (self.sizes[x as usize], self.sizes[y as usize]);
        let total = nx + ny;
        let (xs, ys) = (x as usize * self.dim, y as usize * self.dim);
        let mut norm2 = 0.0;
        for k in 0..self.dim {
            let v = (nx * self.centroids[xs + k] + ny * self.centroids[ys + k]) / total;
            self.centroids[ys + k] = v;
            norm2 += v * v;
        }
        if let Some(mirror) = &mut self.mirror {
            for k in 0..self.dim {
                mirror[ys + k] = self.centroids[ys + k] as f32;
            }
        }
        if let Some((basis, p)) = &mut self.proj {
            // Projected afresh (not averaged), so rounding never accumulates.
            let r = basis.rank;
            let mut fresh = vec![0.0f64; r];
            basis.project(&self.centroids[ys..ys + self.dim], &mut fresh);
            for (o, v) in p[y as usize * r..(y as usize + 1) * r]
                .iter_mut()
                .zip(&fresh)
            {
                *o = *v as f32;
            }
        }
        self.norms[y as usize] = norm2.sqrt();
        self.sizes[y as usize] = total;
        self.sizes[x as usize] = 0.0;
        if let Ok(pos) = self.active.binary_search(&x) {
            self.active.remove(pos);
        }
    }
}

/// A rigorous lower bound on `‖a − b‖` from `s`, the squared distance of
/// the `f32`-rounded vectors computed by `sq_dist_f32`, for vectors of one
/// dimension.
///
/// With `u = 2⁻²⁴`, rounding both vectors to `f32` and the subtraction
/// perturb the difference by at most `u(1+3u)(‖a‖ + ‖b‖ + ‖Δ̂‖)` in norm, and
/// summing `dim` squares (at most `dim/16 + 21` roundings per term, see
/// `sq_dist_f32`) has relative error at most `γ_L = Lu/(1−Lu)`, taking
/// `L = dim/8 + 32`; subnormal terms add an absolute `2⁻¹⁴⁹` per element.
/// Overflow makes the bound NaN or infinite, which callers treat as "no
/// information" (they prune only on `lower > 0` and a strict comparison).
#[derive(Debug, Clone, Copy)]
struct F32Bound {
    lo_scale: f64,
    hi_scale: f64,
    e_scale: f64,
    abs_s: f64,
    abs_e: f64,
}

impl F32Bound {
    fn new(dim: usize) -> Self {
        let l = (dim / 8 + 32) as f64 * F32_UNIT;
        let gamma = l / (1.0 - l);
        F32Bound {
            lo_scale: 1.0 / (1.0 + gamma),
            hi_scale: 1.0 / (1.0 - gamma),
            e_scale: F32_UNIT * (1.0 + 4.0 * F32_UNIT),
            abs_s: (dim + 16) as f64 * F32_TINY,
            abs_e: 2.0 * (dim as f64).sqrt() * F32_TINY,
        }
    }

    /// Lower bound on `‖a − b‖` given `s` and upper bounds on `‖a‖`, `‖b‖`;
    /// may be negative (no information).
    #[inline]
    fn lower(&self, s: f64, norm_a: f64, norm_b: f64) -> f64 {
        let err = self.e_scale * (norm_a + norm_b + (s * self.hi_scale + self.abs_s).sqrt());
        ((s - self.abs_s).max(0.0) * self.lo_scale).sqrt() - err - self.abs_e
    }
}

/// Ward's size factor `2·a·b/(a+b)`.
#[inline]
fn ward_weight(a: f64, b: f64) -> f64 {
    2.0 * a * b / (a + b)
}

/// Squared Euclidean distance with eight independent accumulators, which the
/// compiler turns into SIMD lanes.
#[inline]
pub(crate) fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    let (ac, at) = a.as_chunks::<8>();
    let (bc, bt) = b.as_chunks::<8>();
    let mut acc = [0.0f64; 8];
    for (x, y) in ac.iter().zip(bc) {
        for l in 0..8 {
            let t = x[l] - y[l];
            acc[l] += t * t;
        }
    }
    let mut tail = 0.0;
    for (x, y) in at.iter().zip(bt) {
        let t = x - y;
        tail += t * t;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// The least `(distance, index)` of per-block scan results, or
/// `(cap, MAX)`: the same as one sequential scan, in any block order.
fn least(results: impl IntoIterator<Item = (f64, u32)>, cap: f64) -> (f64, u32) {
    results.into_iter().fold((cap, u32::MAX), |best, r| {
        if r.1 != u32::MAX && (r.0 < best.0 || (r.0 == best.0 && r.1 < best.1)) {
            r
        } else {
            best
        }
    })
}

/// The nearest-neighbour-chain algorithm over `n = sizes.len()` initial
/// clusters, following SciPy's `nn_chain`.
fn nn_chain(centroids: Vec<f64>, sizes: Vec<f64>, dim: usize, threads: usize) -> Dendrogram {
    let threads = resolve_threads(threads);
    let clusters = Clusters::new(centroids, sizes, dim, threads);
    nn_chain_with(clusters, threads, PARALLEL_SCAN_WORK)
}

/// [`nn_chain`] on prepared clusters, with an explicit parallel-scan
/// cut-over (tests use 1 to exercise the parallel path on small inputs).
fn nn_chain_with(clusters: Clusters, threads: usize, par_work: usize) -> Dendrogram {
    let n = clusters.sizes.len();
    let dim = clusters.dim;
    let leaf_sizes = clusters.sizes.clone();
    let threads = threads.clamp(1, n.max(1));
    let work = |c: &Clusters, task: [u64; 2], block: usize, blocks: usize| {
        c.scan_block(task[0] as u32, f64::from_bits(task[1]), block, blocks)
    };
    let combine = |a: (f64, u32), b: (f64, u32)| least([a, b], f64::INFINITY);
    let (raw, _) = with_pool(threads, clusters, work, combine, |pool| {
        // The nearest live cluster to `x` strictly closer than `cap`.
        let nearest = |x: u32, cap: f64| -> (f64, u32) {
            let c = pool.read();
            let blocks = (c.active.len() * dim / par_work).min(4 * pool.threads());
            if pool.threads() > 1 && blocks > 1 {
                drop(c);
                least(pool.run([u64::from(x), cap.to_bits()], blocks), cap)
            } else {
                c.scan(x, &c.active, cap)
            }
        };
        let mut raw: Vec<(usize, usize, f64)> = Vec::with_capacity(n.saturating_sub(1));
        let mut chain: Vec<u32> = Vec::with_capacity(n);
        let mut in_chain = vec![false; n];
        for _ in 1..n {
            if chain.is_empty() {
                let first = pool.read().active[0];
                chain.push(first);
                in_chain[first as usize] = true;
            }
            let (x, y, d2) = loop {
                let len = chain.len();
                let x = chain[len - 1];
                // Prefer the previous chain element on ties (SciPy does the
                // same), which also rules out cycles.
                let prev = (len > 1).then(|| chain[len - 2]);
                let mut best =
                    prev.map_or((f64::INFINITY, u32::MAX), |p| (pool.read().dist2(x, p), p));
                let found = nearest(x, best.0);
                if found.1 != u32::MAX {
                    best = found;
                } else if best.1 == u32::MAX {
                    // Every distance overflowed to ∞: any partner will do.
                    let c = pool.read();
                    let other = c.active.iter().copied().find(|&i| i != x).unwrap_or(x);
                    best = (c.dist2(x, other), other);
                }
                let (d2, y) = best;
                if Some(y) == prev || in_chain[y as usize] {
                    // Reciprocal nearest neighbours. (`y` deeper in the chain
                    // can only come from rounding breaking reducibility;
                    // merging the pair still makes progress.)
                    break (x, y, d2);
                }
                chain.push(y);
                in_chain[y as usize] = true;
            };
            chain.retain(|&v| v != x && v != y);
            in_chain[x as usize] = false;
            in_chain[y as usize] = false;
            let (x, y) = (x.min(y), x.max(y));
            raw.push((x as usize, y as usize, d2.sqrt()));
            pool.write().merge(x, y);
        }
        raw
    });
    Dendrogram::from_slot_merges(n, &raw, &leaf_sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_points_height_is_their_distance() {
        let t = ward_tree(&[0.0, 0.0, 3.0, 4.0], 2, 1).unwrap();
        assert_eq!(t.heights(), vec![5.0]);
        assert_eq!(ward(&[0.0, 0.0, 3.0, 4.0], 2, 5.0).unwrap().n_clusters, 2);
        assert_eq!(ward(&[0.0, 0.0, 3.0, 4.0], 2, 5.01).unwrap().n_clusters, 1);
    }

    #[test]
    fn three_points_on_a_line() {
        // 0 and 1 merge at 1; then {0,1} (mean 0.5, size 2) with 10:
        // sqrt(2·2·1/3)·9.5.
        let t = ward_tree(&[0.0, 1.0, 10.0], 1, 1).unwrap();
        let h = t.heights();
        assert_eq!(h[0], 1.0);
        assert!((h[1] - (4.0f64 / 3.0).sqrt() * 9.5).abs() < 1e-12);
        assert_eq!(
            ward(&[0.0, 1.0, 10.0], 1, 2.0).unwrap().labels,
            vec![0, 0, 1]
        );
    }

    #[test]
    fn degenerate_inputs() {
        let c = ward(&[], 4, 1.0).unwrap();
        assert_eq!((c.labels.len(), c.n_clusters), (0, 0));
        let c = ward(&[1.0, 2.0], 2, 1.0).unwrap();
        assert_eq!((c.labels, c.n_clusters), (vec![0], 1));
        let c = ward(&[1.0; 12], 3, 0.0).unwrap();
        assert_eq!(c.heights, vec![0.0; 3]);
        assert_eq!(c.n_clusters, 4, "threshold 0: every height ≥ 0 is cut");
        assert_eq!(ward(&[1.0; 12], 3, 1e-9).unwrap().n_clusters, 1);
        assert_eq!(
            ward(&[1.0; 5], 2, 1.0),
            Err(ClusterError::Ragged { len: 5, dim: 2 })
        );
        assert_eq!(ward(&[1.0], 0, 1.0), Err(ClusterError::ZeroDim));
        assert_eq!(
            ward(&[1.0, f32::NAN], 1, 1.0),
            Err(ClusterError::NonFinite { index: 1 })
        );
        assert_eq!(ward(&[1.0], 1, f64::NAN), Err(ClusterError::NanThreshold));
        // Distances that overflow to ∞ still give a complete tree.
        let c = ward_tree_weighted(&[-1e300, 1e300, 0.0], &[1.0; 3], 1, 1).unwrap();
        assert_eq!(c.merges().len(), 2);
    }

    #[test]
    fn weighted_tree_matches_duplicated_points() {
        // Points with integer multiplicities: the tree over the expanded set
        // is zero-height merges of the duplicates, then the weighted tree.
        let base: [f32; 10] = [0.0, 0.0, 1.0, 0.5, 4.0, 4.0, 5.0, 3.0, -2.0, 7.0];
        let mult = [3usize, 1, 2, 4, 1];
        let mut expanded = Vec::new();
        for (i, &m) in mult.iter().enumerate() {
            for _ in 0..m {
                expanded.extend_from_slice(&base[2 * i..2 * i + 2]);
            }
        }
        let full = ward_tree(&expanded, 2, 1).unwrap().heights();
        let c64: Vec<f64> = base.iter().map(|&v| f64::from(v)).collect();
        let w: Vec<f64> = mult.iter().map(|&m| m as f64).collect();
        let weighted = ward_tree_weighted(&c64, &w, 2, 1).unwrap().heights();
        let zeros = mult.iter().map(|m| m - 1).sum::<usize>();
        assert!(full[..zeros].iter().all(|&h| h == 0.0));
        for (a, b) in full[zeros..].iter().zip(&weighted) {
            assert!((a - b).abs() <= 1e-12 * b.max(1.0), "{a} vs {b}");
        }
        assert_eq!(
            ward_tree_weighted(&c64, &w[..2], 2, 1),
            Err(ClusterError::Length {
                what: "weights",
                got: 2,
                expected: 5
            })
        );
        assert_eq!(
            ward_tree_weighted(&c64[..2], &[0.0], 2, 1),
            Err(ClusterError::BadWeight { index: 0 })
        );
    }

    /// Random points with exact duplicates, near-duplicates, a wide range of
    /// scales, topic structure (so that projection pruning has work to do)
    /// and a common `offset` (large offsets stress the rounding bounds).
    fn awkward_points(n: usize, dim: usize, offset: f64, seed: u64) -> Vec<f64> {
        let mut g = super::super::rng::SplitMix64::new(seed);
        let centres: Vec<f64> = (0..8 * dim).map(|_| g.next_f64() * 4.0).collect();
        let mut pts: Vec<f64> = Vec::with_capacity(n * dim);
        for i in 0..n {
            if i % 7 == 3 || i % 11 == 5 {
                // A duplicate, or a near-duplicate one f32 ulp away.
                let j = g.below(i) * dim;
                let mut dup = pts[j..j + dim].to_vec();
                if i % 11 == 5 {
                    let k = g.below(dim);
                    dup[k] = f64::from(f32::from_bits((dup[k] as f32).to_bits() + 1));
                }
                pts.extend_from_slice(&dup);
            } else {
                let scale = [1e-3, 1.0, 1e3][i % 3];
                let c = g.below(8) * dim;
                pts.extend(
                    (0..dim).map(|k| {
                        f64::from((offset + centres[c + k] + g.next_f64() * scale) as f32)
                    }),
                );
            }
        }
        pts
    }

    #[test]
    fn pruned_and_parallel_scans_give_the_plain_tree() {
        let n = 250;
        for (dim, offset, seed) in [
            (16usize, 0.0, 1u64),
            (64, 0.0, 2),
            (100, 0.0, 3),
            (128, 1e4, 4),
        ] {
            let pts = awkward_points(n, dim, offset, seed);
            let plain = {
                let mut c = Clusters::new(pts.clone(), vec![1.0; n], dim, 1);
                (c.mirror, c.proj) = (None, None);
                nn_chain_with(c, 1, usize::MAX)
            };
            let pruned = Clusters::new(pts.clone(), vec![1.0; n], dim, 1);
            assert_eq!(pruned.mirror.is_some(), dim >= FAST_SCAN_MIN_DIM);
            assert!(pruned.proj.is_some() || dim < 64, "dim {dim}");
            assert_eq!(
                nn_chain_with(pruned, 1, usize::MAX),
                plain,
                "pruned, dim {dim}"
            );
            let parallel = Clusters::new(pts.clone(), vec![1.0; n], dim, 3);
            assert_eq!(nn_chain_with(parallel, 3, 1), plain, "3 threads, dim {dim}");
        }
    }

    #[test]
    fn weighted_trees_do_not_depend_on_pruning_or_threads() {
        let (n, dim) = (241, 96);
        let pts = awkward_points(n, dim, 3.0, 9);
        let mut g = super::super::rng::SplitMix64::new(5);
        let w: Vec<f64> = (0..n).map(|_| 1.0 + g.below(40) as f64).collect();
        let mut c = Clusters::new(pts.clone(), w.clone(), dim, 1);
        (c.mirror, c.proj) = (None, None);
        let plain = nn_chain_with(c, 1, usize::MAX);
        for threads in [1, 2, 3] {
            let tree = ward_tree_weighted(&pts, &w, dim, threads).unwrap();
            assert_eq!(tree, plain, "{threads} threads");
            let c = Clusters::new(pts.clone(), w.clone(), dim, threads);
            assert_eq!(
                nn_chain_with(c, threads, 1),
                plain,
                "{threads} threads, tiny blocks"
            );
        }
    }
}
