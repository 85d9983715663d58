//! Invariant 9's other half: overload and a dependency outage give 503
//! with `Retry-After` (never a 500, never a half-done write).

use e2e::pg_server::PgServer;
use e2e::{test_settings, user, TestApp};
use futures::future::join_all;
use testkit::invariants::check;
use testkit::seed::row_label;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_hold_queue_sheds_load_with_503_and_leaves_nothing_behind() {
    let mut settings = test_settings().await.expect("settings");
    settings.hold_writers = 1;
    settings.hold_batch_max = 1;
    settings.hold_queue = 1;
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app
        .seed_show(20, 20, chrono::Duration::days(1))
        .await
        .expect("seed");
    // 400 holds on distinct seats: none conflict, so every refusal is load shedding.
    let seats: Vec<String> = (0..20)
        .flat_map(|r| (1..=20).map(move |n| format!("{}{n}", row_label(r))))
        .collect();
    let results = join_all(seats.iter().enumerate().map(|(i, seat)| {
        let (app, show) = (&app, &show);
        async move {
            let resp = app
                .http
                .post(format!("{}/v1/shows/{show}/holds", app.url))
                .bearer_auth(user(&format!("u{i}")))
                .json(&serde_json::json!({"seats": [seat]}))
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            let retry_after = resp.headers().get("retry-after").is_some();
            let body: serde_json::Value = resp.json().await.expect("json");
            (status, retry_after, body, seat.clone())
        }
    }))
    .await;
    let shed: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
    let held: Vec<_> = results.iter().filter(|r| r.0 == 201).collect();
    assert_eq!(shed.len() + held.len(), results.len(), "only 201 or 503");
    assert!(
        !shed.is_empty(),
        "a queue of one must shed some of 400 concurrent holds"
    );
    assert!(!held.is_empty());
    for (_, retry_after, body, _) in &shed {
        assert!(*retry_after, "503 carries Retry-After");
        assert_eq!(body["error"]["code"], "overloaded");
    }
    // Shed holds left no lock behind: their seats can be held at once.
    let (s, _) = app
        .hold(&user("later"), &show, &[shed[0].3.as_str()])
        .await
        .expect("hold");
    assert_eq!(s, 201, "a shed hold must not keep its Redis lock");
    let report = check(&app.db, &app.redis_url, std::slice::from_ref(&show))
        .await
        .expect("check");
    assert_eq!(report, Default::default());
    let holds: i64 = app.count("SELECT count(*) FROM holds").await;
    assert_eq!(holds as usize, held.len() + 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_gives_503_with_retry_after_and_recovers() {
    let pg = PgServer::start().expect("private postgres");
    let mut settings = test_settings().await.expect("settings");
    settings.database_url = pg.url();
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app
        .seed_show(2, 10, chrono::Duration::days(1))
        .await
        .expect("seed");
    let alice = user("alice");
    let (s, _) = app.hold(&alice, &show, &["A1"]).await.expect("hold");
    assert_eq!(s, 201);

    pg.stop().expect("stop postgres");
    let resp = app
        .http
        .post(format!("{}/v1/shows/{show}/holds", app.url))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"seats": ["B1", "B2"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let body: serde_json::Value = resp.json().await.expect("json");
    assert!(body["error"]["code"].is_string(), "{body}");
    // The refused hold's Redis locks were given back.
    let b1 = app.lock_owner(&show, "B1").await;
    assert_eq!(b1, None);
    let (s, _) = app.get("/readyz").await.expect("readyz");
    assert_eq!(s, 503, "not ready without Postgres");

    pg.resume().expect("start postgres");
    let mut ok = false;
    for _ in 0..40 {
        if app
            .hold(&alice, &show, &["B1", "B2"])
            .await
            .expect("hold")
            .0
            == 201
        {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(ok, "holds work again once Postgres is back");
    let (s, _) = app.get("/readyz").await.expect("readyz");
    assert_eq!(s, 200);
    let report = check(&app.db, &app.redis_url, std::slice::from_ref(&show))
        .await
        .expect("check");
    assert_eq!(report, Default::default());
    app.stop().await;
}
