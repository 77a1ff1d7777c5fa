//! The worker: ingests feedback, runs the per-log stages under row leases,
//! and for each tenant with enough change re-clusters, builds modules,
//! validates and publishes a snapshot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use uno_core::config::{Config, EmbedderKind, LearnConfig, NoveltyKind};
use uno_core::snapshot::{ClusterExperience, Snapshot};
use uno_llm::embed::Embedder;
use uno_llm::{ChatModel, HashingEmbedder, UpstreamClient, UpstreamEmbedder};
use uno_store::Store;
use uno_store::learn::{LearnLog, LogStage, StageOutput, TenantLearnState};

use crate::build::{self, ClusterPlan};
use crate::lift;
use crate::metrics::{Outcome, Stage, WorkerMetrics};
use crate::prompts::Lang;
use crate::stages::{self, NoveltyScorer, StageError};
use crate::validate;

/// Why the worker could not run at all (per-log and per-tenant failures are
/// recorded and retried instead).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] uno_store::StoreError),
    /// The configuration cannot work.
    #[error("{0}")]
    Config(String),
    /// Clustering a tenant's logs failed (malformed vectors, or the
    /// clustering task died): the tenant keeps its published snapshot.
    #[error("clustering failed: {0}")]
    Clustering(String),
    /// Validating a cluster's block failed (its held-out logs could not be
    /// judged): the tenant keeps its published snapshot.
    #[error("validating cluster {cluster}: {reason}")]
    Validation {
        /// The cluster.
        cluster: String,
        /// What failed.
        reason: String,
    },
}

/// Progress of a run, for a terminal bar or logs.
pub trait Progress: Send + Sync {
    /// A phase starts with `total` steps (0 when unknown).
    fn phase(&self, name: &str, total: u64);
    /// `n` steps of the current phase are done.
    fn advance(&self, n: u64);
    /// A line worth showing (a tenant published, a failure).
    fn note(&self, line: &str);
}

/// Progress that goes to the tracing log only.
pub struct LogProgress;

impl Progress for LogProgress {
    fn phase(&self, name: &str, total: u64) {
        tracing::info!(phase = name, total, "worker phase");
    }
    fn advance(&self, _n: u64) {}
    fn note(&self, line: &str) {
        tracing::info!("{line}");
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    /// Learning logs created or restarted from new feedback.
    pub ingested: u64,
    /// Per-log stages completed.
    pub stages_done: u64,
    /// Per-log stage failures (retried later, up to the attempt limit).
    pub stage_failures: u64,
    /// Snapshots published: (tenant, version).
    pub published: Vec<(String, i64)>,
    /// Tenants rebuilt whose snapshot came out unchanged.
    pub unchanged: Vec<String>,
    /// Tenants whose rebuild failed, with why.
    pub failed_tenants: Vec<(String, String)>,
    /// Tenants that were due but another worker held their rebuild.
    pub busy_tenants: Vec<String>,
}

/// The learning worker.
pub struct Worker {
    store: Store,
    config: LearnConfig,
    client: UpstreamClient,
    embedder: Arc<dyn Embedder>,
    /// What its query vectors are stored under ([`stages::vector_key`]).
    vector_key: String,
    novelty: NoveltyScorer,
    owner: String,
    /// One chat model per model name, shared so what each learns about its
    /// upstream (which JSON mode it accepts) carries over between logs.
    models: std::sync::Mutex<std::collections::HashMap<String, ChatModel>>,
    /// Stage durations and outcomes, for `/metrics`.
    metrics: Arc<WorkerMetrics>,
}

impl Worker {
    /// A worker over `store` for the whole configuration (the learner
    /// endpoint and embedder come from `[learn]`).
    pub async fn from_config(store: Store, config: &Config) -> Result<Worker, WorkerError> {
        let learn = config.learn.clone();
        learn.validate().map_err(WorkerError::Config)?;
        let client = learner_client(config)?;
        let embedder = build_embedder(&learn, &client).await?;
        Ok(Worker::new(store, learn, client, embedder))
    }

