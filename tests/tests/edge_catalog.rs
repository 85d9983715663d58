//! The global catalog through the edge (the built Worker in workerd): a
//! title created once at the edge is what two cities' shows refer to; the
//! edge caches titles and searches (a cached title outlives the catalog
//! going down); bad ids are refused before anything is asked.

use e2e::edge::{Client, EdgeOptions, EdgeStack, Reply};
use serde_json::json;

/// A page's HTML.
fn html(r: &Reply) -> &str {
    r.body.as_str().unwrap_or_default()
}

fn cache_status(r: &Reply) -> &str {
    r.header("X-Edge-Cache").unwrap_or("-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_are_global_cached_and_searchable_at_the_edge() {
    let mut stack = EdgeStack::start(EdgeOptions::cities(&["mum", "nyc"]).catalog())
        .await
        .expect("edge stack");
    let op = Client::operator();
    let fan = Client::anonymous("10.9.0.1");

    let made = stack
        .post(
            "/v1/operator/movies",
            &op,
            json!({"title": "Interstellar", "duration_minutes": 169, "language": "en"}),
        )
        .await;
    assert_eq!(made.status, 201, "{made}");
    let id = made.body["id"].as_str().expect("id").to_owned();

    // Each city schedules it by the one id.
    for city in ["mum", "nyc"] {
        let venue = stack
            .post(
                &format!("/v1/c/{city}/operator/venues"),
                &op,
                json!({"city": city, "name": "Venue", "time_zone": "Asia/Kolkata"}),
            )
            .await;
        assert_eq!(venue.status, 201, "{venue}");
        let screen = stack
            .post(
                &format!("/v1/c/{city}/operator/screens"),
                &op,
                json!({"venue_id": venue.body["id"], "name": "1", "rows": [{"row": "A", "seats": 4, "category": "REGULAR"}]}),
            )
            .await;
        assert_eq!(screen.status, 201, "{screen}");
        let show = stack
            .post(
                &format!("/v1/c/{city}/operator/shows"),
                &op,
                json!({"screen_id": screen.body["id"], "movie_id": id,
                       "starts_at": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339(),
                       "prices": {"REGULAR": 30_000}, "currency": "INR"}),
            )
            .await;
        assert_eq!(show.status, 201, "{city}: {show}");
        let read = stack
            .get(
                &format!(
                    "/v1/c/{city}/shows/{}",
                    show.body["id"].as_str().expect("id")
                ),
                &fan,
            )
            .await;
        assert_eq!(read.body["movie_id"], id.as_str(), "{read}");
    }

    // The title: fetched once, then from the edge's cache.
    let first = stack.get(&format!("/v1/movies/{id}"), &fan).await;
    assert_eq!(
        (first.status, cache_status(&first)),
        (200, "MISS"),
        "{first}"
    );
    assert_eq!(first.body["title"], "Interstellar");
    let again = stack.get(&format!("/v1/movies/{id}"), &fan).await;
    assert_eq!(
        (again.status, cache_status(&again)),
        (200, "HIT"),
        "{again}"
    );

    // Search across cities, misspelt.
    let found = stack.get("/v1/search?q=interstelar", &fan).await;
    assert_eq!(found.status, 200, "{found}");
    assert_eq!(found.body["hits"][0]["movie"]["id"], id.as_str());
    assert_eq!(found.body["hits"][0]["cities"], json!(["mum", "nyc"]));

    // The buyer's pages: a search box on the home page, and the results
    // with links to the cities that show the title.
    let home = stack.get("/", &fan).await;
    assert!(html(&home).contains("action=\"/search\""), "{home}");
    let page = stack.get("/search?q=Interstelar", &fan).await;
    assert_eq!(page.status, 200, "{page}");
    assert!(html(&page).contains("<h3>Interstellar</h3>"), "{page}");
    assert!(
        html(&page).contains("<a href=\"/c/mum\">City mum</a>"),
        "{page}"
    );
    let nothing = stack.get("/search?q=qqqqzzzz", &fan).await;
    assert!(html(&nothing).contains("Nothing found"), "{nothing}");

    // A title created through a city's route is in the next search at
    // once, although the search before it was cached empty.
    let before = stack.get("/v1/search?q=oppenheimer", &fan).await;
    assert_eq!(before.body["hits"], json!([]), "{before}");
    let made = stack
        .post(
            "/v1/c/nyc/operator/movies",
            &op,
            json!({"title": "Oppenheimer", "duration_minutes": 180, "language": "en"}),
        )
        .await;
    assert_eq!(made.status, 201, "{made}");
    let after = stack.get("/v1/search?q=oppenheimer", &fan).await;
    assert_eq!(
        after.body["hits"][0]["movie"]["title"], "Oppenheimer",
        "{after}"
    );
    // The catalog's cached titles were renewed too; read again, the title
    // is cached under the new version.
    let renewed = stack.get(&format!("/v1/movies/{id}"), &fan).await;
    assert_eq!(
        (renewed.status, cache_status(&renewed)),
        (200, "MISS"),
        "{renewed}"
    );

    // Bad input: refused at the edge or by the catalog, as JSON.
    let bad = stack.get("/v1/movies/not-a-uuid", &fan).await;
    assert_eq!((bad.status, bad.code()), (400, Some("invalid_movie_id")));
    let empty = stack.get("/v1/search?q=", &fan).await;
    assert_eq!((empty.status, empty.code()), (400, Some("invalid_query")));
    let anonymous = stack
        .post(
            "/v1/operator/movies",
            &fan,
            json!({"title": "X", "duration_minutes": 90}),
        )
        .await;
    assert_eq!(anonymous.status, 401, "{anonymous}");

    // The catalog goes down: the cached title is still served; an uncached
    // search is a 503 with Retry-After, not a hang or a 500.
    stack.catalog.as_mut().expect("catalog").kill().await;
    let cached = stack.get(&format!("/v1/movies/{id}"), &fan).await;
    assert_eq!(cached.status, 200, "{cached}");
    let down = stack.get("/v1/search?q=dune", &fan).await;
    assert_eq!(down.status, 503, "{down}");
    assert!(down.header("Retry-After").is_some(), "{down}");
    stack.stop().await;
}
