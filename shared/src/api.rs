//! Request and response bodies of the region core's HTTP API. The edge
//! uses the same types, so both sides agree on the wire format.

use crate::booking_number::BookingNumber;
use crate::refund::{RefundPolicy, RefundQuote};
use crate::{CityCode, HoldId, ShowId};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use uuid::Uuid;

/// `POST /v1/operator/cities`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCity {
    /// Routing key, 2–8 lowercase letters.
    pub code: CityCode,
    /// Display name.
    pub name: String,
}

/// A city served by this shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct City {
    /// Routing key.
    pub code: CityCode,
    /// Display name.
    pub name: String,
}

/// `POST /v1/operator/venues`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVenue {
    /// The venue's city (must exist).
    pub city: CityCode,
    /// Display name.
    pub name: String,
    /// IANA time zone, e.g. `Asia/Kolkata`: show dates and local times use it.
    pub time_zone: String,
}

/// A venue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Venue {
    /// Venue id.
    pub id: Uuid,
    /// City code.
    pub city: CityCode,
    /// Display name.
    pub name: String,
    /// IANA time zone.
    pub time_zone: String,
}

/// One row of a screen's seat layout: seats `row1` … `row{seats}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowLayout {
    /// Row letters, e.g. `A`.
    pub row: String,
    /// Number of seats, numbered from 1.
    pub seats: u16,
    /// Price category, e.g. `PREMIUM` (must have a price in every show).
    pub category: String,
}

/// `POST /v1/operator/screens`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateScreen {
    /// The venue (must exist).
    pub venue_id: Uuid,
    /// Display name, unique within the venue.
    pub name: String,
    /// Rows, front to back.
    pub rows: Vec<RowLayout>,
}

/// A screen (auditorium, hall, arena) with its fixed seat layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Screen {
    /// Screen id.
    pub id: Uuid,
    /// Venue id.
    pub venue_id: Uuid,
    /// Display name.
    pub name: String,
    /// Number of seats.
    pub seat_count: u32,
    /// Categories present in the layout.
    pub categories: Vec<String>,
}

/// `POST /v1/operator/movies` — a film, concert or other event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateMovie {
    /// Title.
    pub title: String,
    /// Running time in minutes.
    pub duration_minutes: u16,
    /// Optional language.
    #[serde(default)]
    pub language: Option<String>,
    /// A film (the default) or a live event.
    #[serde(default)]
    pub kind: MovieKind,
}

impl CreateMovie {
    /// The title as stored under `id`.
    pub fn into_movie(self, id: Uuid) -> Movie {
        Movie {
            id,
            title: self.title,
            duration_minutes: self.duration_minutes,
            language: self.language,
            kind: self.kind,
        }
    }
}

/// What a catalog title is: a film, or a live event (concert, play,
/// match). Only the global catalog keeps it; a shard's copy is a film.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovieKind {
    /// A film.
    #[default]
    Movie,
    /// A live event.
    Event,
}

impl MovieKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Movie => "movie",
            Self::Event => "event",
        }
    }

    /// The stored name back (`None` for anything else).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "movie" => Some(Self::Movie),
            "event" => Some(Self::Event),
            _ => None,
        }
    }
}

/// A film or event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Movie {
    /// Movie id: in a city with the global catalog, the global id every
    /// shard shares.
    pub id: Uuid,
    /// Title.
    pub title: String,
    /// Running time in minutes.
    pub duration_minutes: u16,
    /// Language, if given.
    pub language: Option<String>,
    /// A film or a live event.
    #[serde(default)]
    pub kind: MovieKind,
}

/// A city's shard tells the global catalog that `movie_id` plays there
/// (`POST /v1/operator/listings` on the catalog), before it creates a
/// show of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListMovie {
    /// The global movie id.
    pub movie_id: Uuid,
    /// The city code.
    pub city: String,
    /// When the new show starts.
    pub starts_at: DateTime<Utc>,
}

/// One search hit of the global catalog (`GET /v1/search?q=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The title.
    pub movie: Movie,
    /// How close the title is to the query (0-1, trigram similarity).
    pub score: f32,
    /// The cities with a show of it still to come, by code.
    pub cities: Vec<String>,
}

/// The answer of `GET /v1/search?q=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    /// The query as searched (trimmed).
    pub query: String,
    /// Best first.
    pub hits: Vec<SearchHit>,
}

/// How a show's seats are sold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleMode {
    /// Anyone may hold seats.
    Open,
    /// Holds need an admission pass from the edge's waiting room.
    FlashSale,
}

