//! `uno serve`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use uno_core::config::{Config, LogFormat};
use uno_server::auth::spawn_key_refresh;
use uno_server::connection::Limits;
use uno_server::experience::spawn_snapshot_refresh;
use uno_server::metrics::ratings::spawn_rating_refresh;
use uno_server::metrics::start_metrics_listener;
use uno_server::{AppState, BoundServer, build_router, shutdown_signal};
use uno_store::jobs::spawn_retention;
use uno_store::writer::{LogWriter, WriterConfig};

/// Options of `uno serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides server.listen and UNO_LISTEN).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Do not apply database migrations at start (run `uno migrate` first).
    #[arg(long)]
    no_migrate: bool,
}

/// Loads configuration, starts the server and runs until SIGINT/SIGTERM.
pub fn run(config_path: Option<&Path>, args: ServeArgs) -> anyhow::Result<()> {
    let (mut config, warnings) = crate::config::load(config_path)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if args.no_migrate {
        config.database.migrate_on_start = false;
    }
    init_logging(&config)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store =
        crate::database::open_for_serve(&config, config.database.migrate_on_start, down.clone())
            .await?;
    let started_down = down.load(std::sync::atomic::Ordering::Relaxed);
    let writer_config = WriterConfig {
        database_down: down.clone(),
        ..WriterConfig::from(&config.log_writer)
    };
    let writer = LogWriter::start(store.clone(), writer_config)
        .context("cannot open the log journal; check log_writer.journal_dir")?;
    let state = AppState::with_store(&config, store.clone(), writer.sink())?;
    state
        .metrics()
        .database_down
        .store(started_down, std::sync::atomic::Ordering::Relaxed);
    let key_cache = std::path::Path::new(&config.log_writer.journal_dir).join("api-keys.json");
    if started_down {
        match uno_server::auth::load_key_cache(&key_cache) {
            Some(keys) => {
                tracing::info!(keys = keys.len(), path = %key_cache.display(), "serving the stored API keys from the key cache until the database is back");
                state.auth().replace_stored_keys(keys);
            }
            None => {
                tracing::warn!(path = %key_cache.display(), "no API key cache: only the keys in the config are served until the database is back")
            }
        }
    }
    let background =
        spawn_background(&config, &state, &store, &down, key_cache, started_down).await?;
    if state.auth().accepts_nothing() {
        tracing::warn!(
            "no API keys are configured, so every /v1 request will get 401; \
             set UNO_API_KEYS (or auth.keys), or UNO_AUTH_DISABLED=true for local use only"
        );
    }
    if config.auth.disabled {
        tracing::warn!("authentication is DISABLED (auth.disabled); do not expose this server");
    }
    let limits = connection_limits(&config.server);
    let server = BoundServer::bind(
        config.server.listen,
        build_router(state.clone()),
        limits,
        state.metrics().connections.clone(),
    )
    .await?;
    let metrics_listener = start_metrics_listener(&state, server.local_addr()?).await?;
    // An upstream URL may carry credentials (https://user:secret@host).
    let upstreams: Vec<String> = config
        .upstreams
        .iter()
        .map(|u| uno_store::redact_url(&u.url))
        .collect();
    tracing::info!(
        listen = %server.local_addr()?,
        upstreams = ?upstreams,
        database = store.backend(),
        "uno is serving the OpenAI API"
    );
    let served = server.run(shutdown_signal()).await;
    if let Some(listener) = metrics_listener {
        listener.task.abort();
    }
    background.abort();
    // Everything logged so far reaches the database, or the journal.
    writer.shutdown().await;
    // A hung database would hold its connections (and this close) forever.
    if tokio::time::timeout(Duration::from_secs(5), store.close())
        .await
        .is_err()
    {
        tracing::warn!("the database did not close its connections in 5 s; exiting anyway");
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// The connection limits of `[server]`, with `max_connections` lowered to
/// what the open-file limit allows. The soft limit is first raised to the
/// hard one (often 1,024 against 524,288), as servers commonly do; each
/// connection takes two descriptors (the client's and the upstream's), and
/// 256 are kept for the database pool, the journal and the rest.
fn connection_limits(server: &uno_core::config::ServerConfig) -> Limits {
    let mut limits = Limits::from_config(server);
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::debug!(%err, "cannot read or raise the open-file limit");
            return limits;
        }
    };
    let allowed = usize::try_from(open_files.saturating_sub(256) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    if allowed < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            allowed,
            open_files,
            "server.max_connections is lowered to what the open-file limit allows \
             (raise it with `ulimit -n` or LimitNOFILE= to serve more connections)"
        );
        limits.max_connections = allowed;
    }
    limits
}

