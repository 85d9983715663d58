//! DESIGN invariant 8: a flash-sale show takes holds only with a valid
//! admission pass from the edge's waiting room, bound to that user and
//! that sale. Calling the region core directly without one, or with a
//! forged, expired or borrowed pass, is refused and writes nothing.

use e2e::{test_settings, user, TestApp};
use serde_json::json;
use shared::admission::{sign, PassClaims};

const KEY: &str = "admission-test-key-0123456789";

fn pass(sub: &str, sale: &str, exp_in: i64, key: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    sign(
        key.as_bytes(),
        &PassClaims {
            pid: format!("pass-{sub}"),
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