impl SaleMode {
    /// The database spelling.
    pub fn as_db_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::FlashSale => "flash_sale",
        }
    }

    /// Parses the database spelling.
    pub fn from_db_str(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "flash_sale" => Some(Self::FlashSale),
            _ => None,
        }
    }
}

/// `POST /v1/operator/shows`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateShow {
    /// The screen (its layout becomes the show's seats).
    pub screen_id: Uuid,
    /// What is shown.
    pub movie_id: Uuid,
    /// Start time, UTC (RFC 3339 with an offset is accepted and converted).
    pub starts_at: DateTime<Utc>,
    /// Price per category in minor units (paise, cents); every category of
    /// the screen's layout needs one.
    pub prices: BTreeMap<String, i64>,
    /// ISO 4217 currency, e.g. `INR`.
    pub currency: String,
    /// Open or flash sale.
    #[serde(default = "default_sale_mode")]
    pub sale_mode: SaleMode,
    /// Cancellation refund policy; the default is 100 % at ≥ 24 h, 50 % at
    /// ≥ 4 h, none later. Copied onto each booking at purchase time.
    #[serde(default)]
    pub refund_policy: Option<RefundPolicy>,
    /// In a flash sale, the most seats one buyer may hold and buy for this
    /// show, across all their holds and bookings (1–100; default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seats_per_user: Option<u16>,
    /// The waiting room of a `flash_sale` show: required with that mode,
    /// refused with `open` (a show in a sale without a waiting room cannot
    /// be created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<WaitingRoomSettings>,
}

/// A flash sale's waiting-room settings: the one copy an operator sets
/// (`PUT /v1/operator/shows/{id}/sale` at the region, or the edge's
/// `PUT /v1/operator/sales/{show}`, which writes there first), kept in the
/// shard's Postgres beside the show's `sale_mode`; the edge's waiting room
/// is derived from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitingRoomSettings {
    /// When admission starts (UTC; an offset is accepted and converted).
    pub opens_at: DateTime<Utc>,
    /// Users admitted per second (above 0, at most 100 000).
    pub rate_per_sec: f64,
    /// How long an admission pass stays valid, seconds (10–86 400).
    pub pass_ttl_s: u32,
    /// A waiting user who has not polled for this long loses the place,
    /// seconds (3–86 400).
    pub grace_s: u32,
}

impl WaitingRoomSettings {
    /// The most admissions per second (`rate_per_sec` must be above 0).
    pub const MAX_RATE_PER_SEC: f64 = 100_000.0;
    /// The range of `pass_ttl_s`.
    pub const PASS_TTL_S: RangeInclusive<u32> = 10..=86_400;
    /// The range of `grace_s`.
    pub const GRACE_S: RangeInclusive<u32> = 3..=86_400;

    /// Whether `rate` is an admission rate [`Self::check`] accepts.
    pub fn rate_ok(rate: f64) -> bool {
        rate.is_finite() && rate > 0.0 && rate <= Self::MAX_RATE_PER_SEC
    }

    /// Checks the ranges; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        if !Self::rate_ok(self.rate_per_sec) {
            return Err("rate_per_sec must be above 0 and at most 100000".into());
        }
        if !Self::PASS_TTL_S.contains(&self.pass_ttl_s) {
            return Err("pass_ttl_s must be 10–86400".into());
        }
        if !Self::GRACE_S.contains(&self.grace_s) {
            return Err("grace_s must be 3–86400".into());
        }
        Ok(())
    }

    /// Checks a sale mode and its waiting room together: `flash_sale`
    /// needs one, `open` must not carry one.
    pub fn check_with(mode: SaleMode, room: Option<&Self>) -> Result<(), String> {
        match (mode, room) {
            (SaleMode::FlashSale, None) => {
                Err("a flash_sale needs its waiting_room settings in the same call".into())
            }
            (SaleMode::FlashSale, Some(r)) => r.check(),
            (SaleMode::Open, Some(_)) => {
                Err("an open sale has no waiting room: drop waiting_room".into())
            }
            (SaleMode::Open, None) => Ok(()),
        }
    }
}

/// `PUT /v1/operator/shows/{id}/sale`: a show's sale mode and, for a
/// flash sale, its waiting room, set together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSale {
    /// Open or flash sale.
    pub sale_mode: SaleMode,
    /// Required with `flash_sale`, refused with `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<WaitingRoomSettings>,
}

/// A show's sale as the region core stores it (the answer of `GET
/// /v1/shows/{id}/sale` and of the operator's `PUT`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowSale {
    /// Show id.
    pub show_id: ShowId,
    /// The show's city.
    pub city: String,
    /// Open or flash sale.
    pub sale_mode: SaleMode,
    /// The waiting room (present exactly when `flash_sale`).
    pub waiting_room: Option<WaitingRoomSettings>,
}

