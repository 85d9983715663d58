//! Operator access (issue 16), end to end against real Postgres and Redis:
//! operator tokens reach only their cities and scopes, and every operator
//! write lands in the append-only audit log, in the write's own
//! transaction.
//!
//! Each test seeds its own cities with the platform's token (every city,
//! every scope) and then acts as scoped operators minted the way
//! `region-core mint-token --city … --scope …` mints them.

use chrono::Duration as Span;
use e2e::{operator_token as scoped, token, TestApp};
use region_core::auth::Scope;
use reqwest::Method;
use serde_json::{json, Value};
use shared::token::Role;

fn platform() -> String {
    token("platform", Role::Operator)
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    tok: &str,
    body: Option<Value>,
) -> (u16, Value) {
    app.send(method, path, Some(tok), body)
        .await
        .expect("request")
}

/// A city of its own for this test, and a show in it.
async fn city_with_show(app: &TestApp) -> (String, String) {
    let show = app.seed_show(1, 4, Span::days(3)).await.expect("show");
    (app.show_city(&show).await, show)
}

/// The show's venue and screen ids, from the audit log of its creation.
async fn audit_rows(app: &TestApp, tok: &str, query: &str) -> Vec<Value> {
    let (s, v) = send(
        app,
        Method::GET,
        &format!("/v1/operator/audit?{query}"),
        tok,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["entries"].as_array().expect("entries").clone()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_token_reaches_only_its_cities() {
    let app = TestApp::default().await.expect("app");
    let (mine, my_show) = city_with_show(&app).await;
    let (theirs, their_show) = city_with_show(&app).await;
    assert_ne!(mine, theirs);
    let booking = app.buy("alice", &their_show, &["A1"]).await;
    let number = booking["number"].as_str().expect("number");
    let op = scoped("mum-op", &[&mine], &Scope::ALL);

    // Writes in the other city: refused, and nothing is created.
    let (s, v) = send(
        &app,
        Method::POST,
        "/v1/operator/venues",
        &op,
        Some(json!({"city": theirs, "name": "Stolen Hall", "time_zone": "Asia/Kolkata"})),
    )
    .await;
    assert_eq!((s, code(&v)), (403, "city_forbidden"), "{v}");
    let venues: i64 = sqlx::query_scalar("SELECT count(*) FROM venues WHERE name = 'Stolen Hall'")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(venues, 0);
    let (s, v) = send(
        &app,
        Method::POST,
        "/v1/operator/cities",
        &op,
        Some(json!({"code": "zzqq", "name": "Elsewhere"})),
    )
    .await;
    assert_eq!((s, code(&v)), (403, "city_forbidden"), "{v}");

    // Reads of the other city's rows: refused; of its own: allowed.
    for path in [
        format!("/v1/operator/shows/{their_show}/occupancy"),
        format!("/v1/operator/shows/{their_show}/bookings"),
        format!("/v1/operator/bookings/{number}"),
    ] {
        let (s, v) = send(&app, Method::GET, &path, &op, None).await;
        assert_eq!((s, code(&v)), (403, "city_forbidden"), "{path}: {v}");
        let (s, v) = send(&app, Method::GET, &path, &platform(), None).await;
        assert_eq!(s, 200, "the platform's token reads {path}: {v}");
    }
    let (s, v) = send(
        &app,
        Method::GET,
        &format!("/v1/operator/shows/{my_show}/occupancy"),
        &op,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // Shard-wide reads are limited to the token's cities.
    let today = chrono::Utc::now().date_naive();
    let sales = format!(
        "/v1/operator/reports/sales?from={}&to={}&group=show",
        today - Span::days(1),
        today + Span::days(1)
    );
    let shows_in = |v: &Value| -> Vec<String> {
        v["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .map(|l| l["show_id"].as_str().expect("show_id").to_owned())
            .collect()
    };
    let (_, all) = send(&app, Method::GET, &sales, &platform(), None).await;
    assert_eq!(shows_in(&all), std::slice::from_ref(&their_show), "{all}");
    let (s, only_mine) = send(&app, Method::GET, &sales, &op, None).await;
    assert_eq!(s, 200, "{only_mine}");
    assert!(shows_in(&only_mine).is_empty(), "{only_mine}");

    // The reconciliation repairs a whole shard: a one-city token on a
    // two-city shard may not start it.
    let (s, v) = send(&app, Method::POST, "/v1/operator/reconcile", &op, None).await;
    assert_eq!((s, code(&v)), (403, "city_forbidden"), "{v}");
}

#[tokio::test]
async fn a_token_does_only_what_its_scopes_allow() {
    let app = TestApp::default().await.expect("app");
    let (city, show) = city_with_show(&app).await;
    let venue = json!({"city": city, "name": "Scoped Hall", "time_zone": "Asia/Kolkata"});
    let cases: [(&[Scope], u16); 5] = [
        (&[Scope::Read], 403),
        (&[Scope::Refunds], 403),
        (&[Scope::Sales], 403),
        (&[Scope::Read, Scope::Refunds], 403),
        (&[Scope::Catalog], 201),
    ];
    for (i, (scopes, want)) in cases.into_iter().enumerate() {
        let tok = scoped(&format!("op-{i}"), &[&city], scopes);
        let mut body = venue.clone();
        body["name"] = json!(format!("Scoped Hall {i}"));
        let (s, v) = send(&app, Method::POST, "/v1/operator/venues", &tok, Some(body)).await;
        assert_eq!(s, want, "{scopes:?}: {v}");
        if want == 403 {
            assert_eq!(code(&v), "scope_forbidden", "{v}");
        }
        // Every scope reads.
        let (s, v) = send(
            &app,
            Method::GET,
            &format!("/v1/operator/shows/{show}/occupancy"),
            &tok,
            None,
        )
        .await;
        assert_eq!(s, 200, "{scopes:?} reads: {v}");
    }
    // Refund actions need the refunds scope (checked before the refund is
    // looked up: the id need not exist).
    let retry = format!("/v1/operator/refunds/{}/retry", uuid::Uuid::now_v7());
    let catalog = scoped("cat", &[&city], &[Scope::Catalog]);
    let (s, v) = send(&app, Method::POST, &retry, &catalog, None).await;
    assert_eq!((s, code(&v)), (403, "scope_forbidden"), "{v}");
    let refunds = scoped("ref", &[&city], &[Scope::Refunds]);
    let (s, v) = send(&app, Method::POST, &retry, &refunds, None).await;
    assert_eq!((s, code(&v)), (404, "unknown_refund"), "{v}");
    // A buyer's and a door staff's tokens are not operators at all.
    for role in [Role::User, Role::Staff] {
        let (s, v) = send(
            &app,
            Method::GET,
            "/v1/operator/audit",
            &token("x", role),
            None,
        )
        .await;
        assert_eq!(s, 403, "{role:?}: {v}");
    }
}

#[tokio::test]
async fn every_operator_write_is_in_the_audit_log() {
    let app = TestApp::default().await.expect("app");
    let (city, show) = city_with_show(&app).await;
    let reader = scoped("auditor", &[&city], &[Scope::Read]);

    // Seeding wrote the city, venue, screen, movie and show, each once,
    // with who and the row after.
    let rows = audit_rows(&app, &reader, "limit=500").await;
    let actions: Vec<&str> = rows
        .iter()
        .rev()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "city.create",
            "venue.create",
            "screen.create",
            "movie.create",
            "show.create"
        ],
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["actor"] == "operator-1"), "{rows:?}");
    let show_row = &audit_rows(&app, &reader, &format!("target_kind=show&target_id={show}")).await;
    assert_eq!(show_row.len(), 1, "{show_row:?}");
    assert_eq!(show_row[0]["city"], city.as_str());
    assert!(show_row[0]["before"].is_null());
    assert_eq!(show_row[0]["after"]["currency"], "INR", "{show_row:?}");

    // A write that fails leaves no row: the record is in its transaction.
    let op = scoped("writer", &[&city], &[Scope::Catalog]);
    let body = json!({"city": city, "name": "Audit Hall", "time_zone": "Asia/Kolkata"});
    let (s, v) = send(
        &app,
        Method::POST,
        "/v1/operator/venues",
        &op,
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = send(&app, Method::POST, "/v1/operator/venues", &op, Some(body)).await;
    assert_eq!(s, 409, "{v}");
    let mine = audit_rows(&app, &reader, "actor=writer").await;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["action"], "venue.create");
    assert_eq!(mine[0]["after"]["name"], "Audit Hall");

    // Another city's reader sees none of this city's rows (movies, which
    // every city shares, it does see).
    let (other, _) = city_with_show(&app).await;
    let outsider = scoped("outsider", &[&other], &[Scope::Read]);
    let seen = audit_rows(&app, &outsider, "limit=500").await;
    assert!(
        seen.iter()
            .all(|r| r["city"] == other.as_str() || r["city"].is_null()),
        "{seen:?}"
    );
    assert!(seen.iter().any(|r| r["action"] == "movie.create"));

    // Pages: newest first, `next` continues where the page ended.
    let (_, first) = send(
        &app,
        Method::GET,
        "/v1/operator/audit?limit=2",
        &platform(),
        None,
    )
    .await;
    let next = first["next"].as_i64().expect("next");
    let (_, second) = send(
        &app,
        Method::GET,
        &format!("/v1/operator/audit?limit=2&before={next}"),
        &platform(),
        None,
    )
    .await;
    let ids = |v: &Value| -> Vec<i64> {
        v["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["id"].as_i64().expect("id"))
            .collect()
    };
    let (a, b) = (ids(&first), ids(&second));
    assert!(
        a[0] > a[1] && a[1] > b[0] && b[0] > b[1],
        "{a:?} then {b:?}"
    );

    // Bad filters are 4xx and name the problem.
    for (q, want) in [
        ("limit=0", "invalid_limit"),
        ("limit=501", "invalid_limit"),
        ("before=-3", "invalid_cursor"),
        ("target_id=x", "invalid_filter"),
        ("colour=red", "bad_query"),
    ] {
        let (s, v) = send(
            &app,
            Method::GET,
            &format!("/v1/operator/audit?{q}"),
            &platform(),
            None,
        )
        .await;
        assert!((400..500).contains(&s), "{q}: {s} {v}");
        assert_eq!(code(&v), want, "{q}: {v}");
    }
}

#[tokio::test]
async fn the_audit_log_cannot_be_rewritten() {
    let app = TestApp::default().await.expect("app");
    city_with_show(&app).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM operator_audit")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert!(before >= 5);
    for sql in [
        "UPDATE operator_audit SET actor = 'someone-else'",
        "DELETE FROM operator_audit",
        "TRUNCATE operator_audit",
    ] {
        let err = sqlx::query(sql).execute(&app.db).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let after: Vec<String> = sqlx::query_scalar("SELECT DISTINCT actor FROM operator_audit")
        .fetch_all(&app.db)
        .await
        .expect("actors");
    assert_eq!(after, ["operator-1"]);
    // Appending still works: the table is not simply read-only.
    sqlx::query(
        "INSERT INTO operator_audit (actor, action, target_kind, target_id) \
         VALUES ('dba', 'note.add', 'note', 'n1')",
    )
    .execute(&app.db)
    .await
    .expect("append");
}
