//! Cached catalog reads at the edge (the built Worker in workerd): a read
//! served twice reaches the region core once; an operator change made
//! through the edge invalidates the city's copies at once; a show the
//! edge has seen sold out gets `409 sold_out` without reaching the region.

use e2e::edge::{Client, EdgeOptions, EdgeStack, Reply, SaleMode};
use serde_json::json;

const CITY: &str = "mum";

fn cache_status(r: &Reply) -> &str {
    r.header("X-Edge-Cache").unwrap_or("-")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_reads_reach_the_region_once_until_an_operator_change() {
    // TTLs longer than the test, so what is checked is the invalidation,
    // not the clock (availability's default is 2 s).
    let ttls = r#"{"cities":300,"shows":300,"show":300,"availability":300,"seats":300}"#;
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]).var("CACHE_TTLS", ttls))
        .await
        .expect("edge stack");
    let proxy = &stack.region(CITY).proxy;
    let show = stack
        .seed_show(CITY, 2, 5, SaleMode::Open)
        .await
        .expect("show");
    let alice = Client::user("alice", "10.1.0.1");
    let anon = Client::anonymous("10.1.0.2");

    let first = stack
        .get(&format!("/v1/c/{CITY}/shows/{show}"), &alice)
        .await;
    assert_eq!(
        (first.status, cache_status(&first)),
        (200, "MISS"),
        "{first}"
    );
    let date = first.body["local_date"]
        .as_str()
        .expect("local date")
        .to_owned();
    let reads = [
        format!("/v1/c/{CITY}/shows/{show}"),
        format!("/v1/c/{CITY}/shows/{show}/availability"),
        format!("/v1/cities/{CITY}/shows?date={date}"),
        "/v1/cities".to_owned(),
    ];
    let upstream = [
        format!("/v1/shows/{show}"),
        format!("/v1/shows/{show}/availability"),
        format!("/v1/cities/{CITY}/shows"),
        "/v1/cities".to_owned(),
    ];
    // Twice each (the show once more), by two clients: the cache is the
    // location's, not a client's.
    for (i, (read, up)) in reads.iter().zip(&upstream).enumerate() {
        for (j, who) in [&alice, &anon].into_iter().enumerate() {
            let r = stack.get(read, who).await;
            assert_eq!(r.status, 200, "{read}: {r}");
            let expect = if i == 0 || j == 1 { "HIT" } else { "MISS" };
            assert_eq!(cache_status(&r), expect, "{read}");
            if expect == "HIT" {
                assert!(r.header("Age").is_some(), "a cached copy says its age");
            }
        }
        assert_eq!(proxy.count("GET", up), 1, "{read} reached the region once");
    }
    let listed = stack.get(&reads[2], &alice).await;
    assert_eq!(cache_status(&listed), "HIT");
    assert_eq!(listed.body["shows"].as_array().map(Vec::len), Some(1));

    // The operator adds a show on the same screen and day, through the
    // edge: the city's cached reads and the city list are stale at once.
    // Six hours from the first show, on the same local day, whatever the
    // time the test runs (shows on one screen must not overlap).
    let first_local: chrono::DateTime<chrono::FixedOffset> = first.body["starts_at_local"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .expect("starts_at_local is RFC 3339");
    let shift = if first_local.time() < chrono::NaiveTime::from_hms_opt(12, 0, 0).unwrap() {
        chrono::Duration::hours(6)
    } else {
        chrono::Duration::hours(-6)
    };
    let starts = (first_local + shift).to_rfc3339();
    let r = stack
        .post(
            &format!("/v1/c/{CITY}/operator/shows"),
            &Client::operator(),
            json!({
                "screen_id": first.body["screen_id"], "movie_id": first.body["movie_id"],
                "starts_at": starts, "prices": {"REGULAR": 30000}, "currency": "INR",
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{r}");
    assert_eq!(proxy.count("POST", "/v1/operator/shows"), 1);
    let listed = stack.get(&reads[2], &alice).await;
    assert_eq!(
        (listed.status, cache_status(&listed)),
        (200, "MISS"),
        "{listed}"
    );
    assert_eq!(
        listed.body["shows"].as_array().map(Vec::len),
        Some(2),
        "the new show is listed at once: {listed}"
    );
    for (i, (read, up)) in reads.iter().zip(&upstream).enumerate() {
        let r = stack.get(read, &anon).await;
        assert_eq!(r.status, 200, "{read}: {r}");
        // The listing was read again just above.
        let expect = if i == 2 { "HIT" } else { "MISS" };
        assert_eq!(cache_status(&r), expect, "{read} after the change");
        let again = stack.get(read, &alice).await;
        assert_eq!(cache_status(&again), "HIT", "{read} is cached again");
        assert_eq!(
            proxy.count("GET", up),
            2,
            "{read}: one more region read after the change"
        );
    }
    // A failed operator write changes nothing, so it invalidates nothing.
    let r = stack
        .post(
            &format!("/v1/c/{CITY}/operator/cities"),
            &Client::operator(),
            json!({"code": CITY, "name": "Again"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, Some("city_exists")), "{r}");
    let r = stack.get(&reads[0], &alice).await;
    assert_eq!(cache_status(&r), "HIT");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_show_seen_sold_out_is_refused_at_the_edge() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let proxy = &stack.region(CITY).proxy;
    let show = stack
        .seed_show(CITY, 1, 2, SaleMode::Open)
        .await
        .expect("show");
    let alice = Client::user("alice", "10.2.0.1");
    let bob = Client::user("bob", "10.2.0.2");
    let holds = format!("/v1/shows/{show}/holds");

    // Every seat is booked, through the edge.
    let hold = stack.hold(CITY, &show, &alice, &["A1", "A2"], None).await;
    assert_eq!(hold.status, 201, "{hold}");
    let paid = stack
        .checkout(
            CITY,
            hold.body["hold_id"].as_str().expect("hold id"),
            &alice,
        )
        .await;
    assert_eq!(paid.status, 201, "{paid}");

    let before = stack
        .get(&format!("/v1/c/{CITY}/shows/{show}/availability"), &bob)
        .await;
    assert_eq!(before.status, 200, "{before}");
    assert_eq!(before.body["available"], 0, "{before}");

    let (holds_before, total_before) = (proxy.count("POST", &holds), proxy.total());
    assert_eq!(holds_before, 1);
    for seat in ["A1", "A2"] {
        let r = stack.hold(CITY, &show, &bob, &[seat], None).await;
        assert_eq!((r.status, r.code()), (409, Some("sold_out")), "{r}");
    }
    assert_eq!(
        proxy.count("POST", &holds),
        holds_before,
        "sold out: no hold reached the region"
    );
    assert_eq!(proxy.total(), total_before, "nothing reached the region");
    assert_eq!(
        stack
            .region(CITY)
            .app()
            .count("SELECT count(*) FROM holds")
            .await,
        1
    );
    stack.stop().await;
}

/// A catalog write sent to the region core directly (not through the
/// edge) invalidates the edge's cached reads too: the region core bumps
/// the edge's catalog version in Upstash (`REGION_EDGE_UPSTASH_URL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_sent_to_the_region_directly_invalidates_the_edge_cache() {
    let ttls = r#"{"cities":300,"shows":300,"show":300,"availability":300,"seats":300}"#;
    let stack = EdgeStack::start(
        EdgeOptions::cities(&[CITY])
            .var("CACHE_TTLS", ttls)
            .region_bumps_edge(),
    )
    .await
    .expect("edge stack");
    let show = stack
        .seed_show(CITY, 1, 5, SaleMode::Open)
        .await
        .expect("show");
    let alice = Client::user("alice", "10.1.0.1");
    let read = format!("/v1/c/{CITY}/shows/{show}");
    let first = stack.get(&read, &alice).await;
    assert_eq!(
        (first.status, cache_status(&first)),
        (200, "MISS"),
        "{first}"
    );
    let again = stack.get(&read, &alice).await;
    assert_eq!(cache_status(&again), "HIT");
    let old = again.body["prices"].clone();

    let region = stack.region(CITY).app();
    let (s, b) = region
        .send(
            reqwest::Method::PUT,
            &format!("/v1/operator/shows/{show}/prices"),
            Some(&e2e::token("operator-1", shared::token::Role::Operator)),
            Some(json!({"prices": {"REGULAR": 12_345}})),
        )
        .await
        .expect("direct write");
    assert_eq!(s, 200, "{b}");
    let after = stack.get(&read, &alice).await;
    assert_eq!(
        (after.status, cache_status(&after)),
        (200, "MISS"),
        "the edge's copy is stale at once: {after}"
    );
    assert_eq!(after.body["prices"], json!({"REGULAR": 12_345}));
    assert_ne!(after.body["prices"], old);
    stack.stop().await;
}
