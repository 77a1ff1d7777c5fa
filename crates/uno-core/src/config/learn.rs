//! The learning worker's settings (`[learn]`). Defaults are the UNO paper's
//! (uno-method.md §2.10, §6.4) plus the additions a proxy needs: the
//! unseen-distance threshold, a minimum rule support and a minimum number of
//! held-out logs before a cluster's primary module can pass validation.

use serde::Deserialize;

use crate::snapshot::{Policy, Settings};

/// Which embedder turns queries and rules into vectors.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// A sentence-transformers directory loaded in-process (no network).
    Local,
    /// The upstream's `/v1/embeddings`.
    Upstream,
    /// Deterministic feature hashing: for tests, not for real use.
    Hashing,
}

/// How the worker groups a tenant's logs into clusters.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Linkage {
    /// Average linkage of the logs' query vectors (the user's own words)
    /// by cosine distance, cut at [`LearnConfig::average_threshold`]: a
    /// cut that means the same for a topic of 6 logs and one of 6,000.
    Average,
    /// The method's Ward clustering of the combined query-and-rules
    /// vectors, cut at [`LearnConfig::distance_threshold`].
    Ward,
}

/// How a feedback rule's novelty against the model's prior rules is scored.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NoveltyKind {
    /// An LLM judge's P(covered): from logprobs where the upstream returns
    /// them, else from several sampled verdicts.
    Llm,
    /// One minus the best cosine similarity to a prior rule.
    Embedding,
}