fn default_sale_mode() -> SaleMode {
    SaleMode::Open
}

/// A show with the context a buyer needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Show {
    /// Show id.
    pub id: ShowId,
    /// City code.
    pub city: CityCode,
    /// Venue id.
    pub venue_id: Uuid,
    /// Venue name.
    pub venue_name: String,
    /// Screen id.
    pub screen_id: Uuid,
    /// Screen name.
    pub screen_name: String,
    /// Movie id.
    pub movie_id: Uuid,
    /// Movie title.
    pub movie_title: String,
    /// Start, UTC.
    pub starts_at: DateTime<Utc>,
    /// Start in the venue's time zone, RFC 3339 with its offset.
    pub starts_at_local: String,
    /// The venue's IANA time zone.
    pub time_zone: String,
    /// The show's date in the venue's time zone.
    pub local_date: NaiveDate,
    /// Price per category, minor units.
    pub prices: BTreeMap<String, i64>,
    /// Currency.
    pub currency: String,
    /// Sale mode.
    pub sale_mode: SaleMode,
    /// Number of seats.
    pub seat_count: u32,
    /// Cancellation refund policy of tickets sold from now on.
    pub refund_policy: RefundPolicy,
    /// Whether it will take place (absent in older answers: scheduled).
    #[serde(default)]
    pub status: ShowStatus,
    /// When the organiser cancelled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// Whether a show will take place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShowStatus {
    /// On sale (or sold out, or over): it takes place.
    #[default]
    Scheduled,
    /// Called off by the organiser: no sales, every booking refunded in
    /// full.
    Cancelled,
}

impl ShowStatus {
    /// The `shows.status` column's spelling.
    pub fn as_db_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the column's spelling.
    pub fn from_db_str(s: &str) -> Option<Self> {
        match s {
            "SCHEDULED" => Some(Self::Scheduled),
            "CANCELLED" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// `GET /v1/cities/{code}/shows?date=…`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowList {
    /// City code.
    pub city: CityCode,
    /// The local date asked for.
    pub date: NaiveDate,
    /// Shows that start on that date in their venue's time zone.
    pub shows: Vec<Show>,
}

/// One seat on the seat map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeatMapSeat {
    /// Label, e.g. `A5`.
    pub label: String,
    /// Category.
    pub category: String,
    /// Current state.
    pub status: crate::SeatState,
}

/// `GET /v1/shows/{id}/seats`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeatMap {
    /// Show id.
    pub show_id: ShowId,
    /// Seats free to hold.
    pub available: u32,
    /// Seats in live holds.
    pub held: u32,
    /// Seats sold.
    pub booked: u32,
    /// Every seat, front row first.
    pub seats: Vec<SeatMapSeat>,
}

/// `GET /v1/shows/{id}/availability`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Availability {
    /// Show id.
    pub show_id: ShowId,
    /// Seats free to hold.
    pub available: u32,
    /// All seats.
    pub total: u32,
}

/// `POST /v1/shows/{id}/holds`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateHold {
    /// Seat labels; all are held or none.
    pub seats: Vec<String>,
}

/// Lifecycle of a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HoldState {
    /// Seats are held until `expires_at`.
    Active,
    /// Released by its holder.
    Released,
    /// Its time ran out; the seats are free again.
    Expired,
    /// Turned into a booking.
    Consumed,
}

impl HoldState {
    /// The database spelling.
    pub fn as_db_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Released => "RELEASED",
            Self::Expired => "EXPIRED",
            Self::Consumed => "CONSUMED",
        }
    }

    /// Parses the database spelling.
    pub fn from_db_str(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "RELEASED" => Some(Self::Released),
            "EXPIRED" => Some(Self::Expired),
            "CONSUMED" => Some(Self::Consumed),
            _ => None,
        }
    }
}

/// A seat hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    /// Hold id (also the fencing token).
    pub hold_id: HoldId,
    /// Show id.
    pub show_id: ShowId,
    /// The held seats.
    pub seats: Vec<String>,
    /// State; an `ACTIVE` hold past `expires_at` reads as `EXPIRED`.
    pub state: HoldState,
    /// When the seats are released unless the hold is extended or consumed.
    pub expires_at: DateTime<Utc>,
    /// Whether the one allowed extension was used.
    pub extended: bool,
}

/// `GET /healthz`, `GET /readyz`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` or `degraded` / `unavailable`.
    pub status: String,
    /// Postgres answered (`/readyz` only: `/healthz` does not check it,
    /// so it leaves the field out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<bool>,
    /// Lock path: `redis` (fast path) or `postgres_only` (breaker open).
    pub lock_path: String,
}

