//! `uno migrate`.

use std::path::Path;

/// Applies pending migrations to the configured database.
pub fn run(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = crate::cli::load_config(config_path)?;
    let url = uno_store::redact_url(&config.database.url);
    crate::cli::with_store(&config, true, |store| async move {
        println!("database: {} ({url})", store.backend());
        println!("migrations applied");
        Ok(())
    })
}
