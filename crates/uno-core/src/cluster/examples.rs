//! Routing by logged examples: a request goes to the cluster of the logged
//! query most like it, when that likeness reaches a bar calibrated on the
//! clusters' own members (issue 23, "route in a space that separates
//! topics" and "unseen means unseen").
//!
//! Why examples rather than a centroid and a radius? A topic's queries are
//! not a ball: "how much flour for banana bread" and "how long to rest a
//! beef stew" share no word, and their mean is close to neither; a radius
//! wide enough to take both takes in other topics and unseen ones too. The
//! nearest logged example follows the shape of the topic, and a new query
//! about something nobody asked is far from every example. Vectors are
//! sparse (`(feature hash, weight)`, sorted by hash, unit length; see
//! `uno_llm::HashingEmbedder::sparse_weighted`), so similarity counts
//! only shared words, never bucket collisions.
//!
//! [`choose_by_examples`] is the decision the proxy makes; the worker's
//! [`calibrate_examples`] runs the very same decision on every logged
//! query with that query left out, so the figures it reports (agreement,
//! false accepts) are what the proxy would do.

/// The dot product of two sparse vectors sorted by feature hash (their
/// cosine similarity when both are unit length).
pub fn sparse_dot(a: &[(u64, f32)], b: &[(u64, f32)]) -> f32 {
    let (mut i, mut j, mut sum) = (0, 0, 0.0f32);
    while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
        match x.0.cmp(&y.0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                sum += x.1 * y.1;
                i += 1;
                j += 1;
            }
        }
    }
    sum
}

/// At most `max` of `members`, evenly spread over them (all when there are
/// no more than `max`), in member order.
pub fn select_examples(members: &[usize], max: usize) -> Vec<usize> {
    if members.len() <= max {
        return members.to_vec();
    }
    (0..max).map(|i| members[i * members.len() / max]).collect()
}

/// Neighbours an example's cluster is checked against in
/// [`edit_examples`]: Wilson's three.
pub const EDIT_NEIGHBOURS: usize = 3;

/// The examples worth routing by: `examples` (per cluster, log indices
/// into `vectors`) less every example whose [`EDIT_NEIGHBOURS`] most
/// similar other examples (those sharing any feature with it) hold more
/// of one other routable cluster than of its own (Wilson's editing of a
/// nearest-neighbour classifier).
///
/// Why: clustering and routing use different spaces, so a cluster can hold
/// a few members that, in the routing space, sit among another topic's
/// queries ("What is an API?" clustered with the Python questions). As
/// examples they would pull that other topic's new queries to the wrong
/// cluster, a wrong route rather than a missed one. Left out, such a
/// member still counts for its cluster's rules; it only stops deciding
/// routes. A cluster with a single example keeps it (there is nothing of
/// its own to compare with), and a cluster whose every example would go
/// keeps them all rather than silently stop being routable.
///
/// Why neighbours and not the single nearest: a misplaced member rarely
/// comes alone. The logged queries the worker places follow it ("parsing
/// JSON from an API" asked again, placed beside the one Python question
/// clustered with the glossary), and the nearest example of each is then
/// another of them; its three nearest still include the Python
/// cluster's own questions.
pub fn edit_examples(
    vectors: &[Vec<(u64, f32)>],
    examples: &[Vec<usize>],
    routable: &[bool],
) -> Vec<Vec<usize>> {
    let is_routable = |c: usize| routable.get(c).copied().unwrap_or(false);
    let indexed: Vec<(usize, usize)> = examples
        .iter()
        .enumerate()
        .filter(|(c, _)| is_routable(*c))
        .flat_map(|(c, ex)| ex.iter().map(move |&e| (c, e)))
        .filter(|&(_, e)| e < vectors.len())
        .collect();
    examples
        .iter()
        .enumerate()
        .map(|(c, ex)| {
            if !is_routable(c) || ex.len() < 2 {
                return ex.clone();
            }
            let kept: Vec<usize> = ex
                .iter()
                .copied()
                .filter(|&i| {
                    let Some(v) = vectors.get(i) else {
                        return false;
                    };
                    let mut near: Vec<(f32, usize)> = indexed
                        .iter()
                        .filter(|&&(_, e)| e != i)
                        .map(|&(cluster, e)| (sparse_dot(v, &vectors[e]), cluster))
                        .filter(|(s, _)| *s > 0.0)
                        .collect();
                    near.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
                    near.truncate(EDIT_NEIGHBOURS);
                    let votes = |cluster: usize| near.iter().filter(|x| x.1 == cluster).count();
                    let own = votes(c);
                    near.iter().filter(|x| x.1 != c).all(|x| votes(x.1) <= own)
                })
                .collect();
            if kept.is_empty() { ex.clone() } else { kept }
        })
        .collect()
}

/// Share of a cluster's examples a feature must be in to define it
/// ([`defining_features`]): nearly all, so a typo or a rare wording in a
/// few examples does not keep a topic's word from defining it.
pub const DEFINING_SHARE: f64 = 0.8;

/// Fewest examples a cluster needs before any feature defines it: with
/// fewer, "in every example" says little.
pub const DEFINING_MIN_EXAMPLES: usize = 5;

/// The features (hashes) in at least [`DEFINING_SHARE`] of `examples`
/// (indices into `vectors`), sorted; none with fewer than
/// [`DEFINING_MIN_EXAMPLES`] examples.
///
/// Why: a query can reach a cluster's bar on its template alone. "How do
/// I deal with a flat tyre?" shares "how", "I", "deal with" with "In
/// Python, how should I deal with a circular import?", and the Python
/// cluster took questions on cars (issue 23: most of the simulated
/// community's unseen queries taken). Every one of that cluster's
/// questions says "Python"; a question that does not is not one of
/// them, however close its other words. Clusters whose questions share
/// no word (most topics) have no defining feature and are unaffected.
pub fn defining_features(vectors: &[Vec<(u64, f32)>], examples: &[usize]) -> Vec<u64> {
    if examples.len() < DEFINING_MIN_EXAMPLES {
        return Vec::new();
    }
    let mut counts: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    for &e in examples {
        for &(h, _) in vectors.get(e).map_or(&[][..], Vec::as_slice) {
            *counts.entry(h).or_default() += 1;
        }
    }
    let need = (DEFINING_SHARE * examples.len() as f64).ceil() as usize;
    let mut out: Vec<u64> = counts
        .into_iter()
        .filter(|&(_, n)| n >= need)
        .map(|(h, _)| h)
        .collect();
    out.sort_unstable();
    out
}

