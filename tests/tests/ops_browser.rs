//! The operator console in a real browser: headless Chromium over
//! WebDriver (`e2e::browser`) against the built Worker in workerd and a
//! real region core. An operator signs in by pasting a token and goes,
//! by keyboard alone, from the cities to the day's shows, to a show with
//! a booking — whose seat map and counts follow a hold made meanwhile
//! through the API, without a reload — then to the show's sale, refused
//! once (the error summary takes focus) and saved as a flash sale, then
//! to the reports form and its totals, the shard's health and its
//! consistency checks, and the e-mail a refusing mail server would not
//! take; an unknown city is the console's own 404. axe-core finds no serious or
//! critical violation on any page, and every page is screenshotted at
//! 1280 and 360 px (target/screenshots/ops-*).

use e2e::browser::{axe_violations, screenshot, wait_for, Driver, Options};
use e2e::edge::{Client as ApiClient, EdgeOptions, EdgeStack, SaleMode};
use e2e::SECRET;
use fantoccini::Client;
use shared::token::{sign_operator_hs256, Grant, Scope};
use std::time::Duration;

const CITY: &str = "mum";
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";
const DOWN: &str = "\u{E015}";

async fn focused(b: &Client) -> anyhow::Result<(String, String, String)> {
    let e = b.active_element().await?;
    Ok((
        e.tag_name().await.unwrap_or_default(),
        e.attr("id").await?.unwrap_or_default(),
        e.text().await.unwrap_or_default(),
    ))
}

/// A seat of the console's map: its `data-state`, and the end of its
/// accessible name.
async fn console_seat(b: &Client, label: &str) -> anyhow::Result<(String, String)> {
    let v = b
        .execute(
            "var row = arguments[0].replace(/[0-9]+$/, ''), n = arguments[0].replace(/^[A-Z]+/, '');
             var e = document.querySelector('#ops-seat-map .seat[aria-label^=\"Row ' + row + ', seat ' + n + ',\"]');
             return e ? [e.getAttribute('data-state'), e.getAttribute('aria-label')] : ['', ''];",
            vec![serde_json::json!(label)],
        )
        .await?;
    Ok((
        v[0].as_str().unwrap_or_default().to_owned(),
        v[1].as_str().unwrap_or_default().to_owned(),
    ))
}

/// The console's occupancy table, the row of all seats: free, held, sold.
async fn all_counts(b: &Client) -> anyhow::Result<Vec<String>> {
    let v = b
        .execute(
            "return Array.prototype.map.call(document.querySelectorAll('#occupancy tfoot td'), function (td) { return td.textContent; }).slice(1);",
            vec![],
        )
        .await?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default())
}

async fn press(b: &Client, keys: &str) -> anyhow::Result<()> {
    b.active_element().await?.send_keys(keys).await?;
    Ok(())
}

/// Tabs forward until the element with `id` has focus (at most 60 tabs).
async fn tab_to_id(b: &Client, id: &str) -> anyhow::Result<()> {
    for _ in 0..60 {
        if focused(b).await?.1 == id {
            return Ok(());
        }
        press(b, TAB).await?;
    }
    anyhow::bail!("no element #{id} reachable by Tab")
}

/// Tabs forward until a focused link or button reads `text`.
async fn tab_to_text(b: &Client, text: &str) -> anyhow::Result<()> {
    for _ in 0..80 {
        let (tag, _, t) = focused(b).await?;
        if (tag == "button" || tag == "a") && t.contains(text) {
            return Ok(());
        }
        press(b, TAB).await?;
    }
    anyhow::bail!("nothing reading {text:?} reachable by Tab")
}

/// Presses Enter on what has focus and waits for `path_part` in the URL.
async fn enter_and_wait(b: &Client, path_part: &str) -> anyhow::Result<()> {
    press(b, ENTER).await?;
    wait_for(path_part, Duration::from_secs(10), || async {
        Ok(b.current_url().await?.as_str().contains(path_part))
    })
    .await
}

