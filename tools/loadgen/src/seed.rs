//! The benchmark's catalog (one large screen, fresh shows per phase) on
//! top of the test kit's seeding (`testkit::seed`).

use chrono::{Duration as ChronoDuration, Utc};
use shared::api::{SaleMode, Show};
use shared::ShowId;
use testkit::api::Api;
use testkit::seed::{create_movie, create_show_in, ensure_city, ensure_place, grid, NewShow};
use uuid::Uuid;

/// A short random tag that keeps names of one run apart from other runs.
pub fn short_tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// The benchmark's catalog: one large screen and one movie; every phase of
/// the run gets fresh shows on it, so each phase starts with empty seats.
pub struct BenchCatalog {
    /// Screen every bench show is on.
    pub screen_id: Uuid,
    /// Movie of every bench show.
    pub movie_id: Uuid,
    /// Rows of the screen.
    pub rows: usize,
    /// Seats per row.
    pub per_row: u16,
    shows_created: i64,
}

impl BenchCatalog {
    /// Creates the bench city (if missing), a venue and screen unique to
    /// this run, and a movie.
    pub async fn create(
        api: &Api,
        op: &str,
        rows: usize,
        per_row: u16,
        tag: &str,
    ) -> anyhow::Result<Self> {
        Self::create_in(
            api,
            op,
            ("lgbench", "Loadgen Bench City"),
            rows,
            per_row,
            tag,
        )
        .await
    }

    /// [`Self::create`] in city `(code, name)` (created if missing).
    pub async fn create_in(
        api: &Api,
        op: &str,
        (code, name): (&str, &str),
        rows: usize,
        per_row: u16,
        tag: &str,
    ) -> anyhow::Result<Self> {
        let city = ensure_city(api, op, code, name).await?;
        let layout = grid(rows, per_row, |_| "STANDARD");
        let place = ensure_place(
            api,
            op,
            &city,
            &format!("Loadgen Arena {tag}"),
            "Asia/Kolkata",
            "Main Hall",
            &layout,
        )
        .await?;
        let movie_id = create_movie(api, op, &format!("Loadgen Premiere {tag}"), 150, "en").await?;
        Ok(Self {
            screen_id: place.screen_id,
            movie_id,
            rows,
            per_row,
            shows_created: 0,
        })
    }

    /// Seats per show.
    pub fn seats_per_show(&self) -> usize {
        self.rows * usize::from(self.per_row)
    }

    /// Every seat's label, row by row (`A1`, `A2`, …).
    pub fn labels(&self) -> Vec<String> {
        (0..self.rows)
            .flat_map(|r| {
                (1..=self.per_row).map(move |n| format!("{}{n}", testkit::seed::row_label(r)))
            })
            .collect()
    }

    /// Creates `n` new shows (weeks ahead, so none starts during a run),
    /// three hours apart: a screen plays one show at a time.
    pub async fn new_shows(
        &mut self,
        api: &Api,
        op: &str,
        n: usize,
    ) -> anyhow::Result<Vec<ShowId>> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(self.new_show(api, op, SaleMode::Open).await?.id);
        }
        Ok(ids)
    }

    /// Creates one new show sold in `mode` (after the ones before it).
    pub async fn new_show(&mut self, api: &Api, op: &str, mode: SaleMode) -> anyhow::Result<Show> {
        let starts = Utc::now()
            + ChronoDuration::days(14)
            + ChronoDuration::minutes(self.shows_created * 180);
        self.shows_created += 1;
        let show = NewShow {
            screen_id: self.screen_id,
            movie_id: self.movie_id,
            starts_at: starts,
            prices: &[("STANDARD", 25_000)],
            currency: "INR",
        };
        create_show_in(api, op, show, mode).await
    }
}
