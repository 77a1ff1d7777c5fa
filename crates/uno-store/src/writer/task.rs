//! The writer task and the sink the request path talks to.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use uno_core::feedback::ExplicitFeedback;
use uno_core::interaction::{InteractionRecord, InteractionSink};

use super::inbox::Inbox;
use super::journal::{Journal, JournalError};
use crate::error::StoreError;
use crate::rows::{EncodedRows, InteractionRows, LogRow, row_for_feedback};
use crate::store::Store;

/// How the writer batches and spills.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Records the in-memory queue holds before submits are refused.
    pub queue_capacity: usize,
    /// Most rows in one insert.
    pub batch_size: usize,
    /// Longest a record waits in a partial batch.
    pub flush_interval: Duration,
    /// Where the spill journal lives.
    pub journal_dir: PathBuf,
    /// The journal's size cap in bytes.
    pub journal_max_bytes: u64,
    /// How often to check whether the database is back while journaling.
    pub retry_interval: Duration,
}

/// Counters, readable at any time (the metrics endpoint reads them).
#[derive(Debug, Default)]
pub struct WriterStats {
    submitted: AtomicU64,
    dequeued: AtomicU64,
    /// Rows written to the database (directly or by replay).
    pub rows_written: AtomicU64,
    /// Rows appended to the journal.
    pub rows_spilled: AtomicU64,
    /// Rows replayed from the journal into the database.
    pub rows_replayed: AtomicU64,
    /// Records lost: queue full, or journal full or failing. Each is logged.
    pub rows_dropped: AtomicU64,
    /// Rows the database refused outright, set aside in `rejected.jsonl`.
    pub rows_rejected: AtomicU64,
    /// Bytes in the journal now.
    pub journal_bytes: AtomicU64,
    /// Prompt tokens the upstream reported, over every logged interaction.
    pub prompt_tokens: AtomicU64,
    /// Completion tokens the upstream reported.
    pub completion_tokens: AtomicU64,
    /// Follow-up turns found in requests, each recorded as implicit
    /// feedback when it continues a logged answer.
    pub follow_ups: AtomicU64,
}

impl WriterStats {
    /// Records waiting in the queue.
    pub fn queue_depth(&self) -> u64 {
        self.submitted
            .load(Ordering::Relaxed)
            .saturating_sub(self.dequeued.load(Ordering::Relaxed))
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

enum Entry {
    /// Built by the sink as the record is handed over (see [`crate::rows`]).
    Interaction(InteractionRows),
    /// Built and encoded for Postgres's COPY as the record is handed over.
    Encoded(EncodedRows),
    /// Boxed: feedback is rare, and every slot of the queue is sized for
    /// the largest entry.
    Feedback(Box<ExplicitFeedback>),
}

/// The request path's handle: submitting never waits.
#[derive(Clone)]
pub struct LogSink {
    senders: Arc<Senders>,
    stats: Arc<WriterStats>,
    /// Whether the store is Postgres: interactions are then queued already
    /// encoded for COPY (see [`crate::pg_copy::EncodedInteraction`]).
    encode: bool,
}

/// The inbox, shared by every clone of a sink: when the last clone is
/// dropped, the writer is told that nothing more will arrive, and finishes.
struct Senders(Arc<Inbox<Entry>>);

impl Drop for Senders {
    fn drop(&mut self) {
        self.0.disconnect();
    }
}

/// The record was not queued (and was counted as dropped).
#[derive(Debug, thiserror::Error)]
#[error("the log queue is full; the record was dropped")]
pub struct QueueFull;

impl LogSink {
    fn push(&self, entry: Entry) -> Result<(), QueueFull> {
        self.stats.submitted.fetch_add(1, Ordering::Relaxed);
        match self.senders.0.push(entry) {
            Ok(_) => Ok(()),
            Err(_) => {
                self.stats.dequeued.fetch_add(1, Ordering::Relaxed);
                self.stats.rows_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "log queue full or closed: a record was dropped (raise log_writer.queue_capacity, or check the database)"
                );
                Err(QueueFull)
            }
        }
    }

    /// Queues explicit feedback for writing.
    pub fn submit_feedback(&self, feedback: ExplicitFeedback) -> Result<(), QueueFull> {
        self.push(Entry::Feedback(Box::new(feedback)))
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }
}

impl InteractionSink for LogSink {
    fn submit(&self, record: InteractionRecord) {
        let entry = if self.encode {
            Entry::Encoded(EncodedRows::build(record))
        } else {
            Entry::Interaction(InteractionRows::build(record))
        };
        let _ = self.push(entry);
    }
}

/// A running writer.
pub struct LogWriter {
    sink: LogSink,
    shutdown: Arc<Notify>,
    handle: tokio::task::JoinHandle<()>,
}

impl LogWriter {
    /// Opens the journal and starts the writer task. A journal left by an
    /// earlier run is replayed as soon as the database answers.
    pub fn start(store: Store, config: WriterConfig) -> Result<LogWriter, JournalError> {
        let journal = Journal::open(&config.journal_dir, config.journal_max_bytes)?;
        let stats = Arc::new(WriterStats::default());
        stats
            .journal_bytes
            .store(journal.used_bytes(), Ordering::Relaxed);
        if !journal.is_empty() {
            tracing::info!(
                bytes = journal.used_bytes(),
                dir = %config.journal_dir.display(),
                "found a non-empty log journal; it will be replayed"
            );
        }
        let capacity = config.queue_capacity.max(1);
        // The writer is woken when a batch's worth is queued, or half the
        // queue when that is smaller: a queue shorter than a batch would
        // otherwise fill, and drop records, before the writer empties it.
        let wake_every = config.batch_size.min(config.queue_capacity / 2);
        let inbox = Arc::new(Inbox::new(capacity, config.batch_size * 2, wake_every));
        let encode = matches!(store, Store::Postgres(_));
        let shutdown = Arc::new(Notify::new());
        let task = WriterTask {
            journaling: !journal.is_empty(),
            journal: Arc::new(Mutex::new(journal)),
            next_probe: Instant::now(),
            store,
            stats: stats.clone(),
            config,
        };
        let handle = tokio::spawn(task.run(inbox.clone(), shutdown.clone()));
        Ok(LogWriter {
            sink: LogSink {
                senders: Arc::new(Senders(inbox)),
                stats,
                encode,
            },
            shutdown,
            handle,
        })
    }

