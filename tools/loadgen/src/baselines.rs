//! Same-run baselines: what the two stores can do alone for the work of a
//! hold, measured with their own benchmark tools as subprocesses.
//!
//! - Redis: `redis-benchmark` calling the region core's own seat-lock
//!   script (`ACQUIRE_LUA`, EVALSHA) on random seat keys. The ceiling of
//!   the fast path: no HTTP, no Postgres.
//! - Postgres: `pgbench` running one transaction per hold doing what a
//!   hold writes (lock the seat rows, check they are free, insert the hold,
//!   mark the seats HELD with a version bump, insert hold_seats, commit).
//!   The rate a design with one transaction per hold would be capped at.
//!
//! Both use keys/rows of their own (a bench UUID hash tag in Redis, a
//! dedicated show in Postgres) and clean up after themselves.

use crate::checks::delete_keys;
use anyhow::{bail, Context};
use redis::{ConnectionAddr, IntoConnectionInfo};
use shared::redis_scripts::ACQUIRE_LUA;
use sqlx::postgres::PgPoolOptions;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use testkit::seed::row_label;
use tokio::process::Command;
use uuid::Uuid;

/// How to run the Redis baseline.
#[derive(Debug, Clone, Copy)]
pub struct RedisSpec {
    /// Total EVALSHA calls.
    pub requests: u64,
    /// Parallel connections.
    pub clients: u32,
    /// Seat keys per call.
    pub keys: u32,
}

/// Result of the Redis baseline.
#[derive(Debug, Clone, Copy)]
pub struct RedisBaseline {
    /// Lock-script calls per second.
    pub per_s: f64,
    /// Bench keys deleted afterwards.
    pub keys_deleted: u64,
}

/// Runs `redis-benchmark` with EVALSHA of the seat-lock script.
pub async fn redis_lock(redis_url: &str, spec: RedisSpec) -> anyhow::Result<RedisBaseline> {
    let info = redis_url
        .into_connection_info()
        .context("LOADGEN_REDIS_URL")?;
    let client = redis::Client::open(info.clone())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis for the baseline")?;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(ACQUIRE_LUA)
        .query_async(&mut conn)
        .await
        .context("SCRIPT LOAD of the seat-lock script")?;

    let mut cmd = Command::new("redis-benchmark");
    match &info.addr {
        ConnectionAddr::Tcp(host, port) => {
            cmd.arg("-h").arg(host).arg("-p").arg(port.to_string());
        }
        ConnectionAddr::Unix(path) => {
            cmd.arg("-s").arg(path);
        }
        ConnectionAddr::TcpTls { .. } => bail!("the Redis baseline does not support TLS URLs"),
    }
    if let Some(user) = &info.redis.username {
        cmd.arg("--user").arg(user);
    }
    if let Some(pass) = &info.redis.password {
        cmd.arg("-a").arg(pass);
    }
    // Keys live under a hash tag of their own (like a show's), so cleanup
    // can find exactly them; __rand_int__ is replaced independently in each
    // key, from a keyspace large enough that calls rarely collide (as in
    // the HTTP run, most locks succeed and SET their keys).
    let tag = Uuid::now_v7();
    cmd.arg("--dbnum")
        .arg(info.redis.db.to_string())
        .arg("-c")
        .arg(spec.clients.to_string())
        .arg("-n")
        .arg(spec.requests.to_string())
        .arg("-r")
        .arg("100000000")
        .arg("--csv")
        .arg("EVALSHA")
        .arg(&sha)
        .arg(spec.keys.to_string());
    for _ in 0..spec.keys {
        cmd.arg(format!("seat:{{{tag}}}:__rand_int__"));
    }
    // The hold id, and a TTL short enough that keys vanish on their own
    // even if cleanup below were interrupted.
    cmd.arg(format!("{tag}")).arg("60000");
    let output = run(cmd).await;
    let deleted = delete_keys(redis_url, &format!("seat:{{{tag}}}:*"), |_| true).await;
    let out = output?;
    let per_s = parse_redis_csv(&out)
        .with_context(|| format!("parsing redis-benchmark output: {out:?}"))?;
    Ok(RedisBaseline {
        per_s,
        keys_deleted: deleted?,
    })
}

/// The requests/s of the first result row of `redis-benchmark --csv`.
fn parse_redis_csv(out: &str) -> anyhow::Result<f64> {
    for line in out.lines().filter(|l| !l.starts_with("\"test\"")) {
        let fields: Vec<&str> = line.split("\",\"").collect();
        if let Some(rps) = fields.get(1) {
            if let Ok(v) = rps.trim_matches('"').parse::<f64>() {
                return Ok(v);
            }
        }
    }
    bail!("no result row")
}

