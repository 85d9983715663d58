//! The operator console (`/ops`), served by the built Worker in workerd
//! against a real region core, Postgres, Redis and the sandbox gateway,
//! driven as a browser without JavaScript: plain GETs and form posts.
//! Sign in with a city-scoped operator token → the day's shows → a show
//! with a booking (occupancy as the region counts it) → booking lookup →
//! sales report (HTML totals, then the CSV download) → a show's
//! cancellation (of a second show: confirmed on a page, then the region's
//! job cancels its booking) → FAILED refunds retried
//! and settled through the forms → a show's sale changed from open to a
//! flash sale and back through its form (refused fields named beside
//! them; the region and the edge's waiting room both follow). CSRF
//! refusals change nothing; another city's token gets a 403 page, a
//! token without the `sales` scope sees the sale but cannot change it;
//! an unknown city is the console's own 404; an expired session goes
//! back to sign-in.

use std::time::Duration;

use e2e::edge::{Client, EdgeOptions, EdgeStack, SaleMode};
use e2e::form_browser::{Browser, Page};
use e2e::{eventually, money, user, TestApp, SECRET};
use reqwest::Method;
use serde_json::{json, Value};
use shared::token::{sign_hs256, sign_operator_hs256, Grant, Role, Scope};

const CITY: &str = "mum";

/// Signs in to the console with `token` through its form.
async fn sign_in(b: &mut Browser<'_>, token: &str) -> Page {
    let form = b.get("/ops/signin").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let csrf = form.field("csrf");
    b.post("/ops/signin", &[("csrf", &csrf), ("token", token)])
        .await
}

fn operator_token(sub: &str, city: &str, scopes: Vec<Scope>, ttl_s: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    let grant = Grant::new(vec![city.into()], scopes).expect("grant");
    sign_operator_hs256(SECRET.as_bytes(), sub, &grant, now - 60, now + ttl_s).expect("token")
}

/// The region's own answer, as the platform's operator.
async fn region_get(app: &TestApp, path: &str) -> Value {
    let (s, v) = app
        .send(
            Method::GET,
            path,
            Some(&e2e::token("platform", Role::Operator)),
            None,
        )
        .await
        .expect("request");
    assert_eq!(s, 200, "{path}: {v}");
    v
}