    /// The handle to give the request path.
    pub fn sink(&self) -> LogSink {
        self.sink.clone()
    }

    /// The writer's counters.
    pub fn stats(&self) -> Arc<WriterStats> {
        self.sink.stats.clone()
    }

    /// Writes (or journals) everything queued, then stops.
    pub async fn shutdown(self) {
        self.shutdown.notify_one();
        if let Err(err) = self.handle.await {
            tracing::error!(%err, "the log writer task failed");
        }
    }
}

struct WriterTask {
    store: Store,
    journal: Arc<Mutex<Journal>>,
    stats: Arc<WriterStats>,
    config: WriterConfig,
    /// True while the journal holds rows: new rows join the journal (after
    /// them) until replay has emptied it, so order is kept.
    journaling: bool,
    next_probe: Instant,
}

impl WriterTask {
    async fn run(mut self, inbox: Arc<Inbox<Entry>>, shutdown: Arc<Notify>) {
        let mut rows: Vec<LogRow> = Vec::with_capacity(self.config.batch_size * 2);
        // What the last take moved out of the inbox; its buffer goes back.
        let mut taken: Vec<Entry> = Vec::with_capacity(self.config.batch_size * 2);
        // When the oldest row of the partial batch was queued.
        let mut batch_started = Instant::now();
        loop {
            // Idle: wait for the first entry of a batch, a probe, or shutdown.
            if rows.is_empty() {
                if inbox.is_empty() {
                    if inbox.is_disconnected() {
                        break;
                    }
                    tokio::select! {
                        biased;
                        () = shutdown.notified() => break,
                        () = inbox.arrived() => {},
                        () = tokio::time::sleep_until(self.next_probe), if self.journaling => {
                            self.replay().await;
                            continue;
                        }
                    }
                    if inbox.is_empty() {
                        continue; // an old ring, or the last sender gone
                    }
                }
                batch_started = Instant::now();
            }
            // Busy: let entries gather until a batch's worth is queued (the
            // inbox rings at every batch_size-th record) or
            // the oldest row has waited the flush interval, then take them
            // all at once. Meanwhile a request handing over its record
            // wakes nothing, and no timer ticks: the writer wakes once per
            // batch, not once per request or per millisecond.
            tokio::select! {
                biased;
                () = shutdown.notified() => break,
                () = inbox.batch_ready() => {}
                () = tokio::time::sleep_until(batch_started + self.config.flush_interval) => {}
            }
            inbox.take_all(&mut taken);
            if self.take_entries(&mut taken, &mut rows).await {
                batch_started = Instant::now();
            }
            if !rows.is_empty() && batch_started.elapsed() >= self.config.flush_interval {
                self.flush(&mut rows).await;
            }
            if inbox.is_disconnected() && inbox.is_empty() {
                break;
            }
        }
        // Shutdown: everything still queued goes to the database or journal.
        inbox.close();
        inbox.take_all(&mut taken);
        self.take_entries(&mut taken, &mut rows).await;
        self.flush(&mut rows).await;
        if self.journaling {
            self.replay().await;
        }
    }

