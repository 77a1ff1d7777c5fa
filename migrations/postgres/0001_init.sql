-- uno's schema on Postgres. Interactions and their content are partitioned
-- by day so that retention drops whole partitions (which frees disk at once)
-- instead of deleting rows (which does not). Content (messages, answers) and
-- metadata live in separate tables so each can have its own retention.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          UUID PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash    BYTEA NOT NULL UNIQUE,
    key_prefix  TEXT NOT NULL,
    name        TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

CREATE TABLE interactions (
    id                  UUID NOT NULL,
    tenant_id           TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    model               TEXT NOT NULL,
    end_user            TEXT,
    streamed            BOOLEAN NOT NULL,
    status              SMALLINT NOT NULL,
    outcome             TEXT NOT NULL,
    finish_reason       TEXT,
    prompt_tokens       BIGINT,
    completion_tokens   BIGINT,
    total_tokens        BIGINT,
    upstream_ms         DOUBLE PRECISION,
    total_ms            DOUBLE PRECISION NOT NULL,
    ttfb_ms             DOUBLE PRECISION,
    error               TEXT,
    snapshot_version    BIGINT,
    cluster_id          TEXT,
    path                TEXT,
    conversation_hash   BYTEA,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

CREATE INDEX interactions_tenant_time ON interactions (tenant_id, created_at);
CREATE INDEX interactions_tenant_user ON interactions (tenant_id, end_user);
CREATE INDEX interactions_conversation ON interactions (conversation_hash);

CREATE TABLE interaction_contents (
    interaction_id  UUID NOT NULL,
    tenant_id       TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    request         TEXT NOT NULL,
    response_text   TEXT,
    PRIMARY KEY (interaction_id, created_at)
) PARTITION BY RANGE (created_at);

CREATE TABLE feedback (
    id                      UUID PRIMARY KEY,
    tenant_id               TEXT NOT NULL,
    interaction_id          UUID NOT NULL,
    end_user                TEXT NOT NULL DEFAULT '',
    kind                    TEXT NOT NULL CHECK (kind IN ('explicit', 'implicit')),
    rating                  SMALLINT CHECK (rating IN (-1, 1)),
    comment                 TEXT,
    expected_output         TEXT,
    source_interaction_id   UUID,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL
);

CREATE INDEX feedback_interaction ON feedback (tenant_id, interaction_id);
CREATE INDEX feedback_user ON feedback (tenant_id, end_user);
CREATE INDEX feedback_time ON feedback (created_at);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    tenant_id   TEXT,
    subject     TEXT,
    details     TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_tenant ON audit_log (tenant_id, at);