/// Cancels `number` as its buyer while the gateway refuses refunds, waits
/// for the worker's first try, then marks the refund FAILED in SQL (test
/// setup, as tests/operator_reports.rs does: the sandbox has no permanent
/// refusal). Its refund id.
async fn failed_refund(app: &TestApp, who: &str, number: &str) -> String {
    let (s, b) = app
        .send(
            Method::POST,
            &format!("/v1/bookings/{number}/cancel"),
            Some(&user(who)),
            None,
        )
        .await
        .expect("cancel");
    assert_eq!(s, 200, "{b}");
    let path = format!("/v1/operator/bookings/{number}");
    let tried = eventually(Duration::from_secs(15), || async {
        region_get(app, &path).await["refund"]["attempts"].as_i64() >= Some(1)
    })
    .await;
    assert!(tried, "the worker never tried the refund of {number}");
    let id = region_get(app, &path).await["refund"]["id"]
        .as_str()
        .expect("refund id")
        .to_owned();
    sqlx::query(
        "UPDATE refunds SET status = 'FAILED',
                last_error = 'gateway refused the refund (HTTP 400): test setup'
          WHERE id = $1::uuid",
    )
    .bind(&id)
    .execute(&app.db)
    .await
    .expect("refund FAILED");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_a_city_from_the_console() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let app = stack.region(CITY).app();
    let show = app
        .seed_show_in(CITY, 2, 5, chrono::Duration::days(3), SaleMode::Open)
        .await
        .expect("show");
    let booking = app.buy("ann@example.com", &show, &["A1", "A2"]).await;
    let number = booking["number"].as_str().expect("number").to_owned();
    let details = region_get(app, &format!("/v1/shows/{show}")).await;
    let date = details["local_date"].as_str().expect("date").to_owned();
    let title = details["movie_title"].as_str().expect("title").to_owned();

    let mut b = Browser::new(&stack, "10.9.1.1");
    // Not signed in: to the sign-in page.
    let away = b.get(&format!("/ops/c/{CITY}")).await;
    assert_eq!(away.status, 303);
    assert_eq!(away.location(), "/ops/signin");

    // Sign-in: a forged form, a bad token and a buyer's token are refused.
    let form = b.get("/ops/signin").await;
    form.assert_html();
    let csrf = form.field("csrf");
    let token = operator_token(
        "ops-ann",
        CITY,
        vec![Scope::Read, Scope::Refunds, Scope::Sales],
        3600,
    );
    let forged = b
        .post_from(
            "https://evil.example",
            "/ops/signin",
            &[("csrf", &csrf), ("token", &token)],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert!(!b.cookies.contains_key("ops_session"));
    let bad = b
        .post("/ops/signin", &[("csrf", &csrf), ("token", "x.y.z")])
        .await;
    assert_eq!(bad.status, 401);
    assert!(bad.body.contains("not a valid token"), "{}", bad.body);
    let buyer = b
        .post("/ops/signin", &[("csrf", &csrf), ("token", &user("ann"))])
        .await;
    assert_eq!(buyer.status, 401);
    assert!(
        buyer.body.contains("not an operator token"),
        "{}",
        buyer.body
    );
    let signed = sign_in(&mut b, &token).await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.location(), "/ops");
    let set = signed.header("set-cookie");
    for attr in [
        "ops_session=",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/ops",
    ] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!b.cookies.contains_key("session"), "not the buyer's cookie");
    let home = b.get("/ops").await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("href=\"/ops/c/mum\""), "{}", home.body);
    assert!(home.body.contains("ops-ann"));
    // The city by its name (the merged city list), its code beside it.
    assert!(
        home.body
            .contains("<a href=\"/ops/c/mum\">City mum <span class=\"code\">(mum)</span></a>"),
        "{}",
        home.body
    );

    // The day's shows.
    let day = b.get(&format!("/ops/c/{CITY}?date={date}")).await;
    assert_eq!(day.status, 200, "{}", day.body);
    day.assert_html();
    assert!(day
        .body
        .contains(&format!("<h1>Shows in City mum on {date}</h1>")));
    assert!(day.body.contains(&title));
    assert!(day
        .body
        .contains(&format!("href=\"/ops/c/{CITY}/shows/{show}\"")));

    // The show: occupancy as the region counts it, the booking listed.
    let occ = region_get(app, &format!("/v1/operator/shows/{show}/occupancy")).await;
    assert_eq!(occ["totals"]["booked"], 2, "{occ}");
    let page = b.get(&format!("/ops/c/{CITY}/shows/{show}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_html();
    let t = &occ["totals"];
    assert!(
        page.body.contains(&format!(
            "<th scope=\"row\">All</th><td>{}</td><td>{}</td><td>{}</td><td>2</td>",
            t["total"], t["available"], t["held"]
        )),
        "{}",
        page.body
    );
    for c in occ["categories"].as_array().expect("categories") {
        assert!(
            page.body.contains(&format!(
                "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c["total"], c["available"], c["held"], c["booked"]
            )),
            "{c} in {}",
            page.body
        );
    }
    assert!(page.body.contains(&number), "{}", page.body);
    assert!(page.body.contains("ann@example.com"));
    assert!(page.body.contains("aria-label=\"Row A, seat 1, "));
    // The map is the live map's too (the script listens where it says,
    // tests/ops_browser.rs sees it follow a hold), and links the sale.
    assert!(page.body.contains(&format!(
        "id=\"ops-seat-map\" aria-labelledby=\"map-heading\" data-live=\"/v1/c/{CITY}/shows/{show}\""
    )));
    assert!(page.body.contains("data-ord=\"0\""));
    assert!(page.body.contains(&format!(
        "href=\"/ops/c/{CITY}/shows/{show}/sale\">Sale settings</a>"
    )));

    // The booking by its number.
    let found = b
        .get(&format!("/ops/c/{CITY}/bookings?number={number}"))
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(found.body.contains(&format!("Booking {number}")));
    assert!(found.body.contains("confirmed"));
    let missing = b
        .get(&format!(
            "/ops/c/{CITY}/bookings?number=BMS20000101-MUM-000001"
        ))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    missing.assert_html();

    // Reports: the totals as a table, then the CSV as the region made it.
    let form = b.get(&format!("/ops/c/{CITY}/reports")).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"format\" value=\"csv\""));
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .date_naive();
    let (from, to) = (
        today - chrono::Duration::days(1),
        today + chrono::Duration::days(1),
    );
    let report = b
        .get(&format!(
            "/ops/c/{CITY}/reports?from={from}&to={to}&group=day&format=html"
        ))
        .await;
    assert_eq!(report.status, 200, "{}", report.body);
    assert!(
        report
            .body
            .contains("<th scope=\"row\">INR</th><td>1</td><td>2</td><td>₹500</td>"),
        "{}",
        report.body
    );
    let csv = b
        .get(&format!(
            "/ops/c/{CITY}/reports?from={from}&to={to}&group=day&format=csv"
        ))
        .await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert!(csv.header("content-type").starts_with("text/csv"));
    assert_eq!(
        csv.header("content-disposition"),
        format!("attachment; filename=\"sales-day-{from}-{to}.csv\"")
    );
    assert!(
        csv.body
            .starts_with("day,currency,bookings_confirmed,seats_sold,gross_minor,"),
        "{}",
        csv.body
    );
    let backwards = b
        .get(&format!(
            "/ops/c/{CITY}/reports?from={to}&to={from}&group=day&format=html"
        ))
        .await;
    assert_eq!(backwards.status, 422);
    backwards.assert_html();

    // Cancelling a show (a second one, so the first keeps selling for the
    // refund forms below): what it does, a reason required, and the
    // region's answer as a page.
    let doomed_show = app
        .seed_show_in(CITY, 1, 4, chrono::Duration::days(4), SaleMode::Open)
        .await
        .expect("second show");
    let doomed = app.buy("dee@example.com", &doomed_show, &["A1"]).await;
    let doomed_number = doomed["number"].as_str().expect("number").to_owned();
    let quote = b
        .get(&format!("/ops/c/{CITY}/shows/{doomed_show}/cancel"))
        .await;
    assert_eq!(quote.status, 200, "{}", quote.body);
    assert!(
        quote
            .body
            .contains("Confirmed bookings to refund: <strong>1</strong>"),
        "{}",
        quote.body
    );
    let csrf = quote.field("csrf");
    let cancel_path = format!("/ops/c/{CITY}/shows/{doomed_show}/cancel");
    let no_csrf = b.post(&cancel_path, &[("reason", "rain")]).await;
    assert_eq!(no_csrf.status, 403);
    let wrong = b
        .post(&cancel_path, &[("csrf", "forged"), ("reason", "rain")])
        .await;
    assert_eq!(wrong.status, 403);
    let no_reason = b
        .post(&cancel_path, &[("csrf", &csrf), ("reason", "  ")])
        .await;
    assert_eq!(no_reason.status, 422);
    assert!(no_reason.body.contains("Give a reason"));
    let sent = b
        .post(&cancel_path, &[("csrf", &csrf), ("reason", "Rain <storm>")])
        .await;
    sent.assert_html();
    assert!(
        (200..=202).contains(&sent.status),
        "{}: {}",
        sent.status,
        sent.body
    );
    let cancelled = eventually(Duration::from_secs(20), || async {
        region_get(app, &format!("/v1/operator/bookings/{doomed_number}")).await["booking"]
            ["status"]
            == "CANCELLED"
    })
    .await;
    assert!(
        cancelled,
        "the cancellation job should cancel {doomed_number}"
    );

    // Refunds needing attention: two FAILED ones, one retried, one
    // settled by hand, through the forms.
    let b2 = app.buy("bob@example.com", &show, &["B1"]).await;
    let b3 = app.buy("cy@example.com", &show, &["B2"]).await;
    money::set_gateway_faults(app, json!({"refunds_fail_next": 100_000}))
        .await
        .expect("faults");
    let n2 = b2["number"].as_str().expect("number");
    let n3 = b3["number"].as_str().expect("number");
    let r2 = failed_refund(app, "bob@example.com", n2).await;
    let r3 = failed_refund(app, "cy@example.com", n3).await;
    money::set_gateway_faults(app, json!({"refunds_fail_next": 0}))
        .await
        .expect("faults");
    let list = b.get(&format!("/ops/c/{CITY}/refunds")).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let retry = format!("/ops/c/{CITY}/refunds/{r2}/retry");
    let settle = format!("/ops/c/{CITY}/refunds/{r3}/settle");
    assert!(
        list.body.contains(&format!("action=\"{retry}\"")),
        "{}",
        list.body
    );
    assert!(list.body.contains(&format!("action=\"{settle}\"")));
    let csrf = list.field("csrf");
    // Without the token, or with a wrong one: 403 and nothing changes.
    assert_eq!(b.post(&retry, &[]).await.status, 403);
    assert_eq!(
        b.post(&settle, &[("csrf", "x"), ("note", "paid")])
            .await
            .status,
        403
    );
    let refund_status = |n: String| async move {
        region_get(app, &format!("/v1/operator/bookings/{n}")).await["refund"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(refund_status(n2.to_owned()).await, "FAILED");
    assert_eq!(refund_status(n3.to_owned()).await, "FAILED");
    let no_note = b.post(&settle, &[("csrf", &csrf), ("note", " ")]).await;
    assert_eq!(no_note.status, 422);
    no_note.assert_html();
    let retried = b.post(&retry, &[("csrf", &csrf)]).await;
    assert_eq!(retried.status, 303, "{}", retried.body);
    assert_eq!(retried.location(), "/ops/c/mum/refunds?done=retried");
    let settled = b
        .post(
            &settle,
            &[
                ("csrf", &csrf),
                ("note", "bank transfer by finance"),
                ("gateway_reference", "NEFT-1"),
            ],
        )
        .await;
    assert_eq!(settled.status, 303, "{}", settled.body);
    assert_eq!(refund_status(n3.to_owned()).await, "SETTLED_MANUALLY");
    assert_ne!(refund_status(n2.to_owned()).await, "FAILED");
    // Settling it again: the region's 409, as a page with its message.
    let again = b.post(&settle, &[("csrf", &csrf), ("note", "twice")]).await;
    assert_eq!(again.status, 409, "{}", again.body);
    again.assert_html();
    let after = b.get(&format!("/ops/c/{CITY}/refunds?done=settled")).await;
    assert!(after.body.contains("paid back by hand"));
    assert!(!after.body.contains(&format!("action=\"{settle}\"")));

    // A show's sale (a show of its own: the first one keeps selling
    // openly), by an operator of its own (the console's rate limit is
    // per operator and address). As it stands: open, with the form.
    let mut seller = Browser::new(&stack, "10.9.1.6");
    let sales_token = operator_token("ops-sue", CITY, vec![Scope::Read, Scope::Sales], 3600);
    assert_eq!(sign_in(&mut seller, &sales_token).await.status, 303);
    let on_sale = app
        .seed_show_in(CITY, 1, 4, chrono::Duration::days(5), SaleMode::Open)
        .await
        .expect("a show for its sale");
    let sale_path = format!("/ops/c/{CITY}/shows/{on_sale}/sale");
    let form = seller.get(&sale_path).await;
    assert_eq!(form.status, 200, "{}", form.body);
    form.assert_html();
    assert!(
        form.body.contains("<strong>Open sale.</strong>"),
        "{}",
        form.body
    );
    assert!(form
        .body
        .contains(&format!("<form method=\"post\" action=\"{sale_path}\"")));
    assert!(form.body.contains("value=\"open\" checked"));
    let csrf = form.field("csrf");
    let region_sale =
        |show: String| async move { region_get(app, &format!("/v1/shows/{show}/sale")).await };
    // The opening, typed in venue time (the venue is in Asia/Kolkata).
    let kolkata = chrono_tz::Asia::Kolkata;
    let opens_local = (chrono::Utc::now() + chrono::Duration::hours(2))
        .with_timezone(&kolkata)
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let opens_utc = chrono::NaiveDateTime::parse_from_str(&opens_local, "%Y-%m-%dT%H:%M")
        .expect("local time")
        .and_local_timezone(kolkata)
        .single()
        .expect("one instant")
        .with_timezone(&chrono::Utc);
    let flash = [
        ("csrf", csrf.as_str()),
        ("sale_mode", "flash_sale"),
        ("opens_at", opens_local.as_str()),
        ("rate_per_sec", "25"),
        ("pass_ttl_s", "300"),
        ("grace_s", "45"),
    ];
    // Forged: nothing changes.
    let forged = seller.post(&sale_path, &flash[1..]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let forged = seller
        .post_from("https://evil.example", &sale_path, &flash)
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(region_sale(on_sale.clone()).await["sale_mode"], "open");
    // Refused fields: each named beside its field, the values kept, and
    // nothing changes.
    let refused = seller
        .post(
            &sale_path,
            &[
                ("csrf", &csrf),
                ("sale_mode", "flash_sale"),
                ("opens_at", ""),
                ("rate_per_sec", "0"),
                ("pass_ttl_s", "5"),
                ("grace_s", "45"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    refused.assert_html();
    for (field, said) in [
        ("opens_at", "Enter when the waiting room opens."),
        ("rate_per_sec", "must be a number above 0"),
        ("pass_ttl_s", "from 10 to 86400"),
    ] {
        assert!(
            refused.body.contains(&format!(
                "aria-describedby=\"{field}-hint {field}-error\" aria-invalid=\"true\""
            )),
            "{field}: {}",
            refused.body
        );
        assert!(refused.body.contains(&format!("<a href=\"#{field}\">")));
        assert!(refused.body.contains(said), "{said}: {}", refused.body);
    }
    assert!(!refused.body.contains("grace_s-error"));
    assert!(refused
        .body
        .contains("id=\"pass_ttl_s\" name=\"pass_ttl_s\" type=\"text\""));
    assert!(refused.body.contains("value=\"5\""), "kept as typed");
    assert!(refused.body.contains("<title>Error: "));
    assert_eq!(region_sale(on_sale.clone()).await["sale_mode"], "open");
    // A flash sale: the region stores it (the one copy) and the edge's
    // waiting room is derived from it at once.
    let saved = seller.post(&sale_path, &flash).await;
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(saved.location(), format!("{sale_path}?done=saved"));
    let stored = region_sale(on_sale.clone()).await;
    assert_eq!(stored["sale_mode"], "flash_sale", "{stored}");
    let room = &stored["waiting_room"];
    let stored_opening: chrono::DateTime<chrono::Utc> = room["opens_at"]
        .as_str()
        .expect("opens_at")
        .parse()
        .expect("RFC 3339");
    assert_eq!(stored_opening, opens_utc, "{stored}");
    assert_eq!(
        (
            room["rate_per_sec"].as_f64(),
            room["pass_ttl_s"].as_u64(),
            room["grace_s"].as_u64()
        ),
        (Some(25.0), Some(300), Some(45))
    );
    let edge = stack
        .get(
            &format!("/v1/operator/sales/{on_sale}"),
            &Client::operator(),
        )
        .await;
    assert_eq!(edge.status, 200, "{edge}");
    assert_eq!(edge.body["sale_mode"], "flash_sale", "{edge}");
    assert_eq!(edge.body["grace_s"], 45, "{edge}");
    let shown = seller.get(saved.location()).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains("Saved: a flash sale"), "{}", shown.body);
    assert!(shown.body.contains("<strong>Flash sale.</strong>"));
    assert!(shown.body.contains(&format!("value=\"{opens_local}\"")));
    assert!(shown.body.contains("value=\"flash_sale\" checked"));
    assert!(shown
        .body
        .contains(&format!("href=\"/c/{CITY}/sales/{on_sale}\"")));
    // And back to open: the room's fields are ignored, the edge drops
    // its room.
    let mut open = flash.to_vec();
    open[1] = ("sale_mode", "open");
    let reopened = seller.post(&sale_path, &open).await;
    assert_eq!(reopened.status, 303, "{}", reopened.body);
    assert_eq!(region_sale(on_sale.clone()).await["sale_mode"], "open");
    let edge = stack
        .get(
            &format!("/v1/operator/sales/{on_sale}"),
            &Client::operator(),
        )
        .await;
    assert_eq!(edge.body["sale_mode"], "open", "{edge}");
    assert!(b
        .get(reopened.location())
        .await
        .body
        .contains("Saved: an open sale"));

    // Another city's token: signed in, but this city is a 403 page.
    let mut other = Browser::new(&stack, "10.9.1.2");
    let del = operator_token("ops-del", "del", vec![Scope::Read], 3600);
    assert_eq!(sign_in(&mut other, &del).await.status, 303);
    let refused = other.get(&format!("/ops/c/{CITY}/shows/{show}")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    refused.assert_html();
    assert!(refused.body.contains("does not reach the city mum"));

    // A read-only token of this city: the region refuses the write
    // (scope), shown as a page with the region's message.
    let mut reader = Browser::new(&stack, "10.9.1.4");
    let read_only = operator_token("ops-reader", CITY, vec![Scope::Read], 3600);
    assert_eq!(sign_in(&mut reader, &read_only).await.status, 303);
    let list = reader.get(&format!("/ops/c/{CITY}/refunds")).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let csrf = list.field("csrf");
    let denied = reader
        .post(
            &format!("/ops/c/{CITY}/refunds/{r2}/retry"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    denied.assert_html();
    assert!(denied.body.contains("Not allowed"), "{}", denied.body);
    // Without the `sales` scope: the sale is shown, the form is not, and
    // a post is refused at the edge saying why.
    let seen = reader.get(&sale_path).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert!(seen.body.contains("id=\"scope-notice\""), "{}", seen.body);
    assert!(seen
        .body
        .contains("<strong>sales</strong> scope; yours allows read."));
    assert!(!seen.body.contains(&format!("action=\"{sale_path}\"")));
    let csrf = seen.field("csrf");
    let mut tried = flash.to_vec();
    tried[0] = ("csrf", csrf.as_str());
    let no_scope = reader.post(&sale_path, &tried).await;
    assert_eq!(no_scope.status, 403, "{}", no_scope.body);
    no_scope.assert_html();
    assert!(
        no_scope
            .body
            .contains("needs an operator token with the sales scope"),
        "{}",
        no_scope.body
    );
    assert_eq!(region_sale(on_sale.clone()).await["sale_mode"], "open");

    // An unknown city is the console's own 404: its header (still signed
    // in) and a way back to its home, not the buyer's page.
    for path in [
        "/ops/c/xyz".to_owned(),
        format!("/ops/c/xyz/shows/{show}/sale"),
    ] {
        let lost = reader.get(&path).await;
        assert_eq!(lost.status, 404, "{path}: {}", lost.body);
        lost.assert_html();
        assert!(lost.body.contains("Tickets console"), "{}", lost.body);
        assert!(lost.body.contains("ops-reader"), "{}", lost.body);
        assert!(
            lost.body.contains("console serves no city &quot;xyz&quot;"),
            "{}",
            lost.body
        );
        assert!(lost
            .body
            .contains("<a href=\"/ops\">Back to the console</a>"));
        assert!(!lost.body.contains("My bookings"), "not the buyer's header");
    }
    let lost = Browser::new(&stack, "10.9.1.5").get("/ops/c/xyz").await;
    assert_eq!(lost.status, 404);
    assert!(
        lost.body.contains("href=\"/ops/signin\">Sign in</a>"),
        "{}",
        lost.body
    );

    // An expired session goes back to sign-in, saying so.
    let mut late = Browser::new(&stack, "10.9.1.3");
    let now = chrono::Utc::now().timestamp();
    let old = sign_hs256(
        SECRET.as_bytes(),
        "ops-old",
        Role::Operator,
        now - 7200,
        now - 3600,
    )
    .expect("token");
    late.cookies.insert("ops_session".into(), old);
    let back = late.get(&format!("/ops/c/{CITY}")).await;
    assert_eq!(back.status, 303);
    assert_eq!(back.location(), "/ops/signin?expired=1");
    let said = late.get(back.location()).await;
    assert!(said.body.contains("session has ended"), "{}", said.body);

    // Signing out ends the console session.
    let home = b.get("/ops").await;
    let csrf = home.field("csrf");
    let out = b.post("/ops/signout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert!(!b.cookies.contains_key("ops_session"));
    assert_eq!(b.get("/ops").await.status, 303);
    stack.stop().await;
}

/// Whether the SMTP server holds `n` messages within 20 s.
async fn arrived(server: &testkit::mail::MailCatcher, n: usize) -> bool {
    eventually(Duration::from_secs(20), || async {
        server.messages().map(|m| m.len() >= n).unwrap_or(false)
    })
    .await
}

/// The failed messages' rows as the region lists them to the platform.
async fn failed_mail(app: &TestApp) -> Vec<Value> {
    region_get(app, "/v1/operator/mail?state=failed").await["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The health page (the shard's status; the consistency checks, OK and
/// then on a corrupted seat) and the failed e-mail page against a real
/// SMTP server that refuses every message for good: listed, sent again
/// one by one and all at once once a server takes mail, through forms
/// that refuse a missing or wrong CSRF token and a token without the
/// `sales` scope; a booking's confirmation sent again from its page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_checks_the_shard_and_sends_refused_mail_again() {
    let dir = std::env::temp_dir().join(format!("mail-{}", uuid::Uuid::new_v4().simple()));
    let refusing = testkit::mail::MailCatcher::start_refusing_in(&dir, 0)
        .await
        .expect("refusing SMTP server");
    let port = refusing.port();
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]).smtp(refusing.smtp_url()))
        .await
        .expect("edge stack");
    let app = stack.region(CITY).app();
    let show = app
        .seed_show_in(CITY, 2, 5, chrono::Duration::days(3), SaleMode::Open)
        .await
        .expect("show");
    let ann = app.buy("ann@example.com", &show, &["A1"]).await;
    let ann_number = ann["number"].as_str().expect("number").to_owned();
    app.buy("bob@example.com", &show, &["A2"]).await;
    let refused = eventually(Duration::from_secs(20), || async {
        failed_mail(app).await.len() == 2
    })
    .await;
    assert!(
        refused,
        "two refused confirmations: {:?}",
        failed_mail(app).await
    );

    let mut b = Browser::new(&stack, "10.9.2.1");
    let token = operator_token("ops-sue", CITY, vec![Scope::Read, Scope::Sales], 3600);
    assert_eq!(sign_in(&mut b, &token).await.status, 303);

    // The health page, linked from every page of the city.
    let day = b.get(&format!("/ops/c/{CITY}")).await;
    assert!(day.body.contains("href=\"/ops/c/mum/health\">Health</a>"));
    assert!(day.body.contains("href=\"/ops/c/mum/mail\">E-mail</a>"));
    let health = b.get(&format!("/ops/c/{CITY}/health")).await;
    assert_eq!(health.status, 200, "{}", health.body);
    health.assert_html();
    let shard = region_get(app, "/v1/operator/shard").await;
    assert_eq!(shard["mail"]["failed"], 2, "{shard}");
    for said in [
        "<h2 id=\"shard-heading\">Shard status</h2>",
        "<caption>Background work</caption>",
        "href=\"/ops/c/mum/mail\">E-mail given up</a></th><td>2</td>",
        "Refunds the gateway refused</a></th><td>0</td><td>—</td><td>OK</td>",
        "<h3>Hold path</h3>",
        "name=\"check\" value=\"1\"",
    ] {
        assert!(health.body.contains(said), "{said}: {}", health.body);
    }
    let replica = shard["answered_by"]["replica"].as_str().expect("replica");
    assert!(health
        .body
        .contains(&format!("replica <strong>{replica}</strong>")));
    assert!(!health.body.contains("id=\"check-result\""), "not run yet");

    // The consistency checks: the city's shows, then one show (Redis too).
    let all = b
        .get(&format!("/ops/c/{CITY}/health?show_id=&check=1"))
        .await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(
        all.body
            .contains("<strong>OK:</strong> no problem found in every show of your cities"),
        "{}",
        all.body
    );
    let one = b
        .get(&format!("/ops/c/{CITY}/health?show_id={show}&check=1"))
        .await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(one.body.contains("id=\"check-ok\""), "{}", one.body);
    assert!(
        one.body.contains("Redis agrees with Postgres on all")
            || one.body.contains("Redis was not compared"),
        "{}",
        one.body
    );
    // The negative control: a sold seat made free behind the API.
    sqlx::query(
        "UPDATE show_seats SET status = 'AVAILABLE', booking_id = NULL
          WHERE show_id = $1::uuid
            AND seat_id = (SELECT ss.seat_id FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
                            WHERE ss.show_id = $1::uuid AND s.label = 'A2')",
    )
    .bind(&show)
    .execute(&app.db)
    .await
    .expect("unbook A2");
    let bad = b
        .get(&format!("/ops/c/{CITY}/health?show_id=&check=1"))
        .await;
    assert_eq!(bad.status, 200, "{}", bad.body);
    bad.assert_html();
    assert!(bad.body.contains("id=\"check-problems\""), "{}", bad.body);
    assert!(
        bad.body
            .contains("<caption>Seats and bookings that disagree (1)</caption>"),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("<th scope=\"row\">A2</th>"));
    assert!(bad.body.contains("booking seat not booked"));
    let wrong_show = b
        .get(&format!("/ops/c/{CITY}/health?show_id=nope&check=1"))
        .await;
    assert_eq!(wrong_show.status, 400, "{}", wrong_show.body);
    wrong_show.assert_html();

    // The failed e-mail page: both messages, the server's answer, a form
    // each and one for all.
    let mail_path = format!("/ops/c/{CITY}/mail");
    let resend = format!("/ops/c/{CITY}/mail/resend");
    let list = b.get(&mail_path).await;
    assert_eq!(list.status, 200, "{}", list.body);
    list.assert_html();
    let failed = failed_mail(app).await;
    let event = |who: &str| {
        failed
            .iter()
            .find(|m| m["recipient"] == who)
            .and_then(|m| m["event_id"].as_str())
            .expect("a failed message")
            .to_owned()
    };
    let (ann_event, bob_event) = (event("ann@example.com"), event("bob@example.com"));
    for said in [
        "ann@example.com",
        "bob@example.com",
        "(554)",
        &format!("name=\"event_id\" value=\"{ann_event}\""),
        &format!("name=\"event_id\" value=\"{bob_event}\""),
        "name=\"all\" value=\"1\"",
        &format!("href=\"/ops/c/{CITY}/bookings?number={ann_number}\""),
    ] {
        assert!(list.body.contains(said), "{said}: {}", list.body);
    }
    let csrf = list.field("csrf");
    // Forged or without the token: 403, nothing is re-sent.
    let none = b.post(&resend, &[("event_id", &ann_event)]).await;
    assert_eq!(none.status, 403, "{}", none.body);
    none.assert_html();
    let forged = b.post(&resend, &[("csrf", "forged"), ("all", "1")]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let elsewhere = b
        .post_from(
            "https://evil.example",
            &resend,
            &[("csrf", &csrf), ("all", "1")],
        )
        .await;
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.body);
    let nothing = b.post(&resend, &[("csrf", &csrf)]).await;
    assert_eq!(nothing.status, 422, "{}", nothing.body);
    nothing.assert_html();
    assert_eq!(failed_mail(app).await.len(), 2);

    // A read-only token sees the list but no form, and its post is
    // refused at the edge saying why.
    let mut reader = Browser::new(&stack, "10.9.2.2");
    let read_only = operator_token("ops-reader", CITY, vec![Scope::Read], 3600);
    assert_eq!(sign_in(&mut reader, &read_only).await.status, 303);
    let seen = reader.get(&mail_path).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert!(seen.body.contains("ann@example.com"));
    assert!(seen.body.contains("id=\"scope-notice\""), "{}", seen.body);
    assert!(!seen.body.contains(&format!("action=\"{resend}\"")));
    let rcsrf = seen.field("csrf");
    let no_scope = reader
        .post(&resend, &[("csrf", &rcsrf), ("event_id", &ann_event)])
        .await;
    assert_eq!(no_scope.status, 403, "{}", no_scope.body);
    no_scope.assert_html();
    assert!(
        no_scope
            .body
            .contains("Sending e-mail again needs an operator token with the sales scope"),
        "{}",
        no_scope.body
    );
    // Its health page: the status and the checks need no scope.
    assert_eq!(
        reader.get(&format!("/ops/c/{CITY}/health")).await.status,
        200
    );
    assert_eq!(failed_mail(app).await.len(), 2);

    // The cause is fixed: a server that takes mail, on the same port.
    refusing.stop().await;
    let server = testkit::mail::MailCatcher::start_in(&dir, port)
        .await
        .expect("a server taking mail");
    let sent = b
        .post(&resend, &[("csrf", &csrf), ("event_id", &ann_event)])
        .await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    assert_eq!(sent.location(), format!("{mail_path}?sent=1"));
    let after = b.get(sent.location()).await;
    assert!(
        after.body.contains("1 message will be sent again now."),
        "{}",
        after.body
    );
    assert!(!after.body.contains(&format!("value=\"{ann_event}\"")));
    assert!(arrived(&server, 1).await, "ann's confirmation arrives");
    // Sent again while it is no longer failed: the region's 409 as a page.
    let twice = b
        .post(&resend, &[("csrf", &csrf), ("event_id", &ann_event)])
        .await;
    assert_eq!(twice.status, 409, "{}", twice.body);
    twice.assert_html();
    // All the rest (bob's), then nothing left.
    let all = b.post(&resend, &[("csrf", &csrf), ("all", "1")]).await;
    assert_eq!(all.status, 303, "{}", all.body);
    assert_eq!(all.location(), format!("{mail_path}?sent=1"));
    assert!(arrived(&server, 2).await, "bob's confirmation arrives");
    let empty = b.post(&resend, &[("csrf", &csrf), ("all", "1")]).await;
    assert_eq!(empty.location(), format!("{mail_path}?sent=0"));
    let page = b.get(empty.location()).await;
    assert!(page.body.contains("id=\"no-mail\""), "{}", page.body);
    assert!(page.body.contains("Nothing was sent again"));

    // A booking's confirmation again, from its page (scope sales).
    let booking_path = format!("/ops/c/{CITY}/bookings?number={ann_number}");
    let again = format!("/ops/c/{CITY}/bookings/{ann_number}/resend-confirmation");
    let found = b.get(&booking_path).await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(
        found.body.contains(&format!("action=\"{again}\"")),
        "{}",
        found.body
    );
    assert_eq!(b.post(&again, &[]).await.status, 403);
    let queued = b.post(&again, &[("csrf", &csrf)]).await;
    assert_eq!(queued.status, 303, "{}", queued.body);
    assert_eq!(queued.location(), format!("{booking_path}&done=resent"));
    let said = b.get(queued.location()).await;
    assert!(
        said.body
            .contains("The confirmation will be sent again now"),
        "{}",
        said.body
    );
    assert!(arrived(&server, 3).await, "the new confirmation arrives");
    let seen = reader.get(&booking_path).await;
    assert!(seen.body.contains("id=\"scope-notice\""), "{}", seen.body);
    assert!(!seen.body.contains(&format!("action=\"{again}\"")));
    let denied = reader.post(&again, &[("csrf", &rcsrf)]).await;
    assert_eq!(denied.status, 403, "{}", denied.body);

    // Another city's token: these pages are 403s saying so.
    let mut other = Browser::new(&stack, "10.9.2.3");
    let del = operator_token("ops-del", "del", vec![Scope::Read, Scope::Sales], 3600);
    assert_eq!(sign_in(&mut other, &del).await.status, 303);
    for path in [format!("/ops/c/{CITY}/health"), mail_path.clone()] {
        let refused = other.get(&path).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
        refused.assert_html();
        assert!(refused.body.contains("does not reach the city mum"));
    }
    server.stop().await;
    stack.stop().await;
}
