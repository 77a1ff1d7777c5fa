//! Opening the configured store, for every subcommand that needs one.

use anyhow::Context;
use uno_core::config::Config;
use uno_store::Store;

/// Connects to `database.url`, creating the SQLite file if needed, and
/// applies migrations when `migrate` is set.
pub async fn open(config: &Config, migrate: bool) -> anyhow::Result<Store> {
    let url = &config.database.url;
    let store = Store::connect(url).await.with_context(|| {
        format!(
            "cannot open the database at {}; check database.url / DATABASE_URL",
            uno_store::redact_url(url)
        )
    })?;
    if migrate {
        store
            .migrate()
            .await
            .context("cannot apply database migrations")?;
    }
    Ok(store)
}
