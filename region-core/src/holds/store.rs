//! SQL of the hold tables (`holds`, `hold_seats`, and the hold columns of
//! `show_seats`). Every path locks `show_seats` rows first, in
//! (show_id, seat_id) order, then touches `hold_seats` and `holds`: one
//! lock order for all, so paths cannot deadlock each other.

use super::decide::{Decision, SeatKey, SeatRow};
use chrono::{DateTime, Utc};
use shared::SeatState;
use sqlx::{PgConnection, Postgres, Transaction};
use std::collections::HashMap;
use uuid::Uuid;

/// A hold about to be written.
#[derive(Debug, Clone)]
pub struct NewHold {
    /// Hold id (fencing token).
    pub hold_id: Uuid,
    /// Show id.
    pub show_id: Uuid,
    /// Holder.
    pub user_id: String,
    /// Seat ids, sorted.
    pub seat_ids: Vec<Uuid>,
    /// Their seat-map ordinals, same order.
    pub ordinals: Vec<i32>,
    /// End of the hold.
    pub expires_at: DateTime<Utc>,
    /// The admission pass it was taken with (flash-sale shows).
    pub admission_pass_id: Option<String>,
    /// The path it took, in the generation it took it in.
    pub path: HoldPath,
}

/// Which path a hold took (`crate::path_switch`), with the shard's path
/// generation as the replica saw it then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldPath {
    /// Locked in Redis first.
    Redis {
        /// Generation the lock was taken in.
        generation: i64,
    },
    /// Postgres alone.
    Postgres {
        /// Generation the path was chosen in.
        generation: i64,
    },
}

impl HoldPath {
    /// The `holds.path` value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Redis { .. } => "redis",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// The generation it was chosen in.
    pub fn generation(self) -> i64 {
        match self {
            Self::Redis { generation } | Self::Postgres { generation } => generation,
        }
    }

    /// Whether a hold that took this path may commit while the shard is
    /// in `current`: a Redis lock only in the generation it was taken in
    /// (a switch in between may have re-asserted Redis without it), a
    /// Postgres-only hold only while the shard is on Postgres alone.
    pub fn admissible(self, current: i64) -> bool {
        match self {
            Self::Redis { generation } => generation == current && current % 2 == 0,
            Self::Postgres { .. } => current % 2 == 1,
        }
    }
}

/// A seat's status (the `show_seats.status` column). The seat map and the
/// decision speak [`SeatState`]; this is how the column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeatStatus {
    /// Free to hold.
    Available,
    /// In a hold (which may have ended, if the sweeper is behind).
    Held,
    /// Sold.
    Booked,
    /// Out of sale by an operator (house seat, broken seat).
    Blocked,
}

impl SeatStatus {
    /// The column's spelling.
    pub fn as_db_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Held => "HELD",
            Self::Booked => "BOOKED",
            Self::Blocked => "BLOCKED",
        }
    }
}

impl From<SeatStatus> for SeatState {
    /// A blocked seat reads as booked: taken, for the hold decision
    /// (refused on both paths) and on the seat map (unavailable) alike.
    fn from(s: SeatStatus) -> Self {
        match s {
            SeatStatus::Available => SeatState::Available,
            SeatStatus::Held => SeatState::Held,
            SeatStatus::Booked | SeatStatus::Blocked => SeatState::Booked,
        }
    }
}

/// A `show_seats` row as [`lock_rows`] reads it.
struct LockedSeat {
    show_id: Uuid,
    seat_id: Uuid,
    status: SeatStatus,
    hold_id: Option<Uuid>,
    hold_expires_at: Option<DateTime<Utc>>,
    version: i64,
}

