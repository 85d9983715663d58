//! The global catalog (`region-core catalog`, its own database): a title
//! is created once and every city's shard shows it under that one id;
//! buyers find it by title across cities even misspelt; bad input and a
//! catalog that is down change nothing in a shard.

use chrono::{Duration, Utc};
use e2e::global_catalog::CatalogProcess;
use e2e::{test_settings, token, TestApp};
use serde_json::{json, Value};
use shared::token::Role;
use testkit::api::Api;
use testkit::seed;

/// A shard of `city` that takes its titles from `catalog`.
async fn shard(city: &str, catalog: &CatalogProcess) -> TestApp {
    let mut s = test_settings().await.expect("settings");
    s.shard_code = city.to_uppercase();
    s.catalog_url = Some(catalog.url.clone());
    s.catalog_timeout_ms = 1_000;
    let app = TestApp::spawn(s).await.expect("shard");
    let api = Api::new(&app.url).expect("api");
    let op = format!("Bearer {}", token("operator-1", Role::Operator));
    seed::ensure_city(&api, &op, city, &format!("City {city}"))
        .await
        .expect("city");
    app
}

/// A screen of 2 x 4 seats in the shard's city; its id.
async fn screen(app: &TestApp, city: &str) -> Value {
    let api = Api::new(&app.url).expect("api");
    let op = format!("Bearer {}", token("operator-1", Role::Operator));
    let city = shared::CityCode::parse(city).expect("city");
    let place = seed::ensure_place(
        &api,
        &op,
        &city,
        "Venue",
        "Asia/Kolkata",
        "Screen 1",
        &seed::grid(2, 4, |_| "REGULAR"),
    )
    .await
    .expect("place");
    json!(place.screen_id)
}

fn show_body(screen: &Value, movie: &Value, days: i64) -> Value {
    json!({
        "screen_id": screen,
        "movie_id": movie,
        "starts_at": (Utc::now() + Duration::days(days)).to_rfc3339(),
        "prices": {"REGULAR": 25_000},
        "currency": "INR",
    })
}

