-- The learning worker's tables. Times here are Unix microseconds (BIGINT) on
-- both backends, so the worker's SQL is the same on Postgres and SQLite.

-- One row per interaction that carries text feedback: the log the UNO
-- pipeline learns from, with every per-log artefact and what produced it.
-- `stage` says what is still to do; a worker leases rows (lease_owner,
-- lease_until) and writes a stage's outputs and the next stage in one
-- statement, so a worker killed mid-stage leaves the row as it was.
CREATE TABLE learn_logs (
    interaction_id  UUID PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    model           TEXT NOT NULL,
    end_user        TEXT,
    users           TEXT NOT NULL,      -- JSON array: everyone whose words are in this log
    lang            TEXT NOT NULL,
    messages        TEXT NOT NULL,      -- JSON: the first-turn prompt (system + user)
    query           TEXT NOT NULL,      -- clustering text: message contents joined by blank lines
    user_query      TEXT NOT NULL,      -- the user message alone (rule extraction)
    answer          TEXT NOT NULL,
    feedback        TEXT NOT NULL,      -- "Feedback 1: …\nFeedback 2: …"
    feedback_hash   TEXT NOT NULL,
    feedback_at     BIGINT NOT NULL,    -- newest feedback included
    rating          INTEGER,            -- net explicit rating, a signal only
    stage           TEXT NOT NULL CHECK (stage IN ('distil', 'embed', 'novelty', 'ready', 'failed')),
    satisfied       BOOLEAN,
    rules_f         TEXT,               -- JSON array of strings
    rules_0         TEXT,               -- JSON array of strings
    distilled_by    TEXT,
    embedder_id     TEXT,
    query_vec       BYTEA,              -- little-endian f32
    rules_vec       BYTEA,
    novelty         TEXT,               -- JSON array, one novelty per rule in rules_f
    novelty_min     DOUBLE PRECISION,
    novelty_mean    DOUBLE PRECISION,
    novelty_max     DOUBLE PRECISION,
    novelty_by      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    lease_owner     TEXT,
    lease_until     BIGINT,
    updated_at      BIGINT NOT NULL
);

CREATE INDEX learn_logs_due ON learn_logs (stage, lease_until);
CREATE INDEX learn_logs_tenant ON learn_logs (tenant_id, stage);

-- Per-tenant jobs (re-cluster, validate, publish) leased like the logs.
CREATE TABLE learn_jobs (
    tenant_id       TEXT NOT NULL,
    job             TEXT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    dirty           BOOLEAN NOT NULL DEFAULT FALSE,  -- set by deletions: rebuild even if few logs changed
    last_run_at     BIGINT,
    last_logs       BIGINT,             -- ready logs the last run saw
    last_updated    BIGINT,             -- newest change the last run saw
    PRIMARY KEY (tenant_id, job)
);

-- Results of expensive, deterministic LLM work (validation answers and
-- judgements), keyed by a hash of everything that produced them, so a
-- killed or repeated run does not pay for them twice.
CREATE TABLE learn_cache (
    tenant_id   TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- Published experience: immutable, versioned per tenant.
CREATE TABLE snapshots (
    tenant_id   TEXT NOT NULL,
    version     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    embedder_id TEXT NOT NULL,
    digest      TEXT NOT NULL,      -- hash of the content, to skip publishing an unchanged one
    note        TEXT NOT NULL DEFAULT '',
    content     TEXT NOT NULL,      -- JSON (uno_core::snapshot::Snapshot)
    PRIMARY KEY (tenant_id, version)
);

-- Which version serves each tenant. Changing it is one UPDATE, so proxies
-- see the old or the new snapshot, never a mix.
CREATE TABLE active_snapshots (
    tenant_id       TEXT PRIMARY KEY,
    version         BIGINT NOT NULL,
    activated_at    BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, version) REFERENCES snapshots (tenant_id, version) ON DELETE CASCADE
);
