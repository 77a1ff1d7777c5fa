//! A snapshot made ready for the request path.
//!
//! Everything a request needs that can be computed once per snapshot is
//! computed here, when the snapshot is loaded, never per request: the routing
//! embedder rebuilt from its id with the tenant's feature weights (so the
//! request path only reads a table), the routable clusters' centroids as
//! one flat matrix with their radii and distinct users,
//! each served rule's routing vector (so the critic's "rules most similar to
//! the query" is a few dot products), and the header values.

use std::sync::Arc;

use http::HeaderValue;
use std::collections::HashMap;

use uno_core::cluster::{
    Candidate, RouteTemplate, admits, best_two, choose_by_examples, fits_template, route_choice,
};
use uno_core::snapshot::{Mode, Snapshot};
use uno_llm::{FeatureWeights, HashingEmbedder};

/// Why a snapshot cannot be served. The proxy keeps the tenant's previous
/// snapshot then.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The snapshot names a routing embedder this proxy cannot rebuild.
    #[error(
        "routing embedder {0:?} is not one this uno knows; rebuild the snapshot with `uno worker --once --force`"
    )]
    UnknownEmbedder(String),
    /// A cluster's routing data is malformed.
    #[error("cluster {cluster:?}: {problem}")]
    BadCluster {
        /// The cluster id.
        cluster: String,
        /// What is wrong.
        problem: String,
    },
}

/// A tenant's active snapshot, ready to route with.
#[derive(Debug)]
pub struct LoadedSnapshot {
    /// The tenant it belongs to.
    pub tenant: Arc<str>,
    /// Its version.
    pub version: i64,
    /// `x-uno-snapshot`.
    pub version_header: HeaderValue,
    router: Option<Router>,
    /// The clusters, in snapshot order.
    pub clusters: Vec<LoadedCluster>,
}

#[derive(Debug)]
struct Router {
    embedder: HashingEmbedder,
    /// The tenant's feature weights; `None` for snapshots from before them
    /// (routed unweighted, as they were built).
    weights: Option<FeatureWeights>,
    dim: usize,
    /// Row-major `k × dim`: the routable clusters' centroids (empty when
    /// routing by examples).
    centroids: Vec<f32>,
    /// Row of `centroids` → index into `clusters`.
    rows: Vec<usize>,
    /// Per row: the acceptance radius.
    thresholds: Vec<f32>,
    /// Per row: distinct users (0 in snapshots from before calibration).
    users: Vec<u32>,
    /// Ambiguity margin (0, plain nearest, in older snapshots).
    margin: f32,
    /// The routable clusters' examples, when the snapshot routes by
    /// examples (else by `centroids`).
    examples: Option<ExampleIndex>,
    /// Per row with question forms: its forms and admission features.
    forms: Vec<RowForms>,
}

/// One routable cluster's question forms, for queries below every bar.
#[derive(Debug)]
struct RowForms {
    row: usize,
    templates: Vec<RouteTemplate>,
    /// (a form's first word, its index), sorted, for the forms with words
    /// before the slot; a query can only be in those starting with its
    /// own first word.
    by_first: Vec<(u64, u32)>,
    /// (a form's last word, its index), sorted, for the forms with nothing
    /// before the slot.
    by_last: Vec<(u64, u32)>,
    /// The words its forms are made of, sorted.
    words: Vec<u64>,
}

impl RowForms {
    fn new(row: usize, templates: Vec<RouteTemplate>, mut words: Vec<u64>) -> RowForms {
        words.sort_unstable();
        let mut by_first = Vec::new();
        let mut by_last = Vec::new();
        for (i, t) in templates.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            match (t.before.first(), t.after.last()) {
                (Some(&h), _) => by_first.push((h, i)),
                (None, Some(&h)) => by_last.push((h, i)),
                // No words around the slot: no form (the worker never
                // publishes one).
                (None, None) => {}
            }
        }
        by_first.sort_unstable();
        by_last.sort_unstable();
        RowForms {
            row,
            templates,
            by_first,
            by_last,
            words,
        }
    }

    /// Whether `query` (kept word hashes) is in one of the forms, its
    /// subject words accepted by `subject_word`.
    fn fits(&self, query: &[u64], subject_word: impl Fn(u64) -> bool + Copy) -> bool {
        let (Some(&first), Some(&last)) = (query.first(), query.last()) else {
            return false;
        };
        let check = |index: &[(u64, u32)], key: u64| {
            let start = index.partition_point(|e| e.0 < key);
            index[start..]
                .iter()
                .take_while(|e| e.0 == key)
                .filter_map(|e| self.templates.get(e.1 as usize))
                .any(|t| fits_template(query, t, subject_word))
        };
        check(&self.by_first, first) || check(&self.by_last, last)
    }
}

/// The routable clusters' routing examples as an inverted index: a query
/// is scored against every example through the features it shares with
/// them, so its cost follows the query's words, not the number of
/// examples times a dimension.
#[derive(Debug, Default)]
struct ExampleIndex {
    /// One bit per slot of the mixed feature hash's top bits: set for
    /// every indexed feature. Most of a query's words are in no example;
    /// this 32 KB filter, which stays in cache, turns those away before
    /// they cost a probe of the (much larger) range table.
    filter: Vec<u64>,
    /// Feature hash → its range of `postings`, the bits of the entries
    /// of `required` (the first 64) it is a defining feature of, and those
    /// of the entries of `excluded` (the first 64) it keeps out, so the
    /// lookup scoring makes also says which rows a query may reach.
    ranges: HashMap<u64, Range, BuildFeatureHasher>,
    /// (example, weight), grouped by feature: one allocation, read in
    /// order, so a query's few long lists stay in cache.
    postings: Vec<(u32, f32)>,
    /// Example → row (of `Router::rows`).
    row_of: Vec<usize>,
    /// Row → its examples' range, when every row's examples are
    /// consecutive (as the loader numbers them): the best example of a row
    /// is then the maximum of a slice, with no per-example lookup of its
    /// row. `None` otherwise (the general scan).
    row_ranges: Option<Vec<(u32, u32)>>,
    /// Per row: its defining features (`uno_core::cluster::admits`);
    /// `(row, features)` for the rows that have any.
    required: Vec<(usize, Vec<u64>)>,
    /// Per row: the features that keep a query out of it
    /// (`uno_core::cluster::route_marks`); `(row, features)` for
    /// the rows that have any.
    excluded: Vec<(usize, Vec<u64>)>,
}

