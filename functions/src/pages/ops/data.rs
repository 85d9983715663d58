//! What the console reads from the region core's operator endpoints
//! (docs/api.md, "Operator reads and reports"), as the pages need it.
//! Lenient on purpose (`#[serde(default)]`): a field the region adds or
//! leaves out must not turn a page into a 500.

use serde::Deserialize;

/// Seat counts (`available + held + booked = total`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Seats in all.
    pub total: i64,
    /// Free now.
    pub available: i64,
    /// Under a live hold.
    pub held: i64,
    /// Sold.
    pub booked: i64,
}

/// One price category's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CategoryCounts {
    /// `PREMIUM`, `REGULAR`…
    pub category: String,
    /// Seats in all.
    pub total: i64,
    /// Free now.
    pub available: i64,
    /// Under a live hold.
    pub held: i64,
    /// Sold.
    pub booked: i64,
}

/// `GET /v1/operator/shows/{id}/occupancy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Occupancy {
    /// When the counts were read (RFC 3339).
    pub as_of: String,
    /// By category.
    pub categories: Vec<CategoryCounts>,
    /// The show's totals.
    pub totals: Counts,
}

/// One booking of `GET /v1/operator/shows/{id}/bookings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ShowBooking {
    /// Booking id.
    pub id: String,
    /// Booking number.
    pub number: String,
    /// The buyer.
    pub user_id: String,
    /// `CONFIRMED` or `CANCELLED`.
    pub status: String,
    /// Seat labels.
    pub seats: Vec<String>,
    /// Paid, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// The refund's status, if any.
    pub refund_status: Option<String>,
    /// When booked (RFC 3339).
    pub created_at: String,
}

/// `GET /v1/operator/shows/{id}/bookings`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ShowBookings {
    /// Oldest first.
    pub bookings: Vec<ShowBooking>,
    /// The next page's cursor (`None` on the last page).
    pub next_after: Option<String>,
}

/// A booked seat of the booking object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BookedSeat {
    /// `A5`.
    pub label: String,
    /// Price category.
    pub category: String,
}

/// The booking object, as far as the lookup shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LookupBooking {
    /// Booking id.
    pub id: String,
    /// Booking number.
    pub number: String,
    /// `CONFIRMED` or `CANCELLED`.
    pub status: String,
    /// Show id.
    pub show_id: String,
    /// Movie title.
    pub title: String,
    /// Venue.
    pub venue_name: String,
    /// The show's start, venue-local.
    pub show_starts_at_local: String,
    /// Seats.
    pub seats: Vec<BookedSeat>,
    /// Paid, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// When booked (RFC 3339).
    pub created_at: String,
}

/// A refund in full (the lookup's `refund`, the answer of retry/settle).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RefundDetail {
    /// Refund id.
    pub id: String,
    /// `PENDING`, `FAILED`, `SUCCEEDED`, `SETTLED_MANUALLY`.
    pub status: String,
    /// Why it was made.
    pub reason: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Gateway attempts.
    pub attempts: i64,
    /// The gateway's last refusal.
    pub last_error: Option<String>,
    /// Who settled it by hand.
    pub settled_by: Option<String>,
    /// The operator's note.
    pub settle_note: Option<String>,
}

/// `GET /v1/operator/bookings/{number}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BookingLookup {
    /// The booking.
    pub booking: LookupBooking,
    /// The buyer.
    pub user_id: String,
    /// The payment's status.
    pub payment_status: Option<String>,
    /// The gateway's payment id.
    pub gateway_payment_id: Option<String>,
    /// The refund, if any.
    pub refund: Option<RefundDetail>,
}

/// One refund of `GET /v1/operator/refunds`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RefundItem {
    /// Refund id.
    pub id: String,
    /// `FAILED` or `PENDING`.
    pub status: String,
    /// The booking's number (`None`: a charge that never became one).
    pub booking_number: Option<String>,
    /// Why it was made.
    pub reason: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// Gateway attempts.
    pub attempts: i64,
    /// The gateway's last refusal.
    pub last_error: Option<String>,
    /// How long it has waited.
    pub age_seconds: i64,
}

