//! `uno-bench`: uno's load harness.
//!
//! One run starts the mock upstream, uno (logging off) and uno+pg (uno
//! logging to Postgres, as `uno serve` runs it) in-process, each on its own
//! runtime, then loads the mock directly and through both with the same
//! requests, interleaving them so drift cancels out, and reports what uno
//! adds and what logging adds: throughput, latency percentiles and time to
//! the first streamed chunk, against fixed targets.
//!
//! ```text
//! cargo run --release -p uno-bench -- [--concurrency 1,64] [--secs 5] [--json out.json] [--check]
//!     [--no-postgres | --database-url URL] [--postgres-own-core] [--context-bytes N]
//! ```
//!
//! The exit code is 0 even when a target is missed, unless `--check` is
//! given; a failed request always fails the run, and so does a database
//! that does not hold exactly one interaction row per request uno+pg
//! answered.

mod bare;
mod cli;
mod community;
mod cpu;
mod loadgen;
mod pin;
mod report;
mod routing;
mod scenarios;
mod servers;
mod spread;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use uno_testkit::MockReply;

use crate::bare::BareProxy;
use crate::cli::Args;
use crate::report::{Logged, Machine, Report};
use crate::scenarios::{API_KEY, Bench, REPLY_TEXT, stream_reply};
use crate::servers::{MockServer, UnoPgServer, UnoServer, runtime};

/// The allocator `uno` itself runs with, so the harness measures what it serves.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(filter) = &args.log {
        // As `uno serve` sets it up with log.format = "json".
        match tracing_subscriber::EnvFilter::try_new(filter) {
            Ok(filter) => tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .init(),
            Err(err) => {
                eprintln!("uno-bench: --log {filter:?}: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    if args.community {
        return match community::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("uno-bench: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    if args.routing {
        return match routing::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("uno-bench: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    // Before any runtime starts, so every thread inherits the affinity.
    let _pinned = if args.postgres_own_core {
        match pin::PostgresOnOwnCore::pin() {
            Ok(guard) => Some(guard),
            Err(err) => {
                eprintln!("uno-bench: {err:#}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    match run(&args) {
        Ok(report) => {
            if report.errors() > 0 {
                eprintln!("uno-bench: {} request(s) failed", report.errors());
                ExitCode::FAILURE
            } else if let Some(logged) = report.logged.filter(|_| report.rows_mismatch()) {
                eprintln!("uno-bench: uno+pg {}", logged.line());
                ExitCode::FAILURE
            } else if args.check && report.any_failed() {
                eprintln!("uno-bench: a target was missed (--check)");
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(err) => {
            eprintln!("uno-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<Report> {
    args.validate()?;
    let machine = Machine::detect();
    println!(
        "machine: {} CPUs, {}; load average at start {}",
        machine.nproc, machine.cpu, machine.loadavg
    );
    println!(
        "runtimes: mock, uno, {}load generator each on {} worker threads",
        if args.no_postgres { "" } else { "uno+pg, " },
        servers::WORKER_THREADS
    );

    let mock = MockServer::start(MockReply::text(REPLY_TEXT))?;
    let uno = match UnoServer::start(mock.handle().base_url(), API_KEY.to_owned()) {
        Ok(uno) => uno,
        Err(err) => {
            let _ = mock.stop();
            return Err(err);
        }
    };
    let uno_pg = if args.no_postgres {
        None
    } else {
        match UnoPgServer::start(
            mock.handle().base_url(),
            API_KEY.to_owned(),
            args.database_url.clone(),
        ) {
            Ok(uno_pg) => Some(uno_pg),
            Err(err) => {
                let _ = uno.stop();
                let _ = mock.stop();
                return Err(err.context("starting uno+pg (--no-postgres skips it)"));
            }
        }
    };
    let bare = if args.bare {
        match BareProxy::start(mock.handle().addr()) {
            Ok(bare) => Some(bare),
            Err(err) => {
                let _ = uno_pg.map(UnoPgServer::stop);
                let _ = uno.stop();
                let _ = mock.stop();
                return Err(err);
            }
        }
    } else {
        None
    };
    let measured = Bench::new(
        &mock,
        &uno,
        uno_pg.as_ref(),
        bare.as_ref(),
        args.context_bytes,
    )
    .and_then(|bench| measure(args, machine, &bench));
    let stopped_bare = bare.map(BareProxy::stop).transpose();
    // Stopping uno+pg flushes its log writer, then counts the rows.
    let stopped_uno_pg = uno_pg.map(UnoPgServer::stop).transpose();
    let stopped_uno = uno.stop();
    let stopped_mock = mock.stop();
    let mut report = measured?;
    stopped_bare.context("stopping the bare proxy")?;
    let outcome = stopped_uno_pg.context("stopping uno+pg")?;
    stopped_uno.context("stopping uno")?;
    stopped_mock.context("stopping the mock upstream")?;
    if let Some(logged) = &mut report.logged {
        logged.outcome = outcome;
    }

    print!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("\nfigures written to {}", path.display());
    }
    Ok(report)
}

/// Runs every phase on the load generator's own runtime.
fn measure(args: &Args, machine: Machine, bench: &Bench) -> anyhow::Result<Report> {
    let rt = runtime("loadgen")?;
    rt.block_on(async {
        let response_bytes = bench.smoke_test().await?;
        let mut rows = Vec::with_capacity(args.concurrency.len());
        for &concurrency in &args.concurrency {
            rows.push(
                bench
                    .throughput(concurrency, args.rounds, args.warmup(), args.measure())
                    .await?,
            );
        }
        let ttfb = if args.ttfb_requests > 0 {
            let (reply, events) = stream_reply(args.ttfb_words, args.ttfb_gap());
            bench.mock.set_default_reply(reply);
            eprintln!(
                "  time to first chunk: {} streamed requests per target",
                args.ttfb_requests
            );
            Some(
                bench
                    .ttfb(args.ttfb_requests, events, args.ttfb_gap())
                    .await?,
            )
        } else {
            None
        };
        let logged = bench.uno_pg.is_some().then(|| Logged {
            answered: bench.uno_pg_answered(),
            outcome: None,
        });
        Ok(Report {
            logged,
            machine,
            warmup_secs: args.warmup_secs,
            secs: args.secs,
            rounds: args.rounds,
            request_bytes: bench.body.len(),
            response_bytes,
            rows,
            ttfb,
        })
    })
}
