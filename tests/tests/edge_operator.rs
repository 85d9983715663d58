//! The operator's reads through the edge (issue 16): the built Worker in
//! workerd in front of a real region core. The sales report comes through
//! as the CSV file the region core wrote (type, file name and rows
//! intact), the audit log as JSON, and a token scoped to another city is
//! refused without the report leaking.

use e2e::edge::{Client, EdgeOptions, EdgeStack, SaleMode};
use e2e::SECRET;
use region_core::auth::{Grant, Scope, TokenKeys};

fn scoped(sub: &str, city: &str, ip: &str) -> Client {
    let grant = Grant::new(vec![city.to_owned()], vec![Scope::Read]).expect("grant");
    let token = TokenKeys::new(SECRET)
        .mint_operator(sub, &grant, chrono::Utc::now().timestamp(), 3600)
        .expect("token");
    Client {
        id: Some(sub.to_owned()),
        token: Some(token),
        ip: ip.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sales_report_downloads_as_csv_through_the_edge() {
    let stack = EdgeStack::start(EdgeOptions::cities(&["mum"]))
        .await
        .expect("edge stack");
    let show = stack
        .seed_show("mum", 1, 4, SaleMode::Open)
        .await
        .expect("show");
    let booking = stack
        .region("mum")
        .app()
        .buy("alice", &show, &["A1", "A2"])
        .await;
    assert!(booking["number"].is_string(), "{booking}");

    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Kolkata)
        .date_naive();
    let (from, to) = (
        today - chrono::Duration::days(1),
        today + chrono::Duration::days(1),
    );
    let path =
        format!("/v1/c/mum/operator/reports/sales?from={from}&to={to}&group=show&format=csv");
    let csv = stack.get(&path, &Client::operator()).await;
    assert_eq!(csv.status, 200, "{csv}");
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        csv.header("content-disposition"),
        Some(format!("attachment; filename=\"sales-show-{from}-{to}.csv\"").as_str())
    );
    let text = csv.body.as_str().expect("CSV text, not JSON").to_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("show_id,"), "header row: {text}");
    let row = lines
        .iter()
        .find(|l| l.starts_with(&show))
        .unwrap_or_else(|| panic!("the show's row in {text}"));
    // Two seats of 250.00 INR, confirmed.
    assert!(row.contains(",INR,") && row.contains(",50000,"), "{row}");

    // The same bytes as from the region core directly.
    let direct = stack
        .region("mum")
        .app()
        .http
        .get(format!(
            "{}/v1/operator/reports/sales?from={from}&to={to}&group=show&format=csv",
            stack.region("mum").app().url
        ))
        .bearer_auth(Client::operator().token.expect("token"))
        .send()
        .await
        .expect("direct")
        .text()
        .await
        .expect("text");
    assert_eq!(text, direct);

    // The audit log, as JSON, names who created the show.
    let audit = stack
        .get(
            &format!("/v1/c/mum/operator/audit?target_kind=show&target_id={show}"),
            &Client::operator(),
        )
        .await;
    assert_eq!(audit.status, 200, "{audit}");
    assert_eq!(audit.body["entries"][0]["action"], "show.create", "{audit}");

    // A token for another city gets a 403, and no report.
    let outsider = scoped("nyc-finance", "nyc", "10.250.0.7");
    let refused = stack
        .get(
            &format!("/v1/c/mum/operator/shows/{show}/occupancy"),
            &outsider,
        )
        .await;
    assert_eq!(refused.status, 403, "{refused}");
    assert_eq!(refused.code(), Some("city_forbidden"), "{refused}");
    let report = stack.get(&path, &outsider).await;
    let leaked = report.body.as_str().is_some_and(|t| t.contains(&show));
    assert!(!leaked, "another city's token read mum's sales: {report}");
}
