-- The global catalog (its own database, served by `region-core catalog`):
-- the titles every city shares, one id each, and where each plays.
-- Table names differ from a shard's (`movies`) so that one scratch database
-- can hold both schemas when sqlx checks the queries.

-- Trigram matching: typo-tolerant title search (docs/adr/0018).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE catalog_movies (
    id               uuid PRIMARY KEY,
    title            text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    language         text,
    kind             text NOT NULL DEFAULT 'movie' CHECK (kind IN ('movie', 'event')),
    created_at       timestamptz NOT NULL DEFAULT now()
);
-- The same title, language, running time and kind is the same title: a
-- second create answers 409 with the first one's id, so cities that seed
-- their own programme still end up sharing one id.
CREATE UNIQUE INDEX catalog_movies_natural
    ON catalog_movies (lower(title), coalesce(language, ''), duration_minutes, kind);
CREATE INDEX catalog_movies_title_trgm ON catalog_movies USING gin (title gin_trgm_ops);

-- A city plays a title: written by the city's shard before it creates a
-- show of it; `last_starts_at` is its latest show, so search lists the
-- cities where something is still to come.
CREATE TABLE catalog_listings (
    movie_id        uuid NOT NULL REFERENCES catalog_movies (id),
    city            text NOT NULL CHECK (city ~ '^[a-z]{2,8}$'),
    last_starts_at  timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (movie_id, city)
);
