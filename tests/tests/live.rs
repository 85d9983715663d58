//! Live seat maps (issue 11, Q4) against a real region core, Postgres and
//! Redis: `GET /v1/shows/{id}/live` sends a snapshot then numbered deltas
//! of every seat change (hold, release, booking, cancellation), viewers
//! on two replicas of a shard see every change, a lost message or a map
//! Redis dropped makes every viewer resynchronise, a viewer that falls
//! behind is closed with the resync code, the socket cap answers 503, and
//! the polling fallback (`/seats?since=N`) gives deltas, ETags and 304s.
//!
//! The central check: after any burst of changes, each viewer's copy
//! (snapshot plus deltas) equals the seat map read from Postgres.

use e2e::money;
use e2e::{fault_settings, test_settings, user, TestApp};
use futures::future::join_all;
use reqwest::Method;
use shared::live::Frame;
use shared::{SeatState, ShowId};
use std::time::Duration;
use testkit::live::{ws_url, Closed, Viewer};
use uuid::Uuid;

const SOON: Duration = Duration::from_secs(5);

fn show_id(show: &str) -> ShowId {
    ShowId(show.parse().expect("show uuid"))
}

async fn viewer(app: &TestApp, show: &str) -> Viewer {
    let mut v = Viewer::connect(
        &ws_url(&app.url, &format!("/v1/shows/{show}/live")),
        show_id(show),
    )
    .await
    .expect("connect");
    let first = v.next(SOON).await.expect("frame").expect("a first frame");
    assert!(
        matches!(first, Frame::Snapshot { .. }),
        "first frame: {first:?}"
    );
    v
}

/// The seat map in Postgres (a hold past its end counts as available).
async fn postgres_map(app: &TestApp, show: &str) -> Vec<SeatState> {
    let rows: Vec<(i32, String, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
        "SELECT ordinal, status, hold_expires_at FROM show_seats WHERE show_id = $1 ORDER BY ordinal",
    )
    .bind(Uuid::parse_str(show).unwrap())
    .fetch_all(&app.db)
    .await
    .expect("show_seats");
    let now = chrono::Utc::now();
    rows.into_iter()
        .map(|(_, status, until)| match status.as_str() {
            "HELD" if until.is_some_and(|t| t > now) => SeatState::Held,
            "BOOKED" => SeatState::Booked,
            _ => SeatState::Available,
        })
        .collect()
}

/// Reads frames until the viewer's copy equals Postgres (or fails).
async fn converges(v: &mut Viewer, app: &TestApp, show: &str) {
    let want = postgres_map(app, show).await;
    let same = v
        .until(Duration::from_secs(10), |r| r.seats() == want)
        .await
        .expect("frames");
    assert!(
        same,
        "the viewer's copy differs from Postgres: {} differing seats",
        v.replica
            .seats()
            .iter()
            .zip(&want)
            .filter(|(a, b)| a != b)
            .count()
    );
}

/// Reads frames until `done` holds for the viewer (false on timeout).
/// Stops as soon as it holds: a test that idles on a socket lets its
/// pooled HTTP connections reach the server's idle timeout.
async fn frames_until(v: &mut Viewer, wait: Duration, done: impl Fn(&Viewer) -> bool) -> bool {
    let deadline = std::time::Instant::now() + wait;
    while !done(v) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || v.closed.is_some() {
            return false;
        }
        v.next(left).await.expect("frames");
    }
    true
}

