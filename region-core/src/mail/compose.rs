//! What an e-mail says: subject, plain text, HTML and (for a confirmation)
//! an iCalendar file, from what the booking is and what happened to it.
//! Pure: the caller passes the facts and `now`; the templates are
//! compiled in (`region-core/templates/mail/`), HTML ones auto-escaped.

use chrono::{DateTime, Utc};
use icalendar::{Calendar, Component, Event, EventLike};
use minijinja::{context, Environment};
use serde::Serialize;
use shared::api::Booking;
use shared::display::{long_time, money};
use uuid::Uuid;

/// The events a buyer is e-mailed about, by outbox event type.
pub const EVENT_TYPES: [&str; 3] = ["booking.confirmed", "booking.cancelled", "refund.succeeded"];

/// What the e-mail is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The booking is confirmed (with the calendar file).
    Confirmed,
    /// The buyer cancelled: the refund's amount and state.
    Cancelled,
    /// The refund reached the gateway.
    Refunded,
}

impl Kind {
    /// The kind of an outbox event type (None: not e-mailed).
    pub fn of_event(event_type: &str) -> Option<Self> {
        match event_type {
            "booking.confirmed" => Some(Self::Confirmed),
            "booking.cancelled" => Some(Self::Cancelled),
            "refund.succeeded" => Some(Self::Refunded),
            _ => None,
        }
    }

    fn template(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }
}

/// Everything an e-mail says, read when it is sent.
#[derive(Debug, Clone)]
pub struct Facts {
    /// What happened.
    pub kind: Kind,
    /// The outbox event (the message's identity).
    pub event_id: Uuid,
    /// The booking as its buyer sees it.
    pub booking: Booking,
    /// The city whose pages show it.
    pub city: String,
    /// When the show ends (the calendar entry's end).
    pub ends_at: DateTime<Utc>,
    /// The refund the event names (cancelled, refunded), minor units.
    pub refund_minor: Option<i64>,
    /// Its state as the buyer should read it ("on its way" …).
    pub refund_state: Option<String>,
    /// The seats' signed ticket codes (seat label, code): a confirmation
    /// shows each as a QR code.
    pub tickets: Vec<(String, String)>,
    /// A cancellation by the organiser (`show_cancel`): their reason.
    pub show_cancelled: Option<String>,
}

/// A composed e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// Subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// An iCalendar file (`show.ics`), for a confirmation.
    pub ics: Option<String>,
    /// Inline images (Content-ID, PNG): the tickets' QR codes.
    pub images: Vec<(String, Vec<u8>)>,
}

/// Why an e-mail could not be composed (a template or zone defect: the
/// row is marked failed, never retried forever).
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// A template failed to render.
    #[error("template: {0}")]
    Template(#[from] minijinja::Error),
    /// The venue's time zone is not an IANA name.
    #[error("unknown time zone {0:?}")]
    Zone(String),
    /// A ticket code did not fit a QR code.
    #[error("{0}")]
    Qr(String),
}

/// Renders e-mails; built once per process.
pub struct Composer {
    env: Environment<'static>,
    /// Where the buyer's pages are (links), without a trailing `/`.
    public_url: String,
    /// The sender's domain: Message-IDs and calendar UIDs end with it.
    domain: String,
}

#[derive(Serialize)]
struct TicketLine {
    label: String,
    code: String,
    cid: String,
    side: u32,
}

#[derive(Serialize)]
struct SeatLine {
    label: String,
    category: String,
    price: String,
}

impl Composer {
    /// A composer linking to `public_url` and naming ids in `domain`.
    pub fn new(public_url: &str, domain: &str) -> Self {
        let mut env = Environment::new();
        for (name, source) in [
            (
                "layout.html",
                include_str!("../../templates/mail/layout.html"),
            ),
            ("show.html", include_str!("../../templates/mail/show.html")),
            ("show.txt", include_str!("../../templates/mail/show.txt")),
            (
                "confirmed.html",
                include_str!("../../templates/mail/confirmed.html"),
            ),
            (
                "confirmed.txt",
                include_str!("../../templates/mail/confirmed.txt"),
            ),
            (
                "cancelled.html",
                include_str!("../../templates/mail/cancelled.html"),
            ),
            (
                "cancelled.txt",
                include_str!("../../templates/mail/cancelled.txt"),
            ),
            (
                "refunded.html",
                include_str!("../../templates/mail/refunded.html"),
            ),
            (
                "refunded.txt",
                include_str!("../../templates/mail/refunded.txt"),
            ),
        ] {
            env.add_template(name, source)
                .expect("the mail templates are valid (checked by the unit tests)");
        }
        Self {
            env,
            public_url: public_url.trim_end_matches('/').to_owned(),
            domain: domain.to_owned(),
        }
    }

