//! E-mail to buyers over real SMTP (issue 15): the region core sends to
//! the local mail catcher (aiosmtpd, `tools/mailcatcher/catcher.py`) and
//! these tests read the messages back and parse them.
//!
//! - a purchase, its cancellation and the refund make one message each,
//!   in the venue's time zone (New York here, the test machine in UTC),
//!   with a calendar file that parses and links that lead to the buyer's
//!   pages; a redelivered event and a restarted consumer send nothing more;
//! - while the SMTP server is down the booking is confirmed (and
//!   cancelled) as usual and its messages wait; they go out once the
//!   server is back, in the order their events happened.

use std::time::Duration;

use chrono::{DateTime, Utc};
use e2e::{eventually, test_settings, token, user, TestApp};
use icalendar::{Calendar, CalendarComponent, Component};
use mail_parser::{MessageParser, MimeHeaders};
use reqwest::Method;
use shared::token::Role;
use shared::CityCode;
use testkit::api::Api;
use testkit::mail::MailCatcher;
use testkit::seed;
use uuid::Uuid;

const SOON: Duration = Duration::from_secs(20);
const PUBLIC: &str = "https://tickets.example";

/// A show in New York at 19:30 local time in five days, seats A1–A5 at
/// $12.50: (show id, city, starts_at).
async fn new_york_show(app: &TestApp) -> (String, String, DateTime<Utc>) {
    let city = format!(
        "ny{}",
        Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .filter(char::is_ascii_alphabetic)
            .take(4)
            .collect::<String>()
    );
    let op = format!("Bearer {}", token("operator-1", Role::Operator));
    let (s, _) = app
        .operator_post(
            "/v1/operator/cities",
            serde_json::json!({"code": city, "name": "New York"}),
        )
        .await
        .expect("city");
    assert!(s == 201 || s == 409, "city: {s}");
    let api = Api::with_client(&app.url, app.http.clone());
    let code = CityCode::parse(&city).expect("code");
    let place = seed::ensure_place(
        &api,
        &op,
        &code,
        "Lyric Theatre",
        "America/New_York",
        "Main",
        &seed::grid(1, 5, |_| "REGULAR"),
    )
    .await
    .expect("place");
    let movie = seed::create_movie(&api, &op, "Hamlet & Co", 150, "en")
        .await
        .expect("movie");
    let day = (Utc::now() + chrono::Duration::days(5)).date_naive();
    let local = day.and_hms_opt(19, 30, 0).expect("time");
    let starts_at = chrono::TimeZone::from_local_datetime(&chrono_tz::America::New_York, &local)
        .single()
        .expect("one instant")
        .with_timezone(&Utc);
    let show = seed::create_show_in(
        &api,
        &op,
        seed::NewShow {
            screen_id: place.screen_id,
            movie_id: movie,
            starts_at,
            prices: &[("REGULAR", 1250)],
            currency: "USD",
        },
        shared::api::SaleMode::Open,
    )
    .await
    .expect("show");
    (show.id.to_string(), city, starts_at)
}

/// Waits until the catcher holds `n` messages; returns them.
async fn wait_for(catcher: &MailCatcher, n: usize) -> Vec<Vec<u8>> {
    let got = eventually(SOON, || async {
        catcher.messages().map(|m| m.len() >= n).unwrap_or(false)
    })
    .await;
    let messages = catcher.messages().expect("messages");
    assert!(got, "{n} messages expected, {} arrived", messages.len());
    messages
}

/// The outbox event id of `kind` for `booking`.
async fn event_id(app: &TestApp, kind: &str, booking: &str) -> Uuid {
    sqlx::query_scalar("SELECT event_id FROM outbox WHERE event_type = $1 AND aggregate_id = $2")
        .bind(kind)
        .bind(Uuid::parse_str(booking).expect("uuid"))
        .fetch_one(&app.db)
        .await
        .expect("event")
}