/// Locks (or, for the negative control, merely reads) the rows of `keys`.
/// `nowait`: fail at once with 55P03 instead of waiting for a lock.
pub async fn lock_rows(
    conn: &mut PgConnection,
    keys: &[SeatKey],
    nowait: bool,
    protect: bool,
) -> Result<HashMap<SeatKey, SeatRow>, sqlx::Error> {
    let shows: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let seats: Vec<Uuid> = keys.iter().map(|k| k.1).collect();
    // One statement with three locking clauses: the macro checks whole
    // statements, so each clause is appended as a literal.
    macro_rules! select_seats {
        ($lock:literal) => {
            sqlx::query_as!(
                LockedSeat,
                r#"SELECT ss.show_id, ss.seat_id, ss.status AS "status: SeatStatus", ss.hold_id,
                          ss.hold_expires_at, ss.version
                     FROM show_seats ss
                    WHERE (ss.show_id, ss.seat_id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))
                    ORDER BY ss.show_id, ss.seat_id
                    "# + $lock,
                &shows,
                &seats
            )
            .fetch_all(&mut *conn)
            .await?
        };
    }
    let rows = match (protect, nowait) {
        (false, _) => select_seats!(""),
        (true, false) => select_seats!("FOR UPDATE"),
        (true, true) => select_seats!("FOR UPDATE NOWAIT"),
    };
    Ok(rows
        .into_iter()
        .map(|r| {
            let row = SeatRow {
                status: r.status.into(),
                hold_id: r.hold_id,
                hold_expires_at: r.hold_expires_at,
                version: r.version,
            };
            ((r.show_id, r.seat_id), row)
        })
        .collect())
}

/// Why writing accepted holds failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A row changed under us despite the lock (optimistic check failed):
    /// the transaction must be rolled back and retried.
    #[error("seat row version changed: expected {expected} rows, updated {updated}")]
    VersionMismatch {
        /// Rows that should have changed.
        expected: u64,
        /// Rows that did.
        updated: u64,
    },
    /// Database error.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Writes the accepted holds of a batch: the takeovers of expired
/// holders (rare: only seats the sweeper has not reached yet), then one
/// statement that inserts the hold rows, moves the seat rows to HELD with
/// a version check and links them in `hold_seats`. So a group commit costs
/// the same round trips whatever its size.
pub async fn apply_accepted(
    tx: &mut Transaction<'_, Postgres>,
    holds: &[&NewHold],
    decisions: &[&Decision],
    rows: &HashMap<SeatKey, SeatRow>,
    protect: bool,
) -> Result<(), ApplyError> {
    if holds.is_empty() {
        return Ok(());
    }
    expire_takeovers(tx, decisions).await?;
    let expected: u64 = holds.iter().map(|h| h.seat_ids.len() as u64).sum();
    let updated = insert_and_take(tx, holds, rows, protect).await? as u64;
    if updated != expected {
        return Err(ApplyError::VersionMismatch { expected, updated });
    }
    Ok(())
}

