-- What the replicas of one shard agree on through its Postgres
-- (docs/adr/0016-replicas-leases-and-the-redis-path.md).

-- Leases for the jobs that must run once per shard. `epoch` grows by one
-- each time the lease changes hands; a leader's writes check it (with
-- FOR SHARE, in their own transaction), so a leader that paused past its
-- lease cannot write once another has taken over. Times are the
-- database's clock: replicas' clocks never meet.
CREATE TABLE shard_leases (
    job         text PRIMARY KEY,
    holder      text NOT NULL,
    epoch       bigint NOT NULL CHECK (epoch > 0),
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL DEFAULT now()
);

-- The shard's hold path. `generation` is even while holds go through
-- Redis (the fast path) and odd while they go to Postgres alone; it grows
-- by one at each switch. Hold batches read it under a shared transaction
-- lock and a switch takes that lock exclusively, so no hold commits
-- through a path the shard has left.
CREATE TABLE redis_path_state (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    generation  bigint NOT NULL DEFAULT 0 CHECK (generation >= 0),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text NOT NULL DEFAULT 'migration',
    reason      text NOT NULL DEFAULT ''
);
INSERT INTO redis_path_state DEFAULT VALUES;

-- Each replica's view of its link to Redis (written every second): the
-- fast path is only switched back on when every live replica reaches
-- Redis, or a replica that cannot would switch it off again at once.
CREATE TABLE replica_redis_links (
    replica     text PRIMARY KEY,
    ok          boolean NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now()
);

-- Which path each hold was committed through, and in which generation.
ALTER TABLE holds
    ADD COLUMN path text CHECK (path IN ('redis', 'postgres')),
    ADD COLUMN path_generation bigint;