/// The learning worker (`uno worker`, or inside `uno serve`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LearnConfig {
    /// Run the worker inside `uno serve` as well.
    pub in_serve: bool,
    /// Model the worker asks (rules, novelty, validation answers, judge);
    /// empty means each log's own model, as the method uses the base model.
    pub model: String,
    /// A separate OpenAI-compatible endpoint for the worker (a "learner"
    /// model); empty means the serving upstreams.
    pub url: String,
    /// Key for [`LearnConfig::url`].
    pub api_key: Option<String>,
    /// Which embedder.
    pub embedder: EmbedderKind,
    /// Directory of the local embedder's model (sentence-transformers
    /// layout); `scripts/install-models.sh` puts all-MiniLM-L6-v2 here.
    pub embedder_path: String,
    /// Model name for the upstream embedder.
    pub embedder_model: String,
    /// Vector length of the hashing embedder.
    pub hashing_dim: usize,
    /// Novelty scorer.
    pub novelty: NoveltyKind,
    /// Sampled verdicts per rule when the upstream gives no logprobs.
    pub novelty_samples: u32,
    /// With `novelty = "llm"`: a rule whose best embedding similarity to
    /// the model's prior rules is below this is scored novel by the
    /// embedding (`1 − similarity`) without a judge call...
    pub novelty_novel_below: f32,
    /// ...and one above this is scored covered the same way. Rules in
    /// between go to the judge. `novel_below = 0` and `covered_above = 1`
    /// ask the judge about every rule.
    pub novelty_covered_above: f32,
    /// How logs are grouped into clusters.
    pub linkage: Linkage,
    /// With `linkage = "average"`: the mean cosine distance between two
    /// groups' queries below which they are one cluster. Unset, it depends
    /// on the embedder ([`LearnConfig::average_cut`]): 0.8 for sentence
    /// embedders (merge while the queries are on average at least 0.2
    /// similar; calibrated on all-MiniLM-L6-v2, where it finds topics),
    /// 0.5 for the hashing embedder, whose texts sharing only a template
    /// ("should I … for …") are already 0.3 similar.
    pub average_threshold: Option<f64>,
    /// After the average-linkage cut, two clusters whose queries are
    /// within this mean cosine distance merge when their members'
    /// feedback agrees ([`LearnConfig::agree_similarity`]): a task asked
    /// about many subjects ("what is …?") is one group when its users
    /// want the same thing. At or below the cut, nothing merges.
    pub agree_threshold: f64,
    /// How alike (cosine of the mean rule vectors) two clusters' feedback
    /// must be for [`LearnConfig::agree_threshold`] to merge them.
    pub agree_similarity: f64,
    /// Ward distance threshold (scikit-learn's height convention).
    pub distance_threshold: f64,
    /// High gap at a mean per-log minimum novelty at or above this.
    pub gap_threshold: f64,
    /// Primary passes validation at a win rate at or above this.
    pub win_threshold: f64,
    /// BLEU-4 of a candidate against the base answer must exceed this.
    pub bleu_min: f64,
    /// A candidate shorter than this fraction of the base answer loses.
    pub length_min_ratio: f64,
    /// Judge samples per answer in validation.
    pub judge_samples: u32,
    /// Fraction of each cluster held out for validation.
    pub holdout: f64,
    /// Seed of the member shuffle and of generation.
    pub seed: u64,
    /// Distinct users who must support a rule before it is served (the
    /// users who asked for a contradicting rule count against its share,
    /// [`LearnConfig::min_support_share`], not against this minimum).
    pub min_support: usize,
    /// Share of the distinct users who gave feedback in a cluster's region
    /// that a rule's net supporters must also reach before it is served.
    /// An absolute count is easy to reach with a few accounts; a share of
    /// the region's community is not, so a small group (or one person under
    /// several ids) cannot out-vote the users who asked for something else.
    pub min_support_share: f64,
    /// Hold rules that promote a named product, brand, site, URL, email or
    /// phone contact for an operator's approval instead of serving them.
    pub hold_promotions: bool,
    /// Tenants whose promotion rules are served like any other (a tenant
    /// whose users legitimately ask for its own products and contacts).
    pub hold_promotions_exempt_tenants: Vec<String>,
    /// Held-out logs a cluster needs before its primary module can pass.
    pub min_validation_logs: usize,
    /// `uno` (fall back to reflective) or `uno-single` (to passthrough).
    pub policy: Policy,
    /// Quantile of members' distances to their centroid beyond which a
    /// query is not routed to the cluster.
    pub unseen_quantile: f64,
    /// Most rules in a cluster's block.
    pub max_rules: usize,
    /// Two rules whose embeddings are at least this similar are one rule.
    pub dedupe_similarity: f32,
    /// `max_tokens` of validation answers.
    pub answer_max_tokens: u32,
    /// `max_tokens` of rule extraction (R_f, R_0).
    pub rules_max_tokens: u32,
    /// `max_tokens` of each judgement.
    pub judge_max_tokens: u32,
    /// Re-cluster after this many new or changed learning logs...
    pub recluster_after_logs: usize,
    /// ...or when this many seconds passed since the last run with any
    /// change.
    pub recluster_interval_secs: u64,
    /// Seconds between polls when the worker runs continuously.
    pub poll_interval_secs: u64,
    /// Seconds a leased job may run before another worker may take it.
    pub lease_secs: u64,
    /// Logs leased per batch.
    pub batch_size: usize,
    /// Logs processed at once.
    pub concurrency: usize,
    /// Tries per log stage before the log is marked failed.
    pub max_attempts: u32,
    /// Up to this many logs, exact Ward; above, micro-clusters first.
    pub exact_max_points: usize,
    /// Vector length of the routing embedder. The proxy routes with the
    /// hashing embedder (microseconds per query) rather than the clustering
    /// embedder (milliseconds), so each cluster also gets a centroid and a
    /// threshold in this space.
    pub route_dim: usize,
    /// Weight the routing embedder's words and word pairs by their rarity
    /// in the tenant's logged routing texts (smoothed IDF), so a shared
    /// system prompt or template decides no route. Off routes unweighted,
    /// as before.
    pub route_idf: bool,
    /// Most weighted features a snapshot stores; rarer ones share one
    /// weight. Bounds the snapshot whatever the traffic.
    pub route_max_features: usize,
    /// Share of other routable clusters' logs a cluster's routing radius may
    /// take: each radius is the smaller of the members' own (quantile
    /// `unseen_quantile` of their leave-one-out distances) and the largest
    /// meeting this target.
    pub route_false_accept: f64,
    /// Logged queries each routable cluster keeps as routing examples
    /// (evenly spread over its members). The proxy routes a request to
    /// the cluster of its most similar example, when that similarity
    /// reaches the cluster's calibrated bar; 0 routes by centroid and
    /// radius instead.
    pub route_examples: usize,
    /// Share of routable clusters' own members (each against the cluster's
    /// other examples) the acceptance bar may leave out: a cluster's bar
    /// is this quantile of its members' leave-one-out similarities, drawn
    /// toward the same quantile pooled over the tenant's routable clusters
    /// (`route_bar_prior`).
    pub route_accept_quantile: f64,
    /// How many members' worth of weight the tenant's pooled bar has
    /// against a cluster's own members when its bar is set: a cluster of
    /// `n` members gets `n / (n + route_bar_prior)` of its own quantile,
    /// so a small cluster's few members do not set a bar alone (0: each
    /// cluster's own).
    pub route_bar_prior: f64,
    /// With example routing: how many of the tenant's most recent logged
    /// first turns without text feedback (rated or not) the worker also
    /// places, each as a routing example of the cluster whose members it
    /// is most like in the clustering space (0: members only). They show
    /// where the users ask beyond the few who comment; they never count as
    /// members, for rules or for support.
    pub route_logged_queries: usize,
    /// A query whose two nearest routable clusters are within this distance
    /// of each other goes to the one with more distinct users.
    pub route_margin: f32,
    /// Distinct users a cluster's members must come from before queries are
    /// routed to it; a few users' comments cannot take over a topic.
    pub route_min_users: usize,
    /// Seconds between the proxy's checks for a newly activated snapshot
    /// (Postgres also notifies at once).
    pub snapshot_poll_secs: u64,
    /// Percent of the requests routed to a treated (primary or reflective)
    /// cluster that are served untouched and logged with path `holdout`,
    /// so treated and untreated feedback can be compared per cluster.
    /// Unrelated to [`LearnConfig::holdout`], the validation split.
    pub holdout_percent: u8,
    /// Longest wait, in milliseconds, for each of the reflective module's
    /// three upstream calls (draft, critique, revision).
    pub reflective_step_timeout_ms: u64,
    /// Tenants whose requests are never changed by learned experience.
    pub disabled_tenants: Vec<String>,
    /// Route and log which path each request would have taken (as
    /// `shadow:primary`, …), but serve every request untouched.
    pub shadow: bool,
    /// Route requests that carry `tools`, `functions` or `tool_choice`
    /// instead of passing them through. Off by default: the method learned
    /// from free-text answers, and a tool call is not one.
    pub route_tools: bool,
    /// Route requests that set `response_format` instead of passing them
    /// through. Off by default for the same reason.
    pub route_response_format: bool,
    /// Most estimated tokens of a cluster's rule block: rules are kept in
    /// rank order while the block stays within it, so a cluster with many
    /// long rules cannot crowd the client's own prompt.
    pub block_max_tokens: usize,
    /// Days of served traffic the holdout lift check reads (interactions
    /// logged by primary, reflective or holdout paths); 0 turns it off.
    pub lift_window_days: u32,
    /// A cluster goes back to passthrough when its treated traffic is rated
    /// down more often than its holdout traffic with a one-sided pooled
    /// two-proportion z at or above this (1.645: p < 0.05).
    pub lift_z: f64,
    /// Rated interactions each arm (treated, holdout) needs before the
    /// lift check may decide anything.
    pub lift_min_rated: u64,
}

