-- Seat holds. Postgres is the source of truth and the last line of
-- defence: the constraints below keep "one live hold per seat" true even
-- if application code or Redis is wrong.

CREATE TABLE holds (
    id          uuid PRIMARY KEY,            -- also the fencing token
    show_id     uuid NOT NULL REFERENCES shows (id),
    user_id     text NOT NULL,
    seat_count  integer NOT NULL CHECK (seat_count BETWEEN 1 AND 100),
    state       text NOT NULL DEFAULT 'ACTIVE'
                CHECK (state IN ('ACTIVE', 'RELEASED', 'EXPIRED', 'CONSUMED')),
    expires_at  timestamptz NOT NULL,
    extended    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, show_id)
);
CREATE INDEX holds_active_by_expiry ON holds (expires_at) WHERE state = 'ACTIVE';
CREATE INDEX holds_by_user ON holds (user_id, created_at DESC);

-- One row per seat of a show. `hold_id` is the single holder of a HELD
-- seat: a row cannot name two holds. `version` increments on every
-- change (optimistic locking, seed Q1).
CREATE TABLE show_seats (
    show_id          uuid NOT NULL REFERENCES shows (id),
    seat_id          uuid NOT NULL REFERENCES seats (id),
    ordinal          integer NOT NULL,
    status           text NOT NULL DEFAULT 'AVAILABLE'
                     CHECK (status IN ('AVAILABLE', 'HELD', 'BOOKED')),
    version          bigint NOT NULL DEFAULT 0,
    hold_id          uuid,
    hold_expires_at  timestamptz,
    PRIMARY KEY (show_id, seat_id),
    UNIQUE (show_id, ordinal),
    FOREIGN KEY (hold_id, show_id) REFERENCES holds (id, show_id),
    -- A HELD seat names its hold and when that hold ends; an AVAILABLE
    -- seat names none.
    CONSTRAINT show_seats_state_consistent CHECK (
        (status = 'AVAILABLE' AND hold_id IS NULL AND hold_expires_at IS NULL)
     OR (status = 'HELD' AND hold_id IS NOT NULL AND hold_expires_at IS NOT NULL)
     OR (status = 'BOOKED')
    )
);
CREATE INDEX show_seats_held_by_expiry ON show_seats (hold_expires_at) WHERE status = 'HELD';
CREATE INDEX show_seats_by_hold ON show_seats (hold_id) WHERE hold_id IS NOT NULL;

-- The seats of each hold. `live` is true while the hold owns the seat;
-- the partial unique index makes a second live hold on a seat impossible,
-- independently of show_seats.
CREATE TABLE hold_seats (
    hold_id   uuid NOT NULL,
    show_id   uuid NOT NULL,
    seat_id   uuid NOT NULL,
    live      boolean NOT NULL DEFAULT true,
    PRIMARY KEY (hold_id, seat_id),
    FOREIGN KEY (hold_id, show_id) REFERENCES holds (id, show_id),
    FOREIGN KEY (show_id, seat_id) REFERENCES show_seats (show_id, seat_id)
);
CREATE UNIQUE INDEX hold_seats_one_live_hold_per_seat ON hold_seats (show_id, seat_id) WHERE live;
