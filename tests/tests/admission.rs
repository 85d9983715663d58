//! Invariant 8 (docs/architecture.md): a flash-sale show takes holds only with a valid
//! admission pass from the edge's waiting room, bound to that user and
//! that sale. Calling the region core directly without one, or with a
//! forged, expired or borrowed pass, is refused and writes nothing.

use e2e::{test_settings, user, TestApp};
use serde_json::json;
use shared::admission::{sign, PassClaims};

const KEY: &str = "admission-test-key-0123456789";

fn pass(sub: &str, sale: &str, exp_in: i64, key: &str) -> String {
    pass_with_id(&format!("pass-{sub}"), sub, sale, exp_in, key)
}

fn pass_with_id(pid: &str, sub: &str, sale: &str, exp_in: i64, key: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    sign(
        key.as_bytes(),
        &PassClaims {
            pid: pid.into(),
            sub: sub.into(),
            sale: sale.into(),
            pos: 1,
            iat: now,
            exp: now + exp_in,
        },
    )
}

async fn hold_with(
    app: &TestApp,
    who: &str,
    show: &str,
    seat: &str,
    pass: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = app
        .http
        .post(format!("{}/v1/shows/{show}/holds", app.url))
        .bearer_auth(user(who))
        .json(&json!({ "seats": [seat] }));
    if let Some(p) = pass {
        req = req.header("Admission-Pass", p);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_sale_holds_need_a_valid_pass_of_the_caller_for_that_show() {
    let mut settings = test_settings().await.unwrap();
    settings.admission_keys = vec![KEY.into(), "old-admission-key-0123456789".into()];
    let app = TestApp::spawn(settings).await.unwrap();
    let show = app
        .seed_show(1, 10, chrono::Duration::days(1))
        .await
        .unwrap();
    let other_show = app
        .seed_show(1, 10, chrono::Duration::days(1))
        .await
        .unwrap();
    // The operator API creates open shows in this harness; flip the mode
    // in the database before the region core first loads the layout.
    sqlx::query("UPDATE shows SET sale_mode = 'flash_sale'")
        .execute(&app.db)
        .await
        .unwrap();

    let refusals = [
        (None, "pass_required"),
        (Some("not-a-pass".to_owned()), "pass_malformed"),
        (
            Some(pass("alice", &show, 300, "forged-key-forged-key-0123")),
            "pass_invalid",
        ),
        (Some(pass("alice", &show, -1, KEY)), "pass_expired"),
        (Some(pass("bob", &show, 300, KEY)), "pass_wrong_user"),
        (
            Some(pass("alice", &other_show, 300, KEY)),
            "pass_wrong_sale",
        ),
    ];
    for (p, code) in &refusals {
        let (s, body) = hold_with(&app, "alice", &show, "A1", p.as_deref()).await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (403, Some(*code)),
            "{body}"
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM holds").await,
        0,
        "refusals write nothing"
    );
    assert_eq!(
        app.lock_owner(&show, "A1").await,
        None,
        "and take no Redis lock"
    );

    // A genuine pass, also one signed with the older (rotated) key.
    let (s, hold) = hold_with(
        &app,
        "alice",
        &show,
        "A1",
        Some(&pass("alice", &show, 300, KEY)),
    )
    .await;
    assert_eq!(s, 201, "{hold}");
    let (s, _) = hold_with(
        &app,
        "carol",
        &show,
        "A2",
        Some(&pass("carol", &show, 300, "old-admission-key-0123456789")),
    )
    .await;
    assert_eq!(s, 201);

    // Buying with it reports the pass completed, so the edge can reuse the slot.
    let resp = app
        .http
        .post(format!(
            "{}/v1/holds/{}/checkout",
            app.url,
            hold["hold_id"].as_str().unwrap()
        ))
        .bearer_auth(user("alice"))
        .header("Idempotency-Key", "k1")
        .json(&json!({ "payment_method": "pm_card_ok" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(resp.headers()["admission-completed"], "pass-alice");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_shows_need_no_pass() {
    let app = TestApp::default().await.unwrap();
    let show = app
        .seed_show(1, 5, chrono::Duration::days(1))
        .await
        .unwrap();
    let (s, body) = hold_with(&app, "alice", &show, "A1", None).await;
    assert_eq!(s, 201, "{body}");
    app.stop().await;
}

/// A flash-sale app with one show (2 rows of 10) in flash-sale mode.
async fn flash_app() -> (TestApp, String) {
    flash_app_with(|_| {}).await
}

/// [`flash_app`] with its settings changed by `change`.
async fn flash_app_with(
    change: impl FnOnce(&mut region_core::config::Settings),
) -> (TestApp, String) {
    let mut settings = test_settings().await.unwrap();
    settings.admission_keys = vec![KEY.into()];
    change(&mut settings);
    let app = TestApp::spawn(settings).await.unwrap();
    let show = app
        .seed_show(2, 10, chrono::Duration::days(1))
        .await
        .unwrap();
    sqlx::query("UPDATE shows SET sale_mode = 'flash_sale', max_seats_per_user = 4")
        .execute(&app.db)
        .await
        .unwrap();
    (app, show)
}

async fn hold_seats(
    app: &TestApp,
    who: &str,
    show: &str,
    seats: &[&str],
    pass: &str,
) -> (u16, serde_json::Value) {
    let resp = app
        .http
        .post(format!("{}/v1/shows/{show}/holds", app.url))
        .bearer_auth(user(who))
        .header("Admission-Pass", pass)
        .json(&json!({ "seats": seats }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn pay(
    app: &TestApp,
    who: &str,
    hold: &serde_json::Value,
    key: &str,
) -> (u16, serde_json::Value) {
    let resp = app
        .http
        .post(format!(
            "{}/v1/holds/{}/checkout",
            app.url,
            hold["hold_id"].as_str().unwrap()
        ))
        .bearer_auth(user(who))
        .header("Idempotency-Key", key)
        .json(&json!({ "payment_method": "pm_card_ok" }))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Issue 9.1: a pass buys once. Before, the same pass kept taking holds
/// and checking out until it expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_is_spent_by_its_checkout() {
    let (app, show) = flash_app().await;
    let p = pass("alice", &show, 300, KEY);
    let (s, first) = hold_seats(&app, "alice", &show, &["A1"], &p).await;
    assert_eq!(s, 201, "{first}");
    // A second hold with the same pass before buying is allowed (the buyer
    // may change seats), within the seat limit.
    let (s, second) = hold_seats(&app, "alice", &show, &["A2"], &p).await;
    assert_eq!(s, 201, "{second}");
    let (s, body) = pay(&app, "alice", &first, "k1").await;
    assert_eq!(s, 201, "{body}");

    // Spent: no new hold, and the other hold cannot be paid for.
    let (s, body) = hold_seats(&app, "alice", &show, &["A3"], &p).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("pass_used")),
        "{body}"
    );
    let (s, body) = pay(&app, "alice", &second, "k2").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("pass_used")),
        "{body}"
    );
    assert_eq!(app.count("SELECT count(*) FROM bookings").await, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM payments").await,
        1,
        "nothing charged"
    );
    // A new pass (the buyer queued again) buys again, within the limit.
    let again = pass_with_id("pass-alice-2", "alice", &show, 300, KEY);
    let (s, third) = hold_seats(&app, "alice", &show, &["A3"], &again).await;
    assert_eq!(s, 201, "{third}");
    let (s, body) = pay(&app, "alice", &third, "k3").await;
    assert_eq!(s, 201, "{body}");
    app.stop().await;
}

/// Issue 9.1: one pass, many parallel holds: the seat limit (4 here)
/// holds across all of them. Before, each hold was checked alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_holds_with_one_pass_cannot_exceed_the_seat_limit() {
    let (app, show) = flash_app().await;
    let p = pass("alice", &show, 300, KEY);
    let rows = ["A", "B"];
    let mut tasks = Vec::new();
    for i in 0..10 {
        let seats = [
            format!("{}{}", rows[i % 2], i / 2 * 2 + 1),
            format!("{}{}", rows[i % 2], i / 2 * 2 + 2),
        ];
        let (http, url, p, show) = (app.http.clone(), app.url.clone(), p.clone(), show.clone());
        tasks.push(tokio::spawn(async move {
            http.post(format!("{url}/v1/shows/{show}/holds"))
                .bearer_auth(user("alice"))
                .header("Admission-Pass", p)
                .json(&json!({ "seats": seats }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|&&s| s == 201).count();
    assert_eq!(
        ok, 2,
        "two holds of two seats fill a limit of four: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 201 || s == 409),
        "{statuses:?}"
    );
    assert_eq!(
        app.count("SELECT COALESCE(sum(seat_count), 0) FROM holds WHERE state = 'ACTIVE'")
            .await,
        4
    );
    // Bought seats count too.
    let holds: Vec<(String,)> = sqlx::query_as("SELECT id::text FROM holds WHERE state = 'ACTIVE'")
        .fetch_all(&app.db)
        .await
        .unwrap();
    let (s, body) = pay(&app, "alice", &json!({ "hold_id": holds[0].0 }), "k").await;
    assert_eq!(s, 201, "{body}");
    let again = pass_with_id("pass-alice-2", "alice", &show, 300, KEY);
    let (s, body) = hold_seats(&app, "alice", &show, &["A9", "A10"], &again).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("seat_limit_exceeded")),
        "two bought + two held is the limit: {body}"
    );
    app.stop().await;
}

/// A flash-sale hold keeps a pooled connection (its per-user lock) while
/// the hold writer places it. With more such holds at once than the pool
/// has connections, writers drawing from the same pool found none: every
/// hold waited out the acquire timeout and failed (503). The writers have
/// connections of their own now, so a crowd far larger than the pool
/// gets its holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_flash_sale_holds_at_once_than_pooled_connections_all_land() {
    let (app, show) = flash_app_with(|s| s.db_pool_size = 4).await;
    let buyers = 20;
    let tasks: Vec<_> = (0..buyers)
        .map(|i| {
            let (http, url, show) = (app.http.clone(), app.url.clone(), show.clone());
            let who = format!("buyer{i}");
            let p = pass(&who, &show, 300, KEY);
            let seat = format!("{}{}", ["A", "B"][i % 2], i / 2 + 1);
            tokio::spawn(async move {
                let resp = http
                    .post(format!("{url}/v1/shows/{show}/holds"))
                    .bearer_auth(user(&who))
                    .header("Admission-Pass", p)
                    .json(&json!({ "seats": [seat] }))
                    .send()
                    .await
                    .unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            })
        })
        .collect();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM holds WHERE state = 'ACTIVE'")
            .await,
        buyers as i64
    );
    app.stop().await;
}