impl Default for LearnConfig {
    fn default() -> Self {
        LearnConfig {
            in_serve: false,
            model: String::new(),
            url: String::new(),
            api_key: None,
            embedder: EmbedderKind::Local,
            embedder_path: "target/models/all-MiniLM-L6-v2".to_owned(),
            embedder_model: "text-embedding-3-small".to_owned(),
            hashing_dim: 256,
            novelty: NoveltyKind::Llm,
            novelty_samples: 3,
            novelty_novel_below: 0.3,
            novelty_covered_above: 0.9,
            linkage: Linkage::Average,
            average_threshold: None,
            agree_threshold: 0.9,
            agree_similarity: 0.8,
            distance_threshold: 4.0,
            gap_threshold: 0.45,
            win_threshold: 0.53,
            bleu_min: 0.05,
            length_min_ratio: 0.1,
            judge_samples: 3,
            holdout: 0.2,
            seed: 42,
            min_support: 3,
            min_support_share: 0.3,
            hold_promotions: true,
            hold_promotions_exempt_tenants: Vec::new(),
            min_validation_logs: 5,
            policy: Policy::Uno,
            unseen_quantile: 0.95,
            max_rules: 20,
            dedupe_similarity: 0.9,
            answer_max_tokens: 2048,
            rules_max_tokens: 2048,
            judge_max_tokens: 1024,
            recluster_after_logs: 50,
            recluster_interval_secs: 3600,
            poll_interval_secs: 10,
            lease_secs: 300,
            batch_size: 16,
            concurrency: 4,
            max_attempts: 3,
            exact_max_points: 20_000,
            route_dim: 256,
            route_idf: true,
            route_max_features: 4096,
            route_false_accept: 0.01,
            route_examples: 200,
            route_accept_quantile: 0.1,
            route_bar_prior: 20.0,
            route_logged_queries: 1000,
            route_margin: 0.05,
            route_min_users: 3,
            snapshot_poll_secs: 2,
            holdout_percent: 10,
            reflective_step_timeout_ms: 60_000,
            disabled_tenants: Vec::new(),
            shadow: false,
            route_tools: false,
            route_response_format: false,
            block_max_tokens: 512,
            lift_window_days: 14,
            lift_z: 1.645,
            lift_min_rated: 20,
        }
    }
}

