//! Show layouts: which seats a show has, their ordinals and categories,
//! and when it starts, loaded from Postgres once and cached in each
//! process.
//!
//! An operator may move a show's start (before anyone holds a seat),
//! change its sale mode (`crate::sale_config`) or delete it. Such a write
//! announces the show on the `show_changed`
//! channel (`NOTIFY`, in its own transaction: delivered at commit, never
//! for a write rolled back) and every replica's [`follow_changes`] drops
//! its copy. Chosen over a version checked on every read (a Postgres
//! round trip on each hold) and a short TTL (stale for the TTL, and a
//! reload storm in a sale). A replica that loses its listening connection
//! may have missed announcements, so it drops its whole cache whenever it
//! (re)starts listening. What else an operator changes (prices, blocked
//! seats) is not cached here at all: the hold's own transaction reads it
//! from the rows it locks.

use crate::error::ApiError;
use chrono::{DateTime, Utc};
use shared::api::SaleMode;
use shared::ShowId;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
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
    inner: Arc<RwLock<Layouts>>,
}

#[derive(Default)]
struct Layouts {
    map: HashMap<ShowId, Arc<ShowLayout>>,
    /// Counts invalidations: a layout read from Postgres before one is not
    /// cached after it (it may be the stale row the invalidation was for).
    epoch: u64,
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
        let epoch = {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = inner.map.get(&show) {
                return Ok(Some(l.clone()));
            }
            inner.epoch
        };
        let Some(layout) = load(db, show).await? else {
            return Ok(None);
        };
        let layout = Arc::new(layout);
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.epoch != epoch {
            // Invalidated meanwhile: answer with what was read, keep nothing.
            return Ok(Some(layout));
        }
        // Shows long over are never held again: drop them so a process
        // that runs for months does not keep every layout it ever saw.
        let horizon = chrono::Utc::now() - chrono::Duration::hours(EVICT_AFTER_START_HOURS);
        inner.map.retain(|_, l| l.starts_at > horizon);
        inner.map.insert(show, layout.clone());
        Ok(Some(layout))
    }

    /// Drops `show`'s layout (it changed); `None`: every layout.
    pub fn forget(&self, show: Option<ShowId>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.epoch += 1;
        match show {
            Some(s) => {
                inner.map.remove(&s);
            }
            None => inner.map.clear(),
        }
    }
}

/// The channel catalog writes announce a changed show on.
const CHANGED_CHANNEL: &str = "show_changed";

/// Announces, in the caller's transaction, that `show`'s cached facts
/// changed: every replica hears it when the transaction commits.
pub async fn announce_change(conn: &mut PgConnection, show: Uuid) -> Result<(), sqlx::Error> {
    // In FROM: the macro cannot describe a `void` column.
    sqlx::query!(
        r#"SELECT 1 AS "sent!" FROM pg_notify($1, $2)"#,
        CHANGED_CHANNEL,
        show.to_string()
    )
    .fetch_one(conn)
    .await?;
    Ok(())
}

/// Pause before listening again after the connection failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// Drops the layouts other replicas (or this one) announce as changed,
/// until `shutdown`.
pub async fn follow_changes(db: PgPool, cache: ShowCache, mut shutdown: watch::Receiver<bool>) {
    loop {
        let listening = async {
            let mut l = PgListener::connect_with(&db).await?;
            l.listen(CHANGED_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = shutdown.changed() => return,
            l = listening => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for show changes; retrying");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(RELISTEN_AFTER) => continue,
                    }
                }
            },
        };
        // Announcements made while nobody listened are lost: forget all.
        cache.forget(None);
        loop {
            let next = tokio::select! {
                _ = shutdown.changed() => return,
                n = listener.try_recv() => n,
            };
            match next {
                Ok(Some(n)) => cache.forget(ShowId::parse(n.payload()).ok()),
                // The connection dropped (the next call reconnects):
                // whatever was announced meanwhile is lost.
                Ok(None) => cache.forget(None),
                Err(e) => {
                    tracing::warn!(error = %e, "listening for show changes failed; listening again");
                    break;
                }
            }
        }
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
