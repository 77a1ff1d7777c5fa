//! Routing weights that count topics as well as texts (issue 23, "text
//! shared by most of a tenant's traffic must decide neither the route nor
//! the clusters").
//!
//! Inverse document frequency discounts what most texts say ("How do I",
//! a fixed template), but a phrase that users put in front of questions on
//! every topic ("Sorry if this is basic, but", "Asking for a friend") is in
//! only a tenth of the texts, so it keeps a high weight, and two questions
//! on different topics that share it look alike: a new query with that
//! opening is pulled to whichever cluster holds most such examples. What
//! marks such a phrase is not how rare it is but that it is spread evenly
//! over the topics. So each counted feature's weight is also scaled by how
//! concentrated it is on few clusters: `1 − H/ln K`, where `H` is the
//! entropy of its share of each cluster's members (a cluster's share is the
//! fraction of its members that contain the feature, so a big cluster does
//! not count for more) and `K` the number of clusters of at least two
//! members. A feature of one topic keeps its weight; one spread evenly
//! over every topic weighs nothing.

/// `common` ((feature hash, weight), as `DocumentFrequencies::common`
/// lists them) with each weight scaled by how concentrated the feature is
/// on few of the clusters. `features[i]` are text `i`'s distinct feature
/// hashes and `labels[i]` its cluster (of `k`). With fewer than two
/// clusters of at least two members nothing is scaled: there is no spread
/// to measure. A feature seen only in clusters of one member keeps its
/// weight.
pub fn topic_scaled(
    common: &[(u64, f32)],
    features: &[Vec<u64>],
    labels: &[usize],
    k: usize,
) -> Vec<(u64, f32)> {
    let mut sizes = vec![0u32; k];
    for &l in labels {
        if let Some(s) = sizes.get_mut(l) {
            *s += 1;
        }
    }
    let counted: Vec<usize> = (0..k).filter(|&c| sizes[c] >= 2).collect();
    if counted.len() < 2 {
        return common.to_vec();
    }
    let column: Vec<Option<usize>> = {
        let mut col = vec![None; k];
        for (j, &c) in counted.iter().enumerate() {
            col[c] = Some(j);
        }
        col
    };
    let row: std::collections::HashMap<u64, usize> = common
        .iter()
        .enumerate()
        .map(|(i, (h, _))| (*h, i))
        .collect();
    let width = counted.len();
    let mut counts = vec![0u32; common.len() * width];
    for (fs, &l) in features.iter().zip(labels) {
        let Some(Some(j)) = column.get(l) else {
            continue;
        };
        for h in fs {
            if let Some(&r) = row.get(h) {
                counts[r * width + j] += 1;
            }
        }
    }
    let ln_k = (width as f64).ln();
    common
        .iter()
        .enumerate()
        .map(|(r, &(h, w))| {
            let shares: Vec<f64> = counts[r * width..(r + 1) * width]
                .iter()
                .zip(&counted)
                .map(|(&n, &c)| f64::from(n) / f64::from(sizes[c]))
                .collect();
            let total: f64 = shares.iter().sum();
            if total <= 0.0 {
                return (h, w);
            }
            let entropy: f64 = shares
                .iter()
                .filter(|&&s| s > 0.0)
                .map(|&s| {
                    let q = s / total;
                    -q * q.ln()
                })
                .sum();
            let concentration = (1.0 - entropy / ln_k).clamp(0.0, 1.0);
            (h, w * concentration as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phrase_on_every_topic_weighs_nothing_and_a_topics_own_word_keeps_its_weight() {
        // Three topics of two texts each. Feature 1 opens one text of
        // every topic; feature 2 is topic 0's own; feature 3 is mostly
        // topic 1's, once in topic 2; feature 4 is only in a singleton.
        let features = vec![
            vec![1, 2],
            vec![2],
            vec![1, 3],
            vec![3],
            vec![1, 3],
            vec![5],
            vec![4],
        ];
        let labels = [0, 0, 1, 1, 2, 2, 3];
        let common = [(1, 2.0), (2, 3.0), (3, 1.0), (4, 1.5), (9, 0.7)];
        let out = topic_scaled(&common, &features, &labels, 4);
        let w = |h: u64| {
            out.iter()
                .find(|x| x.0 == h)
                .map(|x| x.1)
                .unwrap_or(f32::NAN)
        };
        assert!(w(1).abs() < 1e-6, "spread evenly: {}", w(1));
        assert!((w(2) - 3.0).abs() < 1e-6, "one topic's own: {}", w(2));
        // Shares 1.0 and 0.5 over 3 clusters: q = 2/3, 1/3.
        let h = -(2.0f64 / 3.0 * (2.0f64 / 3.0).ln() + 1.0 / 3.0 * (1.0f64 / 3.0).ln());
        let expected = (1.0 - h / 3.0f64.ln()) as f32;
        assert!((w(3) - expected).abs() < 1e-5, "{} vs {expected}", w(3));
        assert!(w(3) > 0.3 && w(3) < 0.6);
        assert_eq!(w(4), 1.5, "only in a one-member cluster: unchanged");
        assert_eq!(w(9), 0.7, "never counted: unchanged");
        assert_eq!(
            out.iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 9]
        );
    }

    #[test]
    fn one_topic_has_no_spread_to_measure() {
        let common = [(1, 2.0)];
        let features = vec![vec![1], vec![1], vec![1]];
        assert_eq!(topic_scaled(&common, &features, &[0, 0, 1], 2), common);
        assert_eq!(topic_scaled(&common, &[], &[], 0), common);
    }
}
