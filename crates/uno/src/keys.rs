//! `uno keys create|list|revoke`: client API keys stored in the database.

use std::path::Path;

use clap::{Args, Subcommand};
use uno_store::keys::KeyInfo;

/// Options of `uno keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key for a tenant; the secret is printed once.
    Create {
        /// The tenant the key belongs to (created if new).
        #[arg(long)]
        tenant: String,
        /// A label to tell keys apart, e.g. `prod` or `ci`.
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (never their secrets), newest first.
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id or prefix; servers drop it within auth.key_refresh_secs.
    Revoke {
        /// The key's id or prefix, as `uno keys list` shows it.
        #[arg(value_name = "ID_OR_PREFIX")]
        key: String,
    },
}

/// Runs `uno keys …`. Migrates first, so it works on a fresh database.
pub fn run(config_path: Option<&Path>, args: KeysArgs) -> anyhow::Result<()> {
    let config = crate::cli::load_config(config_path)?;
    crate::cli::with_store(&config, true, |store| async move {
        match args.command {
            KeysCommand::Create { tenant, name } => {
                let tenant = tenant.trim();
                if tenant.is_empty() {
                    anyhow::bail!("--tenant must not be empty");
                }
                let key = store.create_key(tenant, name.as_deref()).await?;
                println!(
                    "Created key {} for tenant {:?} (prefix {}{}).",
                    key.info.id,
                    key.info.tenant,
                    key.info.prefix,
                    key.info
                        .name
                        .as_deref()
                        .map(|n| format!(", name {n:?}"))
                        .unwrap_or_default()
                );
                println!();
                println!("    {}", key.secret);
                println!();
                println!(
                    "Store this key now: it cannot be shown again (only its hash is kept). \
                     Clients send it as `Authorization: Bearer <key>`."
                );
            }
            KeysCommand::List { tenant } => {
                let keys = store.list_keys(tenant.as_deref()).await?;
                if keys.is_empty() {
                    match tenant {
                        Some(t) => eprintln!(
                            "no keys for tenant {t:?}; create one with `uno keys create --tenant {t}`"
                        ),
                        None => {
                            eprintln!("no keys; create one with `uno keys create --tenant NAME`")
                        }
                    }
                } else {
                    print!("{}", table(&keys));
                }
            }
            KeysCommand::Revoke { key } => {
                let revoked = store.revoke_key(key.trim()).await?;
                if revoked == 0 {
                    anyhow::bail!(
                        "no active key has id or prefix {key:?}; `uno keys list` shows ids and prefixes"
                    );
                }
                println!("revoked {revoked} key(s) matching {key:?}");
            }
        }
        Ok(())
    })
}

/// The keys as an aligned text table.
fn table(keys: &[KeyInfo]) -> String {
    let header = ["ID", "TENANT", "PREFIX", "NAME", "CREATED", "STATUS"].map(str::to_owned);
    let rows: Vec<[String; 6]> = keys
        .iter()
        .map(|k| {
            [
                k.id.to_string(),
                k.tenant.clone(),
                k.prefix.clone(),
                k.name.clone().unwrap_or_else(|| "-".to_owned()),
                k.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                match k.revoked_at {
                    Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
                    None => "active".to_owned(),
                },
            ]
        })
        .collect();
    crate::table::render(&header, &rows)
}
