//! The log writer against real databases: nothing lost, nothing written
//! twice, whether the database stays up, goes away mid-run, or is away when
//! uno restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use uno_core::InteractionId;
use uno_core::feedback::{ExplicitFeedback, Rating, explicit_feedback_id};
use uno_core::interaction::{InteractionRecord, InteractionSink, Outcome, ResponseBody};
use uno_store::Store;
use uno_store::writer::{Journal, LogWriter, WriterConfig};
use uno_testkit::{Backend, TcpRelay, TestDatabase};

fn record(i: usize) -> InteractionRecord {
    InteractionRecord {
        id: InteractionId::new(),
        tenant: Arc::from("t"),
        started_at: SystemTime::now(),
        end_user: Some(format!("user-{}", i % 7)),
        request_digest: None,
        request_body: Bytes::from(format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"question {i}"}}]}}"#
        )),
        stream: i.is_multiple_of(2),
        status: 200,
        outcome: Outcome::Completed,
        response: ResponseBody::Complete(Bytes::from_static(
            br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"answer"},"finish_reason":"stop"}]}"#,
        )),
        upstream_latency: Some(Duration::from_millis(3)),
        total_latency: Duration::from_millis(4),
        time_to_first_byte: None,
        error: None,
        experience: Default::default(),
        replaces_earlier: false,
    }
}

/// Small batches and a generous durability window: a loaded test machine
/// must not push batches to the journal where a test expects them written
/// directly. The window itself is tested with a short one.
fn config(dir: &std::path::Path) -> WriterConfig {
    WriterConfig {
        batch_size: 128,
        flush_interval: Duration::from_millis(20),
        durability_window: Duration::from_secs(5),
        journal_max_bytes: 256 * 1024 * 1024,
        retry_interval: Duration::from_millis(100),
        ..WriterConfig::in_dir(dir.join("journal"))
    }
}