/// axe-core, then screenshots at both widths.
async fn look(b: &Client, name: &str) -> anyhow::Result<()> {
    let violations = axe_violations(b).await?;
    assert!(
        violations.is_empty(),
        "axe-core on {name} ({}): {violations:#?}",
        b.current_url().await?
    );
    for width in [1280u32, 360] {
        b.set_window_size(width, 900).await?;
        screenshot(b, &format!("ops-{name}-{width}")).await?;
    }
    b.set_window_size(1280, 900).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_signs_in_and_finds_a_show_and_the_reports_by_keyboard() {
    // A mail server refusing every message: the buyers' confirmations
    // fail, for the failed e-mail page.
    let dir = std::env::temp_dir().join(format!("mail-{}", uuid::Uuid::new_v4().simple()));
    let refusing = testkit::mail::MailCatcher::start_refusing_in(&dir, 0)
        .await
        .expect("refusing SMTP server");
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]).smtp(refusing.smtp_url()))
        .await
        .expect("stack");
    let app = stack.region(CITY).app();
    let show = app
        .seed_show_in(CITY, 2, 5, chrono::Duration::hours(30), SaleMode::Open)
        .await
        .expect("seed");
    app.buy("ann@example.com", &show, &["A1", "A2"]).await;
    // A FAILED refund, for the refunds page's forms (test setup as in
    // tests/operator_reports.rs: the gateway refuses, then SQL marks it).
    let bob = app.buy("bob@example.com", &show, &["B1"]).await;
    let bob_number = bob["number"].as_str().expect("number").to_owned();
    e2e::money::set_gateway_faults(app, serde_json::json!({"refunds_fail_next": 100_000}))
        .await
        .expect("faults");
    let (s, v) = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/bookings/{bob_number}/cancel"),
            Some(&e2e::user("bob@example.com")),
            None,
        )
        .await
        .expect("cancel");
    assert_eq!(s, 200, "{v}");
    let platform = e2e::token("platform", shared::token::Role::Operator);
    let tried = e2e::eventually(Duration::from_secs(15), || async {
        let (_, v) = app
            .send(
                reqwest::Method::GET,
                &format!("/v1/operator/bookings/{bob_number}"),
                Some(&platform),
                None,
            )
            .await
            .expect("lookup");
        v["refund"]["attempts"].as_i64() >= Some(1)
    })
    .await;
    assert!(tried, "the worker never tried the refund");
    sqlx::query(
        "UPDATE refunds SET status = 'FAILED', last_error = 'gateway refused the refund (HTTP 400): test setup'
          WHERE status = 'PENDING'",
    )
    .execute(&app.db)
    .await
    .expect("refund FAILED");
    let now = chrono::Utc::now().timestamp();
    let grant = Grant::new(
        vec![CITY.into()],
        vec![Scope::Read, Scope::Refunds, Scope::Sales],
    )
    .expect("grant");
    let token =
        sign_operator_hs256(SECRET.as_bytes(), "ops-ann", &grant, now - 60, now + 3600).unwrap();
    let driver = Driver::start().await.expect("chromedriver");
    let b = driver.browser(Options::default()).await.expect("browser");
    let base = stack.url.clone();

    b.goto(&format!("{base}/ops/signin")).await.unwrap();
    look(&b, "signin").await.unwrap();
    tab_to_id(&b, "token").await.unwrap();
    press(&b, &token).await.unwrap();
    tab_to_text(&b, "Sign in").await.unwrap();
    enter_and_wait(&b, "/ops").await.unwrap();
    wait_for("the console home", Duration::from_secs(10), || async {
        Ok(b.source().await?.contains("Your cities"))
    })
    .await
    .unwrap();
    look(&b, "home").await.unwrap();

    // The city's shows: the show is within two days; step to its day.
    tab_to_text(&b, CITY).await.unwrap();
    enter_and_wait(&b, &format!("/ops/c/{CITY}")).await.unwrap();
    look(&b, "shows").await.unwrap();
    for _ in 0..3 {
        if b.source().await.unwrap().contains(&show) {
            break;
        }
        tab_to_text(&b, "Next day").await.unwrap();
        enter_and_wait(&b, "date=").await.unwrap();
    }
    let link = format!("/ops/c/{CITY}/shows/{show}");
    for _ in 0..60 {
        let e = b.active_element().await.unwrap();
        if e.attr("href").await.unwrap().unwrap_or_default() == link {
            break;
        }
        press(&b, TAB).await.unwrap();
    }
    enter_and_wait(&b, &link).await.unwrap();
    let page = b.source().await.unwrap();
    assert!(page.contains("Seats by category"), "{page}");
    assert!(page.contains("ann@example.com"));
    look(&b, "show").await.unwrap();

    // Live occupancy: a buyer holds A3 through the API; the console's
    // map and counts follow without a reload (the marker survives).
    assert_eq!(console_seat(&b, "A3").await.unwrap().0, "available");
    let before = all_counts(&b).await.unwrap();
    b.execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    let carol = ApiClient::user("carol@example.com", "10.9.8.3");
    let held = stack.hold(CITY, &show, &carol, &["A3"], None).await;
    assert_eq!(held.status, 201, "{held}");
    wait_for(
        "the console's A3 to show held",
        Duration::from_secs(10),
        || async { Ok(console_seat(&b, "A3").await?.0 == "held") },
    )
    .await
    .unwrap();
    let (_, name) = console_seat(&b, "A3").await.unwrap();
    assert!(name.ends_with(", held"), "{name}");
    let after = all_counts(&b).await.unwrap();
    let n = |v: &[String], i: usize| v[i].parse::<i64>().expect("a count");
    assert_eq!(
        n(&after, 1),
        n(&before, 1) + 1,
        "held: {before:?} → {after:?}"
    );
    assert_eq!(
        n(&after, 0),
        n(&before, 0) - 1,
        "free: {before:?} → {after:?}"
    );
    assert_eq!(
        b.execute("return window.notReloaded === true;", vec![])
            .await
            .unwrap(),
        serde_json::json!(true),
        "no reload"
    );
    let as_of = b
        .find(fantoccini::Locator::Id("occupancy-as-of"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(as_of.starts_with("Live:"), "{as_of}");
    look(&b, "show-live").await.unwrap();

    // The sale, by keyboard: to its page, flash sale chosen with the
    // arrow keys, saved without an opening (refused: the summary takes
    // focus and names the field), then with one.
    tab_to_text(&b, "Sale settings").await.unwrap();
    enter_and_wait(&b, "/sale").await.unwrap();
    look(&b, "sale").await.unwrap();
    tab_to_id(&b, "sale_mode-open").await.unwrap();
    press(&b, DOWN).await.unwrap();
    assert_eq!(focused(&b).await.unwrap().1, "sale_mode-flash");
    tab_to_text(&b, "Save the sale").await.unwrap();
    press(&b, ENTER).await.unwrap();
    wait_for("the refused sale form", Duration::from_secs(10), || async {
        Ok(b.source().await?.contains("The sale was not saved"))
    })
    .await
    .unwrap();
    let summary = b.active_element().await.unwrap();
    assert_eq!(
        summary.attr("class").await.unwrap().unwrap_or_default(),
        "error-summary",
        "the error summary has focus"
    );
    assert!(summary
        .text()
        .await
        .unwrap()
        .contains("Enter when the waiting room opens."));
    look(&b, "sale-errors").await.unwrap();
    // The summary's link takes focus to the field.
    press(&b, TAB).await.unwrap();
    press(&b, ENTER).await.unwrap();
    assert_eq!(focused(&b).await.unwrap().1, "opens_at");
    // The opening in venue time: Chromium's datetime-local (en-US) takes
    // month, day and year, then Tab to the time, then AM/PM.
    let day = (chrono::Utc::now() + chrono::Duration::days(1))
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .date_naive();
    press(&b, &format!("{}{TAB}0930A", day.format("%m%d%Y")))
        .await
        .unwrap();
    let typed = b
        .execute("return document.getElementById('opens_at').value;", vec![])
        .await
        .unwrap();
    assert_eq!(typed, serde_json::json!(format!("{day}T09:30")));
    tab_to_text(&b, "Save the sale").await.unwrap();
    enter_and_wait(&b, "done=saved").await.unwrap();
    let status = b
        .find(fantoccini::Locator::Id("status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(status.contains("Saved: a flash sale"), "{status}");
    let (s, sale) = app
        .get(&format!("/v1/shows/{show}/sale"))
        .await
        .expect("region sale");
    assert_eq!(s, 200, "{sale}");
    assert_eq!(sale["sale_mode"], "flash_sale", "{sale}");
    look(&b, "sale-saved").await.unwrap();

    // The reports, and their totals.
    tab_to_text(&b, "Reports").await.unwrap();
    enter_and_wait(&b, "/reports").await.unwrap();
    look(&b, "reports").await.unwrap();
    tab_to_text(&b, "Show the totals").await.unwrap();
    enter_and_wait(&b, "format=html").await.unwrap();
    let page = b.source().await.unwrap();
    assert!(page.contains("Totals by currency"), "{page}");
    look(&b, "report").await.unwrap();

    // The refunds and the booking lookup pages pass axe too.
    b.goto(&format!("{base}/ops/c/{CITY}/refunds"))
        .await
        .unwrap();
    let page = b.source().await.unwrap();
    assert!(page.contains("Settled by hand"), "{page}");
    look(&b, "refunds").await.unwrap();
    b.goto(&format!("{base}/ops/c/{CITY}/bookings?number={bob_number}"))
        .await
        .unwrap();
    look(&b, "booking").await.unwrap();
    // The shard's health, then its consistency checks run by keyboard.
    b.goto(&format!("{base}/ops/c/{CITY}/health"))
        .await
        .unwrap();
    let page = b.source().await.unwrap();
    assert!(page.contains("Background work"), "{page}");
    look(&b, "health").await.unwrap();
    tab_to_text(&b, "Run the consistency checks").await.unwrap();
    enter_and_wait(&b, "check=1").await.unwrap();
    let page = b.source().await.unwrap();
    assert!(page.contains("id=\"check-ok\""), "{page}");
    look(&b, "health-check").await.unwrap();
    // The failed e-mail page: the two refused confirmations.
    let failed = e2e::eventually(Duration::from_secs(20), || async {
        let (_, v) = app
            .send(
                reqwest::Method::GET,
                "/v1/operator/mail?state=failed",
                Some(&platform),
                None,
            )
            .await
            .expect("mail");
        v["messages"].as_array().map_or(0, Vec::len) >= 2
    })
    .await;
    assert!(failed, "the refused confirmations");
    b.goto(&format!("{base}/ops/c/{CITY}/mail")).await.unwrap();
    let page = b.source().await.unwrap();
    assert!(page.contains("Send again"), "{page}");
    look(&b, "mail").await.unwrap();
    b.goto(&format!("{base}/ops/c/{CITY}/shows/{show}/cancel"))
        .await
        .unwrap();
    look(&b, "cancel").await.unwrap();
    // An unknown city: the console's own 404.
    b.goto(&format!("{base}/ops/c/xyz")).await.unwrap();
    let page = b.source().await.unwrap();
    assert!(
        page.contains("Tickets console") && page.contains("Back to the console"),
        "{page}"
    );
    look(&b, "not-found").await.unwrap();
    b.close().await.ok();
    stack.stop().await;
    refusing.stop().await;
}
