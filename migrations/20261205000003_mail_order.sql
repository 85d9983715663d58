-- A buyer's e-mails go out in the order their events happened (the
-- confirmation before its cancellation), whatever the number of senders:
-- a message is claimed only when no earlier one to the same recipient is
-- still waiting. `seq` is that order (rows are inserted in stream order).
ALTER TABLE outgoing_mail ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE INDEX outgoing_mail_pending_by_recipient ON outgoing_mail (recipient, seq)
    WHERE state = 'pending';