    /// A worker with an explicit client and embedder (tests, embedding in
    /// `uno serve`).
    pub fn new(
        store: Store,
        config: LearnConfig,
        client: UpstreamClient,
        embedder: Arc<dyn Embedder>,
    ) -> Worker {
        let novelty = match config.novelty {
            NoveltyKind::Llm
                if config.novelty_novel_below > 0.0 || config.novelty_covered_above < 1.0 =>
            {
                NoveltyScorer::llm_with_prefilter(
                    config.novelty_samples,
                    crate::stages::Prefilter {
                        embedder: Arc::clone(&embedder),
                        novel_below: config.novelty_novel_below,
                        covered_above: config.novelty_covered_above,
                    },
                )
            }
            NoveltyKind::Llm => NoveltyScorer::llm(config.novelty_samples),
            NoveltyKind::Embedding => NoveltyScorer::Embedding(Arc::clone(&embedder)),
        };
        let owner = format!(
            "{}:{}:{}",
            hostname(),
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        );
        Worker {
            store,
            config,
            client,
            vector_key: stages::vector_key(embedder.as_ref()),
            embedder,
            novelty,
            owner,
            models: std::sync::Mutex::default(),
            metrics: Arc::default(),
        }
    }

    /// The embedder's id.
    pub fn embedder_id(&self) -> &str {
        self.embedder.id()
    }

    /// What its query vectors are stored under, and snapshots record as
    /// their embedder: the embedder and the query text's version.
    pub fn vector_key(&self) -> &str {
        &self.vector_key
    }

    fn model_for(&self, log_model: &str) -> ChatModel {
        let model = if self.config.model.is_empty() {
            log_model
        } else {
            &self.config.model
        };
        let mut models = self.models.lock().unwrap_or_else(|p| p.into_inner());
        models
            .entry(model.to_owned())
            .or_insert_with(|| ChatModel::new(self.client.clone(), model))
            .clone()
    }

    /// Records into `metrics` instead of the worker's own instance, so a
    /// server that runs the worker exports its stage figures.
    pub fn with_metrics(mut self, metrics: Arc<WorkerMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The stage durations and outcomes this worker records.
    pub fn metrics(&self) -> &Arc<WorkerMetrics> {
        &self.metrics
    }

    /// Runs everything due once: ingestion, every pending per-log stage, and
    /// the rebuild of every tenant that changed enough (all tenants with
    /// any change when `force`).
    pub async fn run_once(
        &self,
        progress: &dyn Progress,
        force: bool,
    ) -> Result<RunReport, WorkerError> {
        let mut report = RunReport::default();
        let reset = self
            .store
            .reset_stale_learn_logs(&self.vector_key, &self.novelty.id(), force)
            .await?;
        if reset > 0 {
            progress.note(&format!(
                "{reset} learning logs go back a stage (new embedder, query text or novelty scorer, or a retry)"
            ));
        }
        report.ingested = self.ingest(progress).await?;
        self.run_stages(progress, &mut report).await?;
        self.rebuild_due(progress, force, None, &mut report).await?;
        Ok(report)
    }

    /// [`Worker::run_once`] for a one-shot run (`uno worker --once`): when
    /// another worker holds a tenant's rebuild, waits for it (at most one
    /// lease) and rebuilds again if the tenant is still due. The peer may
    /// have started before this run's logs were ready, and a one-shot run
    /// has no next poll to publish them, so it ends only when everything it
    /// distilled is in a snapshot (or the wait runs out, which is reported).
    pub async fn run_once_settled(
        &self,
        progress: &dyn Progress,
        force: bool,
    ) -> Result<RunReport, WorkerError> {
        let mut report = self.run_once(progress, force).await?;
        let deadline = Instant::now() + Duration::from_secs(self.config.lease_secs.max(1));
        while !report.busy_tenants.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let busy = std::mem::take(&mut report.busy_tenants);
            self.rebuild_due(progress, force, Some(&busy), &mut report)
                .await?;
        }
        Ok(report)
    }

    /// Runs until `shutdown` resolves, polling every `poll_interval_secs`.
    pub async fn run(
        &self,
        progress: &dyn Progress,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            match self.run_once(progress, false).await {
                Ok(r) if r.ingested + r.stages_done > 0 || !r.published.is_empty() => {
                    tracing::info!(
                        ingested = r.ingested,
                        stages = r.stages_done,
                        failures = r.stage_failures,
                        published = ?r.published,
                        "worker pass"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "worker pass failed; retrying at the next poll"),
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(Duration::from_secs(self.config.poll_interval_secs.max(1))) => {}
            }
        }
    }

