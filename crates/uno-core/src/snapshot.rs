//! Published experience: what the worker hands the proxies.
//!
//! A [`Snapshot`] is immutable once published and carries everything the
//! request path needs to apply experience without touching the database:
//! the embedder it was built with, each cluster's routing centroid and
//! unseen-distance threshold, its mode, its rule block and its critic
//! material. It also carries how each decision was reached (gap, win rate,
//! support), so a person can audit it (`uno snapshot show`, the dashboard).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What the proxy does with a query routed to a cluster (method §2.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Forward unchanged.
    #[default]
    Passthrough,
    /// Put the cluster's rule block into the system message.
    Primary,
    /// Draft, critique with the cluster's lessons, revise.
    Reflective,
}

impl Mode {
    /// `passthrough`, `primary` or `reflective`, as in headers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Passthrough => "passthrough",
            Mode::Primary => "primary",
            Mode::Reflective => "reflective",
        }
    }
}

/// Which fallback a cluster gets when its primary module is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// UNO: fall back to the reflective module.
    #[default]
    Uno,
    /// UNO-Single: fall back to the untouched model.
    UnoSingle,
}

/// The thresholds a snapshot was built with, kept with it for audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Ward distance threshold (method default 4).
    pub distance_threshold: f64,
    /// High gap at a mean per-log minimum novelty at or above this (0.45).
    pub gap_threshold: f64,
    /// Primary passes validation at a win rate at or above this (0.53).
    pub win_threshold: f64,
    /// Distinct users a rule needs before it is served (3).
    pub min_support: usize,
    /// Held-out logs a cluster needs before primary can be validated.
    pub min_validation_logs: usize,
    /// Quantile of member distances that sets the unseen threshold (0.95).
    pub unseen_quantile: f64,
}

/// One consolidated rule of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The instruction, as first phrased by a supporting log.
    pub text: String,
    /// Distinct end users whose feedback produced it (or a paraphrase).
    pub support: usize,
    /// The interactions whose feedback produced it (provenance).
    pub sources: Vec<Uuid>,
    /// Whether it is served: it earned it ([`Rule::earned`]) and is not
    /// held, or an operator approved it; never when an operator disabled it.
    pub served: bool,
    /// Share of the region's feedback users who support it: `support`
    /// over the distinct users who gave text feedback in the cluster's
    /// training logs. 0 in snapshots from before shares were recorded.
    #[serde(default)]
    pub share: f64,
    /// Distinct users who support a contradicting rule of the same cluster
    /// (they count against this one).
    #[serde(default)]
    pub contrary: usize,
    /// The contradicting rules' texts, when the consolidation step found any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contradicts: Vec<String>,
    /// Why the rule waits for an operator's approval instead of being
    /// served (it promotes a named product, site or contact), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Whether its support alone earns it serving: net supporters
    /// (`support − contrary`) reach both `min_support` and
    /// `min_support_share` of the region's users. `None` in snapshots from
    /// before this was recorded, where support alone decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earned: Option<bool>,
}

impl Rule {
    /// A rule with only its text, support, provenance and serving flag set
    /// (the rest at their defaults), for tools and tests.
    pub fn new(text: impl Into<String>, support: usize, sources: Vec<Uuid>, served: bool) -> Rule {
        Rule {
            text: text.into(),
            support,
            sources,
            served,
            share: 0.0,
            contrary: 0,
            contradicts: Vec::new(),
            held: None,
            earned: None,
        }
    }

    /// Whether the rule is served when no operator has overridden it:
    /// what it earned (support alone, in old snapshots that did not record
    /// it, against `min_support`), and never while held.
    pub fn served_by_default(&self, min_support: usize) -> bool {
        self.held.is_none() && self.earned.unwrap_or(self.support >= min_support)
    }
}

/// One training log's lesson for the reflective critic: its query embedding
/// (to find the nearest past logs at serving time) and its rules (indices
/// into the cluster's [`ClusterExperience::rules`], served rules only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lesson {
    /// The log it came from.
    pub source: Uuid,
    /// Query-only unit embedding.
    pub query_vec: Vec<f32>,
    /// Indices of served rules.
    pub rules: Vec<usize>,
}

