-- Two shows cannot overlap on one screen. A show ends when its movie
-- does: `ends_at` is filled from the movie's duration by a trigger, so
-- every writer (the operator API, tools that insert directly) gets it.
-- The exclusion constraint is the last line; the operator API maps its
-- violation to 409 `show_overlaps`.
--
-- Shows that already overlap when this migration runs are kept, marked
-- `overlap_checked = false` and left out of the constraint (the runbook
-- lists them); every show written from now on is checked.

CREATE EXTENSION IF NOT EXISTS btree_gist;

ALTER TABLE shows ADD COLUMN ends_at timestamptz;
UPDATE shows s SET ends_at = s.starts_at + make_interval(mins => m.duration_minutes)
  FROM movies m WHERE m.id = s.movie_id;
ALTER TABLE shows ALTER COLUMN ends_at SET NOT NULL;
ALTER TABLE shows ADD CONSTRAINT shows_end_after_start CHECK (ends_at > starts_at);

ALTER TABLE shows ADD COLUMN overlap_checked boolean NOT NULL DEFAULT true;
UPDATE shows a SET overlap_checked = false
 WHERE EXISTS (SELECT 1 FROM shows b
                WHERE b.screen_id = a.screen_id AND b.id <> a.id
                  AND tstzrange(b.starts_at, b.ends_at) && tstzrange(a.starts_at, a.ends_at));

CREATE FUNCTION shows_fill_ends_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.ends_at IS NULL OR TG_OP = 'UPDATE' AND NEW.starts_at IS DISTINCT FROM OLD.starts_at THEN
    NEW.ends_at := NEW.starts_at + (SELECT make_interval(mins => m.duration_minutes)
                                      FROM movies m WHERE m.id = NEW.movie_id);
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER shows_fill_ends_at BEFORE INSERT OR UPDATE ON shows
  FOR EACH ROW EXECUTE FUNCTION shows_fill_ends_at();

ALTER TABLE shows ADD CONSTRAINT shows_no_overlap
  EXCLUDE USING gist (screen_id WITH =, tstzrange(starts_at, ends_at) WITH &&)
  WHERE (overlap_checked);
