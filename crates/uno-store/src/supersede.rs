//! A retry's interaction row replaces the earlier attempts' rows.
//!
//! A client that sends an `x-uno-interaction-id` its tenant already used
//! retries that interaction (the header is an idempotency key): uno
//! forwards it again and logs it, and the log keeps one row per id, the
//! latest attempt's. The retry's rows start with a [`SupersedeRow`]; a
//! writer that finds such marks in a batch (Postgres `write_batch`, SQLite
//! `write_rows`), for those ids only and inside the batch's transaction,
//! finds the newest attempt already stored, deletes the stored attempts
//! received before the newest one known, and leaves the batch's older
//! attempts out. Batches without a mark take the usual path untouched.
//!
//! The rule, "an attempt replaces every attempt of the same id and tenant
//! received before it", depends on receipt times alone, not on the order
//! rows reach the writer: it holds however batches and journal segments
//! are cut, when a journaled batch is replayed (the stored row is the
//! replayed one, and stays), and when a slow earlier retry finishes after
//! a later one. Another tenant's rows are never touched.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::rows::{EncodedInteraction, SupersedeRow};

/// For each (id, tenant) a batch marks, the receipt time of the newest
/// attempt known: rows of that id and tenant received earlier go.
#[derive(Debug, Default)]
pub(crate) struct Supersessions {
    newest: HashMap<(Uuid, String), i64>,
}

impl Supersessions {
    /// The marks of a batch (the newest one per id and tenant).
    pub(crate) fn of<'a>(marks: impl IntoIterator<Item = &'a SupersedeRow>) -> Self {
        let mut supersessions = Supersessions::default();
        for mark in marks {
            supersessions.raise(mark.id, &mark.tenant, mark.created_at.timestamp_micros());
        }
        supersessions
    }

    /// Whether the batch marks nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.newest.is_empty()
    }

    /// The marked (id, tenant) pairs with the newest receipt time known,
    /// in Unix microseconds.
    pub(crate) fn marks(&self) -> impl Iterator<Item = (Uuid, &str, i64)> {
        self.newest
            .iter()
            .map(|((id, tenant), micros)| (*id, tenant.as_str(), *micros))
    }

    /// Notes an attempt received at `micros` (one stored already, say):
    /// the newest known is the later of it and what was known.
    pub(crate) fn raise(&mut self, id: Uuid, tenant: &str, micros: i64) {
        let newest = self.newest.entry((id, tenant.to_owned())).or_insert(micros);
        *newest = (*newest).max(micros);
    }

    /// Whether an attempt of `id` in `tenant` received at `created_at`
    /// is kept: it is not older than the newest attempt of its id and
    /// tenant that a mark names.
    pub(crate) fn keeps(&self, id: Uuid, tenant: &str, created_at: DateTime<Utc>) -> bool {
        // Looked up by an owned key: this runs only for batches with marks.
        match self.newest.get(&(id, tenant.to_owned())) {
            Some(newest) => created_at.timestamp_micros() >= *newest,
            None => true,
        }
    }

    /// [`Supersessions::keeps`] for an encoded interaction (kept when its
    /// id cannot be read: the database then refuses the row, as before).
    pub(crate) fn keeps_encoded(&self, encoded: &EncodedInteraction) -> bool {
        match encoded.id() {
            Some(id) => self.keeps(id, &encoded.tenant(), encoded.created_at()),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(id: Uuid, tenant: &str, micros: i64) -> SupersedeRow {
        SupersedeRow {
            id,
            tenant: tenant.to_owned(),
            created_at: DateTime::from_timestamp_micros(micros).unwrap_or_default(),
        }
    }

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(micros).unwrap_or_default()
    }

    #[test]
    fn the_newest_attempt_of_a_marked_id_and_tenant_is_kept_and_nothing_else_is_touched() {
        let (x, y) = (Uuid::now_v7(), Uuid::now_v7());
        let marks = [mark(x, "a", 2_000), mark(x, "a", 3_000)];
        let mut supersessions = Supersessions::of(&marks);
        assert!(!supersessions.is_empty());
        assert!(!supersessions.keeps(x, "a", at(1_000)), "the first attempt");
        assert!(!supersessions.keeps(x, "a", at(2_000)), "an earlier retry");
        assert!(supersessions.keeps(x, "a", at(3_000)), "the latest");
        assert!(supersessions.keeps(x, "b", at(1_000)), "another tenant's");
        assert!(supersessions.keeps(y, "a", at(1_000)), "another id");
        supersessions.raise(x, "a", 4_000);
        assert!(
            !supersessions.keeps(x, "a", at(3_000)),
            "a later attempt stored already wins"
        );
        supersessions.raise(x, "a", 500);
        assert_eq!(supersessions.marks().collect::<Vec<_>>(), [(x, "a", 4_000)]);
        assert!(Supersessions::of(&[]).is_empty());
    }
}
