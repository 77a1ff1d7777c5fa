//! `uno retention`: apply the retention policy now.

use std::path::Path;

use clap::Args;
use uno_store::RetentionPolicy;

/// Options of `uno retention`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// Days to keep interaction metadata and feedback (overrides
    /// retention.metadata_days; 0 keeps forever).
    #[arg(long, value_name = "N")]
    metadata_days: Option<u32>,
    /// Days to keep message and answer content (overrides
    /// retention.content_days; 0 keeps forever).
    #[arg(long, value_name = "N")]
    content_days: Option<u32>,
}

/// Runs `uno retention`.
pub fn run(config_path: Option<&Path>, args: RetentionArgs) -> anyhow::Result<()> {
    let config = crate::cli::load_config(config_path)?;
    let policy = RetentionPolicy {
        metadata_days: args.metadata_days.unwrap_or(config.retention.metadata_days),
        content_days: args.content_days.unwrap_or(config.retention.content_days),
    };
    let days = |n: u32| {
        if n == 0 {
            "forever".to_owned()
        } else {
            format!("{n} days")
        }
    };
    println!(
        "retention: metadata {}, content {}",
        days(policy.metadata_days),
        days(policy.content_days)
    );
    if policy.metadata_days == 0 && policy.content_days == 0 {
        println!("nothing to do: both periods are 0 (keep forever)");
        return Ok(());
    }
    let migrate = config.database.migrate_on_start;
    let report = crate::cli::with_store(&config, migrate, |store| async move {
        Ok(store.apply_retention(policy, chrono::Utc::now()).await?)
    })?;
    println!("removed:");
    println!("  interactions        {}", report.interactions);
    println!("  contents            {}", report.contents);
    println!("  feedback            {}", report.feedback);
    println!("  partitions dropped  {}", report.partitions_dropped);
    Ok(())
}