/// How to run the Postgres baseline.
#[derive(Debug, Clone, Copy)]
pub struct PgSpec {
    /// pgbench clients (`-c`).
    pub clients: u32,
    /// pgbench threads (`-j`).
    pub threads: u32,
    /// Duration (`-T`), seconds.
    pub secs: u32,
    /// Seats of the bench show.
    pub seats: u32,
}

/// Options of the pgbench baseline (shared by `holds` and `checkout`).
#[derive(Debug, Clone, clap::Args)]
pub struct PgbenchArgs {
    /// pgbench clients.
    #[arg(long, default_value_t = 8)]
    pub pgbench_clients: u32,

    /// pgbench threads.
    #[arg(long, default_value_t = 2)]
    pub pgbench_threads: u32,

    /// pgbench duration, seconds.
    #[arg(long, default_value_t = 5)]
    pub pgbench_secs: u32,

    /// Seats of the pgbench show.
    #[arg(long, default_value_t = 100_000)]
    pub pgbench_seats: u32,
}

impl PgbenchArgs {
    /// Runs [`pg_hold_tx`] against `db_url` in a scratch directory,
    /// reporting progress on stderr.
    pub async fn run(&self, db_url: &str) -> anyhow::Result<PgBaseline> {
        eprintln!(
            "loadgen: baseline: pgbench one tx per hold, -c {} -j {} -T {}",
            self.pgbench_clients, self.pgbench_threads, self.pgbench_secs
        );
        let workdir = std::env::temp_dir().join(format!("loadgen-{}", crate::seed::short_tag()));
        tokio::fs::create_dir_all(&workdir)
            .await
            .with_context(|| format!("creating {}", workdir.display()))?;
        let pg = pg_hold_tx(
            db_url,
            PgSpec {
                clients: self.pgbench_clients,
                threads: self.pgbench_threads,
                secs: self.pgbench_secs,
                seats: self.pgbench_seats,
            },
            &workdir,
        )
        .await
        .context("postgres baseline");
        let _ = tokio::fs::remove_dir_all(&workdir).await;
        let pg = pg?;
        eprintln!(
            "loadgen:   {:.0} hold tx/s ({:.0} holds written/s)",
            pg.tps, pg.holds_per_s
        );
        Ok(pg)
    }
}

/// Result of the Postgres baseline.
#[derive(Debug, Clone, Copy)]
pub struct PgBaseline {
    /// Hold transactions per second (pgbench's tps, connection time
    /// excluded).
    pub tps: f64,
    /// Holds actually written per second (a transaction whose seats were
    /// taken commits without writing).
    pub holds_per_s: f64,
}

/// The pgbench script: one transaction per hold of 1-4 adjacent seats.
/// The first statement locks the seats (in seat-id order, as the region
/// core does) and returns how many are free plus a new hold id.
fn hold_tx_script(show: Uuid, seats: u32) -> String {
    let max_start = seats.saturating_sub(4);
    format!(
        r#"\set n random(1, 4)
\set o random(0, {max_start})
\set e :o + :n
BEGIN;
SELECT count(*) FILTER (WHERE status = 'AVAILABLE') AS free, gen_random_uuid() AS hid
  FROM (SELECT status FROM show_seats
         WHERE show_id = '{show}' AND ordinal >= :o AND ordinal < :e
         ORDER BY seat_id FOR UPDATE) s \gset
\if :free = :n
INSERT INTO holds (id, show_id, user_id, seat_count, expires_at)
  VALUES (:hid, '{show}', 'pgbench', :n, now() + interval '10 minutes');
UPDATE show_seats
   SET status = 'HELD', hold_id = :hid, hold_expires_at = now() + interval '10 minutes', version = version + 1
 WHERE show_id = '{show}' AND ordinal >= :o AND ordinal < :e AND status = 'AVAILABLE';
INSERT INTO hold_seats (hold_id, show_id, seat_id)
  SELECT :hid, show_id, seat_id FROM show_seats
   WHERE show_id = '{show}' AND ordinal >= :o AND ordinal < :e;
\endif
COMMIT;
"#
    )
}