    async fn ingest(&self, progress: &dyn Progress) -> Result<u64, WorkerError> {
        const PAGE: usize = 500;
        const MAX_PER_RUN: usize = 50_000;
        progress.phase("ingest feedback", 0);
        let mut ingested = 0;
        let mut seen = 0;
        loop {
            let sources = self.store.learn_sources(PAGE).await?;
            let page = sources.len();
            let mut progressed = 0;
            for source in &sources {
                let Some(log) = crate::source::learn_log(source) else {
                    continue;
                };
                if self.store.upsert_learn_log(&log).await? {
                    ingested += 1;
                }
                progressed += 1;
                progress.advance(1);
            }
            seen += page;
            // A page where nothing could be ingested would come back the same.
            if page < PAGE || progressed == 0 || seen >= MAX_PER_RUN {
                break;
            }
        }
        Ok(ingested)
    }

    async fn run_stages(
        &self,
        progress: &dyn Progress,
        report: &mut RunReport,
    ) -> Result<(), WorkerError> {
        let counts = self.store.learn_stage_counts(None).await?;
        progress.phase(
            "distil, embed, score",
            counts.distil * 3 + counts.embed * 2 + counts.novelty,
        );
        loop {
            let batch = self
                .store
                .lease_learn_logs(&self.owner, self.config.batch_size, self.config.lease_secs)
                .await?;
            if batch.is_empty() {
                return Ok(());
            }
            // Chunks joined in turn rather than a buffered stream: a stream
            // of borrowing closures is not provably `Send` (rustc #102211),
            // and `uno serve` runs the worker on a spawned task.
            let mut results = Vec::with_capacity(batch.len());
            for chunk in batch.chunks(self.config.concurrency.max(1)) {
                let futures: Vec<_> = chunk.iter().map(|log| self.one_stage(log)).collect();
                results.extend(futures_util::future::join_all(futures).await);
            }
            for r in results {
                if r? {
                    report.stages_done += 1;
                    progress.advance(1);
                } else {
                    report.stage_failures += 1;
                }
            }
        }
    }

    /// Runs the log's current stage; true when its output was stored.
    async fn one_stage(&self, log: &LearnLog) -> Result<bool, WorkerError> {
        let started = Instant::now();
        let model = self.model_for(&log.input.model);
        let (stage, result): (Stage, Result<StageOutput, StageError>) = match log.stage {
            LogStage::Distil => (
                Stage::Distil,
                stages::distil(&model, log, self.config.rules_max_tokens).await,
            ),
            LogStage::Embed => (
                Stage::Embed,
                stages::embed(self.embedder.as_ref(), log).await,
            ),
            LogStage::Novelty => (Stage::Novelty, self.novelty.score(&model, log).await),
            // Leasing hands out only runnable logs; one that finished or
            // failed meanwhile has nothing to run.
            LogStage::Ready | LogStage::Failed => return Ok(false),
        };
        let id = log.input.interaction_id;
        let outcome = if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        };
        self.metrics.record(stage, outcome, started.elapsed());
        match result {
            Ok(output) => {
                let stored = self
                    .store
                    .finish_learn_stage(id, &self.owner, &log.input.feedback_hash, &output)
                    .await?;
                tracing::debug!(
                    interaction = %id,
                    stage = %log.stage,
                    ms = started.elapsed().as_millis() as u64,
                    stored,
                    "stage done"
                );
                Ok(true)
            }
            Err(err) => {
                tracing::warn!(interaction = %id, stage = %log.stage, %err, "stage failed");
                self.store
                    .fail_learn_stage(id, &self.owner, &err.to_string(), self.config.max_attempts)
                    .await?;
                Ok(false)
            }
        }
    }

