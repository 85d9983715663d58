-- Flash sales: an admission pass buys once, and a user takes at most
-- `max_seats_per_user` seats of a flash-sale show across all their live
-- holds and confirmed bookings.

ALTER TABLE shows ADD COLUMN max_seats_per_user integer NOT NULL DEFAULT 10
    CHECK (max_seats_per_user BETWEEN 1 AND 100);

-- A pass is spent by the checkout that booked with it; the region refuses
-- it afterwards (403 pass_used). The primary key makes a pass spend once.
CREATE TABLE spent_passes (
    pass_id     text PRIMARY KEY,
    show_id     uuid NOT NULL REFERENCES shows (id),
    user_id     text NOT NULL,
    booking_id  uuid NOT NULL REFERENCES bookings (id),
    spent_at    timestamptz NOT NULL DEFAULT now()
);

-- The per-user count reads a user's live holds of a show.
CREATE INDEX holds_active_by_show_user ON holds (show_id, user_id) WHERE state = 'ACTIVE';
