//! Ward clustering for large inputs: exact Ward over micro-clusters (the
//! method and its error are documented on [`ward_auto`]).

use super::check_cut_input;
use super::dendrogram::{Clustering, relabel_first_appearance};
use super::error::ClusterError;
use super::kmeans::{Centroids, dot, kmeans};
use super::parallel::{for_each_chunk, map_dynamic, resolve_threads};
use super::rng::SplitMix64;
use super::ward::{ward_tree, ward_tree_weighted};

/// Sample rows per coarse centroid for training the coarse k-means.
const COARSE_SAMPLE_PER_CENTROID: usize = 128;
/// Sample rows per fine centroid for training a cell's k-means.
const FINE_SAMPLE_PER_CENTROID: usize = 32;
/// Lloyd iterations at the coarse level.
const COARSE_ITERS: usize = 12;
/// Lloyd iterations at the fine level.
const FINE_ITERS: usize = 6;

/// How [`ward_auto`] clusters.
#[derive(Debug, Clone, PartialEq)]
pub struct WardOptions {
    /// Up to this many points, run exact Ward: O(n² · dim) time and
    /// O(n · dim) memory. CPU time on the 2-core development machine (wall
    /// time is about half with both cores free): 10 000 × 384 about 6 s,
    /// 20 000 × 384 about 22 s; 10 000 × 2048 (the method's combined Qwen3
    /// vectors) about 18 s, 20 000 × 2048 about 55 s. Default 20 000.
    pub exact_max_points: usize,
    /// Target number of micro-clusters for the approximation. More is closer
    /// to exact; the cost is k-means training (∝ k^1.5) and the final exact
    /// Ward step (∝ k² · dim). Default 4096: 1M × 384 then takes about 19 s
    /// of CPU (10–18 s wall on two cores), and micro-clusters stay below
    /// the threshold 4 (see [`Approximation::max_internal_height`]).
    pub micro_clusters: usize,
    /// Seed for the micro-clustering samples and k-means++ draws.
    pub seed: u64,
    /// Worker threads; 0 means every available core.
    pub threads: usize,
}

impl Default for WardOptions {
    fn default() -> Self {
        WardOptions {
            exact_max_points: 20_000,
            micro_clusters: 4096,
            seed: 42,
            threads: 0,
        }
    }
}

/// What the micro-cluster approximation did, for diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct Approximation {
    /// Number of (non-empty) micro-clusters Ward ran on.
    pub micro_clusters: usize,
    /// Estimated bound on the height of any Ward merge among the points of
    /// one micro-cluster: `sqrt(2·λ)`, λ the largest eigenvalue over
    /// micro-clusters of their scatter matrices `Σ (x − c)(x − c)ᵀ`
    /// (estimated by a few power iterations, which approach λ from below).
    /// Well below the threshold means exact Ward would also merge each
    /// micro-cluster's points below the cut, so keeping them whole costs
    /// little; near or above it, micro-clusters are too coarse for the
    /// threshold and more of them would be closer to exact.
    pub max_internal_height: f64,
}

