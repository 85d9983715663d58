-- Entry scanning (issue 15). A ticket is checked in once: its id (derived
-- from booking and seat, shared::ticket::ticket_id) is the key, so two
-- gates scanning it at once make one row and one 200.
CREATE TABLE checkins (
    ticket_id     uuid PRIMARY KEY,
    show_id       uuid NOT NULL REFERENCES shows (id),
    booking_id    uuid NOT NULL REFERENCES bookings (id),
    seat_id       uuid NOT NULL,
    gate          text NOT NULL,
    staff_id      text NOT NULL,
    source        text NOT NULL CHECK (source IN ('online', 'offline')),
    -- When the ticket was scanned (an offline scan: when the gate saw it).
    checked_in_at timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkins_by_show ON checkins (show_id, checked_in_at);

-- Offline scans of a ticket that was already checked in elsewhere: kept
-- and reported, never dropped (the same scan uploaded twice is one row).
CREATE TABLE checkin_conflicts (
    id          bigserial PRIMARY KEY,
    ticket_id   uuid NOT NULL REFERENCES checkins (ticket_id),
    show_id     uuid NOT NULL REFERENCES shows (id),
    gate        text NOT NULL,
    staff_id    text NOT NULL,
    scanned_at  timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (ticket_id, gate, scanned_at)
);
CREATE INDEX checkin_conflicts_by_show ON checkin_conflicts (show_id, recorded_at);
