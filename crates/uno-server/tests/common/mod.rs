//! Shared set-up for uno-server's integration tests: the real app on a random
//! port, in front of the test kit's mock upstream, with a sink that collects
//! every interaction record so tests can assert what would be logged.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod snapshots;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use uno_core::config::{ApiKeyConfig, Config};
use uno_core::interaction::{InteractionRecord, InteractionSink};
use uno_server::{AppState, BoundServer};

pub const KEY: &str = "uno-test-key-0001";

/// Collects records and wakes waiters.
#[derive(Default)]
pub struct CollectingSink {
    records: Mutex<Vec<InteractionRecord>>,
    notify: Notify,
}

impl InteractionSink for CollectingSink {
    fn submit(&self, record: InteractionRecord) {
        self.records.lock().unwrap().push(record);
        self.notify.notify_waiters();
    }
}

impl CollectingSink {
    pub fn records(&self) -> Vec<InteractionRecord> {
        self.records.lock().unwrap().clone()
    }

    /// Waits until at least `n` records arrived (fails the test after 5 s).
    pub async fn wait_for(&self, n: usize) -> Vec<InteractionRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let notified = self.notify.notified();
            let records = self.records();
            if records.len() >= n {
                return records;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {n} interaction records, got {}",
                    self.records().len()
                );
            }
        }
    }
}

/// The app under test.
pub struct TestApp {
    pub addr: SocketAddr,
    pub sink: Arc<CollectingSink>,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<std::io::Result<()>>,
    /// With a database: the store, the writer and the key refresh task.
    pub persisted: Option<Persisted>,
    /// The snapshots the app serves.
    pub snapshots: Arc<uno_server::experience::ActiveSnapshots>,
    /// The app's shared state (metrics, experience).
    pub state: AppState,
}

/// The database side of a [`TestApp`] started with a store.
pub struct Persisted {
    pub store: uno_store::Store,
    pub writer: Option<uno_store::writer::LogWriter>,
    pub key_refresh: tokio::task::JoinHandle<()>,
    pub snapshot_refresh: tokio::task::JoinHandle<()>,
    pub journal: tempfile::TempDir,
}

/// A configuration pointing at `upstream_url` with one client key and fast
/// retries, so retry tests stay quick.
pub fn test_config(upstream_url: &str) -> Config {
    let mut config = Config::default();
    config.upstreams[0].url = upstream_url.to_owned();
    config.upstreams[0].api_key = Some("upstream-secret".to_owned());
    config.auth.keys = vec![ApiKeyConfig {
        key: KEY.to_owned(),
        tenant: "acme".to_owned(),
    }];
    config.http.retry_initial_backoff_ms = 10;
    config.http.retry_max_backoff_ms = 50;
    config.server.shutdown_grace_secs = 5;
    config
}

impl TestApp {
    pub async fn start(upstream_url: &str) -> TestApp {
        Self::start_with(test_config(upstream_url)).await
    }

    pub async fn start_with(config: Config) -> TestApp {
        let sink = Arc::new(CollectingSink::default());
        let state = AppState::new(&config, sink.clone()).expect("valid config");
        Self::serve(config, state, sink, None).await
    }

    /// The app with a real database behind it, as `uno serve` runs it: the
    /// log writer, and stored keys reloaded every `auth.key_refresh_secs`.
    pub async fn start_with_store(mut config: Config, database_url: &str) -> TestApp {
        let store = uno_store::Store::connect(database_url)
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let journal = tempfile::tempdir().unwrap();
        config.log_writer.flush_interval_ms = 10;
        config.log_writer.journal_dir = journal.path().join("journal").display().to_string();
        let writer = uno_store::writer::LogWriter::start(
            store.clone(),
            uno_store::writer::WriterConfig::from(&config.log_writer),
        )
        .expect("writer");
        let state =
            AppState::with_store(&config, store.clone(), writer.sink()).expect("valid config");
        let key_refresh = uno_server::auth::spawn_key_refresh(
            state.clone(),
            store.clone(),
            Duration::from_secs(config.auth.key_refresh_secs),
            None,
        )
        .await;
        let snapshot_refresh = uno_server::experience::spawn_snapshot_refresh(
            state.experience().snapshots.clone(),
            store.clone(),
            Duration::from_secs(config.learn.snapshot_poll_secs),
        )
        .await;
        let persisted = Persisted {
            store,
            writer: Some(writer),
            key_refresh,
            snapshot_refresh,
            journal,
        };
        Self::serve(
            config,
            state,
            Arc::new(CollectingSink::default()),
            Some(persisted),
        )
        .await
    }

    /// The store (panics without one).
    pub fn store(&self) -> &uno_store::Store {
        &self.persisted.as_ref().expect("started with a store").store
    }

    /// Waits until the store holds `n` interactions (fails after 10 s).
    pub async fn wait_for_rows(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let count = self.store().count_interactions(None).await.unwrap();
            if count >= n {
                assert_eq!(count, n, "more rows than interactions");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} of {n} rows written"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn serve(
        config: Config,
        state: AppState,
        sink: Arc<CollectingSink>,
        persisted: Option<Persisted>,
    ) -> TestApp {
        let server = BoundServer::bind_app("127.0.0.1:0".parse().unwrap(), &state, &config.server)
            .await
            .expect("bind");
        let addr = server.local_addr().unwrap();
        let snapshots = state.experience().snapshots.clone();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            sink,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            handle,
            persisted,
            snapshots,
            state,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A POST with the test key.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(KEY)
    }

    /// A GET with the test key.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path)).bearer_auth(KEY)
    }

    /// Sends the shutdown signal; the server task then drains and returns.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A minimal chat request body.
pub fn chat_body(content: &str) -> serde_json::Value {
    serde_json::json!({
        "model": "mock-model",
        "messages": [{"role": "user", "content": content}],
    })
}

/// Reads an OpenAI-shaped error response and returns (status, message).
pub async fn error_of(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    assert!(
        body["error"]["message"].is_string(),
        "not OpenAI-shaped: {body}"
    );
    assert!(
        body["error"]["type"].is_string(),
        "not OpenAI-shaped: {body}"
    );
    (status, body["error"].clone())
}

/// Collects the `data:` payloads of an SSE body.
pub fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| event.trim().strip_prefix("data:"))
        .map(|d| d.trim().to_owned())
        .collect()
}
