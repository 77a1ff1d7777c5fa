-- Operators' decisions about individual rules, kept apart from the
-- snapshots (which are immutable and rebuilt by the worker): `approved`
-- serves a rule even below the minimum support, `disabled` never serves it.
-- The worker applies them at every rebuild and the admin API publishes a
-- snapshot with them applied at once. A rule is named by `rule_id`, the
-- first 16 hex characters of sha256(cluster id + "\n" + normalised text),
-- so an override follows its rule across rebuilds as long as the cluster
-- keeps its id. Times are Unix microseconds, as in the other learning tables.
CREATE TABLE rule_overrides (
    tenant_id   TEXT NOT NULL,
    rule_id     TEXT NOT NULL,
    cluster_id  TEXT NOT NULL,
    rule_text   TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('approved', 'disabled')),
    actor       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, rule_id)
);