fn label(ordinal: usize, per_row: usize) -> String {
    format!(
        "{}{}",
        testkit::seed::row_label(ordinal / per_row),
        ordinal % per_row + 1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_copies_equal_postgres_after_a_burst_of_holds_and_releases() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(10, 20, chrono::Duration::days(2))
        .await
        .expect("seed");
    let mut a = viewer(&app, &show).await;
    let mut b = viewer(&app, &show).await;
    // 16 buyers, each holding and releasing random pairs; some overlap
    // (409s), some holds are kept.
    join_all((0..16).map(|u| {
        let (app, show) = (&app, &show);
        async move {
            let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ (u as u64 + 1);
            for round in 0..12 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let first = (x % 199) as usize;
                let seats = [label(first, 20), label(first + 1, 20)];
                let seats: Vec<&str> = seats.iter().map(String::as_str).collect();
                let who = user(&format!("u{u}"));
                let (s, hold) = app.hold(&who, show, &seats).await.expect("hold");
                if s == 201 && round % 3 != 0 {
                    let id = hold["hold_id"].as_str().unwrap();
                    let (s, _) = app
                        .on_hold(Method::DELETE, &who, id, "")
                        .await
                        .expect("release");
                    assert!(s == 200 || s == 204, "release: {s}");
                }
            }
        }
    }))
    .await;
    converges(&mut a, &app, &show).await;
    converges(&mut b, &app, &show).await;
    assert!(a.deltas > 0 && b.deltas > 0, "changes came as deltas");
    // Deltas are coalesced: far fewer frames than changes.
    assert_eq!(a.gaps, 0, "no gap on a healthy stream");
    a.close().await.ok();
    b.close().await.ok();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_booking_and_its_cancellation_reach_viewers() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(2, 10, chrono::Duration::days(3))
        .await
        .expect("seed");
    let mut v = viewer(&app, &show).await;
    let who = user("buyer");
    let hold = app.hold_id("buyer", &show, &["A1", "A2"]).await;
    assert!(v
        .until(SOON, |r| r.seat(0) == Some(SeatState::Held))
        .await
        .unwrap());
    let paid = money::checkout(&app, &who, &hold, &Uuid::new_v4().to_string(), "pm_card_ok")
        .await
        .expect("checkout");
    assert_eq!(paid.status, 201, "{}", paid.json);
    assert!(
        v.until(SOON, |r| r.seat(0) == Some(SeatState::Booked)
            && r.seat(1) == Some(SeatState::Booked))
            .await
            .unwrap(),
        "booked seats reach the viewer"
    );
    let booking = paid.json["id"].as_str().unwrap();
    let (s, body) = app
        .send(
            Method::POST,
            &format!("/v1/bookings/{booking}/cancel"),
            Some(&who),
            None,
        )
        .await
        .expect("cancel");
    assert_eq!(s, 200, "{body}");
    assert!(
        v.until(SOON, |r| r.seat(0) == Some(SeatState::Available))
            .await
            .unwrap(),
        "cancelled seats come back"
    );
    converges(&mut v, &app, &show).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_made_through_one_replica_reaches_viewers_of_the_other() {
    let one = TestApp::default().await.expect("app");
    let mut settings = one.settings.clone();
    settings.listen = "127.0.0.1:0".into();
    let two = TestApp::spawn(settings).await.expect("second replica");
    let show = one
        .seed_show(2, 10, chrono::Duration::days(2))
        .await
        .expect("seed");
    let mut v = viewer(&two, &show).await;
    one.hold_id("u1", &show, &["B3"]).await;
    assert!(
        v.until(SOON, |r| r.seat(12) == Some(SeatState::Held))
            .await
            .unwrap(),
        "a hold taken on replica one reaches a viewer of replica two"
    );
    two.stop().await;
    one.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_message_or_a_dropped_map_makes_viewers_resync() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(2, 10, chrono::Duration::days(2))
        .await
        .expect("seed");
    let mut v = viewer(&app, &show).await;
    app.hold_id("u1", &show, &["A1"]).await;
    assert!(v
        .until(SOON, |r| r.seat(0) == Some(SeatState::Held))
        .await
        .unwrap());
    let seq = v.replica.seq().unwrap();
    let mut redis = app.redis().await.unwrap();
    // A message numbered past the next one: the feed has missed changes.
    // (If the feed applied it blindly, seat 5 would read HELD.)
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("live:{{{show}}}"))
        .arg(format!("{} 5:1", seq + 3))
        .query_async(&mut redis)
        .await
        .unwrap();
    let snapshots = v.snapshots;
    assert!(
        frames_until(&mut v, SOON, |v| v.snapshots > snapshots).await,
        "a gap makes the feed send a new snapshot"
    );
    assert_eq!(
        v.seat(5),
        Some(SeatState::Available),
        "the bogus change was not applied"
    );
    converges(&mut v, &app, &show).await;
    // The map dropped from Redis (expired, or after an outage): the next
    // change cannot be applied to it, so viewers are told to resync and
    // the map is rebuilt from Postgres.
    let _: () = redis::cmd("DEL")
        .arg(format!("seatmap:{{{show}}}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let snapshots = v.snapshots;
    app.hold_id("u2", &show, &["A7"]).await;
    assert!(v
        .until(SOON, |r| r.seat(6) == Some(SeatState::Held))
        .await
        .unwrap());
    assert!(v.snapshots > snapshots, "a resync snapshot, not a delta");
    converges(&mut v, &app, &show).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn polling_since_n_gives_deltas_etags_and_304() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(2, 10, chrono::Duration::days(2))
        .await
        .expect("seed");
    let get = |path: String, etag: Option<String>| {
        let app = &app;
        async move {
            let mut req = app.http.get(format!("{}{path}", app.url));
            if let Some(t) = etag {
                req = req.header("if-none-match", t);
            }
            let resp = req.send().await.expect("poll");
            let status = resp.status().as_u16();
            let etag = resp
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = resp.text().await.unwrap();
            (status, etag, body)
        }
    };
    // No copy (since=0): a snapshot, always.
    let (s, etag, body) = get(format!("/v1/shows/{show}/seats?since=0"), None).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"snapshot\""), "{body}");
    // ... unless the ETag says the caller's copy is the current one.
    let (s, _, _) = get(format!("/v1/shows/{show}/seats?since=0"), etag.clone()).await;
    assert_eq!(s, 304);
    // A first change, so the copy has a number.
    app.hold_id("u0", &show, &["A1"]).await;
    let mut etag = etag.expect("etag");
    for _ in 0..50 {
        let (_, e, _) = get(format!("/v1/shows/{show}/seats?since=0"), None).await;
        etag = e.expect("etag");
        if etag != "\"0\"" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seq: u64 = etag.trim_matches('"').parse().expect("numeric etag");
    assert!(seq >= 1, "the hold was numbered");
    // Nothing changed: 304, by number and by ETag.
    let (s, _, _) = get(format!("/v1/shows/{show}/seats?since={seq}"), None).await;
    assert_eq!(s, 304);
    let (s, _, _) = get(
        format!("/v1/shows/{show}/seats?since={seq}"),
        Some(etag.clone()),
    )
    .await;
    assert_eq!(s, 304);
    app.hold_id("u1", &show, &["A3", "A4"]).await;
    // Within the coalescing window plus a little, a delta from seq + 1.
    let mut got = None;
    for _ in 0..50 {
        let (s, new_etag, body) = get(format!("/v1/shows/{show}/seats?since={seq}"), None).await;
        if s == 200 {
            got = Some((new_etag.unwrap(), body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (new_etag, body) = got.expect("the change shows up");
    assert_ne!(new_etag, etag);
    let frame: Frame = serde_json::from_str(&body).expect("a frame");
    match frame {
        Frame::Delta { from, changes, .. } => {
            assert_eq!(from, seq + 1);
            assert_eq!(changes, vec![(2, SeatState::Held), (3, SeatState::Held)]);
        }
        other => panic!("expected a delta, got {other:?}"),
    }
    // A number from the future (a restarted counter) gets a snapshot.
    let (s, _, body) = get(format!("/v1/shows/{show}/seats?since=999999"), None).await;
    assert_eq!(s, 200);
    assert!(body.contains("\"snapshot\""), "{body}");
    // Bad input: a clear 400, JSON.
    let (s, _, body) = get(format!("/v1/shows/{show}/seats?since=-1"), None).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("\"code\""), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_socket_cap_answers_503_and_a_plain_get_400() {
    let mut settings = test_settings().await.expect("settings");
    settings.live_max_sockets = 2;
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app
        .seed_show(1, 5, chrono::Duration::days(2))
        .await
        .expect("seed");
    let _a = viewer(&app, &show).await;
    let _b = viewer(&app, &show).await;
    let url = ws_url(&app.url, &format!("/v1/shows/{show}/live"));
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
            assert!(resp.headers().get("retry-after").is_some(), "Retry-After");
        }
        other => panic!(
            "a third socket must be refused with 503, got {:?}",
            other.map(|_| ())
        ),
    }
    let (s, body) = app
        .get(&format!("/v1/shows/{show}/live"))
        .await
        .expect("get");
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["code"], "websocket_required");
    let (s, body) = app
        .get(&format!("/v1/shows/{}/live", Uuid::nil()))
        .await
        .expect("get");
    assert_eq!(s, 404, "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_that_falls_behind_is_closed_with_the_resync_code() {
    let mut settings = test_settings().await.expect("settings");
    settings.live_buffer_frames = 16;
    // The slow viewer answers no ping while it does not read.
    settings.live_ping_secs = 120;
    let app = TestApp::spawn(settings).await.expect("app");
    // A big map: each snapshot frame is ~13 KB.
    let show = app
        .seed_show(100, 200, chrono::Duration::days(2))
        .await
        .expect("seed");
    let mut slow = viewer(&app, &show).await;
    let mut fast = viewer(&app, &show).await;
    // The fast viewer reads all the time, in its own task.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (stop, seen) = (stop.clone(), seen.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match fast.next(Duration::from_millis(100)).await {
                    Ok(Some(_)) => {
                        seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(None) if fast.closed.is_none() => {}
                    _ => break,
                }
            }
            fast
        })
    };
    // Many resync snapshots (each injected gap makes the feed send one),
    // while `slow` does not read. They go out a few at a time, each batch
    // after the fast viewer has read something of the last, so a reading
    // viewer keeps up however slow the machine (snapshots close together
    // may be coalesced, so "something", not "all").
    let mut redis = app.redis().await.unwrap();
    let seq = slow.replica.seq().unwrap();
    for i in 0..1500u64 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(format!("live:{{{show}}}"))
            .arg(format!("{} R", seq + 1 + i))
            .query_async(&mut redis)
            .await
            .unwrap();
        if i % 8 == 7 {
            let before = seen.load(std::sync::atomic::Ordering::Relaxed);
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while seen.load(std::sync::atomic::Ordering::Relaxed) == before {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
        }
    }
    // Now read: what was buffered, then the close.
    let closed = loop {
        if slow.next(SOON).await.unwrap().is_none() {
            break slow.closed.clone();
        }
    };
    assert_eq!(
        closed,
        Some(Closed::Code(4000)),
        "slow viewer closed with resync"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let fast = reader.await.unwrap();
    assert!(fast.closed.is_none(), "the fast viewer is still served");
    assert!(
        fast.snapshots > 100,
        "and it saw the snapshots: {}",
        fast.snapshots
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_redis_is_down_viewers_get_degraded_snapshots_from_postgres() {
    let mut redis = e2e::redis_server::RedisServer::start().expect("redis-server");
    let mut settings = fault_settings().await.expect("settings");
    settings.redis_url = redis.url();
    settings.live_degraded_snapshot_ms = 500;
    let app = TestApp::spawn(settings).await.expect("app");
    let show = app
        .seed_show(2, 10, chrono::Duration::days(2))
        .await
        .expect("seed");
    let mut v = viewer(&app, &show).await;
    assert!(!v.degraded);
    redis.kill();
    // Holds go on through Postgres alone (the first may trip the breaker).
    let mut held = false;
    for _ in 0..20 {
        if app.hold(&user("u1"), &show, &["A2"]).await.expect("hold").0 == 201 {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(held, "a hold on the Postgres-only path");
    assert!(
        v.until(Duration::from_secs(10), |r| r.seat(1)
            == Some(SeatState::Held))
            .await
            .unwrap(),
        "the Postgres-only hold reaches the viewer"
    );
    assert!(v.degraded, "the viewer is told it is degraded");
    assert!(v.closed.is_none(), "the socket stays open");
    // Redis back: live deltas again, not degraded.
    redis.restart().expect("redis back");
    assert!(app.wait_for_fast_path().await, "fast path resumes");
    assert!(
        frames_until(&mut v, Duration::from_secs(10), |v| !v.degraded).await,
        "a fresh, non-degraded snapshot after the recovery"
    );
    app.hold_id("u2", &show, &["B1"]).await;
    assert!(v
        .until(SOON, |r| r.seat(10) == Some(SeatState::Held))
        .await
        .unwrap());
    converges(&mut v, &app, &show).await;
    app.stop().await;
}
