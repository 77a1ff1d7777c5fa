//! Figures, targets, and how they are printed (a table) and saved (JSON).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{Value, json};

use crate::cpu::CpuPerRequest;
use crate::servers::PgOutcome;
use crate::spread::RatioSpread;

/// Target: added median latency at concurrency 1, in milliseconds.
pub const MAX_ADDED_P50_MS: f64 = 0.5;
/// Target: added 99th-percentile latency at concurrency 1, in milliseconds.
pub const MAX_ADDED_P99_MS: f64 = 2.0;
/// Target: uno's throughput at concurrency 64 relative to direct.
pub const MIN_RPS_RATIO: f64 = 0.5;
/// Target: uno+pg's throughput at concurrency 64 relative to uno (logging
/// to Postgres costs less than 10%).
pub const MIN_LOGGING_RATIO: f64 = 0.9;
/// Streams: the gap between uno's first chunk and the stream's end must be
/// at least this share of the gaps the mock put in.
pub const MIN_STREAM_SPREAD: f64 = 0.5;

/// The machine the figures come from.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs available.
    pub nproc: usize,
    /// The CPU model, from /proc/cpuinfo.
    pub cpu: String,
    /// The load average when the run started (other work on the machine
    /// skews every figure), from /proc/loadavg.
    pub loadavg: String,
}

impl Machine {
    /// Reads what it can; unknown parts say so.
    pub fn detect() -> Self {
        let nproc = std::thread::available_parallelism().map_or(0, usize::from);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let loadavg = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".to_owned());
        Machine {
            nproc,
            cpu,
            loadavg,
        }
    }
}

/// Latency summary of one sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    /// Number of samples.
    pub count: usize,
    /// Median (nearest rank).
    pub p50_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
}

impl Latency {
    /// Summarises `nanos` (sorted in place).
    pub fn from_nanos(nanos: &mut [u64]) -> Self {
        nanos.sort_unstable();
        Latency {
            count: nanos.len(),
            p50_ms: nearest_rank(nanos, 50.0) as f64 / 1e6,
            p99_ms: nearest_rank(nanos, 99.0) as f64 / 1e6,
        }
    }

    fn to_json(self) -> Value {
        json!({"count": self.count, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms})
    }
}

/// The nearest-rank percentile of sorted values: the smallest value with at
/// least `p` percent of the sample at or below it (0 for an empty sample).
pub fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One target's figures at one concurrency, all rounds together.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throughput {
    /// Requests completed inside the measurement windows.
    pub requests: u64,
    /// Total length of the windows, in seconds.
    pub secs: f64,
    /// Latency of the requests that started and ended inside a window.
    pub latency: Latency,
    /// Failed requests.
    pub errors: u64,
    /// CPU time per request by component, warm-up included.
    pub cpu: CpuPerRequest,
    /// Connections the proxy opened to the mock (0 for direct).
    pub upstream_connections: u64,
}

impl Throughput {
    /// Requests per second over all windows.
    pub fn rps(&self) -> f64 {
        if self.secs > 0.0 {
            self.requests as f64 / self.secs
        } else {
            0.0
        }
    }

    fn to_json(self) -> Value {
        json!({
            "requests": self.requests,
            "secs": self.secs,
            "rps": self.rps(),
            "p50_ms": self.latency.p50_ms,
            "p99_ms": self.latency.p99_ms,
            "latency_samples": self.latency.count,
            "errors": self.errors,
            "cpu_us_per_request": {
                "loadgen": self.cpu.loadgen_us,
                "proxy": self.cpu.proxy_us,
                "mock": self.cpu.mock_us,
                "postgres": self.cpu.pg_us,
            },
            "upstream_connections": self.upstream_connections,
        })
    }
}

/// How far uno+pg's log writer fell behind, over all rounds at one
/// concurrency.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriterLag {
    /// Most records still queued when a measurement ended.
    pub max_backlog: u64,
    /// Longest time from the end of a measurement until every answered
    /// request was written, in milliseconds (the writer flushes a partial
    /// batch after `log_writer.flush_interval_ms`).
    pub max_drain_ms: f64,
}