/// A feature's entry in [`ExampleIndex::ranges`].
#[derive(Debug, Clone, Copy)]
struct Range {
    /// Its postings, `start..end`.
    start: u32,
    end: u32,
    /// Bits of the entries of `required` it defines.
    defines: u64,
    /// Bits of the entries of `excluded` it keeps out.
    excludes: u64,
}

/// What a query's features say about the rows with admission rules:
/// bits of the entries of `required` it has a defining feature of, and of
/// the entries of `excluded` it has a feature of.
#[derive(Debug, Clone, Copy, Default)]
struct Found {
    defines: u64,
    excludes: u64,
}

/// Bits of [`ExampleIndex::filter`]: 2^18 (32 KB), about one in ten
/// absent features let through at 24,000 indexed ones.
const FILTER_BITS: u32 = 18;
const FILTER_WORDS: usize = (1 << FILTER_BITS) / 64;

/// The filter bit of feature hash `h`: the top bits of its Fibonacci
/// product (FNV's own top bits are poorly mixed).
fn filter_bit(h: u64) -> usize {
    (h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FILTER_BITS)) as usize
}

/// The keys are already hashes of the features' text: one multiply
/// spreads them over the table, where SipHash would cost more than the
/// rest of a lookup.
type BuildFeatureHasher = std::hash::BuildHasherDefault<FeatureHasher>;

#[derive(Debug, Default, Clone, Copy)]
struct FeatureHasher(u64);

impl std::hash::Hasher for FeatureHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl ExampleIndex {
    /// Indexes `(row, example)` pairs, examples numbered in order, with
    /// the rows' defining and excluded features (`(row, features)`).
    fn build<'a>(
        examples: impl Iterator<Item = (usize, &'a [(u64, f32)])>,
        required: Vec<(usize, Vec<u64>)>,
        excluded: Vec<(usize, Vec<u64>)>,
    ) -> Self {
        let mut row_of = Vec::new();
        let mut entries: Vec<(u64, u32, f32)> = Vec::new();
        for (row, example) in examples {
            let e = u32::try_from(row_of.len()).unwrap_or(u32::MAX);
            row_of.push(row);
            entries.extend(example.iter().map(|&(h, w)| (h, e, w)));
        }
        entries.sort_unstable_by_key(|&(h, e, _)| (h, e));
        let mut ranges: HashMap<u64, Range, BuildFeatureHasher> = HashMap::default();
        let mut postings = Vec::with_capacity(entries.len());
        for (h, e, w) in entries {
            let at = u32::try_from(postings.len()).unwrap_or(u32::MAX);
            ranges
                .entry(h)
                .or_insert(Range {
                    start: at,
                    end: at,
                    defines: 0,
                    excludes: 0,
                })
                .end = at + 1;
            postings.push((e, w));
        }
        // Every admission feature gets an entry, with postings or without,
        // so the lookup that scores a query sees each one a query has: the
        // bits are exact even for a feature no example holds.
        let end = u32::try_from(postings.len()).unwrap_or(u32::MAX);
        let mut mark = |lists: &[(usize, Vec<u64>)], bits: fn(&mut Range) -> &mut u64| {
            for (bit, (_, features)) in lists.iter().enumerate().take(64) {
                for &h in features {
                    let range = ranges.entry(h).or_insert(Range {
                        start: end,
                        end,
                        defines: 0,
                        excludes: 0,
                    });
                    *bits(range) |= 1 << bit;
                }
            }
        };
        mark(&required, |r| &mut r.defines);
        mark(&excluded, |r| &mut r.excludes);
        let mut filter = vec![0u64; FILTER_WORDS];
        for h in ranges.keys() {
            let bit = filter_bit(*h);
            if let Some(word) = filter.get_mut(bit / 64) {
                *word |= 1 << (bit % 64);
            }
        }
        let row_ranges = consecutive_ranges(&row_of);
        ExampleIndex {
            filter,
            ranges,
            postings,
            row_of,
            row_ranges,
            required,
            excluded,
        }
    }

    /// Zeroes the scores of the examples of each of `rows` (those whose
    /// defining features the query lacks, [`ExampleIndex::blocked_rows`]):
    /// such a row cannot take it.
    fn mask_rows(&self, rows: impl Iterator<Item = usize>, scores: &mut [f32]) {
        for row in rows {
            match &self.row_ranges {
                Some(ranges) => {
                    if let Some(&(start, end)) = ranges.get(row)
                        && let Some(slice) = scores.get_mut(start as usize..end as usize)
                    {
                        slice.iter_mut().for_each(|s| *s = 0.0);
                    }
                }
                None => {
                    for (s, &r) in scores.iter_mut().zip(&self.row_of) {
                        if r == row {
                            *s = 0.0;
                        }
                    }
                }
            }
        }
    }

    /// The two best rows of `scores` (one similarity per example).
    fn best_rows(&self, scores: &[f32]) -> (Option<Candidate>, Option<Candidate>) {
        let Some(row_ranges) = &self.row_ranges else {
            return best_two(scores.iter().copied().enumerate(), &self.row_of, None);
        };
        let mut first: Option<Candidate> = None;
        let mut second: Option<Candidate> = None;
        for (row, &(start, end)) in row_ranges.iter().enumerate() {
            let Some(slice) = scores.get(start as usize..end as usize) else {
                continue;
            };
            // `f32::max` skips NaN, as the general scan does.
            let similarity = slice.iter().copied().fold(f32::NAN, f32::max);
            if similarity.is_nan() {
                continue;
            }
            let candidate = Candidate {
                cluster: row,
                similarity,
            };
            // Ties go to the earlier row, as in the general scan.
            if first.is_none_or(|f| similarity > f.similarity) {
                second = first;
                first = Some(candidate);
            } else if second.is_none_or(|x| similarity > x.similarity) {
                second = Some(candidate);
            }
        }
        (first, second)
    }

    /// Whether `h` may be indexed (no false negatives).
    fn may_hold(&self, h: u64) -> bool {
        let bit = filter_bit(h);
        self.filter
            .get(bit / 64)
            .is_some_and(|word| word & (1 << (bit % 64)) != 0)
    }

