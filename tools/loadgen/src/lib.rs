//! The load generator's pieces, shared by its binary (`loadgen`: the
//! benchmarks) and the demo (`tools/demo`): the simulated crowd of buyers,
//! how a buyer's client pays, catalog seeding, the edge's waiting-room
//! JSON and the open-model scheduler.
//!
//! Module map: `seed` (catalog through the operator API), `server` (a
//! fresh database and the workspace's release binaries as processes: the
//! region core, the sandbox gateway, the Upstash gateway), `edge` (the
//! Worker's waiting room, sales and forged passes), `openloop` (the
//! open-model scheduler), `holds_bench`, `checkout_bench` and
//! `flash_bench` (the benchmarks; `isolation` across two shards), `crowd` (simulated buyers in a flash
//! sale through the edge), `purchase` (how a buyer's client pays:
//! idempotency keys and retries), `baselines` (redis-benchmark and
//! pgbench), `checks` (Postgres and Redis inspection and cleanup),
//! `report` (the JSON lines). The HTTP clients, the workerd launcher and
//! the money audit are the test kit's (`testkit`).
//!
//! It talks to the services only over HTTP (and reads the run's own
//! database to audit it): it never links the region core.

pub mod baselines;
pub mod checkins_bench;
pub mod checkout_bench;
pub mod checks;
pub mod crowd;
pub mod edge;
pub mod edge_world;
pub mod flash_bench;
pub mod holds_bench;
pub mod isolation;
pub mod mail_bench;
pub mod openloop;
pub mod profile;
pub mod purchase;
pub mod report;
pub mod seatmap_bench;
pub mod seed;
pub mod sellout;
pub mod server;