    /// The sender's domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The e-mail for `facts`, stamped `now`.
    pub fn compose(&self, facts: &Facts, now: DateTime<Utc>) -> Result<Letter, ComposeError> {
        let b = &facts.booking;
        let zone: chrono_tz::Tz = b
            .time_zone
            .parse()
            .map_err(|_| ComposeError::Zone(b.time_zone.clone()))?;
        let local = b.show_starts_at.with_timezone(&zone);
        let seats: Vec<SeatLine> = b
            .seats
            .iter()
            .map(|s| SeatLine {
                label: s.label.clone(),
                category: category_name(&s.category),
                price: money(s.price_minor, &b.currency),
            })
            .collect();
        let refund = facts.refund_minor.filter(|m| *m > 0);
        let mut images = Vec::new();
        let mut tickets = Vec::new();
        for (label, code) in &facts.tickets {
            let cid = format!("ticket-{}@{}", images.len() + 1, self.domain);
            let (png, side) = super::qr::png(code).map_err(ComposeError::Qr)?;
            images.push((cid.clone(), png));
            tickets.push(TicketLine {
                label: label.clone(),
                code: code.clone(),
                cid,
                side,
            });
        }
        let subject = match facts.kind {
            Kind::Confirmed => format!("Your tickets: {}, {}", b.title, long_time(&local)),
            Kind::Cancelled if facts.show_cancelled.is_some() => {
                format!("Show cancelled: booking {}", b.number)
            }
            Kind::Cancelled => format!("Cancelled: booking {}", b.number),
            Kind::Refunded => format!(
                "Refund of {} sent: booking {}",
                money(refund.unwrap_or(0), &b.currency),
                b.number
            ),
        };
        let ctx = context! {
            subject => &subject,
            title => &b.title,
            venue => &b.venue_name,
            starts_at => long_time(&local),
            starts_at_rfc3339 => local.to_rfc3339(),
            time_zone => &b.time_zone,
            number => b.number.to_string(),
            seats => seats,
            tickets => tickets,
            total => money(b.amount_minor, &b.currency),
            refund => refund.map(|m| money(m, &b.currency)),
            refund_state => facts.refund_state.as_deref().unwrap_or("pending"),
            show_cancelled => facts.show_cancelled.as_deref(),
            // Built from configuration, a city code and a booking number
            // (none can hold markup): as is, so `/` stays `/` in the href.
            booking_url => minijinja::Value::from_safe_string(format!(
                "{}/c/{}/bookings/{}",
                self.public_url, facts.city, b.number
            )),
        };
        let name = facts.kind.template();
        let text = self
            .env
            .get_template(&format!("{name}.txt"))?
            .render(&ctx)?;
        let html = self
            .env
            .get_template(&format!("{name}.html"))?
            .render(&ctx)?;
        let ics = (facts.kind == Kind::Confirmed).then(|| self.calendar(facts, now));
        Ok(Letter {
            subject,
            text,
            html,
            ics,
            images,
        })
    }

    /// The show as one calendar event (UTC times: every calendar shows
    /// them in its own zone; the venue's zone is in the description).
    fn calendar(&self, facts: &Facts, now: DateTime<Utc>) -> String {
        let b = &facts.booking;
        let seats: Vec<&str> = b.seats.iter().map(|s| s.label.as_str()).collect();
        let event = Event::new()
            .uid(&format!("{}@{}", b.id, self.domain))
            .timestamp(now)
            .summary(&b.title)
            .location(&b.venue_name)
            .starts(b.show_starts_at)
            .ends(facts.ends_at)
            .description(&format!(
                "Booking {}. Seats: {}. Venue time zone: {}.",
                b.number,
                seats.join(", "),
                b.time_zone
            ))
            .done();
        Calendar::new().push(event).done().to_string()
    }
}