/// The one statement of [`apply_accepted`]: inserts the holds, moves their
/// seat rows to HELD (with the version check when `protect`) and links
/// them. Returns how many seat rows it moved.
async fn insert_and_take(
    tx: &mut Transaction<'_, Postgres>,
    holds: &[&NewHold],
    rows: &HashMap<SeatKey, SeatRow>,
    protect: bool,
) -> Result<i64, sqlx::Error> {
    let ids: Vec<Uuid> = holds.iter().map(|h| h.hold_id).collect();
    let shows: Vec<Uuid> = holds.iter().map(|h| h.show_id).collect();
    let users: Vec<&str> = holds.iter().map(|h| h.user_id.as_str()).collect();
    let counts: Vec<i32> = holds.iter().map(|h| h.seat_ids.len() as i32).collect();
    let exps: Vec<DateTime<Utc>> = holds.iter().map(|h| h.expires_at).collect();
    let passes: Vec<Option<&str>> = holds
        .iter()
        .map(|h| h.admission_pass_id.as_deref())
        .collect();
    let paths: Vec<&str> = holds.iter().map(|h| h.path.name()).collect();
    let generations: Vec<i64> = holds.iter().map(|h| h.path.generation()).collect();
    let mut s_show = Vec::new();
    let mut s_seat = Vec::new();
    let mut s_hold = Vec::new();
    let mut s_exp = Vec::new();
    let mut s_ver = Vec::new();
    for h in holds {
        for seat in &h.seat_ids {
            s_show.push(h.show_id);
            s_seat.push(*seat);
            s_hold.push(h.hold_id);
            s_exp.push(h.expires_at);
            s_ver.push(rows.get(&(h.show_id, *seat)).map_or(0, |r| r.version));
        }
    }
    // The version check is the optimistic third line (seed Q1): with the
    // rows locked it always matches; if it ever does not, the caller rolls
    // the whole transaction back. Foreign keys are checked at the end of
    // the statement, so the seat rows may name holds inserted beside them.
    // The macro checks whole statements: the check is spliced in as a
    // literal, once with and once without.
    macro_rules! take_seats {
        ($version_check:literal) => {
            sqlx::query_scalar!(
                r#"WITH new_holds AS (
                     INSERT INTO holds (id, show_id, user_id, seat_count, expires_at, admission_pass_id, path, path_generation)
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::timestamptz[], $11::text[], $12::text[], $13::bigint[])
                 ), taken AS (
                     UPDATE show_seats ss
                        SET status = 'HELD', hold_id = u.hold_id, hold_expires_at = u.exp, version = ss.version + 1
                       FROM unnest($6::uuid[], $7::uuid[], $8::uuid[], $9::timestamptz[], $10::bigint[])
                            AS u(show_id, seat_id, hold_id, exp, version)
                      WHERE ss.show_id = u.show_id AND ss.seat_id = u.seat_id "#
                    + $version_check
                    + r#"
                  RETURNING ss.hold_id, ss.show_id, ss.seat_id
                 ), linked AS (
                     -- Each seat's price as the show has it now: what
                     -- checkout charges, whatever the operator changes
                     -- after (migration 20261206000020).
                     INSERT INTO hold_seats (hold_id, show_id, seat_id, price_minor)
                     SELECT t.hold_id, t.show_id, t.seat_id, (sh.prices ->> s.category)::bigint
                       FROM taken t JOIN seats s ON s.id = t.seat_id JOIN shows sh ON sh.id = t.show_id
                 )
                 SELECT count(*) AS "count!" FROM taken"#,
                &ids,
                &shows,
                &users as &[&str],
                &counts,
                &exps,
                &s_show,
                &s_seat,
                &s_hold,
                &s_exp,
                &s_ver,
                &passes as &[Option<&str>],
                &paths as &[&str],
                &generations
            )
            .fetch_one(&mut **tx)
            .await?
        };
    }
    Ok(if protect {
        take_seats!("AND ss.version = u.version")
    } else {
        take_seats!("")
    })
}