/// Ward clustering cut at `threshold`, exact for up to
/// `options.exact_max_points` points and approximated by micro-clusters
/// above that. Same conventions as [`ward`](super::ward()); for an
/// approximate result, [`Clustering::approximation`] is set and
/// [`Clustering::heights`] holds the micro-cluster tree's heights.
///
/// # Method
///
/// Exact Ward is O(n² · dim); at a million 384-d vectors that is days. Above
/// [`WardOptions::exact_max_points`] points this function instead:
///
/// 1. **Micro-clusters.** Partitions the points into about
///    [`WardOptions::micro_clusters`] small groups with a two-level k-means
///    tree: `√k` coarse centroids (k-means++ then Lloyd, on a seeded sample),
///    then, inside each coarse cell, fine centroids in proportion to the
///    cell's size (again k-means on a sample of the cell). Every point is
///    assigned to its nearest coarse centroid and then to the nearest fine
///    centroid of that cell, which costs `n · (√k + k/√k) · dim` instead of
///    `n · k · dim`. Assignment runs on all cores.
/// 2. **Exact weighted Ward** over the micro-clusters: exact `f64` means of
///    their members and sizes as weights. Ward's distance between two unions
///    of points depends only on their means and sizes, so every height in
///    this tree is the *exact* Ward height of the corresponding union of
///    points, and the threshold means what it means for exact Ward.
/// 3. **Cut** that tree at the threshold and give each point its
///    micro-cluster's label.
///
/// # Error
///
/// The result is exact Ward *constrained* to never split a micro-cluster. It
/// differs from unconstrained exact Ward in two ways:
///
/// - points of one micro-cluster always end up together, even where exact
///   Ward would separate them. [`Approximation::max_internal_height`] says
///   how much this can matter. Any Ward merge of two sets A, B of one
///   micro-cluster S has height `h` with `h²/2` = the between-group sum of
///   squares of A ∪ B along `c_A − c_B`, which is at most the scatter of A ∪ B
///   along that direction, hence at most λ, the largest eigenvalue of S's
///   scatter matrix: `h ≤ sqrt(2λ)`. When this is below the threshold for
///   every micro-cluster, exact Ward restricted to one micro-cluster's points
///   merges them all below the cut too;
/// - the greedy merge order below micro-cluster level is skipped, so the
///   clusters built from a handful of micro-clusters are not quite the ones
///   exact Ward builds, and their merge heights differ (by up to ~15 % in
///   the tests; the top merges of big clusters agree to ~1 %). A merge whose
///   height is that close to the threshold can land on the other side of
///   it, which splits or joins a whole cluster.
///
/// Measured adjusted Rand index against exact Ward:
///
/// - the benchmark's topic-like unit vectors (`cargo bench -p uno-core
///   --bench cluster`): 0.999–1.0 at 10 000 and 20 000 points, in 384 and
///   2048 dimensions;
/// - noisier, lower-dimensional blobs with heavily overlapping sub-topics
///   (48–96-d, 5–10 points per micro-cluster): 0.78–0.98, lowest where the
///   threshold falls among the merges of overlapping sub-topics. There exact
///   Ward is unstable too: run on a random 95 % of the same points it agrees
///   with itself on those points at 0.83–1.0.
///
/// So the approximation errs about as much as the data's own ambiguity at
/// the threshold. More micro-clusters bring it closer to exact (with
/// `n / 2.4` micro-clusters instead of `n / 10`: 0.97 instead of 0.79 on the
/// worst case above).
///
/// Micro-clustering is seeded ([`WardOptions::seed`]) and every step gives
/// the same result on any number of threads, so the result is reproducible.
///
/// # Errors
///
/// A malformed matrix (see [`ClusterError`]) or a NaN threshold.
pub fn ward_auto(
    points: &[f32],
    dim: usize,
    threshold: f64,
    options: &WardOptions,
) -> Result<Clustering, ClusterError> {
    let n = check_cut_input(points, dim, threshold)?;
    let threads = resolve_threads(options.threads);
    if n <= options.exact_max_points || n <= options.micro_clusters.max(1) {
        return Ok(ward_tree(points, dim, threads)?.cut(threshold));
    }
    cut_over_micro_clusters(
        points,
        dim,
        threshold,
        options.micro_clusters,
        options.seed,
        threads,
        |stats| ward_tree_weighted(&stats.centroids, &stats.sizes, dim, threads),
    )
}