/// `REGULAR` → `Regular` (as the buyer's pages name categories).
fn category_name(raw: &str) -> String {
    let lower = raw.to_lowercase();
    let mut chars = lower.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booking() -> Booking {
        let starts: DateTime<Utc> = "2030-01-16T00:30:00Z".parse().unwrap();
        serde_json::from_value(serde_json::json!({
            "id": "0190a0a0-0000-7000-8000-000000000001",
            "number": "BMS20300115-NYC-000042",
            "status": "CONFIRMED",
            "show_id": "0190a0a0-0000-7000-8000-000000000002",
            "title": "Hamlet & <Co>",
            "venue_name": "Lyric",
            "show_starts_at": starts,
            "show_starts_at_local": "2030-01-15T19:30:00-05:00",
            "time_zone": "America/New_York",
            "seats": [
                {"label": "F12", "category": "REGULAR", "price_minor": 1250},
                {"label": "F13", "category": "REGULAR", "price_minor": 1250}
            ],
            "amount_minor": 2500,
            "currency": "USD",
            "payment_id": "0190a0a0-0000-7000-8000-000000000003",
            "refund_policy": {"tiers": []},
            "created_at": "2030-01-01T00:00:00Z",
            "cancelled_at": null,
            "refund": null
        }))
        .expect("a booking")
    }

    fn facts(kind: Kind) -> Facts {
        Facts {
            kind,
            event_id: Uuid::from_u128(9),
            booking: booking(),
            city: "nyc".into(),
            ends_at: "2030-01-16T03:00:00Z".parse().unwrap(),
            refund_minor: Some(1875),
            refund_state: Some("pending".into()),
            tickets: vec![("F12".into(), "code-f12".into())],
            show_cancelled: None,
        }
    }

    #[test]
    fn a_confirmation_is_in_the_venues_time_and_escapes_html() {
        let c = Composer::new("https://tickets.example/", "tickets.example");
        let now: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        let l = c.compose(&facts(Kind::Confirmed), now).unwrap();
        // 00:30 UTC on the 16th is 19:30 on the 15th in New York.
        assert_eq!(
            l.subject,
            "Your tickets: Hamlet & <Co>, Tue 15 Jan 2030, 19:30"
        );
        assert!(l
            .text
            .contains("When:    Tue 15 Jan 2030, 19:30 (America/New_York)"));
        assert!(l.text.contains("F12  Regular  $12.50"), "{}", l.text);
        assert!(l.text.contains("Total: $25"));
        assert!(l.html.contains("Hamlet &amp; &lt;Co&gt;"), "escaped");
        assert!(!l.html.contains("<Co>"));
        assert!(l
            .html
            .contains("href=\"https://tickets.example/c/nyc/bookings/BMS20300115-NYC-000042\""));
        let ics = l.ics.unwrap();
        assert!(ics.contains("DTSTART:20300116T003000Z"), "{ics}");
        assert!(ics.contains("UID:0190a0a0-0000-7000-8000-000000000001@tickets.example"));
        assert_eq!(l.images.len(), 1);
        assert!(
            l.html.contains("src=\"cid:ticket-1@tickets.example\""),
            "{}",
            l.html
        );
        assert!(l.text.contains("F12: code-f12"), "{}", l.text);
    }

    #[test]
    fn a_cancellation_names_the_refund_and_a_refund_its_amount() {
        let c = Composer::new("http://127.0.0.1:8787", "localhost");
        let now = Utc::now();
        let l = c.compose(&facts(Kind::Cancelled), now).unwrap();
        assert!(l.text.contains("We are refunding $18.75"), "{}", l.text);
        assert!(l.text.contains("Refund: pending."));
        assert_eq!(l.ics, None);
        let mut none = facts(Kind::Cancelled);
        none.refund_minor = Some(0);
        let l = c.compose(&none, now).unwrap();
        assert!(l.text.contains("No refund is due"));
        let mut organiser = facts(Kind::Cancelled);
        organiser.show_cancelled = Some("The cast is <unwell>".into());
        let l = c.compose(&organiser, now).unwrap();
        assert_eq!(l.subject, "Show cancelled: booking BMS20300115-NYC-000042");
        assert!(
            l.text
                .contains("The organiser cancelled the show: The cast is <unwell>."),
            "{}",
            l.text
        );
        assert!(l.html.contains("The cast is &lt;unwell&gt;"), "{}", l.html);
        let l = c.compose(&facts(Kind::Refunded), now).unwrap();
        assert_eq!(
            l.subject,
            "Refund of $18.75 sent: booking BMS20300115-NYC-000042"
        );
    }

    #[test]
    fn an_unknown_zone_is_an_error_not_a_guess() {
        let c = Composer::new("http://x", "x");
        let mut f = facts(Kind::Confirmed);
        f.booking.time_zone = "Mars/Olympus".into();
        assert!(matches!(
            c.compose(&f, Utc::now()),
            Err(ComposeError::Zone(_))
        ));
    }
}
