//! Average-linkage (UPGMA) clustering of unit vectors by cosine distance:
//! how uno finds a tenant's topics.
//!
//! Why not the method's Ward cut at one height? Ward's merge height grows
//! with the square root of the clusters' sizes, so one threshold cuts a
//! busy topic into pieces and merges two quiet ones (issue 23's sweep: no
//! single Ward height kept the topics of one tenant apart and whole). The
//! average linkage height is the mean cosine distance between the two
//! clusters' members, which does not depend on how many there are: "merge
//! while the queries of the two groups are, on average, about the same
//! thing" reads the same for a topic of 6 logs and one of 6,000.
//!
//! For unit vectors the mean pairwise cosine similarity of two groups is
//! the dot product of their mean vectors (`mean_a·b (a·b) = μ_A·μ_B`), so
//! like [`super::ward`] this keeps one mean and size per live cluster (O(n)
//! memory) and runs SciPy's nearest-neighbour chain, which is valid because
//! average linkage is reducible. Above
//! [`WardOptions::exact_max_points`](super::WardOptions) points (capped at
//! [`AVERAGE_EXACT_MAX`]) it runs on the same seeded micro-clusters as
//! [`ward_auto`](super::ward_auto), weighted by size, where the formula is
//! still exact between micro-clusters.

use super::approx::{WardOptions, cut_over_micro_clusters};
use super::check_cut_input;
use super::dendrogram::{Clustering, Dendrogram};
use super::error::ClusterError;
use super::parallel::resolve_threads;

/// Most points clustered exactly: the chain scans O(n² · dim) in one
/// thread, about ten seconds at this size in 384 dimensions.
pub const AVERAGE_EXACT_MAX: usize = 4_000;

/// Average-linkage clustering of `points` (row-major `n × dim`; each row is
/// L2-normalised first, zero rows stay zero) cut at cosine distance
/// `threshold`: merges whose mean pairwise cosine distance is below it are
/// applied.
///
/// # Errors
///
/// A malformed matrix (see [`ClusterError`]) or a NaN threshold.
pub fn average_auto(
    points: &[f32],
    dim: usize,
    threshold: f64,
    options: &WardOptions,
) -> Result<Clustering, ClusterError> {
    let n = check_cut_input(points, dim, threshold)?;
    let mut unit: Vec<f32> = points.to_vec();
    for row in unit.chunks_exact_mut(dim) {
        super::l2_normalize(row);
    }
    let exact_max = options.exact_max_points.min(AVERAGE_EXACT_MAX);
    if n <= exact_max {
        let means: Vec<f64> = unit.iter().map(|&v| f64::from(v)).collect();
        return Ok(average_tree(means, vec![1.0; n], dim).cut(threshold));
    }
    cut_over_micro_clusters(
        &unit,
        dim,
        threshold,
        exact_max,
        options.seed,
        resolve_threads(options.threads),
        |stats| {
            Ok(average_tree(
                stats.centroids.clone(),
                stats.sizes.clone(),
                dim,
            ))
        },
    )
}