/// `GET /v1/operator/refunds`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RefundList {
    /// Oldest first.
    pub refunds: Vec<RefundItem>,
}

/// One line (or total) of the sales report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SalesLine {
    /// The day of sale (group `day`).
    pub day: Option<String>,
    /// The show's title (group `show`).
    pub title: Option<String>,
    /// The show's start (group `show`).
    pub show_starts_at: Option<String>,
    /// Currency.
    pub currency: String,
    /// Bookings made.
    pub bookings_confirmed: i64,
    /// Their seats.
    pub seats_sold: i64,
    /// What they were paid.
    pub gross_minor: i64,
    /// Cancelled by now.
    pub bookings_cancelled: i64,
    /// Paid back.
    pub refunded_minor: i64,
    /// On the way back.
    pub refunds_pending_minor: i64,
    /// Refused by the gateway: an operator's to act on.
    pub refunds_failed_minor: i64,
    /// `gross - refunded`.
    pub net_minor: i64,
}

/// `GET /v1/operator/reports/sales`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SalesReport {
    /// Lines.
    pub lines: Vec<SalesLine>,
    /// One per currency.
    pub totals: Vec<SalesLine>,
}

/// The region core's error body's message (`None`: not an error body).
pub fn region_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["error"]["message"].as_str().map(str::to_owned)
}

// ------------------------------------------------- operator diagnostics

/// A once-per-shard job's lease (`GET /v1/operator/shard`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Lease {
    /// `redis-path`, `reconcile`.
    pub job: String,
    /// The replica holding it.
    pub holder: String,
    /// Grows each time the lease changes hands.
    pub epoch: i64,
    /// Since when (RFC 3339).
    pub acquired_at: String,
    /// Until when.
    pub expires_at: String,
    /// False once it lapsed.
    pub live: bool,
}

/// The shard's hold path.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RedisPath {
    /// Even: the fast path; odd: Postgres alone.
    pub generation: i64,
    /// Holds lock seats in Redis first.
    pub fast: bool,
    /// When it last switched.
    pub changed_at: String,
    /// Which replica switched it.
    pub changed_by: String,
    /// Why.
    pub reason: String,
}

/// A replica's last report of its link to Redis.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ReplicaLink {
    /// The replica.
    pub replica: String,
    /// It reaches Redis.
    pub ok: bool,
    /// When it last said so.
    pub seen_at: String,
    /// Its report is fresh enough to count.
    pub counted: bool,
}

/// The replica that answered.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Answerer {
    /// Its name.
    pub replica: String,
    /// Its own holds take the Redis fast path now.
    pub fast_path: bool,
}

/// Events not yet published.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct OutboxBacklog {
    /// How many.
    pub unpublished: i64,
    /// The oldest's age.
    pub oldest_seconds: Option<f64>,
}

/// Held seats whose hold ended.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SweeperBacklog {
    /// Still HELD after their hold ended.
    pub expired_held_seats: i64,
    /// Those ended more than `overdue_after_seconds` ago.
    pub overdue_seats: i64,
    /// The overdue threshold.
    pub overdue_after_seconds: f64,
    /// The oldest's end.
    pub oldest_expired_at: Option<String>,
}

/// The mail queue.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MailBacklog {
    /// Waiting to be sent.
    pub pending: i64,
    /// Given up.
    pub failed: i64,
    /// The oldest waiting one's age.
    pub oldest_pending_seconds: Option<f64>,
}

/// Money not yet settled.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct MoneyBacklog {
    /// Charges neither booked nor refunded.
    pub payments_unsettled: i64,
    /// The oldest's age.
    pub oldest_unsettled_seconds: Option<f64>,
    /// Refunds on their way.
    pub refunds_pending: i64,
    /// Refunds the gateway refused.
    pub refunds_failed: i64,
}