/// Whether a query whose features satisfy `has` may go to a cluster with
/// `required` defining features: it has one of them, or there are none.
pub fn admits(required: &[u64], has: impl Fn(u64) -> bool) -> bool {
    required.is_empty() || required.iter().any(|&h| has(h))
}

/// Largest share of a cluster's examples another cluster's defining
/// feature may be in for queries with that feature to be kept out of it
/// ([`route_marks`]).
pub const STRANGER_SHARE: f64 = 0.2;

/// Largest share of the other routable clusters' examples, pooled, a
/// defining feature found in two or more of them may be in and still
/// keep queries out ([`route_marks`]): a word spread thinly over
/// the other topics is common, even where no one cluster holds it often.
pub const POOLED_STRANGER_SHARE: f64 = 0.05;

/// A tenant's routing marks, per cluster ([`route_marks`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMarks {
    /// The features a query must have one of to be taken there (none:
    /// anything may come): its defining features that are a topic's mark.
    pub required: Vec<Vec<u64>>,
    /// The features that keep a query out of it: other clusters' marks
    /// that are strangers there.
    pub excluded: Vec<Vec<u64>>,
}

/// Each routable cluster's marks from its defining features (`defining`,
/// per cluster, from [`defining_features`]), less those that are no
/// topic's mark ([`common_marks`]). A cluster requires its own marks, and
/// the other clusters' marks that are in at most [`STRANGER_SHARE`] of
/// its own examples keep queries out of it.
///
/// Why required less the common words: a function word can be in nearly
/// every example of a cluster by the accident of its subjects ("in" in "a
/// week in Portugal", "three days in Kyoto"), and then the topic's
/// questions without it ("a rail journey through the Alps") were turned
/// away; where another cluster defines the same word ("in Python"), it
/// marks neither.
///
/// Why excluded: the mirror of defining features. Every question of the
/// Python cluster says "Python"; a glossary cluster that MiniLM gave one
/// "parsing JSON from an API in Python" question (and the logged repeats
/// of it) took new Python questions on that subject through their shared
/// words, "a topic losing its queries to a minority cluster" (issue 23).
/// A question naming another cluster's mark belongs with that cluster, or
/// with a cluster where the mark is at home, never with one where it is a
/// stranger.
pub fn route_marks(
    vectors: &[Vec<(u64, f32)>],
    examples: &[Vec<usize>],
    routable: &[bool],
    defining: &[Vec<u64>],
) -> RouteMarks {
    let is_routable = |c: usize| routable.get(c).copied().unwrap_or(false);
    let common = common_marks(vectors, examples, routable, defining);
    let is_mark = |h: &u64| common.binary_search(h).is_err();
    let required = defining
        .iter()
        .map(|r| r.iter().copied().filter(is_mark).collect())
        .collect();
    let mut excluded: Vec<Vec<u64>> = vec![Vec::new(); examples.len()];
    for h in all_marks(routable, defining).into_iter().filter(is_mark) {
        let defines = |c: usize| defining.get(c).is_some_and(|r| r.contains(&h));
        for c in (0..examples.len()).filter(|&c| is_routable(c) && !defines(c)) {
            if share_of(vectors, examples, c, h) <= STRANGER_SHARE {
                excluded[c].push(h);
            }
        }
    }
    RouteMarks { required, excluded }
}

/// Every routable cluster's defining features, sorted, once each.
fn all_marks(routable: &[bool], required: &[Vec<u64>]) -> Vec<u64> {
    let mut marks: Vec<u64> = required
        .iter()
        .enumerate()
        .filter(|(c, _)| routable.get(*c).copied().unwrap_or(false))
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    marks.sort_unstable();
    marks.dedup();
    marks
}

/// Share of cluster `c`'s examples whose vector has feature `h`.
fn share_of(vectors: &[Vec<(u64, f32)>], examples: &[Vec<usize>], c: usize, h: u64) -> f64 {
    let ex = examples.get(c).map_or(&[][..], Vec::as_slice);
    if ex.is_empty() {
        return 0.0;
    }
    let n = ex
        .iter()
        .filter(|&&e| {
            vectors
                .get(e)
                .is_some_and(|v| v.binary_search_by_key(&h, |f| f.0).is_ok())
        })
        .count();
    n as f64 / ex.len() as f64
}

/// The defining features (sorted) that are common words rather than one
/// topic's mark: defined by two or more routable clusters, held by a
/// cluster of at least [`DEFINING_MIN_EXAMPLES`] examples that does not
/// define it in more than [`STRANGER_SHARE`] of them, or spread thinly
/// (two or more such clusters, more than [`POOLED_STRANGER_SHARE`] of
/// their examples together: "the" defining a history cluster whose
/// subjects all have it, and in a tenth of every other topic's questions,
/// "the best soil", "the tax office").
fn common_marks(
    vectors: &[Vec<(u64, f32)>],
    examples: &[Vec<usize>],
    routable: &[bool],
    required: &[Vec<u64>],
) -> Vec<u64> {
    let is_routable = |c: usize| routable.get(c).copied().unwrap_or(false);
    all_marks(routable, required)
        .into_iter()
        .filter(|&h| {
            let defines = |c: usize| required.get(c).is_some_and(|r| r.contains(&h));
            let definers = (0..examples.len())
                .filter(|&c| is_routable(c) && defines(c))
                .count();
            let others: Vec<(usize, f64)> = (0..examples.len())
                .filter(|&c| is_routable(c) && !defines(c))
                .map(|c| (c, share_of(vectors, examples, c, h)))
                .collect();
            let holders = others.iter().filter(|&&(_, s)| s > 0.0).count();
            let (held, outside) = others
                .iter()
                .map(|&(c, s)| {
                    let n = examples[c].len() as f64;
                    (s * n, n)
                })
                .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            let spread_thinly =
                holders >= 2 && outside > 0.0 && held / outside > POOLED_STRANGER_SHARE;
            definers >= 2
                || spread_thinly
                || others
                    .iter()
                    .any(|&(c, s)| s > STRANGER_SHARE && examples[c].len() >= DEFINING_MIN_EXAMPLES)
        })
        .collect()
}

