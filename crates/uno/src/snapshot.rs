//! `uno snapshot list|show|diff|activate|rollback`: the published experience
//! of a tenant, what each version decided, and which version is served.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};
use uno_core::snapshot::{Snapshot, SnapshotDiff, diff};
use uno_store::Store;
use uno_store::snapshot_actions::SnapshotActionError;
use uno_store::snapshots::SnapshotInfo;

/// Options of `uno snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// List published versions, newest first (every tenant's unless --tenant).
    List {
        /// Only this tenant's versions.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Show what a version decides per cluster (the active one by default).
    Show {
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The version (`3` or `v3`); the active one when omitted.
        #[arg(value_parser = parse_version)]
        version: Option<i64>,
        /// Print the whole snapshot as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// What changed from OLD to NEW: clusters added or removed, modes and
    /// served rules.
    Diff {
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The older version.
        #[arg(value_parser = parse_version)]
        old: i64,
        /// The newer version.
        #[arg(value_parser = parse_version)]
        new: i64,
    },
    /// Serve VERSION from now on (proxies pick it up at their next reload).
    Activate {
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The version to serve.
        #[arg(value_parser = parse_version)]
        version: i64,
    },
    /// Serve the version before the active one.
    Rollback {
        /// The tenant.
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

/// `3` or `v3`.
fn parse_version(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix(['v', 'V']).unwrap_or(text);
    match digits.parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!(
            "{text:?} is not a snapshot version (a positive number such as 3)"
        )),
    }
}

/// Runs `uno snapshot …`.
pub fn run(config_path: Option<&Path>, args: SnapshotArgs) -> anyhow::Result<()> {
    let config = crate::cli::load_config(config_path)?;
    let migrate = config.database.migrate_on_start;
    crate::cli::with_store(&config, migrate, |store| async move {
        match args.command {
            SnapshotCommand::List { tenant } => list(&store, tenant.as_deref()).await,
            SnapshotCommand::Show {
                tenant,
                version,
                json,
            } => show(&store, &tenant, version, json).await,
            SnapshotCommand::Diff { tenant, old, new } => {
                let old_snapshot = load(&store, &tenant, Some(old)).await?;
                let new_snapshot = load(&store, &tenant, Some(new)).await?;
                print!(
                    "{}",
                    render_diff(&tenant, old, new, &diff(&old_snapshot, &new_snapshot))
                );
                Ok(())
            }
            SnapshotCommand::Activate { tenant, version } => {
                activate(&store, &tenant, version).await
            }
            SnapshotCommand::Rollback { tenant } => rollback(&store, &tenant).await,
        }
    })
}

async fn list(store: &Store, tenant: Option<&str>) -> anyhow::Result<()> {
    let versions = store
        .list_snapshots(tenant)
        .await
        .context("cannot list snapshots")?;
    if versions.is_empty() {
        match tenant {
            Some(t) => eprintln!(
                "tenant {t:?} has no snapshots; the learning worker publishes one once it has \
                 learned from feedback"
            ),
            None => eprintln!(
                "no snapshots; the learning worker publishes one once it has learned from feedback"
            ),
        }
    } else {
        print!("{}", table(&versions));
    }
    Ok(())
}

async fn show(store: &Store, tenant: &str, version: Option<i64>, json: bool) -> anyhow::Result<()> {
    let snapshot = load(store, tenant, version).await?;
    if json {
        let text = serde_json::to_string_pretty(&snapshot).context("cannot render the snapshot")?;
        println!("{text}");
        return Ok(());
    }
    let active = store
        .active_snapshot_version(tenant)
        .await
        .context("cannot read the active snapshot version")?;
    print!("{}", summary(&snapshot, active == Some(snapshot.version)));
    Ok(())
}

async fn activate(store: &Store, tenant: &str, version: i64) -> anyhow::Result<()> {
    let done = store
        .activate_as(ACTOR, tenant, version)
        .await
        .map_err(refused)?;
    if done.changed() {
        println!(
            "activated version {version} of tenant {tenant:?}{}",
            done.previous
                .map(|p| format!(" (was {p})"))
                .unwrap_or_default()
        );
    } else {
        println!("version {version} of tenant {tenant:?} is already active");
    }
    Ok(())
}

async fn rollback(store: &Store, tenant: &str) -> anyhow::Result<()> {
    let done = store.rollback_as(ACTOR, tenant).await.map_err(refused)?;
    println!(
        "rolled back tenant {tenant:?} from version {} to version {}",
        done.previous.unwrap_or_default(),
        done.version
    );
    Ok(())
}

/// The audit log's actor for actions taken from the command line.
const ACTOR: &str = "cli";

/// A refused or failed snapshot action as the command line says it: with
/// the command that shows or fixes what is missing.
fn refused(err: SnapshotActionError) -> anyhow::Error {
    match err {
        SnapshotActionError::NoSuchVersion {
            tenant,
            version,
            versions,
        } => anyhow::anyhow!("{}", no_such_version(&tenant, version, versions.is_empty())),
        SnapshotActionError::NoActive {
            tenant,
            has_versions,
        } => anyhow::anyhow!(
            "tenant {tenant:?} has no active snapshot to roll back{}",
            if has_versions {
                format!("; activate one with `uno snapshot activate --tenant {tenant} VERSION`")
            } else {
                String::new()
            }
        ),
        other => anyhow::anyhow!("{other}"),
    }
}

/// A version's content, or an error that says how to find the versions.
async fn load(store: &Store, tenant: &str, version: Option<i64>) -> anyhow::Result<Snapshot> {
    if let Some(snapshot) = store
        .snapshot(tenant, version)
        .await
        .with_context(|| format!("cannot read the snapshots of tenant {tenant:?}"))?
    {
        return Ok(snapshot);
    }
    let versions = store
        .list_snapshots(Some(tenant))
        .await
        .context("cannot list snapshots")?;
    match version {
        Some(v) => anyhow::bail!("{}", no_such_version(tenant, v, versions.is_empty())),
        None if versions.is_empty() => anyhow::bail!(
            "tenant {tenant:?} has no snapshots yet; the learning worker publishes one once it \
             has learned from feedback"
        ),
        None => anyhow::bail!(
            "tenant {tenant:?} has no active snapshot; name a version (`uno snapshot list \
             --tenant {tenant}` shows them) or activate one"
        ),
    }
}

fn no_such_version(tenant: &str, version: i64, no_versions: bool) -> String {
    if no_versions {
        format!("tenant {tenant:?} has no snapshots, so no version {version}")
    } else {
        format!(
            "tenant {tenant:?} has no snapshot version {version}; `uno snapshot list --tenant \
             {tenant}` shows the versions"
        )
    }
}

/// Unix microseconds as RFC 3339.
fn time(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| micros.to_string())
}

