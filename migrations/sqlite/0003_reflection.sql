-- The reflective module's intermediate answers, kept with the interaction's
-- content (same retention, same deletion): the draft it revised and the
-- critique that guided the revision.
ALTER TABLE interaction_contents ADD COLUMN draft TEXT;
ALTER TABLE interaction_contents ADD COLUMN critique TEXT;
