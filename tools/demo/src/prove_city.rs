//! `demo --prove-city <code>`: the last step of `scripts/add-city.sh`.
//! Through the edge only, it creates the city on whatever shard the
//! directory routes it to, a venue, a screen, a movie and a show tomorrow
//! evening (local time), then has one buyer hold a seat and pay for it.
//! The booking number names the shard that sold it; the script checks it.

use super::{local_to_utc, tomorrow_in};
use chrono_tz::Tz;
use loadgen::purchase;
use shared::api::{Booking, Hold, SaleMode};
use shared::token::Role;
use std::process::ExitCode;
use testkit::api::{Api, Method, Minter};
use testkit::seed::{self, grid};
use uuid::Uuid;

/// The new city.
pub(super) struct NewCity<'a> {
    pub code: &'a str,
    pub name: &'a str,
    pub time_zone: &'a str,
    pub currency: &'a str,
}

pub(super) async fn run(edge: &str, secret: &str, city: NewCity<'_>) -> anyhow::Result<ExitCode> {
    let api = Api::edge(edge, city.code)?;
    let minter = Minter::new(secret);
    let op = minter.bearer("add-city", Role::Operator)?;
    let tz: Tz = city
        .time_zone
        .parse()
        .map_err(|e| anyhow::anyhow!("time zone {}: {e}", city.time_zone))?;
    let code = seed::ensure_city(&api, &op, city.code, city.name).await?;
    let place = seed::ensure_place(
        &api,
        &op,
        &code,
        &format!("{} Central", city.name),
        city.time_zone,
        &format!("Screen {}", loadgen::seed::short_tag()),
        &grid(5, 10, |_| "STANDARD"),
    )
    .await?;
    let movie = seed::create_movie(&api, &op, "Opening Night", 120, "en").await?;
    let tomorrow = tomorrow_in(tz);
    let show = seed::create_show_in(
        &api,
        &op,
        seed::NewShow {
            screen_id: place.screen_id,
            movie_id: movie,
            starts_at: local_to_utc(tz, tomorrow, "20:00")?,
            prices: &[("STANDARD", 1_500)],
            currency: city.currency,
        },
        SaleMode::Open,
    )
    .await?;
    println!(
        "   {} ({}): show {} tomorrow 20:00 {}",
        city.name, city.code, show.id, city.time_zone
    );
    let buyer = minter.bearer(&format!("first-buyer@{}.example", city.code), Role::User)?;
    let held = api
        .send(
            Method::POST,
            &format!("/v1/shows/{}/holds", show.id),
            Some(&buyer),
            Some(&Uuid::now_v7().to_string()),
            Some(&serde_json::json!({ "seats": ["A1"] })),
        )
        .await?;
    anyhow::ensure!(
        held.status.as_u16() == 201,
        "the hold was refused: {}",
        held.failure()
    );
    let hold: Hold = held.json()?;
    let paid =
        purchase::checkout_once(&api, &buyer, hold.hold_id, &Uuid::now_v7().to_string()).await?;
    anyhow::ensure!(
        paid.status.as_u16() == 201,
        "the payment was refused: {}",
        paid.failure()
    );
    let booking: Booking = paid.json()?;
    println!(
        "RESULT: OK: {} sells: booking {}",
        city.code, booking.number
    );
    Ok(ExitCode::SUCCESS)
}
