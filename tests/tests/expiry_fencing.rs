//! Invariants 3 and 4: holds expire (Redis TTL + Postgres sweeper, and the
//! seat map says so), and a hold id is a fencing token — once a hold has
//! expired and its seat was taken again, its old holder can act on nothing.

use e2e::{eventually, test_settings, user, TestApp};
use std::time::Duration;
use testkit::invariants::check;

async fn pg_owner(app: &TestApp, show: &str, label: &str) -> (String, Option<uuid::Uuid>) {
    sqlx::query_as(
        "SELECT ss.status, ss.hold_id FROM show_seats ss JOIN seats s ON s.id = ss.seat_id
          WHERE ss.show_id = $1::uuid AND s.label = $2",
    )
    .bind(show)
    .bind(label)
    .fetch_one(&app.db)
    .await
    .expect("row")
}

/// An app whose holds last one second, sweeping every `sweep_ms`, with a
/// one-row show of ten seats.
async fn one_second_holds(sweep_ms: u64) -> (TestApp, String) {
    let mut settings = test_settings().await.expect("settings");
    settings.hold_ttl_secs = 1;
    settings.sweep_interval_ms = sweep_ms;
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(1))
        .await
        .expect("seed");
    (app, show)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_holds_are_swept_and_the_seat_map_shows_it() {
    let (app, show) = one_second_holds(100).await;
    let alice = user("alice");
    let (s, hold) = app
        .hold(&alice, &show, &["A1", "A2", "A3"])
        .await
        .expect("hold");
    assert_eq!(s, 201);
    let (_, avail) = app
        .get(&format!("/v1/shows/{show}/availability"))
        .await
        .expect("avail");
    assert_eq!(avail["available"], 7);

    let freed = eventually(Duration::from_secs(10), || async {
        let (_, a) = app
            .get(&format!("/v1/shows/{show}/availability"))
            .await
            .expect("avail");
        a["available"] == 10
    })
    .await;
    assert!(freed, "seat map must show the expired seats as available");
    assert_eq!(
        pg_owner(&app, &show, "A1").await,
        ("AVAILABLE".into(), None)
    );
    assert_eq!(
        app.lock_owner(&show, "A1").await,
        None,
        "Redis key expired by TTL"
    );
    let id = hold["hold_id"].as_str().expect("id");
    let (s, h) = app
        .on_hold(reqwest::Method::GET, &alice, id, "")
        .await
        .expect("get");
    assert_eq!((s, h["state"].as_str()), (200, Some("EXPIRED")));
    // The seats can be held again.
    let (s, _) = app
        .hold(&user("bob"), &show, &["A1", "A2", "A3"])
        .await
        .expect("hold");
    assert_eq!(s, 201);
    assert_eq!(
        check(&app.db, &app.redis_url, &[show])
            .await
            .expect("check"),
        Default::default()
    );
    app.stop().await;
}