/// Every `href="…"` in `html`.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_its_cancellation_and_refund_are_mailed_once_each() {
    let catcher = MailCatcher::start().await.expect("catcher");
    let mut settings = test_settings().await.expect("settings");
    settings.mail.smtp_url = Some(catcher.smtp_url());
    settings.mail.mail_poll_ms = 100;
    settings.mail.public_url = PUBLIC.into();
    let app = TestApp::spawn(settings).await.expect("app");
    let (show, city, starts_at) = new_york_show(&app).await;
    let ann = "ann@example.com";
    let booking = app.buy(ann, &show, &["A1", "A2"]).await;
    let (id, number) = (
        booking["id"].as_str().expect("id").to_owned(),
        booking["number"].as_str().expect("number").to_owned(),
    );

    let confirmed = wait_for(&catcher, 1).await;
    let m = MessageParser::default()
        .parse(&confirmed[0])
        .expect("a message");
    assert_eq!(
        m.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some(ann)
    );
    let event = event_id(&app, "booking.confirmed", &id).await;
    assert_eq!(
        m.message_id(),
        Some(format!("{event}@localhost").as_str()),
        "the Message-ID is the event's"
    );
    // The venue's local time, whatever the zone of this machine.
    let local = starts_at.with_timezone(&chrono_tz::America::New_York);
    let when = format!("{} (America/New_York)", shared::display::long_time(&local));
    assert!(when.contains("19:30"), "{when}");
    let text = m.body_text(0).expect("a text part").into_owned();
    assert!(text.contains(&format!("When:    {when}")), "{text}");
    assert!(text.contains("A1  Regular  $12.50"), "{text}");
    assert!(text.contains("Total: $25"), "{text}");
    assert!(text.contains(&number));
    let html = m.body_html(0).expect("an HTML part").into_owned();
    assert!(html.contains("Hamlet &amp; Co"), "escaped title");
    // Every link leads to the buyer's booking page at the edge.
    let links = hrefs(&html);
    assert!(!links.is_empty(), "the confirmation links to the booking");
    for link in &links {
        assert_eq!(link, &format!("{PUBLIC}/c/{city}/bookings/{number}"));
    }
    // The calendar file parses, at the show's instant.
    let ics = m
        .attachments()
        .find(|a| a.attachment_name() == Some("show.ics"))
        .expect("show.ics attached");
    assert!(ics
        .content_type()
        .is_some_and(|c| c.ctype() == "text" && c.subtype() == Some("calendar")));
    let cal: Calendar = std::str::from_utf8(ics.contents())
        .expect("utf-8")
        .parse()
        .expect("the attachment parses as iCalendar");
    let ev = cal
        .components
        .iter()
        .find_map(|c| match c {
            CalendarComponent::Event(e) => Some(e),
            _ => None,
        })
        .expect("one event");
    assert_eq!(ev.get_summary(), Some("Hamlet & Co"));
    assert_eq!(
        ev.property_value("DTSTART"),
        Some(starts_at.format("%Y%m%dT%H%M%SZ").to_string().as_str())
    );

    // One scannable ticket per seat, inline: each QR code decodes to a
    // code the shard's published keys verify, naming this booking.
    let (_, keys) = app.get("/v1/tickets/keys").await.expect("keys");
    let ring = shared::ticket::KeyRing::new(
        &serde_json::from_value::<Vec<shared::ticket::PublicKey>>(keys["keys"].clone())
            .expect("keys"),
    )
    .expect("ring");
    let qrs: Vec<_> = m
        .attachments()
        .filter(|a| {
            a.content_type()
                .is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("png"))
        })
        .collect();
    assert_eq!(qrs.len(), 2, "one QR code per seat");
    for qr in qrs {
        let cid = qr.content_id().expect("inline, with a Content-ID");
        assert!(html.contains(&format!("src=\"cid:{cid}\"")), "{cid} shown");
        let code = scan_png(qr.contents());
        assert!(text.contains(&code), "the text part carries the code too");
        let ticket = ring.verify(&code).expect("a genuine ticket");
        assert_eq!(ticket.booking_id.to_string(), id);
    }

    // Cancel: the cancellation e-mail names the refund, then the refund's.
    let (s, c) = app
        .send(
            Method::POST,
            &format!("/v1/bookings/{id}/cancel"),
            Some(&user(ann)),
            None,
        )
        .await
        .expect("cancel");
    assert_eq!(s, 200, "{c}");
    let all = wait_for(&catcher, 3).await;
    let parsed: Vec<_> = all
        .iter()
        .map(|raw| MessageParser::default().parse(raw).expect("message"))
        .collect();
    let subjects: Vec<&str> = parsed.iter().filter_map(|m| m.subject()).collect();
    assert!(
        subjects[1].starts_with("Cancelled: booking"),
        "{subjects:?}"
    );
    assert!(
        subjects[2].starts_with("Refund of $25 sent"),
        "{subjects:?}"
    );
    let cancel_text = parsed[1].body_text(0).expect("text").into_owned();
    assert!(
        cancel_text.contains("We are refunding $25"),
        "{cancel_text}"
    );

    // A redelivered event (the outbox is at-least-once) and a restarted
    // consumer send nothing more.
    let mut redis = app.redis().await.expect("redis");
    let key =
        region_core::outbox::redis_stream::stream_key(&app.settings.events_stream_prefix, &city);
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .expect("xrange");
    assert!(!entries.ids.is_empty(), "the events are in the stream");
    for e in &entries.ids {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&key).arg("*");
        for f in ["event_id", "type", "payload", "aggregate_id"] {
            if let Some(v) = e.get::<String>(f) {
                cmd.arg(f).arg(v);
            }
        }
        let _: String = cmd.query_async(&mut redis).await.expect("xadd");
    }
    let app = app.restart(|_| {}).await.expect("restart");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        eventually(SOON, || async {
            app.count("SELECT count(*) FROM notifications").await >= 3
                && app
                    .count("SELECT count(*) FROM outgoing_mail WHERE state <> 'sent'")
                    .await
                    == 0
        })
        .await
    );
    assert_eq!(
        catcher.messages().expect("messages").len(),
        3,
        "one per event"
    );
    assert_eq!(app.count("SELECT count(*) FROM outgoing_mail").await, 3);
    app.stop().await;
    catcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_delays_the_mail_never_the_booking() {
    // A catcher started and stopped: its port now refuses connections.
    let first = MailCatcher::start().await.expect("catcher");
    let (port, dir, url) = (first.port(), first.dir().to_owned(), first.smtp_url());
    first.stop().await;
    let mut settings = test_settings().await.expect("settings");
    settings.mail.smtp_url = Some(url);
    settings.mail.mail_poll_ms = 100;
    settings.mail.mail_backoff_base_ms = 100;
    settings.mail.mail_backoff_max_secs = 1;
    let app = TestApp::spawn(settings).await.expect("app");
    let (show, _, _) = new_york_show(&app).await;
    let booking = app.buy("bo@example.com", &show, &["A3"]).await;
    assert_eq!(booking["status"], "CONFIRMED");
    assert!(
        eventually(SOON, || async {
            app.count(
                "SELECT count(*) FROM outgoing_mail
                  WHERE state = 'pending' AND attempts >= 2 AND last_error IS NOT NULL",
            )
            .await
                == 1
        })
        .await,
        "the message waits, retried"
    );
    // Meanwhile the buyer cancels and is refunded: three messages wait.
    let id = booking["id"].as_str().expect("id");
    let (s, c) = app
        .send(
            Method::POST,
            &format!("/v1/bookings/{id}/cancel"),
            Some(&user("bo@example.com")),
            None,
        )
        .await
        .expect("cancel");
    assert_eq!(s, 200, "{c}");
    assert!(
        eventually(SOON, || async {
            app.count("SELECT count(*) FROM outgoing_mail WHERE state = 'pending'")
                .await
                == 3
        })
        .await,
        "confirmation, cancellation and refund wait"
    );
    // The server comes back on the same port: they go out, in the order
    // their events happened, though several senders work at once.
    assert!(app.settings.mail.mail_workers > 1);
    let back = MailCatcher::start_in(&dir, port)
        .await
        .expect("catcher back");
    let messages = wait_for(&back, 3).await;
    let subjects: Vec<String> = messages
        .iter()
        .map(|raw| {
            MessageParser::default()
                .parse(raw)
                .and_then(|m| m.subject().map(str::to_owned))
                .unwrap_or_default()
        })
        .collect();
    assert!(subjects[0].starts_with("Your tickets"), "{subjects:?}");
    assert!(subjects[1].starts_with("Cancelled"), "{subjects:?}");
    assert!(subjects[2].starts_with("Refund of"), "{subjects:?}");
    assert!(
        eventually(SOON, || async {
            app.count("SELECT count(*) FROM outgoing_mail WHERE state = 'sent'")
                .await
                == 3
        })
        .await
    );
    app.stop().await;
    back.stop().await;
}

/// What a QR code in a PNG says, read as a phone at the door would.
fn scan_png(bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().expect("it decodes").1
}
