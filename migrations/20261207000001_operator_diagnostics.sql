-- Operator diagnostics (issue 16: no runbook step needs SQL). What the
-- operator API's new reads and the e-mail re-send look up.

-- Who gets e-mail: a user id that is an address (buyers on the web sign
-- in with theirs). One definition for the notifier, which queues mail,
-- and the operator's re-send of a booking's confirmation.
CREATE FUNCTION is_mail_address(text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT $1 ~ '^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$' $$;

-- A booking's e-mails (the event body names the booking): a re-sent
-- confirmation is refused while one is still waiting.
CREATE INDEX outgoing_mail_by_booking ON outgoing_mail ((body ->> 'booking_id'));

-- Messages given up, newest first: the operator's list and re-send.
CREATE INDEX outgoing_mail_failed ON outgoing_mail (seq) WHERE state = 'failed';

-- Shows kept overlapping when the overlap constraint came: the
-- operator's list of them.
CREATE INDEX shows_overlap_unchecked ON shows (screen_id, starts_at) WHERE NOT overlap_checked;
