//! The servers under load, each on its own runtime in its own thread, so the
//! load generator, the uno instances and the mock never share worker threads.
//!
//! Two uno instances run side by side: `uno` logs to a [`TracingSink`]
//! (logging off: no subscriber is installed), `uno+pg` logs to Postgres
//! through the log writer exactly as `uno serve` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::sync::oneshot;
use uno_core::config::{ApiKeyConfig, Config};
use uno_server::auth::spawn_key_refresh;
use uno_server::sink::TracingSink;
use uno_server::{AppState, BoundServer};
use uno_store::Store;
use uno_store::writer::{LogWriter, WriterConfig, WriterStats};
use uno_testkit::{MockReply, MockUpstream, TestDatabase};

/// Worker threads of each runtime (mock, uno, uno+pg, load generator).
pub const WORKER_THREADS: usize = 2;

/// A multi-thread runtime with [`WORKER_THREADS`] workers.
pub fn runtime(name: &str) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name(name)
        .enable_all()
        .build()
        .with_context(|| format!("cannot start the {name} runtime"))
}

/// A server thread and the means to stop it.
pub struct Running<T> {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<anyhow::Result<T>>,
}

impl<T> Running<T> {
    /// Wraps a spawned server thread and its stop signal.
    pub fn new(stop: oneshot::Sender<()>, thread: JoinHandle<anyhow::Result<T>>) -> Self {
        Running { stop, thread }
    }

    /// Signals the thread to stop and waits for it.
    pub fn stop(self) -> anyhow::Result<T> {
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| anyhow!("a server thread panicked"))?
    }

    /// The thread's own error after it failed to start, or `otherwise`.
    pub fn fail(self, otherwise: &str) -> anyhow::Error {
        match self.stop() {
            Err(err) => err,
            Ok(_) => anyhow!("{otherwise}"),
        }
    }
}

/// The mock upstream, running.
pub struct MockServer {
    mock: Arc<MockUpstream>,
    running: Running<()>,
}

impl MockServer {
    /// Starts the mock (recording off) with `reply` as its default answer.
    pub fn start(reply: MockReply) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("mock-upstream".to_owned())
            .spawn(move || -> anyhow::Result<()> {
                let rt = runtime("mock-worker")?;
                rt.block_on(async move {
                    let mock = Arc::new(
                        MockUpstream::builder()
                            .record_requests(false)
                            .default_reply(reply)
                            .start()
                            .await,
                    );
                    if ready_tx.send(Arc::clone(&mock)).is_ok() {
                        let _ = stopped.await;
                    }
                    drop(mock);
                });
                Ok(())
            })
            .context("cannot spawn the mock upstream thread")?;
        let running = Running::new(stop, thread);
        match ready_rx.recv() {
            Ok(mock) => Ok(MockServer { mock, running }),
            Err(_) => Err(running.fail("the mock upstream did not start")),
        }
    }

    /// The mock's handle, to change its default reply between phases.
    pub fn handle(&self) -> &MockUpstream {
        &self.mock
    }

    /// A shared handle, for whoever counts its connections.
    pub fn shared(&self) -> Arc<MockUpstream> {
        Arc::clone(&self.mock)
    }

    /// Stops the mock and waits for its thread.
    pub fn stop(self) -> anyhow::Result<()> {
        let MockServer { mock, running } = self;
        drop(mock);
        running.stop()
    }
}

/// uno, running in-process exactly as `uno serve` runs it.
pub struct UnoServer {
    addr: SocketAddr,
    running: Running<()>,
}

impl UnoServer {
    /// Starts uno on a free loopback port with the default configuration,
    /// `upstream_url` as its only upstream and `key` as its only client key.
    pub fn start(upstream_url: String, key: String) -> anyhow::Result<Self> {
        Self::start_with(upstream_url, key, None)
    }