/// The approximation shared by the linkages: `points` grouped into about
/// `target` seeded micro-clusters, `tree_of` builds the tree over their
/// weighted means, and each point takes its micro-cluster's label at the
/// cut.
pub(super) fn cut_over_micro_clusters(
    points: &[f32],
    dim: usize,
    threshold: f64,
    target: usize,
    seed: u64,
    threads: usize,
    tree_of: impl FnOnce(&MicroStats) -> Result<super::Dendrogram, ClusterError>,
) -> Result<Clustering, ClusterError> {
    let micro = micro_clusters(points, dim, target, seed, threads);
    let stats = micro_stats(points, dim, &micro, threads);
    let cut = tree_of(&stats)?.cut(threshold);
    let point_labels: Vec<usize> = micro
        .iter()
        .map(|&m| cut.labels[stats.remap[m as usize]])
        .collect();
    let (labels, n_clusters) = relabel_first_appearance(&point_labels);
    Ok(Clustering {
        labels,
        n_clusters,
        heights: cut.heights,
        approximation: Some(Approximation {
            micro_clusters: stats.sizes.len(),
            max_internal_height: (2.0 * stats.max_spread).sqrt(),
        }),
    })
}

/// Gathers the rows `idx` of `points` into a new matrix.
fn gather(points: &[f32], dim: usize, idx: impl Iterator<Item = usize>) -> Vec<f32> {
    let mut out = Vec::new();
    for i in idx {
        out.extend_from_slice(&points[i * dim..(i + 1) * dim]);
    }
    out
}

/// Indices `0..labels.len()` grouped by label (stable), with group offsets.
fn group_by(labels: &[u32], groups: usize) -> (Vec<u32>, Vec<usize>) {
    let mut offsets = vec![0usize; groups + 1];
    for &l in labels {
        offsets[l as usize + 1] += 1;
    }
    for g in 0..groups {
        offsets[g + 1] += offsets[g];
    }
    let mut fill = offsets.clone();
    let mut order = vec![0u32; labels.len()];
    for (i, &l) in labels.iter().enumerate() {
        order[fill[l as usize]] = i as u32;
        fill[l as usize] += 1;
    }
    (order, offsets)
}

/// The micro-cluster id of every point (ids may have gaps: a fine centroid
/// can end up with no points).
fn micro_clusters(
    points: &[f32],
    dim: usize,
    target: usize,
    seed: u64,
    threads: usize,
) -> Vec<u32> {
    let n = points.len() / dim;
    let target = target.clamp(1, n);
    let k1 = (target as f64).sqrt().ceil() as usize;
    let mut rng = SplitMix64::derive(seed, 0);
    let sample = rng.sample_indices(n, k1 * COARSE_SAMPLE_PER_CENTROID);
    let sample = gather(points, dim, sample.into_iter());
    let coarse = kmeans(&sample, dim, k1, COARSE_ITERS, &mut rng, threads);
    let mut cell = vec![0u32; n];
    coarse.assign(points, &mut cell, threads);
    let (order, offsets) = group_by(&cell, coarse.len());

    // Fine centroids per cell, in proportion to its size; cells are
    // independent, so train them in parallel, biggest first (for balance).
    let cells = coarse.len();
    let mut by_size: Vec<usize> = (0..cells).collect();
    by_size.sort_by_key(|&c| std::cmp::Reverse(offsets[c + 1] - offsets[c]));
    let trained: Vec<Centroids> = map_dynamic(cells, threads, |j| {
        let c = by_size[j];
        let members = &order[offsets[c]..offsets[c + 1]];
        if members.is_empty() {
            return Centroids::new(Vec::new(), dim);
        }
        let k2 = ((target as f64 * members.len() as f64 / n as f64).round() as usize)
            .clamp(1, members.len());
        let mut rng = SplitMix64::derive(seed, 1 + c as u64);
        let pick = rng.sample_indices(members.len(), k2 * FINE_SAMPLE_PER_CENTROID);
        let sample = gather(points, dim, pick.into_iter().map(|j| members[j] as usize));
        kmeans(&sample, dim, k2, FINE_ITERS, &mut rng, 1)
    });
    let mut fine: Vec<Centroids> = vec![Centroids::new(Vec::new(), dim); cells];
    for (c, t) in by_size.into_iter().zip(trained) {
        fine[c] = t;
    }
    let mut first_id = vec![0u32; cells + 1];
    for c in 0..cells {
        first_id[c + 1] = first_id[c] + fine[c].len() as u32;
    }
    let mut micro = vec![0u32; n];
    for_each_chunk(&mut micro, threads, 256, |first, chunk| {
        for (i, m) in chunk.iter_mut().enumerate() {
            let p = first + i;
            let c = cell[p] as usize;
            *m = first_id[c] + fine[c].nearest(&points[p * dim..(p + 1) * dim]);
        }
    });
    micro
}

