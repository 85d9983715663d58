//! Seeds the catalog through the operator HTTP API, so the same code works
//! against a test's region core, a spawned one and a real deployment: the
//! one seeding path of the tests, the benchmarks and the demo.
//!
//! Re-runs must work against a database that already has the data: a city
//! that exists is fine as is. A venue or screen that exists (409) has to be
//! found again, and the API has no venue or screen listing, so it is looked
//! up through the city's show listings; if no show names it, a new,
//! suffixed venue/screen is created rather than failing.

use crate::api::{existing_id, is_failure, Api};
use chrono::{DateTime, NaiveDate, Utc};
use reqwest::StatusCode;
use shared::api::{
    City, CreateCity, CreateMovie, CreateScreen, CreateShow, CreateVenue, Movie, RowLayout,
    SaleMode, Screen, Show, ShowList, Venue,
};
use shared::CityCode;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Row label of the `i`-th row (0-based): `A`..`Z`, `AA`..`AZ`, `BA`...
/// (bijective base 26, as seat labels allow 1-3 letters).
pub fn row_label(mut i: usize) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// A rectangular layout: `rows` rows of `per_row` seats; `category(row)`
/// names each row's price category.
pub fn grid(rows: usize, per_row: u16, category: impl Fn(usize) -> &'static str) -> Vec<RowLayout> {
    (0..rows)
        .map(|r| RowLayout {
            row: row_label(r),
            seats: per_row,
            category: category(r).to_owned(),
        })
        .collect()
}

/// Creates a city; one that already exists is fine.
pub async fn ensure_city(api: &Api, op: &str, code: &str, name: &str) -> anyhow::Result<CityCode> {
    let code = CityCode::parse(code)?;
    let req = CreateCity {
        code: code.clone(),
        name: name.to_owned(),
    };
    match api.post::<_, City>("/v1/operator/cities", op, &req).await {
        Ok(_) => Ok(code),
        Err(e) if is_failure(&e, StatusCode::CONFLICT, "city_exists") => Ok(code),
        Err(e) => Err(e),
    }
}

/// Shows of `city` on each local date in `dates`.
pub async fn shows_on(
    api: &Api,
    city: &CityCode,
    dates: &[NaiveDate],
) -> anyhow::Result<Vec<Show>> {
    let mut out = Vec::new();
    for d in dates {
        let list: ShowList = api
            .get(&format!("/v1/cities/{city}/shows?date={d}"), None)
            .await?;
        out.extend(list.shows);
    }
    Ok(out)
}

/// A screen found or created by [`ensure_place`].
#[derive(Debug, Clone, Copy)]
pub struct Place {
    /// Screen id.
    pub screen_id: Uuid,
}

/// Finds or creates venue `venue` (in `time_zone`) of `city` and its
/// screen `screen` with `rows`.
pub async fn ensure_place(
    api: &Api,
    op: &str,
    city: &CityCode,
    venue: &str,
    time_zone: &str,
    screen: &str,
    rows: &[RowLayout],
) -> anyhow::Result<Place> {
    let venue_req = CreateVenue {
        city: city.clone(),
        name: venue.to_owned(),
        time_zone: time_zone.to_owned(),
    };
    // An existing venue or screen of that name is reused: the 409 names it.
    let venue_id = match api
        .post::<_, Venue>("/v1/operator/venues", op, &venue_req)
        .await
    {
        Ok(v) => v.id,
        Err(e) => existing_id(&e, "venue_exists").ok_or(e)?,
    };
    let screen_req = CreateScreen {
        venue_id,
        name: screen.to_owned(),
        rows: rows.to_vec(),
    };
    let screen_id = match api
        .post::<_, Screen>("/v1/operator/screens", op, &screen_req)
        .await
    {
        Ok(s) => s.id,
        Err(e) => existing_id(&e, "screen_exists").ok_or(e)?,
    };
    Ok(Place { screen_id })
}

/// Creates a movie. A shard on its own always creates one; with the
/// global catalog the same title, language and running time is one title,
/// and its existing id comes back (`409 movie_exists`).
pub async fn create_movie(
    api: &Api,
    op: &str,
    title: &str,
    minutes: u16,
    language: &str,
) -> anyhow::Result<Uuid> {
    let req = CreateMovie {
        title: title.to_owned(),
        duration_minutes: minutes,
        language: Some(language.to_owned()),
        kind: Default::default(),
    };
    match api.post::<_, Movie>("/v1/operator/movies", op, &req).await {
        Ok(m) => Ok(m.id),
        Err(e) => existing_id(&e, "movie_exists").ok_or(e),
    }
}

/// Creates an open-sale show.
pub async fn create_show(
    api: &Api,
    op: &str,
    screen_id: Uuid,
    movie_id: Uuid,
    starts_at: DateTime<Utc>,
    prices: &[(&str, i64)],
    currency: &str,
) -> anyhow::Result<Show> {
    let show = NewShow {
        screen_id,
        movie_id,
        starts_at,
        prices,
        currency,
    };
    create_show_in(api, op, show, SaleMode::Open).await
}

/// What a new show is.
#[derive(Debug, Clone, Copy)]
pub struct NewShow<'a> {
    /// Screen it plays on.
    pub screen_id: Uuid,
    /// Movie.
    pub movie_id: Uuid,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// (category, price in minor units).
    pub prices: &'a [(&'a str, i64)],
    /// Currency.
    pub currency: &'a str,
}

/// Creates a show sold in `sale_mode` (`FlashSale`: holds need an
/// admission pass from the edge's waiting room).
pub async fn create_show_in(
    api: &Api,
    op: &str,
    show: NewShow<'_>,
    sale_mode: SaleMode,
) -> anyhow::Result<Show> {
    let NewShow {
        screen_id,
        movie_id,
        starts_at,
        prices,
        currency,
    } = show;
    let req = CreateShow {
        screen_id,
        movie_id,
        starts_at,
        prices: prices
            .iter()
            .map(|(c, p)| ((*c).to_owned(), *p))
            .collect::<BTreeMap<_, _>>(),
        currency: currency.to_owned(),
        sale_mode,
        refund_policy: None,
        max_seats_per_user: None,
        // A flash sale is created with its waiting room (the API refuses
        // one without): open now, 10 a second. Tests and tools set their
        // own through the edge's `PUT /v1/operator/sales/{show}`.
        waiting_room: (sale_mode == SaleMode::FlashSale).then(|| {
            shared::api::WaitingRoomSettings {
                opens_at: chrono::Utc::now(),
                rate_per_sec: 10.0,
                pass_ttl_s: 600,
                grace_s: 60,
            }
        }),
    };
    api.post("/v1/operator/shows", op, &req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_labels_are_bijective_base_26() {
        assert_eq!(row_label(0), "A");
        assert_eq!(row_label(25), "Z");
        assert_eq!(row_label(26), "AA");
        assert_eq!(row_label(51), "AZ");
        assert_eq!(row_label(52), "BA");
        assert_eq!(row_label(701), "ZZ");
        assert_eq!(row_label(702), "AAA");
    }

    #[test]
    fn grid_names_every_row() {
        let g = grid(3, 10, |r| if r == 0 { "PREMIUM" } else { "STANDARD" });
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].category, "PREMIUM");
        assert_eq!(g[2].row, "C");
        assert_eq!(g[2].seats, 10);
    }
}