/// The versions as an aligned text table.
fn table(versions: &[SnapshotInfo]) -> String {
    let header = ["TENANT", "VERSION", "CREATED", "ACTIVE", "EMBEDDER", "NOTE"].map(str::to_owned);
    let rows: Vec<[String; 6]> = versions
        .iter()
        .map(|v| {
            [
                v.tenant.clone(),
                v.version.to_string(),
                time(v.created_at),
                if v.active { "*" } else { "" }.to_owned(),
                v.embedder_id.clone(),
                if v.note.is_empty() {
                    "-".to_owned()
                } else {
                    v.note.clone()
                },
            ]
        })
        .collect();
    crate::table::render(&header, &rows)
}

/// A version, cluster by cluster, for a person.
fn summary(s: &Snapshot, active: bool) -> String {
    let mut out = String::new();
    let (passthrough, primary, reflective) = s.mode_counts();
    let policy = match s.policy {
        uno_core::snapshot::Policy::Uno => "uno",
        uno_core::snapshot::Policy::UnoSingle => "uno-single",
    };
    let _ = writeln!(
        out,
        "tenant {:?} version {}{}: created {}, {} learning logs, embedder {} (dim {}), policy {policy}",
        s.tenant,
        s.version,
        if active { " (active)" } else { "" },
        time(s.created_at),
        s.logs,
        s.embedder_id,
        s.dim,
    );
    let t = &s.settings;
    let _ = writeln!(
        out,
        "settings: distance threshold {}, gap threshold {}, win threshold {}, min support {}, \
         min validation logs {}, unseen quantile {}",
        t.distance_threshold,
        t.gap_threshold,
        t.win_threshold,
        t.min_support,
        t.min_validation_logs,
        t.unseen_quantile,
    );
    let _ = writeln!(
        out,
        "{} clusters: {primary} primary, {reflective} reflective, {passthrough} passthrough",
        s.clusters.len()
    );
    for c in &s.clusters {
        let _ = writeln!(out);
        let win = match &c.validation {
            Some(v) => format!("win rate {:.3} over {} held-out logs", v.win_rate, v.logs),
            None => "not validated".to_owned(),
        };
        let _ = writeln!(
            out,
            "cluster {}: {} logs, mode {}, gap min {:.3}{}, {win}",
            c.id,
            c.size,
            c.mode.as_str(),
            c.gap.min,
            if c.high_gap { " (high)" } else { "" },
        );
        if !c.decision.is_empty() {
            let _ = writeln!(out, "  decision: {}", c.decision);
        }
        if let Some(l) = &c.lift {
            let _ = writeln!(
                out,
                "  lift: treated rated down {}/{}, holdout {}/{}, z {:.2}",
                l.treated_down, l.treated_rated, l.holdout_down, l.holdout_rated, l.z
            );
        }
        let served: Vec<_> = c.served_rules().collect();
        if served.is_empty() {
            let _ = writeln!(
                out,
                "  no served rules ({} below min support)",
                c.rules.len()
            );
        } else {
            let _ = writeln!(
                out,
                "  served rules ({} of {}):",
                served.len(),
                c.rules.len()
            );
            for r in served {
                let _ = writeln!(out, "    - {} [{}]", r.text, rule_figures(r));
            }
        }
        // Held rules wait for an operator (POST …/rules/{id}/approve or the
        // dashboard); shown with why, since nothing else would reveal them.
        let held: Vec<_> = c
            .rules
            .iter()
            .filter(|r| !r.served && r.held.is_some())
            .collect();
        if !held.is_empty() {
            let _ = writeln!(out, "  held for approval ({}):", held.len());
            for r in held {
                let _ = writeln!(
                    out,
                    "    - {} [{}; held: {}]",
                    r.text,
                    rule_figures(r),
                    r.held.as_deref().unwrap_or_default()
                );
            }
        }
    }
    out
}

