-- A flash sale's waiting-room settings, beside the show's sale_mode: the
-- one place a sale is configured (docs/adr/0021-one-source-for-a-flash-sale.md).
-- The edge's waiting room is derived from this row; a show whose
-- sale_mode is 'flash_sale' has one (the API writes both in one
-- transaction), an 'open' show has none.
CREATE TABLE show_sales (
    show_id      uuid PRIMARY KEY REFERENCES shows (id) ON DELETE CASCADE,
    opens_at     timestamptz NOT NULL,
    rate_per_sec double precision NOT NULL CHECK (rate_per_sec > 0 AND rate_per_sec <= 100000),
    pass_ttl_s   integer NOT NULL CHECK (pass_ttl_s BETWEEN 10 AND 86400),
    grace_s      integer NOT NULL CHECK (grace_s BETWEEN 3 AND 86400),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