/// The average-linkage tree of clusters given by the means of their unit
/// vectors (row-major, `f64`) and their sizes.
fn average_tree(mut means: Vec<f64>, mut sizes: Vec<f64>, dim: usize) -> Dendrogram {
    let n = sizes.len();
    let leaf_sizes = sizes.clone();
    let mut active: Vec<usize> = (0..n).collect();
    let mut raw: Vec<(usize, usize, f64)> = Vec::with_capacity(n.saturating_sub(1));
    let mut chain: Vec<usize> = Vec::new();
    let distance = |means: &[f64], a: usize, b: usize| -> f64 {
        let (ra, rb) = (
            &means[a * dim..(a + 1) * dim],
            &means[b * dim..(b + 1) * dim],
        );
        1.0 - ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f64>()
    };
    while active.len() > 1 {
        if chain.is_empty() {
            chain.push(active[0]);
        }
        let (x, y, height) = loop {
            let x = *chain.last().unwrap_or(&active[0]);
            let previous = chain.len().checked_sub(2).map(|i| chain[i]);
            // Prefer the previous chain element on ties (SciPy's rule), so
            // the chain always ends in a reciprocal pair.
            let mut best = previous.map(|p| (p, distance(&means, x, p)));
            for &c in &active {
                if c == x {
                    continue;
                }
                let d = distance(&means, x, c);
                if best.is_none_or(|(_, b)| d < b) {
                    best = Some((c, d));
                }
            }
            let Some((y, d)) = best else {
                break (x, x, 0.0);
            };
            if previous == Some(y) {
                break (x, y, d);
            }
            chain.push(y);
        };
        if x == y {
            break;
        }
        chain.truncate(chain.len().saturating_sub(2));
        // The merged cluster lives in the larger slot, as in SciPy.
        let (dead, kept) = (x.min(y), x.max(y));
        let (wd, wk) = (sizes[dead], sizes[kept]);
        let total = wd + wk;
        for j in 0..dim {
            means[kept * dim + j] =
                (means[kept * dim + j] * wk + means[dead * dim + j] * wd) / total;
        }
        sizes[kept] = total;
        active.retain(|&c| c != dead);
        raw.push((dead, kept, height.max(0.0)));
    }
    Dendrogram::from_slot_merges(n, &raw, &leaf_sizes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn opts() -> WardOptions {
        WardOptions::default()
    }

    /// Brute-force UPGMA: repeatedly merge the pair with the smallest mean
    /// pairwise cosine distance.
    fn brute(points: &[Vec<f32>], threshold: f64) -> Vec<Vec<usize>> {
        let unit: Vec<Vec<f64>> = points
            .iter()
            .map(|p| {
                let n = p.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
                p.iter().map(|v| f64::from(*v) / n).collect()
            })
            .collect();
        let cos =
            |a: usize, b: usize| -> f64 { unit[a].iter().zip(&unit[b]).map(|(x, y)| x * y).sum() };
        let mut groups: Vec<Vec<usize>> = (0..points.len()).map(|i| vec![i]).collect();
        loop {
            let mut best: Option<(usize, usize, f64)> = None;
            for i in 0..groups.len() {
                for j in i + 1..groups.len() {
                    let mut s = 0.0;
                    for &a in &groups[i] {
                        for &b in &groups[j] {
                            s += 1.0 - cos(a, b);
                        }
                    }
                    let d = s / (groups[i].len() * groups[j].len()) as f64;
                    if best.is_none_or(|(_, _, b)| d < b) {
                        best = Some((i, j, d));
                    }
                }
            }
            match best {
                Some((i, j, d)) if d < threshold => {
                    let g = groups.remove(j);
                    groups[i].extend(g);
                }
                _ => break,
            }
        }
        let mut out: Vec<Vec<usize>> = groups
            .into_iter()
            .map(|mut g| {
                g.sort_unstable();
                g
            })
            .collect();
        out.sort();
        out
    }

    fn groups_of(labels: &[usize]) -> Vec<Vec<usize>> {
        let k = labels.iter().max().map_or(0, |m| m + 1);
        let mut out = vec![Vec::new(); k];
        for (i, &l) in labels.iter().enumerate() {
            out[l].push(i);
        }
        out.sort();
        out
    }

    #[test]
    fn matches_brute_force_upgma_at_several_cuts() {
        let mut rng = crate::cluster::rng::SplitMix64::new(7);
        let centres = [
            [1.0f32, 0.0, 0.0, 0.2],
            [0.0, 1.0, 0.1, 0.0],
            [0.0, 0.2, 1.0, 0.3],
        ];
        let points: Vec<Vec<f32>> = (0..30)
            .map(|i| {
                centres[i % 3]
                    .iter()
                    .map(|c| c + 0.6 * (rng.next_f64() as f32 - 0.5))
                    .collect()
            })
            .collect();
        let flat: Vec<f32> = points.iter().flatten().copied().collect();
        for t in [0.05, 0.2, 0.4, 0.7, 1.2] {
            let got = average_auto(&flat, 4, t, &opts()).unwrap();
            assert_eq!(groups_of(&got.labels), brute(&points, t), "threshold {t}");
        }
    }

    #[test]
    fn height_does_not_grow_with_cluster_size() {
        // Two tight topics of very different sizes, 60° apart: each stays
        // whole and apart whatever its size, which a Ward height cannot do.
        let a = [1.0f32, 0.0];
        let b = [0.5f32, 0.866];
        let mut flat = Vec::new();
        for i in 0..200 {
            let e = 0.01 * (i % 5) as f32;
            flat.extend_from_slice(&[a[0], a[1] + e]);
        }
        for i in 0..3 {
            let e = 0.01 * i as f32;
            flat.extend_from_slice(&[b[0], b[1] + e]);
        }
        let c = average_auto(&flat, 2, 0.3, &opts()).unwrap();
        assert_eq!(c.n_clusters, 2);
        assert!(c.labels[..200].iter().all(|&l| l == 0));
        assert!(c.labels[200..].iter().all(|&l| l == 1));
    }

    #[test]
    fn large_inputs_use_micro_clusters_and_keep_separated_topics() {
        let mut rng = crate::cluster::rng::SplitMix64::new(3);
        let n = 600;
        let mut flat = Vec::new();
        for i in 0..n {
            let mut v = [0.0f32; 8];
            v[i % 3] = 1.0;
            for x in &mut v {
                *x += 0.1 * (rng.next_f64() as f32 - 0.5);
            }
            flat.extend_from_slice(&v);
        }
        let options = WardOptions {
            exact_max_points: 100,
            ..opts()
        };
        let c = average_auto(&flat, 8, 0.5, &options).unwrap();
        assert!(c.approximation.is_some());
        assert_eq!(c.n_clusters, 3);
        for i in 0..n {
            assert_eq!(c.labels[i], c.labels[i % 3], "point {i}");
        }
        assert!(average_auto(&flat, 8, f64::NAN, &options).is_err());
        assert!(average_auto(&flat[..5], 8, 0.5, &options).is_err());
    }
}
