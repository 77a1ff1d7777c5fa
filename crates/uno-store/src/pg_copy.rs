//! Interaction rows in Postgres's binary `COPY` format.
//!
//! `COPY … FROM STDIN (FORMAT binary)` is the cheapest way into Postgres:
//! no SQL executor over `UNNEST` arrays, no speculative insertion, and on
//! this side one buffer of plain bytes instead of twenty-four bound
//! arrays. It cannot skip rows that already exist, so the log writer uses
//! it for fresh rows and falls back to `INSERT … ON CONFLICT DO NOTHING`
//! when a batch holds an id the table already has (a client that reused
//! its `x-uno-interaction-id`, a journal replay).
//!
//! Format: a fixed header, then per row a 16-bit field count and each field
//! as a 32-bit length (-1 for NULL) and its bytes in the type's binary
//! form, then a -1 trailer (PostgreSQL docs, "COPY", binary format).

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::rows::{InteractionColumns, InteractionRow, LogText};

/// The columns [`Payload::interaction`] writes, in order: the metadata,
/// then the content (one row per interaction; see migration 0006).
pub const INTERACTION_COLUMNS: &str = "id, tenant_id, created_at, model, end_user, streamed, \
     status, outcome, finish_reason, prompt_tokens, completion_tokens, total_tokens, \
     upstream_ms, total_ms, ttfb_ms, error, snapshot_version, cluster_id, path, conversation_hash, \
     request, response_text, draft, critique";

/// How many columns [`INTERACTION_COLUMNS`] names: counted from the list,
/// so a column added there is counted in every tuple's header too.
const INTERACTION_FIELDS: i16 = column_count(INTERACTION_COLUMNS);