/// All targets at one concurrency.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Open connections.
    pub concurrency: usize,
    /// The mock upstream alone.
    pub direct: Throughput,
    /// The mock upstream through uno (logging off).
    pub uno: Throughput,
    /// The mock upstream through uno logging to Postgres, when measured.
    pub uno_pg: Option<Throughput>,
    /// uno+pg's log writer lag, when measured.
    pub writer_lag: Option<WriterLag>,
    /// The uno+pg/uno throughput ratio of each round (the two measured
    /// back to back), summarised, when measured: how far the figure can
    /// be trusted on this machine.
    pub logging_rounds: Option<RatioSpread>,
    /// The mock upstream through the bare reference proxy, when measured.
    pub bare: Option<Throughput>,
}

impl Row {
    /// uno's throughput relative to direct.
    pub fn ratio(&self) -> f64 {
        let direct = self.direct.rps();
        if direct > 0.0 {
            self.uno.rps() / direct
        } else {
            0.0
        }
    }

    /// uno's throughput relative to direct had both runs had the same CPU:
    /// direct's CPU per request over uno's. Where the machine is shared
    /// (other work takes a varying share of the cores), this is steadier
    /// than [`Row::ratio`].
    pub fn cpu_ratio(&self) -> f64 {
        let uno = self.uno.cpu.total_us();
        if uno > 0.0 {
            self.direct.cpu.total_us() / uno
        } else {
            0.0
        }
    }

    /// Median latency uno adds, in milliseconds.
    pub fn added_p50_ms(&self) -> f64 {
        self.uno.latency.p50_ms - self.direct.latency.p50_ms
    }

    /// 99th-percentile latency uno adds, in milliseconds.
    pub fn added_p99_ms(&self) -> f64 {
        self.uno.latency.p99_ms - self.direct.latency.p99_ms
    }

    /// uno+pg's throughput relative to uno's.
    pub fn logging_ratio(&self) -> Option<f64> {
        let uno = self.uno.rps();
        self.uno_pg
            .map(|pg| if uno > 0.0 { pg.rps() / uno } else { 0.0 })
    }

    /// uno+pg's throughput relative to uno's had both had the same CPU:
    /// uno's CPU per request over uno+pg's, Postgres's own CPU included.
    pub fn logging_cpu_ratio(&self) -> Option<f64> {
        self.uno_pg.map(|pg| {
            let pg = pg.cpu.total_us();
            if pg > 0.0 {
                self.uno.cpu.total_us() / pg
            } else {
                0.0
            }
        })
    }

    /// Median latency logging to Postgres adds (uno+pg over uno), in ms.
    pub fn logging_added_p50_ms(&self) -> Option<f64> {
        self.uno_pg
            .map(|pg| pg.latency.p50_ms - self.uno.latency.p50_ms)
    }

    /// 99th-percentile latency logging to Postgres adds, in ms.
    pub fn logging_added_p99_ms(&self) -> Option<f64> {
        self.uno_pg
            .map(|pg| pg.latency.p99_ms - self.uno.latency.p99_ms)
    }
}

/// What uno+pg had to write and what reached the database.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Logged {
    /// Requests uno+pg answered with 200, warm-ups and smoke test included.
    pub answered: u64,
    /// What the database held once the writer had stopped; `None` until
    /// uno+pg has stopped.
    pub outcome: Option<PgOutcome>,
}

impl Logged {
    /// Whether every answered request left exactly one interaction row.
    pub fn matches(&self) -> bool {
        self.outcome.is_some_and(|o| o.rows == self.answered)
    }

    /// `rows written: N of M`, with the writer's losses when it had any.
    pub fn line(&self) -> String {
        match self.outcome {
            None => format!(
                "rows written: unknown of {} (uno+pg did not report)",
                self.answered
            ),
            Some(o) => {
                let mut line = format!("rows written: {} of {}", o.rows, self.answered);
                if o.rows_dropped + o.rows_spilled + o.rows_rejected > 0 {
                    let _ = write!(
                        line,
                        " (writer: {} dropped, {} journaled, {} refused)",
                        o.rows_dropped, o.rows_spilled, o.rows_rejected
                    );
                }
                if !self.matches() {
                    line.push_str(" MISMATCH");
                }
                line
            }
        }
    }
}

