-- An interaction's content (the request, the answer, the reflective
-- module's draft and critique) moves into its `interactions` row.
--
-- Kept apart, every logged interaction cost Postgres a second heap row, a
-- second partition lookup and a second primary-key entry: about a
-- quarter of its work per interaction (binary COPY of the load harness's
-- exchange, 11.6 instead of 15.0 us of backend CPU a row). Content
-- retention, which dropped the content table's day partitions, now empties
-- the content columns of those days and rewrites their partitions
-- (VACUUM FULL), which frees the disk as a drop did. A row whose content
-- was emptied has `request` NULL.
--
-- On an existing database this copies every stored content into its
-- interaction's row once, when the migration runs.
ALTER TABLE interactions
    ADD COLUMN request TEXT,
    ADD COLUMN response_text TEXT,
    ADD COLUMN draft TEXT,
    ADD COLUMN critique TEXT;

UPDATE interactions i
SET request = c.request, response_text = c.response_text, draft = c.draft, critique = c.critique
FROM interaction_contents c
WHERE c.interaction_id = i.id AND c.created_at = i.created_at;

DROP TABLE interaction_contents;