/// The number of names in a comma-separated column list.
const fn column_count(columns: &str) -> i16 {
    let bytes = columns.as_bytes();
    let mut count = 1;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b',' {
            count += 1;
        }
        i += 1;
    }
    count
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch to Postgres's (2000-01-01 UTC).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Bytes of payload sent to Postgres at a time. A batch's payload (about
/// 3.5 MB at 2048 rows) is never built whole: it is read from the rows'
/// tuples a chunk at a time (see [`crate::copy_source`]), so what the
/// writer touches stays in the CPU's cache and does not push out the
/// request path's data. Each send wakes the Postgres backend, and on a
/// VM waking an idle vCPU costs the sender tens of microseconds (most of
/// what sending cost in the load harness at 64 kB chunks); 256 kB sends
/// made logging measurably cheaper there, 1 MB no cheaper still.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Room for one row of ordinary size.
const ROW_BYTES: usize = 4096;

/// Binary COPY data under construction: the header, rows, the trailer;
/// or a chunk of it.
pub struct Payload {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Payload {
    /// The size only: the bytes are rows' contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl Payload {
    /// An empty buffer with room for a chunk.
    pub fn new() -> Self {
        Payload {
            bytes: Vec::with_capacity(CHUNK_BYTES),
        }
    }

    /// An empty buffer for one row at a time (it grows as a row needs).
    pub fn for_one_row() -> Self {
        Payload {
            bytes: Vec::with_capacity(ROW_BYTES),
        }
    }

    /// Bytes the buffer holds room for (tests check it is kept and stays a
    /// chunk).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity()
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

    /// What is waiting to be sent.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// Forgets what was sent, keeping the buffer.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Appends COPY data encoded elsewhere (the tuple of an
    /// [`EncodedInteraction`], a part of it).
    pub fn append(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
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
        // Postgres refuses NUL in text; rows are cleaned when built, this
        // keeps the encoder safe on its own.
        if value.contains('\0') {
            self.field(value.replace('\0', "").as_bytes());
        } else {
            self.field(value.as_bytes());
        }
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
    pub fn interaction(&mut self, r: &InteractionColumns<'_>) {
        self.row(INTERACTION_FIELDS);
        self.field(r.id.as_bytes());
        self.text(r.tenant);
        self.time(r.created_at);
        self.text(r.model);
        self.opt_text(r.end_user);
        self.field(&[u8::from(r.streamed)]);
        self.field(&r.status.to_be_bytes());
        self.text(r.outcome);
        self.opt_text(r.finish_reason);
        self.opt_i64(r.prompt_tokens);
        self.opt_i64(r.completion_tokens);
        self.opt_i64(r.total_tokens);
        self.opt_f64(r.upstream_ms);
        self.opt_f64(Some(r.total_ms));
        self.opt_f64(r.ttfb_ms);
        self.opt_text(r.error);
        self.opt_i64(r.snapshot_version);
        self.opt_text(r.cluster_id);
        self.opt_text(r.path);
        match r.conversation_hash {
            Some(hash) => self.field(hash),
            None => self.null(),
        }
        // Checked for UTF-8 and NUL by whoever lent the columns.
        self.field(r.request);
        self.opt_text(r.response_text);
        self.opt_text(r.draft);
        self.opt_text(r.critique);
    }
}

/// The fixed part of an interaction's tuple (field count, lengths, id,
/// time, numbers, hash): what [`EncodedInteraction::of`] reserves beyond
/// the texts, so the buffer is allocated once.
const TUPLE_FIXED_BYTES: usize = 2 + INTERACTION_FIELDS as usize * 4 + 16 + 8 + 7 * 8 + 16 + 3;

/// One interaction already in COPY form: its `interactions` tuple.
///
/// The log sink encodes each interaction like this as it is handed over,
/// while its texts are still in the CPU's cache, so the writer only copies
/// bytes into the COPY stream, and what waits in the queue is one
/// allocation rather than a row of separately allocated strings, freed on
/// another thread. Where rows are needed (the journal, the fallback
/// insert), [`EncodedInteraction::decode`] gives the row back.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedInteraction {
    tuple: Vec<u8>,
    created_at: DateTime<Utc>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
}

impl EncodedInteraction {
    /// Encodes the tuple of an interaction with these columns.
    pub fn of(row: &InteractionColumns<'_>) -> Self {
        let mut payload = Payload {
            bytes: Vec::with_capacity(Self::most_bytes(row)),
        };
        payload.interaction(row);
        EncodedInteraction {
            tuple: payload.bytes,
            created_at: row.created_at,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
        }
    }

    /// The tuple's size when every column has a value (NULLs take less).
    fn most_bytes(row: &InteractionColumns<'_>) -> usize {
        let texts = [
            Some(row.tenant),
            Some(row.model),
            row.end_user,
            Some(row.outcome),
            row.finish_reason,
            row.error,
            row.cluster_id,
            row.path,
            row.response_text,
            row.draft,
            row.critique,
        ];
        TUPLE_FIXED_BYTES
            + row.request.len()
            + texts.iter().flatten().map(|t| t.len()).sum::<usize>()
    }

    /// The `interactions` tuple.
    pub fn tuple(&self) -> &[u8] {
        &self.tuple
    }

    /// When the request arrived (which partition the tuple goes to).
    pub fn day(&self) -> NaiveDate {
        self.created_at.date_naive()
    }

    /// When the request arrived.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// The interaction id, read from the tuple (for a retry's replacement,
    /// see [`crate::supersede`]).
    pub fn id(&self) -> Option<Uuid> {
        let mut fields = Fields::new(&self.tuple);
        fields.count(INTERACTION_FIELDS).ok()?;
        let bytes = fields.next().ok()??;
        Uuid::from_slice(bytes).ok()
    }

    /// Prompt tokens, when reported (for the writer's counters).
    pub fn prompt_tokens(&self) -> Option<i64> {
        self.prompt_tokens
    }

    /// Completion tokens, when reported.
    pub fn completion_tokens(&self) -> Option<i64> {
        self.completion_tokens
    }

    /// The tenant, read from the tuple.
    pub fn tenant(&self) -> Cow<'_, str> {
        let mut fields = Fields::new(&self.tuple);
        let _ = fields.count(INTERACTION_FIELDS);
        let _ = fields.next(); // id
        match fields.next() {
            Ok(Some(tenant)) => String::from_utf8_lossy(tenant),
            _ => Cow::Borrowed(""),
        }
    }

    /// The row the tuple was encoded from.
    pub fn decode(&self) -> Result<InteractionRow, DecodeError> {
        let mut f = Fields::new(&self.tuple);
        f.count(INTERACTION_FIELDS)?;
        let id = Uuid::from_slice(f.required()?).map_err(|_| DecodeError("id"))?;
        let tenant = f.text()?.ok_or(DecodeError("tenant"))?;
        let created_at = f.time()?;
        let model = f.text()?.ok_or(DecodeError("model"))?;
        let end_user = f.text()?;
        let streamed = f.required()? == [1];
        let status = i16::from_be_bytes(f.fixed()?);
        let outcome = f.text()?.ok_or(DecodeError("outcome"))?;
        let finish_reason = f.text()?;
        let prompt_tokens = f.i64()?;
        let completion_tokens = f.i64()?;
        let total_tokens = f.i64()?;
        let upstream_ms = f.f64()?;
        let total_ms = f.f64()?.ok_or(DecodeError("total_ms"))?;
        let ttfb_ms = f.f64()?;
        let error = f.text()?;
        let snapshot_version = f.i64()?;
        let cluster_id = f.text()?;
        let path = f.text()?;
        let conversation_hash = f.next()?.map(<[u8]>::to_vec);
        let request = f.text()?.ok_or(DecodeError("request"))?;
        let response_text = f.text()?;
        let draft = f.text()?;
        let critique = f.text()?;
        Ok(InteractionRow {
            id,
            tenant,
            created_at,
            model,
            end_user,
            streamed,
            status,
            outcome: Cow::Owned(outcome),
            finish_reason,
            prompt_tokens,
            completion_tokens,
            total_tokens,
            upstream_ms,
            total_ms,
            ttfb_ms,
            error,
            snapshot_version,
            cluster_id,
            path: path.map(Cow::Owned),
            conversation_hash,
            request: LogText::copy_of(request.as_bytes()),
            response_text,
            draft,
            critique,
        })
    }
}

/// A tuple that does not read back as uno encoded them (a bug, never input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an encoded interaction does not decode at its {0} field")]
pub struct DecodeError(&'static str);

/// Reads one tuple's fields back, in order.
struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn count(&mut self, expected: i16) -> Result<(), DecodeError> {
        let n = self.take(2)?;
        if i16::from_be_bytes([n[0], n[1]]) == expected {
            Ok(())
        } else {
            Err(DecodeError("field count"))
        }
    }

    fn next(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        let len = self.take(4)?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        match usize::try_from(len) {
            Ok(len) => self.take(len).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn required(&mut self) -> Result<&'a [u8], DecodeError> {
        self.next()?.ok_or(DecodeError("non-null"))
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.required()?
            .try_into()
            .map_err(|_| DecodeError("fixed-size"))
    }

    fn text(&mut self) -> Result<Option<String>, DecodeError> {
        self.next()?
            .map(|t| String::from_utf8(t.to_vec()).map_err(|_| DecodeError("text")))
            .transpose()
    }

    fn i64(&mut self) -> Result<Option<i64>, DecodeError> {
        match self.next()? {
            Some(v) => Ok(Some(i64::from_be_bytes(
                v.try_into().map_err(|_| DecodeError("bigint"))?,
            ))),
            None => Ok(None),
        }
    }

    fn f64(&mut self) -> Result<Option<f64>, DecodeError> {
        match self.next()? {
            Some(v) => Ok(Some(f64::from_be_bytes(
                v.try_into().map_err(|_| DecodeError("double"))?,
            ))),
            None => Ok(None),
        }
    }

    fn time(&mut self) -> Result<DateTime<Utc>, DecodeError> {
        let micros = i64::from_be_bytes(self.fixed()?) + POSTGRES_EPOCH_MICROS;
        DateTime::<Utc>::from_timestamp_micros(micros).ok_or(DecodeError("timestamp"))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A row with every column set (other modules' tests use it too).
    pub(crate) fn full_row() -> InteractionRow {
        InteractionRow {
            id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            tenant: "acme".into(),
            created_at: DateTime::<Utc>::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            model: "gpt-x".into(),
            end_user: Some("u-1".into()),
            streamed: true,
            status: 200,
            outcome: Cow::Borrowed("completed"),
            finish_reason: Some("stop".into()),
            prompt_tokens: Some(11),
            completion_tokens: Some(7),
            total_tokens: Some(18),
            upstream_ms: Some(12.5),
            total_ms: 13.25,
            ttfb_ms: Some(3.0),
            error: Some("e".into()),
            snapshot_version: Some(4),
            cluster_id: Some("c-1".into()),
            path: Some(Cow::Borrowed("primary")),
            conversation_hash: Some(vec![7; 16]),
            request: LogText::copy_of("{\"model\":\"gpt-x\",\"q\":\"café\"}".as_bytes()),
            response_text: Some("an answer".into()),
            draft: Some("a draft".into()),
            critique: Some("a critique".into()),
        }
    }

    /// A row with every optional column NULL.
    pub(crate) fn bare_row() -> InteractionRow {
        InteractionRow {
            end_user: None,
            streamed: false,
            status: 499,
            outcome: Cow::Borrowed("cancelled"),
            finish_reason: None,
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            upstream_ms: None,
            ttfb_ms: None,
            error: None,
            snapshot_version: None,
            cluster_id: None,
            path: None,
            conversation_hash: None,
            response_text: None,
            draft: None,
            critique: None,
            ..full_row()
        }
    }

    #[test]
    fn an_encoded_interaction_decodes_to_the_row_it_came_from() {
        for row in [full_row(), bare_row()] {
            let encoded = EncodedInteraction::of(&row.columns());
            assert_eq!(encoded.decode().unwrap(), row);
            assert_eq!(encoded.tenant(), "acme");
            assert_eq!(encoded.day(), row.created_at.date_naive());
            assert_eq!(encoded.prompt_tokens(), row.prompt_tokens);
            assert_eq!(
                encoded.tuple.capacity(),
                EncodedInteraction::most_bytes(&row.columns()),
                "allocated once, never regrown"
            );
        }
        let full = EncodedInteraction::of(&full_row().columns());
        assert_eq!(
            full.tuple.len(),
            full.tuple.capacity(),
            "TUPLE_FIXED_BYTES matches the columns"
        );
    }

    #[test]
    fn an_encoded_tuple_is_the_bytes_the_row_encoder_writes() {
        let row = full_row();
        let encoded = EncodedInteraction::of(&row.columns());
        let mut interaction = Payload::new();
        interaction.interaction(&row.columns());
        assert_eq!(encoded.tuple(), interaction.as_slice());
    }

    #[test]
    fn nul_never_reaches_postgres_and_damaged_tuples_are_refused() {
        let mut row = full_row();
        row.model = "gp\0t".into();
        let decoded = EncodedInteraction::of(&row.columns()).decode().unwrap();
        assert_eq!(decoded.model, "gpt");
        let mut damaged = EncodedInteraction::of(&full_row().columns());
        let cut = damaged.tuple.len() - 10;
        damaged.tuple.truncate(cut);
        assert!(damaged.decode().is_err());
    }

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
}