    /// The rows `query` may not reach: those whose defining features it
    /// lacks, and those it has an excluded feature of. `found`: the bits
    /// [`ExampleIndex::score_into`] collected for the first 64 entries of
    /// `required` and of `excluded`; later ones are looked for in the
    /// query.
    fn blocked_rows<'a>(
        &'a self,
        query: &'a [(u64, f32)],
        found: Found,
    ) -> impl Iterator<Item = usize> + 'a {
        let has = move |h: u64| query.iter().any(|f| f.0 == h);
        let lacking = self
            .required
            .iter()
            .enumerate()
            .filter(move |(bit, (_, features))| {
                let admitted = if *bit < 64 {
                    found.defines & (1 << bit) != 0
                } else {
                    admits(features, has)
                };
                !admitted
            })
            .map(|(_, (row, _))| *row);
        let kept_out = self
            .excluded
            .iter()
            .enumerate()
            .filter(move |(bit, (_, features))| {
                if *bit < 64 {
                    found.excludes & (1 << bit) != 0
                } else {
                    features.iter().any(|&h| has(h))
                }
            })
            .map(|(_, (row, _))| *row);
        lacking.chain(kept_out)
    }

    /// Adds each example's similarity to `query` into `scores` (one slot
    /// per example, zeroed by the caller). Returns the bits of the entries
    /// of `required` and `excluded` whose features the query has.
    fn score_into(&self, query: &[(u64, f32)], scores: &mut [f32]) -> Found {
        let mut found = Found::default();
        for (h, w) in query {
            if !self.may_hold(*h) {
                continue;
            }
            let Some(range) = self.ranges.get(h) else {
                continue;
            };
            found.defines |= range.defines;
            found.excludes |= range.excludes;
            let list = self
                .postings
                .get(range.start as usize..range.end as usize)
                .unwrap_or_default();
            for &(e, we) in list {
                if let Some(s) = scores.get_mut(e as usize) {
                    *s += w * we;
                }
            }
        }
        found
    }

    /// Each example's similarity to `query`, as routing scores it, and
    /// the rows it cannot reach ([`ExampleIndex::blocked_rows`]).
    fn scores(&self, query: &[(u64, f32)]) -> (Vec<f32>, Vec<usize>) {
        let mut scores = vec![0.0f32; self.row_of.len()];
        let found = self.score_into(query, &mut scores);
        let blocked: Vec<usize> = self.blocked_rows(query, found).collect();
        self.mask_rows(blocked.iter().copied(), &mut scores);
        (scores, blocked)
    }

    /// The two most similar rows to `query`, scored in `scores` (one slot
    /// per example, overwritten), and the admission bits the lookup found
    /// (for [`ExampleIndex::blocked_rows`]).
    fn best_two(
        &self,
        query: &[(u64, f32)],
        scores: &mut Vec<f32>,
    ) -> (Option<Candidate>, Option<Candidate>, Found) {
        scores.clear();
        scores.resize(self.row_of.len(), 0.0);
        let found = self.score_into(query, scores);
        self.mask_rows(self.blocked_rows(query, found), scores);
        let (first, second) = self.best_rows(scores);
        (first, second, found)
    }
}

/// What routing one request writes: the query's sparse vector, the table
/// that merges its repeated features, and one score per example. Kept per
/// thread, so the request path allocates nothing once they have grown.
struct RouteBuffers {
    query: Vec<(u64, f32)>,
    slots: Vec<u32>,
    scores: Vec<f32>,
    /// The query's form words, every part's in turn, and where each
    /// part's end (for a query no bar takes).
    words: Vec<u64>,
    ends: Vec<usize>,
}

impl RouteBuffers {
    const fn new() -> RouteBuffers {
        RouteBuffers {
            query: Vec::new(),
            slots: Vec::new(),
            scores: Vec::new(),
            words: Vec::new(),
            ends: Vec::new(),
        }
    }
}

impl Router {
    /// The row the query of `parts` goes to in `index`, and whether a
    /// question form took it ([`Router::row_by_form`]) rather than an
    /// example within its bar (`choose_by_examples`); `None` when it passes
    /// through, or no feature of it weighs anything. The query's sparse
    /// vector is built unordered (the index only looks its features up),
    /// so routing neither sorts nor, in the thread's buffers, allocates.
    fn route_by_examples<S: AsRef<str>>(
        &self,
        index: &ExampleIndex,
        parts: &[S],
    ) -> Option<(usize, bool)> {
        thread_local! {
            static BUFFERS: std::cell::RefCell<RouteBuffers> =
                const { std::cell::RefCell::new(RouteBuffers::new()) };
        }
        let route = |b: &mut RouteBuffers| {
            if !self.embedder.sparse_weighted_unordered(
                parts,
                self.weights.as_ref(),
                &mut b.query,
                &mut b.slots,
            ) {
                return None;
            }
            let (first, second, found) = index.best_two(&b.query, &mut b.scores);
            if let Some(row) =
                choose_by_examples(first, second, &self.thresholds, &self.users, self.margin)
            {
                return Some((row, false));
            }
            let blocked = |row: usize| index.blocked_rows(&b.query, found).any(|r| r == row);
            self.row_by_form(parts, [first, second], blocked, &mut b.words, &mut b.ends)
                .map(|row| (row, true))
        };
        BUFFERS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buffers) => route(&mut buffers),
            // Re-entered on this thread (never on the request path): fresh
            // buffers.
            Err(_) => route(&mut RouteBuffers::new()),
        })
    }
}

/// Per row, the range of examples that are its, when `row_of` (example →
/// row) numbers each row's examples consecutively in row order; `None`
/// when it does not.
fn consecutive_ranges(row_of: &[usize]) -> Option<Vec<(u32, u32)>> {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for (e, &row) in row_of.iter().enumerate() {
        let e = u32::try_from(e).ok()?;
        match row.cmp(&ranges.len()) {
            // A new row (rows without examples get empty ranges).
            std::cmp::Ordering::Greater | std::cmp::Ordering::Equal => {
                while ranges.len() < row {
                    ranges.push((e, e));
                }
                ranges.push((e, e + 1));
            }
            std::cmp::Ordering::Less if row + 1 == ranges.len() => {
                ranges[row].1 = e + 1;
            }
            std::cmp::Ordering::Less => return None,
        }
    }
    Some(ranges)
}

