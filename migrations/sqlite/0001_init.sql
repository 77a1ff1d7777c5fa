-- uno's schema on SQLite: the same tables as on Postgres, without
-- partitioning (retention deletes rows). Times are Unix microseconds, ids
-- are 16-byte blobs.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          BLOB PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash    BLOB NOT NULL UNIQUE,
    key_prefix  TEXT NOT NULL,
    name        TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE interactions (
    id                  BLOB NOT NULL,
    tenant_id           TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    model               TEXT NOT NULL,
    end_user            TEXT,
    streamed            INTEGER NOT NULL,
    status              INTEGER NOT NULL,
    outcome             TEXT NOT NULL,
    finish_reason       TEXT,
    prompt_tokens       INTEGER,
    completion_tokens   INTEGER,
    total_tokens        INTEGER,
    upstream_ms         REAL,
    total_ms            REAL NOT NULL,
    ttfb_ms             REAL,
    error               TEXT,
    snapshot_version    INTEGER,
    cluster_id          TEXT,
    path                TEXT,
    conversation_hash   BLOB,
    PRIMARY KEY (id, created_at)
);

CREATE INDEX interactions_id ON interactions (id);
CREATE INDEX interactions_tenant_time ON interactions (tenant_id, created_at);
CREATE INDEX interactions_tenant_user ON interactions (tenant_id, end_user);
CREATE INDEX interactions_conversation ON interactions (conversation_hash);

CREATE TABLE interaction_contents (
    interaction_id  BLOB NOT NULL,
    tenant_id       TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    request         TEXT NOT NULL,
    response_text   TEXT,
    PRIMARY KEY (interaction_id, created_at)
);

CREATE INDEX interaction_contents_time ON interaction_contents (created_at);

CREATE TABLE feedback (
    id                      BLOB PRIMARY KEY,
    tenant_id               TEXT NOT NULL,
    interaction_id          BLOB NOT NULL,
    end_user                TEXT NOT NULL DEFAULT '',
    kind                    TEXT NOT NULL CHECK (kind IN ('explicit', 'implicit')),
    rating                  INTEGER CHECK (rating IN (-1, 1)),
    comment                 TEXT,
    expected_output         TEXT,
    source_interaction_id   BLOB,
    created_at              INTEGER NOT NULL,
    updated_at              INTEGER NOT NULL
);

CREATE INDEX feedback_interaction ON feedback (tenant_id, interaction_id);
CREATE INDEX feedback_user ON feedback (tenant_id, end_user);
CREATE INDEX feedback_time ON feedback (created_at);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    tenant_id   TEXT,
    subject     TEXT,
    details     TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at);
