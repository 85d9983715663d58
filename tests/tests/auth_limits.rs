//! Issue 9.7 and 9.8 in the region core: failed authentications are
//! limited per client (429 with Retry-After), and the client is told apart
//! by `X-Forwarded-For` only when the hop that sent it is a trusted proxy,
//! so rotating a forged header does not escape the limit.

use e2e::{test_settings, user, TestApp};

const LIMIT: u32 = 5;

async fn bookings(
    app: &TestApp,
    token: &str,
    xff: &str,
) -> (u16, serde_json::Value, Option<String>) {
    let resp = app
        .http
        .get(format!("{}/v1/bookings", app.url))
        .bearer_auth(token)
        .header("X-Forwarded-For", xff)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    (status, resp.json().await.unwrap_or_default(), retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_limited_per_client_behind_a_trusted_proxy() {
    let mut settings = test_settings().await.expect("settings");
    settings.auth_failures_per_minute = LIMIT;
    // The test talks from 127.0.0.1, here the trusted proxy (the edge).
    settings.trusted_proxies = "127.0.0.1".into();
    let app = TestApp::spawn(settings).await.expect("app");
    for _ in 0..LIMIT {
        let (s, _, _) = bookings(&app, "not-a-token", "198.51.100.1").await;
        assert_eq!(s, 401);
    }
    let (s, body, retry) = bookings(&app, "not-a-token", "198.51.100.1").await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (429, Some("too_many_auth_failures")),
        "{body}"
    );
    assert!(
        retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s >= 1)),
        "Retry-After"
    );
    // Even a good token waits: the address is guessing.
    let (s, _, _) = bookings(&app, &user("alice"), "198.51.100.1").await;
    assert_eq!(s, 429);
    // Another client behind the same proxy is not affected.
    let (s, _, _) = bookings(&app, &user("bob"), "198.51.100.2").await;
    assert_eq!(s, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_forwarding_header_does_not_escape_the_limit() {
    let mut settings = test_settings().await.expect("settings");
    settings.auth_failures_per_minute = LIMIT;
    // 127.0.0.1 is not a trusted proxy here: its header is not believed.
    settings.trusted_proxies = "10.9.9.9".into();
    let app = TestApp::spawn(settings).await.expect("app");
    let mut statuses = Vec::new();
    for i in 0..(LIMIT + 3) {
        let (s, _, _) = bookings(&app, "not-a-token", &format!("203.0.113.{i}")).await;
        statuses.push(s);
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        3,
        "{statuses:?}"
    );
    app.stop().await;
}