    fn is_due(&self, t: &TenantLearnState, force: bool) -> bool {
        // Forced: every tenant, so a change of settings (policy,
        // thresholds) takes effect without waiting for new logs.
        if t.dirty || force {
            return true;
        }
        let changed =
            t.last_logs != Some(t.ready) || t.last_updated.is_none_or(|u| t.ready_updated > u);
        if !changed {
            return false;
        }
        // Never rebuilt: publish even with no usable log yet (every log may
        // have failed), so the tenant has a first version to build on.
        let Some(last_run) = t.last_run_at else {
            return true;
        };
        let grown = t.ready.abs_diff(t.last_logs.unwrap_or(0));
        let waited = chrono::Utc::now()
            .timestamp_micros()
            .saturating_sub(last_run)
            >= i64::try_from(
                self.config
                    .recluster_interval_secs
                    .saturating_mul(1_000_000),
            )
            .unwrap_or(i64::MAX);
        grown >= self.config.recluster_after_logs as u64
            || waited
            || t.ready < t.last_logs.unwrap_or(0)
    }

    /// Rebuilds every due tenant (only those in `only` when given).
    async fn rebuild_due(
        &self,
        progress: &dyn Progress,
        force: bool,
        only: Option<&[String]>,
        report: &mut RunReport,
    ) -> Result<(), WorkerError> {
        for t in self.store.learn_tenants().await? {
            if only.is_some_and(|only| !only.contains(&t.tenant)) || !self.is_due(&t, force) {
                continue;
            }
            if !self
                .store
                .lease_learn_job(&t.tenant, &self.owner, self.config.lease_secs)
                .await?
            {
                progress.note(&format!(
                    "tenant {}: another worker is rebuilding it",
                    t.tenant
                ));
                report.busy_tenants.push(t.tenant.clone());
                continue;
            }
            let started = Instant::now();
            let outcome = self.rebuild(&t.tenant, progress).await;
            let recorded = match &outcome {
                Ok(Some(_)) => Outcome::Ok,
                Ok(None) => Outcome::Unchanged,
                Err(_) => Outcome::Error,
            };
            self.metrics
                .record(Stage::Rebuild, recorded, started.elapsed());
            let (ok, line) = match &outcome {
                Ok(Some(version)) => {
                    report.published.push((t.tenant.clone(), *version));
                    (
                        true,
                        format!("tenant {}: published snapshot version {version}", t.tenant),
                    )
                }
                Ok(None) => {
                    report.unchanged.push(t.tenant.clone());
                    (true, format!("tenant {}: snapshot unchanged", t.tenant))
                }
                Err(err) => {
                    report
                        .failed_tenants
                        .push((t.tenant.clone(), err.to_string()));
                    (false, format!("tenant {}: rebuild failed: {err}", t.tenant))
                }
            };
            tracing::info!(tenant = %t.tenant, ms = started.elapsed().as_millis() as u64, ok, "rebuild");
            progress.note(&line);
            self.store
                .finish_learn_job(&t.tenant, &self.owner, t.ready, t.ready_updated, ok)
                .await?;
        }
        Ok(())
    }

    /// The tenant's recent logged first turns without text feedback,
    /// embedded as the logs' queries are, for routing
    /// ([`build::plan_clusters_with`]); none with the centroid router or
    /// `learn.route_logged_queries = 0`, or when they cannot be embedded.
    async fn logged_queries(
        &self,
        tenant: &str,
        progress: &dyn Progress,
    ) -> Result<Vec<build::LoggedQuery>, WorkerError> {
        let limit = self.config.route_logged_queries;
        if limit == 0 || self.config.route_examples == 0 {
            return Ok(Vec::new());
        }
        let texts: Vec<String> = self
            .store
            .unlearned_requests(tenant, limit)
            .await?
            .iter()
            .filter_map(|r| crate::source::first_turn_route_text(r))
            .collect();
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        progress.phase(
            &format!("embed {tenant}'s logged queries for routing"),
            texts.len() as u64,
        );
        let mut queries = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(256) {
            let vectors = match self.embedder.embed(chunk).await {
                Ok(vectors) => vectors,
                Err(err) => {
                    // Routing by the members alone still works.
                    tracing::warn!(tenant, %err, "cannot embed logged queries for routing; routing by the feedback logs alone");
                    return Ok(Vec::new());
                }
            };
            queries.extend(
                chunk
                    .iter()
                    .zip(vectors)
                    .map(|(text, query_vec)| build::LoggedQuery {
                        text: text.clone(),
                        query_vec,
                    }),
            );
            progress.advance(chunk.len() as u64);
        }
        Ok(queries)
    }

