//! What is measured: the payloads, and the phases run against the targets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use uno_store::writer::WriterStats;
use uno_testkit::pg_cpu::postgres_ns;
use uno_testkit::{MockReply, MockUpstream};

use crate::bare::BareProxy;
use crate::cpu::CpuTimes;
use crate::loadgen::{Connection, Measurement, Target, closed_loop};
use crate::report::{Latency, Row, Throughput, Ttfb, WriterLag};
use crate::servers::{MockServer, UnoPgServer, UnoServer};
use crate::spread::RatioSpread;

/// Longest the log writer may take to catch up after a uno+pg round.
const MAX_DRAIN: Duration = Duration::from_secs(60);

/// The one client key uno accepts in the run.
pub const API_KEY: &str = "uno-bench-key-0001";

// The measured exchange, shared with the log_rows bench.
pub use uno_testkit::payload::{REPLY_TEXT, chat_body, chat_body_with_context};

/// The streamed answer for time-to-first-chunk: the first `words` words of
/// the usual answer, one event each, `gap` apart.
pub fn stream_reply(words: usize, gap: Duration) -> (MockReply, usize) {
    let text: Vec<&str> = REPLY_TEXT.split_whitespace().take(words).collect();
    let taken = text.len();
    // Role event, one per word, the stop event, and `[DONE]`.
    let events = taken + 3;
    let reply = MockReply::text(text.join(" "));
    // A zero gap still sleeps (the timer rounds up to a millisecond): none.
    let reply = if gap.is_zero() {
        reply
    } else {
        reply.chunk_gap(gap)
    };
    (reply, events)
}

/// uno+pg's log writer, watched to count what it must write and to wait
/// for it between rounds.
pub struct PgWatch {
    stats: Arc<WriterStats>,
    database: String,
    /// Requests uno+pg answered with 200, warm-up and smoke test included:
    /// each must become one interaction row.
    answered: AtomicU64,
}

impl PgWatch {
    fn settled(&self) -> u64 {
        let s = &self.stats;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        load(&s.rows_written)
            + load(&s.rows_dropped)
            + load(&s.rows_spilled)
            + load(&s.rows_rejected)
    }

