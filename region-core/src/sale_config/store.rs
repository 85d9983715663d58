//! The `show_sales` table: a flash sale's waiting-room settings, beside
//! the show's `sale_mode`. Both are written together, in the caller's
//! transaction, so a show in a flash sale always has its waiting room.

use chrono::{DateTime, Utc};
use shared::api::{SaleMode, WaitingRoomSettings};
use sqlx::PgConnection;
use uuid::Uuid;

/// A show's sale as stored: its mode and (for a flash sale) the room.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The show's `sale_mode`.
    pub sale_mode: SaleMode,
    /// Its `show_sales` row.
    pub waiting_room: Option<WaitingRoomSettings>,
}

/// The sale of `show` (`None`: no such show). `FOR UPDATE` of the show's
/// row when `lock`: a change reads, then writes, under it.
pub async fn read(
    conn: &mut PgConnection,
    show: Uuid,
    lock: bool,
) -> Result<Option<Stored>, sqlx::Error> {
    let mode = if lock {
        sqlx::query_scalar!("SELECT sale_mode FROM shows WHERE id = $1 FOR UPDATE", show)
            .fetch_optional(&mut *conn)
            .await?
    } else {
        sqlx::query_scalar!("SELECT sale_mode FROM shows WHERE id = $1", show)
            .fetch_optional(&mut *conn)
            .await?
    };
    let Some(mode) = mode else { return Ok(None) };
    let room = sqlx::query!(
        "SELECT opens_at, rate_per_sec, pass_ttl_s, grace_s FROM show_sales WHERE show_id = $1",
        show
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| WaitingRoomSettings {
        opens_at: r.opens_at,
        rate_per_sec: r.rate_per_sec,
        pass_ttl_s: u32::try_from(r.pass_ttl_s).unwrap_or(0),
        grace_s: u32::try_from(r.grace_s).unwrap_or(0),
    });
    Ok(Some(Stored {
        sale_mode: SaleMode::from_db_str(&mode).unwrap_or(SaleMode::Open),
        waiting_room: room,
    }))
}

/// Sets the waiting room of `show` (`None`: removes it). The caller has
/// checked it against the mode (`WaitingRoomSettings::check_with`).
pub async fn put_room(
    conn: &mut PgConnection,
    show: Uuid,
    room: Option<&WaitingRoomSettings>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    match room {
        Some(r) => {
            sqlx::query!(
                "INSERT INTO show_sales (show_id, opens_at, rate_per_sec, pass_ttl_s, grace_s, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (show_id) DO UPDATE
                   SET opens_at = EXCLUDED.opens_at, rate_per_sec = EXCLUDED.rate_per_sec,
                       pass_ttl_s = EXCLUDED.pass_ttl_s, grace_s = EXCLUDED.grace_s,
                       updated_at = EXCLUDED.updated_at",
                show,
                r.opens_at,
                r.rate_per_sec,
                i32::try_from(r.pass_ttl_s).unwrap_or(i32::MAX),
                i32::try_from(r.grace_s).unwrap_or(i32::MAX),
                now
            )
            .execute(conn)
            .await?;
        }
        None => {
            sqlx::query!("DELETE FROM show_sales WHERE show_id = $1", show)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

/// Sets the mode of `show` and its waiting room together.
pub async fn write(
    conn: &mut PgConnection,
    show: Uuid,
    mode: SaleMode,
    room: Option<&WaitingRoomSettings>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE shows SET sale_mode = $2 WHERE id = $1",
        show,
        mode.as_db_str()
    )
    .execute(&mut *conn)
    .await?;
    put_room(conn, show, room, now).await
}