/// Time to the first streamed chunk, direct and through uno.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ttfb {
    /// Streamed requests per target.
    pub requests: usize,
    /// Gap between the mock's events, in milliseconds.
    pub gap_ms: u64,
    /// Events in each streamed answer.
    pub events: usize,
    /// Direct: time to first chunk.
    pub direct: Latency,
    /// Through uno: time to first chunk.
    pub uno: Latency,
    /// Through uno: the shortest time between the first chunk and the end of
    /// a stream, in milliseconds.
    pub uno_min_spread_ms: f64,
    /// Through uno: the median time to the end of the stream.
    pub uno_p50_end_ms: f64,
    /// Failed requests.
    pub errors: u64,
}

impl Ttfb {
    /// The gaps the mock put between the first event and the last, in ms.
    pub fn expected_spread_ms(&self) -> f64 {
        self.events.saturating_sub(1) as f64 * self.gap_ms as f64
    }
}

/// One pass/fail line.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What is checked.
    pub name: String,
    /// The measured value against the bound.
    pub detail: String,
    /// `None` when the run did not measure it.
    pub pass: Option<bool>,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// Warm-up per measurement, seconds.
    pub warmup_secs: f64,
    /// Window per measurement, seconds.
    pub secs: f64,
    /// Rounds per concurrency.
    pub rounds: u32,
    /// Bytes of the request body.
    pub request_bytes: usize,
    /// Bytes of the mock's non-streamed answer.
    pub response_bytes: usize,
    /// One row per concurrency.
    pub rows: Vec<Row>,
    /// Time to first chunk; `None` when skipped.
    pub ttfb: Option<Ttfb>,
    /// uno+pg's rows against its answers; `None` without uno+pg.
    pub logged: Option<Logged>,
}

impl Report {
    /// Requests that failed anywhere in the run.
    pub fn errors(&self) -> u64 {
        let rows: u64 = self
            .rows
            .iter()
            .map(|r| {
                r.direct.errors
                    + r.uno.errors
                    + r.uno_pg.map_or(0, |t| t.errors)
                    + r.bare.map_or(0, |t| t.errors)
            })
            .sum();
        rows + self.ttfb.map_or(0, |t| t.errors)
    }

    /// Whether uno+pg ran and the database does not hold exactly one row
    /// per answered request.
    pub fn rows_mismatch(&self) -> bool {
        self.logged.is_some_and(|l| !l.matches())
    }