/// `GET /v1/operator/shard`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ShardStatus {
    /// When it was read.
    pub as_of: String,
    /// Who answered.
    pub answered_by: Answerer,
    /// The shard's leases.
    pub leases: Vec<Lease>,
    /// The hold path (`None`: never switched).
    pub redis_path: Option<RedisPath>,
    /// Each replica's link to Redis.
    pub replicas: Vec<ReplicaLink>,
    /// Outbox.
    pub outbox: OutboxBacklog,
    /// Sweeper.
    pub sweeper: SweeperBacklog,
    /// Mail.
    pub mail: MailBacklog,
    /// Money.
    pub money: MoneyBacklog,
}

/// A seat in two live holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct DoubleHold {
    /// Show.
    pub show_id: String,
    /// Seat label.
    pub seat: String,
    /// The holds.
    pub holds: Vec<String>,
}

/// `show_seats` and `hold_seats` disagree about a seat's holder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct HolderMismatch {
    /// Show.
    pub show_id: String,
    /// Seat label.
    pub seat: String,
    /// The seat's status.
    pub status: String,
    /// The hold `show_seats` names.
    pub show_seats_says: Option<String>,
    /// The live hold `hold_seats` names.
    pub hold_seats_says: Option<String>,
}

/// A hold that does not own exactly its seats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PartialHold {
    /// Hold.
    pub hold_id: String,
    /// Show.
    pub show_id: String,
    /// Its state.
    pub state: String,
    /// Seats it was made for.
    pub seat_count: i64,
    /// Seats it owns.
    pub live_seats: i64,
}

/// A seat and the bookings disagree.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BookingMismatch {
    /// Show.
    pub show_id: String,
    /// Seat label.
    pub seat: String,
    /// `two_active_bookings`, `booked_without_booking`, `booking_seat_not_booked`.
    pub problem: String,
    /// The seat's status.
    pub status: String,
    /// The booking `show_seats` names.
    pub show_seats_says: Option<String>,
    /// The confirmed bookings holding the seat.
    pub bookings_say: Vec<String>,
}

/// A seat whose Redis key disagrees with Postgres.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RedisMismatch {
    /// Seat label.
    pub seat: String,
    /// What Postgres says.
    pub postgres: String,
    /// The key's value (`None`: no key).
    pub redis: Option<String>,
}

/// One show's Redis against Postgres.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RedisAgreement {
    /// False when not compared (`reason`).
    pub checked: bool,
    /// Why not.
    pub reason: Option<String>,
    /// Seats compared.
    pub seats: i64,
    /// Disagreements.
    pub mismatches: Vec<RedisMismatch>,
}

/// `GET /v1/operator/integrity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Integrity {
    /// Every list empty.
    pub ok: bool,
    /// When checked.
    pub checked_at: String,
    /// The one show checked.
    pub show_id: Option<String>,
    /// Seats in two live holds.
    pub double_holds: Vec<DoubleHold>,
    /// Holder disagreements.
    pub holder_mismatches: Vec<HolderMismatch>,
    /// Holds not all-or-nothing.
    pub partial_holds: Vec<PartialHold>,
    /// Seat and booking disagreements.
    pub booking_mismatches: Vec<BookingMismatch>,
    /// A list was cut at 100 rows.
    pub truncated: bool,
    /// One show's Redis check.
    pub redis: Option<RedisAgreement>,
}

// ------------------------------------------------------------- mail

/// One message of `GET /v1/operator/mail`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MailItem {
    /// The message's id (its `Message-ID`).
    pub event_id: String,
    /// `booking.confirmed`, `booking.cancelled`, `refund.succeeded`.
    pub kind: String,
    /// The buyer's address.
    pub recipient: String,
    /// `failed`, `pending`, `sent`.
    pub state: String,
    /// Sending attempts.
    pub attempts: i64,
    /// The SMTP server's last answer.
    pub last_error: Option<String>,
    /// When queued (RFC 3339).
    pub created_at: String,
    /// The booking's number.
    pub booking_number: Option<String>,
    /// The booking's city.
    pub city: Option<String>,
}

/// `GET /v1/operator/mail`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MailList {
    /// Newest first.
    pub messages: Vec<MailItem>,
    /// The next, older page's cursor.
    pub next_after: Option<String>,
}

/// `POST /v1/operator/mail/resend`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Resent {
    /// How many were queued again.
    pub resent: i64,
}
