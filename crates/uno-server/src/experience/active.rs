//! Every tenant's active snapshot, in memory, swapped atomically.
//!
//! Requests read the map through an [`ArcSwap`] and keep an `Arc` of their
//! tenant's snapshot for as long as they run, so a request sees one snapshot
//! from start to end however often a new one is published meanwhile, and
//! never waits for a load. One task keeps the map current: it loads every
//! active snapshot at start, re-reads the active versions every
//! `learn.snapshot_poll_secs`, and on Postgres also wakes on the
//! `uno_snapshot` notification, so a published snapshot is served at once.
//! Only a snapshot whose version changed is read and prepared again; one
//! that fails to parse or to load is reported and the tenant keeps the one
//! it had.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use uno_core::snapshot::Snapshot;
use uno_store::Store;
use uno_store::snapshots::SnapshotEvent;

use super::loaded::{LoadError, LoadedSnapshot};

type Map = HashMap<Arc<str>, Arc<LoadedSnapshot>>;

/// The active snapshots, by tenant.
#[derive(Debug, Default)]
pub struct ActiveSnapshots {
    map: ArcSwap<Map>,
    /// Versions that failed to load, so each is reported once rather than
    /// at every poll.
    failed: Mutex<HashSet<(String, i64)>>,
    /// Held for a whole [`refresh`](Self::refresh), so refreshes run one
    /// after another. Without it, the poller could read the active versions,
    /// an admin publish could store a newer map, and the poller would then
    /// store the older version over it.
    refreshing: tokio::sync::Mutex<()>,
}

impl ActiveSnapshots {
    /// The tenant's snapshot, if it has one.
    pub fn get(&self, tenant: &str) -> Option<Arc<LoadedSnapshot>> {
        self.map.load().get(tenant).cloned()
    }

    /// The version served for `tenant`, if any.
    pub fn version(&self, tenant: &str) -> Option<i64> {
        self.map.load().get(tenant).map(|s| s.version)
    }

    /// Every tenant's served version (for `/metrics`).
    pub fn versions(&self) -> Vec<(Arc<str>, i64)> {
        self.map
            .load()
            .iter()
            .map(|(tenant, s)| (tenant.clone(), s.version))
            .collect()
    }

    /// Prepares `snapshot` and makes it its tenant's (tests, tools).
    pub fn install(&self, snapshot: &Snapshot) -> Result<(), LoadError> {
        let loaded = Arc::new(LoadedSnapshot::load(snapshot)?);
        let mut map = Map::clone(&self.map.load());
        map.insert(loaded.tenant.clone(), loaded);
        self.map.store(Arc::new(map));
        Ok(())
    }