/// A rule's support, share of the cluster's feedback users, contrary
/// users and sources, for a person.
fn rule_figures(r: &uno_core::snapshot::Rule) -> String {
    let mut out = format!("support {}", r.support);
    if r.share > 0.0 {
        let _ = write!(out, " ({:.0}% of the cluster's users)", r.share * 100.0);
    }
    if r.contrary > 0 {
        let _ = write!(
            out,
            ", {} against ({})",
            r.contrary,
            r.contradicts.join("; ")
        );
    }
    let _ = write!(out, ", {} sources", r.sources.len());
    out
}

/// A diff for a person.
fn render_diff(tenant: &str, old: i64, new: i64, d: &SnapshotDiff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "tenant {tenant:?}: version {old} -> version {new}");
    if d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty() {
        let _ = writeln!(out, "no changes in clusters, modes or served rules");
        return out;
    }
    for id in &d.added {
        let _ = writeln!(out, "+ cluster {id} (new)");
    }
    for id in &d.removed {
        let _ = writeln!(out, "- cluster {id} (removed)");
    }
    for c in &d.changed {
        match c.mode {
            Some((before, after)) => {
                let _ = writeln!(
                    out,
                    "~ cluster {}: mode {} -> {}",
                    c.id,
                    before.as_str(),
                    after.as_str()
                );
            }
            None => {
                let _ = writeln!(out, "~ cluster {}: served rules changed", c.id);
            }
        }
        for r in &c.rules_added {
            let _ = writeln!(out, "    + rule: {r}");
        }
        for r in &c.rules_removed {
            let _ = writeln!(out, "    - rule: {r}");
        }
    }
    out
}