    /// Turns the entries taken from the inbox into rows, writing each
    /// batch as it fills. True when a batch was written.
    async fn take_entries(&mut self, taken: &mut Vec<Entry>, rows: &mut Vec<LogRow>) -> bool {
        let mut wrote = false;
        for entry in taken.drain(..) {
            self.take(entry, rows);
            if rows.len() >= self.config.batch_size {
                self.flush(rows).await;
                wrote = true;
            }
        }
        wrote
    }

    fn take(&self, entry: Entry, rows: &mut Vec<LogRow>) {
        self.stats.dequeued.fetch_add(1, Ordering::Relaxed);
        match entry {
            Entry::Interaction(built) => {
                let start = rows.len();
                built.push_into(rows);
                self.count_rows(&rows[start..]);
            }
            Entry::Encoded(built) => {
                let start = rows.len();
                built.push_into(rows);
                self.count_rows(&rows[start..]);
            }
            Entry::Feedback(feedback) => rows.push(row_for_feedback(&feedback)),
        }
    }

    /// Token and follow-up counters, from rows just built (the writer
    /// parses the answer anyway, so the request path never does).
    fn count_rows(&self, rows: &[LogRow]) {
        for row in rows {
            match row {
                LogRow::Interaction(r) => self.count_tokens(r.prompt_tokens, r.completion_tokens),
                LogRow::Encoded(e) => self.count_tokens(e.prompt_tokens(), e.completion_tokens()),
                LogRow::FollowUp(_) => {
                    self.stats.follow_ups.fetch_add(1, Ordering::Relaxed);
                }
                LogRow::Feedback(_) | LogRow::Supersede(_) => {}
            }
        }
    }

    fn count_tokens(&self, prompt: Option<i64>, completion: Option<i64>) {
        let tokens = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        self.stats
            .prompt_tokens
            .fetch_add(tokens(prompt), Ordering::Relaxed);
        self.stats
            .completion_tokens
            .fetch_add(tokens(completion), Ordering::Relaxed);
    }

    async fn flush(&mut self, rows: &mut Vec<LogRow>) {
        if rows.is_empty() {
            return;
        }
        let mut batch = std::mem::take(rows);
        if !self.journaling && self.behind() {
            // More arrives than the database takes: defer to the journal
            // (cheap local appends) rather than let the queue fill and drop.
            tracing::warn!(
                queued = self.stats.queue_depth(),
                "the database is not keeping up; journaling log rows until the backlog clears"
            );
            self.journaling = true;
            self.next_probe = Instant::now() + self.config.retry_interval;
        }
        if self.journaling {
            self.spill(batch).await;
            return;
        }
        match self.store.write_rows(&batch).await {
            Ok(()) => {
                WriterStats::add(&self.stats.rows_written, batch.len());
                // The next batch fills the same buffer: no regrowing it,
                // a row at a time, for every batch.
                batch.clear();
                *rows = batch;
            }
            Err(err) if err.is_unavailable() => {
                tracing::warn!(%err, rows = batch.len(), "database unavailable; journaling log rows until it is back");
                self.journaling = true;
                self.next_probe = Instant::now() + self.config.retry_interval;
                self.spill(batch).await;
            }
            Err(err) => {
                tracing::warn!(%err, "a batch was refused; writing its rows one by one");
                self.write_one_by_one(batch, false).await;
            }
        }
    }

    /// Whether the queue is more than half full: the writer is falling behind.
    fn behind(&self) -> bool {
        self.stats.queue_depth() > (self.config.queue_capacity / 2) as u64
    }

    /// Writes rows singly so one bad row does not sink its batch; a row the
    /// database refuses is quarantined. Returns false if the database went
    /// away meanwhile (the rest is then journaled).
    async fn write_one_by_one(&mut self, batch: Vec<LogRow>, replaying: bool) -> bool {
        let mut rows = batch.into_iter();
        while let Some(row) = rows.next() {
            match self.store.write_rows(std::slice::from_ref(&row)).await {
                Ok(()) => {
                    self.stats.rows_written.fetch_add(1, Ordering::Relaxed);
                    if replaying {
                        self.stats.rows_replayed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(StoreError::Unavailable(err)) => {
                    tracing::warn!(%err, "database became unavailable; journaling");
                    let mut rest = vec![row];
                    rest.extend(rows);
                    self.journaling = true;
                    self.next_probe = Instant::now() + self.config.retry_interval;
                    self.spill(rest).await;
                    return false;
                }
                Err(err) => {
                    tracing::error!(%err, tenant = %row.tenant(), "the database refused a log row; it is kept in the journal's rejected.jsonl");
                    self.stats.rows_rejected.fetch_add(1, Ordering::Relaxed);
                    let reason = err.to_string();
                    let journal = self.journal.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        let journal = journal.lock().unwrap_or_else(|p| p.into_inner());
                        if let Err(err) = journal.quarantine(&row, &reason) {
                            tracing::error!(%err, "could not quarantine a refused row");
                        }
                    })
                    .await;
                }
            }
        }
        true
    }