    /// The targets, checked.
    pub fn verdicts(&self) -> Vec<Verdict> {
        let row = |c: usize| self.rows.iter().find(|r| r.concurrency == c);
        let mut out = Vec::new();
        let c1 = row(1);
        out.push(Verdict {
            name: format!("c=1  added p50 < {MAX_ADDED_P50_MS} ms"),
            detail: c1.map_or_else(not_measured, |r| format!("{:.3} ms", r.added_p50_ms())),
            pass: c1.map(|r| r.added_p50_ms() < MAX_ADDED_P50_MS),
        });
        out.push(Verdict {
            name: format!("c=1  added p99 < {MAX_ADDED_P99_MS} ms"),
            detail: c1.map_or_else(not_measured, |r| format!("{:.3} ms", r.added_p99_ms())),
            pass: c1.map(|r| r.added_p99_ms() < MAX_ADDED_P99_MS),
        });
        let c64 = row(64);
        out.push(Verdict {
            name: format!("c=64 uno rps >= {MIN_RPS_RATIO} x direct"),
            detail: c64.map_or_else(not_measured, |r| {
                format!(
                    "{:.0} vs {:.0} rps ({:.2}x; {:.2}x at equal CPU)",
                    r.uno.rps(),
                    r.direct.rps(),
                    r.ratio(),
                    r.cpu_ratio()
                )
            }),
            pass: c64.map(|r| r.ratio() >= MIN_RPS_RATIO),
        });
        let c64_pg = c64.filter(|r| r.uno_pg.is_some());
        out.push(Verdict {
            name: format!(
                "c=64 logging cost < {:.0}% (uno+pg rps >= {MIN_LOGGING_RATIO} x uno rps)",
                (1.0 - MIN_LOGGING_RATIO) * 100.0
            ),
            detail: c64_pg.map_or_else(not_measured, |r| {
                let rounds = r
                    .logging_rounds
                    .map_or_else(String::new, |spread| format!("; {}", spread.line()));
                format!(
                    "{:.0} vs {:.0} rps ({:.3}x; {:.3}x at equal CPU{rounds})",
                    r.uno_pg.map_or(0.0, |t| t.rps()),
                    r.uno.rps(),
                    r.logging_ratio().unwrap_or(0.0),
                    r.logging_cpu_ratio().unwrap_or(0.0)
                )
            }),
            pass: c64_pg.and_then(|r| r.logging_ratio().map(|x| x >= MIN_LOGGING_RATIO)),
        });
        let floor = self
            .ttfb
            .map_or(0.0, |t| t.expected_spread_ms() * MIN_STREAM_SPREAD);
        out.push(Verdict {
            name: "uno streams: first chunk well before the end".to_owned(),
            detail: self.ttfb.map_or_else(not_measured, |t| {
                format!(
                    "min first-chunk-to-end {:.1} ms (>= {floor:.1} ms wanted)",
                    t.uno_min_spread_ms
                )
            }),
            pass: self.ttfb.map(|t| t.uno_min_spread_ms >= floor),
        });
        out
    }

    /// Whether any checked target failed.
    pub fn any_failed(&self) -> bool {
        self.verdicts().iter().any(|v| v.pass == Some(false))
    }