/// Expired holders lose the seats a batch takes over. This must precede
/// the new hold_seats rows: the partial unique index allows one live row
/// per seat.
async fn expire_takeovers(
    tx: &mut Transaction<'_, Postgres>,
    decisions: &[&Decision],
) -> Result<(), sqlx::Error> {
    let (old_holds, old_seats): (Vec<Uuid>, Vec<Uuid>) = decisions
        .iter()
        .flat_map(|d| match d {
            Decision::Accept { takeovers } => takeovers.clone(),
            Decision::Reject { .. } => vec![],
        })
        .unzip();
    if old_holds.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "UPDATE hold_seats SET live = false
          WHERE live AND (hold_id, seat_id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
        &old_holds,
        &old_seats
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "UPDATE holds SET state = 'EXPIRED', updated_at = now()
          WHERE id = ANY($1) AND state = 'ACTIVE'",
        &old_holds
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A stored hold with its seats.
#[derive(Debug, Clone)]
pub struct StoredHold {
    /// Hold id.
    pub id: Uuid,
    /// Show id.
    pub show_id: Uuid,
    /// Holder.
    pub user_id: String,
    /// State column.
    pub state: String,
    /// End.
    pub expires_at: DateTime<Utc>,
    /// Extension used.
    pub extended: bool,
    /// (label, ordinal) of every seat the hold was created with, by ordinal.
    pub seats: Vec<(String, i32)>,
}

/// Loads a hold and its seats.
pub async fn fetch(conn: &mut PgConnection, id: Uuid) -> Result<Option<StoredHold>, sqlx::Error> {
    let head = sqlx::query!(
        "SELECT show_id, user_id, state, expires_at, extended FROM holds WHERE id = $1",
        id
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(head) = head else {
        return Ok(None);
    };
    let seats = sqlx::query!(
        "SELECT s.label, ss.ordinal
           FROM hold_seats hs
           JOIN seats s ON s.id = hs.seat_id
           JOIN show_seats ss ON ss.show_id = hs.show_id AND ss.seat_id = hs.seat_id
          WHERE hs.hold_id = $1
          ORDER BY ss.ordinal",
        id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(StoredHold {
        id,
        show_id: head.show_id,
        user_id: head.user_id,
        state: head.state,
        expires_at: head.expires_at,
        extended: head.extended,
        seats: seats.into_iter().map(|s| (s.label, s.ordinal)).collect(),
    }))
}

/// Locks the seat rows still owned by `hold` (fencing: rows another hold
/// has taken are not ours and are not returned). Returns their ordinals.
pub async fn lock_owned_seats(
    conn: &mut PgConnection,
    show: Uuid,
    hold: Uuid,
) -> Result<Vec<i32>, sqlx::Error> {
    let owned = lock_owned_seat_ids(conn, show, hold).await?;
    Ok(owned.into_iter().map(|(ordinal, _)| ordinal).collect())
}

/// [`lock_owned_seats`] with each seat's id: (ordinal, seat id).
pub async fn lock_owned_seat_ids(
    conn: &mut PgConnection,
    show: Uuid,
    hold: Uuid,
) -> Result<Vec<(i32, Uuid)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT ordinal, seat_id FROM show_seats
          WHERE show_id = $1 AND hold_id = $2 AND status = 'HELD'
          ORDER BY show_id, seat_id
          FOR UPDATE",
        show,
        hold
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.ordinal, r.seat_id)).collect())
}