/// Exact statistics of the non-empty micro-clusters.
pub(super) struct MicroStats {
    /// `f64` means, row-major `k × dim`.
    pub(super) centroids: Vec<f64>,
    /// Member counts.
    pub(super) sizes: Vec<f64>,
    /// Micro-cluster id → index among the non-empty ones.
    pub(super) remap: Vec<usize>,
    /// Largest estimated top eigenvalue of a micro-cluster's scatter matrix.
    pub(super) max_spread: f64,
}

/// Power iterations for the scatter-matrix eigenvalue estimate.
const SPREAD_ITERS: usize = 6;

/// Means, sizes and the spread estimate of the micro-clusters, each summed
/// over its members in index order (parallel over micro-clusters, so the
/// result does not depend on the thread count).
fn micro_stats(points: &[f32], dim: usize, micro: &[u32], threads: usize) -> MicroStats {
    let ids = micro.iter().map(|&m| m as usize + 1).max().unwrap_or(0);
    let (order, offsets) = group_by(micro, ids);
    let mut remap = vec![usize::MAX; ids];
    let mut nonempty = Vec::new();
    for m in 0..ids {
        if offsets[m + 1] > offsets[m] {
            remap[m] = nonempty.len();
            nonempty.push(m);
        }
    }
    let k = nonempty.len();
    let mut centroids = vec![0.0f64; k * dim];
    let mut spread = vec![0.0f64; k];
    {
        let mut rows: Vec<(&mut [f64], &mut f64)> =
            centroids.chunks_mut(dim).zip(spread.iter_mut()).collect();
        for_each_chunk(&mut rows, threads, 16, |first, chunk| {
            for (j, (row, spread)) in chunk.iter_mut().enumerate() {
                let m = nonempty[first + j];
                let members = &order[offsets[m]..offsets[m + 1]];
                let member = |p: &u32| &points[*p as usize * dim..(*p as usize + 1) * dim];
                for p in members {
                    for (s, &v) in row.iter_mut().zip(member(p)) {
                        *s += f64::from(v);
                    }
                }
                let inv = 1.0 / members.len() as f64;
                row.iter_mut().for_each(|s| *s *= inv);
                **spread = top_scatter_eigenvalue(members.iter().map(member), row);
            }
        });
    }
    let sizes = nonempty
        .iter()
        .map(|&m| (offsets[m + 1] - offsets[m]) as f64)
        .collect();
    MicroStats {
        centroids,
        sizes,
        remap,
        max_spread: spread.iter().copied().fold(0.0, f64::max),
    }
}