    /// Waits until the writer has dealt with every answered request; how
    /// long that took.
    async fn drain(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let answered = self.answered.load(Ordering::Relaxed);
        while self.settled() < answered {
            if started.elapsed() > MAX_DRAIN {
                bail!(
                    "uno+pg's log writer settled {} of {answered} records in {}s",
                    self.settled(),
                    MAX_DRAIN.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(started.elapsed())
    }
}

/// All targets and the bodies they are sent.
pub struct Bench {
    /// The mock upstream, called directly.
    pub direct: Target,
    /// The mock upstream through uno (logging off).
    pub uno: Target,
    /// The mock upstream through uno logging to Postgres, when measured.
    pub uno_pg: Option<Target>,
    /// uno+pg's log writer, when measured.
    pub pg: Option<PgWatch>,
    /// The mock upstream through the bare reference proxy, when measured.
    pub bare: Option<Target>,
    /// The mock, to count the connections it accepts.
    pub mock: Arc<MockUpstream>,
    /// The non-streamed request body.
    pub body: Bytes,
    /// The streamed request body.
    pub stream_body: Bytes,
}

impl Bench {
    /// Targets for the running servers, and the prebuilt bodies (with
    /// `context_bytes` of pasted context in the user message).
    pub fn new(
        mock: &MockServer,
        uno: &UnoServer,
        uno_pg: Option<&UnoPgServer>,
        bare: Option<&BareProxy>,
        context_bytes: usize,
    ) -> anyhow::Result<Self> {
        Ok(Bench {
            direct: Target::new("direct", mock.handle().addr(), None)?,
            uno: Target::new("uno", uno.addr(), Some(API_KEY))?,
            uno_pg: uno_pg
                .map(|s| Target::new("uno+pg", s.addr(), Some(API_KEY)))
                .transpose()?,
            pg: uno_pg.map(|s| PgWatch {
                stats: s.stats(),
                database: s.database().to_owned(),
                answered: AtomicU64::new(0),
            }),
            bare: bare
                .map(|bare| Target::new("bare", bare.addr(), None))
                .transpose()?,
            mock: mock.shared(),
            body: chat_body_with_context(false, context_bytes),
            stream_body: chat_body_with_context(true, context_bytes),
        })
    }

    /// One request to each target, so a broken setup fails before any
    /// measurement; returns the size of the direct answer.
    pub async fn smoke_test(&self) -> anyhow::Result<usize> {
        let mut direct_size = 0;
        for target in [
            Some(&self.direct),
            Some(&self.uno),
            self.uno_pg.as_ref(),
            self.bare.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let mut connection = Connection::open(target).await?;
            let size = connection
                .answer_size(target, &self.body)
                .await
                .with_context(|| format!("smoke test against {} failed", target.name))?;
            if target.name == self.direct.name {
                direct_size = size;
            }
            self.count_answered(target, 1);
        }
        Ok(direct_size)
    }

    /// Requests uno+pg answered with 200 so far (0 without uno+pg).
    pub fn uno_pg_answered(&self) -> u64 {
        self.pg
            .as_ref()
            .map_or(0, |pg| pg.answered.load(Ordering::Relaxed))
    }

    fn is_uno_pg(&self, target: &Target) -> bool {
        self.uno_pg.as_ref().is_some_and(|t| t.name == target.name)
    }

    fn count_answered(&self, target: &Target, n: u64) {
        if let Some(pg) = &self.pg
            && self.is_uno_pg(target)
        {
            pg.answered.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// CPU used so far by every component, Postgres included when uno+pg
    /// runs.
    fn cpu_now(&self) -> CpuTimes {
        let mut cpu = CpuTimes::now();
        if let Some(pg) = &self.pg {
            cpu.pg_ns = postgres_ns(&pg.database);
        }
        cpu
    }

    /// Throughput and latency at `concurrency`: `rounds` rounds of direct,
    /// uno and uno+pg (then the bare proxy, when measured), each a warm-up
    /// and a fixed-length window. After each uno+pg window the log writer
    /// is given time to write everything answered so far (its backlog, and
    /// how long that took, are reported; the CPU it used doing so counts
    /// toward uno+pg), so no round inherits another's logging work.
    pub async fn throughput(
        &self,
        concurrency: usize,
        rounds: u32,
        warmup: Duration,
        measure: Duration,
    ) -> anyhow::Result<Row> {
        let mut direct = Vec::new();
        let mut uno = Vec::new();
        let mut uno_pg = Vec::new();
        let mut bare = Vec::new();
        let mut lag = WriterLag::default();
        for round in 1..=rounds {
            // uno and uno+pg swap places every round, so a machine that
            // speeds up or slows down during a round (other tenants' load)
            // favours each of them equally often.
            let mut compared = [
                (Some(&self.uno), &mut uno),
                (self.uno_pg.as_ref(), &mut uno_pg),
            ];
            if round % 2 == 0 {
                compared.swap(0, 1);
            }
            let targets = [(Some(&self.direct), &mut direct)]
                .into_iter()
                .chain(compared)
                .chain([(self.bare.as_ref(), &mut bare)]);
            for (target, into) in targets {
                let Some(target) = target else { continue };
                let before = self.cpu_now();
                let accepted = self.mock.connections_accepted();
                let m = closed_loop(target, &self.body, concurrency, warmup, measure).await?;
                self.count_answered(target, m.completed_total);
                let mut writer = String::new();
                if let Some(pg) = self.pg.as_ref().filter(|_| self.is_uno_pg(target)) {
                    let backlog = pg.stats.queue_depth();
                    let drained = pg.drain().await?;
                    lag.max_backlog = lag.max_backlog.max(backlog);
                    lag.max_drain_ms = lag.max_drain_ms.max(drained.as_secs_f64() * 1e3);
                    writer = format!(
                        "  writer: {backlog} queued at the end, all written {:.0} ms later",
                        drained.as_secs_f64() * 1e3
                    );
                }
                let cpu = self.cpu_now() - before;
                let mut opened = self.mock.connections_accepted() - accepted;
                if target.name == self.direct.name {
                    // The load generator's own connections are not a proxy's.
                    opened = opened.saturating_sub(concurrency);
                }
                eprintln!(
                    "  c={concurrency:<4} round {round}/{rounds} {:<7} {:>9.0} rps  {} errors{writer}",
                    target.name,
                    m.completed as f64 / measure.as_secs_f64(),
                    m.errors
                );
                if let Some(err) = &m.first_error {
                    eprintln!("    first error: {err}");
                }
                into.push(Round { m, cpu, opened });
            }
        }
        let logging_rounds = RatioSpread::of(&round_ratios(&uno_pg, &uno));
        Ok(Row {
            concurrency,
            logging_rounds,
            direct: aggregate(direct),
            uno: aggregate(uno),
            uno_pg: (!uno_pg.is_empty()).then(|| aggregate(uno_pg)),
            writer_lag: self.pg.is_some().then_some(lag),
            bare: (!bare.is_empty()).then(|| aggregate(bare)),
        })
    }

    /// Time to first streamed chunk: `requests` streamed requests per
    /// target over one keep-alive connection each, alternating direct and
    /// uno, after a short warm-up. The mock must already send `events`
    /// events `gap` apart.
    pub async fn ttfb(
        &self,
        requests: usize,
        events: usize,
        gap: Duration,
    ) -> anyhow::Result<Ttfb> {
        const WARMUP_REQUESTS: usize = 3;
        let mut direct_conn = Connection::open(&self.direct).await?;
        let mut uno_conn = Connection::open(&self.uno).await?;
        for _ in 0..WARMUP_REQUESTS {
            direct_conn
                .stream_exchange(&self.direct, &self.stream_body)
                .await?;
            uno_conn
                .stream_exchange(&self.uno, &self.stream_body)
                .await?;
        }
        let mut direct = Vec::with_capacity(requests);
        let mut uno = Vec::with_capacity(requests);
        let mut uno_end = Vec::with_capacity(requests);
        let mut min_spread = Duration::MAX;
        for _ in 0..requests {
            let d = direct_conn
                .stream_exchange(&self.direct, &self.stream_body)
                .await
                .context("streamed request to the mock failed")?;
            direct.push(nanos(d.first_chunk));
            let u = uno_conn
                .stream_exchange(&self.uno, &self.stream_body)
                .await
                .context("streamed request through uno failed")?;
            uno.push(nanos(u.first_chunk));
            uno_end.push(nanos(u.end));
            min_spread = min_spread.min(u.end.saturating_sub(u.first_chunk));
        }
        if requests == 0 {
            bail!("no streamed requests to measure");
        }
        let uno_end = Latency::from_nanos(&mut uno_end);
        Ok(Ttfb {
            requests,
            gap_ms: u64::try_from(gap.as_millis()).unwrap_or(u64::MAX),
            events,
            direct: Latency::from_nanos(&mut direct),
            uno: Latency::from_nanos(&mut uno),
            uno_min_spread_ms: min_spread.as_secs_f64() * 1e3,
            uno_p50_end_ms: uno_end.p50_ms,
            errors: 0,
        })
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One measurement with what it cost.
struct Round {
    m: Measurement,
    cpu: CpuTimes,
    /// Connections the proxy opened to the mock.
    opened: usize,
}

/// The ratio of `over`'s throughput to `under`'s in each round, the two
/// paired by round (none when either was not measured).
fn round_ratios(over: &[Round], under: &[Round]) -> Vec<f64> {
    let rps = |r: &Round| r.m.completed as f64 / r.m.window.as_secs_f64().max(f64::MIN_POSITIVE);
    over.iter()
        .zip(under)
        .filter(|(_, u)| rps(u) > 0.0)
        .map(|(o, u)| rps(o) / rps(u))
        .collect()
}

/// All rounds of one target as one sample.
fn aggregate(rounds: Vec<Round>) -> Throughput {
    let mut latencies = Vec::with_capacity(rounds.iter().map(|r| r.m.latencies_ns.len()).sum());
    let mut out = Throughput::default();
    let mut cpu = CpuTimes::default();
    let mut all_requests = 0;
    for Round {
        m,
        cpu: used,
        opened,
    } in rounds
    {
        out.upstream_connections += opened as u64;
        latencies.extend_from_slice(&m.latencies_ns);
        out.requests += m.completed;
        out.secs += m.window.as_secs_f64();
        out.errors += m.errors;
        all_requests += m.completed_total;
        cpu += used;
    }
    out.latency = Latency::from_nanos(&mut latencies);
    out.cpu = cpu.per_request_us(all_requests);
    out
}

#[cfg(test)]
mod tests {
    use uno_testkit::payload::MODEL;

    use super::*;

    #[test]
    fn bodies_are_valid_chat_requests() {
        for stream in [false, true] {
            let body = chat_body(stream);
            let view = uno_core::wire::ChatRequestView::parse(&body).expect("valid request");
            assert_eq!(view.model, MODEL);
            assert_eq!(view.messages.len(), 2);
            assert_eq!(view.is_stream(), stream);
            // About 200 tokens at roughly four bytes per token.
            assert!((700..1100).contains(&body.len()), "{} bytes", body.len());
        }
        let words = REPLY_TEXT.split_whitespace().count();
        assert!((50..=70).contains(&words), "{words} words");
    }

    fn round(completed: u64, secs: u64) -> Round {
        Round {
            m: Measurement {
                latencies_ns: Vec::new(),
                completed,
                completed_total: completed,
                window: Duration::from_secs(secs),
                errors: 0,
                first_error: None,
            },
            cpu: CpuTimes::default(),
            opened: 0,
        }
    }

    #[test]
    fn round_ratios_pair_rounds_in_order() {
        let uno = [round(1000, 1), round(2000, 2), round(900, 1)];
        let uno_pg = [round(900, 1), round(1900, 2), round(900, 1)];
        assert_eq!(round_ratios(&uno_pg, &uno), vec![0.9, 0.95, 1.0]);
        assert!(round_ratios(&[], &uno).is_empty(), "uno+pg not measured");
    }

    #[test]
    fn stream_reply_counts_events() {
        let (_, events) = stream_reply(3, Duration::from_millis(20));
        assert_eq!(events, 6);
    }
}