/// The sweeper is slowed right down so the second hold takes the seat over
/// from an expired-but-unswept hold: the fencing path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holder_cannot_release_or_extend_a_seat_it_lost() {
    let (app, show) = one_second_holds(3_600_000).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let (s, old) = app.hold(&alice, &show, &["A1", "A2"]).await.expect("hold");
    assert_eq!(s, 201);
    let old_id = old["hold_id"].as_str().expect("id").to_owned();

    // Wait for the Redis lock to lapse (Postgres still says HELD: unswept).
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.lock_owner(&show, "A1").await.is_none()
        })
        .await
    );
    assert_eq!(pg_owner(&app, &show, "A1").await.0, "HELD");
    let (s, new) = app.hold(&bob, &show, &["A1"]).await.expect("hold");
    assert_eq!(s, 201, "an expired hold's seat can be taken over: {new}");
    let new_id = new["hold_id"].as_str().expect("id").to_owned();

    // The stale holder is fenced off: release, extend, and the seat stays Bob's.
    let (s, body) = app
        .on_hold(reqwest::Method::DELETE, &alice, &old_id, "")
        .await
        .expect("release");
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (410, Some("hold_expired"))
    );
    let (s, body) = app
        .on_hold(reqwest::Method::POST, &alice, &old_id, "/extend")
        .await
        .expect("extend");
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (410, Some("hold_expired"))
    );
    assert_eq!(
        pg_owner(&app, &show, "A1").await,
        ("HELD".into(), Some(new_id.parse().expect("uuid")))
    );
    assert_eq!(
        app.lock_owner(&show, "A1").await.as_deref(),
        Some(new_id.as_str())
    );
    let old_state: String = sqlx::query_scalar("SELECT state FROM holds WHERE id = $1::uuid")
        .bind(&old_id)
        .fetch_one(&app.db)
        .await
        .expect("state");
    assert_eq!(old_state, "EXPIRED", "the displaced hold is marked expired");
    let report = check(&app.db, &app.redis_url, std::slice::from_ref(&show))
        .await
        .expect("check");
    assert_eq!(report.double_live_holds, 0);
    assert_eq!(report.owner_mismatch, 0);

    // Even the database refuses a stale write: the fencing token is checked
    // on every update (here, the store's release with the old hold id).
    let mut tx = app.app.state.db.begin().await.expect("tx");
    let released = region_core::holds::store::release(
        &mut tx,
        show.parse().expect("uuid"),
        old_id.parse().expect("uuid"),
        chrono::Utc::now() - chrono::Duration::hours(1), // pretend the clock is wrong
    )
    .await
    .expect("release");
    tx.commit().await.expect("commit");
    assert_eq!(
        released, None,
        "a hold that lost its seats releases nothing"
    );
    assert_eq!(
        pg_owner(&app, &show, "A1").await.1,
        Some(new_id.parse().expect("uuid"))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_hold_is_extended_once_and_released_once() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(1, 10, chrono::Duration::days(1))
        .await
        .expect("seed");
    let alice = user("alice");
    let (_, hold) = app.hold(&alice, &show, &["A5"]).await.expect("hold");
    let id = hold["hold_id"].as_str().expect("id");
    let first_expiry: chrono::DateTime<chrono::Utc> = hold["expires_at"]
        .as_str()
        .expect("exp")
        .parse()
        .expect("ts");
    let (s, ext) = app
        .on_hold(reqwest::Method::POST, &alice, id, "/extend")
        .await
        .expect("extend");
    assert_eq!(s, 200);
    let second: chrono::DateTime<chrono::Utc> = ext["expires_at"]
        .as_str()
        .expect("exp")
        .parse()
        .expect("ts");
    assert_eq!(second - first_expiry, chrono::Duration::seconds(300));
    let pttl: i64 = {
        let mut r = app.redis().await.expect("redis");
        redis::cmd("PTTL")
            .arg(format!("seat:{{{show}}}:A5"))
            .query_async(&mut r)
            .await
            .expect("pttl")
    };
    assert!(pttl > 600_000, "redis TTL follows the extension: {pttl}");
    let (s, body) = app
        .on_hold(reqwest::Method::POST, &alice, id, "/extend")
        .await
        .expect("extend");
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("hold_already_extended"))
    );

    // Someone else's hold is invisible to them.
    let (s, _) = app
        .on_hold(reqwest::Method::DELETE, &user("mallory"), id, "")
        .await
        .expect("release");
    assert_eq!(s, 404);
    let (s, body) = app
        .on_hold(reqwest::Method::DELETE, &alice, id, "")
        .await
        .expect("release");
    assert_eq!((s, body["state"].as_str()), (200, Some("RELEASED")));
    let (s, _) = app
        .on_hold(reqwest::Method::DELETE, &alice, id, "")
        .await
        .expect("release again");
    assert_eq!(s, 200, "releasing twice is harmless");
    assert_eq!(app.lock_owner(&show, "A5").await, None);
    let (_, avail) = app
        .get(&format!("/v1/shows/{show}/availability"))
        .await
        .expect("avail");
    assert_eq!(avail["available"], 10);
    let (s, body) = app
        .on_hold(reqwest::Method::POST, &alice, id, "/extend")
        .await
        .expect("extend");
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("hold_not_active"))
    );
    app.stop().await;
}
