//! The invariant checker: reads Postgres (and Redis) after a run and
//! counts every way the seat invariants could be broken. Tests assert all
//! counts are zero; the negative controls assert the checker sees a break.

use redis::AsyncCommands;
use sqlx::PgPool;
use std::collections::HashMap;
use uuid::Uuid;

/// Counts of violations; all zero when the invariants hold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// (show, seat) pairs in more than one live hold. Invariant 1.
    pub double_live_holds: i64,
    /// Seat rows whose holder disagrees with the live hold_seats rows.
    pub owner_mismatch: i64,
    /// Holds that own some but not all of their seats, or own seats while
    /// not active. Invariant 2.
    pub partial_holds: i64,
    /// Live held seats whose Redis key does not name their hold.
    pub redis_missing: usize,
    /// Redis seat keys naming a hold that does not own the seat.
    pub redis_extra: usize,
}

impl Report {
    /// True when Postgres alone is consistent.
    pub fn postgres_ok(&self) -> bool {
        self.double_live_holds == 0 && self.owner_mismatch == 0 && self.partial_holds == 0
    }
}

async fn count(db: &PgPool, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>(sql).fetch_one(db).await?)
}

/// Checks Postgres only.
pub async fn check_postgres(db: &PgPool) -> anyhow::Result<Report> {
    let double_live_holds = count(
        db,
        "SELECT count(*) FROM (SELECT show_id, seat_id FROM hold_seats WHERE live
                                GROUP BY 1, 2 HAVING count(*) > 1) x",
    )
    .await?;
    let owner_mismatch = count(
        db,
        "SELECT (SELECT count(*) FROM hold_seats hs JOIN show_seats ss USING (show_id, seat_id)
                  WHERE hs.live AND (ss.status <> 'HELD' OR ss.hold_id <> hs.hold_id))
              + (SELECT count(*) FROM show_seats ss WHERE ss.status = 'HELD' AND NOT EXISTS (
                   SELECT 1 FROM hold_seats hs
                    WHERE hs.live AND hs.hold_id = ss.hold_id AND hs.seat_id = ss.seat_id))",
    )
    .await?;
    let partial_holds = count(
        db,
        "SELECT count(*) FROM holds h
          WHERE (h.state = 'ACTIVE' AND h.expires_at > now()
                 AND h.seat_count <> (SELECT count(*) FROM hold_seats hs WHERE hs.hold_id = h.id AND hs.live))
             OR (h.state <> 'ACTIVE' AND EXISTS (SELECT 1 FROM hold_seats hs WHERE hs.hold_id = h.id AND hs.live))",
    )
    .await?;
    Ok(Report {
        double_live_holds,
        owner_mismatch,
        partial_holds,
        ..Report::default()
    })
}

/// Checks Postgres, and that Redis agrees with it for `shows`.
pub async fn check(db: &PgPool, redis_url: &str, shows: &[String]) -> anyhow::Result<Report> {
    let mut report = check_postgres(db).await?;
    let mut conn = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    for show in shows {
        let show_id = Uuid::parse_str(show)?;
        let held: Vec<(String, Uuid)> = sqlx::query_as(
            "SELECT s.label, ss.hold_id FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
              WHERE ss.show_id = $1 AND ss.status = 'HELD' AND ss.hold_expires_at > now()",
        )
        .bind(show_id)
        .fetch_all(db)
        .await?;
        let pg: HashMap<String, String> = held
            .into_iter()
            .map(|(label, hold)| (format!("seat:{{{show}}}:{label}"), hold.to_string()))
            .collect();
        let keys: Vec<String> = conn.keys(format!("seat:{{{show}}}:*")).await?;
        let mut redis_map = HashMap::new();
        for k in keys {
            let v: Option<String> = conn.get(&k).await?;
            if let Some(v) = v {
                redis_map.insert(k, v);
            }
        }
        report.redis_missing += pg
            .iter()
            .filter(|(k, v)| redis_map.get(*k) != Some(*v))
            .count();
        report.redis_extra += redis_map
            .iter()
            .filter(|(k, v)| pg.get(*k) != Some(*v))
            .count();
    }
    Ok(report)
}
