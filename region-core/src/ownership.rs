//! Which city a row belongs to, for the operator token's city check
//! (`auth::Operator::check_city`): a venue's city, a screen's venue's, a
//! show's screen's, a booking's or refund's show's. One query each,
//! through the catalog's foreign keys. What covers the whole shard needs
//! every city of it (`check_shard`).

use crate::auth::Operator;
use crate::error::ApiError;
use sqlx::PgConnection;
use uuid::Uuid;

/// A row an operator acts on.
#[derive(Debug, Clone, Copy)]
pub enum Owned {
    /// A venue.
    Venue(Uuid),
    /// A screen.
    Screen(Uuid),
    /// A show.
    Show(Uuid),
    /// A booking.
    Booking(Uuid),
    /// A refund (through its payment: a refund need not have a booking).
    Refund(Uuid),
}

/// The city of `row`, `None` when there is no such row.
pub async fn city_of(conn: &mut PgConnection, row: Owned) -> Result<Option<String>, sqlx::Error> {
    let city = match row {
        Owned::Venue(id) => {
            sqlx::query_scalar!("SELECT city_code FROM venues WHERE id = $1", id)
                .fetch_optional(conn)
                .await?
        }
        Owned::Screen(id) => {
            sqlx::query_scalar!(
                "SELECT v.city_code FROM screens s JOIN venues v ON v.id = s.venue_id
                  WHERE s.id = $1",
                id
            )
            .fetch_optional(conn)
            .await?
        }
        Owned::Show(id) => {
            sqlx::query_scalar!(
                "SELECT v.city_code FROM shows sh JOIN screens s ON s.id = sh.screen_id
                   JOIN venues v ON v.id = s.venue_id WHERE sh.id = $1",
                id
            )
            .fetch_optional(conn)
            .await?
        }
        Owned::Booking(id) => {
            sqlx::query_scalar!(
                "SELECT v.city_code FROM bookings b JOIN shows sh ON sh.id = b.show_id
                   JOIN screens s ON s.id = sh.screen_id JOIN venues v ON v.id = s.venue_id
                  WHERE b.id = $1",
                id
            )
            .fetch_optional(conn)
            .await?
        }
        Owned::Refund(id) => {
            sqlx::query_scalar!(
                "SELECT v.city_code FROM refunds r JOIN payments p ON p.id = r.payment_id
                   JOIN shows sh ON sh.id = p.show_id JOIN screens s ON s.id = sh.screen_id
                   JOIN venues v ON v.id = s.venue_id WHERE r.id = $1",
                id
            )
            .fetch_optional(conn)
            .await?
        }
    };
    Ok(city)
}

/// 403 when `row` exists in a city `op`'s token does not reach; its city
/// otherwise (`None` when there is no such row: the handler answers 404
/// as it would for anyone).
pub async fn check(
    conn: &mut PgConnection,
    op: &Operator,
    row: Owned,
) -> Result<Option<String>, ApiError> {
    let city = city_of(conn, row).await?;
    if let Some(c) = &city {
        op.check_city(c)?;
    }
    Ok(city)
}

/// 403 unless `op`'s token reaches every city of this shard: what
/// describes or repairs the whole shard (its status, a reconciliation
/// pass) is for operators of all of it.
pub async fn check_shard(conn: &mut PgConnection, op: &Operator) -> Result<(), ApiError> {
    if op.city_filter().is_none() {
        return Ok(());
    }
    let cities = sqlx::query_scalar!("SELECT code FROM cities ORDER BY code")
        .fetch_all(conn)
        .await?;
    for city in &cities {
        op.check_city(city)?;
    }
    Ok(())
}
