//! `uno worker`: the learning loop, once (`--once`) or until stopped.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use uno_learn::{Progress, RunReport, Worker};
use uno_server::metrics::access::ScrapeToken;

/// Options of `uno worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Run everything due once and exit (for cron, CI and first runs).
    #[arg(long)]
    once: bool,
    /// Rebuild every tenant now, ignoring the re-clustering thresholds (use
    /// it after changing [learn] settings such as the policy), and retry
    /// logs that failed.
    #[arg(long)]
    force: bool,
    /// Serve the worker's stage durations and outcomes at
    /// `http://ADDR/metrics` for Prometheus (e.g. 0.0.0.0:9091), behind
    /// metrics.token (UNO_METRICS_TOKEN) when set. With `learn.in_serve`,
    /// `uno serve`'s own /metrics has them instead.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

/// Runs `uno worker`.
pub fn run(config_path: Option<&Path>, args: WorkerArgs) -> anyhow::Result<()> {
    let config = crate::cli::load_config(config_path)?;
    crate::serve::init_logging(&config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = crate::database::open(&config, config.database.migrate_on_start).await?;
        let worker = Worker::from_config(store.clone(), &config)
            .await
            .context("cannot start the learning worker")?;
        let metrics_server = match args.metrics_listen {
            Some(addr) => Some(
                uno_server::metrics::serve_worker_metrics(
                    addr,
                    worker.metrics().clone(),
                    ScrapeToken::from_config(&config.metrics),
                )
                .await
                    .with_context(|| format!("cannot listen on {addr} for --metrics-listen"))?,
            ),
            None => None,
        };
        let progress = TerminalProgress::new();
        let result = if args.once {
            let started = Instant::now();
            let report = worker.run_once_settled(&progress, args.force).await;
            progress.finish();
            let report = report.context("the worker run failed")?;
            summarise(&report, started.elapsed().as_secs_f64());
            let counts = store.learn_stage_counts(None).await?;
            if counts.failed > 0 {
                println!(
                    "{} learning logs failed after {} tries; `uno worker --once --force` retries them",
                    counts.failed, config.learn.max_attempts
                );
            }
            if report.failed_tenants.is_empty() {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "{} tenant(s) could not be rebuilt",
                    report.failed_tenants.len()
                ))
            }
        } else {
            tracing::info!(embedder = worker.embedder_id(), "learning worker running; Ctrl-C stops it");
            worker
                .run(&uno_learn::LogProgress, uno_server::shutdown_signal())
                .await;
            Ok(())
        };
        if let Some(server) = metrics_server {
            server.task.abort();
        }
        store.close().await;
        result
    })
}

fn summarise(report: &RunReport, secs: f64) {
    println!(
        "worker: {} logs ingested, {} stages done, {} stage failures, {} snapshots published in {secs:.1} s",
        report.ingested,
        report.stages_done,
        report.stage_failures,
        report.published.len()
    );
    for (tenant, version) in &report.published {
        println!("  tenant {tenant}: snapshot version {version} is active");
    }
    for tenant in &report.unchanged {
        println!("  tenant {tenant}: nothing changed in its snapshot");
    }
    for (tenant, err) in &report.failed_tenants {
        println!("  tenant {tenant}: FAILED: {err}");
    }
    for tenant in &report.busy_tenants {
        println!(
            "  tenant {tenant}: another worker is still rebuilding it; its snapshot may not hold this run's logs yet"
        );
    }
}

/// A progress bar per phase on a terminal; plain lines otherwise.
struct TerminalProgress {
    bar: Mutex<Option<ProgressBar>>,
    terminal: bool,
}

impl TerminalProgress {
    fn new() -> Self {
        TerminalProgress {
            bar: Mutex::new(None),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            bar.finish();
        }
    }
}

impl Progress for TerminalProgress {
    fn phase(&self, name: &str, total: u64) {
        let mut slot = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = slot.take() {
            bar.finish();
        }
        if !self.terminal {
            eprintln!(
                "{name}{}",
                if total > 0 {
                    format!(" ({total} steps)")
                } else {
                    String::new()
                }
            );
            return;
        }
        let bar = if total > 0 {
            ProgressBar::new(total)
        } else {
            ProgressBar::new_spinner()
        };
        let template = if total > 0 {
            "{msg:28} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}"
        } else {
            "{msg:28} {spinner} {pos} {elapsed_precise}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(name.to_owned());
        *slot = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            bar.inc(n);
        }
    }

    fn note(&self, line: &str) {
        match self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}
