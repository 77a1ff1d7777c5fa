//! The writer task and the sink the request path talks to.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Bytes the in-memory queue holds before submits are refused.
    pub queue_max_bytes: usize,
    /// Most rows in one insert.
    pub batch_size: usize,
    /// Most bytes of rows in one insert or journal append.
    pub batch_max_bytes: usize,
    /// Longest a record waits in a partial batch.
    pub flush_interval: Duration,
    /// Longest an accepted record is held only in memory: a batch not in
    /// the database by then (counted from its oldest record's arrival) is
    /// appended to the journal instead, so a crash loses at most this
    /// window of traffic.
    pub durability_window: Duration,
    /// Where the spill journal lives.
    pub journal_dir: PathBuf,
    /// The journal's size cap in bytes.
    pub journal_max_bytes: u64,
    /// Bytes past which a journal segment is closed and a new one begun.
    pub journal_segment_bytes: u64,
    /// How often to check whether the database is back while journaling.
    pub retry_interval: Duration,
    /// Set while the database is not ready for rows (unreachable at start,
    /// or its migrations not yet applied): rows go to the journal and
    /// replay waits, rather than meet a schema that is not there.
    pub database_down: Arc<AtomicBool>,
}

impl WriterConfig {
    /// The writer's defaults with its journal in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> WriterConfig {
        WriterConfig {
            queue_capacity: 100_000,
            queue_max_bytes: 16 << 20,
            batch_size: 2048,
            batch_max_bytes: 2 << 20,
            flush_interval: Duration::from_millis(25),
            durability_window: Duration::from_millis(100),
            journal_dir: dir.into(),
            journal_max_bytes: 1 << 30,
            journal_segment_bytes: super::journal::DEFAULT_SEGMENT_BYTES,
            retry_interval: Duration::from_secs(1),
            database_down: Arc::default(),
        }
    }

    /// How long a partial batch gathers: the flush interval, but never
    /// more than a quarter of the durability window. The window is split
    /// so the promise holds on a busy host: a quarter to gather, a quarter
    /// for the write (or a replay slice), and half left for the journal's
    /// sync and the scheduling delays of a loaded machine.
    fn gather(&self) -> Duration {
        self.flush_interval.min(self.durability_window / 4)
    }

    /// When a batch whose oldest record arrived at `oldest` must be out of
    /// memory: half the window after it (see [`WriterConfig::gather`]).
    fn write_deadline(&self, oldest: Instant) -> Instant {
        oldest + self.durability_window / 2
    }
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
    /// Batch writes that missed the durability deadline: abandoned, their
    /// rows journaled instead.
    pub writes_timed_out: AtomicU64,
    /// Bytes in the journal now.
    pub journal_bytes: AtomicU64,
    /// Prompt tokens the upstream reported, over every logged interaction.
    pub prompt_tokens: AtomicU64,
    /// Completion tokens the upstream reported.
    pub completion_tokens: AtomicU64,
    /// Follow-up turns found in requests, each recorded as implicit
    /// feedback when it continues a logged answer.
    pub follow_ups: AtomicU64,
    /// When records were last reported dropped: a flood of drops (a full
    /// queue under load) logs a line a second, not a line a record, which
    /// would itself stall a process whose log pipe is slow.
    drop_logged: EverySecond,
}

/// A gate that opens at most once a second (for log lines that could
/// otherwise repeat per request).
#[derive(Debug, Default)]
struct EverySecond(AtomicU64);