impl LearnConfig {
    /// The thresholds recorded in each snapshot.
    pub fn settings(&self) -> Settings {
        Settings {
            distance_threshold: self.distance_threshold,
            gap_threshold: self.gap_threshold,
            win_threshold: self.win_threshold,
            min_support: self.min_support,
            min_validation_logs: self.min_validation_logs,
            unseen_quantile: self.unseen_quantile,
        }
    }

    /// The average-linkage cut: [`LearnConfig::average_threshold`], or the
    /// embedder's default.
    pub fn average_cut(&self) -> f64 {
        self.average_threshold.unwrap_or(match self.embedder {
            EmbedderKind::Hashing => 0.5,
            EmbedderKind::Local | EmbedderKind::Upstream => 0.8,
        })
    }

    /// Whether `tenant`'s promotion rules are held for approval.
    pub fn holds_promotions(&self, tenant: &str) -> bool {
        self.hold_promotions
            && !self
                .hold_promotions_exempt_tenants
                .iter()
                .any(|t| t == tenant)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("learn.{name} must be between 0 and 1, not {v}"))
            }
        };
        unit("gap_threshold", self.gap_threshold)?;
        unit("win_threshold", self.win_threshold)?;
        unit("bleu_min", self.bleu_min)?;
        unit("length_min_ratio", self.length_min_ratio)?;
        unit("unseen_quantile", self.unseen_quantile)?;
        unit("min_support_share", self.min_support_share)?;
        unit("route_false_accept", self.route_false_accept)?;
        unit("route_accept_quantile", self.route_accept_quantile)?;
        unit("agree_similarity", self.agree_similarity)?;
        if !(self.agree_threshold.is_finite() && (0.0..=2.0).contains(&self.agree_threshold)) {
            return Err(format!(
                "learn.agree_threshold is a cosine distance: 0 to 2, not {}",
                self.agree_threshold
            ));
        }
        unit("novelty_novel_below", f64::from(self.novelty_novel_below))?;
        unit(
            "novelty_covered_above",
            f64::from(self.novelty_covered_above),
        )?;
        let cut = self.average_cut();
        if !(cut.is_finite() && cut > 0.0 && cut <= 2.0) {
            return Err(format!(
                "learn.average_threshold is a cosine distance: more than 0 and at most 2, not {cut}"
            ));
        }
        if !(self.route_bar_prior.is_finite() && self.route_bar_prior >= 0.0) {
            return Err(format!(
                "learn.route_bar_prior must be 0 or more, not {}",
                self.route_bar_prior
            ));
        }
        if !(self.route_margin.is_finite() && self.route_margin >= 0.0) {
            return Err(format!(
                "learn.route_margin must be 0 or more, not {}",
                self.route_margin
            ));
        }
        if !(self.holdout > 0.0 && self.holdout < 1.0) {
            return Err(format!(
                "learn.holdout must be strictly between 0 and 1, not {}",
                self.holdout
            ));
        }
        if self.distance_threshold.is_nan() || self.distance_threshold <= 0.0 {
            return Err("learn.distance_threshold must be greater than 0".into());
        }
        if self.judge_samples == 0 || self.novelty_samples == 0 || self.max_attempts == 0 {
            return Err(
                "learn.judge_samples, learn.novelty_samples and learn.max_attempts must be at least 1"
                    .into(),
            );
        }
        if self.batch_size == 0
            || self.concurrency == 0
            || self.hashing_dim == 0
            || self.route_dim == 0
        {
            return Err(
                "learn.batch_size, learn.concurrency, learn.hashing_dim and learn.route_dim must be at least 1"
                    .into(),
            );
        }
        if self.holdout_percent > 100 {
            return Err(format!(
                "learn.holdout_percent must be between 0 and 100, not {}",
                self.holdout_percent
            ));
        }
        if self.snapshot_poll_secs == 0 || self.reflective_step_timeout_ms == 0 {
            return Err(
                "learn.snapshot_poll_secs and learn.reflective_step_timeout_ms must be at least 1"
                    .into(),
            );
        }
        if self.block_max_tokens == 0 || self.lift_min_rated == 0 {
            return Err(
                "learn.block_max_tokens and learn.lift_min_rated must be at least 1".into(),
            );
        }
        if !(self.lift_z.is_finite() && self.lift_z > 0.0) {
            return Err(format!(
                "learn.lift_z must be a number greater than 0, not {}",
                self.lift_z
            ));
        }
        if !(self.url.is_empty()
            || self.url.starts_with("http://")
            || self.url.starts_with("https://"))
        {
            return Err(format!(
                "learn.url {:?} must start with http:// or https://",
                self.url
            ));
        }
        Ok(())
    }
}