/// The learning worker inside `uno serve` (`learn.in_serve`), on its own
/// task; serving never waits on it.
/// The tasks that keep a serving process current: keys, snapshots, feedback
/// gauges, retention and (with `learn.in_serve`) the worker. With the
/// database up they start at once (keys and snapshots loaded before the
/// first request); started during an outage they wait for it in the
/// background, and meanwhile `down` is mirrored into the metrics.
async fn spawn_background(
    config: &Config,
    state: &AppState,
    store: &uno_store::Store,
    down: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    key_cache: std::path::PathBuf,
    started_down: bool,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (config, state, store, down) = (config.clone(), state.clone(), store.clone(), down.clone());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let task = tokio::spawn(async move {
        use std::sync::atomic::Ordering;
        while down.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        state
            .metrics()
            .database_down
            .store(false, Ordering::Relaxed);
        let mut tasks = vec![
            spawn_key_refresh(
                state.clone(),
                store.clone(),
                Duration::from_secs(config.auth.key_refresh_secs),
                Some(key_cache),
            )
            .await,
            // Every tenant's active snapshot is loaded before the first
            // request (when the database is up at start).
            spawn_snapshot_refresh(
                state.experience().snapshots.clone(),
                store.clone(),
                Duration::from_secs(config.learn.snapshot_poll_secs),
            )
            .await,
            spawn_rating_refresh(
                state.metrics().ratings.clone(),
                store.clone(),
                Duration::from_secs(u64::from(config.learn.lift_window_days) * 86_400),
                Duration::from_secs(config.metrics.feedback_refresh_secs),
            ),
        ];
        tasks.extend(spawn_retention(store.clone(), &config.retention));
        let worker = spawn_worker(&config, store.clone(), state.metrics().worker.clone()).await;
        let started = match worker {
            Ok(worker) => {
                tasks.extend(worker);
                Ok(())
            }
            Err(err) => {
                tracing::error!("{err:#}");
                Err(format!("{err:#}"))
            }
        };
        let _ = ready_tx.send(started);
        // Held until aborted at shutdown, which ends every task.
        let _abort_all = AbortOnDrop(tasks);
        std::future::pending::<()>().await;
    });
    if !started_down {
        // Keys and snapshots are in place before the server binds, and a
        // worker that cannot start stops serve, as a bad config should.
        if let Ok(Err(err)) = ready_rx.await {
            task.abort();
            anyhow::bail!(err);
        }
    }
    Ok(task)
}

/// Aborts its tasks when dropped (the background task is aborted at
/// shutdown, and its tasks with it).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn spawn_worker(
    config: &Config,
    store: uno_store::Store,
    metrics: std::sync::Arc<uno_learn::WorkerMetrics>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if !config.learn.in_serve {
        return Ok(None);
    }
    let worker = uno_learn::Worker::from_config(store, config)
        .await
        .context("cannot start the learning worker (learn.in_serve)")?
        .with_metrics(metrics);
    tracing::info!(
        embedder = worker.embedder_id(),
        "learning worker runs inside serve"
    );
    Ok(Some(tokio::spawn(async move {
        worker
            .run(&uno_learn::LogProgress, std::future::pending())
            .await;
    })))
}

pub(crate) fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.filter).with_context(|| {
        format!(
            "log.filter (UNO_LOG) {:?} is not a valid filter",
            config.log.filter
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        // One object per line; an event inside a request carries the
        // request span's fields (interaction_id, tenant) under "span", and
        // every enclosing span's under "spans".
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    }
    .map_err(|err| anyhow::anyhow!("cannot initialise logging: {err}"))
}