/// Creates a show of `seats` seats directly in SQL (the database may have
/// no region core in front of it) and returns its id.
async fn seed_pg_show(db_url: &str, seats: u32) -> anyhow::Result<Uuid> {
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(db_url)
        .await
        .context("connecting to the baseline database")?;
    testkit::db::migrate(&pool).await?;
    let (venue, screen, movie, show) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let per_row = 100u32;
    let rows: Vec<String> = (0..seats)
        .map(|i| row_label((i / per_row) as usize))
        .collect();
    let numbers: Vec<i32> = (0..seats).map(|i| (i % per_row + 1) as i32).collect();
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO cities (code, name) VALUES ('pgbench', 'pgbench baseline') ON CONFLICT DO NOTHING")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO venues (id, city_code, name, time_zone) VALUES ($1, 'pgbench', $2, 'UTC')",
    )
    .bind(venue)
    .bind(format!("pgbench {venue}"))
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO screens (id, venue_id, name) VALUES ($1, $2, 'pgbench')")
        .bind(screen)
        .bind(venue)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO seats (id, screen_id, row_label, number, category, ordinal)
         SELECT gen_random_uuid(), $1, u.r, u.n, 'STANDARD', u.o - 1
           FROM unnest($2::text[], $3::int[]) WITH ORDINALITY AS u(r, n, o)",
    )
    .bind(screen)
    .bind(&rows)
    .bind(&numbers)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO movies (id, title, duration_minutes) VALUES ($1, 'pgbench', 120)")
        .bind(movie)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO shows (id, screen_id, movie_id, starts_at, prices, currency, seat_count)
         VALUES ($1, $2, $3, now() + interval '30 days', '{\"STANDARD\": 25000}', 'INR', $4)",
    )
    .bind(show)
    .bind(screen)
    .bind(movie)
    .bind(seats as i32)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO show_seats (show_id, seat_id, ordinal) SELECT $1, id, ordinal FROM seats WHERE screen_id = $2")
        .bind(show)
        .bind(screen)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    // Bring the fresh rows to the state a long-running database keeps them
    // in (statistics, hint bits, visibility map), so that neither planner
    // guesses nor autovacuum arriving mid-run skew the baseline.
    sqlx::query("VACUUM (ANALYZE) seats, show_seats, holds, hold_seats")
        .execute(&pool)
        .await?;
    // Flush the seeding's dirty buffers now rather than during the run
    // (needs superuser or pg_checkpoint; without it the baseline is merely
    // noisier).
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&pool).await {
        eprintln!("loadgen:   (no CHECKPOINT before pgbench: {e})");
    }
    pool.close().await;
    Ok(show)
}

/// Runs pgbench with the hold-transaction script against `db_url`.
pub async fn pg_hold_tx(db_url: &str, spec: PgSpec, workdir: &Path) -> anyhow::Result<PgBaseline> {
    let show = seed_pg_show(db_url, spec.seats).await?;
    let script = workdir.join("hold_tx.sql");
    tokio::fs::write(&script, hold_tx_script(show, spec.seats))
        .await
        .with_context(|| format!("writing {}", script.display()))?;
    let mut cmd = Command::new("pgbench");
    // -n: there are no pgbench_* tables to vacuum; -M prepared: parse each
    // statement once per connection, as sqlx does in the region core.
    cmd.arg("-n")
        .arg("-M")
        .arg("prepared")
        .arg("-c")
        .arg(spec.clients.to_string())
        .arg("-j")
        .arg(spec.threads.to_string())
        .arg("-T")
        .arg(spec.secs.to_string())
        .arg("-f")
        .arg(&script)
        .arg(db_url);
    let out = run(cmd).await?;
    let tps =
        parse_pgbench_tps(&out).with_context(|| format!("parsing pgbench output: {out:?}"))?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(db_url)
        .await?;
    let (holds,): (i64,) = sqlx::query_as("SELECT count(*) FROM holds WHERE show_id = $1")
        .bind(show)
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(PgBaseline {
        tps,
        holds_per_s: holds as f64 / f64::from(spec.secs.max(1)),
    })
}

/// pgbench's `tps = N (without initial connection time)`.
fn parse_pgbench_tps(out: &str) -> anyhow::Result<f64> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("tps = "))
        .filter_map(|rest| rest.split_whitespace().next())
        .find_map(|v| v.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no 'tps = ' line"))
}

/// Runs a benchmark tool to completion; its stdout, or an error with its
/// stderr.
async fn run(mut cmd: Command) -> anyhow::Result<String> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let out = "\"test\",\"rps\",\"avg_latency_ms\"\n\"EVALSHA abc 2 k1 k2 a 1000\",\"18867.92\",\"0.198\"\n";
        assert_eq!(parse_redis_csv(out).ok(), Some(18867.92));
        assert!(parse_redis_csv("garbage").is_err());
    }

    #[test]
    fn parses_pgbench_tps() {
        let out = "latency average = 4.1 ms\ninitial connection time = 12.3 ms\ntps = 1932.517236 (without initial connection time)\n";
        assert_eq!(parse_pgbench_tps(out).ok(), Some(1932.517236));
        assert!(parse_pgbench_tps("nothing").is_err());
    }

    #[test]
    fn script_names_the_show_and_checks_availability() {
        let show = Uuid::nil();
        let s = hold_tx_script(show, 1000);
        assert!(s.contains("random(0, 996)"));
        assert!(s.contains(&show.to_string()));
        assert!(s.contains("\\if :free = :n"));
        assert!(s.contains("version = version + 1"));
    }
}
