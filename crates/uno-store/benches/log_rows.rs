//! What logging one interaction costs the uno process, split in its
//! in-process parts: the request digest taken on arrival (model, a copy of
//! the body, the messages' hash), building the rows when the exchange ends
//! (parsing the answer, finishing the hash, encoding them for COPY) and
//! writing them to Postgres in the writer's batches (the protocol,
//! waiting). The records here
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
//! cargo bench -p uno-store --bench log_rows -- 5000 512 20000 # and 20 kB of pasted context
//! UNO_LOG_ROWS_COMPRESSION=pglz cargo bench … # content compressed as before migration 0007
//! ```
//!
//! Needs the Postgres test server (`UNO_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432`); a fresh database is made and
//! dropped. The record is the load harness's exchange
//! (`uno_testkit::payload`): a system prompt and a question with pasted
//! context (about 1 kB), a 60-word answer with usage; the third argument
//! pastes that many bytes more into the question, past the size at which
//! Postgres compresses what it stores.

use std::time::{Duration, Instant};

use bytes::Bytes;
use uno_core::digest::RequestDigest;
use uno_core::interaction::{InteractionRecord, ResponseBody};
use uno_store::Store;
use uno_store::rows::{EncodedRows, LogRow};
use uno_testkit::payload::{MODEL, REPLY_TEXT, chat_body_with_context};
use uno_testkit::pg_cpu::postgres_ns;
use uno_testkit::{Backend, TestDatabase};

/// The load harness's exchange (`uno_testkit::payload`) with
/// `context_bytes` more of pasted context, as the proxy records it: the
/// request body, and the mock's answer with usage.
fn record(context_bytes: usize) -> InteractionRecord {
    let response = serde_json::json!({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY_TEXT},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 210, "completion_tokens": 64, "total_tokens": 274},
    });
    InteractionRecord {
        request_body: chat_body_with_context(false, context_bytes),
        response: ResponseBody::Complete(Bytes::from(response.to_string())),
        ..uno_testkit::records::ask("bench", "user-1", "", REPLY_TEXT)
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
    let context_bytes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(records, batch.max(1), context_bytes));
}

async fn run(records: usize, batch: usize, context_bytes: usize) {
    let mut inputs: Vec<InteractionRecord> = (0..records).map(|_| record(context_bytes)).collect();
    let request_bytes = inputs.first().map_or(0, |r| r.request_body.len());

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
        // As the log sink queues them for Postgres: built and encoded.
        EncodedRows::build(input).push_into(&mut rows);
    }
    let (build_cpu, build_wall) = (thread_cpu() - cpu, wall.elapsed());
    assert_eq!(rows.len(), records, "one row per record");

    let db = TestDatabase::new(Backend::Postgres).await;
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    if let Ok(method) = std::env::var("UNO_LOG_ROWS_COMPRESSION") {
        // The baseline for migration 0007: the content compressed as
        // Postgres does by default (partitions made later inherit it).
        sqlx::query(&format!(
            "ALTER TABLE interactions ALTER COLUMN request SET COMPRESSION {method}, \
             ALTER COLUMN response_text SET COMPRESSION {method}"
        ))
        .execute(&pool)
        .await
        .expect("UNO_LOG_ROWS_COMPRESSION names a method this Postgres has (pglz, lz4)");
    }
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
    // How Postgres stored the requests: NULL where it did not compress.
    let stored: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT pg_column_compression(request), count(*) FROM interactions GROUP BY 1 ORDER BY 2 DESC",
    )
    .fetch_all(&pool)
    .await
    .expect("read how requests were stored");
    pool.close().await;
    let stored = stored
        .iter()
        .map(|(method, n)| format!("{n} {}", method.as_deref().unwrap_or("uncompressed")))
        .collect::<Vec<_>>()
        .join(", ");

    println!(
        "log rows: {records} records of a {request_bytes}-byte request, batches of {batch}, Postgres {}",
        db.url
    );
    println!("  requests stored: {stored}");
    println!(
        "  digest       {:7.2} us CPU/record  ({:7.2} us wall; on arrival)",
        per(digest_cpu, records),
        per(digest_wall, records)
    );
    println!(
        "  build rows   {:7.2} us CPU/record  ({:7.2} us wall; when it ends, encoded)",
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
