//! The log writer: interaction records in, batched inserts out, nothing lost.
//!
//! The request path calls [`LogSink::submit`] once the response is done: the
//! record's rows are built there (see [`crate::rows`]) and pushed onto an
//! in-memory queue bounded in records and in bytes. One writer task drains
//! it in batches (by count, bytes and time) and writes each batch in one
//! transaction.
//!
//! The durability promise: an accepted record is in the database or synced
//! to the on-disk journal within `durability_window` of its arrival, so a
//! crash loses at most that window. A batch write is given what is left of
//! its oldest record's window; a database that is away, behind (the queue
//! half full) or too slow to take the batch by then gets the batch journaled
//! instead, and later batches follow it into the journal (order is kept)
//! until replay has emptied it. Replay runs in short slices between takes
//! from the queue, a chunk of a bounded segment at a time, so neither a
//! hung database nor a gigabyte of journal holds records or rows in memory.
//! A restart replays whatever journal it finds. Because every write is
//! idempotent (rows are keyed by id), a batch that landed although its
//! write was abandoned is harmless to replay: nothing is written twice.
//!
//! Records are dropped only when the journal is full or failing, or the
//! queue is (the writer cannot keep up even by journaling); each drop is
//! counted in [`WriterStats`] and logged.

mod inbox;
mod journal;
mod task;

pub use journal::{Chunk, DEFAULT_SEGMENT_BYTES, Journal};
pub use task::{LogSink, LogWriter, WriterConfig, WriterStats};