/// The cluster's cognitive gap (method §2.6): averages over member logs that
/// have novelty scores of their per-log minimum, mean and maximum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Gap {
    /// Mean of per-log minimum novelty: the statistic decisions use.
    pub min: f64,
    /// Mean of per-log mean novelty.
    pub mean: f64,
    /// Mean of per-log maximum novelty.
    pub max: f64,
    /// Member logs that had scores.
    pub scored_logs: usize,
}

/// The validation gate's outcome for a cluster's primary module (method §2.7,
/// prompt mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Sum of win credits over held-out logs divided by their number.
    pub win_rate: f64,
    /// Held-out logs judged.
    pub logs: usize,
    /// Wins (1 credit each).
    pub wins: usize,
    /// Ties (0.5 credit each).
    pub ties: usize,
    /// Candidates that failed the length or BLEU guard.
    pub guarded: usize,
}

/// The measured lift of a cluster's treatment (method §6.2's holdout): how
/// often answers served treated (primary or reflective) and answers served
/// untouched as holdout were rated down, over the worker's lift window, and
/// the one-sided pooled two-proportion z of treated being rated down more.
/// An interaction counts as rated when it has explicit ratings, and as rated
/// down when their sum is negative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lift {
    /// Treated interactions with a rating.
    pub treated_rated: u64,
    /// Of those, rated down.
    pub treated_down: u64,
    /// Holdout interactions with a rating.
    pub holdout_rated: u64,
    /// Of those, rated down.
    pub holdout_down: u64,
    /// (treated down-rate − holdout down-rate) / pooled standard error;
    /// positive when treated does worse, 0 when it cannot be computed (an
    /// arm without ratings, or no variance).
    pub z: f64,
}

/// How a cluster's routing acceptance was calibrated (see
/// `uno_core::cluster::calibrate`): what its radius costs in-topic and what
/// it lets in from other topics, so a person can see why queries pass
/// through or are taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RouteCalibration {
    /// Whether the proxy routes to the cluster at all: its members come
    /// from at least [`Routing::min_users`] distinct users. A cluster of a
    /// few users' logs is not routable on its own.
    pub routable: bool,
    /// Distinct users among the members.
    pub users: usize,
    /// The radius the members alone ask for: the unseen quantile of their
    /// leave-one-out distances.
    pub member_radius: f32,
    /// The largest radius at which at most the false-accept target of other
    /// routable clusters' members would be taken; absent when they do not
    /// constrain it.
    pub negative_radius: Option<f32>,
    /// Share of members within the radius of the other members' centroid
    /// (an estimate of the share of new in-topic queries accepted).
    pub true_accept: f64,
    /// Share of other routable clusters' members the router sends here.
    pub false_accept: f64,
    /// How many such members there were.
    pub negatives: usize,
    /// Share of the members the router sends here.
    pub agreement: f64,
}

/// A tenant's routing space and how well it agrees with the clusters.
///
/// The proxy routes with the hashing embedder, weighting each word and
/// word pair by its rarity in the tenant's logged routing texts (smoothed
/// IDF), so text that most of the tenant's traffic carries (a fixed system
/// prompt, a template, "How do I…") decides nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Routing {
    /// Routing texts the weights were counted over.
    pub texts: usize,
    /// Weight of a feature not in `common`.
    pub rare_weight: f32,
    /// (feature hash, weight) of the features in at least two texts (the
    /// most frequent, bounded), sorted by hash.
    pub common: Vec<(u64, f32)>,
    /// The false-accept rate each radius was calibrated for.
    pub false_accept_target: f64,
    /// An ambiguous query (its two nearest clusters within this distance
    /// of each other) goes to the cluster with more distinct users.
    pub margin: f32,
    /// Distinct users a cluster needs to be routable.
    pub min_users: usize,
    /// Share of logs the router sends to their own (Ward) cluster.
    pub agreement: f64,
    /// The same over logs of routable clusters.
    pub agreement_routable: f64,
    /// Share of logs the router passes through.
    pub passthrough: f64,
    /// With example routing: the share of routable clusters' members the
    /// acceptance bar was allowed to leave out (0 in centroid routing).
    #[serde(default)]
    pub accept_quantile: f64,
}