/// `POST /v1/holds/{id}/checkout` (with an `Idempotency-Key` header).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkout {
    /// The gateway's payment method token, e.g. `pm_card_ok` (the sandbox
    /// gateway also knows `pm_card_declined` and its `pm_fault_*` tokens).
    pub payment_method: String,
}

/// Lifecycle of a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingStatus {
    /// Paid and confirmed; the seats are the buyer's.
    Confirmed,
    /// Cancelled; the seats are free again.
    Cancelled,
}

impl BookingStatus {
    /// The database spelling.
    pub fn as_db_str(self) -> &'static str {
        match self {
            Self::Confirmed => "CONFIRMED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the database spelling.
    pub fn from_db_str(s: &str) -> Option<Self> {
        match s {
            "CONFIRMED" => Some(Self::Confirmed),
            "CANCELLED" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A seat of a booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookedSeat {
    /// Label, e.g. `A5`.
    pub label: String,
    /// Price category.
    pub category: String,
    /// Price paid, minor units.
    pub price_minor: i64,
}

/// A refund as the buyer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundView {
    /// Refund id.
    pub id: Uuid,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// `PENDING` (being sent to the gateway), `SUCCEEDED`, `FAILED`, or
    /// `SETTLED_MANUALLY` (an operator paid it back outside the gateway).
    pub status: String,
    /// `cancellation` or `confirmation_failed`.
    pub reason: String,
}

/// A booking (`GET /v1/bookings/{id}`, the checkout's 201 body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Booking {
    /// Internal id (UUID v7).
    pub id: Uuid,
    /// Human-readable number, unique across shards.
    pub number: BookingNumber,
    /// Status.
    pub status: BookingStatus,
    /// Show id.
    pub show_id: ShowId,
    /// Movie or event title.
    pub title: String,
    /// Venue name.
    pub venue_name: String,
    /// Show start, UTC.
    pub show_starts_at: DateTime<Utc>,
    /// Show start in the venue's time zone (RFC 3339 with offset).
    pub show_starts_at_local: String,
    /// The venue's IANA time zone.
    pub time_zone: String,
    /// The seats.
    pub seats: Vec<BookedSeat>,
    /// Total paid, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// The payment behind it.
    pub payment_id: Uuid,
    /// The cancellation policy fixed at purchase.
    pub refund_policy: RefundPolicy,
    /// When it was confirmed, UTC.
    pub created_at: DateTime<Utc>,
    /// When it was cancelled, UTC.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The refund of a cancelled booking (none for a 0 % cancellation).
    pub refund: Option<RefundView>,
}

/// One booked seat's signed ticket (`shared::ticket`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    /// The ticket id.
    pub ticket_id: Uuid,
    /// Seat id.
    pub seat_id: Uuid,
    /// Seat label, e.g. `F12`.
    pub label: String,
    /// Price category.
    pub category: String,
    /// The signed code: what the QR code holds.
    pub code: String,
}

/// `GET /v1/bookings/{id}/tickets`: one ticket per active seat, by label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingTickets {
    /// The booking.
    pub booking_id: Uuid,
    /// Its tickets (none once cancelled).
    pub tickets: Vec<TicketView>,
}

/// `GET /v1/bookings`: the caller's bookings, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingList {
    /// Bookings.
    pub bookings: Vec<Booking>,
}

/// `GET /v1/bookings/{id}/cancellation-quote`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancellationQuote {
    /// Booking id.
    pub booking_id: Uuid,
    /// Booking number.
    pub number: BookingNumber,
    /// Total paid.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// What cancelling now would refund.
    #[serde(flatten)]
    pub quote: RefundQuote,
    /// When this quote was computed, UTC.
    pub quoted_at: DateTime<Utc>,
}

/// A notification the buyer was sent (booking confirmed, refund issued …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The outbox event it came from (consumers de-duplicate by it).
    pub event_id: Uuid,
    /// Event type, e.g. `booking.confirmed`.
    pub kind: String,
    /// The event's payload.
    pub body: serde_json::Value,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/me/notifications`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationList {
    /// Newest first.
    pub notifications: Vec<Notification>,
}

/// `POST /v1/operator/reconcile`: what one reconciliation pass fixed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// Charged payments without a booking that were booked now.
    pub completed_bookings: u32,
    /// Charged payments that could not be booked and were refunded.
    pub refunded: u32,
    /// In-flight payments the gateway says failed.
    pub marked_failed: u32,
    /// In-flight payments the gateway never charged.
    pub abandoned: u32,
    /// Payments still unresolved (gateway unreachable); tried next pass.
    pub unresolved: u32,
}
