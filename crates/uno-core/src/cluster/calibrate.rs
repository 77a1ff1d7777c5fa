//! Routing with calibrated acceptance (issue 23: "unseen means unseen", no
//! minority capture).
//!
//! The method routes every query to its nearest centroid; the proxy adds a
//! per-cluster radius beyond which a query passes through (design §6.1).
//! A radius taken from a cluster's own members alone (their 95th percentile
//! distance) says nothing about what lies *outside* the topic, and it is
//! biased low, since each member pulled the centroid towards itself. So
//! each radius here is calibrated twice:
//!
//! * **members**: the quantile of the members' *leave-one-out* distances
//!   (each member against the centroid of the others, `n/(n−1)` times its
//!   plain distance), which is what a new query on the topic looks like;
//! * **negatives**: the largest radius at which at most a target share of
//!   other routable clusters' members would be routed here (those whose
//!   nearest centroid this is), because another topic's query taken here is
//!   exactly the error to bound.
//!
//! The radius is the smaller of the two, and the report says what it costs
//! (true-accept rate on members) and what it lets in (false-accept rate).
//!
//! Two guards keep a few users from taking over a topic: a cluster whose
//! members come from fewer than a minimum of distinct users is not routable
//! (its queries go to the nearest community cluster, or pass through), and
//! when a query's two nearest routable clusters are within a margin of each
//! other, the one with more distinct users takes it.

use super::check_matrix;
use super::error::ClusterError;
use super::kmeans::sq_dist_f32;
use super::route::{centroids as mean_rows, linear_quantile as quantile};

/// The router's decision for `query`: the row of `centroids` (row-major,
/// `thresholds.len() × dim`) it is routed to, or `None` (pass through).
///
/// The nearest row wins if the query lies within its threshold, except
/// that when the second-nearest row is within `margin` of the nearest, lies
/// within its own threshold and has more distinct `users`, the second
/// takes it: an ambiguous query goes to the community, not the minority.
///
/// Runs on the request path: one pass over the centroids, no allocation.
/// `None` on malformed input (lengths that disagree, a NaN query).
pub fn route_choice(
    centroids: &[f32],
    dim: usize,
    thresholds: &[f32],
    users: &[u32],
    margin: f32,
    query: &[f32],
) -> Option<usize> {
    let rows = thresholds.len();
    if dim == 0 || query.len() != dim || centroids.len() != rows * dim || users.len() != rows {
        return None;
    }
    let mut best: Option<(usize, f32)> = None;
    let mut second: Option<(usize, f32)> = None;
    for (i, c) in centroids.chunks_exact(dim).enumerate() {
        let d = sq_dist_f32(query, c);
        if d.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| d < b) {
            second = best;
            best = Some((i, d));
        } else if second.is_none_or(|(_, s)| d < s) {
            second = Some((i, d));
        }
    }
    let (i, d1) = best.map(|(i, d)| (i, d.sqrt()))?;
    if let Some((j, d2)) = second.map(|(j, d)| (j, d.sqrt()))
        && d2 - d1 < margin
        && users[j] > users[i]
        && d2 <= thresholds[j]
    {
        return Some(j);
    }
    (d1 <= thresholds[i]).then_some(i)
}

/// The points [`calibrate`] works on.
#[derive(Debug, Clone, Copy)]
pub struct RoutePoints<'a> {
    /// Row-major `n × dim` unit vectors in the routing space.
    pub points: &'a [f32],
    /// Vector length.
    pub dim: usize,
    /// Each point's cluster.
    pub labels: &'a [usize],
}

/// What [`calibrate`] aims for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CalibrationOptions {
    /// Quantile of the members' leave-one-out distances the radius keeps
    /// (the design's 0.95): the intended true-accept rate.
    pub quantile: f64,
    /// Most share of other routable clusters' members a cluster may take.
    pub false_accept: f64,
    /// [`route_choice`]'s margin.
    pub margin: f32,
}

/// One cluster's calibrated acceptance.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterCalibration {
    /// Whether the router considers the cluster at all.
    pub routable: bool,
    /// The acceptance radius (0 when not routable).
    pub threshold: f32,
    /// The radius the members alone ask for.
    pub member_radius: f32,
    /// The largest radius the negatives allow, when they constrain it.
    pub negative_radius: Option<f32>,
    /// Share of members within `threshold` of the centroid of the others.
    pub true_accept: f64,
    /// Share of `negatives` the router sends here.
    pub false_accept: f64,
    /// Members of the other routable clusters.
    pub negatives: usize,
    /// Share of the members the router sends here.
    pub agreement: f64,
}

