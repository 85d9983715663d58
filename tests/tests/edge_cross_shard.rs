//! Lookups that do not name a city, through the built Worker in workerd
//! with two shards (each city its own region core and database): a
//! booking is found from its number or its id alone, `GET
//! /v1/me/bookings` merges the caller's bookings from every shard, and a
//! shard that is down makes the list partial instead of failing it.

use e2e::edge::{Client, EdgeOptions, EdgeStack, SaleMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_are_found_without_naming_a_city() {
    let mut stack = EdgeStack::start(EdgeOptions::cities(&["mum", "nyc"]))
        .await
        .expect("edge stack");
    let buyer = Client::user("globetrotter", "10.8.0.1");
    let mut bought = Vec::new();
    for city in ["mum", "nyc"] {
        let show = stack
            .seed_show(city, 2, 10, SaleMode::Open)
            .await
            .expect("show");
        let hold = stack.hold(city, &show, &buyer, &["A1"], None).await;
        assert_eq!(hold.status, 201, "{}", hold.body);
        let hold_id = hold.body["hold_id"].as_str().expect("hold id").to_owned();
        let paid = stack.checkout(city, &hold_id, &buyer).await;
        assert_eq!(paid.status, 201, "{}", paid.body);
        let booking = &paid.body;
        bought.push((
            city,
            booking["id"].as_str().expect("booking id").to_owned(),
            booking["number"]
                .as_str()
                .expect("booking number")
                .to_owned(),
        ));
    }

    // By number and by id, the city unnamed: the shard that has it answers.
    for (city, id, number) in &bought {
        for reference in [number, id] {
            let r = stack
                .get(&format!("/v1/bookings/{reference}"), &buyer)
                .await;
            assert_eq!(r.status, 200, "{reference}: {}", r.body);
            assert_eq!(r.body["number"].as_str(), Some(number.as_str()));
            assert_eq!(r.header("x-booking-city"), Some(*city));
        }
    }
    // Someone else's booking is nobody's business.
    let stranger = Client::user("stranger", "10.8.0.2");
    let r = stack
        .get(&format!("/v1/bookings/{}", bought[1].2), &stranger)
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.code(), Some("unknown_booking"));
    // A malformed reference is refused at the edge.
    let r = stack.get("/v1/bookings/not-a-booking", &buyer).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.code(), Some("invalid_booking_reference"));

    // Every shard's bookings in one list, each with its city.
    let r = stack.get("/v1/me/bookings", &buyer).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["partial"], false);
    let cities: Vec<&str> = r.body["bookings"]
        .as_array()
        .expect("bookings")
        .iter()
        .filter_map(|b| b["city"].as_str())
        .collect();
    assert_eq!(cities.len(), 2, "{}", r.body);
    assert!(cities.contains(&"mum") && cities.contains(&"nyc"));

    // mum's shard goes down: the list is partial, not an error, and a
    // lookup that cannot be ruled out says so with Retry-After.
    stack.stop_region("mum").await;
    let r = stack.get("/v1/me/bookings", &buyer).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["partial"], true);
    assert_eq!(r.body["unavailable_cities"], serde_json::json!(["mum"]));
    assert_eq!(r.body["bookings"].as_array().map(Vec::len), Some(1));
    assert_eq!(r.body["bookings"][0]["city"], "nyc");
    let r = stack
        .get(&format!("/v1/bookings/{}", bought[0].2), &buyer)
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    // nyc's booking is still found.
    let r = stack
        .get(&format!("/v1/bookings/{}", bought[1].2), &buyer)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    stack.stop().await;
}