/// Estimates the largest eigenvalue of the scatter matrix
/// `Σ (x − c)(x − c)ᵀ` of `rows` around `centre` by power iteration from
/// the farthest row's deviation (Rayleigh quotient; approaches the
/// eigenvalue from below).
fn top_scatter_eigenvalue<'a>(
    rows: impl Iterator<Item = &'a [f32]> + Clone,
    centre: &[f64],
) -> f64 {
    let c: Vec<f32> = centre.iter().map(|&v| v as f32).collect();
    let dim = c.len();
    let mut dev = vec![0.0f32; dim];
    let deviation = |x: &[f32], out: &mut [f32]| {
        for ((o, &a), &b) in out.iter_mut().zip(x).zip(&c) {
            *o = a - b;
        }
    };
    // Start from the farthest member's deviation: never zero unless all
    // members coincide, and already close to the top direction.
    let mut v = vec![0.0f32; dim];
    let mut far = 0.0f32;
    for x in rows.clone() {
        deviation(x, &mut dev);
        let d2 = dot(&dev, &dev);
        if d2 > far {
            far = d2;
            v.copy_from_slice(&dev);
        }
    }
    let mut rayleigh = 0.0;
    for _ in 0..SPREAD_ITERS {
        let norm2: f64 = v.iter().map(|&a| f64::from(a) * f64::from(a)).sum();
        if norm2 <= 0.0 || !norm2.is_finite() {
            return rayleigh;
        }
        let inv = (1.0 / norm2.sqrt()) as f32;
        v.iter_mut().for_each(|a| *a *= inv);
        // z = Σ ((x − c)·v) (x − c); vᵀz is the Rayleigh quotient.
        let mut z = vec![0.0f32; dim];
        let mut quotient = 0.0f64;
        for x in rows.clone() {
            deviation(x, &mut dev);
            let y = dot(&dev, &v);
            quotient += f64::from(y) * f64::from(y);
            for (zi, &di) in z.iter_mut().zip(&dev) {
                *zi += y * di;
            }
        }
        rayleigh = quotient;
        v = z;
    }
    rayleigh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{adjusted_rand_index, l2_normalize, ward};

    /// Topic-like unit vectors: `topics` directions sharing a common
    /// component, each with 3 sub-topics, plus Gaussian noise, normalised.
    fn topic_data(n: usize, dim: usize, topics: usize, noise: f64, seed: u64) -> Vec<f32> {
        let mut g = SplitMix64::new(seed);
        let mut normal = || {
            let (u, v) = (g.next_f64().max(1e-300), g.next_f64());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        };
        let mut unit = |scale: f32| {
            let mut v: Vec<f32> = (0..dim).map(|_| normal() * scale).collect();
            l2_normalize(&mut v);
            v
        };
        let common = unit(1.0);
        let mut dirs = Vec::new();
        for _ in 0..topics {
            let t = unit(1.0);
            for _ in 0..3 {
                let s = unit(1.0);
                let mut d: Vec<f32> = (0..dim)
                    .map(|k| 0.6 * common[k] + t[k] + 0.45 * s[k])
                    .collect();
                l2_normalize(&mut d);
                dirs.push(d);
            }
        }
        let mut g = SplitMix64::new(seed + 1);
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            // Uneven topic sizes: square a uniform draw.
            let u = g.next_f64();
            let dir = &dirs[((u * u) * dirs.len() as f64) as usize];
            let mut row = dir.clone();
            let noise_vec = unit(1.0);
            let scale = (noise * (g.next_f64() * 0.5 + 0.75)) as f32;
            for (r, z) in row.iter_mut().zip(&noise_vec) {
                *r += scale * z;
            }
            l2_normalize(&mut row);
            out.extend_from_slice(&row);
        }
        out
    }

    fn forced(micro: usize) -> WardOptions {
        WardOptions {
            exact_max_points: 0,
            micro_clusters: micro,
            ..WardOptions::default()
        }
    }

    #[test]
    fn small_inputs_are_exact() {
        let pts = topic_data(300, 24, 5, 0.8, 1);
        let auto = ward_auto(&pts, 24, 4.0, &WardOptions::default()).unwrap();
        assert_eq!(auto, ward(&pts, 24, 4.0).unwrap());
        assert!(auto.approximation.is_none());
        // As many micro-clusters as points: nothing to gain, exact again.
        assert!(
            ward_auto(&pts, 24, 4.0, &forced(300))
                .unwrap()
                .approximation
                .is_none()
        );
        assert_eq!(ward_auto(&[], 3, 4.0, &forced(10)).unwrap().n_clusters, 0);
        assert_eq!(
            ward_auto(&pts, 24, f64::NAN, &forced(10)),
            Err(ClusterError::NanThreshold)
        );
    }

    #[test]
    fn approximation_agrees_with_exact_ward() {
        // Exact Ward must stay cheap in debug builds, hence 1 600 × 96 rather
        // than the benchmark's 10 000+ × 384 (where the ARI is ≥ 0.99); with
        // 8–10 points per micro-cluster, as many as at 1M points with the
        // default 2048. Over seeds 1–8 this gives ARI 0.93–0.98.
        let (n, dim) = (1600, 96);
        let pts = topic_data(n, dim, 12, 0.8, 5);
        let tree = crate::cluster::ward_tree(&pts, dim, 0).unwrap();
        for (threshold, micro) in [(4.0, 160), (3.0, 200)] {
            let exact = tree.cut(threshold);
            assert!(
                exact.n_clusters > 5,
                "the data must have structure at {threshold}"
            );
            let approx = ward_auto(&pts, dim, threshold, &forced(micro)).unwrap();
            let info = approx.approximation.clone().unwrap();
            assert!(
                info.micro_clusters > micro / 2 && info.micro_clusters <= micro + 16,
                "{info:?}"
            );
            let ari = adjusted_rand_index(&approx.labels, &exact.labels).unwrap();
            assert!(
                ari >= 0.9,
                "threshold {threshold}: ARI {ari}, exact {} vs approx {} clusters, {info:?}",
                exact.n_clusters,
                approx.n_clusters
            );
            // Labels are numbered by first appearance.
            let mut next = 0;
            for &l in &approx.labels {
                assert!(l <= next);
                if l == next {
                    next += 1;
                }
            }
            assert_eq!(next, approx.n_clusters);
            assert_eq!(approx.heights.len(), info.micro_clusters - 1);
            // The top of the tree (merges of big groups) is nearly exact.
            let (he, ha) = (tree.heights(), &approx.heights);
            let top = |h: &[f64]| h[h.len() - 5..].to_vec();
            for (e, a) in top(&he).iter().zip(top(ha)) {
                assert!(
                    (a - e).abs() <= 0.05 * e,
                    "top heights {:?} vs {:?}",
                    top(&he),
                    top(ha)
                );
            }
        }
    }

    #[test]
    fn approximation_is_reproducible_across_thread_counts() {
        let pts = topic_data(1500, 32, 6, 0.6, 3);
        let one = ward_auto(
            &pts,
            32,
            3.0,
            &WardOptions {
                threads: 1,
                ..forced(150)
            },
        )
        .unwrap();
        let three = ward_auto(
            &pts,
            32,
            3.0,
            &WardOptions {
                threads: 3,
                ..forced(150)
            },
        )
        .unwrap();
        assert_eq!(one, three);
        assert!(one.n_clusters > 3);
    }

    #[test]
    fn degenerate_data() {
        // All points identical: one micro-cluster, one cluster, no spread.
        let pts = vec![0.5f32; 500 * 8];
        let c = ward_auto(&pts, 8, 1.0, &forced(50)).unwrap();
        assert_eq!(c.n_clusters, 1);
        assert_eq!(
            c.approximation.unwrap(),
            Approximation {
                micro_clusters: 1,
                max_internal_height: 0.0
            }
        );
        // Two far-apart groups of duplicates.
        let mut pts = vec![0.0f32; 300 * 4];
        pts.extend(vec![10.0f32; 200 * 4]);
        let c = ward_auto(&pts, 4, 1.0, &forced(20)).unwrap();
        assert_eq!(c.n_clusters, 2);
        assert!(c.labels[..300].iter().all(|&l| l == 0) && c.labels[300..].iter().all(|&l| l == 1));
    }
}
