-- Checkout, payments, bookings, cancellations, refunds and the outbox.
--
-- Money rule (DESIGN invariant 5): a payment that succeeded at the gateway
-- ends as exactly one of: a booking (`settled = 'BOOKED'`) or a refund
-- (`settled = 'REFUNDED'`). A booking cancelled later gets its refund from
-- the same payment; `refunds.payment_id` is unique, so a payment is never
-- refunded twice.

-- The cancellation policy of each show, copied onto every booking at
-- purchase time (changing a show's policy never changes sold tickets).
ALTER TABLE shows
    ADD COLUMN refund_policy jsonb NOT NULL
    DEFAULT '{"tiers":[{"min_hours_before":24,"percent":100},{"min_hours_before":4,"percent":50}]}'
    CHECK (jsonb_typeof(refund_policy) = 'object');

-- Booking numbers: a shard-wide sequence (no hot counter row); the
-- number's date and shard code are added by the application.
CREATE SEQUENCE booking_number_seq;

-- Idempotency keys (Stripe's design as described by Brandur Leach): the
-- first response is stored and replayed; the work between is split into
-- atomic phases whose progress is `recovery_point`, so a retry after a
-- crash resumes where the last committed phase left off.
CREATE TABLE idempotency_keys (
    user_id          text NOT NULL,
    key              text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of method, path and body: the same key with other
    -- parameters is refused (422).
    request_hash     text NOT NULL,
    recovery_point   text NOT NULL DEFAULT 'started'
                     CHECK (recovery_point IN ('started', 'payment_created', 'payment_succeeded', 'finished')),
    -- Set while a request works on the key; a second request meanwhile
    -- gets 409. A crashed request's lock lapses after a timeout.
    locked_at        timestamptz,
    response_status  integer,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key),
    CHECK ((recovery_point = 'finished') = (response_status IS NOT NULL AND response_body IS NOT NULL))
);

CREATE TABLE payments (
    id                 uuid PRIMARY KEY,          -- also the gateway idempotency key and reference
    hold_id            uuid NOT NULL REFERENCES holds (id),
    show_id            uuid NOT NULL REFERENCES shows (id),
    user_id            text NOT NULL,
    idem_key           text,                      -- the checkout's Idempotency-Key (with user_id)
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    currency           text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    payment_method     text NOT NULL,
    -- CREATED: the gateway may or may not have been asked yet.
    -- SUCCEEDED: the gateway charged. FAILED: declined.
    -- ABANDONED: reconciliation found the gateway never charged it.
    status             text NOT NULL DEFAULT 'CREATED'
                       CHECK (status IN ('CREATED', 'SUCCEEDED', 'FAILED', 'ABANDONED')),
    gateway_payment_id text UNIQUE,
    failure_code       text,
    settled            text CHECK (settled IN ('BOOKED', 'REFUNDED')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (user_id, idem_key) REFERENCES idempotency_keys (user_id, key),
    CHECK (settled IS NULL OR status = 'SUCCEEDED')
);
-- A hold is paid for at most once at a time: a second checkout of the same
-- hold under another Idempotency-Key cannot charge again.
-- (A charge that lands after we gave up on it is refunded at once and
-- does not count.)
CREATE UNIQUE INDEX payments_one_open_per_hold ON payments (hold_id)
    WHERE status = 'CREATED' OR (status = 'SUCCEEDED' AND settled IS DISTINCT FROM 'REFUNDED');
CREATE INDEX payments_unsettled ON payments (updated_at)
    WHERE status = 'CREATED' OR (status = 'SUCCEEDED' AND settled IS NULL);

CREATE TABLE bookings (
    id              uuid PRIMARY KEY,
    number          text NOT NULL UNIQUE,
    show_id         uuid NOT NULL REFERENCES shows (id),
    hold_id         uuid NOT NULL UNIQUE REFERENCES holds (id),
    payment_id      uuid NOT NULL UNIQUE REFERENCES payments (id),
    user_id         text NOT NULL,
    status          text NOT NULL DEFAULT 'CONFIRMED' CHECK (status IN ('CONFIRMED', 'CANCELLED')),
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    currency        text NOT NULL,
    refund_policy   jsonb NOT NULL,
    show_starts_at  timestamptz NOT NULL,
    cancelled_at    timestamptz,
    refund_minor    bigint CHECK (refund_minor >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'CANCELLED') = (cancelled_at IS NOT NULL AND refund_minor IS NOT NULL))
);
CREATE INDEX bookings_by_user ON bookings (user_id, created_at DESC);

CREATE TABLE booking_seats (
    booking_id   uuid NOT NULL REFERENCES bookings (id),
    show_id      uuid NOT NULL,
    seat_id      uuid NOT NULL,
    label        text NOT NULL,
    category     text NOT NULL,
    price_minor  bigint NOT NULL CHECK (price_minor >= 0),
    active       boolean NOT NULL DEFAULT true,
    PRIMARY KEY (booking_id, seat_id),
    FOREIGN KEY (show_id, seat_id) REFERENCES show_seats (show_id, seat_id)
);
-- The last line against double booking: one active booking per seat.
CREATE UNIQUE INDEX booking_seats_one_active_per_seat ON booking_seats (show_id, seat_id) WHERE active;

-- A BOOKED seat names its booking and no hold.
ALTER TABLE show_seats ADD COLUMN booking_id uuid REFERENCES bookings (id);
ALTER TABLE show_seats DROP CONSTRAINT show_seats_state_consistent;
ALTER TABLE show_seats ADD CONSTRAINT show_seats_state_consistent CHECK (
    (status = 'AVAILABLE' AND hold_id IS NULL AND hold_expires_at IS NULL AND booking_id IS NULL)
 OR (status = 'HELD' AND hold_id IS NOT NULL AND hold_expires_at IS NOT NULL AND booking_id IS NULL)
 OR (status = 'BOOKED' AND hold_id IS NULL AND hold_expires_at IS NULL AND booking_id IS NOT NULL)
);

CREATE TABLE refunds (
    id                 uuid PRIMARY KEY,          -- also the gateway idempotency key
    payment_id         uuid NOT NULL UNIQUE REFERENCES payments (id),
    booking_id         uuid REFERENCES bookings (id),
    reason             text NOT NULL CHECK (reason IN ('cancellation', 'confirmation_failed', 'late_charge')),
    amount_minor       bigint NOT NULL CHECK (amount_minor > 0),
    -- PENDING until the gateway confirms; FAILED only for a refusal no
    -- retry can fix (operator attention, see the runbook).
    status             text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED')),
    attempts           integer NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    last_error         text,
    gateway_refund_id  text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_due ON refunds (next_attempt_at) WHERE status = 'PENDING';

-- Transactional outbox: written in the same transaction as the state
-- change it describes; the relay publishes in `seq` order.
CREATE TABLE outbox (
    seq           bigserial PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE,
    city_code     text NOT NULL,
    aggregate_id  uuid NOT NULL,                  -- booking or payment id
    event_type    text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- Gateway webhook events already handled (their ids), so a redelivery is
-- acknowledged without acting twice.
CREATE TABLE webhook_events (
    event_id     text PRIMARY KEY,
    event_type   text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);

-- What users are told: written by the notifier, an outbox-stream
-- consumer; the event id makes redelivered events harmless.
CREATE TABLE notifications (
    event_id    uuid PRIMARY KEY,
    user_id     text NOT NULL,
    kind        text NOT NULL,
    body        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at DESC);