/// Whether a query whose features satisfy `has` may go to a cluster with
/// `required` defining and `excluded` features ([`admits`],
/// [`route_marks`]).
pub fn admits_query(required: &[u64], excluded: &[u64], has: impl Fn(u64) -> bool) -> bool {
    admits(required, &has) && !excluded.iter().any(|&h| has(h))
}

/// A routable cluster's best similarity to a query, for the decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The cluster (index into the thresholds and users).
    pub cluster: usize,
    /// Its most similar example's cosine similarity to the query.
    pub similarity: f32,
}

/// The proxy's decision from the two most similar clusters (`first` the
/// more similar): `first` when its similarity reaches its bar (`1 −
/// threshold`, thresholds being cosine distances), except that when
/// `second` is within `margin` of it, also reaches its own bar and has
/// more distinct users, `second` wins (a few users' examples cannot take
/// a query the community's cluster is as close to). `None`: pass through.
pub fn choose_by_examples(
    first: Option<Candidate>,
    second: Option<Candidate>,
    thresholds: &[f32],
    users: &[u32],
    margin: f32,
) -> Option<usize> {
    // A query sharing nothing with a cluster's examples is never its,
    // whatever the bar.
    let accepts = |c: &Candidate| {
        c.similarity > 0.0
            && thresholds
                .get(c.cluster)
                .is_some_and(|t| 1.0 - c.similarity <= *t)
    };
    let first = first?;
    if let Some(second) = second
        && first.similarity - second.similarity <= margin
        && accepts(&second)
        && users.get(second.cluster) > users.get(first.cluster)
    {
        return Some(second.cluster);
    }
    accepts(&first).then_some(first.cluster)
}

/// The two most similar clusters in `scores` (one similarity per example,
/// `cluster_of` its cluster), skipping `skip` (the left-out example).
pub fn best_two(
    scores: impl Iterator<Item = (usize, f32)>,
    cluster_of: &[usize],
    skip: Option<usize>,
) -> (Option<Candidate>, Option<Candidate>) {
    let mut first: Option<Candidate> = None;
    let mut second: Option<Candidate> = None;
    for (e, s) in scores {
        if Some(e) == skip || s.is_nan() {
            continue;
        }
        let Some(&cluster) = cluster_of.get(e) else {
            continue;
        };
        let candidate = Candidate {
            cluster,
            similarity: s,
        };
        match first {
            Some(f) if f.cluster == cluster => {
                if s > f.similarity {
                    first = Some(candidate);
                }
            }
            Some(f) if s > f.similarity => {
                second = Some(f);
                first = Some(candidate);
            }
            None => first = Some(candidate),
            Some(_) => {
                if second.is_none_or(|x| s > x.similarity) {
                    second = Some(candidate);
                }
            }
        }
    }
    (first, second)
}

/// Similarity at or above which two routing vectors are the same text
/// (up to rounding): a question asked again.
const SAME_TEXT: f32 = 0.9999;

/// A routable cluster's bar (a similarity): the `quantile` of its own
/// members' leave-one-out similarities, drawn toward the tenant's pooled
/// bar `pooled` as if that were `prior` members more (`n / (n + prior)`
/// of the cluster's own, the rest pooled). `own` is reordered.
///
/// Why per cluster: topics differ in how alike their questions are. A
/// glossary ("What is X?", "Define X") whose subjects never repeat has
/// members far apart, and a bar pooled with tightly-worded topics turns
/// away a fifth of its new questions; a topic worded the same way every
/// time ("How often should I water X?") is one whose template an unseen
/// question can share, and a bar pooled with loose topics lets those
/// through. Why drawn toward the pool: a cluster of eight members has
/// no stable quantile of its own. No members of its own: the pooled bar.
pub fn cluster_bar(own: &mut [f32], pooled: f32, quantile: f64, prior: f64) -> f32 {
    if own.is_empty() || !pooled.is_finite() {
        return pooled;
    }
    let n = own.len() as f64;
    let w = n / (n + prior.max(0.0));
    let q = f64::from(super::route::linear_quantile(own, quantile));
    (w * q + (1.0 - w) * f64::from(pooled)) as f32
}

/// What [`calibrate_examples`] needs.
#[derive(Debug, Clone, Copy)]
pub struct ExampleInputs<'a> {
    /// Every log's sparse routing vector.
    pub vectors: &'a [Vec<(u64, f32)>],
    /// Every log's cluster.
    pub labels: &'a [usize],
    /// Per cluster: routable.
    pub routable: &'a [bool],
    /// Per cluster: distinct users.
    pub users: &'a [u32],
    /// Per cluster: its examples (log indices; empty when not routable).
    pub examples: &'a [Vec<usize>],
    /// Share of members the bar may leave out.
    pub quantile: f64,
    /// The decision's margin.
    pub margin: f32,
    /// The first `bar_logs` vectors set the bar (the clusters' members);
    /// the rest (logged queries placed by the worker) are examples only.
    pub bar_logs: usize,
    /// How many members' worth of weight the tenant's pooled bar has
    /// against a cluster's own ([`cluster_bar`]).
    pub bar_prior: f64,
    /// Per cluster: its defining features ([`defining_features`]); a log
    /// with none of a cluster's scores 0 against its examples, as the
    /// proxy scores a query.
    pub required: &'a [Vec<u64>],
    /// Per cluster: the features that keep a log out of it
    /// ([`route_marks`]), as the proxy keeps a query out.
    pub excluded: &'a [Vec<u64>],
}