    /// Like [`UnoServer::start`], serving `snapshot` (if any) as its
    /// tenant's learned experience, with no holdout, so every request that
    /// routes gets the experience.
    pub fn start_with(
        upstream_url: String,
        key: String,
        snapshot: Option<uno_core::snapshot::Snapshot>,
    ) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("uno".to_owned())
            .spawn(move || -> anyhow::Result<()> {
                let rt = runtime("uno-worker")?;
                rt.block_on(async move {
                    let mut config = bench_config(upstream_url, key)?;
                    config.learn.holdout_percent = 0;
                    let state = AppState::new(&config, Arc::new(TracingSink))
                        .context("uno rejected the mock's URL")?;
                    if let Some(snapshot) = &snapshot {
                        state
                            .experience()
                            .snapshots
                            .install(snapshot)
                            .map_err(|err| anyhow!("the bench snapshot does not load: {err}"))?;
                    }
                    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
                    let server = BoundServer::bind_app(listen, &state, &config.server).await?;
                    let addr = server.local_addr()?;
                    if ready_tx.send(addr).is_err() {
                        return Ok(());
                    }
                    server
                        .run(async move {
                            let _ = stopped.await;
                        })
                        .await
                        .context("uno stopped with an error")
                })
            })
            .context("cannot spawn the uno thread")?;
        let running = Running::new(stop, thread);
        match ready_rx.recv() {
            Ok(addr) => Ok(UnoServer { addr, running }),
            Err(_) => Err(running.fail("uno did not start")),
        }
    }

    /// Where uno listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops uno (gracefully) and waits for its thread.
    pub fn stop(self) -> anyhow::Result<()> {
        self.running.stop()
    }
}

/// The default configuration with `upstream_url` as the only upstream and
/// `key` as the only client key (tenant `bench`).
fn bench_config(upstream_url: String, key: String) -> anyhow::Result<Config> {
    let mut config = Config::default();
    let upstream = config
        .upstreams
        .first_mut()
        .context("the default configuration has no upstream")?;
    upstream.url = upstream_url;
    config.auth.keys = vec![ApiKeyConfig {
        key,
        tenant: "bench".to_owned(),
    }];
    config.validate().context("invalid uno configuration")?;
    Ok(config)
}

/// What uno+pg's thread hands over once it listens.
struct PgReady {
    addr: SocketAddr,
    stats: Arc<WriterStats>,
    database: String,
}

/// What uno+pg left in the database, read after its log writer has
/// flushed everything and stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PgOutcome {
    /// Interaction rows the run added to the database.
    pub rows: u64,
    /// Rows the writer says it wrote (interactions and any follow-ups).
    pub rows_written: u64,
    /// Records the writer dropped (queue or journal full).
    pub rows_dropped: u64,
    /// Rows that went to the spill journal (database unavailable).
    pub rows_spilled: u64,
    /// Rows the database refused.
    pub rows_rejected: u64,
}

/// uno logging to Postgres, in-process, started as `uno serve` starts it:
/// `Store::connect` and `migrate`, the log writer (journal in a temporary
/// directory), `AppState::with_store`, and the API key refresh.
pub struct UnoPgServer {
    addr: SocketAddr,
    stats: Arc<WriterStats>,
    database: String,
    running: Running<PgOutcome>,
}

