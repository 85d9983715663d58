-- The operators' audit log (issue 16): every operator write appends one
-- row saying who did what to which row, in which city, and the row before
-- and after. Append-only: the triggers below refuse UPDATE, DELETE and
-- TRUNCATE, so not even a bug in the region core can rewrite history
-- (an owner can still drop the trigger; that is a DBA's act, outside the
-- API, and leaves its own trace in Postgres' logs).
CREATE TABLE operator_audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    -- The operator token's subject.
    actor        text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    -- What was done: `show.cancel`, `refund.settle`, `venue.create`, ...
    action       text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    -- What it was done to: a kind (`show`, `refund`, ...) and its id.
    target_kind  text NOT NULL CHECK (target_kind ~ '^[a-z_]+$'),
    target_id    text NOT NULL CHECK (length(target_id) BETWEEN 1 AND 200),
    -- The city the target belongs to (NULL for what every city shares,
    -- such as a movie).
    city_code    text,
    before       jsonb,
    after        jsonb
);

CREATE INDEX operator_audit_by_target ON operator_audit (target_kind, target_id, id);
CREATE INDEX operator_audit_by_city ON operator_audit (city_code, id);

CREATE FUNCTION operator_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'operator_audit is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER operator_audit_no_rewrite
    BEFORE UPDATE OR DELETE ON operator_audit
    FOR EACH ROW EXECUTE FUNCTION operator_audit_append_only();
CREATE TRIGGER operator_audit_no_truncate
    BEFORE TRUNCATE ON operator_audit
    FOR EACH STATEMENT EXECUTE FUNCTION operator_audit_append_only();