/// One cluster, as the request path uses it.
#[derive(Debug)]
pub struct LoadedCluster {
    /// Its stable id.
    pub id: Arc<str>,
    /// `x-uno-cluster`, when the id is a valid header value.
    pub id_header: Option<HeaderValue>,
    /// What the proxy does here.
    pub mode: Mode,
    /// Routing-space unseen threshold.
    pub threshold: f32,
    /// The primary module's rule block (exactly what validation judged).
    pub block: String,
    /// Served rules, best first: the critic's lessons.
    pub rules: Vec<String>,
    /// Row-major `rules.len() × dim` routing vectors of `rules`.
    rule_vectors: Vec<f32>,
}

/// Where a query was routed.
#[derive(Debug, Clone)]
pub struct Routed {
    /// Index into [`LoadedSnapshot::clusters`].
    pub cluster: usize,
    /// The query's routing vector, kept for the critic's rule choice
    /// (empty when the cluster is not reflective).
    pub vector: Vec<f32>,
    /// Taken by one of the cluster's question forms
    /// (`uno_core::cluster::cluster_templates`) rather than by an example
    /// within the bar.
    pub by_form: bool,
}

impl LoadedSnapshot {
    /// Prepares `snapshot`. A snapshot without routing data (published
    /// before routing existed) loads but routes nothing.
    pub fn load(snapshot: &Snapshot) -> Result<LoadedSnapshot, LoadError> {
        let embedder = if snapshot.route_embedder.is_empty() {
            None
        } else {
            Some(
                HashingEmbedder::from_id(&snapshot.route_embedder)
                    .ok_or_else(|| LoadError::UnknownEmbedder(snapshot.route_embedder.clone()))?,
            )
        };
        let dim = embedder.as_ref().map_or(0, uno_llm::Embedder::dim);
        let weights = snapshot
            .routing
            .as_ref()
            .map(|r| FeatureWeights::new(r.rare_weight, &r.common));
        let margin = snapshot.routing.as_ref().map_or(0.0, |r| r.margin).max(0.0);
        let margin = if margin.is_finite() { margin } else { 0.0 };
        let mut clusters = Vec::with_capacity(snapshot.clusters.len());
        let mut centroids = Vec::new();
        let mut rows = Vec::new();
        let mut thresholds = Vec::new();
        let mut users = Vec::new();
        let by_examples = snapshot
            .clusters
            .iter()
            .any(|c| !c.route_examples.is_empty());
        let mut example_rows: Vec<(usize, &[(u64, f32)])> = Vec::new();
        let mut required: Vec<(usize, Vec<u64>)> = Vec::new();
        let mut excluded: Vec<(usize, Vec<u64>)> = Vec::new();
        let mut forms: Vec<RowForms> = Vec::new();
        for (i, c) in snapshot.clusters.iter().enumerate() {
            let bad = |problem: String| LoadError::BadCluster {
                cluster: c.id.clone(),
                problem,
            };
            let rules: Vec<String> = c.served_rules().map(|r| r.text.clone()).collect();
            let mut rule_vectors = Vec::with_capacity(rules.len() * dim);
            // A cluster calibrated as not routable (too few distinct
            // users) keeps its data for audit but takes no queries.
            let routable = c.route.as_ref().is_none_or(|r| r.routable);
            if let Some(embedder) = &embedder {
                let has_route = if by_examples {
                    !c.route_examples.is_empty()
                } else {
                    !c.route_centroid.is_empty()
                };
                if routable && has_route {
                    if !c.route_threshold.is_finite() {
                        return Err(bad("routing threshold is not finite".to_owned()));
                    }
                    if by_examples {
                        if c.route_examples
                            .iter()
                            .flatten()
                            .any(|(_, w)| !w.is_finite())
                        {
                            return Err(bad("routing examples are not finite".to_owned()));
                        }
                        for example in &c.route_examples {
                            example_rows.push((rows.len(), example.as_slice()));
                        }
                        if !c.route_required.is_empty() {
                            required.push((rows.len(), c.route_required.clone()));
                        }
                        if !c.route_excluded.is_empty() {
                            excluded.push((rows.len(), c.route_excluded.clone()));
                        }
                        if !c.route_templates.is_empty() {
                            forms.push(RowForms::new(
                                rows.len(),
                                c.route_templates.clone(),
                                c.route_words.clone(),
                            ));
                        }
                    } else {
                        if c.route_centroid.len() != dim {
                            return Err(bad(format!(
                                "routing centroid has {} values, the routing embedder {dim}",
                                c.route_centroid.len()
                            )));
                        }
                        if !c.route_centroid.iter().all(|v| v.is_finite()) {
                            return Err(bad("routing data is not finite".to_owned()));
                        }
                        centroids.extend_from_slice(&c.route_centroid);
                    }
                    rows.push(i);
                    thresholds.push(c.route_threshold);
                    users.push(
                        c.route
                            .as_ref()
                            .map_or(0, |r| u32::try_from(r.users).unwrap_or(u32::MAX)),
                    );
                }
                for rule in &rules {
                    rule_vectors.extend(embedder.embed_parts_weighted(&[rule], weights.as_ref()));
                }
            }
            clusters.push(LoadedCluster {
                id: Arc::from(c.id.as_str()),
                id_header: HeaderValue::from_str(&c.id).ok(),
                mode: c.mode,
                threshold: c.route_threshold,
                block: c.block.clone(),
                rules,
                rule_vectors,
            });
        }
        Ok(LoadedSnapshot {
            tenant: Arc::from(snapshot.tenant.as_str()),
            version: snapshot.version,
            version_header: HeaderValue::from(snapshot.version),
            router: embedder.map(|embedder| Router {
                embedder,
                weights,
                dim,
                centroids,
                rows,
                thresholds,
                users,
                margin,
                examples: by_examples
                    .then(|| ExampleIndex::build(example_rows.into_iter(), required, excluded)),
                forms,
            }),
            clusters,
        })
    }

    /// Whether this snapshot can route at all.
    pub fn routes(&self) -> bool {
        self.router.as_ref().is_some_and(|r| !r.rows.is_empty())
    }

    /// The cluster `query` belongs to: the nearest routable centroid, if
    /// the query lies within that cluster's calibrated radius, or the
    /// cluster with more distinct users when the two nearest are within the
    /// snapshot's margin ([`route_choice`]).
    pub fn route(&self, query: &str) -> Option<Routed> {
        self.route_parts(&[query])
    }