    async fn spill(&mut self, batch: Vec<LogRow>) {
        let n = batch.len();
        let journal = self.journal.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut journal = journal.lock().unwrap_or_else(|p| p.into_inner());
            journal.append(&batch).map(|()| journal.used_bytes())
        })
        .await;
        match result {
            Ok(Ok(used)) => {
                WriterStats::add(&self.stats.rows_spilled, n);
                self.stats.journal_bytes.store(used, Ordering::Relaxed);
            }
            Ok(Err(err)) => {
                WriterStats::add(&self.stats.rows_dropped, n);
                tracing::error!(%err, rows = n, "log rows dropped: the database is unavailable and the journal cannot take them");
            }
            Err(err) => {
                WriterStats::add(&self.stats.rows_dropped, n);
                tracing::error!(%err, rows = n, "log rows dropped: the journal task failed");
            }
        }
    }

    /// Replays the journal into the database, oldest segment first. Stops at
    /// the first sign the database is still away and tries again later.
    async fn replay(&mut self) {
        self.next_probe = Instant::now() + self.config.retry_interval;
        if self.behind() {
            return; // replay only when live traffic leaves room for it
        }
        let journal = self.journal.clone();
        let segments = tokio::task::spawn_blocking(move || {
            journal.lock().unwrap_or_else(|p| p.into_inner()).segments()
        })
        .await;
        let segments = match segments {
            Ok(Ok(segments)) => segments,
            Ok(Err(err)) => {
                tracing::error!(%err, "cannot list the journal");
                return;
            }
            Err(err) => {
                tracing::error!(%err, "the journal task failed");
                return;
            }
        };
        for path in segments {
            let journal = self.journal.clone();
            let read_path = path.clone();
            let segment = tokio::task::spawn_blocking(move || {
                journal
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .read(&read_path)
            })
            .await;
            let segment = match segment {
                Ok(Ok(segment)) => segment,
                Ok(Err(err)) => {
                    tracing::error!(%err, "cannot read a journal segment");
                    return;
                }
                Err(err) => {
                    tracing::error!(%err, "the journal task failed");
                    return;
                }
            };
            if segment.skipped > 0 {
                WriterStats::add(&self.stats.rows_dropped, segment.skipped as usize);
            }
            for chunk in segment.rows.chunks(self.config.batch_size.max(1)) {
                if self.behind() {
                    // Live traffic backs up: pause; the segment is replayed
                    // again later (rows already written are skipped by id).
                    return;
                }
                match self.store.write_rows(chunk).await {
                    Ok(()) => {
                        WriterStats::add(&self.stats.rows_replayed, chunk.len());
                        WriterStats::add(&self.stats.rows_written, chunk.len());
                    }
                    Err(err) if err.is_unavailable() => {
                        tracing::debug!(%err, "database still unavailable; journal kept");
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(%err, "a journaled batch was refused; replaying its rows one by one");
                        if !self.write_one_by_one(chunk.to_vec(), true).await {
                            return;
                        }
                    }
                }
            }
            let journal = self.journal.clone();
            let removed = tokio::task::spawn_blocking(move || {
                let mut journal = journal.lock().unwrap_or_else(|p| p.into_inner());
                journal.remove(&path).map(|()| journal.used_bytes())
            })
            .await;
            match removed {
                Ok(Ok(used)) => self.stats.journal_bytes.store(used, Ordering::Relaxed),
                Ok(Err(err)) => {
                    tracing::error!(%err, "cannot remove a replayed journal segment; it will be replayed again (harmlessly)");
                    return;
                }
                Err(err) => {
                    tracing::error!(%err, "the journal task failed");
                    return;
                }
            }
        }
        let empty = self.journal.lock().map(|j| j.is_empty()).unwrap_or(false);
        if empty {
            tracing::info!("log journal replayed; writing to the database directly again");
            self.journaling = false;
        }
    }
}
