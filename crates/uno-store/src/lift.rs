//! Ratings of served traffic per cluster, treated against holdout: what the
//! worker's lift check reads to tell whether a cluster's learned experience
//! helps its users or hurts them.
//!
//! The proxy logs every routed interaction with its cluster and path, and
//! serves a share of each treated cluster's traffic untouched (path
//! `holdout`). Comparing how often the two are rated down measures the
//! treatment's real effect, on the same queries, users and time.

use crate::Store;
use crate::error::StoreError;
use crate::portable::{on_pool, sql};

/// One cluster's rated interactions over a window, by arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRatings {
    /// The cluster id the interactions were routed to.
    pub cluster_id: String,
    /// Interactions served `primary` or `reflective` that were rated.
    pub treated_rated: u64,
    /// Of those, rated down (the sum of their ratings is negative).
    pub treated_down: u64,
    /// Interactions served `holdout` that were rated.
    pub holdout_rated: u64,
    /// Of those, rated down.
    pub holdout_down: u64,
}

/// `column >= $param` for a core-table time against Unix microseconds,
/// written so Postgres can still use its time index and prune partitions
/// (the column stays bare; the bound is converted instead).
pub(crate) fn at_or_after(sqlite: bool, column: &str, param: &str) -> String {
    if sqlite {
        format!("{column} >= {param}")
    } else {
        format!("{column} >= to_timestamp({param} / 1000000.0)")
    }
}

impl Store {
    /// Per cluster, the tenant's rated interactions logged at or after
    /// `since` (Unix microseconds) under a snapshot, treated (`primary`,
    /// `reflective`) and `holdout` counted apart. Only explicit ratings
    /// count: an interaction is rated when it has at least one, and rated
    /// down when their sum (over its users) is negative. Passthrough and
    /// shadow traffic is left out: neither arm served it.
    pub async fn cluster_ratings(
        &self,
        tenant: &str,
        since: i64,
    ) -> Result<Vec<ClusterRatings>, StoreError> {
        type Row = (String, i64, i64, i64, i64);
        let rows: Vec<Row> = on_pool!(self, |pool, sqlite| {
            let text = format!(
                "SELECT i.cluster_id, \
                 SUM(CASE WHEN i.path <> 'holdout' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN i.path <> 'holdout' AND r.net < 0 THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN i.path = 'holdout' THEN 1 ELSE 0 END), \
                 SUM(CASE WHEN i.path = 'holdout' AND r.net < 0 THEN 1 ELSE 0 END) \
                 FROM interactions i \
                 JOIN (SELECT interaction_id, SUM(rating) AS net FROM feedback \
                       WHERE tenant_id = $1 AND kind = 'explicit' AND rating IS NOT NULL \
                       GROUP BY interaction_id) r ON r.interaction_id = i.id \
                 WHERE i.tenant_id = $1 AND i.snapshot_version IS NOT NULL \
                   AND i.cluster_id IS NOT NULL \
                   AND i.path IN ('primary', 'reflective', 'holdout') AND {since} \
                 GROUP BY i.cluster_id ORDER BY i.cluster_id",
                since = at_or_after(sqlite, "i.created_at", "$2"),
            );
            sqlx::query_as(&sql(sqlite, &text))
                .bind(tenant)
                .bind(since)
                .fetch_all(pool)
                .await?
        });
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(|(cluster_id, tr, td, hr, hd)| ClusterRatings {
                cluster_id,
                treated_rated: count(tr),
                treated_down: count(td),
                holdout_rated: count(hr),
                holdout_down: count(hd),
            })
            .collect())
    }
}
