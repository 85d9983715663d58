//! Flash-sale limits on the hold path. An admission pass buys once: the
//! checkout that books with it spends it, and the region refuses it
//! afterwards (403 `pass_used`). And a user takes at most the show's
//! `max_seats_per_user` seats across all their live holds and confirmed
//! bookings of that show.
//!
//! The count and the hold it admits must not race: two parallel holds
//! with one pass would both see room. [`Guard::acquire`] takes a
//! transaction-scoped advisory lock on (show, user) and keeps it while the
//! hold is placed, so a user's flash-sale holds of one show are placed one
//! at a time, on every replica (the lock lives in the shard's Postgres).
//! Other users are not slowed: the lock is per user.

use crate::error::ApiError;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// Whether `wanted` more seats fit under `limit` when the user already
/// has `already`. Pure, so the rule is tested on its own.
pub fn within_limit(already: i64, wanted: usize, limit: i32) -> bool {
    already.saturating_add(wanted as i64) <= i64::from(limit)
}

/// The refusal for a spent pass.
pub fn pass_used() -> ApiError {
    ApiError::Denied {
        code: "pass_used",
        message: "this admission pass has already bought its tickets; join the waiting room again"
            .into(),
    }
}

/// Holds the (show, user) lock until dropped or [`Guard::release`]d.
pub struct Guard {
    tx: Transaction<'static, Postgres>,
}

impl Guard {
    /// Locks (show, user), then refuses a spent pass or a hold that would
    /// take the user past the show's seat limit.
    pub async fn acquire(
        db: &PgPool,
        show_id: Uuid,
        user_id: &str,
        pass_id: &str,
        wanted: usize,
    ) -> Result<Self, ApiError> {
        let mut tx = db.begin().await?;
        // The show id is bound as a uuid and cast to text by the statement.
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::text || ':' || $2, 0))",
            show_id as _,
            user_id
        )
        .execute(&mut *tx)
        .await?;
        let counted = sqlx::query!(
            r#"SELECT sh.max_seats_per_user,
                      (SELECT COALESCE(sum(h.seat_count), 0) FROM holds h
                        WHERE h.show_id = sh.id AND h.user_id = $2
                          AND h.state = 'ACTIVE' AND h.expires_at > now())::bigint
                    + (SELECT count(*) FROM booking_seats bs JOIN bookings b ON b.id = bs.booking_id
                        WHERE b.show_id = sh.id AND b.user_id = $2 AND bs.active)::bigint AS "already!",
                      EXISTS (SELECT 1 FROM spent_passes WHERE pass_id = $3) AS "spent!"
                 FROM shows sh WHERE sh.id = $1"#,
            show_id,
            user_id,
            pass_id
        )
        .fetch_one(&mut *tx)
        .await?;
        let (limit, already, spent) = (counted.max_seats_per_user, counted.already, counted.spent);
        if spent {
            metrics::counter!("admission_refused_total", "reason" => "pass_used").increment(1);
            return Err(pass_used());
        }
        if !within_limit(already, wanted, limit) {
            metrics::counter!("flash_sale_limit_refused_total").increment(1);
            return Err(ApiError::Conflict {
                code: "seat_limit_exceeded",
                message: format!(
                    "this sale allows {limit} seats per buyer; you hold or bought {already}"
                ),
                details: Some(serde_json::json!({ "limit": limit, "already": already })),
            });
        }
        Ok(Self { tx })
    }

    /// Lets the next hold of this user and show go ahead.
    pub async fn release(self) {
        let _ = self.tx.rollback().await;
    }
}

/// Whether `pass_id` was spent by a booking.
pub async fn is_spent(db: &PgPool, pass_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM spent_passes WHERE pass_id = $1) AS "spent!""#,
        pass_id
    )
    .fetch_one(db)
    .await
}

/// Spends the pass of `hold_id` (if it was taken with one) on `booking_id`,
/// in the booking's transaction.
pub async fn spend(
    tx: &mut PgConnection,
    hold_id: Uuid,
    booking_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO spent_passes (pass_id, show_id, user_id, booking_id)
         SELECT admission_pass_id, show_id, user_id, $2 FROM holds
          WHERE id = $1 AND admission_pass_id IS NOT NULL
         ON CONFLICT (pass_id) DO NOTHING",
        hold_id,
        booking_id
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_what_is_held_and_bought() {
        assert!(within_limit(0, 10, 10));
        assert!(!within_limit(0, 11, 10));
        assert!(within_limit(6, 4, 10));
        assert!(!within_limit(6, 5, 10));
        assert!(!within_limit(i64::MAX, 1, 10));
    }
}
