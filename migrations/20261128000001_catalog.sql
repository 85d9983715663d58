-- Catalog of one city shard: cities, venues, screens with their seat
-- layouts, movies/events and shows. Times are timestamptz (UTC); each venue
-- carries its IANA time zone for local dates and display.

CREATE TABLE cities (
    code        text PRIMARY KEY CHECK (code ~ '^[a-z]{2,8}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE venues (
    id          uuid PRIMARY KEY,
    city_code   text NOT NULL REFERENCES cities (code),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    time_zone   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (city_code, name)
);

CREATE TABLE screens (
    id          uuid PRIMARY KEY,
    venue_id    uuid NOT NULL REFERENCES venues (id),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (venue_id, name)
);

-- A seat of a screen. `ordinal` (0-based, front row first) is the seat's
-- position in the Redis seat-map bitfield of every show on this screen.
CREATE TABLE seats (
    id          uuid PRIMARY KEY,
    screen_id   uuid NOT NULL REFERENCES screens (id),
    row_label   text NOT NULL CHECK (row_label ~ '^[A-Z]{1,3}$'),
    number      integer NOT NULL CHECK (number BETWEEN 1 AND 9999),
    label       text NOT NULL GENERATED ALWAYS AS (row_label || number::text) STORED,
    category    text NOT NULL CHECK (length(category) BETWEEN 1 AND 40),
    ordinal     integer NOT NULL CHECK (ordinal >= 0),
    UNIQUE (screen_id, row_label, number),
    UNIQUE (screen_id, ordinal)
);

CREATE TABLE movies (
    id               uuid PRIMARY KEY,
    title            text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    duration_minutes integer NOT NULL CHECK (duration_minutes BETWEEN 1 AND 1440),
    language         text,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE shows (
    id          uuid PRIMARY KEY,
    screen_id   uuid NOT NULL REFERENCES screens (id),
    movie_id    uuid NOT NULL REFERENCES movies (id),
    starts_at   timestamptz NOT NULL,
    -- category -> price in minor units
    prices      jsonb NOT NULL CHECK (jsonb_typeof(prices) = 'object'),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    sale_mode   text NOT NULL DEFAULT 'open' CHECK (sale_mode IN ('open', 'flash_sale')),
    seat_count  integer NOT NULL CHECK (seat_count > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX shows_by_start ON shows (starts_at);
CREATE INDEX shows_by_screen ON shows (screen_id, starts_at);
