//! The merge tree of an agglomerative clustering, and cutting it at a
//! distance threshold the way scikit-learn does.

use super::approx::Approximation;

/// One merge of two clusters, in SciPy's linkage-matrix convention.
///
/// Node ids below the number of leaves are input rows; merge `i` (0-based,
/// in [`Dendrogram::merges`] order) creates node `n_leaves + i`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    /// The smaller of the two merged node ids.
    pub left: usize,
    /// The larger of the two merged node ids.
    pub right: usize,
    /// Ward height: `sqrt(2·|A|·|B|/(|A|+|B|)) · ‖c_A − c_B‖`.
    pub height: f64,
    /// Size (total weight) of the merged cluster.
    pub size: f64,
}

/// A full Ward merge tree over `n_leaves` clusters, merges sorted by height.
///
/// This is SciPy's `linkage` output (and scikit-learn's `children_` plus
/// `distances_`): `n_leaves − 1` merges in ascending height order (stable for
/// ties), node ids relabelled so that each merge only refers to earlier ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Dendrogram {
    n_leaves: usize,
    merges: Vec<Merge>,
}

/// A flat clustering: which cluster each input row belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Cluster of each row, `0..n_clusters`, numbered in order of first
    /// appearance (row 0 is always in cluster 0).
    pub labels: Vec<usize>,
    /// Number of clusters.
    pub n_clusters: usize,
    /// All merge heights of the tree, ascending (scikit-learn's `distances_`).
    /// For an approximate clustering these are the heights of the tree over
    /// micro-clusters, so there are fewer than `labels.len() − 1`.
    pub heights: Vec<f64>,
    /// `Some` when [`ward_auto`](super::ward_auto) used the micro-cluster
    /// approximation, with what it did.
    pub approximation: Option<Approximation>,
}

impl Dendrogram {
    /// Builds a dendrogram from merges given in the order they were made, as
    /// pairs of *slots* (the NN-chain convention: the merged cluster lives in
    /// slot `y`, slot `x` dies), each with its height. Sorts by height
    /// (stably) and relabels with a union-find, as SciPy's `label` does.
    pub(crate) fn from_slot_merges(
        n_leaves: usize,
        raw: &[(usize, usize, f64)],
        sizes: &[f64],
    ) -> Self {
        let mut order: Vec<usize> = (0..raw.len()).collect();
        order.sort_by(|&a, &b| raw[a].2.total_cmp(&raw[b].2));
        let mut parent: Vec<usize> = (0..2 * n_leaves.max(1) - 1).collect();
        let mut size: Vec<f64> = sizes.to_vec();
        size.resize(parent.len(), 0.0);
        let mut merges = Vec::with_capacity(raw.len());
        for (i, &k) in order.iter().enumerate() {
            let (x, y, height) = raw[k];
            let rx = find(&mut parent, x);
            let ry = find(&mut parent, y);
            let node = n_leaves + i;
            parent[rx] = node;
            parent[ry] = node;
            size[node] = size[rx] + size[ry];
            merges.push(Merge {
                left: rx.min(ry),
                right: rx.max(ry),
                height,
                size: size[node],
            });
        }
        Dendrogram { n_leaves, merges }
    }

    /// Number of leaves (input rows).
    pub fn n_leaves(&self) -> usize {
        self.n_leaves
    }

    /// The merges, ascending by height.
    pub fn merges(&self) -> &[Merge] {
        &self.merges
    }

    /// The merge heights, ascending (scikit-learn's `distances_`).
    pub fn heights(&self) -> Vec<f64> {
        self.merges.iter().map(|m| m.height).collect()
    }

    /// Number of clusters a cut at `threshold` gives, scikit-learn's rule:
    /// `#{merge heights ≥ threshold} + 1` (0 for an empty tree). A NaN
    /// threshold counts no heights, like `+∞`.
    pub fn n_clusters_at(&self, threshold: f64) -> usize {
        if self.n_leaves == 0 {
            return 0;
        }
        self.merges.iter().filter(|m| m.height >= threshold).count() + 1
    }

    /// The flat clustering at `threshold`: merges with height `< threshold`
    /// are applied, those `≥ threshold` are not, which is
    /// `AgglomerativeClustering(n_clusters=None, distance_threshold=t)`.
    ///
    /// Like scikit-learn, this undoes the *last* `#{heights ≥ t}` merges in
    /// sorted order, which is the same thing whenever heights are monotone
    /// along the tree (always, for Ward, up to rounding).
    pub fn cut(&self, threshold: f64) -> Clustering {
        let k = self.n_clusters_at(threshold);
        Clustering {
            labels: self.labels_for(k),
            n_clusters: k,
            heights: self.heights(),
            approximation: None,
        }
    }

    /// Labels for exactly `k` clusters (clamped to `1..=n_leaves`), numbered
    /// in order of first appearance.
    pub fn labels_for(&self, k: usize) -> Vec<usize> {
        let n = self.n_leaves;
        if n == 0 {
            return Vec::new();
        }
        let k = k.clamp(1, n);
        // A leaf representative per node, and a union-find over leaves.
        let mut rep: Vec<usize> = (0..n).collect();
        rep.reserve(self.merges.len());
        let mut uf: Vec<usize> = (0..n).collect();
        for m in &self.merges[..n - k] {
            let a = find(&mut uf, rep[m.left]);
            let b = find(&mut uf, rep[m.right]);
            uf[b] = a;
            rep.push(a);
        }
        let roots: Vec<usize> = (0..n).map(|i| find(&mut uf, i)).collect();
        relabel_first_appearance(&roots).0
    }
}

/// Union-find root with path halving.
fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Renumbers arbitrary labels to `0..k` in order of first appearance;
/// returns the new labels and `k`.
pub(crate) fn relabel_first_appearance(labels: &[usize]) -> (Vec<usize>, usize) {
    let mut map = std::collections::HashMap::new();
    let out = labels
        .iter()
        .map(|&l| {
            let next = map.len();
            *map.entry(l).or_insert(next)
        })
        .collect();
    (out, map.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_follows_sklearn_strictness() {
        // Leaves 0,1 merge at 1.0 (slots 0→1), then with 2 at 3.0.
        let d = Dendrogram::from_slot_merges(3, &[(1, 2, 3.0), (0, 1, 1.0)], &[1.0; 3]);
        assert_eq!(d.heights(), vec![1.0, 3.0]);
        assert_eq!(
            d.merges()[0],
            Merge {
                left: 0,
                right: 1,
                height: 1.0,
                size: 2.0
            }
        );
        assert_eq!(
            d.merges()[1],
            Merge {
                left: 2,
                right: 3,
                height: 3.0,
                size: 3.0
            }
        );
        assert_eq!(d.cut(1.0).labels, vec![0, 1, 2]);
        assert_eq!(d.cut(1.0000001).labels, vec![0, 0, 1]);
        assert_eq!(d.cut(3.0).n_clusters, 2);
        assert_eq!(d.cut(3.5).labels, vec![0, 0, 0]);
        assert_eq!(d.cut(f64::NAN).n_clusters, 1);
        assert_eq!(d.cut(0.0).n_clusters, 3);
    }

    #[test]
    fn empty_and_single() {
        let d = Dendrogram::from_slot_merges(0, &[], &[]);
        assert_eq!(d.cut(1.0).n_clusters, 0);
        assert!(d.cut(1.0).labels.is_empty());
        let d = Dendrogram::from_slot_merges(1, &[], &[1.0]);
        assert_eq!(d.cut(1.0).labels, vec![0]);
        assert_eq!(d.cut(1.0).n_clusters, 1);
    }
}
