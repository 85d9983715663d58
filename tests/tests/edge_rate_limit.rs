//! Rate limiting at the edge (the built Worker in workerd, its state in
//! the real Redis through the Upstash gateway): per user and per IP,
//! independently; `429 rate_limited` with the `RateLimit-*` and
//! `Retry-After` headers; a refused client answered from the isolate's
//! memory without a Redis call; the deny list; and, with Upstash gone,
//! open routes still served and closed ones refused.

use e2e::edge::{Client, EdgeOptions, EdgeStack, Reply, SaleMode};
use redis::AsyncCommands;

const CITY: &str = "mum";

/// Catalog reads: a burst of 3 per user and 5 per IP, then one a minute.
/// A minute is far longer than the test, so no request regains a unit
/// and every count below is exact.
const USER_BURST: u64 = 3;
const IP_BURST: u64 = 5;
const PERIOD_S: u64 = 60;

fn limits() -> String {
    format!(
        r#"{{"catalog":{{"limit":1,"period_ms":{p},"burst":{USER_BURST},"ip":{{"limit":1,"period_ms":{p},"burst":{IP_BURST}}}}}}}"#,
        p = PERIOD_S * 1000
    )
}

/// Asserts a 429 with its headers, `burst` being the refusing limit's.
fn assert_limited(r: &Reply, burst: u64, what: &str) {
    assert_eq!(
        (r.status, r.code()),
        (429, Some("rate_limited")),
        "{what}: {r}"
    );
    assert_eq!(
        r.header_u64("RateLimit-Limit"),
        Some(burst),
        "{what}: RateLimit-Limit"
    );
    assert_eq!(
        r.header_u64("RateLimit-Remaining"),
        Some(0),
        "{what}: RateLimit-Remaining"
    );
    // A whole burst comes back after at most `burst` periods, the next
    // request after at most one.
    let reset = r.header_u64("RateLimit-Reset").expect("RateLimit-Reset");
    assert!(
        (1..=burst * PERIOD_S).contains(&reset),
        "{what}: RateLimit-Reset {reset}"
    );
    let retry = r.header_u64("Retry-After").expect("Retry-After");
    assert!(
        (1..=PERIOD_S).contains(&retry),
        "{what}: Retry-After {retry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_ips_are_limited_independently_and_a_refused_client_costs_no_redis_call() {
    // The directory and the edge controls are read once: the Redis calls
    // counted below are the limits' alone.
    let stack = EdgeStack::start(
        EdgeOptions::cities(&[CITY])
            .var("RATE_LIMITS", limits())
            .var("DIRECTORY_REFRESH_MS", "3600000")
            .var("CONTROLS_REFRESH_MS", "3600000"),
    )
    .await
    .expect("edge stack");
    let cities = "/v1/cities";

    // Per user: alice spends her burst; the IP (burst 5) has room left.
    let alice = Client::user("alice", "10.1.0.1");
    for k in 1..=USER_BURST {
        let r = stack.get(cities, &alice).await;
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.header_u64("RateLimit-Limit"), Some(USER_BURST));
        assert_eq!(r.header_u64("RateLimit-Remaining"), Some(USER_BURST - k));
    }
    let r = stack.get(cities, &alice).await;
    assert_limited(&r, USER_BURST, "alice over her limit");

    // Knocking again is answered from the isolate's memory: not one more
    // Redis command, and her limit follows her to another address.
    let (commands, trips) = (stack.gateway_commands(), stack.gateway_requests());
    for i in 0..20 {
        let r = stack.get(cities, &alice).await;
        assert_limited(&r, USER_BURST, "alice knocking");
        let elsewhere = Client::user("alice", &format!("10.1.1.{i}"));
        let r = stack.get(cities, &elsewhere).await;
        assert_limited(&r, USER_BURST, "alice from another IP");
    }
    assert_eq!(
        (stack.gateway_commands(), stack.gateway_requests()),
        (commands, trips),
        "a remembered refusal costs no Redis call"
    );

    // Another user on alice's IP is not limited by alice's user limit:
    // her refused requests spent nothing from the IP (3 of 5 used).
    let bob = Client::user("bob", "10.1.0.1");
    let r = stack.get(cities, &bob).await;
    assert_eq!(r.status, 200, "bob shares the IP, not the user limit: {r}");
    assert_eq!(
        r.header_u64("RateLimit-Remaining"),
        Some(IP_BURST - 4),
        "the IP is the closer limit now"
    );

    // Per IP: anonymous requests from one address spend its burst.
    let crowd = Client::anonymous("10.2.0.1");
    for _ in 0..IP_BURST {
        let r = stack.get(cities, &crowd).await;
        assert_eq!(r.status, 200, "{r}");
    }
    let r = stack.get(cities, &crowd).await;
    assert_limited(&r, IP_BURST, "the IP over its limit");
    // A fresh user behind that IP is refused by the IP's limit ...
    let carol = Client::user("carol", "10.2.0.1");
    assert_limited(
        &stack.get(cities, &carol).await,
        IP_BURST,
        "carol behind a limited IP",
    );
    // ... which spent nothing of hers: from another address she has her
    // whole burst. Another address is not limited by the first.
    let carol_away = Client::user("carol", "10.2.0.3");
    let r = stack.get(cities, &carol_away).await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header_u64("RateLimit-Remaining"), Some(USER_BURST - 1));
    let r = stack.get(cities, &Client::anonymous("10.2.0.2")).await;
    assert_eq!(r.status, 200, "{r}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deny_list_refuses_with_403_from_config_and_from_redis() {
    let stack = EdgeStack::start(
        EdgeOptions::cities(&[CITY]).var("DENY_LIST", "user:mallory, ip:203.0.113.9"),
    )
    .await
    .expect("edge stack");
    let show = stack
        .seed_show(CITY, 1, 4, SaleMode::Open)
        .await
        .expect("show");
    let proxy = &stack.region(CITY).proxy;
    let read = format!("/v1/c/{CITY}/shows/{show}");

    let mallory = Client::user("mallory", "10.3.0.1");
    let r = stack.get(&read, &mallory).await;
    assert_eq!((r.status, r.code()), (403, Some("denied")), "{r}");
    let r = stack.hold(CITY, &show, &mallory, &["A1"], None).await;
    assert_eq!((r.status, r.code()), (403, Some("denied")), "{r}");
    let r = stack.get(&read, &Client::anonymous("203.0.113.9")).await;
    assert_eq!((r.status, r.code()), (403, Some("denied")), "{r}");
    assert_eq!(proxy.total(), 0, "denied requests reach no region");

    // Added at run time to the Redis set: refused from the next request.
    let trudy = Client::user("trudy", "10.3.0.2");
    let shady = Client::anonymous("10.3.0.3");
    assert_eq!(stack.get(&read, &trudy).await.status, 200);
    assert_eq!(stack.get(&read, &shady).await.status, 200);
    let mut redis = stack.redis().await.expect("redis");
    let _: () = redis
        .sadd(stack.key("edge:deny"), &["user:trudy", "ip:10.3.0.3"])
        .await
        .expect("SADD");
    for who in [&trudy, &shady, &Client::user("trudy", "10.3.0.9")] {
        let r = stack.get(&read, who).await;
        assert_eq!((r.status, r.code()), (403, Some("denied")), "{who:?}: {r}");
    }
    let r = stack.hold(CITY, &show, &trudy, &["A1"], None).await;
    assert_eq!((r.status, r.code()), (403, Some("denied")), "{r}");
    assert_eq!(proxy.count("POST", &format!("/v1/shows/{show}/holds")), 0);
    // Others are unaffected.
    let r = stack
        .hold(
            CITY,
            &show,
            &Client::user("ursula", "10.3.0.4"),
            &["A1"],
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{r}");
    drop(redis);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_upstash_catalog_reads_fail_open_and_holds_fail_closed() {
    let mut stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 1, 4, SaleMode::Open)
        .await
        .expect("show");
    let dave = Client::user("dave", "10.4.0.1");
    let read = format!("/v1/c/{CITY}/shows/{show}");
    let r = stack.get(&read, &dave).await;
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.header("RateLimit-Limit").is_some(),
        "limited while Upstash answers"
    );

    stack.stop_gateway().await;
    let holds = format!("/v1/shows/{show}/holds");
    let before = stack.region(CITY).proxy.count("POST", &holds);

    // Catalog reads are `open`: served, unlimited (no headers), from the
    // cache or from the region.
    let erin = Client::user("erin", "10.4.0.2");
    for path in [read.clone(), format!("{read}/availability")] {
        let r = stack.get(&path, &erin).await;
        assert_eq!(r.status, 200, "{path}: {r}");
        assert_eq!(
            r.header("RateLimit-Limit"),
            None,
            "{path}: unlimited without Upstash"
        );
    }
    assert_eq!(
        stack
            .region(CITY)
            .proxy
            .count("GET", &format!("/v1/shows/{show}/availability")),
        1,
        "an uncached read went to the region"
    );

    // Holds are `closed`: refused at once, and not forwarded.
    for who in [&dave, &erin] {
        let r = stack.hold(CITY, &show, who, &["A1"], None).await;
        assert_eq!(
            (r.status, r.code()),
            (503, Some("edge_state_unavailable")),
            "{r}"
        );
        assert_eq!(r.header_u64("Retry-After"), Some(1), "{r}");
    }
    assert_eq!(stack.region(CITY).proxy.count("POST", &holds), before);
    assert_eq!(
        stack
            .region(CITY)
            .app()
            .count("SELECT count(*) FROM holds")
            .await,
        0
    );
    stack.stop().await;
}
