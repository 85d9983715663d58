-- Managing the catalog (issue 16): prices fixed at hold time, and seats
-- an operator takes out of sale (house seats, broken seats).

-- What each seat of a hold costs, read from the show's prices when the
-- hold is taken: checkout charges and the booking records this, so an
-- operator's price change reaches new holds only. NULL on holds taken
-- before this migration (checkout then reads the show's price, as it
-- did when they were taken).
ALTER TABLE hold_seats ADD COLUMN price_minor bigint CHECK (price_minor >= 0);

-- A BLOCKED seat is out of sale: neither hold path can take it (both
-- take only AVAILABLE rows, or HELD rows whose hold has ended), the seat
-- map shows it unavailable. It names no hold or booking, and says why.
ALTER TABLE show_seats ADD COLUMN blocked_reason text
    CHECK (blocked_reason IS NULL OR length(blocked_reason) BETWEEN 1 AND 200);
ALTER TABLE show_seats DROP CONSTRAINT show_seats_status_check;
ALTER TABLE show_seats ADD CONSTRAINT show_seats_status_check
    CHECK (status IN ('AVAILABLE', 'HELD', 'BOOKED', 'BLOCKED'));
ALTER TABLE show_seats DROP CONSTRAINT show_seats_state_consistent;
ALTER TABLE show_seats ADD CONSTRAINT show_seats_state_consistent CHECK (
    (status = 'AVAILABLE' AND hold_id IS NULL AND hold_expires_at IS NULL AND booking_id IS NULL
        AND blocked_reason IS NULL)
 OR (status = 'HELD' AND hold_id IS NOT NULL AND hold_expires_at IS NOT NULL AND booking_id IS NULL
        AND blocked_reason IS NULL)
 OR (status = 'BOOKED' AND hold_id IS NULL AND hold_expires_at IS NULL AND booking_id IS NOT NULL
        AND blocked_reason IS NULL)
 OR (status = 'BLOCKED' AND hold_id IS NULL AND hold_expires_at IS NULL AND booking_id IS NULL
        AND blocked_reason IS NOT NULL)
);

-- Keyset pages of the operator's lists.
CREATE INDEX shows_by_movie ON shows (movie_id);
