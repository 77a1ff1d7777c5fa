//! A batch's binary COPY data for `interactions`, read straight out of its
//! tuples.
//!
//! The log writer's bulk work is moving bytes: each interaction's tuple
//! (encoded by the log sink as the request finished) go into the COPY
//! stream, then into the socket. Built into a buffer of our own and handed
//! to `PgCopyIn::send`, every byte is copied twice before the kernel's copy
//! (into our buffer, then into sqlx's write buffer). As an
//! [`AsyncRead`] given to `PgCopyIn::read_from`, the tuples are copied
//! once, straight into sqlx's write buffer, which is sent as it fills.
//!
//! `read_from` fills only the write buffer's spare room, and that buffer
//! starts at 8 kB on a fresh connection and grows only by what is put into
//! it: 8 kB sends would cost a system call (and a wake-up of the Postgres
//! backend) every four rows. So the writer sends the first chunk
//! ([`CopySource::fill`] into its own buffer, then `send`), which grows the
//! connection's buffer to a chunk for its lifetime (sqlx shrinks it only on
//! request), and the rest goes through `read_from` in chunk-sized sends.
//! Were that buffer ever smaller, the data would still all arrive, in more
//! sends.
//!
//! Message boundaries need not match row boundaries: Postgres reads COPY
//! data as one byte stream (PostgreSQL docs, "COPY" and "Flow of COPY").

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::pg_copy::{EncodedInteraction, INTERACTION_COLUMNS, Payload};
use crate::rows::InteractionRow;

/// The `COPY … FROM STDIN` statement the data is for.
pub fn copy_statement() -> String {
    format!("COPY interactions ({INTERACTION_COLUMNS}) FROM STDIN (FORMAT binary)")
}

/// The COPY data of a batch: the header, a tuple per row (rows built as
/// structs are encoded here, one at a time; encoded ones are lent as they
/// are), the trailer.
pub struct CopySource<'a> {
    rows: std::slice::Iter<'a, &'a InteractionRow>,
    encoded: std::slice::Iter<'a, &'a EncodedInteraction>,
    /// What is left of the encoded tuple being read.
    lent: &'a [u8],
    /// The header, a row encoded here, or the trailer, and how much of it
    /// has been read.
    own: Payload,
    own_read: usize,
    trailer_queued: bool,
}

impl std::fmt::Debug for CopySource<'_> {
    /// Where the reading is, not the rows (their contents are users').
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopySource")
            .field("rows_left", &self.rows.len())
            .field("encoded_left", &self.encoded.len())
            .field("done", &self.is_done())
            .finish()
    }
}

impl<'a> CopySource<'a> {
    /// The data of `rows`, then `encoded`.
    pub fn new(rows: &'a [&'a InteractionRow], encoded: &'a [&'a EncodedInteraction]) -> Self {
        let mut own = Payload::for_one_row();
        own.header();
        CopySource {
            rows: rows.iter(),
            encoded: encoded.iter(),
            lent: &[],
            own,
            own_read: 0,
            trailer_queued: false,
        }
    }

    /// Whether every byte, the trailer included, has been read.
    pub fn is_done(&self) -> bool {
        self.trailer_queued && self.lent.is_empty() && self.own_read == self.own.as_slice().len()
    }

    /// The next bytes, at most `max` (at least one while any are left);
    /// empty once done.
    fn next_bytes(&mut self, max: usize) -> &[u8] {
        loop {
            if !self.lent.is_empty() {
                let (now, rest) = self.lent.split_at(max.min(self.lent.len()));
                self.lent = rest;
                return now;
            }
            let own_len = self.own.as_slice().len();
            if self.own_read < own_len {
                let start = self.own_read;
                self.own_read = own_len.min(start + max);
                return &self.own.as_slice()[start..self.own_read];
            }
            // Both drained: queue the next piece.
            self.own.clear();
            self.own_read = 0;
            if let Some(row) = self.rows.next() {
                self.own.interaction(&row.columns());
            } else if let Some(encoded) = self.encoded.next() {
                self.lent = encoded.tuple();
            } else if !self.trailer_queued {
                self.own.trailer();
                self.trailer_queued = true;
            } else {
                return &[];
            }
        }
    }

    /// Appends up to `max` bytes to `out` (fewer only at the end).
    pub fn fill(&mut self, out: &mut Payload, max: usize) {
        let mut room = max;
        while room > 0 {
            let bytes = self.next_bytes(room);
            if bytes.is_empty() {
                break;
            }
            room -= bytes.len();
            out.append(bytes);
        }
    }
}

