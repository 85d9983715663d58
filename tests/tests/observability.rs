//! The monitoring kit (`deploy/monitoring/`) against a real region core:
//! after a little real traffic (holds, a conflict, a booking, a declined
//! charge, a cancellation with its refund, an unknown route), `/metrics`
//! must export every series the dashboard's queries and the rules' PromQL
//! read, and the request histogram must carry route templates and status
//! classes, never raw ids.
//!
//! The PromQL is read loosely ([`series_names`]): the identifiers that
//! name series, after string literals, label matchers, ranges and the
//! label lists of `by`/`on`/… are taken out, and without functions,
//! aggregations and keywords. Names with a `:` are recording rules and
//! must be recorded by rules.yml; `up` is Prometheus' own.

use e2e::{eventually, money, user, TestApp};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

fn monitoring_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/monitoring")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Words of PromQL that name no series: aggregations, keywords, and the
/// label modifiers (whose label lists [`strip_label_lists`] removes).
const NOT_SERIES: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// The label modifiers followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Skips a string literal whose opening `quote` was just read.
fn skip_string(chars: &mut std::str::Chars<'_>, quote: char) {
    let mut escaped = false;
    for d in chars.by_ref() {
        if escaped {
            escaped = false;
        } else if d == '\\' {
            escaped = true;
        } else if d == quote {
            return;
        }
    }
}

/// `expr` without string literals, `{…}` matchers and `[…]` ranges (each
/// replaced by a space; a `}` or `]` inside a matcher's string is text).
fn strip_literals(expr: &str) -> String {
    let mut out = String::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                skip_string(&mut chars, c);
                out.push(' ');
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while let Some(d) = chars.next() {
                    match d {
                        '"' | '\'' | '`' => skip_string(&mut chars, d),
                        _ if d == close => break,
                        _ => {}
                    }
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The series names `expr` reads.
fn series_names(expr: &str) -> BTreeSet<String> {
    let s = strip_literals(expr);
    let chars: Vec<char> = s.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' || c.is_ascii_digit() || c == '.' {
            // A Grafana variable, a number or a duration: skip the word.
            i += 1;
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        if !is_ident_start(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut next = i;
        while next < chars.len() && chars[next].is_whitespace() {
            next += 1;
        }
        let call = chars.get(next) == Some(&'(');
        if LABEL_LISTS.contains(&word.as_str()) && call {
            // `by (city, le)`: label names, not series.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            continue;
        }
        if call || NOT_SERIES.contains(&word.as_str()) {
            continue;
        }
        names.insert(word);
    }
    names
}

/// The PromQL of a rule file's `expr:` fields (one line, or a `|` block).
/// A line-based reading of the file we write, not a YAML parser.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let Some(at) = line.find("expr:") else {
            continue;
        };
        if line.trim_start().starts_with('#') {
            continue;
        }
        let value = line[at + "expr:".len()..].trim();
        if value != "|" && value != ">" {
            exprs.push(value.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut block = String::new();
        while i < lines.len() {
            let l = lines[i];
            let deeper = l.len() - l.trim_start().len() > indent;
            if !l.trim().is_empty() && !deeper {
                break;
            }
            block.push_str(l.trim());
            block.push('\n');
            i += 1;
        }
        exprs.push(block);
    }
    exprs
}

/// The names rules.yml records.
fn recorded_names(yaml: &str) -> BTreeSet<String> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("- record:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Every `expr` of a Grafana dashboard, and the metric of each
/// `label_values(metric…, label)` variable query.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        ("query" | "definition", Value::String(s))
                            if s.starts_with("label_values(") =>
                        {
                            let inner = &s["label_values(".len()..];
                            // The metric selector: up to the last top-level comma.
                            let metric = inner.rsplit_once(',').map_or(inner, |(m, _)| m);
                            out.push(metric.to_owned());
                        }
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// The series names on a Prometheus text page.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The names `exprs` read that neither `exported` nor `recorded` has
/// (`up` allowed), each with the first query that reads it.
fn unknown_names(
    exprs: &[String],
    exported: &BTreeSet<String>,
    recorded: &BTreeSet<String>,
) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut seen = BTreeSet::new();
    for expr in exprs {
        for name in series_names(expr) {
            let known = if name.contains(':') {
                recorded.contains(&name)
            } else {
                name == "up" || exported.contains(&name)
            };
            if !known && seen.insert(name.clone()) {
                unknown.push(format!("{name}  (in: {})", expr.trim().replace('\n', " ")));
            }
        }
    }
    unknown
}

/// The `label="…"` values of the lines of `series` on a text page.
fn label_values(text: &str, series: &str, label: &str) -> BTreeSet<String> {
    let needle = format!("{label}=\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{series}{{")))
        .filter_map(|l| {
            let at = l.find(&needle)? + needle.len();
            let end = l[at..].find('"')?;
            Some(l[at..at + end].to_owned())
        })
        .collect()
}

