-- An interaction's content (request, answer, draft, critique) is
-- compressed with lz4 instead of Postgres's default pglz.
--
-- Postgres compresses a text value once its row passes about 2 kB, which
-- real prompts (pasted documents, retrieved context, long histories)
-- usually do. pglz is slow: with the log_rows bench's exchange padded to
-- 20 kB of pasted context, Postgres spent 710-820 us of CPU a row with
-- pglz and 110-140 us with lz4, so the writer's one connection could log
-- about 1,300 such interactions a second instead of about 7,000, and a
-- busy proxy's log queue grew until it spilled to the journal. Reads
-- (export, the learning worker, the dashboard) decompress faster too; the
-- price is a somewhat lower compression ratio.
--
-- Only where the server has lz4 (PostgreSQL 14 or later, built with it,
-- as the Debian and PGDG packages are); elsewhere this changes nothing and
-- says so. Setting a column's compression on the partitioned table covers
-- the partitions created after it; the existing ones are set one by one.
-- Values already stored keep the compression they were written with, and
-- nothing is rewritten: each table is locked only for the catalog change.
DO $$
DECLARE
    partition regclass;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_settings
        WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)
    ) THEN
        RAISE NOTICE 'this PostgreSQL has no lz4 compression; interaction content stays pglz-compressed';
        RETURN;
    END IF;
    FOR partition IN
        SELECT 'interactions'::regclass
        UNION ALL
        SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'interactions'::regclass
    LOOP
        EXECUTE format(
            'ALTER TABLE %s '
            'ALTER COLUMN request SET COMPRESSION lz4, '
            'ALTER COLUMN response_text SET COMPRESSION lz4, '
            'ALTER COLUMN draft SET COMPRESSION lz4, '
            'ALTER COLUMN critique SET COMPRESSION lz4',
            partition
        );
    END LOOP;
END
$$;
