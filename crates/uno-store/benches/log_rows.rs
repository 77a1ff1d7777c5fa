//! What logging one interaction costs the uno process, split in its
//! in-process parts: the request digest taken on arrival (model, a copy of
//! the body, the messages' hash), building the rows when the exchange ends
//! (parsing the answer, finishing the hash) and writing them to Postgres in
//! the writer's batches (encoding, the protocol, waiting). The records here
//! are cold in cache, as they are in the proxy by the time an answer is
//! back. CPU
//! is this thread's own time on a CPU (`/proc/thread-self/schedstat`);
//! Postgres's work, in its own processes, is reported beside it (its
//! backends for this database and the shared WAL and background writers,
//! from `/proc/<pid>/stat`), since on a machine where both share the cores
//! it costs throughput as much as uno's own.
//!
//! ```text
//! cargo bench -p uno-store --bench log_rows                 # 20 000 records, batches of 512
//! cargo bench -p uno-store --bench log_rows -- 50000 256    # records, batch size
//! ```
//!
//! Needs the Postgres test server (`UNO_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432`); a fresh database is made and
//! dropped. The record is the load harness's: a system prompt and a
//! question with pasted context (about 1.2 kB), a 60-word answer with usage.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use uno_core::InteractionId;
use uno_core::digest::RequestDigest;
use uno_core::interaction::{InteractionRecord, Outcome, ResponseBody};
use uno_store::Store;
use uno_store::rows::{InteractionRows, LogRow};
use uno_testkit::pg_cpu::postgres_ns;
use uno_testkit::{Backend, TestDatabase};

const SYSTEM: &str = "You are a careful technical assistant for a software company. Answer \
in plain language, give the steps in order and say what you assumed when a question is \
ambiguous. Never invent API names, configuration keys or command-line flags.";
const QUESTION: &str = "Our service runs behind a reverse proxy and talks to a language model \
provider over HTTPS. Since last week, some requests take several seconds longer than usual, \
mostly in the afternoon, and a few of them fail with a gateway timeout. The proxy keeps a pool \
of keep-alive connections, retries twice with exponential backoff, and has a read timeout of \
thirty seconds. How should we find out whether the delay comes from the proxy, the network or \
the provider, and which three measurements should we collect first?";
const ANSWER: &str = "Start by timing each hop separately. Log when the proxy receives the \
request, when it sends it upstream, when the first byte comes back and when the response ends. \
Compare the proxy's added time with the upstream's time to first byte. If the upstream \
dominates, check its rate-limit headers and retry counts; if the proxy does, look at \
connection pool waits and DNS.";

fn record() -> InteractionRecord {
    let request = serde_json::json!({
        "model": "bench-model",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": QUESTION},
        ],
        "temperature": 0.2,
        "max_tokens": 256,
    });
    let response = serde_json::json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 210, "completion_tokens": 64, "total_tokens": 274},
    });
    InteractionRecord {
        id: InteractionId::new(),
        tenant: Arc::from("bench"),
        started_at: SystemTime::now(),
        end_user: Some("user-1".to_owned()),
        request_body: Bytes::from(request.to_string()),
        request_digest: None,
        stream: false,
        status: 200,
        outcome: Outcome::Completed,
        response: ResponseBody::Complete(Bytes::from(response.to_string())),
        upstream_latency: Some(Duration::from_micros(800)),
        total_latency: Duration::from_micros(850),
        time_to_first_byte: Some(Duration::from_micros(850)),
        error: None,
        experience: Default::default(),
    }
}

/// This thread's time on a CPU so far.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let nanos = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(nanos)
}

fn per(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let records: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(512);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(records, batch.max(1)));
}

async fn run(records: usize, batch: usize) {
    let mut inputs: Vec<InteractionRecord> = (0..records).map(|_| record()).collect();

    // The digest the proxy takes as each request arrives (here from the
    // body; the proxy reuses its own parse of it).
    let (cpu, wall) = (thread_cpu(), Instant::now());
    for input in &mut inputs {
        input.request_digest = Some(RequestDigest::of_body(&input.tenant, &input.request_body));
    }
    let (digest_cpu, digest_wall) = (thread_cpu() - cpu, wall.elapsed());

    let (cpu, wall) = (thread_cpu(), Instant::now());
    let mut rows: Vec<LogRow> = Vec::with_capacity(records);
    for input in inputs {
        InteractionRows::build(input).push_into(&mut rows);
    }
    let (build_cpu, build_wall) = (thread_cpu() - cpu, wall.elapsed());
    assert_eq!(rows.len(), records, "one row per record");

    let db = TestDatabase::new(Backend::Postgres).await;
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    // One warm-up batch: the partition for today, prepared statements.
    store
        .write_rows(&rows[..batch.min(rows.len())])
        .await
        .expect("warm-up");
    let rest = &rows[batch.min(rows.len())..];
    let pg_name = db.postgres_name().unwrap_or_default().to_owned();
    let (cpu, wall, pg) = (thread_cpu(), Instant::now(), postgres_ns(&pg_name));
    for chunk in rest.chunks(batch) {
        store.write_rows(chunk).await.expect("write");
    }
    let (write_cpu, write_wall) = (thread_cpu() - cpu, wall.elapsed());
    let pg_cpu = Duration::from_nanos(postgres_ns(&pg_name).saturating_sub(pg));
    assert_eq!(
        store.count_interactions(None).await.expect("count"),
        records as u64
    );
    store.close().await;

    println!(
        "log rows: {records} records, batches of {batch}, Postgres {}",
        db.url
    );
    println!(
        "  digest       {:7.2} us CPU/record  ({:7.2} us wall; on arrival)",
        per(digest_cpu, records),
        per(digest_wall, records)
    );
    println!(
        "  build rows   {:7.2} us CPU/record  ({:7.2} us wall; when it ends)",
        per(build_cpu, records),
        per(build_wall, records)
    );
    println!(
        "  write rows   {:7.2} us CPU/row     ({:7.2} us wall, Postgres's time included)",
        per(write_cpu, rest.len()),
        per(write_wall, rest.len())
    );
    println!(
        "  Postgres     {:7.2} us CPU/row     (its processes, 10 ms clock ticks)",
        per(pg_cpu, rest.len())
    );
    println!(
        "  in process   {:7.2} us CPU per logged interaction",
        per(digest_cpu, records) + per(build_cpu, records) + per(write_cpu, rest.len())
    );
}
