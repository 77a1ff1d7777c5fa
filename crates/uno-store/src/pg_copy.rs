//! Interaction rows in Postgres's binary `COPY` format.
//!
//! `COPY … FROM STDIN (FORMAT binary)` is the cheapest way into Postgres:
//! no SQL executor over `UNNEST` arrays, no speculative insertion, and on
//! this side one buffer of plain bytes instead of twenty-seven bound
//! arrays. It cannot skip rows that already exist, so the log writer uses
//! it for fresh rows and falls back to `INSERT … ON CONFLICT DO NOTHING`
//! when a batch holds an id the table already has (a client that reused
//! its `x-uno-interaction-id`, a journal replay).
//!
//! Format: a fixed header, then per row a 16-bit field count and each field
//! as a 32-bit length (-1 for NULL) and its bytes in the type's binary
//! form, then a -1 trailer (PostgreSQL docs, "COPY", binary format).

use chrono::{DateTime, Utc};

use crate::rows::InteractionRow;

/// The columns [`interactions`] writes, in order.
pub const INTERACTION_COLUMNS: &str = "id, tenant_id, created_at, model, end_user, streamed, \
     status, outcome, finish_reason, prompt_tokens, completion_tokens, total_tokens, \
     upstream_ms, total_ms, ttfb_ms, error, snapshot_version, cluster_id, path, conversation_hash";

/// The columns [`contents`] writes, in order.
pub const CONTENT_COLUMNS: &str =
    "interaction_id, tenant_id, created_at, request, response_text, draft, critique";

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch to Postgres's (2000-01-01 UTC).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Bytes of payload sent to Postgres at a time. A batch's payload (a
/// megabyte at 512 rows) is never built whole: rows are encoded into one
/// reused buffer of this size, sent as it fills, so what the writer touches
/// stays in the CPU's cache and does not push out the request path's data.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Binary COPY data under construction, a chunk at a time: the header,
/// rows, the trailer.
pub struct Payload {
    bytes: Vec<u8>,
}

impl Payload {
    /// An empty buffer with room for a chunk and the row that overflows it.
    pub fn new() -> Self {
        Payload {
            bytes: Vec::with_capacity(CHUNK_BYTES + 4096),
        }
    }

    /// Starts the data: signature, flags, no header extension.
    pub fn header(&mut self) {
        self.bytes.extend_from_slice(SIGNATURE);
        self.bytes.extend_from_slice(&0i32.to_be_bytes()); // flags
        self.bytes.extend_from_slice(&0i32.to_be_bytes()); // header extension
    }

    /// Ends the data.
    pub fn trailer(&mut self) {
        self.bytes.extend_from_slice(&(-1i16).to_be_bytes());
    }

    /// Whether a chunk's worth is waiting to be sent.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= CHUNK_BYTES
    }

    /// What is waiting to be sent.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// Forgets what was sent, keeping the buffer.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    fn row(&mut self, fields: i16) {
        self.bytes.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, value: &[u8]) {
        // Texts longer than 2 GiB cannot reach here (the body limit).
        let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(value);
    }

    fn null(&mut self) {
        self.bytes.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn text(&mut self, value: &str) {
        self.field(value.as_bytes());
    }

    fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    fn time(&mut self, value: DateTime<Utc>) {
        let micros = value.timestamp_micros() - POSTGRES_EPOCH_MICROS;
        self.field(&micros.to_be_bytes());
    }

    fn opt_i64(&mut self, value: Option<i64>) {
        match value {
            Some(v) => self.field(&v.to_be_bytes()),
            None => self.null(),
        }
    }

    fn opt_f64(&mut self, value: Option<f64>) {
        match value {
            Some(v) => self.field(&v.to_be_bytes()),
            None => self.null(),
        }
    }

    /// One `interactions` row ([`INTERACTION_COLUMNS`]).
    pub fn interaction(&mut self, r: &InteractionRow) {
        self.row(20);
        self.field(r.id.as_bytes());
        self.text(&r.tenant);
        self.time(r.created_at);
        self.text(&r.model);
        self.opt_text(r.end_user.as_deref());
        self.field(&[u8::from(r.streamed)]);
        self.field(&r.status.to_be_bytes());
        self.text(&r.outcome);
        self.opt_text(r.finish_reason.as_deref());
        self.opt_i64(r.prompt_tokens);
        self.opt_i64(r.completion_tokens);
        self.opt_i64(r.total_tokens);
        self.opt_f64(r.upstream_ms);
        self.opt_f64(Some(r.total_ms));
        self.opt_f64(r.ttfb_ms);
        self.opt_text(r.error.as_deref());
        self.opt_i64(r.snapshot_version);
        self.opt_text(r.cluster_id.as_deref());
        self.opt_text(r.path.as_deref());
        match &r.conversation_hash {
            Some(hash) => self.field(hash),
            None => self.null(),
        }
    }

    /// One `interaction_contents` row ([`CONTENT_COLUMNS`]).
    pub fn content(&mut self, r: &InteractionRow) {
        self.row(7);
        self.field(r.id.as_bytes());
        self.text(&r.tenant);
        self.time(r.created_at);
        self.text(&r.request);
        self.opt_text(r.response_text.as_deref());
        self.opt_text(r.draft.as_deref());
        self.opt_text(r.critique.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_has_the_header_fields_and_trailer_postgres_expects() {
        let mut p = Payload::new();
        p.header();
        p.row(2);
        p.text("ab");
        p.null();
        p.trailer();
        let bytes = p.as_slice().to_vec();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0, 2]);
        expected.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn times_count_from_the_postgres_epoch() {
        let mut p = Payload::new();
        let start = p.bytes.len();
        p.time(DateTime::<Utc>::from_timestamp(946_684_800, 1_000).unwrap());
        assert_eq!(&p.bytes[start..], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn a_chunk_fills_then_clears_for_reuse() {
        let mut p = Payload::new();
        let capacity = p.bytes.capacity();
        p.header();
        while !p.is_full() {
            p.text("a row's worth of text");
        }
        assert!(p.as_slice().len() >= CHUNK_BYTES);
        p.clear();
        assert!(p.as_slice().is_empty());
        assert_eq!(p.bytes.capacity(), capacity, "the buffer is kept");
    }
}
