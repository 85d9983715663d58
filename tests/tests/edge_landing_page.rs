//! The flash-sale landing page, served by the built Worker in workerd to
//! a browser without JavaScript: the token comes from a cookie, joining is
//! a plain form POST answered with 303 back to the page, the page
//! refreshes itself and announces its status in an `aria-live` region;
//! the JSON status of the same user tells the same story.

use e2e::edge::{now_ms, Client, EdgeOptions, EdgeStack, SaleMode, SaleSettings};

const CITY: &str = "mum";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_without_javascript_can_join_and_follow_the_queue() {
    let stack = EdgeStack::start(EdgeOptions::cities(&[CITY]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show(CITY, 1, 5, SaleMode::FlashSale)
        .await
        .expect("show");
    let sale = SaleSettings {
        city: CITY.into(),
        opens_at_ms: now_ms() + 3_600_000,
        rate_per_sec: 10.0,
        pass_ttl_s: 300,
        grace_s: 60,
    };
    let r = stack.put_sale(&show, &sale).await;
    assert_eq!(r.status, 200, "{r}");
    // The sale's settings expire with the room (nothing lives forever).
    let mut redis = stack.redis().await.expect("redis");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(stack.key(&format!("wr:{{{show}}}:cfg")))
        .query_async(&mut redis)
        .await
        .expect("pttl");
    assert!(pttl > 0, "the sale settings expire: PTTL {pttl}");

    let ann = Client::user("ann", "10.7.0.1");
    let cookie = format!("token={}", ann.token.as_deref().expect("token"));
    // A browser: no Authorization header, the token in a cookie, and it
    // must see the 303 itself (no redirect following here).
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page_url = format!("{}/c/{CITY}/sales/{show}", stack.url);
    let page = |c: &reqwest::Client| {
        c.get(&page_url)
            .header("Cookie", &cookie)
            .header("CF-Connecting-IP", &ann.ip)
            .header("Accept", "text/html")
            .send()
    };

    let before = page(&browser).await.expect("page");
    assert_eq!(before.status().as_u16(), 200);
    let ctype = before.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ctype.starts_with("text/html"), "{ctype}");
    let html = before.text().await.unwrap();
    assert!(html.contains("<html lang=\"en\">"), "{html}");
    assert!(html.contains("aria-live=\"polite\""), "{html}");
    assert!(
        html.contains(&format!(
            "<form method=\"post\" action=\"/c/{CITY}/sales/{show}/join\">"
        )),
        "a user who has not joined gets a join form that needs no script: {html}"
    );

    // The form's CSRF token, as a browser would submit it.
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the join form carries a CSRF token")
        .to_owned();
    let join = |body: String, origin: Option<String>| {
        let mut req = browser
            .post(format!("{page_url}/join"))
            .header("Cookie", &cookie)
            .header("CF-Connecting-IP", &ann.ip)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        req.send()
    };
    // Issue 9.9: a cross-site post (no token, a wrong one, another
    // origin, no Origin) is refused and joins nobody.
    for (body, origin) in [
        (String::new(), Some(stack.url.clone())),
        ("csrf=forged".to_owned(), Some(stack.url.clone())),
        (
            format!("csrf={csrf}"),
            Some("https://evil.example".to_owned()),
        ),
        (format!("csrf={csrf}"), None),
    ] {
        let r = join(body.clone(), origin.clone()).await.expect("join");
        assert_eq!(r.status().as_u16(), 403, "{body} from {origin:?}");
        // A browser route answers with a page that says what happened.
        let text = r.text().await.expect("page");
        assert!(text.contains("not sent from our page"), "{text}");
    }
    let still_out = page(&browser).await.expect("page").text().await.unwrap();
    assert!(
        still_out.contains("Join the queue"),
        "nobody joined: {still_out}"
    );

    let joined = join(format!("csrf={csrf}"), Some(stack.url.clone()))
        .await
        .expect("join");
    assert_eq!(joined.status().as_u16(), 303);
    assert_eq!(
        joined.headers()["location"].to_str().unwrap(),
        format!("/c/{CITY}/sales/{show}")
    );

    let after = page(&browser).await.expect("page").text().await.unwrap();
    assert!(
        after.contains("<meta http-equiv=\"refresh\""),
        "a waiting user's page refreshes itself: {after}"
    );
    assert!(
        !after.contains("/join\""),
        "no second join form while in line: {after}"
    );

    // The same user through the JSON API: in the pre-queue, the draw's
    // commitment published, the seed not yet.
    let status = stack
        .get(&format!("/v1/c/{CITY}/sales/{show}/status"), &ann)
        .await;
    assert_eq!(status.status, 200, "{status}");
    assert_eq!(status.body["state"], "pre_queue", "{status}");
    assert!(status.body["seed_commitment"].is_string(), "{status}");
    assert!(status.body["seed"].is_null(), "{status}");

    // Without a token the page asks the browser to sign in, not a 500.
    let anon = browser
        .get(&page_url)
        .header("CF-Connecting-IP", "10.7.0.2")
        .send()
        .await
        .expect("page");
    assert!(
        (400..500).contains(&anon.status().as_u16()),
        "{}",
        anon.status()
    );
    stack.stop().await;
}
