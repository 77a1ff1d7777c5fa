//! Opening the configured store, for every subcommand that needs one.

use anyhow::Context;
use uno_core::config::Config;
use uno_store::Store;

/// Connects to `database.url`, creating the SQLite file if needed, and
/// applies migrations when `migrate` is set.
pub async fn open(config: &Config, migrate: bool) -> anyhow::Result<Store> {
    let url = &config.database.url;
    let store = Store::connect(url)
        .await
        .with_context(|| cannot_open(url))?;
    migrated(store, migrate).await
}

fn cannot_open(url: &str) -> String {
    format!(
        "cannot open the database at {}; check database.url / DATABASE_URL",
        uno_store::redact_url(url)
    )
}

/// `store`, with its migrations applied when `migrate`.
async fn migrated(store: Store, migrate: bool) -> anyhow::Result<Store> {
    if migrate {
        store
            .migrate()
            .await
            .context("cannot apply database migrations")?;
    }
    Ok(store)
}

/// The store `uno serve` runs on, and whether the database is down: the
/// database reached and migrated as [`open`] does when it answers; when it
/// is unreachable, a store that connects on first use, with a background
/// task that waits for the database, applies migrations (when `migrate`)
/// and then clears `down`. Serving never waits for it: logs go to the
/// journal meanwhile, and keys come from the config and the key cache.
pub async fn open_for_serve(
    config: &Config,
    migrate: bool,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Store> {
    use std::sync::atomic::Ordering;
    let url = &config.database.url;
    match Store::connect(url).await {
        Ok(store) => {
            down.store(false, Ordering::Relaxed);
            migrated(store, migrate).await
        }
        Err(err) if err.is_unavailable() => {
            tracing::warn!(
                %err,
                database = %uno_store::redact_url(url),
                "the database is unreachable; serving anyway: logs go to the journal \
                 and are replayed when it is back, API keys come from the config and \
                 the key cache (keys created since the cache was written fail until \
                 then), and /ready answers 503 meanwhile"
            );
            let store = Store::connect_lazy(url)
                .await
                .context("cannot set up the database connection pool")?;
            down.store(true, Ordering::Relaxed);
            let waiting = store.clone();
            tokio::spawn(async move { await_database(waiting, migrate, down).await });
            Ok(store)
        }
        Err(err) => Err(anyhow::Error::new(err).context(cannot_open(url))),
    }
}

/// Retries until the database answers (and its migrations are applied),
/// then clears `down`.
async fn await_database(
    store: Store,
    migrate: bool,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        let reached = if migrate {
            store.migrate().await
        } else {
            store.ping().await
        };
        match reached {
            Ok(()) => {
                down.store(false, std::sync::atomic::Ordering::Relaxed);
                tracing::info!("the database is reachable again; replaying the log journal");
                return;
            }
            Err(err) => tracing::debug!(%err, "the database is still unreachable"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(5));
    }
}
