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