    /// Re-clusters a tenant's ready logs, builds and validates modules and
    /// publishes the snapshot. Returns the new version, or `None` when the
    /// result equals the latest snapshot.
    pub async fn rebuild(
        &self,
        tenant: &str,
        progress: &dyn Progress,
    ) -> Result<Option<i64>, WorkerError> {
        let logs = self
            .store
            .ready_learn_logs(tenant, &self.vector_key)
            .await?;
        let previous = self.store.snapshot(tenant, None).await.ok().flatten();
        let overrides = crate::overrides::Overrides::load(&self.store, tenant).await?;
        let logged = self.logged_queries(tenant, progress).await?;
        progress.phase(&format!("cluster {tenant}"), logs.len() as u64);
        let config = self.config.clone();
        let logs = Arc::new(logs);
        let plan_logs = Arc::clone(&logs);
        let prev = previous.clone();
        let build::Plans {
            clusters: plans,
            routing,
        } = tokio::task::spawn_blocking(move || {
            build::plan_clusters_with(&plan_logs, &logged, &config, prev.as_ref())
        })
        .await
        .map_err(|err| WorkerError::Clustering(format!("its task ended: {err}")))?
        .map_err(|err| WorkerError::Clustering(err.to_string()))?;
        progress.advance(logs.len() as u64);
        if let Some(r) = &routing {
            let routable = plans.iter().filter(|p| p.route.routable).count();
            tracing::info!(
                tenant,
                agreement = r.agreement,
                agreement_routable = r.agreement_routable,
                passthrough = r.passthrough,
                routable,
                clusters = plans.len(),
                "routing calibrated"
            );
            progress.note(&format!(
                "tenant {tenant}: routing agreement {:.1}% of logs ({:.1}% in routable clusters), \
                 {:.1}% pass through; {routable} of {} clusters routable",
                100.0 * r.agreement,
                100.0 * r.agreement_routable,
                100.0 * r.passthrough,
                plans.len()
            ));
        }
        progress.phase(&format!("build and validate {tenant}"), plans.len() as u64);
        let mut clusters = Vec::with_capacity(plans.len());
        for plan in &plans {
            clusters.push(
                self.cluster_experience(tenant, plan, &logs, &overrides)
                    .await?,
            );
            progress.advance(1);
        }
        self.check_lift(tenant, &mut clusters).await?;
        let dim = logs
            .first()
            .map_or(self.embedder.dim(), |l| l.query_vec.len());
        let snapshot = Snapshot {
            tenant: tenant.to_owned(),
            version: 0,
            created_at: 0,
            embedder_id: self.vector_key.clone(),
            dim,
            route_embedder: build::route_embedder(&self.config)
                .map(|e| e.id().to_owned())
                .map_err(|err| WorkerError::Config(format!("learn.route_dim: {err}")))?,
            routing,
            policy: self.config.policy,
            settings: self.config.settings(),
            logs: logs.len(),
            clusters,
        };
        Ok(self.store.publish_snapshot(&snapshot, "worker").await?)
    }

    /// The holdout lift check ([`crate::lift`]): the tenant's served
    /// traffic over the last `learn.lift_window_days`, per cluster id, is
    /// recorded on the cluster with the same id (ids are kept across
    /// re-clusterings, so the traffic was served by the same cluster), and a
    /// treatment users rate measurably worse than its holdout is withdrawn.
    async fn check_lift(
        &self,
        tenant: &str,
        clusters: &mut [ClusterExperience],
    ) -> Result<(), WorkerError> {
        if self.config.lift_window_days == 0 {
            return Ok(());
        }
        let window = i64::from(self.config.lift_window_days) * 86_400 * 1_000_000;
        let since = chrono::Utc::now().timestamp_micros().saturating_sub(window);
        let ratings = self.store.cluster_ratings(tenant, since).await?;
        for cluster in clusters.iter_mut() {
            let Some(r) = ratings.iter().find(|r| r.cluster_id == cluster.id) else {
                continue;
            };
            let before = cluster.mode;
            lift::apply(&self.config, cluster, r);
            if cluster.mode != before {
                tracing::warn!(tenant, cluster = %cluster.id, decision = %cluster.decision, "treatment withdrawn");
            }
        }
        Ok(())
    }