/// Releases an active, unexpired hold: seats back to AVAILABLE. Returns
/// the freed ordinals, or `None` (changing nothing) if the hold is not
/// active at `now`.
pub async fn release(
    tx: &mut Transaction<'_, Postgres>,
    show: Uuid,
    hold: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<Vec<i32>>, sqlx::Error> {
    let owned = lock_owned_seats(tx, show, hold).await?;
    let done = sqlx::query!(
        "UPDATE holds SET state = 'RELEASED', updated_at = now()
          WHERE id = $1 AND state = 'ACTIVE' AND expires_at > $2",
        hold,
        now
    )
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if done == 0 {
        return Ok(None);
    }
    free_seats_of(tx, show, hold).await?;
    Ok(Some(owned))
}

/// Seats of `hold` back to AVAILABLE; its hold_seats rows no longer live.
async fn free_seats_of(
    tx: &mut Transaction<'_, Postgres>,
    show: Uuid,
    hold: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE show_seats
            SET status = 'AVAILABLE', hold_id = NULL, hold_expires_at = NULL, version = version + 1
          WHERE show_id = $1 AND hold_id = $2 AND status = 'HELD'",
        show,
        hold
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "UPDATE hold_seats SET live = false WHERE hold_id = $1 AND live",
        hold
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Extends an active, unexpired, never-extended hold that still owns all
/// its seats to `new_expiry`. Returns false (changing nothing) otherwise.
pub async fn extend(
    tx: &mut Transaction<'_, Postgres>,
    show: Uuid,
    hold: Uuid,
    now: DateTime<Utc>,
    new_expiry: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let owned = lock_owned_seats(tx, show, hold).await?;
    let done = sqlx::query!(
        "UPDATE holds SET expires_at = $3, extended = true, updated_at = now()
          WHERE id = $1 AND state = 'ACTIVE' AND expires_at > $2 AND NOT extended AND seat_count = $4",
        hold,
        now,
        new_expiry,
        owned.len() as i32
    )
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if done == 0 {
        return Ok(false);
    }
    sqlx::query!(
        "UPDATE show_seats SET hold_expires_at = $3, version = version + 1
          WHERE show_id = $1 AND hold_id = $2 AND status = 'HELD'",
        show,
        hold,
        new_expiry
    )
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// One seat freed by the sweeper.
#[derive(Debug, Clone)]
pub struct FreedSeat {
    /// Show id.
    pub show_id: Uuid,
    /// Seat-map ordinal.
    pub ordinal: i32,
}

/// Frees up to `limit` seats whose hold ended at or before `now`, skipping
/// rows other transactions hold (so the sweeper never blocks a hold), and
/// marks their holds EXPIRED. Returns the freed seats.
pub async fn sweep_expired(
    tx: &mut Transaction<'_, Postgres>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<FreedSeat>, sqlx::Error> {
    let freed = sqlx::query!(
        r#"WITH expired AS (
             SELECT show_id, seat_id, hold_id FROM show_seats
              WHERE status = 'HELD' AND hold_expires_at <= $1
              ORDER BY show_id, seat_id
              LIMIT $2
              FOR UPDATE SKIP LOCKED)
         UPDATE show_seats ss
            SET status = 'AVAILABLE', hold_id = NULL, hold_expires_at = NULL, version = ss.version + 1
           FROM expired e
          WHERE ss.show_id = e.show_id AND ss.seat_id = e.seat_id
         RETURNING ss.show_id, ss.seat_id, ss.ordinal, e.hold_id AS "hold_id!""#,
        now,
        limit
    )
    .fetch_all(&mut **tx)
    .await?;
    if freed.is_empty() {
        return Ok(vec![]);
    }
    let holds: Vec<Uuid> = freed.iter().map(|f| f.hold_id).collect();
    let seats: Vec<Uuid> = freed.iter().map(|f| f.seat_id).collect();
    sqlx::query!(
        "UPDATE hold_seats SET live = false
          WHERE live AND (hold_id, seat_id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
        &holds,
        &seats
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query!(
        "UPDATE holds SET state = 'EXPIRED', updated_at = now()
          WHERE id = ANY($1) AND state = 'ACTIVE' AND expires_at <= $2",
        &holds,
        now
    )
    .execute(&mut **tx)
    .await?;
    Ok(freed
        .into_iter()
        .map(|f| FreedSeat {
            show_id: f.show_id,
            ordinal: f.ordinal,
        })
        .collect())
}

/// A live held seat, as Redis must know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldSeat {
    /// Show id.
    pub show_id: Uuid,
    /// Seat label.
    pub label: String,
    /// The hold that has it.
    pub hold_id: Uuid,
    /// When that hold ends.
    pub hold_expires_at: DateTime<Utc>,
}

/// Holds whose seats must be in Redis: every live held seat, optionally
/// only of holds created (or changed) since `since`.
pub async fn live_held_seats(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<HeldSeat>, sqlx::Error> {
    // A HELD row always names its hold and its end (the table's CHECK).
    sqlx::query_as!(
        HeldSeat,
        r#"SELECT ss.show_id, s.label, ss.hold_id AS "hold_id!", ss.hold_expires_at AS "hold_expires_at!"
             FROM show_seats ss
             JOIN seats s ON s.id = ss.seat_id
             JOIN holds h ON h.id = ss.hold_id
            WHERE ss.status = 'HELD' AND ss.hold_expires_at > $1
              AND ($2::timestamptz IS NULL OR h.created_at >= $2 OR h.updated_at >= $2)"#,
        now,
        since
    )
    .fetch_all(&mut *conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_statuses_are_spelled_as_the_column_allows_and_map_to_states() {
        let all = [
            SeatStatus::Available,
            SeatStatus::Held,
            SeatStatus::Booked,
            SeatStatus::Blocked,
        ];
        let spelled: Vec<String> = all.map(crate::db::spelling).into();
        assert_eq!(spelled, ["AVAILABLE", "HELD", "BOOKED", "BLOCKED"]);
        assert_eq!(spelled, all.map(SeatStatus::as_db_str));
        let states: Vec<SeatState> = all.map(SeatState::from).into();
        assert_eq!(
            states,
            [
                SeatState::Available,
                SeatState::Held,
                SeatState::Booked,
                SeatState::Booked
            ]
        );
    }
}
