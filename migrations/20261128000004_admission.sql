-- Holds on flash-sale shows are taken with an admission pass from the
-- edge's waiting room; the pass id is kept so the checkout can report the
-- pass completed (the waiting room then reuses its slot).
ALTER TABLE holds ADD COLUMN admission_pass_id text;
