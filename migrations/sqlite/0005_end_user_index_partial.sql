-- The end-user index holds only interactions that name an end user: the
-- query it serves looks one end user up by equality (deleting everything
-- about a user), which never matches a row without one, and most apps send no `user` (see the
-- Postgres migration of the same name).
DROP INDEX interactions_tenant_user;
CREATE INDEX interactions_tenant_user ON interactions (tenant_id, end_user)
    WHERE end_user IS NOT NULL;