    async fn cluster_experience(
        &self,
        tenant: &str,
        plan: &ClusterPlan,
        logs: &[LearnLog],
        overrides: &crate::overrides::Overrides,
    ) -> Result<ClusterExperience, WorkerError> {
        let cfg = &self.config;
        let candidates = build::candidates(&plan.train, logs);
        let texts: Vec<String> = candidates.iter().map(|c| c.text.clone()).collect();
        let vectors = match self.embedder.embed(&texts).await {
            Ok(v) if v.len() == texts.len() => Some(v),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(%err, cluster = %plan.id, "could not embed rules for deduplication; exact duplicates only");
                None
            }
        };
        let lang = Lang::from_code(&plan.lang);
        // Exact and embedding merge, then one cached LLM call groups the
        // merged rules by meaning (paraphrases add up; contradictions and
        // promotions are named); see `crate::rules`.
        let (merged, merged_of) =
            crate::rules::merge(&candidates, vectors.as_deref(), cfg.dedupe_similarity);
        let train: Vec<&LearnLog> = plan.train.iter().map(|&i| &logs[i]).collect();
        let consolidation = crate::rules::by_meaning(
            &self.store,
            &self.model_for(&majority_model(&train)),
            tenant,
            lang,
            &merged,
            cfg.rules_max_tokens,
        )
        .await;
        let region = crate::rules::region_users(&plan.train, logs);
        let bars = crate::rules::Bars {
            min_support: cfg.min_support,
            min_share: cfg.min_support_share,
            hold_promotions: cfg.holds_promotions(tenant),
        };
        let (mut rules, rule_of) = crate::rules::rank(&merged, &consolidation, &region, bars);
        let index: Vec<usize> = merged_of.iter().map(|&m| rule_of[m]).collect();
        overrides.apply_to_rules(&plan.id, &mut rules);
        let lessons = build::lessons(&plan.train, logs, &candidates, &index, &rules);
        let supported: Vec<String> = rules
            .iter()
            .filter(|r| r.served)
            .map(|r| r.text.clone())
            .collect();
        // The block carries what fits the budget; the critic (reflective)
        // may still draw on every supported rule.
        let (served, block) =
            build::fit_block(lang, &supported, cfg.max_rules, cfg.block_max_tokens);
        let high_gap = plan.gap.min >= cfg.gap_threshold;
        let holdout: Vec<&LearnLog> = plan.holdout.iter().map(|&i| &logs[i]).collect();
        let skipped = if supported.is_empty() {
            Some("no served rules".to_owned())
        } else if served.is_empty() {
            Some(format!(
                "not even the best rule fits learn.block_max_tokens ({} estimated tokens)",
                cfg.block_max_tokens
            ))
        } else if high_gap {
            Some("high gap".to_owned())
        } else if holdout.len() < cfg.min_validation_logs.max(1) {
            Some(format!(
                "{} held-out logs, fewer than the {} required",
                holdout.len(),
                cfg.min_validation_logs.max(1)
            ))
        } else {
            None
        };
        let validation = if skipped.is_none() {
            let model = self.model_for(&majority_model(&holdout));
            match validate::validate(&self.store, &model, cfg, &block, &holdout, cfg.concurrency)
                .await
            {
                Ok(v) => Some(v),
                Err(err) => {
                    return Err(WorkerError::Validation {
                        cluster: plan.id.clone(),
                        reason: err.to_string(),
                    });
                }
            }
        } else {
            None
        };
        let (mode, mut decision, high_gap) = build::decide(
            cfg,
            &plan.gap,
            validation.as_ref(),
            supported.len(),
            lessons.len(),
            skipped.as_deref(),
        );
        let held = rules
            .iter()
            .filter(|r| r.held.is_some() && !r.served)
            .count();
        if held > 0 {
            decision.push_str(&format!(
                "; {held} rule{} held for approval (promotes a product, site or contact)",
                if held == 1 { "" } else { "s" }
            ));
        }
        // Only what is served is kept beyond the ranked list's head, so a
        // long tail of one-off rules does not bloat every snapshot.
        rules.truncate(cfg.max_rules.max(served.len()) * 5);
        Ok(ClusterExperience {
            id: plan.id.clone(),
            size: plan.members.len(),
            lang: plan.lang.clone(),
            centroid: plan.centroid.clone(),
            unseen_threshold: plan.unseen_threshold,
            route_centroid: plan.route_centroid.clone(),
            route_threshold: plan.route_threshold,
            route: Some(plan.route.clone()),
            route_examples: plan.route_examples.clone(),
            route_required: plan.route_required.clone(),
            route_excluded: plan.route_excluded.clone(),
            route_templates: plan.route_templates.clone(),
            route_words: plan.route_words.clone(),
            mode,
            decision,
            gap: plan.gap,
            high_gap,
            validation,
            block,
            rules,
            lessons,
            members: plan
                .members
                .iter()
                .map(|&i| logs[i].input.interaction_id)
                .collect(),
            holdout: plan
                .holdout
                .iter()
                .map(|&i| logs[i].input.interaction_id)
                .collect(),
            lift: None,
        })
    }
}