    /// The human-readable report.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nthroughput and latency: {} round(s) x ({}s warm-up + {}s measured) per target and concurrency, interleaved {}",
            self.rounds,
            self.warmup_secs,
            self.secs,
            self.interleaving()
        );
        let _ = writeln!(
            s,
            "request {} B, non-streamed answer {} B; latencies in ms\n",
            self.request_bytes, self.response_bytes
        );
        let _ = writeln!(
            s,
            "{:>5} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "conc",
            "direct rps",
            "uno rps",
            "uno/dir",
            "dir p50",
            "dir p99",
            "uno p50",
            "uno p99",
            "+p50",
            "+p99"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:>5} {:>10.0} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                r.concurrency,
                r.direct.rps(),
                r.uno.rps(),
                r.ratio(),
                r.direct.latency.p50_ms,
                r.direct.latency.p99_ms,
                r.uno.latency.p50_ms,
                r.uno.latency.p99_ms,
                r.added_p50_ms(),
                r.added_p99_ms(),
            );
        }
        self.logging_table(&mut s);
        let with_pg = self.rows.iter().any(|r| r.uno_pg.is_some());
        let _ = writeln!(
            s,
            "\nper target: rps; latency (ms); CPU time per request by runtime (us, warm-up included);\nCPUs = CPU seconds the run got per second (of {}; less means other work took the rest);\nmock conns = connections the proxy opened to the mock",
            self.machine.nproc
        );
        if with_pg {
            let _ = writeln!(
                s,
                "pg = Postgres's own CPU, outside this process but on the same cores: its backends for\nuno+pg's database plus the shared checkpointer, WAL and background writers, from\n/proc/<pid>/stat in 10 ms ticks (counted in total and CPUs; uno+pg's includes the\nwriter catching up after each window)"
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:>5} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "conc",
            "target",
            "rps",
            "p50",
            "p99",
            "loadgen",
            "proxy",
            "mock",
            "pg",
            "total",
            "CPUs",
            "mock conns"
        );
        for r in &self.rows {
            let targets = [
                ("direct", Some(&r.direct)),
                ("uno", Some(&r.uno)),
                ("uno+pg", r.uno_pg.as_ref()),
                ("bare", r.bare.as_ref()),
            ];
            for (name, t) in targets {
                let Some(t) = t else { continue };
                let _ = writeln!(
                    s,
                    "{:>5} {:>7} {:>9.0} {:>9.3} {:>9.3} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.2} {:>10}",
                    r.concurrency,
                    name,
                    t.rps(),
                    t.latency.p50_ms,
                    t.latency.p99_ms,
                    t.cpu.loadgen_us,
                    t.cpu.proxy_us,
                    t.cpu.mock_us,
                    t.cpu.pg_us,
                    t.cpu.total_us(),
                    t.rps() * t.cpu.total_us() / 1e6,
                    t.upstream_connections
                );
            }
        }
        if let Some(t) = self.ttfb {
            let _ = writeln!(
                s,
                "\ntime to first streamed chunk: {} sequential requests per target, interleaved; {} events, {} ms apart\n",
                t.requests, t.events, t.gap_ms
            );
            let _ = writeln!(s, "{:>8} {:>9} {:>9}", "", "p50 ms", "p99 ms");
            let _ = writeln!(
                s,
                "{:>8} {:>9.3} {:>9.3}",
                "direct", t.direct.p50_ms, t.direct.p99_ms
            );
            let _ = writeln!(
                s,
                "{:>8} {:>9.3} {:>9.3}",
                "uno", t.uno.p50_ms, t.uno.p99_ms
            );
            let _ = writeln!(
                s,
                "{:>8} {:>9.3} {:>9.3}",
                "added",
                t.uno.p50_ms - t.direct.p50_ms,
                t.uno.p99_ms - t.direct.p99_ms
            );
            let _ = writeln!(
                s,
                "uno stream end p50 {:.3} ms (mock spreads events over {:.0} ms)",
                t.uno_p50_end_ms,
                t.expected_spread_ms()
            );
        }
        if let Some(logged) = self.logged {
            let _ = writeln!(s, "\nuno+pg {}", logged.line());
        }
        let _ = writeln!(s, "\ntargets:");
        for v in self.verdicts() {
            let mark = match v.pass {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "SKIP",
            };
            let _ = writeln!(s, "  {mark}  {:<56} {}", v.name, v.detail);
        }
        let errors = self.errors();
        if errors > 0 {
            let _ = writeln!(
                s,
                "\nERRORS: {errors} request(s) failed; the run is invalid"
            );
        }
        if self.rows_mismatch() {
            let _ = writeln!(
                s,
                "\nROWS: the database does not hold one row per answered request; the run is invalid"
            );
        }
        s
    }

    /// The targets in the order each round runs them.
    fn interleaving(&self) -> String {
        let mut names = vec!["direct", "uno"];
        if self.rows.iter().any(|r| r.uno_pg.is_some()) {
            names.push("uno+pg");
        }
        if self.rows.iter().any(|r| r.bare.is_some()) {
            names.push("bare");
        }
        names.join("/")
    }

    /// Logging on (uno+pg) against logging off (uno), when measured.
    fn logging_table(&self, s: &mut String) {
        if !self.rows.iter().any(|r| r.uno_pg.is_some()) {
            return;
        }
        let _ = writeln!(
            s,
            "\nlogging to Postgres: uno+pg (log writer, Postgres) against uno (logging off), same rounds;\npg/uno at eq CPU = uno's CPU per request over uno+pg's, Postgres included; backlog = most\nrecords queued when a window ended; drain = longest wait after a window until all were written\n"
        );
        let _ = writeln!(
            s,
            "{:>5} {:>9} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "conc",
            "uno rps",
            "+pg rps",
            "pg/uno",
            "at eq CPU",
            "uno p50",
            "uno p99",
            "+pg p50",
            "+pg p99",
            "added50",
            "added99",
            "backlog",
            "drain ms"
        );
        for r in &self.rows {
            let Some(pg) = r.uno_pg else { continue };
            let lag = r.writer_lag.unwrap_or_default();
            let _ = writeln!(
                s,
                "{:>5} {:>9.0} {:>9.0} {:>7.3} {:>9.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8} {:>8.0}",
                r.concurrency,
                r.uno.rps(),
                pg.rps(),
                r.logging_ratio().unwrap_or(0.0),
                r.logging_cpu_ratio().unwrap_or(0.0),
                r.uno.latency.p50_ms,
                r.uno.latency.p99_ms,
                pg.latency.p50_ms,
                pg.latency.p99_ms,
                r.logging_added_p50_ms().unwrap_or(0.0),
                r.logging_added_p99_ms().unwrap_or(0.0),
                lag.max_backlog,
                lag.max_drain_ms
            );
        }
    }

    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "concurrency": r.concurrency,
                    "direct": r.direct.to_json(),
                    "uno": r.uno.to_json(),
                    "uno_pg": r.uno_pg.map(Throughput::to_json),
                    "bare": r.bare.map(Throughput::to_json),
                    "logging_rps_ratio": r.logging_ratio(),
                    "logging_rps_ratio_at_equal_cpu": r.logging_cpu_ratio(),
                    "logging_rps_ratio_rounds": r.logging_rounds.map(RatioSpread::to_json),
                    "logging_added_p50_ms": r.logging_added_p50_ms(),
                    "logging_added_p99_ms": r.logging_added_p99_ms(),
                    "writer_max_backlog": r.writer_lag.map(|l| l.max_backlog),
                    "writer_max_drain_ms": r.writer_lag.map(|l| l.max_drain_ms),
                    "rps_ratio": r.ratio(),
                    "rps_ratio_at_equal_cpu": r.cpu_ratio(),
                    "added_p50_ms": r.added_p50_ms(),
                    "added_p99_ms": r.added_p99_ms(),
                })
            })
            .collect();
        let ttfb = self.ttfb.map(|t| {
            json!({
                "requests": t.requests,
                "gap_ms": t.gap_ms,
                "events": t.events,
                "direct": t.direct.to_json(),
                "uno": t.uno.to_json(),
                "added_p50_ms": t.uno.p50_ms - t.direct.p50_ms,
                "added_p99_ms": t.uno.p99_ms - t.direct.p99_ms,
                "uno_min_first_chunk_to_end_ms": t.uno_min_spread_ms,
                "uno_p50_end_ms": t.uno_p50_end_ms,
                "errors": t.errors,
            })
        });
        let targets: Vec<Value> = self
            .verdicts()
            .into_iter()
            .map(|v| json!({"name": v.name, "detail": v.detail, "pass": v.pass}))
            .collect();
        json!({
            "machine": {
                "nproc": self.machine.nproc,
                "cpu": self.machine.cpu,
                "loadavg": self.machine.loadavg,
            },
            "settings": {
                "warmup_secs": self.warmup_secs,
                "secs": self.secs,
                "rounds": self.rounds,
                "request_bytes": self.request_bytes,
                "response_bytes": self.response_bytes,
            },
            "throughput": rows,
            "ttfb": ttfb,
            "logged": self.logged.map(|l| json!({
                "answered": l.answered,
                "rows": l.outcome.map(|o| o.rows),
                "writer_rows_written": l.outcome.map(|o| o.rows_written),
                "writer_rows_dropped": l.outcome.map(|o| o.rows_dropped),
                "writer_rows_spilled": l.outcome.map(|o| o.rows_spilled),
                "writer_rows_rejected": l.outcome.map(|o| o.rows_rejected),
                "matches": l.matches(),
            })),
            "targets": targets,
            "errors": self.errors(),
        })
    }

    /// Writes [`Report::to_json`] to `path`.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        let text =
            serde_json::to_string_pretty(&self.to_json()).context("cannot encode the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

fn not_measured() -> String {
    "not measured in this run".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 50.0), 50);
        assert_eq!(nearest_rank(&v, 99.0), 99);
        assert_eq!(nearest_rank(&v, 100.0), 100);
        assert_eq!(nearest_rank(&[7], 99.0), 7);
        assert_eq!(nearest_rank(&[], 50.0), 0);
        assert_eq!(nearest_rank(&[1, 2, 3], 50.0), 2);
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 50.0), 2);
    }

    #[test]
    fn verdicts_follow_the_targets() {
        let lat = |p50_ms, p99_ms| Latency {
            count: 10,
            p50_ms,
            p99_ms,
        };
        let tp = |requests, latency| Throughput {
            requests,
            secs: 1.0,
            latency,
            errors: 0,
            cpu: CpuPerRequest::default(),
            upstream_connections: 0,
        };
        let report = Report {
            machine: Machine {
                nproc: 2,
                cpu: "test".into(),
                loadavg: "0 0 0".into(),
            },
            warmup_secs: 1.0,
            secs: 5.0,
            rounds: 2,
            request_bytes: 1,
            response_bytes: 1,
            rows: vec![
                Row {
                    concurrency: 1,
                    direct: tp(100, lat(0.1, 0.2)),
                    uno: tp(90, lat(0.3, 1.0)),
                    uno_pg: None,
                    writer_lag: None,
                    logging_rounds: None,
                    bare: None,
                },
                Row {
                    concurrency: 64,
                    direct: tp(100, lat(1.0, 2.0)),
                    uno: tp(40, lat(2.0, 5.0)),
                    uno_pg: None,
                    writer_lag: None,
                    logging_rounds: None,
                    bare: None,
                },
            ],
            ttfb: None,
            logged: None,
        };
        let v = report.verdicts();
        assert_eq!(v[0].pass, Some(true));
        assert_eq!(v[1].pass, Some(true));
        assert_eq!(v[2].pass, Some(false));
        assert_eq!(v[3].pass, None);
        assert_eq!(v[4].pass, None);
        assert!(report.any_failed());
        assert!(!report.rows_mismatch());
        assert!(report.table().contains("FAIL"));
        assert!(!report.table().contains("logging to Postgres"));
        assert_eq!(report.to_json()["throughput"][1]["concurrency"], 64);

        let mut with_pg = report.clone();
        with_pg.rows[1].uno_pg = Some(tp(37, lat(2.5, 6.0)));
        with_pg.rows[1].writer_lag = Some(WriterLag {
            max_backlog: 3,
            max_drain_ms: 100.0,
        });
        with_pg.rows[1].logging_rounds = RatioSpread::of(&[0.875, 0.975]);
        let v = with_pg.verdicts();
        assert_eq!(v[3].pass, Some(true), "{}", v[3].detail);
        assert!(
            v[3].detail.contains("2 rounds: median 0.925x")
                && v[3].detail.contains("range 0.875-0.975x"),
            "{}",
            v[3].detail
        );
        assert_eq!(
            with_pg.to_json()["throughput"][1]["logging_rps_ratio_rounds"]["min"],
            0.875
        );
        assert_eq!(with_pg.rows[1].logging_added_p50_ms(), Some(0.5));
        assert_eq!(with_pg.rows[1].logging_added_p99_ms(), Some(1.0));
        with_pg.rows[1].uno_pg = Some(tp(35, lat(2.5, 6.0)));
        assert_eq!(with_pg.verdicts()[3].pass, Some(false));
        assert!(with_pg.table().contains("logging to Postgres"));
        assert_eq!(
            with_pg.to_json()["throughput"][1]["logging_rps_ratio"],
            35.0 / 40.0
        );
    }

    #[test]
    fn row_parity() {
        let outcome = |rows| PgOutcome {
            rows,
            rows_written: rows,
            ..PgOutcome::default()
        };
        let ok = Logged {
            answered: 12,
            outcome: Some(outcome(12)),
        };
        assert!(ok.matches());
        assert_eq!(ok.line(), "rows written: 12 of 12");
        let short = Logged {
            answered: 12,
            outcome: Some(outcome(11)),
        };
        assert!(!short.matches());
        assert!(short.line().ends_with("MISMATCH"));
        assert!(
            !Logged {
                answered: 1,
                outcome: None
            }
            .matches()
        );
    }
}