impl EverySecond {
    fn due(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.0.load(Ordering::Relaxed);
        now > last
            && self
                .0
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
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

impl Entry {
    /// About how many bytes the entry holds, for the queue's byte bound.
    fn approx_bytes(&self) -> usize {
        match self {
            Entry::Interaction(rows) => rows.approx_bytes(),
            Entry::Encoded(rows) => rows.approx_bytes(),
            Entry::Feedback(f) => {
                512 + f.comment.as_ref().map_or(0, String::len)
                    + f.expected_output.as_ref().map_or(0, String::len)
            }
        }
    }
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
        let bytes = entry.approx_bytes();
        match self.senders.0.push(entry, bytes) {
            Ok(_) => Ok(()),
            Err(_) => {
                self.stats.dequeued.fetch_add(1, Ordering::Relaxed);
                let dropped = self.stats.rows_dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if self.stats.drop_logged.due() {
                    tracing::error!(
                        dropped_so_far = dropped,
                        "log queue full or closed: records are being dropped (raise log_writer.queue_capacity or log_writer.queue_max_bytes, or check the journal's disk); logged at most once a second"
                    );
                }
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
        let journal = Journal::open(&config.journal_dir, config.journal_max_bytes)?
            .with_segment_bytes(config.journal_segment_bytes);
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
        let inbox = Arc::new(Inbox::new(
            capacity,
            config.queue_max_bytes.max(1),
            config.batch_size * 2,
            wake_every,
        ));
        let encode = matches!(store, Store::Postgres(_));
        let shutdown = Arc::new(Notify::new());
        let task = WriterTask {
            journaling: !journal.is_empty() || config.database_down.load(Ordering::Relaxed),
            journal: Arc::new(Mutex::new(journal)),
            next_probe: Instant::now(),
            replay_at: None,
            store,
            stats: stats.clone(),
            inbox: inbox.clone(),
            config,
        };
        let handle = tokio::spawn(task.run(shutdown.clone()));
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

/// The rows taken from the queue and not yet written or journaled.
struct Pending {
    rows: Vec<LogRow>,
    bytes: usize,
    /// When the oldest of them arrived in the queue: the durability
    /// deadline counts from here.
    oldest: Option<Instant>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn arrived(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.oldest = Some(self.oldest.map_or(at, |o| o.min(at)));
        }
    }
}

/// Where replay stands in the journal: a segment and the byte offset of the
/// first row not yet in the database.
#[derive(Debug, Clone)]
struct ReplayCursor {
    path: PathBuf,
    offset: u64,
}

/// How long a write may take before the database counts as away: rows
/// are already journaled by then, so this only frees the writer from a
/// database that never answers.
const WRITE_GIVE_UP: Duration = Duration::from_secs(10);

/// How long a stopping writer goes on replaying the journal.
const SHUTDOWN_REPLAY: Duration = Duration::from_secs(10);

/// Why a write did not land.
enum WriteFailure {
    /// The database answers, but not within the durability window: the
    /// rows are journaled and replay starts at once (a slow database is
    /// not an absent one; waiting a retry interval would only delay the
    /// rows other replicas look for).
    Late,
    /// The database is away, or did not answer before the deadline: the
    /// rows belong in the journal.
    Away(String),
    /// The database refused the batch (a bad row): write them singly.
    Refused(StoreError),
}

impl WriteFailure {
    /// Why the rows went to the journal, for the log.
    fn reason(&self) -> String {
        match self {
            WriteFailure::Late => {
                "the database did not take a batch within the durability window".into()
            }
            WriteFailure::Away(why) => why.clone(),
            WriteFailure::Refused(err) => err.to_string(),
        }
    }
}

struct WriterTask {
    store: Store,
    journal: Arc<Mutex<Journal>>,
    stats: Arc<WriterStats>,
    inbox: Arc<Inbox<Entry>>,
    config: WriterConfig,
    /// True while the journal holds rows: new rows join the journal (after
    /// them) until replay has emptied it, so order is kept.
    journaling: bool,
    next_probe: Instant,
    /// Replay's place in the journal (`None`: begin at the oldest segment).
    replay_at: Option<ReplayCursor>,
}

impl WriterTask {
    async fn run(mut self, shutdown: Arc<Notify>) {
        let inbox = self.inbox.clone();
        let mut pending = Pending {
            rows: Vec::with_capacity(self.config.batch_size * 2),
            bytes: 0,
            oldest: None,
        };
        // What the last take moved out of the inbox; its buffer goes back.
        let mut taken: Vec<Entry> = Vec::with_capacity(self.config.batch_size * 2);
        let gather = self.config.gather();
        loop {
            // Idle: wait for the first entry of a batch, a probe, or shutdown.
            if pending.is_empty() && inbox.is_empty() {
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
            // Busy: let entries gather until a batch's worth is queued (the
            // inbox rings at every batch_size-th record) or the oldest has
            // waited the gathering time, then take them all at once.
            // Meanwhile a request handing over its record wakes nothing,
            // and no timer ticks: the writer wakes once per batch, not once
            // per request or per millisecond.
            let oldest = pending
                .oldest
                .or_else(|| inbox.oldest())
                .unwrap_or_else(Instant::now);
            tokio::select! {
                biased;
                () = shutdown.notified() => break,
                () = inbox.batch_ready() => {}
                () = tokio::time::sleep_until(oldest + gather) => {}
            }
            let arrived = inbox.take_all(&mut taken);
            self.take_entries(&mut taken, &mut pending, arrived).await;
            if pending.oldest.is_some_and(|o| o.elapsed() >= gather) {
                self.flush(&mut pending).await;
            }
            if self.journaling && Instant::now() >= self.next_probe {
                self.replay().await;
            }
            if inbox.is_disconnected() && inbox.is_empty() {
                break;
            }
        }
        // Shutdown: everything still queued goes to the database or journal.
        inbox.close();
        let arrived = inbox.take_all(&mut taken);
        self.take_entries(&mut taken, &mut pending, arrived).await;
        self.flush(&mut pending).await;
        // With the database up, the journal goes in before exit (for at
        // most SHUTDOWN_REPLAY; what is left is replayed at the next
        // start). Replay comes back after each slice with the next probe
        // due at once while it is making progress.
        let give_up = Instant::now() + SHUTDOWN_REPLAY;
        if self.journaling {
            self.next_probe = Instant::now();
        }
        while self.journaling && self.next_probe <= Instant::now() && Instant::now() < give_up {
            self.replay().await;
        }
    }

    /// Turns the entries taken from the inbox (the oldest of them queued
    /// at `arrived`) into rows, writing each batch as it fills (by rows or
    /// by bytes).
    async fn take_entries(
        &mut self,
        taken: &mut Vec<Entry>,
        pending: &mut Pending,
        arrived: Option<Instant>,
    ) {
        pending.arrived(arrived);
        for entry in taken.drain(..) {
            if pending.oldest.is_none() {
                // The batch before was just written: the rest of the take
                // still counts from when it arrived.
                pending.oldest = arrived;
            }
            pending.bytes += entry.approx_bytes();
            self.take(entry, &mut pending.rows);
            if pending.rows.len() >= self.config.batch_size
                || pending.bytes >= self.config.batch_max_bytes
            {
                self.flush(pending).await;
            }
        }
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

    /// Token and follow-up counters, from rows just built.
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

    /// Writes `rows` to the database. Rows held only in memory come with
    /// `journal_at`: if the database has not taken them by then, they are
    /// journaled and the write is abandoned (rows are keyed by id, so one
    /// that landed after all replays harmlessly). Rows already in the
    /// journal (replay) come without: their write may take up to
    /// [`WRITE_GIVE_UP`], so a slow database still makes progress, and
    /// meanwhile the records queued are taken and journaled every
    /// gathering time, so a slow replay holds none of them past their
    /// window.
    async fn write_durably(
        &mut self,
        rows: &[LogRow],
        journal_at: Option<Instant>,
    ) -> Result<(), WriteFailure> {
        let store = self.store.clone();
        let write = tokio::time::timeout(WRITE_GIVE_UP, store.write_rows(rows));
        tokio::pin!(write);
        let in_memory = journal_at.is_some();
        let mut taken: Vec<Entry> = Vec::new();
        loop {
            let drain_at = Instant::now() + self.config.gather();
            tokio::select! {
                biased;
                result = &mut write => {
                    let failure = match result {
                        Ok(Ok(())) => return Ok(()),
                        Ok(Err(err)) if err.is_unavailable() => WriteFailure::Away(err.to_string()),
                        Ok(Err(err)) => return Err(WriteFailure::Refused(err)),
                        Err(_) => WriteFailure::Away(format!(
                            "the database took more than {WRITE_GIVE_UP:?} to take a batch"
                        )),
                    };
                    if in_memory {
                        self.spill(rows.to_vec()).await;
                    }
                    return Err(failure);
                }
                () = tokio::time::sleep_until(journal_at.unwrap_or(drain_at)), if in_memory => {
                    self.stats.writes_timed_out.fetch_add(1, Ordering::Relaxed);
                    self.spill(rows.to_vec()).await;
                    return Err(WriteFailure::Late);
                }
                () = tokio::time::sleep_until(drain_at), if self.journaling => {
                    self.inbox.take_all(&mut taken);
                    if !taken.is_empty() {
                        let mut batch = Vec::with_capacity(taken.len());
                        for entry in taken.drain(..) {
                            self.take(entry, &mut batch);
                        }
                        self.spill(batch).await;
                    }
                }
            }
        }
    }

    /// Starts journaling: rows go to the journal, and the database is
    /// probed every retry interval.
    fn go_journaling(&mut self, why: &str) {
        if !self.journaling {
            tracing::warn!(
                reason = why,
                "journaling log rows until the database takes them promptly again"
            );
        }
        self.journaling = true;
        self.next_probe = Instant::now() + self.config.retry_interval;
    }

    /// Journals after `failure`: a database that answered late is replayed
    /// into at once, one that is away is probed a retry interval later.
    fn journal_after(&mut self, failure: &WriteFailure) {
        self.go_journaling(&failure.reason());
        if matches!(failure, WriteFailure::Late) {
            self.next_probe = Instant::now();
        }
    }

    /// Writes the pending rows to the database, or to the journal when
    /// the database is away, behind, or cannot take them before the
    /// durability window of their oldest record closes.
    async fn flush(&mut self, pending: &mut Pending) {
        if pending.is_empty() {
            return;
        }
        let oldest = pending.oldest.take().unwrap_or_else(Instant::now);
        pending.bytes = 0;
        let mut batch = std::mem::take(&mut pending.rows);
        if !self.journaling && self.config.database_down.load(Ordering::Relaxed) {
            self.go_journaling("the database is not ready yet");
        }
        if !self.journaling && self.behind() {
            // More arrives than the database takes: defer to the journal
            // (cheap local appends) rather than let the queue fill.
            self.go_journaling("the database is not keeping up with the traffic");
        }
        if self.journaling {
            self.spill(batch).await;
            return;
        }
        let journal_at = self.config.write_deadline(oldest);
        match self.write_durably(&batch, Some(journal_at)).await {
            Ok(()) => {
                WriterStats::add(&self.stats.rows_written, batch.len());
                // The next batch fills the same buffer: no regrowing it,
                // a row at a time, for every batch.
                batch.clear();
                pending.rows = batch;
            }
            Err(WriteFailure::Refused(err)) => {
                tracing::warn!(%err, "a batch was refused; writing its rows one by one");
                self.write_one_by_one(batch, false).await;
            }
            // The batch is in the journal already.
            Err(failure) => self.journal_after(&failure),
        }
    }

    /// Whether the queue is more than half full, by records or by bytes:
    /// the writer is falling behind.
    fn behind(&self) -> bool {
        self.stats.queue_depth() > (self.config.queue_capacity / 2) as u64
            || self.inbox.bytes() > self.config.queue_max_bytes / 2
    }

    /// Writes rows singly so one bad row does not sink its batch; a row the
    /// database refuses is quarantined. Returns false if the database went
    /// away meanwhile (the rest is then journaled).
    async fn write_one_by_one(&mut self, batch: Vec<LogRow>, replaying: bool) -> bool {
        let mut rows = batch.into_iter();
        while let Some(row) = rows.next() {
            let journal_at =
                (!replaying).then(|| Instant::now() + self.config.durability_window / 2);
            match self
                .write_durably(std::slice::from_ref(&row), journal_at)
                .await
            {
                Ok(()) => {
                    self.stats.rows_written.fetch_add(1, Ordering::Relaxed);
                    if replaying {
                        self.stats.rows_replayed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(failure @ (WriteFailure::Away(_) | WriteFailure::Late)) => {
                    self.journal_after(&failure);
                    if !replaying {
                        // This row is journaled; replayed rows are still
                        // in their segment.
                        self.spill(rows.collect()).await;
                    }
                    return false;
                }
                Err(WriteFailure::Refused(err)) => {
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

    async fn spill(&self, batch: Vec<LogRow>) {
        let n = batch.len();
        if n == 0 {
            return;
        }
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
                if self.stats.drop_logged.due() {
                    tracing::error!(%err, rows = n, "log rows dropped: the database is unavailable and the journal cannot take them; logged at most once a second");
                }
            }
            Err(err) => {
                WriterStats::add(&self.stats.rows_dropped, n);
                tracing::error!(%err, rows = n, "log rows dropped: the journal task failed");
            }
        }
    }

    /// Runs a journal operation off the async threads.
    async fn with_journal<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Option<T> {
        let journal = self.journal.clone();
        let result = tokio::task::spawn_blocking(move || {
            op(&mut journal.lock().unwrap_or_else(|p| p.into_inner()))
        })
        .await;
        match result {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                tracing::error!(%err, "the log journal failed");
                None
            }
            Err(err) => {
                tracing::error!(%err, "the journal task failed");
                None
            }
        }
    }

    /// Replays the journal into the database, oldest segment first, a
    /// chunk at a time, for at most half the gathering time: then it
    /// returns so that queued records are taken (and journaled after the
    /// rows being replayed) before they outlive their durability window,
    /// and the loop calls it again at once. Stops at the first sign the
    /// database is still away or slow, and tries again a retry interval
    /// later. Memory holds one chunk, whatever the journal's size.
    async fn replay(&mut self) {
        self.next_probe = Instant::now() + self.config.retry_interval;
        if self.behind() || self.config.database_down.load(Ordering::Relaxed) {
            return; // replay only when live traffic leaves room for it
        }
        let slice_end = Instant::now() + self.config.gather() / 2;
        let max_rows = self.config.batch_size.max(1);
        let max_bytes = (self.config.batch_max_bytes as u64).clamp(1, 1 << 20);
        loop {
            let cursor = match self.replay_at.clone() {
                Some(cursor) => cursor,
                None => match self.with_journal(|j| j.oldest_segment()).await {
                    Some(Some(path)) => ReplayCursor { path, offset: 0 },
                    Some(None) => {
                        tracing::info!(
                            "log journal replayed; writing to the database directly again"
                        );
                        self.journaling = false;
                        return;
                    }
                    None => return,
                },
            };
            let read_path = cursor.path.clone();
            let offset = cursor.offset;
            let Some(chunk) = self
                .with_journal(move |j| j.read_chunk(&read_path, offset, max_rows, max_bytes))
                .await
            else {
                return;
            };
            if chunk.skipped > 0 {
                WriterStats::add(&self.stats.rows_dropped, chunk.skipped as usize);
            }
            if !chunk.rows.is_empty() {
                // Records queued during the write are journaled as it goes.
                match self.write_durably(&chunk.rows, None).await {
                    Ok(()) => {
                        WriterStats::add(&self.stats.rows_replayed, chunk.rows.len());
                        WriterStats::add(&self.stats.rows_written, chunk.rows.len());
                    }
                    Err(failure @ (WriteFailure::Away(_) | WriteFailure::Late)) => {
                        tracing::debug!(reason = %failure.reason(), "database still away or slow; journal kept");
                        self.replay_at = Some(cursor);
                        return;
                    }
                    Err(WriteFailure::Refused(err)) => {
                        tracing::warn!(%err, "a journaled batch was refused; replaying its rows one by one");
                        if !self.write_one_by_one(chunk.rows, true).await {
                            self.replay_at = Some(cursor);
                            return;
                        }
                    }
                }
            }
            if chunk.at_end {
                let path = cursor.path.clone();
                match self
                    .with_journal(move |j| j.remove(&path).map(|()| j.used_bytes()))
                    .await
                {
                    Some(used) => self.stats.journal_bytes.store(used, Ordering::Relaxed),
                    None => {
                        // Replayed again later, harmlessly (rows are keyed).
                        self.replay_at = None;
                        return;
                    }
                }
                self.replay_at = None;
            } else {
                self.replay_at = Some(ReplayCursor {
                    path: cursor.path,
                    offset: chunk.next_offset,
                });
            }
            if Instant::now() >= slice_end || self.behind() {
                // Let the loop take what queued meanwhile, then go on.
                self.next_probe = Instant::now();
                return;
            }
        }
    }
}