/// The value of one exact series line (`name{labels}` or `name`).
fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn the_promql_reader_finds_series_and_nothing_else() {
    let names = series_names(
        r#"histogram_quantile(0.99, sum by (city, le) (rate(checkout_seconds_bucket{city=~"$city", outcome!="x{y}"}[$__rate_interval])))
           / on (city) group_left () city:checkouts:rate5m offset 5m
           or max_over_time(up{job=~".*region-core.*"}[1h]) > bool 0.5 and refunds_pending"#,
    );
    let expected: BTreeSet<String> = [
        "checkout_seconds_bucket",
        "city:checkouts:rate5m",
        "up",
        "refunds_pending",
    ]
    .map(String::from)
    .into();
    assert_eq!(names, expected);
    let yaml = "      - record: a:b:c\n        expr: |\n          sum by (city) (x_total)\n            / y_total\n      - alert: A\n        expr: z > 1\n        for: 5m\n";
    assert_eq!(
        rule_exprs(yaml),
        vec![
            "sum by (city) (x_total)\n/ y_total\n".to_owned(),
            "z > 1".to_owned()
        ]
    );
    // The negative control of the check itself: a name nobody exports.
    let exported: BTreeSet<String> = ["x_total".to_owned()].into();
    let unknown = unknown_names(
        &["rate(x_total[5m]) + rate(bogus_total[5m]) + no:such:rule".to_owned()],
        &exported,
        &recorded_names(yaml),
    );
    assert_eq!(unknown.len(), 2, "{unknown:?}");
    assert!(unknown[0].starts_with("bogus_total"), "{unknown:?}");
    assert!(unknown[1].starts_with("no:such:rule"), "{unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_and_the_rules_read_only_exported_series() {
    let app = TestApp::default().await.expect("app");
    let show = app
        .seed_show(2, 10, chrono::Duration::days(3))
        .await
        .expect("show");

    // A hold, and a conflict on one of its seats.
    let alice = user("alice");
    let hold = app.hold_id("alice", &show, &["A1", "A2"]).await;
    let (s, body) = app.hold(&user("bob"), &show, &["A2", "A3"]).await.unwrap();
    assert_eq!(s, 409, "{body}");
    // A booking, then its cancellation (a refund for the worker).
    let booked = money::checkout(&app, &alice, &hold, "obs-1", "pm_card_ok")
        .await
        .expect("checkout");
    assert_eq!(booked.status, 201, "{}", booked.json);
    let booking = booked.json["id"].as_str().expect("booking id").to_owned();
    let (s, body) = app
        .send(
            reqwest::Method::POST,
            &format!("/v1/bookings/{booking}/cancel"),
            Some(&alice),
            None,
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "{body}");
    // A declined charge.
    let carol_hold = app.hold_id("carol", &show, &["B1"]).await;
    let declined = money::checkout(
        &app,
        &user("carol"),
        &carol_hold,
        "obs-2",
        "pm_card_declined",
    )
    .await
    .expect("checkout");
    assert_eq!(declined.status, 402, "{}", declined.json);
    // A path no route matches.
    let (s, _) = app.get(&format!("/v1/nowhere/{show}")).await.unwrap();
    assert_eq!(s, 404);
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.count("SELECT count(*) FROM refunds WHERE status = 'SUCCEEDED'")
                .await
                == 1
        })
        .await,
        "the refund reaches the gateway"
    );

    let metrics = || async {
        let (status, body) = app.get("/metrics").await.expect("metrics");
        assert_eq!(status, 200);
        body.as_str().unwrap_or_default().to_owned()
    };
    // The background samplers (pools, refund backlog, outbox lag) report
    // within a pass or two of start-up.
    let gauges = [
        "db_pool_acquire_seconds_bucket",
        "refunds_pending",
        "outbox_relay_lag_seconds",
        "redis_path_active",
    ];
    assert!(
        eventually(Duration::from_secs(15), || async {
            let names = exported_names(&metrics().await);
            gauges.iter().all(|g| names.contains(*g))
        })
        .await,
        "the samplers' series appear: {gauges:?}"
    );
    let text = metrics().await;

    // (a) The request histogram: templates and classes, never raw ids.
    let http = "http_request_duration_seconds_bucket";
    let routes = label_values(&text, http, "route");
    for route in [
        "/v1/shows/{id}/holds",
        "/v1/holds/{id}/checkout",
        "/v1/bookings/{id}/cancel",
        "unmatched",
    ] {
        assert!(routes.contains(route), "{route} not in {routes:?}");
    }
    for id in [&show, &hold, &booking] {
        assert!(
            !text.contains(id.as_str()),
            "a raw id ({id}) is in /metrics"
        );
    }
    let classes = label_values(&text, http, "status_class");
    for class in ["2xx", "4xx"] {
        assert!(classes.contains(class), "{class} not in {classes:?}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with(http) && l.contains("le=\"0.001\"")),
        "latency buckets from 1 ms"
    );
    // Histograms, not summaries: nothing is exported as quantiles.
    assert!(
        !text.contains("quantile=\""),
        "a summary is left: {}",
        text.lines().find(|l| l.contains("quantile=")).unwrap_or("")
    );
    // The new series count what happened.
    assert_eq!(
        value_of(&text, r#"payment_failures_total{reason="declined"}"#),
        Some(1.0)
    );
    assert_eq!(value_of(&text, "payment_charges_total"), Some(2.0));
    assert_eq!(
        value_of(&text, "holds_in_flight"),
        Some(0.0),
        "every hold request gave its count back"
    );
    assert_eq!(value_of(&text, "redis_path_active"), Some(1.0));
    assert!(
        value_of(&text, r#"db_pool_max_connections{pool="main"}"#) == Some(16.0),
        "the main pool's size (test settings: 16)"
    );

    // (b) Every series the dashboard and the rules read is exported.
    let rules = monitoring_file("rules.yml");
    let recorded = recorded_names(&rules);
    let dashboard: Value =
        serde_json::from_str(&monitoring_file("dashboard.json")).expect("dashboard.json is JSON");
    let mut exprs = rule_exprs(&rules);
    let from_rules = exprs.len();
    exprs.extend(dashboard_exprs(&dashboard));
    assert!(
        from_rules > 20 && exprs.len() > from_rules + 10,
        "read {from_rules} rule expressions and {} dashboard queries: is the reader broken?",
        exprs.len() - from_rules
    );
    let exported = exported_names(&text);
    let unknown = unknown_names(&exprs, &exported, &recorded);
    assert!(
        unknown.is_empty(),
        "the monitoring kit reads series the region core does not export:\n  {}",
        unknown.join("\n  ")
    );
    app.stop().await;
}