impl UnoPgServer {
    /// Starts uno+pg like [`UnoServer::start`], logging to a fresh
    /// database (dropped when it stops) or, given `database_url`, to that
    /// database (left in place; only the rows this run adds are counted).
    pub fn start(
        upstream_url: String,
        key: String,
        database_url: Option<String>,
    ) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<PgReady>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("uno-pg".to_owned())
            .spawn(move || -> anyhow::Result<PgOutcome> {
                let rt = runtime("unopg-worker")?;
                rt.block_on(async move {
                    let mut config = bench_config(upstream_url, key)?;
                    // A fresh database lives until this block ends, then is
                    // dropped (after the store has closed).
                    let (_fresh, url) = match database_url {
                        Some(url) => (None, url),
                        None => {
                            let db = fresh_postgres().await?;
                            let url = db.url.clone();
                            (Some(db), url)
                        }
                    };
                    config.database.url.clone_from(&url);
                    let store = Store::connect(&url).await.with_context(|| {
                        format!(
                            "uno+pg cannot open the database at {}",
                            uno_store::redact_url(&url)
                        )
                    })?;
                    store
                        .migrate()
                        .await
                        .context("uno+pg cannot apply database migrations")?;
                    let rows_before = store
                        .count_interactions(None)
                        .await
                        .context("cannot count the interactions already stored")?;
                    let journal = tempfile::tempdir()
                        .context("cannot create a directory for the log journal")?;
                    config.log_writer.journal_dir = journal
                        .path()
                        .to_str()
                        .context("the journal directory's path is not UTF-8")?
                        .to_owned();
                    let writer =
                        LogWriter::start(store.clone(), WriterConfig::from(&config.log_writer))
                            .context("cannot open the log journal")?;
                    let stats = writer.stats();
                    let state = AppState::with_store(&config, store.clone(), writer.sink())
                        .context("uno+pg rejected the mock's URL")?;
                    let key_refresh = spawn_key_refresh(
                        state.clone(),
                        store.clone(),
                        Duration::from_secs(config.auth.key_refresh_secs),
                        None,
                    )
                    .await;
                    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
                    let server = BoundServer::bind_app(listen, &state, &config.server).await?;
                    let ready = PgReady {
                        addr: server.local_addr()?,
                        stats: Arc::clone(&stats),
                        database: database_name(&url),
                    };
                    let served = if ready_tx.send(ready).is_ok() {
                        server
                            .run(async move {
                                let _ = stopped.await;
                            })
                            .await
                            .context("uno+pg stopped with an error")
                    } else {
                        Ok(())
                    };
                    key_refresh.abort();
                    // As `uno serve` stops: everything logged reaches the
                    // database (or the journal) before the count.
                    writer.shutdown().await;
                    let rows_after = store.count_interactions(None).await;
                    store.close().await;
                    served?;
                    let rows_after =
                        rows_after.context("cannot count the interactions uno+pg wrote")?;
                    let load = |c: &std::sync::atomic::AtomicU64| {
                        c.load(std::sync::atomic::Ordering::Relaxed)
                    };
                    Ok(PgOutcome {
                        rows: rows_after.saturating_sub(rows_before),
                        rows_written: load(&stats.rows_written),
                        rows_dropped: load(&stats.rows_dropped),
                        rows_spilled: load(&stats.rows_spilled),
                        rows_rejected: load(&stats.rows_rejected),
                    })
                })
            })
            .context("cannot spawn the uno+pg thread")?;
        let running = Running::new(stop, thread);
        match ready_rx.recv() {
            Ok(ready) => Ok(UnoPgServer {
                addr: ready.addr,
                stats: ready.stats,
                database: ready.database,
                running,
            }),
            Err(_) => Err(running.fail("uno+pg did not start")),
        }
    }

    /// Where uno+pg listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The log writer's counters.
    pub fn stats(&self) -> Arc<WriterStats> {
        Arc::clone(&self.stats)
    }

    /// The database's name, to find its Postgres backends.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Stops uno+pg (gracefully), lets its log writer flush, and reports
    /// what reached the database.
    pub fn stop(self) -> anyhow::Result<PgOutcome> {
        self.running.stop()
    }
}

/// A fresh database from [`TestDatabase::postgres`], which panics when the
/// server cannot be reached: the panic becomes an error here.
async fn fresh_postgres() -> anyhow::Result<TestDatabase> {
    tokio::spawn(TestDatabase::postgres()).await.map_err(|err| {
        let why = if err.is_panic() {
            let payload = err.into_panic();
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "it panicked".to_owned())
        } else {
            err.to_string()
        };
        anyhow!("cannot create a Postgres database for uno+pg: {why}")
    })
}

/// The database name in a `postgres://…/name?…` URL.
fn database_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        assert_eq!(
            database_name("postgres://postgres@127.0.0.1:5432/uno_test_1"),
            "uno_test_1"
        );
        assert_eq!(database_name("postgres://u:p@h/db?sslmode=disable"), "db");
    }
}
