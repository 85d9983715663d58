-- A booking's view reads its refund; without this every read of it (one
-- per booking shown, or one per batch of confirmations) scanned refunds.
CREATE INDEX refunds_by_booking ON refunds (booking_id) WHERE booking_id IS NOT NULL;
