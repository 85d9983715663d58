-- The global catalog's own audit log (issue 16): an operator's write sent
-- straight to the catalog service (a title created, a city listed for a
-- title) is recorded here, in the write's transaction, as a shard records
-- its own writes in `operator_audit`. Same shape and the same append-only
-- triggers; its own name so one scratch database can hold both schemas
-- when sqlx checks the queries.
CREATE TABLE catalog_operator_audit (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    action       text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_kind  text NOT NULL CHECK (target_kind ~ '^[a-z_]+$'),
    target_id    text NOT NULL CHECK (length(target_id) BETWEEN 1 AND 200),
    -- The city a listing is for; NULL for a title, which every city shares.
    city_code    text,
    before       jsonb,
    after        jsonb
);

CREATE INDEX catalog_operator_audit_by_target ON catalog_operator_audit (target_kind, target_id, id);

CREATE FUNCTION catalog_operator_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'catalog_operator_audit is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER catalog_operator_audit_no_rewrite
    BEFORE UPDATE OR DELETE ON catalog_operator_audit
    FOR EACH ROW EXECUTE FUNCTION catalog_operator_audit_append_only();
CREATE TRIGGER catalog_operator_audit_no_truncate
    BEFORE TRUNCATE ON catalog_operator_audit
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_operator_audit_append_only();
