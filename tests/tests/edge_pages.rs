//! The buyer's pages, served by the built Worker in workerd against a
//! real region core, driven as a browser without JavaScript would: plain
//! GETs and form posts, cookies kept, redirects looked at one by one.
//! Sign in → city page → show page → hold through the seat form →
//! checkout (a declined card, then a good one, then the same post again)
//! → confirmation → my bookings → cancellation quote → cancel.
//! Also: the security headers, CSRF refusals, the JSON API taking the
//! session cookie only with the CSRF header, and the hashed assets.

use e2e::edge::{EdgeOptions, EdgeStack, SaleMode};
use e2e::form_browser::{Browser, Page};

const CITY: &str = "mum";

fn assert_secure_page(p: &Page) {
    let h = |n: &str| {
        p.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    assert!(
        h("content-type").starts_with("text/html"),
        "{}",
        h("content-type")
    );
    let csp = h("content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h("x-content-type-options"), "nosniff");
    assert!(!h("referrer-policy").is_empty());
    assert!(!p.body.contains("<script>"), "no inline script");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_without_javascript_signs_in_books_and_cancels() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    // Three days ahead: cancelling refunds 100 %.
    let show = stack
        .region(CITY)
        .app()
        .seed_show_in(CITY, 2, 5, chrono::Duration::days(3), SaleMode::Open)
        .await
        .expect("show");
    let mut b = Browser::new(&stack, "10.9.0.1");

    // Signing in: a form with a token; a post from elsewhere is refused.
    let form = b.get("/signin").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert_secure_page(&form);
    let token = form.field("csrf");
    let forged = b
        .send(
            b.http
                .post(format!("{}/signin", stack.url))
                .header("Origin", "https://evil.example")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(format!("csrf={token}&email=ann%40example.com")),
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let bad = b
        .post("/signin", &[("csrf", &token), ("email", "not an address")])
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Enter an e-mail address"), "{}", bad.body);
    let signed = b
        .post(
            "/signin",
            &[
                ("csrf", &token),
                ("email", " Ann@Example.com "),
                ("next", "/c/mum"),
            ],
        )
        .await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.location(), "/c/mum");
    let set = signed.headers["set-cookie"].to_str().unwrap();
    for attr in ["session=", "HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }

    // The cities, then the city page on the show's local date.
    let home = b.get("/").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("href=\"/c/mum\""), "{}", home.body);
    assert!(
        home.body.contains("ann@example.com"),
        "signed in as the normalised e-mail"
    );
    let details = stack
        .get(
            &format!("/v1/c/{CITY}/shows/{show}"),
            &e2e::edge::Client::anonymous("10.9.0.2"),
        )
        .await;
    let date = details.body["local_date"]
        .as_str()
        .expect("local date")
        .to_owned();
    let title = details.body["movie_title"]
        .as_str()
        .expect("title")
        .to_owned();
    let local = details.body["starts_at_local"]
        .as_str()
        .expect("local time")
        .to_owned();
    let city = b.get(&format!("/c/{CITY}?date={date}")).await;
    assert_eq!(city.status, 200, "{}", city.body);
    assert_secure_page(&city);
    assert!(city.body.contains(&title), "{}", city.body);
    assert!(city
        .body
        .contains(&format!("href=\"/c/{CITY}/shows/{show}\"")));
    // Venue-local time (Asia/Kolkata), not UTC.
    let hhmm = &local[11..16];
    assert!(
        city.body.contains(&format!(", {hhmm}</time>")),
        "{hhmm} in {}",
        city.body
    );
    assert!(city.body.contains("(Asia/Kolkata)"));
    assert!(city.body.contains("₹250"));
    // Without a date the page opens on the first day that has shows.
    let first = b.get(&format!("/c/{CITY}")).await;
    assert_eq!(first.status, 200);
    assert!(first.body.contains(&title), "{}", first.body);
    assert!(first.body.contains("next day with shows"), "{}", first.body);
    let bad_date = b.get(&format!("/c/{CITY}?date=tomorrow")).await;
    assert_eq!(bad_date.status, 400);
    assert!(
        bad_date.body.contains("<h1>"),
        "an HTML error page: {}",
        bad_date.body
    );

    // The show page: a seat form that needs no script.
    let page = b.get(&format!("/c/{CITY}/shows/{show}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_secure_page(&page);
    assert!(
        page.body
            .contains("aria-label=\"Row A, seat 1, Regular, ₹250, available\""),
        "{}",
        page.body
    );
    let csrf = page.field("csrf");
    // The script and style sheet, by their hashed names, cached for good.
    let js = page
        .body
        .split("<script src=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("script")
        .to_owned();
    let asset = b.get(&js).await;
    assert_eq!(asset.status, 200);
    assert!(asset.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert!(asset.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));

    // A hold post without the token does nothing.
    let path = format!("/c/{CITY}/shows/{show}/hold");
    let refused = b.post(&path, &[("seats", "A1")]).await;
    assert_eq!(refused.status, 403);
    // The JSON API takes the session cookie for a write only with the
    // page's CSRF header.
    let api = format!("{}/v1/c/{CITY}/shows/{show}/holds", stack.url);
    let cookie = b.cookie_header();
    let no_header = b
        .http
        .post(&api)
        .header("Cookie", &cookie)
        .header("CF-Connecting-IP", b.ip)
        .json(&serde_json::json!({ "seats": ["B5"] }))
        .send()
        .await
        .expect("post");
    assert_eq!(no_header.status().as_u16(), 401);
    let with_header = b
        .http
        .post(&api)
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .header("CF-Connecting-IP", b.ip)
        .json(&serde_json::json!({ "seats": ["B5"] }))
        .send()
        .await
        .expect("post");
    assert_eq!(
        with_header.status().as_u16(),
        201,
        "the cookie's user holds B5"
    );

    // Seat B5 is taken now: holding it again says so, and holds nothing.
    let taken = b
        .post(&path, &[("csrf", &csrf), ("seats", "A1"), ("seats", "B5")])
        .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    assert!(
        taken.body.contains("Seat B5 was just taken"),
        "{}",
        taken.body
    );
    let held = b
        .post(&path, &[("csrf", &csrf), ("seats", "A1"), ("seats", "A2")])
        .await;
    assert_eq!(held.status, 303, "{}", held.body);
    let checkout_path = held.location().to_owned();
    assert!(checkout_path.ends_with("/checkout"), "{checkout_path}");

    // Checkout: a summary, a countdown, the payment form with its key.
    let co = b.get(&checkout_path).await;
    assert_eq!(co.status, 200, "{}", co.body);
    assert!(co.body.contains("Pay ₹500"), "{}", co.body);
    let key = co.field("idempotency_key");
    let declined = b
        .post(
            &checkout_path,
            &[
                ("csrf", &csrf),
                ("idempotency_key", &key),
                ("payment_method", "pm_card_declined"),
            ],
        )
        .await;
    assert_eq!(declined.status, 402, "{}", declined.body);
    assert!(declined
        .body
        .contains("Your card was declined. Nothing was charged."));
    let key2 = declined.field("idempotency_key");
    assert_ne!(key, key2, "a new attempt gets a new key");
    let pay = [
        ("csrf", csrf.as_str()),
        ("idempotency_key", key2.as_str()),
        ("payment_method", "pm_card_ok"),
    ];
    let paid = b.post(&checkout_path, &pay).await;
    assert_eq!(paid.status, 303, "{}", paid.body);
    let confirmation = paid.location().to_owned();
    // The same post again (a refresh, a double click): the same booking,
    // one charge.
    let again = b.post(&checkout_path, &pay).await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(again.location(), confirmation);

    let done = b.get(&confirmation).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("You are booked"), "{}", done.body);
    assert!(done.body.contains("BMS"), "a booking number");
    assert!(
        done.body.contains("aria-label=\"Ticket QR code for seat")
            && done.body.contains("<svg class=\"qr\""),
        "one QR code per seat: {}",
        done.body
    );
    assert!(
        done.body.contains(&format!(", {hhmm}</time>")),
        "venue-local time"
    );

    // My bookings → the quote → cancel.
    let list = b.get("/bookings").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        list.body.matches("Cancel this booking").count(),
        1,
        "{}",
        list.body
    );
    let cancel_path = list
        .body
        .split("<a href=\"")
        .find(|s| s.contains("/cancel\""))
        .and_then(|s| s.split('"').next())
        .expect("a cancel link")
        .to_owned();
    let quote = b.get(&cancel_path).await;
    assert_eq!(quote.status, 200, "{}", quote.body);
    assert!(
        quote.body.contains("₹500 of ₹500</strong> (100 %)"),
        "{}",
        quote.body
    );
    let ck = quote.field("idempotency_key");
    let cancelled = b
        .post(&cancel_path, &[("csrf", &csrf), ("idempotency_key", &ck)])
        .await;
    assert_eq!(cancelled.status, 303, "{}", cancelled.body);
    assert_eq!(cancelled.location(), "/bookings");
    let after = b.get("/bookings").await;
    assert!(after.body.contains("Cancelled"), "{}", after.body);
    assert!(after.body.contains("Refund of ₹500"), "{}", after.body);
    assert!(!after.body.contains("Cancel this booking"));

    // Signing out ends the session: my bookings asks to sign in again.
    let out = b.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    let gone = b.get("/bookings").await;
    assert_eq!(gone.status, 303);
    assert_eq!(gone.location(), "/signin");
    stack.stop().await;
}

/// The flash sale through the pages: the landing page names the event;
/// joining is a form; once admitted the page sets the pass as a cookie
/// scoped to the sale and sends the browser to the seat map, and the
/// seat form holds with it. Nothing to copy; without the cookie the same
/// hold is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_buyer_goes_from_the_queue_to_the_seat_map_with_nothing_to_copy() {
    use e2e::edge::{now_ms, SaleSettings};
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 1, 6, SaleMode::FlashSale)
        .await
        .expect("show");
    let sale = SaleSettings {
        city: CITY.into(),
        // Open already: a join is admitted at once.
        opens_at_ms: now_ms() - 1_000,
        rate_per_sec: 50.0,
        pass_ttl_s: 300,
        grace_s: 60,
    };
    let r = stack.put_sale(&show, &sale).await;
    assert_eq!(r.status, 200, "{r}");
    let mut b = Browser::new(&stack, "10.9.2.1");
    let form = b.get("/signin").await;
    let token = form.field("csrf");
    let signed = b
        .post("/signin", &[("csrf", &token), ("email", "fan@example.com")])
        .await;
    assert_eq!(signed.status, 303);

    let landing = format!("/c/{CITY}/sales/{show}");
    let page = b.get(&landing).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_secure_page(&page);
    let title = stack
        .get(
            &format!("/v1/c/{CITY}/shows/{show}"),
            &e2e::edge::Client::anonymous("10.9.2.2"),
        )
        .await
        .body["movie_title"]
        .as_str()
        .expect("title")
        .to_owned();
    assert!(
        page.body.contains(&format!("<h1>{title}</h1>")),
        "{}",
        page.body
    );
    assert!(page.body.contains("(Asia/Kolkata)"), "venue-local start");
    assert!(page.body.contains("Join the queue"));
    let csrf = page.field("csrf");

    // Without a pass the seat form is refused, with what to do.
    let hold_path = format!("/c/{CITY}/shows/{show}/hold");
    let refused = b
        .post(&hold_path, &[("csrf", &csrf), ("seats", "A1")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("join the queue"), "{}", refused.body);

    let joined = b.post(&format!("{landing}/join"), &[("csrf", &csrf)]).await;
    assert_eq!(joined.status, 303, "{}", joined.body);
    // Admitted (at once, or after the pass's issue instant): a redirect
    // to the seat map that sets the pass cookie.
    let mut admitted = None;
    for _ in 0..50 {
        let p = b.get(&landing).await;
        if p.status == 303 {
            admitted = Some(p);
            break;
        }
        assert_eq!(p.status, 200, "{}", p.body);
        assert!(!p.body.contains("ap1."), "the pass is never shown");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let admitted = admitted.expect("admitted within 10 s");
    assert_eq!(admitted.location(), format!("/c/{CITY}/shows/{show}"));
    let cookie = admitted.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("pass-{show}=ap1.")), "{cookie}");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let map = b.get(admitted.location()).await;
    assert_eq!(map.status, 200);
    assert!(
        !map.body.contains("sold through a queue"),
        "no queue notice with a pass"
    );
    let held = b
        .post(
            &hold_path,
            &[("csrf", &csrf), ("seats", "A1"), ("seats", "A2")],
        )
        .await;
    assert_eq!(held.status, 303, "{}", held.body);
    assert!(held.location().ends_with("/checkout"));
    // The page's script holds through the JSON route: the edge adds the
    // pass from the cookie there too.
    let api = b
        .http
        .post(format!("{}/v1/c/{CITY}/shows/{show}/holds", stack.url))
        .header("Cookie", b.cookie_header())
        .header("X-CSRF-Token", &csrf)
        .header("CF-Connecting-IP", b.ip)
        .json(&serde_json::json!({ "seats": ["A3"] }))
        .send()
        .await
        .expect("hold");
    assert_eq!(api.status().as_u16(), 201, "{:?}", api.text().await);
    stack.stop().await;
}

/// Not a check: keeps a seeded stack running so a person (or
/// `scripts/page-screenshots.py`) can look at the pages. Run with
/// `cargo test -p e2e --test edge_pages -- --ignored --nocapture`; it
/// writes the URL and ids to `$PAGES_LOOK_FILE` (default
/// `/tmp/pages-look.json`) and stops after `$PAGES_LOOK_SECS` (600) or
/// when that file is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a running stack to look at, not a test"]
async fn serve_pages_for_a_look() {
    use e2e::edge::{now_ms, Client, SaleSettings};
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY, "blr"]))
        .await
        .expect("edge stack");
    let app = stack.region(CITY).app();
    let api = testkit::api::Api::with_client(&app.url, app.http.clone());
    let op = format!("Bearer {}", Client::operator().token.expect("token"));
    let city = shared::CityCode::parse(CITY).expect("city");
    // Real-looking names: these pages end up in the README.
    let seed =
        |venue: &'static str, movie: &'static str, rows: usize, per_row: u16, hours: i64, mode| {
            let (api, op, city) = (&api, &op, &city);
            async move {
                use testkit::seed;
                let place = seed::ensure_place(
                    api,
                    op,
                    city,
                    venue,
                    "Asia/Kolkata",
                    "Audi 1",
                    &seed::grid(rows, per_row, |r| if r < 2 { "PREMIUM" } else { "REGULAR" }),
                )
                .await
                .expect("place");
                let movie = seed::create_movie(api, op, movie, 150, "en")
                    .await
                    .expect("movie");
                let show = seed::NewShow {
                    screen_id: place.screen_id,
                    movie_id: movie,
                    starts_at: chrono::Utc::now() + chrono::Duration::hours(hours),
                    prices: &[("PREMIUM", 45_000), ("REGULAR", 25_000)],
                    currency: "INR",
                };
                seed::create_show_in(api, op, show, mode)
                    .await
                    .expect("show")
                    .id
                    .to_string()
            }
        };
    let show = seed(
        "PVR Phoenix, Lower Parel",
        "Dune: Part Two",
        8,
        12,
        72,
        SaleMode::Open,
    )
    .await;
    let other = seed(
        "INOX Nariman Point",
        "Interstellar",
        4,
        8,
        75,
        SaleMode::Open,
    )
    .await;
    let flash = seed(
        "NSCI Dome, Worli",
        "Coldplay: Music of the Spheres",
        4,
        8,
        78,
        SaleMode::FlashSale,
    )
    .await;
    // Some seats held and some sold by others, so the map shows each state.
    let bob = Client::user("bob@example.com", "10.9.1.1");
    let r = stack
        .hold(CITY, &show, &bob, &["D5", "D6", "D7"], None)
        .await;
    assert_eq!(r.status, 201, "{r}");
    let carl = Client::user("carl@example.com", "10.9.1.2");
    let r = stack
        .hold(CITY, &show, &carl, &["E4", "E5", "F8", "F9"], None)
        .await;
    let hold = r.body["hold_id"].as_str().expect("hold").to_owned();
    let r = stack.checkout(CITY, &hold, &carl).await;
    assert_eq!(r.status, 201, "{r}");
    // Nearly sold out: the city page marks it.
    let all: Vec<String> = ["A", "B", "C", "D"]
        .iter()
        .flat_map(|row| (1..=8).map(move |n| format!("{row}{n}")))
        .take(28)
        .collect();
    let dave = Client::user("dave@example.com", "10.9.1.3");
    for chunk in all.chunks(10) {
        let seats: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let r = stack.hold(CITY, &other, &dave, &seats, None).await;
        assert_eq!(r.status, 201, "{r}");
    }
    let sale = SaleSettings {
        city: CITY.into(),
        opens_at_ms: now_ms() + 3_600_000,
        rate_per_sec: 5.0,
        pass_ttl_s: 300,
        grace_s: 600,
    };
    let r = stack.put_sale(&flash, &sale).await;
    assert_eq!(r.status, 200, "{r}");
    let d = stack
        .get(
            &format!("/v1/c/{CITY}/shows/{show}"),
            &Client::anonymous("10.9.1.4"),
        )
        .await;
    let info = serde_json::json!({
        "url": stack.url, "city": CITY, "show": show, "flash": flash,
        "date": d.body["local_date"],
    });
    let file = std::env::var("PAGES_LOOK_FILE").unwrap_or_else(|_| "/tmp/pages-look.json".into());
    std::fs::write(&file, info.to_string()).expect("write");
    println!("PAGES_LOOK={info}");
    let secs: u64 = std::env::var("PAGES_LOOK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    // Deleting the file ends it early (and cleanly: keys and processes go).
    for _ in 0..secs {
        if !std::path::Path::new(&file).exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    stack.stop().await;
}