async fn store_for(url: &str) -> Store {
    let store = Store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// Polls until the writer reports an empty journal (fails after 10 s).
async fn journal_empties(stats: &uno_store::writer::WriterStats) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.journal_bytes.load(Ordering::Relaxed) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "journal never emptied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the store holds `n` interactions (fails after 20 s).
async fn wait_for_count(store: &Store, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let count = store.count_interactions(None).await.unwrap();
        if count == n {
            return;
        }
        assert!(count < n, "more rows than records: {count} > {n}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {count} of {n} rows arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn writes_everything(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let scratch = tempfile::tempdir().unwrap();
    let store = store_for(&db.url).await;
    let writer = LogWriter::start(store.clone(), config(scratch.path())).unwrap();
    let sink = writer.sink();
    let records: Vec<_> = (0..1000).map(record).collect();
    for r in &records {
        sink.submit(r.clone());
    }
    sink.submit_feedback(ExplicitFeedback {
        id: explicit_feedback_id("t", records[0].id, "u"),
        tenant: "t".into(),
        interaction_id: records[0].id,
        end_user: "u".into(),
        rating: Some(Rating::Up),
        comment: None,
        expected_output: None,
        at: SystemTime::now(),
    })
    .unwrap();
    let stats = writer.stats();
    writer.shutdown().await;
    assert_eq!(store.count_interactions(None).await.unwrap(), 1000);
    assert_eq!(
        store
            .feedback_for("t", records[0].id.0)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(stats.rows_dropped.load(Ordering::Relaxed), 0);
    assert_eq!(stats.rows_spilled.load(Ordering::Relaxed), 0);
    assert_eq!(stats.queue_depth(), 0);
}

#[tokio::test]
async fn writes_everything_postgres() {
    writes_everything(Backend::Postgres).await;
}

#[tokio::test]
async fn writes_everything_sqlite() {
    writes_everything(Backend::Sqlite).await;
}

/// The writer wakes when a batch's worth is queued, not on a timer: with a
/// flush interval far longer than the test, full batches still arrive at
/// once, a partial one waits for the interval (or shutdown), and nothing is
/// lost either way.
#[tokio::test]
async fn full_batches_are_written_at_once_and_a_partial_one_waits() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let scratch = tempfile::tempdir().unwrap();
    let store = store_for(&db.url).await;
    let config = WriterConfig {
        batch_size: 64,
        flush_interval: Duration::from_secs(3600),
        durability_window: Duration::from_secs(7200),
        ..config(scratch.path())
    };
    let writer = LogWriter::start(store.clone(), config).unwrap();
    let sink = writer.sink();
    for i in 0..3 * 64 {
        sink.submit(record(i));
    }
    wait_for_count(&store, 3 * 64).await;
    for i in 0..5 {
        sink.submit(record(i));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.count_interactions(None).await.unwrap(),
        3 * 64,
        "a partial batch waits for the flush interval"
    );
    writer.shutdown().await;
    assert_eq!(store.count_interactions(None).await.unwrap(), 3 * 64 + 5);
}

/// A queue shorter than a batch: the writer is woken at half the queue,
/// not only when a batch's worth is queued (which would never fit), so a
/// steady trickle of records fills no queue and loses nothing.
#[tokio::test]
async fn a_queue_shorter_than_a_batch_loses_nothing() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let scratch = tempfile::tempdir().unwrap();
    let store = store_for(&db.url).await;
    let config = WriterConfig {
        queue_capacity: 16,
        batch_size: 64,
        flush_interval: Duration::from_secs(3600),
        durability_window: Duration::from_secs(7200),
        ..config(scratch.path())
    };
    let writer = LogWriter::start(store.clone(), config).unwrap();
    let stats = writer.stats();
    let sink = writer.sink();
    for i in 0..48 {
        sink.submit(record(i));
        // Requests arrive apart; the writer gets its turn between them.
        tokio::task::yield_now().await;
    }
    writer.shutdown().await;
    assert_eq!(stats.rows_dropped.load(Ordering::Relaxed), 0, "{stats:?}");
    assert_eq!(store.count_interactions(None).await.unwrap(), 48);
}

#[tokio::test]
async fn a_cut_connection_spills_to_the_journal_and_replays_without_loss_or_duplicates() {
    let db = TestDatabase::postgres().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await;
    let scratch = tempfile::tempdir().unwrap();
    let direct = store_for(&db.url).await;
    let via_relay = store_for(&db.url_via(relay.addr())).await;
    let writer = LogWriter::start(via_relay, config(scratch.path())).unwrap();
    let sink = writer.sink();
    let stats = writer.stats();

    for i in 0..300 {
        sink.submit(record(i));
    }
    wait_for_count(&direct, 300).await;

    relay.cut();
    for i in 300..800 {
        sink.submit(record(i));
        if i.is_multiple_of(100) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The rows cannot reach the database: they must be in the journal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.rows_spilled.load(Ordering::Relaxed) < 500 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows were not journaled: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stats.journal_bytes.load(Ordering::Relaxed) > 0);
    assert_eq!(direct.count_interactions(None).await.unwrap(), 300);

    relay.restore();
    wait_for_count(&direct, 800).await;
    // Settled: still exactly 800 once the journal is gone.
    journal_empties(&stats).await;
    writer.shutdown().await;
    assert_eq!(direct.count_interactions(None).await.unwrap(), 800);
    assert_eq!(stats.rows_dropped.load(Ordering::Relaxed), 0);
    assert!(stats.rows_replayed.load(Ordering::Relaxed) >= 500);
}

#[tokio::test]
async fn a_restart_replays_a_non_empty_journal() {
    let db = TestDatabase::postgres().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await;
    let scratch = tempfile::tempdir().unwrap();
    let via_relay = store_for(&db.url_via(relay.addr())).await;
    relay.cut();
    let first = LogWriter::start(via_relay, config(scratch.path())).unwrap();
    let sink = first.sink();
    for i in 0..250 {
        sink.submit(record(i));
    }
    first.shutdown().await; // the database is away: all 250 go to the journal
    let journal = Journal::open(scratch.path().join("journal"), u64::MAX).unwrap();
    assert!(
        !journal.is_empty(),
        "shutdown must journal what it could not write"
    );

    let direct = store_for(&db.url).await;
    assert_eq!(direct.count_interactions(None).await.unwrap(), 0);
    let second = LogWriter::start(direct.clone(), config(scratch.path())).unwrap();
    wait_for_count(&direct, 250).await;
    second.shutdown().await;
    assert_eq!(direct.count_interactions(None).await.unwrap(), 250);
    assert!(
        Journal::open(scratch.path().join("journal"), u64::MAX)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn rows_the_database_refuses_are_quarantined_not_retried_forever() {
    let db = TestDatabase::sqlite();
    let scratch = tempfile::tempdir().unwrap();
    let store = store_for(&db.url).await;
    // A journal left behind with one good row and one the schema refuses
    // (a rating outside -1/+1, as a hand-edited or corrupted file could hold).
    let good = uno_store::rows::rows_for_interaction(&record(1));
    let mut bad = uno_store::rows::row_for_feedback(&ExplicitFeedback {
        id: uuid::Uuid::now_v7(),
        tenant: "t".into(),
        interaction_id: InteractionId::new(),
        end_user: String::new(),
        rating: Some(Rating::Up),
        comment: None,
        expected_output: None,
        at: SystemTime::now(),
    });
    if let uno_store::rows::LogRow::Feedback(f) = &mut bad {
        f.rating = Some(7);
    }
    let mut journal = Journal::open(scratch.path().join("journal"), u64::MAX).unwrap();
    journal.append(&[good[0].clone(), bad]).unwrap();
    drop(journal);

    let writer = LogWriter::start(store.clone(), config(scratch.path())).unwrap();
    let stats = writer.stats();
    wait_for_count(&store, 1).await;
    writer.shutdown().await;
    assert_eq!(stats.rows_rejected.load(Ordering::Relaxed), 1);
    let rejected = std::fs::read_to_string(scratch.path().join("journal/rejected.jsonl")).unwrap();
    assert!(rejected.contains("\"rating\":7"), "{rejected}");
    assert!(
        Journal::open(scratch.path().join("journal"), u64::MAX)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_full_journal_drops_and_counts() {
    let db = TestDatabase::postgres().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await;
    let scratch = tempfile::tempdir().unwrap();
    let via_relay = store_for(&db.url_via(relay.addr())).await;
    relay.cut();
    let mut cfg = config(scratch.path());
    cfg.journal_max_bytes = 4096;
    let writer = LogWriter::start(via_relay, cfg).unwrap();
    let sink = writer.sink();
    let stats = writer.stats();
    for i in 0..200 {
        sink.submit(record(i));
    }
    writer.shutdown().await;
    let spilled = stats.rows_spilled.load(Ordering::Relaxed);
    let dropped = stats.rows_dropped.load(Ordering::Relaxed);
    assert!(dropped > 0, "nothing dropped with a 4 KiB journal");
    assert_eq!(
        spilled + dropped,
        200,
        "every record is either journaled or counted as dropped"
    );
}

#[tokio::test]
async fn a_backlog_is_journaled_not_dropped() {
    // On this single-threaded runtime the writer cannot run until the test
    // yields, so 80 records sit in a queue of 100: the writer finds itself
    // behind (more than half full) and must defer to the journal, then
    // replay once the backlog is gone, ending with every row, once.
    let db = TestDatabase::postgres().await;
    let scratch = tempfile::tempdir().unwrap();
    let store = store_for(&db.url).await;
    let mut cfg = config(scratch.path());
    cfg.queue_capacity = 100;
    cfg.batch_size = 8;
    let writer = LogWriter::start(store.clone(), cfg).unwrap();
    let sink = writer.sink();
    let stats = writer.stats();
    for i in 0..80 {
        sink.submit(record(i));
    }
    assert_eq!(stats.queue_depth(), 80);
    wait_for_count(&store, 80).await;
    writer.shutdown().await;
    assert_eq!(store.count_interactions(None).await.unwrap(), 80);
    assert_eq!(stats.rows_dropped.load(Ordering::Relaxed), 0, "{stats:?}");
    assert!(
        stats.rows_spilled.load(Ordering::Relaxed) > 0,
        "the backlog never went to the journal"
    );
    assert!(stats.rows_replayed.load(Ordering::Relaxed) > 0);
}

/// A writer whose every sink is dropped without `shutdown` (a server
/// that stops some other way) still writes what was queued, at once
/// rather than after the flush interval, and then ends: the task lets go
/// of its counters only when it has finished.
#[tokio::test]
async fn the_writer_finishes_when_the_last_sink_is_dropped() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let scratch = tempfile::tempdir().unwrap();
    let store = store_for(&db.url).await;
    let config = WriterConfig {
        flush_interval: Duration::from_secs(3600),
        durability_window: Duration::from_secs(7200),
        ..config(scratch.path())
    };
    let writer = LogWriter::start(store.clone(), config).unwrap();
    let stats = writer.stats();
    let sink = writer.sink();
    for i in 0..10 {
        sink.submit(record(i));
    }
    // Let the writer pick up the first record and wait for its batch.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(writer);
    drop(sink);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while Arc::strong_count(&stats) > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer is still running with no sink left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.count_interactions(None).await.unwrap(), 10);
    assert_eq!(stats.rows_written.load(Ordering::Relaxed), 10);
    assert_eq!(stats.queue_depth(), 0);
}

/// A database that stops answering without closing anything (a `SIGSTOP`
/// or a wedged server): every accepted record is in the journal within the
/// durability window, not held in memory for the pool's timeouts; once it
/// answers again the journal is replayed, each row once.
#[tokio::test]
async fn a_hung_database_gets_nothing_held_in_memory_past_the_durability_window() {
    let db = TestDatabase::postgres().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await;
    let scratch = tempfile::tempdir().unwrap();
    let direct = store_for(&db.url).await;
    let via_relay = store_for(&db.url_via(relay.addr())).await;
    let window = Duration::from_millis(200);
    let writer = LogWriter::start(
        via_relay,
        WriterConfig {
            durability_window: window,
            flush_interval: Duration::from_millis(50),
            ..config(scratch.path())
        },
    )
    .unwrap();
    let sink = writer.sink();
    let stats = writer.stats();
    for i in 0..100 {
        sink.submit(record(i));
    }
    wait_for_count(&direct, 100).await;

    relay.hang();
    let hung_at = tokio::time::Instant::now();
    for i in 100..400 {
        sink.submit(record(i));
    }
    // Every record is out of memory (written or journaled) within the
    // window; allow a loaded machine its scheduling slack on top.
    while stats.rows_spilled.load(Ordering::Relaxed) + stats.rows_written.load(Ordering::Relaxed)
        < 400
    {
        assert!(
            hung_at.elapsed() < window + Duration::from_secs(2),
            "records held in memory past the window: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(stats.queue_depth(), 0);
    assert!(
        stats.writes_timed_out.load(Ordering::Relaxed) >= 1,
        "{stats:?}"
    );
    // More traffic while it stays hung goes straight to the journal.
    for i in 400..500 {
        sink.submit(record(i));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        stats.rows_spilled.load(Ordering::Relaxed) + stats.rows_written.load(Ordering::Relaxed),
        500,
        "{stats:?}"
    );

    relay.restore();
    wait_for_count(&direct, 500).await;
    writer.shutdown().await;
    assert_eq!(direct.count_interactions(None).await.unwrap(), 500);
    assert_eq!(stats.rows_dropped.load(Ordering::Relaxed), 0, "{stats:?}");
}

/// A long outage fills many bounded segments; replay reads them a chunk
/// at a time and removes each once its rows are in, ending with every row
/// once and an empty journal.
#[tokio::test]
async fn a_long_outage_is_journaled_in_bounded_segments_and_replayed_in_chunks() {
    let db = TestDatabase::postgres().await;
    let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await;
    let scratch = tempfile::tempdir().unwrap();
    let direct = store_for(&db.url).await;
    let via_relay = store_for(&db.url_via(relay.addr())).await;
    relay.cut();
    let writer = LogWriter::start(
        via_relay,
        WriterConfig {
            journal_segment_bytes: 16 * 1024,
            batch_size: 16,
            ..config(scratch.path())
        },
    )
    .unwrap();
    let sink = writer.sink();
    let stats = writer.stats();
    for i in 0..600 {
        sink.submit(record(i));
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.rows_spilled.load(Ordering::Relaxed) < 600 {
        assert!(tokio::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let journal_dir = scratch.path().join("journal");
    let segments: Vec<_> = std::fs::read_dir(&journal_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("segment-"))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert!(segments.len() >= 4, "segments: {segments:?}");
    assert!(
        segments.iter().all(|&len| len < 16 * 1024 + 16 * 1024),
        "a segment grew past its bound by more than one append: {segments:?}"
    );

    relay.restore();
    wait_for_count(&direct, 600).await;
    journal_empties(&stats).await;
    writer.shutdown().await;
    assert_eq!(direct.count_interactions(None).await.unwrap(), 600);
    assert_eq!(stats.rows_replayed.load(Ordering::Relaxed), 600);
    assert_eq!(stats.rows_dropped.load(Ordering::Relaxed), 0);
}

/// Large records fill the queue's byte bound long before its count: the
/// queue refuses past it (and counts), instead of holding gigabytes.
#[tokio::test]
async fn the_queue_is_bounded_in_bytes() {
    let db = TestDatabase::sqlite();
    let scratch = tempfile::tempdir().unwrap();
    let store = store_for(&db.url).await;
    let writer = LogWriter::start(
        store.clone(),
        WriterConfig {
            queue_max_bytes: 1 << 20,
            ..config(scratch.path())
        },
    )
    .unwrap();
    let sink = writer.sink();
    let stats = writer.stats();
    let big = "x".repeat(60_000);
    // On this single-threaded runtime the writer cannot run until the test
    // yields: 40 records of 60 kB meet a 1 MiB queue.
    for i in 0..40 {
        let mut r = record(i);
        r.request_body = Bytes::from(format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"{big}"}}]}}"#
        ));
        sink.submit(r);
    }
    let dropped = stats.rows_dropped.load(Ordering::Relaxed);
    assert!(
        (20..=24).contains(&dropped),
        "about 17 of 60 kB fit in 1 MiB; dropped {dropped}"
    );
    writer.shutdown().await;
    assert_eq!(
        store.count_interactions(None).await.unwrap(),
        40 - dropped,
        "everything queued is written"
    );
}
