//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;

/// Measures what uno adds in front of an upstream: the mock upstream is
/// loaded directly, through uno (logging off) and through uno logging to
/// Postgres (uno+pg), in the same process and the same run, with the
/// targets interleaved so machine drift cancels out.
#[derive(Debug, Clone, Parser)]
#[command(name = "uno-bench", version)]
pub struct Args {
    /// Concurrency levels to measure: the number of keep-alive connections,
    /// each sending requests back to back.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub concurrency: Vec<usize>,

    /// Warm-up before each measurement, in seconds (not measured).
    #[arg(long, default_value_t = 1.0)]
    pub warmup_secs: f64,

    /// Length of each measurement, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,

    /// Rounds per concurrency; each round measures direct, then uno, then
    /// uno+pg.
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,

    /// Streamed requests per target for time to first chunk (0 skips it).
    #[arg(long, default_value_t = 200)]
    pub ttfb_requests: usize,

    /// Gap the mock leaves between streamed events, in milliseconds (0: no
    /// gap at all, the whole stream is sent at once).
    #[arg(long, default_value_t = 20)]
    pub ttfb_gap_ms: u64,

    /// Words in the streamed answer (one event each, plus a role, a stop
    /// and a `[DONE]` event); every event after the first costs one gap.
    #[arg(long, default_value_t = 3)]
    pub ttfb_words: usize,

    /// Bytes of pasted context added to every request's user message (0:
    /// the ~1 kB exchange alone), as retrieval-augmented apps send. Past
    /// about 2 kB a row Postgres compresses what it stores, which changes
    /// what logging costs it.
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub context_bytes: usize,

    /// Skip uno+pg (uno logging to Postgres), for machines without
    /// Postgres.
    #[arg(long, conflicts_with = "database_url")]
    pub no_postgres: bool,

    /// The Postgres database uno+pg logs to (migrated first, left in place;
    /// only the rows this run adds are counted). Default: a fresh database
    /// on the test server (UNO_TEST_POSTGRES_URL, else
    /// postgres://postgres@127.0.0.1:5432), dropped at the end.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// Put every Postgres process on the last core and uno, the mock and
    /// the load generator on the others (with `taskset`), so uno+pg shows
    /// what logging costs uno when the database has its own CPU, as on a
    /// database host of its own; restored at exit.
    #[arg(long, conflicts_with = "no_postgres")]
    pub postgres_own_core: bool,

    /// Also measure a bare axum reverse proxy (same client and pool, no
    /// checks, no parsing, no logging): the floor any proxy costs.
    #[arg(long)]
    pub bare: bool,

    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Exit non-zero when a target is missed (for CI).
    #[arg(long)]
    pub check: bool,

    /// Instead of the logging comparison, measure learned experience on
    /// the request path: uno with a snapshot whose cluster the request
    /// routes to (primary: rule block injected) against the same uno
    /// without one (passthrough), at concurrency 1 (added latency) and at
    /// the highest --concurrency (throughput), plus the in-process cost of
    /// each step (routing embed, nearest centroid, block injection).
    #[arg(long)]
    pub routing: bool,
    /// With --routing: bytes of a fixed system prompt the app puts in front
    /// of every request (0: the body's short system prompt only). The
    /// snapshot's routing weights, counted over a tenant corpus carrying
    /// the same prompt, give it zero weight, but the router still scans it:
    /// the 2 kB default is the case the routing cost target is about.
    #[arg(long, default_value_t = 2048, value_name = "BYTES")]
    pub system_bytes: usize,

    /// Instead of the load comparison, run the simulated community
    /// (issue 23): users teach uno through feedback, the learning worker
    /// runs, and new queries are checked for each topic's preference under
    /// passthrough, uno and one global rule list.
    #[arg(long)]
    pub community: bool,

    /// Seeds of the community runs (one full run each).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,

    /// Bytes of the app's fixed system prompt sent with every community
    /// request (0: none).
    #[arg(long, default_value_t = 0, value_name = "BYTES")]
    pub system_prompt_bytes: usize,

    /// The learning worker's embedder in community runs: `hashing`, or
    /// `local` (all-MiniLM-L6-v2: build with `--features local-embed` and
    /// run `scripts/install-models.sh` first).
    #[arg(long, default_value = "hashing")]
    pub embedder: String,

    /// Where the local embedder's model lives (default: uno's).
    #[arg(long, value_name = "DIR")]
    pub embedder_path: Option<String>,

    /// `learn.holdout_percent` in community runs: 0 measures what the
    /// learned experience does to every request it routes.
    #[arg(long, default_value_t = 0)]
    pub holdout_percent: u8,

    /// In community runs, a `[learn]` setting to override for the run, as
    /// `KEY=VALUE` with the key as in uno.toml's `[learn]` table (e.g.
    /// `--learn distance_threshold=2.0 --learn min_support_share=0.15`);
    /// repeatable, the last of a key wins. `embedder`, `embedder_path` and
    /// `holdout_percent` have flags of their own.
    #[arg(long = "learn", value_name = "KEY=VALUE")]
    pub learn: Vec<String>,

    /// In community runs, the probability that the scripted model follows
    /// each instruction it recognises (a real model misses some).
    #[arg(long, default_value_t = 0.95)]
    pub obedience: f64,

    /// Install `uno serve`'s JSON log subscriber on stderr with this
    /// filter (e.g. `info`: one access-log event per request), to measure
    /// what logging costs; default: no subscriber (logging off).
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
}

impl Args {
    /// Rejects settings that cannot produce a measurement.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.concurrency.is_empty() || self.concurrency.contains(&0) {
            bail!("--concurrency: give one or more positive numbers, e.g. 1,64");
        }
        if !(self.secs.is_finite() && self.secs > 0.0) {
            bail!("--secs must be a positive number of seconds");
        }
        if !(self.warmup_secs.is_finite() && self.warmup_secs >= 0.0) {
            bail!("--warmup-secs must be zero or a positive number of seconds");
        }
        if self.rounds == 0 {
            bail!("--rounds must be at least 1");
        }
        if self.ttfb_words == 0 {
            bail!("--ttfb-words must be at least 1");
        }
        Ok(())
    }

    /// [`Args::warmup_secs`] as a duration.
    pub fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_secs)
    }

    /// [`Args::secs`] as a duration.
    pub fn measure(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }

    /// [`Args::ttfb_gap_ms`] as a duration.
    pub fn ttfb_gap(&self) -> Duration {
        Duration::from_millis(self.ttfb_gap_ms)
    }
}
