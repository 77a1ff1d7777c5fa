//! `uno route --tenant T "text"`: how the tenant's active snapshot would
//! serve a text (or a whole chat request), explained by the proxy's own
//! routing code (`uno_server::experience::explain`).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use uno_server::experience::Experience;
use uno_server::experience::explain::{explain_request, text_request};

/// Options of `uno route`.
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The tenant.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// The text to route, as one user message.
    #[arg(required_unless_present = "request", conflicts_with = "request")]
    text: Option<String>,
    /// A chat request body (JSON) to route instead, `-` for stdin: a
    /// conversation, with any tools or response_format it carries.
    #[arg(long)]
    request: Option<PathBuf>,
    /// Print the explanation as JSON (the admin API's answer).
    #[arg(long)]
    json: bool,
}

/// Runs `uno route`.
pub fn run(config_path: Option<&Path>, args: RouteArgs) -> anyhow::Result<()> {
    let config = crate::cli::load_config(config_path)?;
    let body = match (&args.text, &args.request) {
        (Some(text), _) => text_request(text),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .context("cannot read the request from stdin")?;
            body
        }
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("cannot read the request {}", path.display()))?,
        (None, None) => anyhow::bail!("give the text to route, or --request FILE"),
    };
    let policy = Experience::new(&config.learn).policy;
    let migrate = config.database.migrate_on_start;
    crate::cli::with_store(&config, migrate, |store| async move {
        let snapshot = store
            .snapshot(&args.tenant, None)
            .await
            .with_context(|| format!("cannot read tenant {:?}'s snapshot", args.tenant))?;
        let explanation = explain_request(snapshot.as_ref(), &policy, &args.tenant, &body)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&explanation)?);
        } else {
            print!("{explanation}");
        }
        Ok(())
    })
}
