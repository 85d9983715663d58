-- Cancelling a show (issue 16): the organiser calls a show off. Its
-- status lives on the show, its work in a job row that any replica can
-- resume after a crash.

-- A show is SCHEDULED until an operator cancels it; never back.
ALTER TABLE shows
    ADD COLUMN status text NOT NULL DEFAULT 'SCHEDULED'
        CHECK (status IN ('SCHEDULED', 'CANCELLED')),
    ADD COLUMN cancelled_at timestamptz,
    ADD CONSTRAINT shows_cancelled_when CHECK ((status = 'CANCELLED') = (cancelled_at IS NOT NULL));

-- The organiser's cancellation refunds in full, whatever the buyer
-- policy says; its refunds say so.
ALTER TABLE refunds DROP CONSTRAINT refunds_reason_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_reason_check
    CHECK (reason IN ('cancellation', 'confirmation_failed', 'late_charge', 'show_cancelled'));

-- One cancellation per show (the unique show_id makes a second call find
-- the first). RUNNING until every booking is cancelled, every hold
-- released and every refund has left PENDING; the counters are bumped in
-- the transaction that does each batch, so they never run ahead of it.
CREATE TABLE show_cancellations (
    id                  uuid PRIMARY KEY,
    show_id             uuid NOT NULL UNIQUE REFERENCES shows (id),
    status              text NOT NULL DEFAULT 'RUNNING' CHECK (status IN ('RUNNING', 'DONE')),
    reason              text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    requested_by        text NOT NULL CHECK (length(requested_by) BETWEEN 1 AND 200),
    -- Taken after the show row's lock: every booking of the show was
    -- created before it, none after.
    started_at          timestamptz NOT NULL,
    finished_at         timestamptz,
    bookings_cancelled  integer NOT NULL DEFAULT 0 CHECK (bookings_cancelled >= 0),
    holds_released      integer NOT NULL DEFAULT 0 CHECK (holds_released >= 0),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'DONE') = (finished_at IS NOT NULL))
);
CREATE INDEX show_cancellations_running ON show_cancellations (started_at) WHERE status = 'RUNNING';

-- The last line for bookings: none of a cancelled show, whatever path
-- (or bug) writes it. The show row is locked FOR KEY SHARE (as the
-- foreign key's check does), so this waits for a cancellation being
-- committed (it locks the row FOR UPDATE) and then sees it; and a
-- cancellation waits for every transaction that checked the row before
-- it. The region core checks the same way before writing (checkout
-- refunds the charge instead), so this fires only when that check is
-- missing. Holds have no trigger: they are written by one statement
-- (`holds::store::apply_accepted`), whose batch checks the status the
-- same way first, and a per-row lookup on the hottest insert of a flash
-- sale would slow every batch for a case that code already refuses.
CREATE FUNCTION refuse_cancelled_show() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s text;
BEGIN
    SELECT status INTO s FROM shows WHERE id = NEW.show_id FOR KEY SHARE;
    IF s = 'CANCELLED' THEN
        RAISE EXCEPTION 'show % is cancelled: no new % may be written', NEW.show_id, TG_TABLE_NAME
            USING ERRCODE = 'check_violation', CONSTRAINT = 'show_not_cancelled';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER bookings_refuse_cancelled_show BEFORE INSERT ON bookings
    FOR EACH ROW EXECUTE FUNCTION refuse_cancelled_show();