    /// [`LoadedSnapshot::route`] for the query made of `parts` joined by
    /// blank lines, without building that string.
    pub fn route_parts<S: AsRef<str>>(&self, parts: &[S]) -> Option<Routed> {
        let router = self.router.as_ref()?;
        if router.rows.is_empty() {
            return None;
        }
        if let Some(index) = &router.examples {
            let (row, by_form) = router.route_by_examples(index, parts)?;
            let cluster = *router.rows.get(row)?;
            // The dense vector only serves the critic's choice of rules,
            // so it is made only for a query routed to a reflective
            // cluster (an empty one makes the critic take rules in rank
            // order).
            let vector = if self.clusters.get(cluster).map(|c| c.mode) == Some(Mode::Reflective) {
                router.embed(parts)?
            } else {
                Vec::new()
            };
            return Some(Routed {
                cluster,
                vector,
                by_form,
            });
        }
        let vector = router.embed(parts)?;
        let row = route_choice(
            &router.centroids,
            router.dim,
            &router.thresholds,
            &router.users,
            router.margin,
            &vector,
        )?;
        let cluster = *router.rows.get(row)?;
        Some(Routed {
            cluster,
            vector,
            by_form: false,
        })
    }
}

impl LoadedSnapshot {
    /// Every routable cluster's distance to the query of `parts`, nearest
    /// first (index into [`LoadedSnapshot::clusters`], distance), measured
    /// as [`LoadedSnapshot::route_parts`] measures: for explaining a
    /// decision (`uno route`), not for the request path.
    ///
    /// The flag says the query has none of the cluster's defining features
    /// (`uno_core::cluster::defining_features`) or has one of its excluded
    /// ones (`uno_core::cluster::route_marks`), so that the cluster
    /// cannot take it whatever the distance.
    pub fn distances<S: AsRef<str>>(&self, parts: &[S]) -> Vec<(usize, f32, bool)> {
        let Some(router) = self.router.as_ref() else {
            return Vec::new();
        };
        if let Some(index) = &router.examples {
            // Per cluster: the cosine distance to its most similar
            // example, from the sparse query routing builds (a text with
            // no weighed feature has none, and is not routed).
            let Some(query) = router
                .embedder
                .sparse_weighted(parts, router.weights.as_ref())
            else {
                return Vec::new();
            };
            let (scores, blocked) = index.scores(&query);
            let mut best = vec![f32::NEG_INFINITY; router.rows.len()];
            for (s, &row) in scores.iter().zip(&index.row_of) {
                if let Some(b) = best.get_mut(row) {
                    *b = b.max(*s);
                }
            }
            let mut out: Vec<(usize, f32, bool)> = router
                .rows
                .iter()
                .zip(best)
                .enumerate()
                .filter(|(_, (_, s))| s.is_finite())
                .map(|(row, (&cluster, s))| (cluster, 1.0 - s, blocked.contains(&row)))
                .collect();
            out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            return out;
        }
        let Some(vector) = router.embed(parts) else {
            return Vec::new();
        };
        let mut out: Vec<(usize, f32, bool)> = router
            .centroids
            .chunks_exact(router.dim.max(1))
            .zip(&router.rows)
            .map(|(centroid, &cluster)| {
                let squared: f32 = centroid
                    .iter()
                    .zip(&vector)
                    .map(|(c, v)| (c - v) * (c - v))
                    .sum();
                (cluster, squared.sqrt(), false)
            })
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        out
    }
}

impl Router {
    /// The row whose question form one of `parts` is in, for a query no
    /// cluster's bar takes (`uno_core::cluster::fits_template`): the
    /// nearer of `nearest` when one of them fits, else the fitting row
    /// with most distinct users. A form's subject may hold words the
    /// tenant never used and the cluster's own, never another topic's;
    /// rows `blocked` for the query (its defining and excluded features,
    /// as the example lookup found them) are never taken. `words` and
    /// `ends` are the thread's buffers for the parts' form words.
    fn row_by_form<S: AsRef<str>>(
        &self,
        parts: &[S],
        nearest: [Option<Candidate>; 2],
        blocked: impl Fn(usize) -> bool,
        words: &mut Vec<u64>,
        ends: &mut Vec<usize>,
    ) -> Option<usize> {
        if self.forms.is_empty() {
            return None;
        }
        let weights = self.weights.as_ref()?;
        words.clear();
        ends.clear();
        for p in parts {
            self.embedder.form_words(p.as_ref(), weights, words);
            ends.push(words.len());
        }
        let rank = |row: usize| {
            nearest
                .iter()
                .position(|c| c.is_some_and(|c| c.cluster == row))
                .map_or(0, |pos| nearest.len() - pos)
        };
        self.forms
            .iter()
            .filter(|f| {
                let subject_word = |h: u64| !weights.listed(h) || f.words.binary_search(&h).is_ok();
                let mut start = 0;
                ends.iter().any(|&end| {
                    let part = words.get(start..end).unwrap_or_default();
                    start = end;
                    f.fits(part, subject_word)
                }) && !blocked(f.row)
            })
            .map(|f| f.row)
            .max_by_key(|&row| {
                (
                    rank(row),
                    self.users.get(row).copied().unwrap_or(0),
                    std::cmp::Reverse(row),
                )
            })
    }

    /// The query of `parts` in the routing space, weighted by the tenant's
    /// feature weights; `None` for a text with no weighed feature (only
    /// what all the tenant's traffic says, or nothing): it has no topic,
    /// so it passes through.
    fn embed<S: AsRef<str>>(&self, parts: &[S]) -> Option<Vec<f32>> {
        self.embedder
            .try_embed_parts_weighted(parts, self.weights.as_ref())
    }
}