/// Everything the proxy needs about one cluster.
/// The default is an empty passthrough cluster, a base for tests and tools
/// that set only what they need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClusterExperience {
    /// Stable id, kept across re-clusterings by member overlap.
    pub id: String,
    /// Member logs.
    pub size: usize,
    /// `en` or `zh`: the majority language of the members, for prompts.
    pub lang: String,
    /// Routing centroid: mean of members' query-only unit embeddings.
    pub centroid: Vec<f32>,
    /// Queries farther than this from the centroid are not routed here.
    pub unseen_threshold: f32,
    /// The routing centroid in the routing embedder's space
    /// ([`Snapshot::route_embedder`]): the mean of the members' query
    /// texts embedded with it. The proxy routes with this one, because the
    /// clustering embedder is too slow for the request path. Empty in
    /// snapshots from before routing existed (nothing is routed then).
    #[serde(default)]
    pub route_centroid: Vec<f32>,
    /// [`ClusterExperience::unseen_threshold`] in the routing space: the
    /// same quantile of the members' distances to `route_centroid`. With
    /// [`ClusterExperience::route_examples`], the cosine distance to the
    /// most similar example within which a query is taken instead.
    #[serde(default)]
    pub route_threshold: f32,
    /// Logged queries of the cluster the proxy routes by (a request goes
    /// to the cluster of its most similar example, within
    /// `route_threshold`): each the sparse routing vector of one member's
    /// text, `(feature hash, weight)` sorted by hash, unit length (see
    /// `uno_core::cluster::examples`). Empty when the cluster is not
    /// routable, and in snapshots from before example routing, which are
    /// routed by `route_centroid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_examples: Vec<Vec<(u64, f32)>>,
    /// The cluster's defining features: routing features (hashes) found
    /// in nearly every one of its examples (`uno_core::cluster::
    /// defining_features`). A query that has none of them is not taken
    /// here, however close its other words; empty when the cluster has
    /// none (its questions vary) and in older snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_required: Vec<u64>,
    /// Routing features (hashes) that keep a query out of the cluster:
    /// other clusters' defining features that are strangers here
    /// (`uno_core::cluster::route_marks`). A query naming another
    /// topic's mark ("Python") is not taken here, however close its other
    /// words; empty in older snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_excluded: Vec<u64>,
    /// The question forms of the cluster's examples
    /// (`uno_core::cluster::cluster_templates`): a query below the bar of
    /// every cluster is still taken here when it is in one of these forms
    /// about a subject made of words the tenant never used or this
    /// cluster's own. Empty in older snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_templates: Vec<crate::cluster::RouteTemplate>,
    /// The words (hashes) of the cluster's examples that forms are made
    /// of, sorted: the words a form's subject may use besides those the
    /// tenant never used. Empty in older snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_words: Vec<u64>,
    /// How `route_threshold` was calibrated, and whether the cluster is
    /// routable; absent in snapshots from before calibration (every cluster
    /// with a routing centroid is routable then).
    #[serde(default)]
    pub route: Option<RouteCalibration>,
    /// What the proxy does here.
    pub mode: Mode,
    /// Why, in words (gap, win rate, support).
    pub decision: String,
    /// Cognitive gap.
    pub gap: Gap,
    /// Whether the gap is at or above the threshold.
    pub high_gap: bool,
    /// Validation of the primary module, when it ran.
    pub validation: Option<Validation>,
    /// The rule block the primary mode injects (served rules only); empty
    /// when no rule is served.
    pub block: String,
    /// Consolidated rules from the training members, ranked.
    pub rules: Vec<Rule>,
    /// Critic material for the reflective mode.
    pub lessons: Vec<Lesson>,
    /// Member interaction ids.
    pub members: Vec<Uuid>,
    /// The held-out members validation used.
    pub holdout: Vec<Uuid>,
    /// Treated versus holdout ratings in served traffic, when the cluster
    /// had any; absent in snapshots from before the lift check.
    #[serde(default)]
    pub lift: Option<Lift>,
}

impl ClusterExperience {
    /// The served rules, best first.
    pub fn served_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|r| r.served)
    }
}

