-- The end-user index holds only interactions that name an end user.
--
-- The query it serves looks one end user up by equality (deleting
-- everything about a user), which never matches a row without one; and most apps send no `user`, so a full index took an
-- insert per logged interaction that no query could use. Measured with the
-- log-writer bench, an index insert is about a sixth of Postgres's work per
-- logged row.
--
-- On an existing database this rebuilds the index on every partition
-- once, under a lock on `interactions`, when the migration runs.
DROP INDEX interactions_tenant_user;
CREATE INDEX interactions_tenant_user ON interactions (tenant_id, end_user)
    WHERE end_user IS NOT NULL;
