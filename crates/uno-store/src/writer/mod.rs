//! The log writer: interaction records in, batched inserts out, nothing lost.
//!
//! The request path calls [`LogSink::submit`], which only pushes onto a
//! bounded in-memory queue. One writer task drains it in batches (by count
//! and by time), turns records into rows (parsing answers there, not on the
//! request path) and writes each batch in one transaction. When the database
//! is unreachable or failing, batches are appended to an on-disk journal; a
//! probe notices when it is back, the journal is replayed in order and then
//! removed. A restart replays whatever journal it finds. Because every write
//! is idempotent (rows are keyed by id), a batch that was written but whose
//! acknowledgement was lost is harmless to replay: nothing is written twice.
//!
//! The journal also absorbs load: when the queue is more than half full (the
//! database is slower than the traffic), batches are journaled instead of
//! inserted, and replayed once the backlog has cleared.
//!
//! Records are dropped only when the journal is full (or the queue is, which
//! means the writer cannot keep up even by journaling); each drop is counted
//! in [`WriterStats`] and logged.

mod inbox;
mod journal;
mod task;

pub use journal::Journal;
pub use task::{LogSink, LogWriter, WriterConfig, WriterStats};
