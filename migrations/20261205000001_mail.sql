-- E-mail to buyers (issue 15). The notifier writes one row here for each
-- event that tells a buyer something by e-mail, in the same statement
-- that records the notification, so a redelivered event (the outbox is
-- at-least-once) finds its notification and adds no second row. The
-- mailer claims due rows with FOR UPDATE SKIP LOCKED (any replica may
-- run it), sends over SMTP with a Message-ID made from the event id, and
-- marks the row sent in the transaction that held the claim.
CREATE TABLE outgoing_mail (
    event_id        uuid PRIMARY KEY,
    kind            text NOT NULL,
    recipient       text NOT NULL,
    body            jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- 5xx refusals so far: after REGION_MAIL_MAX_PERMANENT_FAILURES the
    -- row is failed; temporary failures are retried for as long as needed.
    permanent_failures integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- The mailer's queue: pending rows by when they are due.
CREATE INDEX outgoing_mail_due ON outgoing_mail (next_attempt_at) WHERE state = 'pending';
