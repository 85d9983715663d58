//! Section 6 of the demo: one flash-sale winner buys the seats they hold,
//! printed step by step, every request through the edge, and everything
//! the buyer is promised is checked on the way: the booking, a replayed
//! payment that charges nothing, the cancellation quote, the refund
//! landing at the gateway, and the notifications the buyer was sent.

use super::{money, Checks, WonHold};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use loadgen::purchase::{self, Paid, Patience, CARD_OK};
use mail_parser::MimeHeaders as _;
use reqwest::StatusCode;
use shared::api::{
    Booking, BookingTickets, CancellationQuote, Notification, NotificationList, RefundView, Show,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::api::Method;
use testkit::gateway::Gateway;

/// How often the refund and the notifications are looked for.
const POLL: Duration = Duration::from_millis(250);

/// What the walk-through achieved, for the RESULT line.
pub(super) struct Purchase {
    /// E-mails the buyer was sent about this purchase (None: no mail
    /// catcher to read them from).
    pub emails: Option<usize>,
    /// The booking number.
    pub number: String,
    /// Amount paid, formatted.
    pub paid: String,
    /// Amount refunded at the gateway, formatted.
    pub refunded: String,
    /// Notifications the buyer received about this purchase.
    pub notifications: usize,
}

/// `dt` in `tz`, e.g. `Sun 30 Nov 2026 22:00 IST`.
fn local(dt: DateTime<Utc>, tz: &str) -> String {
    match tz.parse::<Tz>() {
        Ok(tz) => dt
            .with_timezone(&tz)
            .format("%a %d %b %Y %H:%M %Z")
            .to_string(),
        Err(_) => dt.to_rfc3339(),
    }
}

/// The purchase, step by step. Failed expectations are recorded in
/// `checks`; an error means the walk-through could not go on. Each step
/// is a function below, named for what the buyer does.
pub(super) async fn buy_and_cancel(
    gateway: &Gateway,
    show: &Show,
    buyer: &WonHold,
    checks: &mut Checks,
    wait: Duration,
    mail_dir: Option<&Path>,
    staff: &str,
) -> anyhow::Result<Purchase> {
    gateway.health().await?;
    let (booking, first_body, key) = hold_and_pay(show, buyer).await?;
    show_booking(buyer, &booking, checks);
    let unscanned = at_the_door(buyer, &booking, staff, checks).await?;
    replay(gateway, buyer, &booking, &first_body, &key, checks).await?;
    let quote = quote(buyer, &booking).await?;
    let refund = cancel(buyer, &booking, &quote, checks).await?;
    let refunded_minor = match &refund {
        Some(r) => refund_lands(gateway, buyer, &booking, r, wait, checks).await?,
        None => {
            println!("   7. refund   none due (the 0 % tier)");
            0
        }
    };
    if let Some(code) = unscanned {
        let (status, err) = scan(buyer, &booking, staff, &code).await?;
        println!("   7b. door    after cancelling: its ticket scanned → {status} {err}");
        checks.record(
            "a cancelled booking's ticket is refused at the door",
            status == 410,
            format!("{status} {err}"),
        );
    }
    let notifications = notifications(buyer, &booking, refund.is_some(), wait, checks).await?;
    let emails = match mail_dir {
        Some(dir) => Some(emails(buyer, &booking, refund.is_some(), dir, wait, checks).await?),
        None => None,
    };
    Ok(Purchase {
        emails,
        number: booking.number.to_string(),
        paid: money(booking.amount_minor, &booking.currency),
        refunded: money(refunded_minor, &booking.currency),
        notifications,
    })
}

/// Steps 1 and 2: the hold the buyer won, and the payment, as a careful
/// client (same key after 503, new key after 402).
async fn hold_and_pay(show: &Show, buyer: &WonHold) -> anyhow::Result<(Booking, Vec<u8>, String)> {
    let api = &buyer.api;
    let h = &buyer.hold;
    println!(
        "   buyer {} (a flash-sale winner) pays for the seats they hold",
        buyer.user
    );
    println!(
        "   1. hold     {} on {:?} ({}): hold {}, expires {}",
        h.seats.join(", "),
        show.movie_title,
        local(show.starts_at, &show.time_zone),
        h.hold_id,
        h.expires_at.format("%H:%M:%S UTC")
    );

    let run = purchase::pay(api, &buyer.bearer, h.hold_id, "demo", Patience::default()).await;
    println!(
        "   2. pay      POST {} {{\"payment_method\":\"{CARD_OK}\"}}",
        api.path(&format!("/v1/holds/{}/checkout", h.hold_id))
    );
    for a in &run.attempts {
        let status = a
            .status
            .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
        let then = if a.waited > Duration::ZERO {
            format!(
                "; retrying with the same key in {:.1} s",
                a.waited.as_secs_f64()
            )
        } else {
            String::new()
        };
        println!(
            "               Idempotency-Key {} -> {status} {} in {:.0} ms{then}",
            a.key,
            a.code,
            a.latency.as_secs_f64() * 1000.0
        );
    }
    match run.outcome {
        Paid::Booked { booking, body, key } => Ok((*booking, body, key)),
        other => anyhow::bail!("the purchase was not confirmed: {other:?}"),
    }
}

/// Step 3: the booking, checked against the hold.
fn show_booking(buyer: &WonHold, booking: &Booking, checks: &mut Checks) {
    let h = &buyer.hold;
    let seats_line = booking
        .seats
        .iter()
        .map(|s| {
            format!(
                "{} ({}, {})",
                s.label,
                s.category,
                money(s.price_minor, &booking.currency)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "   3. booking  {} {}: {}",
        booking.number,
        booking.status.as_db_str(),
        seats_line
    );
    println!(
        "               paid {} for {:?} at {}, {}",
        money(booking.amount_minor, &booking.currency),
        booking.title,
        booking.venue_name,
        local(booking.show_starts_at, &booking.time_zone)
    );
    println!(
        "               (local show time {} in {})",
        booking.show_starts_at_local, booking.time_zone
    );
    let mut booked: Vec<&str> = booking.seats.iter().map(|s| s.label.as_str()).collect();
    let mut held: Vec<&str> = h.seats.iter().map(String::as_str).collect();
    booked.sort_unstable();
    held.sort_unstable();
    let seat_sum: i64 = booking.seats.iter().map(|s| s.price_minor).sum();
    checks.record(
        "the booking is CONFIRMED for exactly the held seats, at their prices",
        booking.status == shared::api::BookingStatus::Confirmed
            && booked == held
            && seat_sum == booking.amount_minor,
        format!(
            "status {:?}, seats {booked:?} vs held {held:?}, seat prices {seat_sum} vs amount {}",
            booking.status, booking.amount_minor
        ),
    );
}

/// Step 4: the same request again gets the stored answer, not a second
/// charge.
async fn replay(
    gateway: &Gateway,
    buyer: &WonHold,
    booking: &Booking,
    first_body: &[u8],
    key: &str,
    checks: &mut Checks,
) -> anyhow::Result<()> {
    let (api, h) = (&buyer.api, &buyer.hold);
    let replay = purchase::checkout_once(api, &buyer.bearer, h.hold_id, key).await?;
    let same_booking = replay.json::<Booking>().is_ok_and(|b| b.id == booking.id);
    println!(
        "   4. replay   same request, same key -> {}, idempotent-replayed: {}, {}",
        replay.status.as_u16(),
        replay.replayed(),
        if replay.body == first_body {
            "byte-identical answer"
        } else {
            "a DIFFERENT answer"
        }
    );
    let intents = gateway.intents_for(booking.payment_id).await?;
    let charged: Vec<_> = intents.iter().filter(|i| i.succeeded()).collect();
    println!(
        "               gateway: {} charge(s) for payment {}: {}",
        charged.len(),
        booking.payment_id,
        charged
            .iter()
            .map(|i| format!("{} {}", i.id, money(i.amount, &i.currency)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    checks.record(
        "a replayed payment returns the same booking and charges once",
        replay.status == StatusCode::CREATED
            && replay.replayed()
            && replay.body == first_body
            && same_booking
            && charged.len() == 1
            && charged[0].amount == booking.amount_minor,
        format!(
            "replay {} (replayed {}), {} charges at the gateway",
            replay.status.as_u16(),
            replay.replayed(),
            charged.len()
        ),
    );

    Ok(())
}

/// Step 5: what cancelling would refund now.
async fn quote(buyer: &WonHold, booking: &Booking) -> anyhow::Result<CancellationQuote> {
    let api = &buyer.api;
    let quote: CancellationQuote = api
        .get(
            &format!("/v1/bookings/{}/cancellation-quote", booking.id),
            Some(&buyer.bearer),
        )
        .await?;
    let tier = quote.quote.tier.as_ref().map_or_else(
        || "no tier applies".to_owned(),
        |t| format!("tier: at least {} h before the show", t.min_hours_before),
    );
    let changes = quote.quote.changes_at.map_or_else(String::new, |c| {
        format!("; drops after {}", local(c, &booking.time_zone))
    });
    println!(
        "   5. quote    cancelling now refunds {} % = {} ({tier}{changes})",
        quote.quote.percent,
        money(quote.quote.refund_minor, &booking.currency)
    );

    Ok(quote)
}

/// Step 6: cancel; the refund is what was quoted.
async fn cancel(
    buyer: &WonHold,
    booking: &Booking,
    quote: &CancellationQuote,
    checks: &mut Checks,
) -> anyhow::Result<Option<RefundView>> {
    let api = &buyer.api;
    let cancel_key = purchase::new_key("demo-cancel");
    let resp = api
        .send(
            Method::POST,
            &format!("/v1/bookings/{}/cancel", booking.id),
            Some(&buyer.bearer),
            Some(&cancel_key),
            None::<&()>,
        )
        .await?;
    if resp.status != StatusCode::OK {
        anyhow::bail!("cancelling answered {}", resp.failure());
    }
    let cancelled: Booking = resp.json()?;
    let refund = cancelled.refund.clone();
    println!(
        "   6. cancel   POST {} -> 200 {}; refund {}",
        api.path(&format!("/v1/bookings/{}/cancel", booking.id)),
        cancelled.status.as_db_str(),
        refund.as_ref().map_or_else(
            || "none (0 %)".to_owned(),
            |r| format!(
                "{} {} {}",
                r.id,
                money(r.amount_minor, &booking.currency),
                r.status
            )
        )
    );
    checks.record(
        "the cancellation refunds what was quoted",
        cancelled.status == shared::api::BookingStatus::Cancelled
            && refund.as_ref().map_or(0, |r| r.amount_minor) == quote.quote.refund_minor,
        format!(
            "status {:?}, refund {:?}, quoted {}",
            cancelled.status,
            refund.as_ref().map(|r| r.amount_minor),
            quote.quote.refund_minor
        ),
    );

    Ok(refund)
}

/// Step 7: the refund lands at the gateway; returns the amount refunded
/// there.
async fn refund_lands(
    gateway: &Gateway,
    buyer: &WonHold,
    booking: &Booking,
    r: &RefundView,
    wait: Duration,
    checks: &mut Checks,
) -> anyhow::Result<i64> {
    let api = &buyer.api;
    let started = Instant::now();
    let until = started + wait;
    let landed = loop {
        let b: Booking = api
            .get(&format!("/v1/bookings/{}", booking.id), Some(&buyer.bearer))
            .await?;
        if b.refund.is_some_and(|r| r.status == "SUCCEEDED") {
            break true;
        }
        if Instant::now() >= until {
            break false;
        }
        tokio::time::sleep(POLL).await;
    };
    // The ledger, not the intent list: only it shows refunds.
    let reference = booking.payment_id.to_string();
    let intent = gateway
        .ledger()
        .await?
        .intents
        .into_iter()
        .find(|i| i.succeeded() && i.reference == reference);
    let refunded_minor = intent.as_ref().map_or(0, |i| i.amount_refunded);
    // The gateway's refund carries our refund id as its reference.
    let ours = r.id.to_string();
    let at_gateway = intent
        .as_ref()
        .and_then(|i| i.refunds.iter().find(|g| g.reference == ours));
    println!(
        "   7. refund   {} after {:.1} s; gateway: {} refunded {} of {} ({})",
        if landed { "SUCCEEDED" } else { "NOT SUCCEEDED" },
        started.elapsed().as_secs_f64(),
        intent.as_ref().map_or("no charge", |i| i.id.as_str()),
        money(refunded_minor, &booking.currency),
        money(booking.amount_minor, &booking.currency),
        at_gateway.map_or_else(
            || "no gateway refund for it".to_owned(),
            |g| format!("{} for refund {}", g.id, r.id)
        )
    );
    checks.record(
        "the refund succeeded and landed at the gateway in full",
        landed
            && refunded_minor == r.amount_minor
            && at_gateway.is_some_and(|g| g.amount == r.amount_minor),
        format!(
            "status succeeded: {landed}, gateway refunded {refunded_minor} of {}",
            r.amount_minor
        ),
    );
    Ok(refunded_minor)
}

/// Step 8: what the buyer was told; returns how many notifications.
async fn notifications(
    buyer: &WonHold,
    booking: &Booking,
    refunded: bool,
    wait: Duration,
    checks: &mut Checks,
) -> anyhow::Result<usize> {
    let api = &buyer.api;
    let mut expected: BTreeSet<&str> = [
        "payment.succeeded",
        "booking.confirmed",
        "booking.cancelled",
    ]
    .into();
    if refunded {
        expected.insert("refund.succeeded");
    }
    let about_this = |n: &Notification| {
        let id = |f: &str| n.body.get(f).and_then(|v| v.as_str()).map(str::to_owned);
        id("payment_id") == Some(booking.payment_id.to_string())
            || id("booking_id") == Some(booking.id.to_string())
    };
    let until = Instant::now() + wait;
    let mut received = loop {
        let list: NotificationList = api.get("/v1/me/notifications", Some(&buyer.bearer)).await?;
        let ours: Vec<Notification> = list.notifications.into_iter().filter(about_this).collect();
        let kinds: BTreeSet<&str> = ours.iter().map(|n| n.kind.as_str()).collect();
        if expected.is_subset(&kinds) || Instant::now() >= until {
            break ours;
        }
        tokio::time::sleep(POLL).await;
    };
    received.sort_by_key(|n| n.created_at);
    println!("   8. notifications {} received:", buyer.user);
    for n in &received {
        println!(
            "               {}  {:<18} {}",
            n.created_at.format("%H:%M:%S%.3f UTC"),
            n.kind,
            describe(n, &booking.currency)
        );
    }
    let kinds: BTreeSet<&str> = received.iter().map(|n| n.kind.as_str()).collect();
    checks.record(
        "the buyer was notified of payment, booking, cancellation and refund",
        expected.is_subset(&kinds),
        format!(
            "missing: {:?}",
            expected.difference(&kinds).collect::<Vec<_>>()
        ),
    );
    Ok(received.len())
}

/// A notification's gist, e.g. `BMS…-DEV-12 · A5, A6 · ₹500`.
fn describe(n: &Notification, currency: &str) -> String {
    let b = &n.body;
    let gateway_id = b
        .get("gateway_payment_id")
        .or_else(|| b.get("gateway_refund_id"))
        .and_then(|v| v.as_str());
    let amount = b
        .get("amount_minor")
        .or_else(|| b.get("refund_minor"))
        .and_then(|v| v.as_i64());
    let number = b.get("number").and_then(|v| v.as_str());
    let seats = b.get("seats").and_then(|v| v.as_array()).map(|s| {
        s.iter()
            .filter_map(|x| x.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    });
    let mut parts = Vec::new();
    if let Some(n) = number {
        parts.push(n.to_owned());
    }
    if let Some(s) = seats {
        parts.push(s);
    }
    if let Some(a) = amount {
        parts.push(money(a, currency));
    }
    if let Some(g) = gateway_id {
        parts.push(format!("gateway {g}"));
    }
    parts.join(" · ")
}

/// Step 9: the e-mail the buyer was sent, read back from the local mail
/// catcher's directory: the confirmation (with the show's calendar
/// file), the cancellation and, when one was due, the refund's.
async fn emails(
    buyer: &WonHold,
    booking: &Booking,
    refunded: bool,
    dir: &Path,
    wait: Duration,
    checks: &mut Checks,
) -> anyhow::Result<usize> {
    let number = booking.number.to_string();
    let expected = if refunded { 3 } else { 2 };
    let until = Instant::now() + wait;
    let ours = loop {
        let mut ours = Vec::new();
        for raw in testkit::mail::messages_in(dir)? {
            let Some(m) = mail_parser::MessageParser::default().parse(&raw) else {
                continue;
            };
            let to_buyer = m
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .is_some_and(|a| a == buyer.user);
            let about_this = m.body_text(0).is_some_and(|t| t.contains(&number));
            if to_buyer && about_this {
                let calendar = m
                    .attachments()
                    .any(|a| a.attachment_name() == Some("show.ics"));
                ours.push((m.subject().unwrap_or_default().to_owned(), calendar));
            }
        }
        if ours.len() >= expected || Instant::now() >= until {
            break ours;
        }
        tokio::time::sleep(POLL).await;
    };
    println!(
        "   9. e-mail   to {} (over SMTP to the local mail catcher):",
        buyer.user
    );
    for (subject, calendar) in &ours {
        let ics = if *calendar { "  [+ show.ics]" } else { "" };
        println!("               {subject}{ics}");
    }
    println!("               read them: {}/*.eml", dir.display());
    checks.record(
        "the buyer was e-mailed the confirmation (with its calendar file), the cancellation and the refund",
        ours.len() == expected && ours.iter().any(|(_, ics)| *ics),
        format!("{} of {expected} e-mails arrived", ours.len()),
    );
    Ok(ours.len())
}

/// One scan at the door with a staff token: (status, error code).
async fn scan(
    buyer: &WonHold,
    booking: &Booking,
    staff: &str,
    code: &str,
) -> anyhow::Result<(u16, String)> {
    let r = buyer
        .api
        .send(
            Method::POST,
            &format!("/v1/shows/{}/checkins", booking.show_id),
            Some(staff),
            None,
            Some(&serde_json::json!({ "code": code, "gate": "demo-door" })),
        )
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let err = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((r.status.as_u16(), err))
}

/// Step 3b: the buyer's tickets, and the first one scanned at the door
/// (in, then refused as already in). Returns a ticket's code (another
/// seat's when there is one), to show a cancelled booking is refused.
async fn at_the_door(
    buyer: &WonHold,
    booking: &Booking,
    staff: &str,
    checks: &mut Checks,
) -> anyhow::Result<Option<String>> {
    let t: BookingTickets = buyer
        .api
        .get(
            &format!("/v1/bookings/{}/tickets", booking.id),
            Some(&buyer.bearer),
        )
        .await?;
    let Some(first) = t.tickets.first() else {
        checks.record("the booking has tickets", false, "none".into());
        return Ok(None);
    };
    let (in_status, _) = scan(buyer, booking, staff, &first.code).await?;
    let (again, err) = scan(buyer, booking, staff, &first.code).await?;
    println!(
        "   3b. door    {} ticket(s), signed; seat {} scanned → {in_status}, scanned again → {again} {err}",
        t.tickets.len(),
        first.label
    );
    checks.record(
        "a ticket admits once at the door",
        in_status == 200 && again == 409,
        format!("{in_status}, then {again} {err}"),
    );
    Ok(Some(t.tickets.get(1).unwrap_or(first).code.clone()))
}