fn majority_model(logs: &[&LearnLog]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for l in logs {
        match counts.iter_mut().find(|(m, _)| *m == l.input.model) {
            Some(c) => c.1 += 1,
            None => counts.push((&l.input.model, 1)),
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(m, _)| m.to_owned())
        .unwrap_or_default()
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "worker".to_owned())
}

/// The client the worker talks to: the `[learn]` endpoint when set, else
/// the serving upstreams.
fn learner_client(config: &Config) -> Result<UpstreamClient, WorkerError> {
    let mut c = config.clone();
    if !config.learn.url.is_empty() {
        c.upstreams = vec![uno_core::config::UpstreamConfig {
            name: "learner".to_owned(),
            url: config.learn.url.clone(),
            api_key: config.learn.api_key.clone(),
            models: Vec::new(),
        }];
    }
    // The worker's calls are long generations: allow them time.
    c.http.read_timeout_ms = c.http.read_timeout_ms.max(300_000);
    UpstreamClient::new(&c).map_err(|err| WorkerError::Config(format!("learner upstream: {err}")))
}

async fn build_embedder(
    learn: &LearnConfig,
    client: &UpstreamClient,
) -> Result<Arc<dyn Embedder>, WorkerError> {
    match learn.embedder {
        EmbedderKind::Hashing => Ok(Arc::new(
            HashingEmbedder::new(learn.hashing_dim)
                .map_err(|err| WorkerError::Config(err.to_string()))?,
        )),
        EmbedderKind::Upstream => {
            let embedder: UpstreamEmbedder =
                UpstreamEmbedder::builder(client.clone(), learn.embedder_model.clone())
                    .probe()
                    .await
                    .map_err(|err| WorkerError::Config(format!("upstream embedder: {err}")))?;
            Ok(Arc::new(embedder))
        }
        EmbedderKind::Local => local_embedder(learn).await,
    }
}

#[cfg(feature = "local-embed")]
async fn local_embedder(learn: &LearnConfig) -> Result<Arc<dyn Embedder>, WorkerError> {
    let embedder = uno_llm::LocalEmbedder::open(learn.embedder_path.clone())
        .await
        .map_err(|err| {
            WorkerError::Config(format!(
                "local embedder at {:?}: {err}; run scripts/install-models.sh, or set learn.embedder_path (UNO_EMBEDDER_PATH)",
                learn.embedder_path
            ))
        })?;
    Ok(Arc::new(embedder))
}

#[cfg(not(feature = "local-embed"))]
async fn local_embedder(_learn: &LearnConfig) -> Result<Arc<dyn Embedder>, WorkerError> {
    Err(WorkerError::Config(
        "learn.embedder = \"local\" needs uno built with `--features local-embed`; \
         build it so, or set learn.embedder (UNO_EMBEDDER) to \"upstream\""
            .to_owned(),
    ))
}