/// [`calibrate`]'s result.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Row-major `k × dim` centroids (plain means, as routed with).
    pub centroids: Vec<f32>,
    /// Per cluster.
    pub clusters: Vec<ClusterCalibration>,
    /// Share of all points the router sends to their own cluster.
    pub agreement: f64,
    /// The same over points of routable clusters only.
    pub agreement_routable: f64,
    /// Share of all points the router passes through.
    pub passthrough: f64,
}

/// Calibrates each cluster's routing radius (see the module docs) and
/// measures how the router then treats every point: `data.points`
/// (row-major `n × dim`, unit vectors in the routing space) with their
/// cluster `labels` (`< k`), which clusters are `routable`, and each one's
/// distinct `users`. The calibration's false-accept step uses plain
/// nearest-centroid routing; the reported rates and agreement use [`route_choice`] itself,
/// margin included, so they are what the proxy will do.
///
/// # Errors
///
/// A malformed matrix, labels or per-cluster slices of another length
/// than `k`, or options outside `[0, 1]`.
pub fn calibrate(
    data: &RoutePoints<'_>,
    k: usize,
    routable: &[bool],
    users: &[u32],
    options: &CalibrationOptions,
) -> Result<Calibration, ClusterError> {
    let RoutePoints {
        points,
        dim,
        labels,
    } = *data;
    for q in [options.quantile, options.false_accept] {
        if !(0.0..=1.0).contains(&q) {
            return Err(ClusterError::BadQuantile(q));
        }
    }
    for (what, len) in [("routable", routable.len()), ("users", users.len())] {
        if len != k {
            return Err(ClusterError::Length {
                what,
                got: len,
                expected: k,
            });
        }
    }
    let centroids = mean_rows(points, dim, labels, k)?;
    let n = check_matrix(points, dim)?;
    let mut size = vec![0usize; k];
    for &l in labels {
        size[l] += 1;
    }
    let rows: Vec<usize> = (0..k).filter(|&c| routable[c]).collect();
    let row_matrix: Vec<f32> = rows
        .iter()
        .flat_map(|&c| centroids[c * dim..(c + 1) * dim].iter().copied())
        .collect();
    let routable_points: usize = rows.iter().map(|&c| size[c]).sum();
    let centre = |c: usize| &centroids[c * dim..(c + 1) * dim];

    // Positives (leave-one-out) and negatives (other routable clusters'
    // points whose nearest routable centroid is this one).
    let mut positives: Vec<Vec<f32>> = vec![Vec::new(); k];
    let mut negatives: Vec<Vec<f32>> = vec![Vec::new(); k];
    for (x, &l) in points.chunks_exact(dim).zip(labels) {
        if !routable[l] {
            continue;
        }
        let d = sq_dist_f32(x, centre(l)).sqrt();
        let m = size[l];
        positives[l].push(if m > 1 {
            d * m as f32 / (m - 1) as f32
        } else {
            0.0
        });
        let nearest = rows
            .iter()
            .map(|&c| (c, sq_dist_f32(x, centre(c))))
            .filter(|(_, d)| !d.is_nan())
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((c, d)) = nearest
            && c != l
        {
            negatives[c].push(d.sqrt());
        }
    }
    let mut clusters: Vec<ClusterCalibration> = (0..k)
        .map(|c| {
            if !routable[c] {
                return ClusterCalibration {
                    routable: false,
                    threshold: 0.0,
                    member_radius: 0.0,
                    negative_radius: None,
                    true_accept: 0.0,
                    false_accept: 0.0,
                    negatives: 0,
                    agreement: 0.0,
                };
            }
            let member_radius = quantile(&mut positives[c], options.quantile);
            let others = routable_points - size[c];
            let allowed = (options.false_accept * others as f64).floor() as usize;
            let neg = &mut negatives[c];
            neg.sort_unstable_by(f32::total_cmp);
            // Just inside the first negative beyond the allowance.
            let negative_radius = neg.get(allowed).map(|d| d.next_down().max(0.0));
            let threshold = negative_radius.map_or(member_radius, |r| r.min(member_radius));
            let within = positives[c].iter().filter(|d| **d <= threshold).count();
            ClusterCalibration {
                routable: true,
                threshold,
                member_radius,
                negative_radius,
                true_accept: ratio(within, positives[c].len()),
                false_accept: 0.0,
                negatives: others,
                agreement: 0.0,
            }
        })
        .collect();

    // What the router does with every point, with these thresholds.
    let thresholds: Vec<f32> = rows.iter().map(|&c| clusters[c].threshold).collect();
    let row_users: Vec<u32> = rows.iter().map(|&c| users[c]).collect();
    let mut agree = vec![0usize; k];
    let mut taken = vec![0usize; k];
    let mut passed = 0usize;
    for (x, &l) in points.chunks_exact(dim).zip(labels) {
        let routed = route_choice(&row_matrix, dim, &thresholds, &row_users, options.margin, x)
            .map(|r| rows[r]);
        match routed {
            None => passed += 1,
            Some(c) if c == l => agree[c] += 1,
            Some(c) if routable[l] => taken[c] += 1,
            Some(_) => {}
        }
    }
    for (c, cal) in clusters.iter_mut().enumerate() {
        cal.agreement = ratio(agree[c], size[c]);
        if cal.routable {
            cal.false_accept = ratio(taken[c], cal.negatives);
        }
    }
    let agreed: usize = agree.iter().sum();
    Ok(Calibration {
        centroids,
        clusters,
        agreement: ratio(agreed, n),
        agreement_routable: ratio(agreed, routable_points),
        passthrough: ratio(passed, n),
    })
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::cluster::rng::SplitMix64;

    /// `n` unit vectors around axis `axis` of `dim`: the axis plus noise of
    /// scale `noise` on every coordinate, normalised.
    fn topic(rng: &mut SplitMix64, dim: usize, axis: usize, n: usize, noise: f32) -> Vec<f32> {
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let mut v: Vec<f32> = (0..dim)
                .map(|_| (rng.next_f64() as f32 - 0.5) * 2.0 * noise)
                .collect();
            v[axis] += 1.0;
            crate::cluster::l2_normalize(&mut v);
            out.extend(v);
        }
        out
    }

    const OPTIONS: CalibrationOptions = CalibrationOptions {
        quantile: 0.95,
        false_accept: 0.02,
        margin: 0.05,
    };

    #[test]
    fn the_radius_meets_the_false_accept_target_and_an_unseen_topic_is_rejected() {
        let dim = 32;
        let mut rng = SplitMix64::new(7);
        // Two topics; topic 1 is broad and overlaps topic 0's edge.
        let mut points = topic(&mut rng, dim, 0, 100, 0.15);
        let mut broad = topic(&mut rng, dim, 1, 100, 0.15);
        // A fifth of topic 1 leans towards topic 0.
        for row in broad.chunks_exact_mut(dim).take(20) {
            row[0] += 2.0;
            crate::cluster::l2_normalize(row);
        }
        points.extend(&broad);
        let labels: Vec<usize> = (0..200).map(|i| i / 100).collect();
        let cal = calibrate(
            &RoutePoints {
                points: &points,
                dim,
                labels: &labels,
            },
            2,
            &[true, true],
            &[50, 50],
            &OPTIONS,
        )
        .unwrap();
        let zero = &cal.clusters[0];
        // The negatives constrain topic 0: its radius sits below the
        // members' own, and at most 2% of topic 1 is taken.
        let r = zero.negative_radius.unwrap();
        assert!(r < zero.member_radius, "{zero:?}");
        assert_eq!(zero.threshold, r);
        assert!(zero.false_accept <= 0.02, "{zero:?}");
        assert!(
            zero.true_accept > 0.3 && zero.true_accept < 0.95,
            "{zero:?}"
        );
        // Exactly two of topic 1's leaning points (2% of 100) lie within.
        let inside = broad
            .chunks_exact(dim)
            .filter(|x| sq_dist_f32(x, &cal.centroids[..dim]).sqrt() <= zero.threshold)
            .count();
        assert!(inside <= 2, "{inside}");
        // Topic 1 is not constrained by topic 0 (none of topic 0 is nearer
        // to it): its radius is its members' own.
        assert_eq!(cal.clusters[1].threshold, cal.clusters[1].member_radius);
        // An unseen topic (axis 2) is routed nowhere.
        let unseen = topic(&mut rng, dim, 2, 50, 0.15);
        let thresholds: Vec<f32> = cal.clusters.iter().map(|c| c.threshold).collect();
        let routed = unseen
            .chunks_exact(dim)
            .filter(|q| {
                route_choice(&cal.centroids, dim, &thresholds, &[50, 50], 0.05, q).is_some()
            })
            .count();
        assert_eq!(routed, 0, "unseen queries routed");
        // New queries on topic 1 still route there.
        let fresh = topic(&mut rng, dim, 1, 50, 0.15);
        let home = fresh
            .chunks_exact(dim)
            .filter(|q| {
                route_choice(&cal.centroids, dim, &thresholds, &[50, 50], 0.05, q) == Some(1)
            })
            .count();
        assert!(home >= 45, "{home} of 50 new topic-1 queries routed home");
        // The price of the target: topic 0 keeps fewer of its own logs.
        assert!(
            cal.clusters[0].agreement < cal.clusters[1].agreement,
            "{cal:?}"
        );
        assert!(cal.agreement > 0.5 && cal.agreement_routable == cal.agreement);
    }

    #[test]
    fn a_minority_cluster_takes_no_new_queries_of_its_topic() {
        let dim = 32;
        let mut rng = SplitMix64::new(11);
        // Cooking: 100 logs of many users. The knife user: 24 logs on the
        // same topic, slightly off-centre (their own words in the query).
        let mut points = topic(&mut rng, dim, 0, 100, 0.2);
        let mut knife = topic(&mut rng, dim, 0, 24, 0.2);
        for row in knife.chunks_exact_mut(dim) {
            row[3] += 0.2;
            crate::cluster::l2_normalize(row);
        }
        points.extend(&knife);
        points.extend(topic(&mut rng, dim, 1, 60, 0.2));
        let labels: Vec<usize> = (0..184)
            .map(|i| match i {
                0..100 => 0,
                100..124 => 1,
                _ => 2,
            })
            .collect();
        let users = [80, 1, 50];
        let min_users = 3;
        let routable: Vec<bool> = users.iter().map(|&u| u >= min_users).collect();
        let cal = calibrate(
            &RoutePoints {
                points: &points,
                dim,
                labels: &labels,
            },
            3,
            &routable,
            &users,
            &OPTIONS,
        )
        .unwrap();
        assert!(!cal.clusters[1].routable && cal.clusters[1].threshold == 0.0);
        let rows: Vec<usize> = (0..3).filter(|&c| routable[c]).collect();
        let matrix: Vec<f32> = rows
            .iter()
            .flat_map(|&c| cal.centroids[c * dim..(c + 1) * dim].to_vec())
            .collect();
        let thresholds: Vec<f32> = rows.iter().map(|&c| cal.clusters[c].threshold).collect();
        let row_users: Vec<u32> = rows.iter().map(|&c| users[c]).collect();
        let fresh = topic(&mut rng, dim, 0, 100, 0.2);
        let mut to = [0usize; 3];
        let mut passed = 0;
        for q in fresh.chunks_exact(dim) {
            match route_choice(&matrix, dim, &thresholds, &row_users, 0.05, q) {
                Some(r) => to[rows[r]] += 1,
                None => passed += 1,
            }
        }
        assert_eq!(to[1], 0, "the minority cluster takes nothing");
        assert!(
            to[0] >= 85,
            "cooking keeps its new queries: {to:?}, {passed} passed"
        );
        // The minority's own logs go to cooking: counted as disagreement,
        // so agreement over routable clusters is higher than over all.
        assert!(cal.agreement_routable > cal.agreement);
    }

    #[test]
    fn an_ambiguous_query_goes_to_the_cluster_with_more_users() {
        // Two centroids 0.04 apart on a line, both with wide radii.
        let c = [0.0, 0.0, 0.04, 0.0];
        let t = [1.0, 1.0];
        // Nearer to row 1 (3 users) by less than the margin: row 0 (30) wins.
        assert_eq!(
            route_choice(&c, 2, &t, &[30, 3], 0.05, &[0.03, 0.0]),
            Some(0)
        );
        // Without the margin, or with the users the other way, the nearest.
        assert_eq!(
            route_choice(&c, 2, &t, &[30, 3], 0.0, &[0.03, 0.0]),
            Some(1)
        );
        assert_eq!(
            route_choice(&c, 2, &t, &[3, 30], 0.05, &[0.03, 0.0]),
            Some(1)
        );
        // The community cluster must still accept the query itself.
        assert_eq!(
            route_choice(&c, 2, &[0.02, 1.0], &[30, 3], 0.05, &[0.03, 0.0]),
            Some(1)
        );
        // Beyond the nearest's radius and nobody else's: pass through.
        assert_eq!(
            route_choice(&c, 2, &[0.1, 0.1], &[1, 1], 0.05, &[0.5, 0.5]),
            None
        );
        // Malformed input.
        assert_eq!(route_choice(&c, 2, &t, &[1], 0.05, &[0.0, 0.0]), None);
        assert_eq!(
            route_choice(&c, 2, &t, &[1, 1], 0.05, &[f32::NAN, 0.0]),
            None
        );
    }
}
