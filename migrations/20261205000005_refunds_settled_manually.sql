-- Operators act on refunds that need attention (issue 16): a FAILED
-- refund is retried (back to PENDING) or settled by hand, outside the
-- gateway. A hand settlement is its own status, so the ledger says how the
-- money went back, the worker (which sends only PENDING rows) never sends
-- it again, and reports count it as refunded. Who acted, when and why are
-- kept on the row.
ALTER TABLE refunds DROP CONSTRAINT refunds_status_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_status_check
    CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'SETTLED_MANUALLY'));

ALTER TABLE refunds
    ADD COLUMN settled_by   text,
    ADD COLUMN settled_at   timestamptz,
    ADD COLUMN settle_note  text CHECK (length(settle_note) BETWEEN 1 AND 1000),
    -- The last operator retry of a FAILED refund.
    ADD COLUMN retried_by   text,
    ADD COLUMN retried_at   timestamptz,
    ADD CONSTRAINT refunds_settled_by_hand CHECK (
        (status = 'SETTLED_MANUALLY')
        = (settled_by IS NOT NULL AND settled_at IS NOT NULL AND settle_note IS NOT NULL));

-- The operator's list of refunds needing attention (FAILED, PENDING),
-- oldest first.
CREATE INDEX refunds_needing_attention ON refunds (status, created_at)
    WHERE status IN ('PENDING', 'FAILED');

-- Sales reports read bookings by when they were sold; a show's bookings
-- are paged by (created_at, id).
CREATE INDEX bookings_by_created ON bookings (created_at);
CREATE INDEX bookings_by_show ON bookings (show_id, created_at, id);