/// A tenant's published experience.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The tenant it belongs to; never applied to another.
    pub tenant: String,
    /// Version, set when published (1, 2, …).
    pub version: i64,
    /// Publication time, Unix microseconds.
    pub created_at: i64,
    /// The embedder its vectors come from, and the version of the query
    /// text it embedded (`hashing:v1:512+user-words:v1`; older snapshots
    /// name the embedder alone); a proxy with another embedder must not
    /// route with it.
    pub embedder_id: String,
    /// Vector length.
    pub dim: usize,
    /// The embedder of the clusters' routing centroids (a hashing embedder
    /// id such as `hashing:v1:256`); empty in snapshots from before routing.
    #[serde(default)]
    pub route_embedder: String,
    /// The routing weights and the routing report; absent in snapshots
    /// from before them (the proxy routes unweighted then).
    #[serde(default)]
    pub routing: Option<Routing>,
    /// UNO or UNO-Single.
    pub policy: Policy,
    /// Thresholds used.
    pub settings: Settings,
    /// Learning logs it was built from.
    pub logs: usize,
    /// Clusters, in id order.
    pub clusters: Vec<ClusterExperience>,
}

impl Snapshot {
    /// A snapshot of `tenant` with nothing in it yet: version 0, time 0, no
    /// embedder, routing or clusters, UNO policy and the method's default
    /// thresholds (one validation log). A base to set fields on with
    /// struct update (`Snapshot { clusters, ..Snapshot::empty("t") }`), so
    /// a snapshot field added later needs no edit where snapshots are
    /// built for tests.
    pub fn empty(tenant: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            version: 0,
            created_at: 0,
            embedder_id: String::new(),
            dim: 0,
            route_embedder: String::new(),
            routing: None,
            policy: Policy::Uno,
            settings: Settings {
                distance_threshold: 4.0,
                gap_threshold: 0.45,
                win_threshold: 0.53,
                min_support: 3,
                min_validation_logs: 1,
                unseen_quantile: 0.95,
            },
            logs: 0,
            clusters: Vec::new(),
        }
    }

    /// How many clusters have each mode: (passthrough, primary, reflective).
    pub fn mode_counts(&self) -> (usize, usize, usize) {
        self.clusters
            .iter()
            .fold((0, 0, 0), |(p, m, r), c| match c.mode {
                Mode::Passthrough => (p + 1, m, r),
                Mode::Primary => (p, m + 1, r),
                Mode::Reflective => (p, m, r + 1),
            })
    }

    /// A digest of the content without version and time, so publishing can
    /// skip a snapshot identical to the one before.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut copy = self.clone();
        copy.version = 0;
        copy.created_at = 0;
        let bytes = serde_json::to_vec(&copy).unwrap_or_default();
        let hash = Sha256::digest(&bytes);
        hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// What changed between two snapshots of a tenant, cluster by cluster.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SnapshotDiff {
    /// Clusters only in the newer one.
    pub added: Vec<String>,
    /// Clusters only in the older one.
    pub removed: Vec<String>,
    /// Clusters in both whose mode or served rules changed.
    pub changed: Vec<ClusterChange>,
}

/// One cluster's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterChange {
    /// Cluster id.
    pub id: String,
    /// Old and new mode, when it changed.
    pub mode: Option<(Mode, Mode)>,
    /// Served rules now and not before.
    pub rules_added: Vec<String>,
    /// Served rules before and not now.
    pub rules_removed: Vec<String>,
}

