//! `uno delete`: erase an end user's or a whole tenant's data.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use clap::Args;

/// Options of `uno delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The tenant to delete (everything: interactions, feedback, API keys),
    /// or whose end user to delete with --user.
    #[arg(long)]
    tenant: String,
    /// Delete only this end user's interactions and feedback.
    #[arg(long)]
    user: Option<String>,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    yes: bool,
}

/// Runs `uno delete`.
pub fn run(config_path: Option<&Path>, args: DeleteArgs) -> anyhow::Result<()> {
    let config = crate::cli::load_config(config_path)?;
    let what = match &args.user {
        Some(user) => format!(
            "all interactions and feedback of user {user:?} in tenant {:?}",
            args.tenant
        ),
        None => format!(
            "all interactions, feedback and API keys of tenant {:?}",
            args.tenant
        ),
    };
    if !args.yes {
        confirm(&what, &args.tenant)?;
    }
    let migrate = config.database.migrate_on_start;
    let whole_tenant = args.user.is_none();
    let report = crate::cli::with_store(&config, migrate, |store| async move {
        let report = match &args.user {
            Some(user) => store.delete_user(&args.tenant, user, "cli").await?,
            None => store.delete_tenant(&args.tenant, "cli").await?,
        };
        Ok(report)
    })?;
    println!("deleted {what}:");
    println!("  interactions  {}", report.interactions);
    println!("  contents      {}", report.contents);
    println!("  feedback      {}", report.feedback);
    if whole_tenant {
        println!("  api keys      {}", report.api_keys);
    }
    Ok(())
}

/// Asks to type the tenant name; refuses when there is no one to ask.
fn confirm(what: &str, tenant: &str) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "refusing to delete {what} without confirmation: stdin is not a terminal; \
             pass --yes to delete non-interactively"
        );
    }
    eprint!("This permanently deletes {what}.\nType the tenant name ({tenant}) to confirm: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != tenant {
        anyhow::bail!("not confirmed; nothing was deleted");
    }
    Ok(())
}
