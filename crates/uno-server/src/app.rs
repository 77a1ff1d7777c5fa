//! The application's shared state: what every handler reads (configuration,
//! upstream client, store, log sink, learned experience, metrics). The
//! route table that composes the handlers is `router.rs`.

use std::sync::Arc;

use uno_core::config::Config;
use uno_core::interaction::InteractionSink;
use uno_llm::{InvalidUpstream, UpstreamClient};
use uno_store::Store;
use uno_store::writer::LogSink;

use crate::auth::Authenticator;
use crate::experience::Experience;
use crate::metrics::ServerMetrics;
use crate::metrics::access::MetricsAccess;
use crate::metrics::served::MeteredSink;
use crate::recent::RecentInteractions;

/// How many recently served interaction ids the feedback check remembers.
const RECENT_INTERACTIONS: usize = 200_000;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    upstream: UpstreamClient,
    auth: Authenticator,
    sink: Arc<dyn InteractionSink>,
    max_body_bytes: usize,
    recent: RecentInteractions,
    persistence: Option<Persistence>,
    admin_key: Option<[u8; 32]>,
    feedback_max_text_bytes: usize,
    experience: Experience,
    metrics: Arc<ServerMetrics>,
    metrics_access: MetricsAccess,
}

/// The database side: what feedback and the admin API need.
#[derive(Clone)]
pub struct Persistence {
    /// The store, for reads (feedback ownership checks, admin).
    pub store: Store,
    /// The log writer's queue, for writes.
    pub log: LogSink,
}

impl AppState {
    /// Builds the state from configuration; `sink` receives every logged
    /// interaction. Without a store, feedback and the admin API answer 503.
    pub fn new(config: &Config, sink: Arc<dyn InteractionSink>) -> Result<Self, InvalidUpstream> {
        Self::build(config, sink, None)
    }

    /// Builds the state with a database: interactions go through the log
    /// writer behind `log`, and feedback and the admin API are served.
    pub fn with_store(
        config: &Config,
        store: Store,
        log: LogSink,
    ) -> Result<Self, InvalidUpstream> {
        let sink: Arc<dyn InteractionSink> = Arc::new(log.clone());
        Self::build(config, sink, Some(Persistence { store, log }))
    }

    fn build(
        config: &Config,
        sink: Arc<dyn InteractionSink>,
        persistence: Option<Persistence>,
    ) -> Result<Self, InvalidUpstream> {
        let metrics = Arc::new(ServerMetrics::default());
        let sink: Arc<dyn InteractionSink> = Arc::new(MeteredSink::new(
            sink,
            metrics.latencies.clone(),
            metrics.serves.clone(),
        ));
        Ok(AppState {
            inner: Arc::new(Inner {
                upstream: UpstreamClient::new(config)?,
                auth: Authenticator::new(&config.auth),
                sink,
                max_body_bytes: config.server.max_body_bytes,
                recent: RecentInteractions::new(RECENT_INTERACTIONS),
                persistence,
                admin_key: config.admin.key.as_deref().map(crate::auth::key_digest),
                feedback_max_text_bytes: config.feedback.max_text_bytes,
                experience: Experience::new(&config.learn),
                metrics,
                metrics_access: MetricsAccess::new(&config.metrics, config.server.listen),
            }),
        })
    }

    /// Interactions this process served recently, by id.
    pub fn recent(&self) -> &RecentInteractions {
        &self.inner.recent
    }

    /// The database side, if configured.
    pub fn persistence(&self) -> Option<&Persistence> {
        self.inner.persistence.as_ref()
    }

    /// The admin key's digest, if the admin API is enabled.
    pub fn admin_key(&self) -> Option<&[u8; 32]> {
        self.inner.admin_key.as_ref()
    }

    /// Longest feedback text accepted.
    pub fn feedback_max_text_bytes(&self) -> usize {
        self.inner.feedback_max_text_bytes
    }

    /// Learned experience: the active snapshots and how they are applied.
    pub fn experience(&self) -> &Experience {
        &self.inner.experience
    }

    /// What `/metrics` reports.
    pub fn metrics(&self) -> &Arc<ServerMetrics> {
        &self.inner.metrics
    }

    /// Who may read `/metrics`, and on which listener.
    pub fn metrics_access(&self) -> &MetricsAccess {
        &self.inner.metrics_access
    }

    /// The pooled upstream client.
    pub fn upstream(&self) -> &UpstreamClient {
        &self.inner.upstream
    }

    /// The key checker.
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// Where interaction records go.
    pub fn sink(&self) -> &Arc<dyn InteractionSink> {
        &self.inner.sink
    }

    /// The request body limit.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }
}