/// Per cluster, how its bar does on the logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExampleClusterCalibration {
    /// Share of members whose most similar other example of the cluster
    /// reaches the bar (an estimate of new in-topic queries accepted).
    pub true_accept: f64,
    /// Share of other clusters' logs the router sends here.
    pub false_accept: f64,
    /// How many such logs there were.
    pub negatives: usize,
    /// Share of the members the router sends here.
    pub agreement: f64,
}

/// The calibration of a tenant's example router.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExampleCalibration {
    /// Per cluster, its bar as a cosine distance (`1 − similarity`,
    /// [`cluster_bar`]); 0 for a cluster that is not routable and for
    /// every cluster when nothing is (nothing but an identical text would
    /// pass, and nothing is indexed anyway).
    pub thresholds: Vec<f32>,
    /// Per cluster.
    pub clusters: Vec<ExampleClusterCalibration>,
    /// Share of logs routed to their own cluster (left out of the index).
    pub agreement: f64,
    /// The same over logs of routable clusters.
    pub agreement_routable: f64,
    /// Share of logs passed through.
    pub passthrough: f64,
}

/// Calibrates the example router on the logs themselves: each routable
/// cluster's bar is the `quantile` of its members' leave-one-out
/// similarity to the cluster's other examples, drawn toward the same
/// quantile pooled over the tenant's routable clusters ([`cluster_bar`]),
/// then every log is routed with itself left out, as the proxy would route
/// it, to report agreement and false accepts. Leave-one-out also leaves
/// out the same question asked again: a repeat passes any bar, and says
/// nothing about how close a new question comes.
pub fn calibrate_examples(inputs: &ExampleInputs<'_>) -> ExampleCalibration {
    let k = inputs.routable.len();
    let n = inputs.vectors.len().min(inputs.labels.len());
    let mut example_logs: Vec<usize> = Vec::new();
    let mut cluster_of: Vec<usize> = Vec::new();
    for (c, ex) in inputs.examples.iter().enumerate() {
        if inputs.routable.get(c).copied().unwrap_or(false) {
            example_logs.extend_from_slice(ex);
            cluster_of.extend(std::iter::repeat_n(c, ex.len()));
        }
    }
    // Per cluster, its members' leave-one-out similarities (routable
    // clusters only): each cluster's bar, and pooled, the tenant's.
    let mut own_by: Vec<Vec<f32>> = vec![Vec::new(); k];
    let mut best_own: Vec<Option<f32>> = vec![None; n];
    // Each log's two most similar clusters, itself left out: they do not
    // depend on the bar, so one pass of similarities serves both the bar
    // and the decisions.
    let mut nearest: Vec<(Option<Candidate>, Option<Candidate>)> = vec![(None, None); n];
    let mut sims = vec![0.0f32; example_logs.len()];
    for (i, (best, near)) in best_own.iter_mut().zip(&mut nearest).enumerate() {
        let v = &inputs.vectors[i];
        let has = |h: u64| v.binary_search_by_key(&h, |f| f.0).is_ok();
        let admitted: Vec<bool> = (0..k)
            .map(|c| {
                admits_query(
                    inputs.required.get(c).map_or(&[][..], Vec::as_slice),
                    inputs.excluded.get(c).map_or(&[][..], Vec::as_slice),
                    has,
                )
            })
            .collect();
        for ((s, &e), &c) in sims.iter_mut().zip(&example_logs).zip(&cluster_of) {
            *s = if admitted[c] {
                sparse_dot(v, &inputs.vectors[e])
            } else {
                0.0
            };
        }
        let skip = example_logs.iter().position(|&e| e == i);
        let label = inputs.labels[i];
        let own_best = sims
            .iter()
            .zip(&cluster_of)
            .enumerate()
            .filter(|(e, (s, c))| Some(*e) != skip && **c == label && **s < SAME_TEXT)
            .map(|(_, (s, _))| *s)
            .fold(None, |m: Option<f32>, s| Some(m.map_or(s, |m| m.max(s))));
        *best = own_best;
        *near = best_two(sims.iter().copied().enumerate(), &cluster_of, skip);
        // A member naming another topic's mark (the Python question in
        // the glossary's cluster) is kept out of its own cluster: its 0
        // would drag the bar down for everyone, so it sets none. Members
        // lacking their own cluster's defining feature (a typo in
        // "Python") still count: leaving them out too raised the bars
        // and cost 1-5 points of uno in four of ten seeds.
        let kept_out = inputs
            .excluded
            .get(label)
            .is_some_and(|x| x.iter().any(|&h| has(h)));
        if inputs.routable.get(label).copied().unwrap_or(false)
            && i < inputs.bar_logs
            && !kept_out
            && let Some(s) = own_best
            && let Some(o) = own_by.get_mut(label)
        {
            o.push(s);
        }
    }
    let mut own = own_by.concat();
    let bar = if own.is_empty() {
        f32::INFINITY
    } else {
        super::route::linear_quantile(&mut own, inputs.quantile)
    };
    let bars: Vec<f32> = own_by
        .iter_mut()
        .zip(inputs.routable)
        .map(|(o, &routable)| {
            if routable {
                cluster_bar(o, bar, inputs.quantile, inputs.bar_prior)
            } else {
                f32::INFINITY
            }
        })
        .collect();
    // As cosine distances; an infinite bar (nothing to calibrate on)
    // takes nothing but an identical text.
    let thresholds: Vec<f32> = bars
        .iter()
        .map(|b| {
            if b.is_finite() {
                (1.0 - b).max(0.0)
            } else {
                0.0
            }
        })
        .collect();
    // Each log routed with itself left out, now that the bar is known.
    let routed: Vec<Option<usize>> = nearest
        .iter()
        .map(|&(first, second)| {
            bar.is_finite()
                .then(|| {
                    choose_by_examples(first, second, &thresholds, inputs.users, inputs.margin)
                })
                .flatten()
        })
        .collect();
    let share = |num: usize, den: usize| {
        if den == 0 {
            0.0
        } else {
            num as f64 / den as f64
        }
    };
    let clusters = (0..k)
        .map(|c| {
            let members: Vec<usize> = (0..n).filter(|&i| inputs.labels[i] == c).collect();
            let accepted = members
                .iter()
                .filter(|&&i| best_own[i].is_some_and(|s| s >= bars[c]))
                .count();
            let agreed = members.iter().filter(|&&i| routed[i] == Some(c)).count();
            let negatives = n - members.len();
            let taken = (0..n)
                .filter(|&i| inputs.labels[i] != c && routed[i] == Some(c))
                .count();
            ExampleClusterCalibration {
                true_accept: share(accepted, members.len()),
                false_accept: share(taken, negatives),
                negatives,
                agreement: share(agreed, members.len()),
            }
        })
        .collect();
    let agreed = (0..n)
        .filter(|&i| routed[i] == Some(inputs.labels[i]))
        .count();
    let routable_logs: Vec<usize> = (0..n)
        .filter(|&i| {
            inputs
                .routable
                .get(inputs.labels[i])
                .copied()
                .unwrap_or(false)
        })
        .collect();
    let agreed_routable = routable_logs
        .iter()
        .filter(|&&i| routed[i] == Some(inputs.labels[i]))
        .count();
    ExampleCalibration {
        thresholds,
        clusters,
        agreement: share(agreed, n),
        agreement_routable: share(agreed_routable, routable_logs.len()),
        passthrough: share(routed.iter().filter(|r| r.is_none()).count(), n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(features: &[(u64, f32)]) -> Vec<(u64, f32)> {
        let norm = features.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
        features.iter().map(|(h, w)| (*h, w / norm)).collect()
    }

    /// Calibration inputs with no margin, no defining features, every
    /// log setting the bar, each cluster's bar its own (no prior) and the
    /// lowest of its members' similarities (quantile 0).
    fn inputs<'a>(
        vectors: &'a [Vec<(u64, f32)>],
        labels: &'a [usize],
        routable: &'a [bool],
        users: &'a [u32],
        examples: &'a [Vec<usize>],
    ) -> ExampleInputs<'a> {
        ExampleInputs {
            vectors,
            labels,
            routable,
            users,
            examples,
            quantile: 0.0,
            margin: 0.0,
            bar_logs: usize::MAX,
            bar_prior: 0.0,
            required: &[],
            excluded: &[],
        }
    }

    #[test]
    fn sparse_dot_counts_shared_features_only() {
        let a = [(1, 0.6), (5, 0.8)];
        let b = [(2, 1.0)];
        let c = [(5, 1.0), (9, 0.0)];
        assert_eq!(sparse_dot(&a, &b), 0.0);
        assert!((sparse_dot(&a, &c) - 0.8).abs() < 1e-6);
        assert!((sparse_dot(&a, &a) - 1.0).abs() < 1e-6);
        assert_eq!(sparse_dot(&[], &a), 0.0);
    }

    #[test]
    fn a_feature_in_nearly_every_example_defines_the_cluster() {
        // Feature 7 ("python") in 9 of 10 examples, 8 in half of them.
        let vectors: Vec<Vec<(u64, f32)>> = (0..10u64)
            .map(|i| {
                let mut f = vec![(100 + i, 1.0)];
                if i != 3 {
                    f.push((7, 1.0));
                }
                if i % 2 == 0 {
                    f.push((8, 1.0));
                }
                f.sort_unstable_by_key(|x| x.0);
                v(&f)
            })
            .collect();
        let all: Vec<usize> = (0..10).collect();
        assert_eq!(defining_features(&vectors, &all), vec![7]);
        // Too few examples to say.
        assert!(defining_features(&vectors, &all[..DEFINING_MIN_EXAMPLES - 1]).is_empty());
        assert!(admits(&[7], |h| h == 7));
        assert!(!admits(&[7], |h| h == 8));
        assert!(
            admits(&[], |_| false),
            "no defining feature: anything may come"
        );
    }

    #[test]
    fn a_log_without_a_clusters_defining_feature_is_not_routed_there() {
        // Cluster 0's examples all say 7 ("python") and share a template
        // (1, 2); the last log shares the template but not 7.
        let vectors = vec![
            v(&[(1, 1.0), (2, 1.0), (7, 1.0), (20, 1.0)]),
            v(&[(1, 1.0), (2, 1.0), (7, 1.0), (21, 1.0)]),
            v(&[(1, 1.0), (2, 1.0), (7, 1.0), (22, 1.0)]),
            v(&[(30, 1.0), (31, 1.0)]),
            v(&[(30, 1.0), (32, 1.0)]),
            v(&[(1, 1.0), (2, 1.0), (40, 1.0)]),
        ];
        let labels = [0, 0, 0, 1, 1, 2];
        let examples = [vec![0, 1, 2], vec![3, 4], vec![]];
        let base = ExampleInputs {
            // The pooled bar, which the template alone reaches.
            bar_prior: f64::INFINITY,
            ..inputs(
                &vectors,
                &labels,
                &[true, true, false],
                &[3, 3, 1],
                &examples,
            )
        };
        let open = calibrate_examples(&base);
        assert!(
            open.clusters[0].false_accept > 0.0,
            "the template alone is taken"
        );
        let required = [vec![7], vec![], vec![]];
        let closed = calibrate_examples(&ExampleInputs {
            required: &required,
            ..base
        });
        assert_eq!(closed.clusters[0].false_accept, 0.0);
        assert_eq!(
            closed.clusters[0].agreement, 1.0,
            "its own members still go there"
        );
    }

    /// Routing vectors and, per cluster, its examples.
    type Topics = (Vec<Vec<(u64, f32)>>, Vec<Vec<usize>>);

    /// Five examples of cluster 0, each with feature 7 ("python") and a
    /// word of its own, then those of cluster 1 (`others`).
    fn two_topics(others: &[&[u64]]) -> Topics {
        let mut vectors: Vec<Vec<(u64, f32)>> =
            (0..5u64).map(|i| v(&[(7, 1.0), (100 + i, 1.0)])).collect();
        for o in others {
            let f: Vec<(u64, f32)> = o.iter().map(|&h| (h, 1.0)).collect();
            vectors.push(v(&f));
        }
        let examples = vec![(0..5).collect(), (5..5 + others.len()).collect()];
        (vectors, examples)
    }

    #[test]
    fn another_clusters_defining_feature_keeps_a_query_out_where_it_is_a_stranger() {
        // Cluster 1 holds "python" in one of six examples: a stranger.
        let (vectors, examples) = two_topics(&[&[7, 50], &[51], &[52], &[53], &[54], &[55]]);
        let required = vec![vec![7], vec![]];
        let excluded = route_marks(&vectors, &examples, &[true, true], &required).excluded;
        assert_eq!(excluded, vec![vec![], vec![7]]);
        assert!(!admits_query(&required[1], &excluded[1], |h| h == 7));
        assert!(admits_query(&required[1], &excluded[1], |h| h == 51));
        assert!(admits_query(&required[0], &excluded[0], |h| h == 7));
        // Not routable: its defining feature keeps nobody out.
        let off = route_marks(&vectors, &examples, &[false, true], &required).excluded;
        assert_eq!(off, vec![Vec::<u64>::new(), vec![]]);
    }

    #[test]
    fn a_defining_feature_that_another_cluster_uses_often_keeps_nobody_out() {
        // Cluster 1 holds 7 in two of five examples (a common word there),
        // so 7 is no cluster's mark; with a third, stranger cluster it
        // still keeps nothing out.
        let (mut vectors, mut examples) = two_topics(&[&[7, 50], &[7, 51], &[52], &[53], &[54]]);
        vectors.push(v(&[(60, 1.0)]));
        examples.push(vec![10]);
        let required = vec![vec![7], vec![], vec![]];
        let excluded = route_marks(&vectors, &examples, &[true, true, true], &required).excluded;
        assert!(excluded.iter().all(Vec::is_empty), "{excluded:?}");
        // A small cluster (under five examples) using it often does not
        // make it common: it is simply not kept out.
        let (vectors, examples) = two_topics(&[&[7, 50], &[51]]);
        let excluded = route_marks(&vectors, &examples, &[true, true], &required[..2]).excluded;
        assert_eq!(excluded, vec![Vec::<u64>::new(), vec![]]);
    }

    #[test]
    fn a_defining_feature_spread_thinly_over_other_clusters_keeps_nobody_out() {
        // Feature 7 defines cluster 0 ("the" in every history subject)
        // and is in one of six examples of three other clusters each
        // ("the best soil", "the tax office"): a common word.
        let spread: &[&[u64]] = &[&[7, 50], &[51], &[52], &[53], &[54], &[55]];
        let (mut vectors, mut examples) = two_topics(spread);
        for c in 0..2u64 {
            let first = vectors.len();
            for (i, o) in spread.iter().enumerate() {
                let f: Vec<(u64, f32)> = o
                    .iter()
                    .map(|&h| {
                        if h == 7 {
                            (7, 1.0)
                        } else {
                            (h + 100 * (c + 1) + i as u64, 1.0)
                        }
                    })
                    .collect();
                vectors.push(v(&f));
            }
            examples.push((first..vectors.len()).collect());
        }
        let required = vec![vec![7], vec![], vec![], vec![]];
        let excluded = route_marks(&vectors, &examples, &[true; 4], &required).excluded;
        assert!(excluded.iter().all(Vec::is_empty), "{excluded:?}");
        // In one other cluster only, it is still that cluster's stranger.
        let excluded = route_marks(&vectors, &examples[..2], &[true; 2], &required[..2]).excluded;
        assert_eq!(excluded, vec![vec![], vec![7]]);
    }

    #[test]
    fn a_word_two_clusters_define_or_others_use_marks_neither() {
        // Feature 7 defines cluster 0 and cluster 1 ("in Python", "a week
        // in Portugal"); feature 8 defines cluster 1 alone.
        let mut vectors: Vec<Vec<(u64, f32)>> =
            (0..5u64).map(|i| v(&[(7, 1.0), (100 + i, 1.0)])).collect();
        vectors.extend((0..5u64).map(|i| v(&[(7, 1.0), (8, 1.0), (200 + i, 1.0)])));
        vectors.extend((0..5u64).map(|i| v(&[(300 + i, 1.0)])));
        let examples = vec![(0..5).collect(), (5..10).collect(), (10..15).collect()];
        let required = vec![vec![7], vec![7, 8], vec![]];
        let routable = [true; 3];
        assert_eq!(
            route_marks(&vectors, &examples, &routable, &required).required,
            vec![vec![], vec![8], vec![]]
        );
        let excluded = route_marks(&vectors, &examples, &routable, &required).excluded;
        assert_eq!(excluded, vec![vec![8], vec![], vec![8]]);
        // A cluster that is not routable defines nothing.
        assert_eq!(
            route_marks(&vectors, &examples, &[true, false, true], &required).required[0],
            vec![7]
        );
    }

    #[test]
    fn a_member_its_cluster_keeps_out_does_not_set_the_bar() {
        // Cluster 0's members all say 7 but log 3, which shares nothing
        // with the others and names feature 40 (another topic's mark);
        // the lowest member (quantile 0) sets the bar.
        let vectors = vec![
            v(&[(7, 1.0), (20, 1.0)]),
            v(&[(7, 1.0), (20, 1.0), (21, 1.0)]),
            v(&[(7, 1.0), (21, 1.0)]),
            v(&[(40, 1.0)]),
            v(&[(30, 1.0), (31, 1.0)]),
            v(&[(30, 1.0), (32, 1.0)]),
        ];
        let labels = [0, 0, 0, 0, 1, 1];
        let examples = [vec![0, 1, 2, 3], vec![4, 5]];
        let base = inputs(&vectors, &labels, &[true, true], &[3, 3], &examples);
        let open = calibrate_examples(&base);
        assert_eq!(open.thresholds[0], 1.0, "log 3's 0 sets the bar: {open:?}");
        let excluded = [vec![40], vec![]];
        let kept_out = calibrate_examples(&ExampleInputs {
            excluded: &excluded,
            ..base
        });
        assert!(kept_out.thresholds[0] < 0.6, "{kept_out:?}");
        // Lacking the defining feature still counts (see the comment).
        let required = [vec![7], vec![]];
        let lacking = calibrate_examples(&ExampleInputs {
            required: &required,
            ..base
        });
        assert_eq!(lacking.thresholds[0], 1.0, "{lacking:?}");
    }

    #[test]
    fn calibration_keeps_a_log_out_as_the_proxy_does() {
        // Log 5 ("python" and a word of cluster 1's) is cluster 0's; its
        // nearest example is cluster 1's python stranger (log 4).
        let vectors = vec![
            v(&[(7, 1.0), (20, 1.0)]),
            v(&[(7, 1.0), (21, 1.0)]),
            v(&[(7, 1.0), (22, 1.0)]),
            v(&[(30, 1.0), (31, 1.0)]),
            v(&[(7, 0.3), (30, 1.0), (32, 1.0)]),
            v(&[(7, 0.3), (32, 1.0), (33, 1.0)]),
        ];
        let labels = [0, 0, 0, 1, 1, 0];
        let examples = [vec![0, 1, 2], vec![3, 4]];
        let base = inputs(&vectors, &labels, &[true, true], &[3, 3], &examples);
        let open = calibrate_examples(&base);
        assert!(open.clusters[1].false_accept > 0.0, "{open:?}");
        let excluded = [vec![], vec![7]];
        let closed = calibrate_examples(&ExampleInputs {
            excluded: &excluded,
            ..base
        });
        assert_eq!(closed.clusters[1].false_accept, 0.0, "{closed:?}");
    }

    #[test]
    fn examples_among_another_clusters_queries_stop_routing() {
        // Cluster 0: two "a" queries and one that reads like cluster 1's.
        let vectors = vec![
            v(&[(1, 1.0), (2, 0.5)]),
            v(&[(1, 1.0), (3, 0.5)]),
            v(&[(7, 1.0), (8, 0.9)]),
            v(&[(7, 1.0), (9, 0.5)]),
            v(&[(7, 1.0), (8, 0.2)]),
            // Cluster 2 is not routable: its examples decide nothing.
            v(&[(1, 1.0), (2, 0.5)]),
        ];
        let examples = vec![vec![0, 1, 2], vec![3, 4], vec![5]];
        let routable = [true, true, false];
        let edited = edit_examples(&vectors, &examples, &routable);
        assert_eq!(edited, vec![vec![0, 1], vec![3, 4], vec![5]]);
        // A cluster whose every example reads like another's keeps them.
        let lost = vec![vec![0, 1], vec![2, 4]];
        let mixed = vec![
            v(&[(1, 1.0)]),
            v(&[(2, 1.0)]),
            v(&[(1, 1.0), (2, 0.1)]),
            v(&[(9, 1.0)]),
            v(&[(1, 0.1), (2, 1.0)]),
        ];
        assert_eq!(
            edit_examples(&mixed, &lost, &[true, true]),
            vec![vec![0, 1], vec![2, 4]]
        );
        // A single example stays.
        assert_eq!(
            edit_examples(&vectors, &[vec![2], vec![3, 4]], &[true, true]),
            vec![vec![2], vec![3, 4]]
        );
    }

    #[test]
    fn a_misplaced_example_and_the_query_that_followed_it_stop_routing() {
        // Cluster 0: two glossary questions (1), a Python question (5, 7)
        // clustered with them and a logged repeat of it placed beside it;
        // cluster 1: Python questions (7, 8). Each of the two is the
        // other's nearest example, but two of their three nearest are
        // cluster 1's.
        let vectors = vec![
            v(&[(1, 1.0), (2, 1.0)]),
            v(&[(1, 1.0), (3, 1.0)]),
            v(&[(5, 1.0), (7, 1.0)]),
            v(&[(5, 1.0), (6, 0.3), (7, 1.0)]),
            v(&[(7, 1.0), (8, 1.0)]),
            v(&[(7, 1.0), (8, 1.0), (9, 0.5)]),
            v(&[(5, 0.5), (7, 1.0), (8, 1.0)]),
        ];
        let examples = vec![vec![0, 1, 2, 3], vec![4, 5, 6]];
        assert_eq!(
            edit_examples(&vectors, &examples, &[true, true]),
            vec![vec![0, 1], vec![4, 5, 6]]
        );
    }

    #[test]
    fn examples_are_spread_over_the_members() {
        let members: Vec<usize> = (10..20).collect();
        assert_eq!(select_examples(&members, 20), members);
        assert_eq!(select_examples(&members, 5), vec![10, 12, 14, 16, 18]);
        assert!(select_examples(&members, 0).is_empty());
    }

    #[test]
    fn the_decision_takes_the_nearest_within_its_bar_and_guards_minorities() {
        let thresholds = [0.5, 0.5];
        let users = [6, 1];
        let c = |cluster, similarity| {
            Some(Candidate {
                cluster,
                similarity,
            })
        };
        assert_eq!(
            choose_by_examples(c(1, 0.9), c(0, 0.2), &thresholds, &users, 0.05),
            Some(1)
        );
        assert_eq!(
            choose_by_examples(c(1, 0.4), None, &thresholds, &users, 0.05),
            None
        );
        // Within the margin, the cluster with more users wins.
        assert_eq!(
            choose_by_examples(c(1, 0.9), c(0, 0.88), &thresholds, &users, 0.05),
            Some(0)
        );
        // But not when it does not reach its own bar.
        assert_eq!(
            choose_by_examples(c(1, 0.52), c(0, 0.49), &thresholds, &users, 0.05),
            Some(1)
        );
        assert_eq!(
            choose_by_examples(None, None, &thresholds, &users, 0.05),
            None
        );
    }

    #[test]
    fn best_two_keeps_one_candidate_per_cluster() {
        let cluster_of = [0, 0, 1, 2];
        let scores = [0.9, 0.95, 0.3, 0.5];
        let (a, b) = best_two(scores.iter().copied().enumerate(), &cluster_of, None);
        assert_eq!(
            a,
            Some(Candidate {
                cluster: 0,
                similarity: 0.95
            })
        );
        assert_eq!(
            b,
            Some(Candidate {
                cluster: 2,
                similarity: 0.5
            })
        );
        let (a, b) = best_two(scores.iter().copied().enumerate(), &cluster_of, Some(1));
        assert_eq!(a.map(|x| x.similarity), Some(0.9));
        assert_eq!(b.map(|x| x.cluster), Some(2));
    }

    #[test]
    fn calibration_accepts_the_topics_and_reports_what_the_router_does() {
        // Two topics of three logs, each log sharing one word with each
        // other log of its topic; one stray log; cluster 2 not routable.
        let vectors = vec![
            v(&[(1, 1.0), (2, 1.0), (100, 1.0)]),
            v(&[(1, 1.0), (3, 1.0), (101, 1.0)]),
            v(&[(2, 1.0), (3, 1.0), (102, 1.0)]),
            v(&[(11, 1.0), (12, 1.0), (110, 1.0)]),
            v(&[(11, 1.0), (13, 1.0), (111, 1.0)]),
            v(&[(12, 1.0), (13, 1.0), (112, 1.0)]),
            v(&[(50, 1.0), (51, 1.0)]),
        ];
        let labels = [0, 0, 0, 1, 1, 1, 2];
        let routable = [true, true, false];
        let users = [3, 3, 1];
        let examples = vec![vec![0, 1, 2], vec![3, 4, 5], vec![]];
        let inputs = ExampleInputs {
            quantile: 0.1,
            margin: 0.05,
            ..inputs(&vectors, &labels, &routable, &users, &examples)
        };
        let cal = calibrate_examples(&inputs);
        // Every member is 1/3 similar to its nearest other member; the
        // cluster that is not routable has no bar.
        for t in &cal.thresholds[..2] {
            assert!((t - (1.0 - 1.0 / 3.0)).abs() < 1e-5, "{:?}", cal.thresholds);
        }
        assert_eq!(cal.thresholds[2], 0.0);
        assert_eq!(cal.clusters[0].agreement, 1.0);
        assert_eq!(cal.clusters[1].true_accept, 1.0);
        assert_eq!(cal.clusters[0].false_accept, 0.0);
        assert_eq!(cal.clusters[0].negatives, 4);
        assert!((cal.agreement - 6.0 / 7.0).abs() < 1e-9);
        assert_eq!(cal.agreement_routable, 1.0);
        assert!(
            (cal.passthrough - 1.0 / 7.0).abs() < 1e-9,
            "the stray log passes"
        );
        // Nothing routable: no bar, everything passes.
        let none = calibrate_examples(&ExampleInputs {
            routable: &[false, false, false],
            ..inputs
        });
        assert_eq!(none.passthrough, 1.0);
        assert_eq!(none.thresholds, vec![0.0; 3]);
    }

    #[test]
    fn each_cluster_has_its_own_bar_drawn_toward_the_pooled_one() {
        let mut own = [0.2, 0.4, 0.6, 0.8, 1.0];
        // Alone (no prior): the cluster's own quantile.
        assert!((cluster_bar(&mut own, 0.5, 0.0, 0.0) - 0.2).abs() < 1e-6);
        // Five members against a prior of five: halfway to the pool.
        assert!((cluster_bar(&mut own, 0.6, 0.0, 5.0) - 0.4).abs() < 1e-6);
        // Nothing of its own: the pool.
        assert_eq!(cluster_bar(&mut [], 0.6, 0.0, 5.0), 0.6);
    }

    #[test]
    fn a_loose_topic_gets_a_lower_bar_than_a_tight_one_and_repeats_set_none() {
        // Topic 0's members share one word of three with each other
        // (1/3 similar); topic 1's share two of three (2/3), and log 6
        // repeats log 3 word for word.
        let vectors = vec![
            v(&[(1, 1.0), (2, 1.0), (100, 1.0)]),
            v(&[(1, 1.0), (3, 1.0), (101, 1.0)]),
            v(&[(2, 1.0), (3, 1.0), (102, 1.0)]),
            v(&[(11, 1.0), (12, 1.0), (110, 1.0)]),
            v(&[(11, 1.0), (12, 1.0), (111, 1.0)]),
            v(&[(11, 1.0), (12, 1.0), (112, 1.0)]),
            v(&[(11, 1.0), (12, 1.0), (110, 1.0)]),
        ];
        let labels = [0, 0, 0, 1, 1, 1, 1];
        let examples = vec![vec![0, 1, 2], vec![3, 4, 5, 6]];
        let inputs = inputs(&vectors, &labels, &[true, true], &[3, 3], &examples);
        let cal = calibrate_examples(&inputs);
        let third = 1.0 - 1.0 / 3.0;
        let two_thirds = 1.0 - 2.0 / 3.0;
        assert!(
            (cal.thresholds[0] - third).abs() < 1e-5,
            "{:?}",
            cal.thresholds
        );
        // Not 0: the repeat (similarity 1) does not count as how close a
        // new question of topic 1 comes.
        assert!(
            (cal.thresholds[1] - two_thirds).abs() < 1e-5,
            "{:?}",
            cal.thresholds
        );
        // The pooled bar (a prior outweighing every cluster): the
        // loose topic's.
        let pooled = calibrate_examples(&ExampleInputs {
            bar_prior: f64::INFINITY,
            ..inputs
        });
        for t in &pooled.thresholds {
            assert!((t - third).abs() < 1e-5, "pooled: {:?}", pooled.thresholds);
        }
        // With a prior, both move toward the pooled bar.
        let drawn = calibrate_examples(&ExampleInputs {
            bar_prior: 4.0,
            ..inputs
        });
        assert!(drawn.thresholds[1] > cal.thresholds[1] && drawn.thresholds[1] < third);
        assert!((drawn.thresholds[0] - third).abs() < 1e-5);
    }
}