/// A call to the catalog service itself.
async fn catalog_call(
    catalog: &CatalogProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", catalog.url))
        .bearer_auth(token("operator-1", Role::Operator));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("catalog answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn search(catalog: &CatalogProcess, q: &str) -> (u16, Value) {
    let path = format!("/v1/search?q={}", urlencode(q));
    catalog_call(catalog, reqwest::Method::GET, &path, None).await
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Titles of the hits, best first, and each hit's cities.
fn hits(body: &Value) -> Vec<(String, Vec<String>)> {
    body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| {
            let cities = h["cities"]
                .as_array()
                .expect("cities")
                .iter()
                .map(|c| c.as_str().expect("city").to_owned())
                .collect();
            (
                h["movie"]["title"].as_str().expect("title").to_owned(),
                cities,
            )
        })
        .collect()
}

#[tokio::test]
async fn one_title_every_city_found_across_cities_with_typos() {
    let catalog = CatalogProcess::start().await.expect("catalog");
    let mum = shard("mum", &catalog).await;
    let nyc = shard("nyc", &catalog).await;

    // Created once, in the catalog.
    let (s, movie) = catalog_call(
        &catalog,
        reqwest::Method::POST,
        "/v1/operator/movies",
        Some(json!({"title": "Interstellar", "duration_minutes": 169, "language": "en"})),
    )
    .await;
    assert_eq!(s, 201, "{movie}");
    let id = movie["id"].clone();
    // A live event, and a film no city shows.
    let (s, _) = catalog_call(
        &catalog,
        reqwest::Method::POST,
        "/v1/operator/movies",
        Some(json!({"title": "Coldplay: Music of the Spheres", "duration_minutes": 150, "kind": "event"})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = catalog_call(
        &catalog,
        reqwest::Method::POST,
        "/v1/operator/movies",
        Some(json!({"title": "Dune: Part Two", "duration_minutes": 166})),
    )
    .await;
    assert_eq!(s, 201);

    // Both cities schedule it by its one id; neither created it.
    for (app, city) in [(&mum, "mum"), (&nyc, "nyc")] {
        let screen = screen(app, city).await;
        let (s, show) = app
            .operator_post("/v1/operator/shows", show_body(&screen, &id, 3))
            .await
            .expect("show");
        assert_eq!(s, 201, "{city}: {show}");
        let (s, read) = app
            .get(&format!("/v1/shows/{}", show["id"].as_str().expect("id")))
            .await
            .expect("read");
        assert_eq!(s, 200);
        assert_eq!(read["movie_id"], id, "{city} shows the global id");
        assert_eq!(read["movie_title"], "Interstellar");
        assert_eq!(app.count("SELECT count(*) FROM movies").await, 1);
    }

    // Misspelt, lower-case, one word of a longer title: still found, with
    // the cities that show it.
    for q in ["Interstellar", "interstelar", "Intersteller", "intrstellar"] {
        let (s, body) = search(&catalog, q).await;
        assert_eq!(s, 200, "{q}: {body}");
        let found = hits(&body);
        assert_eq!(
            found.first(),
            Some(&(
                "Interstellar".to_owned(),
                vec!["mum".to_owned(), "nyc".to_owned()]
            )),
            "{q}: {body}"
        );
    }
    let (_, body) = search(&catalog, "dune").await;
    assert_eq!(
        hits(&body).first(),
        Some(&("Dune: Part Two".to_owned(), vec![]))
    );
    let (_, body) = search(&catalog, "coldply").await;
    assert_eq!(hits(&body)[0].0, "Coldplay: Music of the Spheres", "{body}");
    assert_eq!(body["hits"][0]["movie"]["kind"], "event");
    let (_, body) = search(&catalog, "qqqqzzzz").await;
    assert_eq!(hits(&body), vec![], "nothing like it: {body}");

    // A city's operator creating the same title gets the global one back
    // (409 with its id), and a new title created through a shard lands in
    // the catalog under the id the shard keeps.
    let (s, body) = mum
        .operator_post(
            "/v1/operator/movies",
            json!({"title": "interstellar", "duration_minutes": 169, "language": "en"}),
        )
        .await
        .expect("create");
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("movie_exists"))
    );
    assert_eq!(body["error"]["details"]["id"], id);
    let (s, made) = nyc
        .operator_post(
            "/v1/operator/movies",
            json!({"title": "Oppenheimer", "duration_minutes": 180, "language": "en"}),
        )
        .await
        .expect("create");
    assert_eq!(s, 201, "{made}");
    let (s, global) = catalog_call(
        &catalog,
        reqwest::Method::GET,
        &format!("/v1/movies/{}", made["id"].as_str().expect("id")),
        None,
    )
    .await;
    assert_eq!((s, &global["title"]), (200, &json!("Oppenheimer")));
    assert_eq!(
        nyc.count(&format!(
            "SELECT count(*) FROM movies WHERE id = '{}'",
            made["id"].as_str().expect("id")
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn bad_input_and_a_dead_catalog_change_nothing() {
    let mut catalog = CatalogProcess::start().await.expect("catalog");
    let mum = shard("mum", &catalog).await;
    let screen = screen(&mum, "mum").await;

    // No such title: 404, no show, no listing.
    let unknown = json!(uuid::Uuid::now_v7());
    let (s, body) = mum
        .operator_post("/v1/operator/shows", show_body(&screen, &unknown, 3))
        .await
        .expect("show");
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("unknown_movie")),
        "{body}"
    );
    assert_eq!(mum.count("SELECT count(*) FROM shows").await, 0);
    assert_eq!(mum.count("SELECT count(*) FROM movies").await, 0);

    // The catalog's own checks.
    for (body, code) in [
        (json!({"title": "", "duration_minutes": 100}), 422),
        (json!({"title": "X", "duration_minutes": 0}), 422),
        (json!({"title": "X\u{0}", "duration_minutes": 90}), 422),
        (
            json!({"title": "X", "duration_minutes": 90, "kind": "circus"}),
            422,
        ),
        (json!({"duration_minutes": 90}), 422),
    ] {
        let (s, answer) = catalog_call(
            &catalog,
            reqwest::Method::POST,
            "/v1/operator/movies",
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, code, "{body}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let anonymous = reqwest::Client::new()
        .post(format!("{}/v1/operator/movies", catalog.url))
        .json(&json!({"title": "Y", "duration_minutes": 90}))
        .send()
        .await
        .expect("answer");
    assert_eq!(anonymous.status().as_u16(), 401);
    let user = reqwest::Client::new()
        .post(format!("{}/v1/operator/listings", catalog.url))
        .bearer_auth(token("fan-1", Role::User))
        .json(&json!({"movie_id": unknown, "city": "mum", "starts_at": Utc::now()}))
        .send()
        .await
        .expect("answer");
    assert_eq!(user.status().as_u16(), 403);
    for q in ["", "%20%20", &"x".repeat(101)] {
        let (s, body) = catalog_call(
            &catalog,
            reqwest::Method::GET,
            &format!("/v1/search?q={q}"),
            None,
        )
        .await;
        assert_eq!(
            (s, body["error"]["code"].as_str()),
            (400, Some("invalid_query")),
            "{q:?}"
        );
    }
    let (s, _) = catalog_call(
        &catalog,
        reqwest::Method::GET,
        "/v1/search?q=a&limit=0",
        None,
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = catalog_call(
        &catalog,
        reqwest::Method::GET,
        "/v1/movies/not-a-uuid",
        None,
    )
    .await;
    assert_eq!(s, 400);
    let db = sqlx::PgPool::connect(&catalog.database_url)
        .await
        .expect("db");
    let titles: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog_movies")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(titles, 0, "bad input stored nothing");

    // A title, then the catalog dies: the shard cannot vouch for a title it
    // has never seen, so the show waits (503 + Retry-After) and nothing is
    // written; once the catalog is back the same request succeeds.
    let (s, movie) = catalog_call(
        &catalog,
        reqwest::Method::POST,
        "/v1/operator/movies",
        Some(json!({"title": "Jawan", "duration_minutes": 169, "language": "hi"})),
    )
    .await;
    assert_eq!(s, 201);
    catalog.kill().await;
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/operator/shows", mum.url))
        .bearer_auth(token("operator-1", Role::Operator))
        .json(&show_body(&screen, &movie["id"], 3))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status().as_u16(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["error"]["code"], "catalog_unavailable");
    assert_eq!(mum.count("SELECT count(*) FROM shows").await, 0);
    assert_eq!(mum.count("SELECT count(*) FROM movies").await, 0);
    catalog.restart().await.expect("restart");
    let (s, show) = mum
        .operator_post("/v1/operator/shows", show_body(&screen, &movie["id"], 3))
        .await
        .expect("show");
    assert_eq!(s, 201, "{show}");
    let listed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM catalog_listings WHERE city = 'mum'")
            .fetch_one(&db)
            .await
            .expect("count");
    assert_eq!(listed, 1);
}

/// A write sent straight to the catalog service is in the catalog's own
/// audit log (who, what, before and after), a refused write is not, the
/// log is filtered to the reader's cities, and the table refuses to be
/// rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_writes_are_in_its_append_only_audit_log() {
    let catalog = CatalogProcess::start().await.expect("catalog");
    let mum = shard("mum", &catalog).await;
    let (s, movie) = catalog_call(
        &catalog,
        reqwest::Method::POST,
        "/v1/operator/movies",
        Some(json!({"title": "Past Lives", "duration_minutes": 106, "language": "en"})),
    )
    .await;
    assert_eq!(s, 201, "{movie}");
    // A duplicate is refused and not recorded.
    let (s, _) = catalog_call(
        &catalog,
        reqwest::Method::POST,
        "/v1/operator/movies",
        Some(json!({"title": "past lives", "duration_minutes": 106, "language": "en"})),
    )
    .await;
    assert_eq!(s, 409);
    // mum schedules it: the shard lists the city for the title.
    let screen = screen(&mum, "mum").await;
    let (s, show) = mum
        .operator_post("/v1/operator/shows", show_body(&screen, &movie["id"], 2))
        .await
        .expect("show");
    assert_eq!(s, 201, "{show}");

    let (s, log) = catalog_call(&catalog, reqwest::Method::GET, "/v1/operator/audit", None).await;
    assert_eq!(s, 200, "{log}");
    let entries = log["entries"].as_array().expect("entries");
    let actions: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["listing.upsert", "movie.create"], "{log}");
    let created = &entries[1];
    assert_eq!(created["actor"], "operator-1", "{log}");
    assert_eq!(created["target_id"], movie["id"], "{log}");
    assert!(created["before"].is_null(), "{log}");
    assert_eq!(created["after"]["title"], "Past Lives", "{log}");
    assert!(created["city"].is_null(), "a title belongs to every city");
    let listed = &entries[0];
    assert_eq!(listed["city"], "mum", "{log}");
    assert!(listed["before"].is_null(), "the first listing: {log}");
    assert_eq!(listed["after"]["movie_id"], movie["id"], "{log}");

    // A reader of nyc sees the title but not mum's listing.
    let grant = shared::token::Grant::new(vec!["nyc".into()], vec![shared::token::Scope::Read])
        .expect("grant");
    let nyc_reader = region_core::auth::TokenKeys::new(e2e::SECRET)
        .mint_operator("nyc-reader", &grant, Utc::now().timestamp(), 600)
        .expect("token");
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/operator/audit", catalog.url))
        .bearer_auth(nyc_reader)
        .send()
        .await
        .expect("catalog answers");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    let actions: Vec<&str> = body["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["movie.create"], "{body}");
    // Bad queries change nothing and say why; buyers can't read it.
    for q in ["?limit=0", "?before=-1", "?colour=red"] {
        let (s, body) = catalog_call(
            &catalog,
            reqwest::Method::GET,
            &format!("/v1/operator/audit{q}"),
            None,
        )
        .await;
        assert!((400..500).contains(&s), "{q}: {s} {body}");
        assert!(
            body["error"]["code"].is_string() || body["code"].is_string(),
            "{q}: {body}"
        );
    }
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/operator/audit", catalog.url))
        .bearer_auth(e2e::token("fan", Role::User))
        .send()
        .await
        .expect("catalog answers");
    assert_eq!(resp.status(), 403);

    // Append-only, even to the database's owner going around the API.
    let db = sqlx::PgPool::connect(&catalog.database_url)
        .await
        .expect("catalog database");
    for sql in [
        "UPDATE catalog_operator_audit SET actor = 'someone-else'",
        "DELETE FROM catalog_operator_audit",
        "TRUNCATE catalog_operator_audit",
    ] {
        let err = sqlx::query(sql).execute(&db).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog_operator_audit")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(kept, 2);
    db.close().await;
    mum.stop().await;
}
