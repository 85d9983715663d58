//! Catalog reads: shows are listed by their date in the venue's time zone
//! (times stored in UTC), and a new show's seats are all available.

use chrono::{Duration, TimeZone, Utc};
use chrono_tz::America::New_York;
use e2e::TestApp;
use serde_json::json;

#[tokio::test]
async fn shows_are_listed_by_local_date_of_the_venue() {
    let app = TestApp::default().await.expect("app");
    let (s, _) = app
        .operator_post(
            "/v1/operator/cities",
            json!({"code":"nyc","name":"New York"}),
        )
        .await
        .expect("city");
    assert_eq!(s, 201);
    let (_, venue) = app
        .operator_post(
            "/v1/operator/venues",
            json!({"city":"nyc","name":"MSG","time_zone":"America/New_York"}),
        )
        .await
        .expect("venue");
    let (_, screen) = app
        .operator_post(
            "/v1/operator/screens",
            json!({"venue_id": venue["id"], "name":"Arena", "rows":[{"row":"A","seats":4,"category":"FLOOR"}]}),
        )
        .await
        .expect("screen");
    let (_, movie) = app
        .operator_post(
            "/v1/operator/movies",
            json!({"title":"Concert","duration_minutes":180}),
        )
        .await
        .expect("movie");

    // A local date a month ahead: a show at 21:30 local that is already
    // the next day in UTC, and one at 00:30 local the day after.
    let day = (Utc::now() + Duration::days(30))
        .with_timezone(&New_York)
        .date_naive();
    let late = New_York
        .from_local_datetime(&day.and_hms_opt(21, 30, 0).expect("time"))
        .single()
        .expect("unambiguous");
    let next = New_York
        .from_local_datetime(
            &(day + Duration::days(1))
                .and_hms_opt(0, 30, 0)
                .expect("time"),
        )
        .single()
        .expect("unambiguous");
    let mut ids = Vec::new();
    for t in [late, next] {
        let (s, show) = app
            .operator_post(
                "/v1/operator/shows",
                json!({"screen_id": screen["id"], "movie_id": movie["id"], "starts_at": t.with_timezone(&Utc).to_rfc3339(),
                       "prices": {"FLOOR": 900000}, "currency": "USD", "sale_mode": "flash_sale",
                       "waiting_room": {"opens_at": Utc::now().to_rfc3339(), "rate_per_sec": 5.0, "pass_ttl_s": 300, "grace_s": 30}}),
            )
            .await
            .expect("show");
        assert_eq!(s, 201, "{show}");
        ids.push(show["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(
        late.with_timezone(&Utc).date_naive(),
        day + Duration::days(1),
        "test premise: UTC date differs"
    );

    let (s, list) = app
        .get(&format!("/v1/cities/nyc/shows?date={day}"))
        .await
        .expect("list");
    assert_eq!(s, 200);
    let listed: Vec<&str> = list["shows"]
        .as_array()
        .expect("shows")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, vec![ids[0].as_str()]);
    let show = &list["shows"][0];
    assert_eq!(show["starts_at_local"], late.to_rfc3339());
    assert_eq!(show["time_zone"], "America/New_York");
    assert_eq!(show["sale_mode"], "flash_sale");
    let (_, list) = app
        .get(&format!(
            "/v1/cities/nyc/shows?date={}",
            day + Duration::days(1)
        ))
        .await
        .expect("list");
    assert_eq!(list["shows"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["shows"][0]["id"], ids[1].as_str());

    let (s, b) = app
        .get("/v1/cities/nyc/shows?date=tomorrow")
        .await
        .expect("list");
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("bad_query")));
    let (s, b) = app
        .get(&format!("/v1/cities/zzz/shows?date={day}"))
        .await
        .expect("list");
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("unknown_city"))
    );

    let (s, map) = app
        .get(&format!("/v1/shows/{}/seats", ids[0]))
        .await
        .expect("map");
    assert_eq!(s, 200);
    assert_eq!(map["available"], 4);
    assert_eq!(
        map["seats"][3],
        json!({"label":"A4","category":"FLOOR","status":"AVAILABLE"})
    );
    let (s, cities) = app.get("/v1/cities").await.expect("cities");
    assert_eq!((s, cities[0]["code"].as_str()), (200, Some("nyc")));
    let (s, b) = app
        .get("/v1/shows/00000000-0000-7000-8000-000000000000")
        .await
        .expect("show");
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("unknown_show"))
    );
    app.stop().await;
}
