//! `/bookings`: the signed-in user's bookings in every city the edge
//! routes (one read per region core), each with its status and refund;
//! and `/c/{city}/bookings/{id}/cancel`: what cancelling now refunds
//! (the show's policy: 100 / 50 / 0 %), then a form that cancels.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use shared::api::{Booking, BookingStatus, CancellationQuote};

use super::checkout::booking_details;
use super::layout::{at_venue, csrf_field, document, escape, money, time_element, Shell, Viewer};

/// The bookings page.
pub struct BookingsPage<'a> {
    /// Each booking with the city to act on it through.
    pub bookings: &'a [(String, Booking)],
    /// Some region could not be asked (its bookings are missing).
    pub partial: bool,
    /// Now.
    pub now: DateTime<Utc>,
}

/// The document.
pub fn render(p: &BookingsPage<'_>, viewer: Viewer<'_>) -> String {
    let mut main = String::from("<h1>My bookings</h1>\n");
    if p.partial {
        main.push_str("<p class=\"notice\" role=\"alert\">Some cities could not be reached just now, so this list may be incomplete. Try again in a minute.</p>\n");
    }
    if p.bookings.is_empty() {
        main.push_str("<p>You have no bookings yet. <a href=\"/\">Find a show</a>.</p>\n");
    }
    main.push_str("<ul class=\"bookings\">\n");
    for (city, b) in p.bookings {
        let _ = writeln!(
            main,
            "<li class=\"booking-item\"><h2>{}</h2>\n{}",
            escape(&b.title),
            booking_details(b)
        );
        if b.status == BookingStatus::Confirmed && b.show_starts_at > p.now {
            let _ = writeln!(
                main,
                "<p><a href=\"/c/{}/bookings/{}/cancel\">Cancel this booking…</a></p>",
                escape(city),
                escape(&b.id.to_string())
            );
        }
        main.push_str("</li>\n");
    }
    main.push_str("</ul>\n");
    document(&Shell {
        title: "My bookings",
        viewer,
        main,
        ..Shell::default()
    })
}

/// The cancellation page: the quote, and the form that cancels.
pub struct CancelPage<'a> {
    /// City code.
    pub city: &'a str,
    /// The booking.
    pub booking: &'a Booking,
    /// What cancelling now refunds (`None`: cannot be cancelled).
    pub quote: Option<&'a CancellationQuote>,
    /// Why not, or what went wrong.
    pub message: Option<&'a str>,
    /// The key the cancel form carries (a double click cancels once).
    pub idempotency_key: &'a str,
}

/// The document.
pub fn render_cancel(p: &CancelPage<'_>, viewer: Viewer<'_>) -> String {
    let b = p.booking;
    let mut main = format!("<h1>Cancel booking {}</h1>\n", escape(b.number.as_str()));
    if let Some(m) = p.message {
        let _ = writeln!(main, "<p class=\"error\" role=\"alert\">{}</p>", escape(m));
    }
    main.push_str(&booking_details(b));
    if let Some(q) = p.quote {
        let _ = write!(
            main,
            "<h2>If you cancel now</h2>\n<p>You get back <strong>{} of {}</strong> ({} %).",
            escape(&money(q.quote.refund_minor, &q.currency)),
            escape(&money(q.amount_minor, &q.currency)),
            q.quote.percent
        );
        if let Some(at) = q.quote.changes_at {
            let local = at_venue(at, &b.show_starts_at_local);
            let _ = write!(
                main,
                " This applies until {}; after that the refund is smaller.",
                time_element(&local, &b.time_zone)
            );
        }
        main.push_str(
            "</p>\n<p>Your seats are released at once; the refund goes back to your card.</p>\n",
        );
        let _ = writeln!(
            main,
            "<form method=\"post\" action=\"/c/{}/bookings/{}/cancel\">{}\
             <input type=\"hidden\" name=\"idempotency_key\" value=\"{}\">\
             <p><button type=\"submit\" class=\"danger\">Cancel booking</button> \
             <a href=\"/bookings\">Keep it</a></p></form>",
            escape(p.city),
            escape(&b.id.to_string()),
            csrf_field(viewer.csrf),
            escape(p.idempotency_key)
        );
    } else {
        main.push_str("<p><a href=\"/bookings\">Back to my bookings</a></p>\n");
    }
    document(&Shell {
        title: "Cancel booking",
        viewer,
        main,
        ..Shell::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::checkout::tests::booking;
    use crate::pages::layout::tests::assert_page_rules;

    #[test]
    fn bookings_list_with_refund_state_and_a_cancel_link_for_live_ones() {
        let mut live = booking();
        live.status = BookingStatus::Confirmed;
        live.refund = None;
        live.cancelled_at = None;
        let list = [("mum".to_owned(), live), ("mum".to_owned(), booking())];
        let now = "2026-11-28T08:00:00Z".parse().unwrap();
        let html = render(
            &BookingsPage {
                bookings: &list,
                partial: true,
                now,
            },
            Viewer {
                user: Some("ann@example.com"),
                csrf: "t",
            },
        );
        assert_eq!(html.matches("Cancel this booking").count(), 1, "{html}");
        assert!(html.contains("Refund of ₹125: on its way."));
        assert!(html.contains("may be incomplete"));
        assert_page_rules(&html);
    }

    #[test]
    fn the_quote_page_says_what_comes_back_and_until_when() {
        let mut b = booking();
        b.status = BookingStatus::Confirmed;
        let q: CancellationQuote = serde_json::from_value(serde_json::json!({
            "booking_id": "01a22070-2c1e-7bd3-9c55-6f0c2b8a1e20", "number": "BMS20261128-MUM-000042",
            "amount_minor": 25000, "currency": "INR", "percent": 50, "refund_minor": 12500,
            "tier": { "min_hours_before": 4, "percent": 50 }, "changes_at": "2026-12-01T10:00:00Z",
            "quoted_at": "2026-11-30T06:45:00.120Z"
        }))
        .unwrap();
        let html = render_cancel(
            &CancelPage {
                city: "mum",
                booking: &b,
                quote: Some(&q),
                message: None,
                idempotency_key: "k",
            },
            Viewer {
                user: Some("ann@example.com"),
                csrf: "t",
            },
        );
        assert!(html.contains("₹125 of ₹250</strong> (50 %)"), "{html}");
        assert!(
            html.contains("Tue 1 Dec 2026, 15:30</time>"),
            "venue-local deadline"
        );
        assert!(html.contains("name=\"csrf\" value=\"t\""));
        assert_page_rules(&html);
    }
}