impl AsyncRead for CopySource<'_> {
    /// Fills `buf` (never waits: the bytes are in memory); reads nothing
    /// once done, which ends `read_from`.
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let source = self.get_mut();
        while buf.remaining() > 0 {
            let bytes = source.next_bytes(buf.remaining());
            if bytes.is_empty() {
                break;
            }
            buf.put_slice(bytes);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::pg_copy::CHUNK_BYTES;
    use crate::pg_copy::tests::{bare_row, full_row};
    use crate::rows::LogText;

    /// Rows of varied sizes and NULLs, each with its own id.
    fn sample_row(i: u128) -> InteractionRow {
        let base = if i.is_multiple_of(3) {
            bare_row()
        } else {
            full_row()
        };
        let request = format!("{{\"q\":\"{}\"}}", "ab".repeat((i as usize * 37) % 900));
        InteractionRow {
            id: uuid::Uuid::from_u128(i),
            request: LogText::copy_of(request.as_bytes()),
            ..base
        }
    }

    /// The whole data, built the plain way: one buffer.
    fn built_whole(rows: &[&InteractionRow], encoded: &[&EncodedInteraction]) -> Vec<u8> {
        let mut payload = Payload::new();
        payload.header();
        for row in rows {
            payload.interaction(&row.columns());
        }
        for e in encoded {
            payload.append(e.tuple());
        }
        payload.trailer();
        payload.as_slice().to_vec()
    }

    #[tokio::test]
    async fn reads_the_same_bytes_as_one_buffer_in_any_read_size() {
        let rows_owned: Vec<InteractionRow> = (0..3).map(sample_row).collect();
        let rows: Vec<&InteractionRow> = rows_owned.iter().collect();
        let encoded_owned: Vec<EncodedInteraction> = (3..40)
            .map(|i| EncodedInteraction::of(&sample_row(i).columns()))
            .chain(std::iter::once(EncodedInteraction::of(
                &full_row().columns(),
            )))
            .collect();
        let encoded: Vec<&EncodedInteraction> = encoded_owned.iter().collect();
        let expected = built_whole(&rows, &encoded);
        for read_size in [1, 7, 64, 1000, CHUNK_BYTES] {
            let mut source = CopySource::new(&rows, &encoded);
            let mut got = Vec::new();
            let mut chunk = vec![0u8; read_size];
            loop {
                let n = source.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            assert!(source.is_done());
            assert_eq!(got, expected, "read {read_size} bytes at a time");
        }
    }

    #[tokio::test]
    async fn a_first_chunk_then_reads_give_the_whole_data_once() {
        let encoded_owned: Vec<EncodedInteraction> = (0..100)
            .map(|i| EncodedInteraction::of(&sample_row(i).columns()))
            .collect();
        let encoded: Vec<&EncodedInteraction> = encoded_owned.iter().collect();
        let expected = built_whole(&[], &encoded);
        let mut source = CopySource::new(&[], &encoded);
        let mut first = Payload::new();
        source.fill(&mut first, 500);
        assert_eq!(
            first.as_slice().len(),
            500,
            "a first chunk fills to its size"
        );
        assert!(!source.is_done());
        let mut rest = Vec::new();
        source.read_to_end(&mut rest).await.unwrap();
        assert!(source.is_done());
        let mut got = first.as_slice().to_vec();
        got.extend_from_slice(&rest);
        assert_eq!(got, expected);
    }

    #[test]
    fn an_empty_batch_is_the_header_and_the_trailer() {
        let mut source = CopySource::new(&[], &[]);
        let mut out = Payload::new();
        source.fill(&mut out, CHUNK_BYTES);
        assert!(source.is_done());
        assert_eq!(out.as_slice(), built_whole(&[], &[]).as_slice());
    }
}