impl LoadedCluster {
    /// Up to `k` served rules most similar to the query vector (cosine; the
    /// vectors are unit length), most similar first, ties in rank order.
    pub fn rules_like(&self, query: &[f32], k: usize) -> Vec<String> {
        let dim = query.len();
        if dim == 0 || self.rule_vectors.len() != self.rules.len() * dim {
            return self.rules.iter().take(k).cloned().collect();
        }
        let mut scored: Vec<(usize, f32)> = self
            .rule_vectors
            .chunks_exact(dim)
            .map(|v| v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>())
            .enumerate()
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
            .into_iter()
            .take(k)
            .filter_map(|(i, _)| self.rules.get(i).cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use uno_core::snapshot::{ClusterExperience, Gap, Rule};

    fn cluster(id: &str, mode: Mode, texts: &[&str], rules: &[&str]) -> ClusterExperience {
        let e = HashingEmbedder::new(64).unwrap();
        let vectors: Vec<f32> = texts.iter().flat_map(|t| e.embed_one(t)).collect();
        let labels = vec![0; texts.len()];
        let centroid = uno_core::cluster::centroids(&vectors, 64, &labels, 1).unwrap();
        let threshold =
            uno_core::cluster::unseen_thresholds(&vectors, 64, &labels, &centroid, 1.0).unwrap()[0];
        ClusterExperience {
            id: id.into(),
            size: texts.len(),
            lang: "en".into(),
            centroid: vec![],
            unseen_threshold: 0.0,
            route_centroid: centroid,
            route_threshold: threshold,
            mode,
            decision: String::new(),
            gap: Gap::default(),
            high_gap: false,
            validation: None,
            block: "block".into(),
            rules: rules
                .iter()
                .map(|t| Rule::new(*t, 3, vec![], true))
                .collect(),
            ..ClusterExperience::default()
        }
    }

    /// `texts`' sparse routing vectors under `weights`, as examples.
    fn sparse_vectors(
        e: &HashingEmbedder,
        weights: &FeatureWeights,
        texts: &[&str],
    ) -> Vec<Vec<(u64, f32)>> {
        texts
            .iter()
            .map(|t| e.sparse_weighted(&[t], Some(weights)).unwrap())
            .collect()
    }

    fn snapshot(route_embedder: &str, clusters: Vec<ClusterExperience>) -> Snapshot {
        Snapshot {
            version: 3,
            embedder_id: "x".into(),
            route_embedder: route_embedder.into(),
            clusters,
            ..Snapshot::empty("t")
        }
    }

    #[test]
    fn routes_to_the_nearest_cluster_within_its_threshold() {
        let s = snapshot(
            "hashing:v1:64",
            vec![
                cluster(
                    "0",
                    Mode::Primary,
                    &["boil pasta water salt", "boil pasta water time"],
                    &[],
                ),
                cluster(
                    "1",
                    Mode::Reflective,
                    &["tax form freelance income", "tax form rental income"],
                    &["Cite the form number.", "Boil pasta in salted water."],
                ),
            ],
        );
        let loaded = LoadedSnapshot::load(&s).unwrap();
        assert!(loaded.routes());
        assert_eq!(loaded.route("boil pasta water salt").unwrap().cluster, 0);
        let tax = loaded.route("tax form freelance income").unwrap();
        assert_eq!(tax.cluster, 1);
        assert!(loaded.route("quantum chromodynamics lecture").is_none());
        let rules = loaded.clusters[1].rules_like(&tax.vector, 1);
        assert_eq!(rules, ["Cite the form number."]);
        assert_eq!(loaded.version_header, "3");
    }

    /// The worker's routing data as it publishes it: weights counted over
    /// the members' texts, centroids and radii in that weighted space.
    #[test]
    fn routes_with_the_snapshots_weights_and_skips_unroutable_clusters() {
        use uno_core::snapshot::{RouteCalibration, Routing};
        let prompt = "You are Acme's assistant. Be brief and kind and helpful always.";
        let topics = [
            "boil pasta water salt",
            "tax form freelance income",
            "boil pasta water knife brand",
        ];
        let texts: Vec<String> = topics
            .iter()
            .flat_map(|t| (0..6).map(move |i| format!("{prompt}\n\n{t} case{i}")))
            .collect();
        let e = HashingEmbedder::new(64).unwrap();
        let df = e.document_frequencies(&texts);
        let (rare, common) = (df.rare_weight(), df.common(4096));
        let weights = FeatureWeights::new(rare, &common);
        let mut clusters = Vec::new();
        for (k, members) in texts.chunks(6).enumerate() {
            let points: Vec<f32> = members
                .iter()
                .flat_map(|t| e.embed_parts_weighted(&[t], Some(&weights)))
                .collect();
            let labels = vec![0; members.len()];
            let centroid = uno_core::cluster::centroids(&points, 64, &labels, 1).unwrap();
            let mut c = cluster(&k.to_string(), Mode::Primary, &[], &[]);
            c.route_threshold =
                uno_core::cluster::unseen_thresholds(&points, 64, &labels, &centroid, 1.0).unwrap()
                    [0]
                    * 1.5;
            c.route_centroid = centroid;
            c.route = Some(RouteCalibration {
                routable: k != 2,
                users: if k == 2 { 1 } else { 6 },
                ..RouteCalibration::default()
            });
            clusters.push(c);
        }
        let mut s = snapshot("hashing:v1:64", clusters);
        s.routing = Some(Routing {
            texts: texts.len(),
            rare_weight: rare,
            common,
            margin: 0.05,
            min_users: 3,
            ..Routing::default()
        });
        let loaded = LoadedSnapshot::load(&s).unwrap();
        let route = |q: &str| loaded.route_parts(&[prompt, q]).map(|r| r.cluster);
        assert_eq!(route("boil pasta water salt case9"), Some(0));
        assert_eq!(route("tax form freelance income case9"), Some(1));
        // The one-user cluster takes nothing, even its own wording.
        assert_ne!(route("boil pasta water knife brand case9"), Some(2));
        // The shared prompt alone routes nowhere.
        assert_eq!(loaded.route(prompt).map(|r| r.cluster), None);
    }

    #[test]
    fn unknown_embedders_and_bad_centroids_are_refused() {
        let c = cluster("0", Mode::Primary, &["a b"], &[]);
        assert!(matches!(
            LoadedSnapshot::load(&snapshot("minilm", vec![c.clone()])),
            Err(LoadError::UnknownEmbedder(_))
        ));
        assert!(matches!(
            LoadedSnapshot::load(&snapshot("hashing:v1:32", vec![c.clone()])),
            Err(LoadError::BadCluster { .. })
        ));
        let old = LoadedSnapshot::load(&snapshot("", vec![c])).unwrap();
        assert!(!old.routes() && old.route("a b").is_none());
    }

    #[test]
    fn rows_of_consecutive_examples_are_ranges() {
        assert_eq!(
            consecutive_ranges(&[0, 0, 1, 3, 3]),
            Some(vec![(0, 2), (2, 3), (3, 3), (3, 5)])
        );
        assert_eq!(consecutive_ranges(&[]), Some(vec![]));
        assert_eq!(consecutive_ranges(&[1, 0]), None);
        assert_eq!(consecutive_ranges(&[0, 1, 0]), None);
    }

    /// A cluster whose every example says "python" takes no query that
    /// does not, however much of its template the query shares; the
    /// explanation (`distances`) agrees.
    #[test]
    fn a_query_without_a_clusters_defining_feature_is_not_taken() {
        let e = HashingEmbedder::new(64).unwrap();
        let python: Vec<String> = [
            "a circular import",
            "a slow loop",
            "a csv file",
            "json parsing",
            "a key error",
        ]
        .iter()
        .map(|s| format!("how should i deal with {s} in python"))
        .collect();
        // The tenant's traffic: the python questions among others, so
        // their template is not shared by everything.
        let mut traffic = python.clone();
        traffic.extend((0..10).map(|i| format!("what oven temperature for bread loaf {i}")));
        let df = e.document_frequencies(&traffic);
        let weights = FeatureWeights::new(df.rare_weight(), &df.common(4096));
        let examples: Vec<Vec<(u64, f32)>> = python
            .iter()
            .map(|t| e.sparse_weighted(&[t], Some(&weights)).unwrap())
            .collect();
        let python_hash = e.distinct_features("python")[0];
        let mut c = cluster("0", Mode::Primary, &[], &[]);
        c.route_examples = examples;
        c.route_threshold = 0.8;
        let mut s = snapshot("hashing:v1:64", vec![c.clone()]);
        s.routing = Some(uno_core::snapshot::Routing {
            texts: traffic.len(),
            rare_weight: df.rare_weight(),
            common: df.common(4096),
            ..uno_core::snapshot::Routing::default()
        });
        let cars = "how should i deal with a flat tyre";
        let open = LoadedSnapshot::load(&s).unwrap();
        assert!(
            open.route(cars).is_some(),
            "the template alone reaches the bar"
        );
        c.route_required = vec![python_hash];
        s.clusters = vec![c];
        let loaded = LoadedSnapshot::load(&s).unwrap();
        assert!(loaded.route(cars).is_none());
        let excluded = |s: &LoadedSnapshot, q: &str| -> Vec<usize> {
            s.distances(&[q])
                .into_iter()
                .filter(|d| d.2)
                .map(|d| d.0)
                .collect()
        };
        assert!(loaded.distances(&[cars]).iter().all(|d| d.1 >= 1.0));
        assert_eq!(excluded(&loaded, cars), vec![0]);
        assert!(excluded(&open, cars).is_empty());
        assert!(excluded(&loaded, "how should i deal with a flat tyre in python").is_empty());
        assert_eq!(
            loaded
                .route("how should i deal with a flat tyre in python")
                .map(|r| r.cluster),
            Some(0)
        );
    }

    #[test]
    fn defining_features_mask_rows_past_the_first_64_too() {
        let examples: Vec<Vec<(u64, f32)>> = (0..70u64)
            .map(|r| vec![(5, 0.6), (1000 + r, 0.8)])
            .collect();
        let required: Vec<(usize, Vec<u64>)> =
            (0..70usize).map(|r| (r, vec![1000 + r as u64])).collect();
        let index = ExampleIndex::build(
            examples.iter().enumerate().map(|(r, e)| (r, e.as_slice())),
            required,
            Vec::new(),
        );
        for wanted in [3usize, 69] {
            let query = [(5u64, 0.6f32), (1000 + wanted as u64, 0.8)];
            let (scores, blocked) = index.scores(&query);
            assert_eq!(blocked.len(), 69, "every row but the wanted one");
            assert!(!blocked.contains(&wanted));
            for (row, s) in scores.iter().enumerate() {
                if row == wanted {
                    assert!((s - 1.0).abs() < 1e-5, "row {row}: {s}");
                } else {
                    assert_eq!(*s, 0.0, "row {row} lacks its defining feature");
                }
            }
        }
    }

    /// Row `r` of 70 is kept out by feature `2000 + r` (in row `r + 1`'s
    /// example, as another cluster's defining feature is in its
    /// examples); rows past the first 64 entries are found the slow way.
    #[test]
    fn excluded_features_keep_a_query_out_past_the_first_64_too() {
        let examples: Vec<Vec<(u64, f32)>> = (0..70u64)
            .map(|r| vec![(5, 0.6), (2000 + (r + 69) % 70, 0.8)])
            .collect();
        let excluded: Vec<(usize, Vec<u64>)> =
            (0..70usize).map(|r| (r, vec![2000 + r as u64])).collect();
        let index = ExampleIndex::build(
            examples.iter().enumerate().map(|(r, e)| (r, e.as_slice())),
            Vec::new(),
            excluded,
        );
        let (_, open) = index.scores(&[(5, 1.0)]);
        assert!(open.is_empty(), "no excluded feature: every row open");
        for shut in [3usize, 68] {
            let query = [(5u64, 0.6f32), (2000 + shut as u64, 0.8)];
            let (scores, blocked) = index.scores(&query);
            assert_eq!(blocked, vec![shut]);
            assert_eq!(scores[shut], 0.0);
            assert!((scores[shut + 1] - 1.0).abs() < 1e-5);
            let (first, _) = index.best_rows(&scores);
            assert_eq!(first.map(|c| c.cluster), Some(shut + 1));
        }
    }

    /// Admission features that no example holds are still seen: a query
    /// with such an excluded feature is kept out, one with such a defining
    /// feature let in (the first 64 entries go by the lookup's bits).
    #[test]
    fn admission_features_in_no_example_still_count() {
        let examples: Vec<Vec<(u64, f32)>> = vec![vec![(5, 1.0)], vec![(5, 1.0)]];
        let index = ExampleIndex::build(
            examples.iter().enumerate().map(|(r, e)| (r, e.as_slice())),
            vec![(0, vec![900])],
            vec![(1, vec![901])],
        );
        let (_, blocked) = index.scores(&[(5, 1.0)]);
        assert_eq!(blocked, vec![0], "row 0 lacks its defining feature");
        let (scores, blocked) = index.scores(&[(5, 0.6), (900, 0.8)]);
        assert!(blocked.is_empty(), "{blocked:?}");
        assert!((scores[0] - 0.6).abs() < 1e-6);
        let (scores, blocked) = index.scores(&[(5, 0.6), (900, 0.5), (901, 0.6)]);
        assert_eq!(blocked, vec![1]);
        assert_eq!(scores[1], 0.0);
    }

    /// A query naming the Python cluster's mark is not taken by a cluster
    /// where "python" is a stranger, however close its other words; the
    /// Python cluster still takes it, and the explanation agrees.
    #[test]
    fn a_query_with_another_clusters_mark_is_kept_out() {
        let e = HashingEmbedder::new(64).unwrap();
        let glossary = [
            "what is an api",
            "what is an api exactly",
            "what is latency",
        ];
        let python = ["why am i getting a key error in python"];
        let weights = FeatureWeights::new(1.0, &[]);
        let vectors = |texts: &[&str]| sparse_vectors(&e, &weights, texts);
        let python_hash = e.distinct_features("python")[0];
        let mut g = cluster("0", Mode::Primary, &[], &[]);
        g.route_examples = vectors(&glossary);
        g.route_threshold = 0.6;
        let mut p = cluster("1", Mode::Primary, &[], &[]);
        p.route_examples = vectors(&python);
        p.route_threshold = 0.6;
        p.route_required = vec![python_hash];
        let query = "what is an api in python";
        let open =
            LoadedSnapshot::load(&snapshot("hashing:v1:64", vec![g.clone(), p.clone()])).unwrap();
        assert_eq!(open.route(query).map(|r| r.cluster), Some(0));
        g.route_excluded = vec![python_hash];
        let shut = LoadedSnapshot::load(&snapshot("hashing:v1:64", vec![g, p])).unwrap();
        assert_ne!(shut.route(query).map(|r| r.cluster), Some(0));
        assert_eq!(
            shut.route("what is an api exactly").map(|r| r.cluster),
            Some(0)
        );
        let d = shut.distances(&[query]);
        assert!(d.iter().any(|d| d.0 == 0 && d.2), "{d:?}");
        assert!(d.iter().any(|d| d.0 == 1 && !d.2), "{d:?}");
    }

    #[test]
    fn a_query_below_every_bar_is_taken_by_a_question_form() {
        let e = HashingEmbedder::new(64).unwrap();
        let glossary = [
            "what does inflation mean",
            "define inflation for me",
            "what does a mortgage mean",
            "define an api for me",
        ];
        let python = [
            "why am i getting a key error in python",
            "python loop error",
        ];
        // Every listed word weighs 1 and rare ones 2, so forms need two
        // words; "python" is listed (another topic's word).
        let mut common: Vec<(u64, f32)> = glossary
            .iter()
            .chain(&python)
            .flat_map(|t| e.distinct_features(t))
            .map(|h| (h, 1.0))
            .collect();
        common.sort_unstable_by_key(|c| c.0);
        common.dedup_by_key(|c| c.0);
        let weights = FeatureWeights::new(2.0, &common);
        let vectors = |texts: &[&str]| sparse_vectors(&e, &weights, texts);
        let words = |texts: &[&str]| -> Vec<Vec<u64>> {
            texts
                .iter()
                .map(|t| {
                    let mut out = Vec::new();
                    e.form_words(t, &weights, &mut out);
                    out
                })
                .collect()
        };
        let kept = words(&glossary);
        let mut g = cluster("0", Mode::Primary, &[], &[]);
        g.route_examples = vectors(&glossary);
        // A bar nothing but the same text reaches.
        g.route_threshold = 0.001;
        g.route_templates = uno_core::cluster::cluster_templates(&kept, |h| weights.get(h), 2.0);
        g.route_words = kept.concat();
        assert!(!g.route_templates.is_empty());
        let mut p = cluster("1", Mode::Primary, &[], &[]);
        p.route_examples = vectors(&python);
        p.route_threshold = 0.001;
        let mut s = snapshot("hashing:v1:64", vec![g.clone(), p]);
        s.routing = Some(uno_core::snapshot::Routing {
            rare_weight: 2.0,
            common: common.clone(),
            ..uno_core::snapshot::Routing::default()
        });
        let loaded = LoadedSnapshot::load(&s).unwrap();
        // TEMPLATE_WORD_SHARE of the rare weight 2 keeps every word.
        let routed = loaded.route("what does a firewall mean").unwrap();
        assert_eq!(routed.cluster, 0);
        assert!(routed.by_form);
        assert_eq!(
            loaded.route("define entropy for me").map(|r| r.cluster),
            Some(0)
        );
        // Another form, a subject of another topic's words, or no
        // subject: passed through.
        assert!(loaded.route("what does a kitten need").is_none());
        assert!(loaded.route("define python for me").is_none());
        assert!(loaded.route("define for me").is_none());
        // A follow-up: the earlier turn's form counts.
        assert_eq!(
            loaded
                .route_parts(&["define entropy for me", "and more"])
                .map(|r| r.cluster),
            Some(0)
        );
        // Without forms, the same query is not taken.
        g.route_templates.clear();
        s.clusters[0] = g;
        let plain = LoadedSnapshot::load(&s).unwrap();
        assert!(plain.route("what does a firewall mean").is_none());
    }

    #[test]
    fn the_best_rows_by_range_are_the_general_scans() {
        // Rows 0..4 (row 2 without examples), scores with ties and NaN.
        let row_of = vec![0, 0, 0, 1, 1, 3, 3, 3];
        let cases: [[f32; 8]; 5] = [
            [0.1, 0.5, 0.2, 0.4, 0.45, 0.0, 0.3, 0.1],
            [0.5, 0.1, 0.1, 0.5, 0.2, 0.5, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.0],
            [f32::NAN, 0.3, 0.1, f32::NAN, f32::NAN, 0.2, 0.6, 0.6],
            [0.2, 0.2, 0.2, 0.7, 0.1, 0.7, 0.1, 0.1],
        ];
        let by_range = ExampleIndex::build(
            row_of.iter().map(|&row| (row, [(1u64, 1.0f32)].as_slice())),
            Vec::new(),
            Vec::new(),
        );
        assert!(by_range.row_ranges.is_some());
        let general = ExampleIndex {
            row_ranges: None,
            ..ExampleIndex::build(
                row_of.iter().map(|&row| (row, [(1u64, 1.0f32)].as_slice())),
                Vec::new(),
                Vec::new(),
            )
        };
        for scores in cases {
            assert_eq!(
                by_range.best_rows(&scores),
                general.best_rows(&scores),
                "{scores:?}"
            );
            assert_eq!(
                general.best_rows(&scores),
                best_two(scores.iter().copied().enumerate(), &row_of, None)
            );
        }
    }
}