    /// Brings the map in line with the store's active versions: loads what
    /// changed, drops tenants that no longer have one (a deleted tenant).
    /// Returns how many snapshots were newly loaded.
    pub async fn refresh(&self, store: &Store) -> Result<usize, uno_store::StoreError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let active = store.active_snapshot_versions().await?;
        let current = self.map.load_full();
        let mut next = Map::with_capacity(active.len());
        let mut loaded = 0;
        for (tenant, version) in active {
            let held = current.get(tenant.as_str());
            if let Some(held) = held.filter(|h| h.version == version) {
                next.insert(held.tenant.clone(), held.clone());
                continue;
            }
            if self.is_failed(&tenant, version) {
                if let Some(held) = held {
                    next.insert(held.tenant.clone(), held.clone());
                }
                continue;
            }
            match self.load(store, &tenant, version).await {
                Ok(snapshot) => {
                    tracing::info!(
                        tenant = %tenant,
                        version,
                        clusters = snapshot.clusters.len(),
                        routes = snapshot.routes(),
                        "serving snapshot"
                    );
                    if !snapshot.routes() && !snapshot.clusters.is_empty() {
                        tracing::warn!(
                            tenant = %tenant,
                            version,
                            "snapshot has no routing centroids, so nothing is routed; \
                             run `uno worker --once --force` to rebuild it"
                        );
                    }
                    next.insert(snapshot.tenant.clone(), Arc::new(snapshot));
                    loaded += 1;
                }
                Err(Failure::Broken(problem)) => {
                    tracing::error!(
                        tenant = %tenant,
                        version,
                        %problem,
                        kept = held.map(|h| h.version),
                        "cannot load the active snapshot; keeping the one served before"
                    );
                    self.mark_failed(tenant.clone(), version);
                    if let Some(held) = held {
                        next.insert(held.tenant.clone(), held.clone());
                    }
                }
                Err(Failure::Transient(problem)) => {
                    tracing::warn!(
                        tenant = %tenant,
                        version,
                        %problem,
                        "cannot read the active snapshot now; retrying at the next poll"
                    );
                    if let Some(held) = held {
                        next.insert(held.tenant.clone(), held.clone());
                    }
                }
            }
        }
        let changed = loaded > 0
            || next.len() != current.len()
            || next.keys().any(|t| !current.contains_key(t));
        if changed {
            self.map.store(Arc::new(next));
        }
        Ok(loaded)
    }

    async fn load(
        &self,
        store: &Store,
        tenant: &str,
        version: i64,
    ) -> Result<LoadedSnapshot, Failure> {
        let snapshot = match store.snapshot(tenant, Some(version)).await {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return Err(Failure::Transient("it disappeared while loading".into())),
            // The content does not parse as this uno's snapshot format.
            Err(err @ uno_store::StoreError::Rejected(_)) => {
                return Err(Failure::Broken(err.to_string()));
            }
            Err(err) => return Err(Failure::Transient(err.to_string())),
        };
        // Preparing embeds every served rule: CPU work kept off the
        // runtime's worker threads.
        tokio::task::spawn_blocking(move || LoadedSnapshot::load(&snapshot))
            .await
            .map_err(|err| Failure::Transient(format!("loading task failed: {err}")))?
            .map_err(|err| Failure::Broken(err.to_string()))
    }

    fn is_failed(&self, tenant: &str, version: i64) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(tenant.to_owned(), version))
    }

    fn mark_failed(&self, tenant: String, version: i64) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((tenant, version));
    }
}

/// Why a snapshot was not loaded.
enum Failure {
    /// This version will never load: reported once, not retried.
    Broken(String),
    /// The database could not be read: retried at the next poll.
    Transient(String),
}

/// Loads every active snapshot now, then keeps them current on a task:
/// polling every `poll`, and on Postgres also on each notification. The
/// listener is in place before the first load, so a snapshot published in
/// between is not missed until the next poll.
pub async fn spawn_snapshot_refresh(
    snapshots: Arc<ActiveSnapshots>,
    store: Store,
    poll: Duration,
) -> tokio::task::JoinHandle<()> {
    let mut listener = match store.snapshot_listener().await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::warn!(%err, "cannot listen for snapshot notifications; polling only");
            None
        }
    };
    refresh_logged(&snapshots, &store).await;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(poll.max(Duration::from_millis(50)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            let heard = async {
                match listener.as_mut() {
                    Some(l) => Some(l.recv().await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = ticker.tick() => {}
                event = heard => match event {
                    Some(Ok(SnapshotEvent::Activated { tenant, version })) => {
                        tracing::debug!(%tenant, ?version, "snapshot notification");
                    }
                    Some(Ok(SnapshotEvent::Reconnected)) => {
                        tracing::info!("snapshot listener reconnected");
                    }
                    Some(Err(err)) => {
                        tracing::warn!(%err, "snapshot listener failed; polling until it reconnects");
                        // The next recv reconnects; until then, do not spin.
                        tokio::time::sleep(poll).await;
                    }
                    None => {}
                },
            }
            refresh_logged(&snapshots, &store).await;
        }
    })
}

async fn refresh_logged(snapshots: &ActiveSnapshots, store: &Store) {
    if let Err(err) = snapshots.refresh(store).await {
        tracing::warn!(%err, "cannot read the active snapshots; serving the ones held");
    }
}