/// Compares `old` to `new`.
pub fn diff(old: &Snapshot, new: &Snapshot) -> SnapshotDiff {
    let mut out = SnapshotDiff::default();
    for c in &new.clusters {
        match old.clusters.iter().find(|o| o.id == c.id) {
            None => out.added.push(c.id.clone()),
            Some(o) => {
                let before: Vec<&str> = o.served_rules().map(|r| r.text.as_str()).collect();
                let after: Vec<&str> = c.served_rules().map(|r| r.text.as_str()).collect();
                let change = ClusterChange {
                    id: c.id.clone(),
                    mode: (o.mode != c.mode).then_some((o.mode, c.mode)),
                    rules_added: after
                        .iter()
                        .filter(|r| !before.contains(r))
                        .map(|r| (*r).to_owned())
                        .collect(),
                    rules_removed: before
                        .iter()
                        .filter(|r| !after.contains(r))
                        .map(|r| (*r).to_owned())
                        .collect(),
                };
                if change.mode.is_some()
                    || !change.rules_added.is_empty()
                    || !change.rules_removed.is_empty()
                {
                    out.changed.push(change);
                }
            }
        }
    }
    for o in &old.clusters {
        if !new.clusters.iter().any(|c| c.id == o.id) {
            out.removed.push(o.id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(id: &str, mode: Mode, rules: &[(&str, bool)]) -> ClusterExperience {
        ClusterExperience {
            id: id.into(),
            size: 1,
            lang: "en".into(),
            centroid: vec![1.0, 0.0],
            unseen_threshold: 0.5,
            route_centroid: vec![1.0, 0.0],
            route_threshold: 0.5,
            mode,
            decision: String::new(),
            gap: Gap::default(),
            high_gap: false,
            validation: None,
            block: String::new(),
            rules: rules
                .iter()
                .map(|(t, served)| Rule::new(*t, 3, vec![], *served))
                .collect(),
            ..ClusterExperience::default()
        }
    }

    fn snapshot(clusters: Vec<ClusterExperience>) -> Snapshot {
        Snapshot {
            version: 1,
            created_at: 1,
            embedder_id: "hash:8".into(),
            dim: 2,
            route_embedder: "hashing:v1:2".into(),
            logs: 1,
            clusters,
            ..Snapshot::empty("t")
        }
    }

    #[test]
    fn diff_reports_modes_and_served_rules() {
        let old = snapshot(vec![
            cluster("0", Mode::Primary, &[("a", true), ("b", true)]),
            cluster("1", Mode::Reflective, &[]),
        ]);
        let new = snapshot(vec![
            cluster(
                "0",
                Mode::Reflective,
                &[("a", true), ("b", false), ("c", true)],
            ),
            cluster("2", Mode::Passthrough, &[]),
        ]);
        let d = diff(&old, &new);
        assert_eq!(d.added, vec!["2"]);
        assert_eq!(d.removed, vec!["1"]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].mode, Some((Mode::Primary, Mode::Reflective)));
        assert_eq!(d.changed[0].rules_added, vec!["c"]);
        assert_eq!(d.changed[0].rules_removed, vec!["b"]);
        assert!(diff(&new, &new).changed.is_empty());
    }

    #[test]
    fn snapshots_without_routing_fields_still_parse() {
        let mut value =
            serde_json::to_value(snapshot(vec![cluster("0", Mode::Primary, &[("a", true)])]))
                .expect("serialises");
        value.as_object_mut().map(|o| {
            o.remove("route_embedder");
            o.remove("routing")
        });
        for c in value["clusters"].as_array_mut().into_iter().flatten() {
            c.as_object_mut().map(|o| {
                o.remove("route_centroid");
                o.remove("route_threshold");
                o.remove("lift");
                o.remove("route")
            });
        }
        for r in value["clusters"][0]["rules"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if let Some(o) = r.as_object_mut() {
                for key in ["share", "contrary", "contradicts", "held", "earned"] {
                    o.remove(key);
                }
            }
        }
        let old: Snapshot = serde_json::from_value(value).expect("an old snapshot parses");
        let rule = &old.clusters[0].rules[0];
        assert!(rule.held.is_none() && rule.earned.is_none() && rule.contrary == 0);
        assert!(rule.served_by_default(3) && !rule.served_by_default(4));
        assert!(old.route_embedder.is_empty());
        assert!(old.clusters[0].route_centroid.is_empty());
        assert!(old.clusters[0].lift.is_none());
        assert!(old.routing.is_none() && old.clusters[0].route.is_none());
    }

    #[test]
    fn digest_ignores_version_and_time_only() {
        let a = snapshot(vec![cluster("0", Mode::Primary, &[("a", true)])]);
        let mut b = a.clone();
        b.version = 7;
        b.created_at = 99;
        assert_eq!(a.digest(), b.digest());
        b.clusters[0].mode = Mode::Reflective;
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.mode_counts(), (0, 1, 0));
    }
}
