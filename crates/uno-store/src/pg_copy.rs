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

/// A binary COPY payload under construction.
struct Payload {
    bytes: Vec<u8>,
}

impl Payload {
    fn new(capacity: usize) -> Self {
        let mut bytes = Vec::with_capacity(capacity);
        bytes.extend_from_slice(SIGNATURE);
        bytes.extend_from_slice(&0i32.to_be_bytes()); // flags
        bytes.extend_from_slice(&0i32.to_be_bytes()); // header extension
        Payload { bytes }
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

    fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&(-1i16).to_be_bytes());
        self.bytes
    }
}

/// The `interactions` rows of a batch.
pub fn interactions(rows: &[&InteractionRow]) -> Vec<u8> {
    let mut out = Payload::new(64 + rows.len() * 320);
    for r in rows {
        out.row(20);
        out.field(r.id.as_bytes());
        out.text(&r.tenant);
        out.time(r.created_at);
        out.text(&r.model);
        out.opt_text(r.end_user.as_deref());
        out.field(&[u8::from(r.streamed)]);
        out.field(&r.status.to_be_bytes());
        out.text(&r.outcome);
        out.opt_text(r.finish_reason.as_deref());
        out.opt_i64(r.prompt_tokens);
        out.opt_i64(r.completion_tokens);
        out.opt_i64(r.total_tokens);
        out.opt_f64(r.upstream_ms);
        out.opt_f64(Some(r.total_ms));
        out.opt_f64(r.ttfb_ms);
        out.opt_text(r.error.as_deref());
        out.opt_i64(r.snapshot_version);
        out.opt_text(r.cluster_id.as_deref());
        out.opt_text(r.path.as_deref());
        match &r.conversation_hash {
            Some(hash) => out.field(hash),
            None => out.null(),
        }
    }
    out.finish()
}

/// The `interaction_contents` rows of a batch.
pub fn contents(rows: &[&InteractionRow]) -> Vec<u8> {
    let texts: usize = rows
        .iter()
        .map(|r| r.request.len() + r.response_text.as_ref().map_or(0, String::len))
        .sum();
    let mut out = Payload::new(64 + rows.len() * 80 + texts);
    for r in rows {
        out.row(7);
        out.field(r.id.as_bytes());
        out.text(&r.tenant);
        out.time(r.created_at);
        out.text(&r.request);
        out.opt_text(r.response_text.as_deref());
        out.opt_text(r.draft.as_deref());
        out.opt_text(r.critique.as_deref());
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_has_the_header_fields_and_trailer_postgres_expects() {
        let mut p = Payload::new(0);
        p.row(2);
        p.text("ab");
        p.null();
        let bytes = p.finish();
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
        let mut p = Payload::new(0);
        let start = p.bytes.len();
        p.time(DateTime::<Utc>::from_timestamp(946_684_800, 1_000).unwrap());
        assert_eq!(&p.bytes[start..], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]);
    }
}
