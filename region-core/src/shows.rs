//! Show layouts: which seats a show has, their ordinals and categories,
//! and when it starts. A show's layout never changes once created, so it
//! is loaded from Postgres once and cached for the life of the process.

use crate::error::ApiError;
use chrono::{DateTime, Utc};
use shared::api::SaleMode;
use shared::ShowId;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use uuid::Uuid;

/// One seat of a show's layout.
#[derive(Debug, Clone)]
pub struct LayoutSeat {
    /// Seat id (`seats.id`).
    pub seat_id: Uuid,
    /// Label, e.g. `A5`.
    pub label: String,
    /// Price category.
    pub category: String,
    /// Position in the seat-map bitfield.
    pub ordinal: i32,
}

/// The immutable facts of a show needed on the hold path.
#[derive(Debug)]
pub struct ShowLayout {
    /// Show id.
    pub id: ShowId,
    /// Start, UTC.
    pub starts_at: DateTime<Utc>,
    /// Sale mode.
    pub sale_mode: SaleMode,
    /// Seats ordered by ordinal.
    pub seats: Vec<LayoutSeat>,
    by_label: HashMap<String, usize>,
}

impl ShowLayout {
    /// Looks a seat up by label.
    pub fn seat(&self, label: &str) -> Option<&LayoutSeat> {
        self.by_label.get(label).map(|&i| &self.seats[i])
    }

    /// Looks a seat up by ordinal.
    pub fn seat_at(&self, ordinal: i32) -> Option<&LayoutSeat> {
        usize::try_from(ordinal)
            .ok()
            .and_then(|i| self.seats.get(i))
    }

    /// Number of seats.
    pub fn seat_count(&self) -> u32 {
        self.seats.len() as u32
    }
}

/// Hours after its start after which a show's layout leaves the cache.
const EVICT_AFTER_START_HOURS: i64 = 12;

/// Process-wide cache of show layouts.
#[derive(Clone, Default)]
pub struct ShowCache {
    // std lock: held only for map access, never across `.await`.
    inner: Arc<RwLock<HashMap<ShowId, Arc<ShowLayout>>>>,
}

impl ShowCache {
    /// The layout of `show`, loading it on first use; `None` if no such show.
    /// The show's layout, or the API's 404 `unknown_show`.
    pub async fn require(&self, db: &PgPool, show: ShowId) -> Result<Arc<ShowLayout>, ApiError> {
        self.get(db, show)
            .await?
            .ok_or_else(|| ApiError::not_found("unknown_show", format!("no show {show}")))
    }

    pub async fn get(
        &self,
        db: &PgPool,
        show: ShowId,
    ) -> Result<Option<Arc<ShowLayout>>, sqlx::Error> {
        if let Some(l) = self
            .inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&show)
        {
            return Ok(Some(l.clone()));
        }
        let Some(layout) = load(db, show).await? else {
            return Ok(None);
        };
        let layout = Arc::new(layout);
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        // Shows long over are never held again: drop them so a process
        // that runs for months does not keep every layout it ever saw.
        let horizon = chrono::Utc::now() - chrono::Duration::hours(EVICT_AFTER_START_HOURS);
        map.retain(|_, l| l.starts_at > horizon);
        map.insert(show, layout.clone());
        Ok(Some(layout))
    }
}

async fn load(db: &PgPool, show: ShowId) -> Result<Option<ShowLayout>, sqlx::Error> {
    let head = sqlx::query!(
        "SELECT starts_at, sale_mode FROM shows WHERE id = $1",
        show.0
    )
    .fetch_optional(db)
    .await?;
    let Some(head) = head else {
        return Ok(None);
    };
    let (starts_at, sale_mode) = (head.starts_at, head.sale_mode);
    let seats = sqlx::query_as!(
        LayoutSeat,
        "SELECT s.id AS seat_id, s.label, s.category, ss.ordinal
           FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
          WHERE ss.show_id = $1
          ORDER BY ss.ordinal",
        show.0
    )
    .fetch_all(db)
    .await?;
    let by_label = seats
        .iter()
        .enumerate()
        .map(|(i, s)| (s.label.clone(), i))
        .collect();
    Ok(Some(ShowLayout {
        id: show,
        starts_at,
        sale_mode: SaleMode::from_db_str(&sale_mode).unwrap_or(SaleMode::Open),
        seats,
        by_label,
    }))
}
