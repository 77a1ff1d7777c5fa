//! What the database subcommands share: configuration, a runtime, a store.

use std::future::Future;
use std::path::Path;

use anyhow::Context;
use uno_core::config::Config;
use uno_store::Store;

/// Loads configuration, printing its warnings to stderr.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let (config, warnings) = crate::config::load(path)?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    Ok(config)
}

/// Opens the configured store (migrating first when `migrate` is set), runs
/// `body` with it on a fresh runtime, and closes the store.
pub fn with_store<F, Fut, T>(config: &Config, migrate: bool, body: F) -> anyhow::Result<T>
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = crate::database::open(config, migrate).await?;
        let result = body(store.clone()).await;
        store.close().await;
        result
    })
}
