//! SQL that runs unchanged on both backends.
//!
//! The learning tables use only types both databases share (BIGINT times in
//! Unix microseconds, TEXT JSON, byte vectors, UUIDs bound as `Uuid`), so
//! their statements can be written once, with Postgres' `$1` placeholders;
//! [`sql`] rewrites them to SQLite's `?1` form. [`on_pool!`] runs the same
//! block against whichever pool the store holds, so the block is type-checked
//! once per backend without being written twice.

use std::borrow::Cow;

/// `text` with `$N` placeholders rewritten to `?N` when `sqlite` is true.
pub(crate) fn sql(sqlite: bool, text: &str) -> Cow<'_, str> {
    if !sqlite || !text.contains('$') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// How an interaction `i` meets its content `c` (`c.request`,
/// `c.response_text`, `c.draft`, `c.critique`); `required` keeps only
/// interactions whose content is still there (content retention empties
/// it).
///
/// SQLite keeps content in a table of its own, deleted by age. On Postgres
/// it is part of the interaction's row (migration 0006: one heap row and
/// one primary-key entry fewer per logged interaction), emptied by content
/// retention; the lateral select only names those columns `c`, so queries
/// read the same on both.
pub(crate) fn join_contents(sqlite: bool, required: bool) -> &'static str {
    match (sqlite, required) {
        (true, false) => {
            "LEFT JOIN interaction_contents c \
             ON c.interaction_id = i.id AND c.created_at = i.created_at"
        }
        (true, true) => {
            "JOIN interaction_contents c \
             ON c.interaction_id = i.id AND c.created_at = i.created_at"
        }
        (false, false) => {
            "CROSS JOIN LATERAL \
             (SELECT i.request, i.response_text, i.draft, i.critique) c"
        }
        (false, true) => {
            "CROSS JOIN LATERAL \
             (SELECT i.request, i.response_text, i.draft, i.critique WHERE i.request IS NOT NULL) c"
        }
    }
}

/// Runs `$body` with `$pool` bound to the store's pool and `$sqlite` to
/// whether it is SQLite.
macro_rules! on_pool {
    ($store:expr, |$pool:ident, $sqlite:ident| $body:expr) => {
        match $store {
            $crate::Store::Postgres(s) => {
                let $pool = s.pool();
                let $sqlite = false;
                $body
            }
            $crate::Store::Sqlite(s) => {
                let $pool = s.pool();
                let $sqlite = true;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// Begins a transaction that will write after reading. On SQLite it takes
/// the write lock up front (`BEGIN IMMEDIATE`): a deferred transaction that
/// reads and then writes while the log writer holds the lock fails with
/// SQLITE_BUSY at once instead of waiting out the busy timeout.
macro_rules! begin_write {
    ($pool:expr, $sqlite:expr) => {
        if $sqlite {
            $pool.begin_with("BEGIN IMMEDIATE").await?
        } else {
            $pool.begin().await?
        }
    };
}
pub(crate) use begin_write;

/// Now, in Unix microseconds (the learning tables' time unit).
pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A vector as little-endian `f32` bytes.
pub fn vec_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`vec_to_bytes`]; trailing bytes that do not make a whole
/// `f32` are ignored.
pub fn bytes_to_vec(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_question_marks_on_sqlite() {
        assert_eq!(sql(true, "a = $1 AND b = $12"), "a = ?1 AND b = ?12");
        assert_eq!(sql(false, "a = $1"), "a = $1");
        assert_eq!(sql(true, "x = '$'"), "x = '$'");
    }

    #[test]
    fn vectors_round_trip_through_bytes() {
        let v = vec![0.5f32, -1.25, 3.0e-8];
        assert_eq!(bytes_to_vec(&vec_to_bytes(&v)), v);
    }
}
