//! The health page (`/ops/c/{city}/health`): the shard's status as the
//! region core reports it (`GET /v1/operator/shard`) and, on request,
//! its seat consistency checks (`GET /v1/operator/integrity`). Pure:
//! what the region answered in, the document out. Every state is said in
//! words (never by colour alone), every count beside what it counts.

use std::fmt::Write as _;

use super::data::{Integrity, ShardStatus};
use super::render::{page, scroll_box, when, Console};
use super::IntegrityAsk;
use crate::pages::layout::escape;

/// What the health page shows.
pub struct HealthPage<'a> {
    /// City code.
    pub city: &'a str,
    /// The shard's status, or why the region would not give it (its
    /// message: a token that does not reach every city of the shard).
    pub shard: Result<&'a ShardStatus, &'a str>,
    /// The checks asked for, and their result.
    pub checks: Option<(&'a IntegrityAsk, &'a Integrity)>,
}

/// An age in seconds, in words (`—`: nothing waiting).
fn age(s: Option<f64>) -> String {
    match s {
        None => "—".into(),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) if s < 7200.0 => format!("{:.0} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

/// One backlog's row: what, how many, the oldest, and whether to act.
fn backlog_row(what: &str, count: i64, oldest: &str, state: &str) -> String {
    format!(
        "<tr><th scope=\"row\">{what}</th><td>{count}</td><td>{oldest}</td><td>{state}</td></tr>\n"
    )
}

fn shard_section(ec: &str, s: &ShardStatus) -> String {
    let mut main = format!(
        "<p>As of {}, answered by replica <strong>{}</strong>, whose holds {}.</p>\n",
        when(&s.as_of),
        escape(&s.answered_by.replica),
        if s.answered_by.fast_path {
            "take the Redis fast path"
        } else {
            "go to Postgres alone"
        }
    );
    // The backlogs first: they are what an operator acts on.
    let (o, sw, m, money) = (&s.outbox, &s.sweeper, &s.mail, &s.money);
    let act = |bad: bool| {
        if bad {
            "<strong>Look at it</strong>"
        } else {
            "OK"
        }
    };
    let mut t = String::from(
        "<table class=\"order ops\" id=\"backlogs\">\n<caption>Background work</caption>\n\
         <thead><tr><th scope=\"col\">Waiting</th><th scope=\"col\">Count</th>\
         <th scope=\"col\">Oldest</th><th scope=\"col\">State</th></tr></thead>\n<tbody>\n",
    );
    t.push_str(&backlog_row(
        "Events not yet published (outbox)",
        o.unpublished,
        &age(o.oldest_seconds),
        act(o.unpublished > 100),
    ));
    t.push_str(&backlog_row(
        "Held seats past their hold (sweeper)",
        sw.expired_held_seats,
        &sw.oldest_expired_at.as_deref().map_or("—".into(), when),
        &if sw.overdue_seats > 0 {
            format!(
                "<strong>{} overdue</strong> (ended over {:.0} s ago)",
                sw.overdue_seats, sw.overdue_after_seconds
            )
        } else {
            "OK".into()
        },
    ));
    t.push_str(&backlog_row(
        "E-mail waiting to be sent",
        m.pending,
        &age(m.oldest_pending_seconds),
        act(m.oldest_pending_seconds.is_some_and(|s| s > 600.0)),
    ));
    t.push_str(&backlog_row(
        &format!("<a href=\"/ops/c/{ec}/mail\">E-mail given up</a>"),
        m.failed,
        "—",
        act(m.failed > 0),
    ));
    t.push_str(&backlog_row(
        "Charges neither booked nor refunded",
        money.payments_unsettled,
        &age(money.oldest_unsettled_seconds),
        act(money.oldest_unsettled_seconds.is_some_and(|s| s > 900.0)),
    ));
    t.push_str(&backlog_row(
        "Refunds on their way",
        money.refunds_pending,
        "—",
        "OK",
    ));
    t.push_str(&backlog_row(
        &format!("<a href=\"/ops/c/{ec}/refunds\">Refunds the gateway refused</a>"),
        money.refunds_failed,
        "—",
        act(money.refunds_failed > 0),
    ));
    t.push_str("</tbody>\n</table>\n");
    main.push_str(&scroll_box("Background work", &t));

    main.push_str("<h3>Hold path</h3>\n");
    match &s.redis_path {
        None => main.push_str("<p>Never switched: holds take the Redis fast path.</p>\n"),
        Some(p) => {
            let _ = writeln!(
                main,
                "<p><strong>{}</strong> (generation {}), since {}, switched by {}{}.</p>",
                if p.fast {
                    "Fast path: holds lock seats in Redis first"
                } else {
                    "Postgres only: Redis is not used for holds"
                },
                p.generation,
                when(&p.changed_at),
                escape(&p.changed_by),
                match p.reason.trim() {
                    "" => String::new(),
                    why => format!(": {}", escape(why)),
                }
            );
        }
    }

    main.push_str("<h3>Replicas' links to Redis</h3>\n");
    if s.replicas.is_empty() {
        main.push_str("<p>No replica has reported yet.</p>\n");
    } else {
        let mut t = String::from(
            "<table class=\"order ops\" id=\"replicas\">\n<caption>Each replica's last report</caption>\n\
             <thead><tr><th scope=\"col\">Replica</th><th scope=\"col\">Redis</th>\
             <th scope=\"col\">Reported</th><th scope=\"col\">Counted</th></tr></thead>\n<tbody>\n",
        );
        for r in &s.replicas {
            let _ = writeln!(
                t,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&r.replica),
                if r.ok {
                    "reached"
                } else {
                    "<strong>not reached</strong>"
                },
                when(&r.seen_at),
                if r.counted {
                    "yes"
                } else {
                    "no (report too old)"
                }
            );
        }
        t.push_str("</tbody>\n</table>\n");
        main.push_str(&scroll_box("Replicas", &t));
    }

    main.push_str("<h3>Leases</h3>\n");
    if s.leases.is_empty() {
        main.push_str("<p>No job holds a lease.</p>\n");
    } else {
        let mut t = String::from(
            "<table class=\"order ops\" id=\"leases\">\n<caption>Once-per-shard jobs</caption>\n\
             <thead><tr><th scope=\"col\">Job</th><th scope=\"col\">Holder</th><th scope=\"col\">Epoch</th>\
             <th scope=\"col\">Since</th><th scope=\"col\">Until</th><th scope=\"col\">Live</th></tr></thead>\n<tbody>\n",
        );
        for l in &s.leases {
            let _ = writeln!(
                t,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&l.job),
                escape(&l.holder),
                l.epoch,
                when(&l.acquired_at),
                when(&l.expires_at),
                if l.live { "yes" } else { "<strong>lapsed</strong>" }
            );
        }
        t.push_str("</tbody>\n</table>\n");
        main.push_str(&scroll_box("Leases", &t));
    }
    main
}

fn opt(id: Option<&str>) -> String {
    id.map_or_else(|| "none".into(), escape)
}

/// One problem list as a table (nothing when it is empty).
fn problems<T>(
    id: &str,
    caption: &str,
    head: &[&str],
    rows: &[T],
    row: impl Fn(&T) -> Vec<String>,
) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut t = format!(
        "<table class=\"order ops\" id=\"{id}\">\n<caption>{} ({})</caption>\n<thead><tr>",
        escape(caption),
        rows.len()
    );
    for h in head {
        let _ = write!(t, "<th scope=\"col\">{h}</th>");
    }
    t.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        t.push_str("<tr>");
        for (i, cell) in row(r).iter().enumerate() {
            if i == 0 {
                let _ = write!(t, "<th scope=\"row\">{cell}</th>");
            } else {
                let _ = write!(t, "<td>{cell}</td>");
            }
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</tbody>\n</table>\n");
    scroll_box(caption, &t)
}

fn checks_section(ask: &IntegrityAsk, r: &Integrity) -> String {
    let what = match &ask.show {
        Some(s) => format!("the show {}", escape(s)),
        None => "every show of your cities".into(),
    };
    let mut main = String::from("<h3 id=\"check-result\">Result</h3>\n");
    if r.ok {
        let _ = writeln!(
            main,
            "<p class=\"check-ok\" id=\"check-ok\"><strong>OK:</strong> no problem found in {what} (checked {}).</p>",
            when(&r.checked_at)
        );
    } else {
        let _ = writeln!(
            main,
            "<p class=\"error\" id=\"check-problems\"><strong>Problems found</strong> in {what} (checked {}). \
             Postgres decides who holds a seat; see the runbook's <em>Checking for double bookings</em> before changing anything.</p>",
            when(&r.checked_at)
        );
    }
    let joined = |v: &[String]| escape(&v.join(", "));
    main.push_str(&problems(
        "double-holds",
        "Seats in two live holds",
        &["Seat", "Show", "Holds"],
        &r.double_holds,
        |d| vec![escape(&d.seat), escape(&d.show_id), joined(&d.holds)],
    ));
    main.push_str(&problems(
        "holder-mismatches",
        "Seats whose holder is in doubt",
        &["Seat", "Show", "Status", "Seat row says", "Live hold says"],
        &r.holder_mismatches,
        |h| {
            vec![
                escape(&h.seat),
                escape(&h.show_id),
                escape(&h.status),
                opt(h.show_seats_says.as_deref()),
                opt(h.hold_seats_says.as_deref()),
            ]
        },
    ));
    main.push_str(&problems(
        "partial-holds",
        "Holds not all-or-nothing",
        &["Hold", "Show", "State", "Seats asked", "Seats owned"],
        &r.partial_holds,
        |p| {
            vec![
                escape(&p.hold_id),
                escape(&p.show_id),
                escape(&p.state),
                p.seat_count.to_string(),
                p.live_seats.to_string(),
            ]
        },
    ));
    main.push_str(&problems(
        "booking-mismatches",
        "Seats and bookings that disagree",
        &[
            "Seat",
            "Show",
            "Problem",
            "Status",
            "Seat row says",
            "Bookings say",
        ],
        &r.booking_mismatches,
        |b| {
            vec![
                escape(&b.seat),
                escape(&b.show_id),
                escape(&b.problem.replace('_', " ")),
                escape(&b.status),
                opt(b.show_seats_says.as_deref()),
                joined(&b.bookings_say),
            ]
        },
    ));
    if r.truncated {
        main.push_str("<p class=\"notice\">A list was cut at 100 rows: there are more.</p>\n");
    }
    if let Some(redis) = &r.redis {
        if !redis.checked {
            let _ = writeln!(
                main,
                "<p class=\"notice\">Redis was not compared: {}.</p>",
                escape(redis.reason.as_deref().unwrap_or("no reason given"))
            );
        } else if redis.mismatches.is_empty() {
            let _ = writeln!(
                main,
                "<p>Redis agrees with Postgres on all {} seats.</p>",
                redis.seats
            );
        } else {
            main.push_str(&problems(
                "redis-mismatches",
                "Seats where Redis and Postgres disagree",
                &["Seat", "Postgres", "Redis"],
                &redis.mismatches,
                |m| {
                    vec![
                        escape(&m.seat),
                        escape(&m.postgres),
                        opt(m.redis.as_deref()),
                    ]
                },
            ));
        }
    }
    main
}

/// The health page.
pub fn render(c: &Console<'_>, p: &HealthPage<'_>) -> String {
    let ec = escape(p.city);
    let mut main = format!(
        "<h1>Health of the shard serving {ec}</h1>\n<h2 id=\"shard-heading\">Shard status</h2>\n"
    );
    match p.shard {
        Ok(s) => main.push_str(&shard_section(&ec, s)),
        Err(why) => {
            let _ = writeln!(
                main,
                "<p class=\"notice\" id=\"shard-refused\">The region would not show its status to your token: {} \
                 The shard's status covers every city it serves, so it needs a token reaching all of them. \
                 The consistency checks below cover your cities only.</p>",
                escape(why)
            );
        }
    }
    let show = p
        .checks
        .and_then(|(a, _)| a.show.as_deref())
        .unwrap_or_default();
    let _ = write!(
        main,
        "<h2>Consistency checks</h2>\n<p>Reads the seats, holds and bookings of Postgres, apart from the \
         constraints that guard them, and says whether they agree. Given a show, Redis is compared with \
         Postgres too.</p>\n\
         <form method=\"get\" action=\"/ops/c/{ec}/health#check-result\" class=\"search\">\n\
         <p><label for=\"show_id\">Show id (optional)</label>\
         <input type=\"text\" id=\"show_id\" name=\"show_id\" value=\"{}\" spellcheck=\"false\" autocomplete=\"off\"></p>\n\
         <p><button type=\"submit\" name=\"check\" value=\"1\" class=\"primary\">Run the consistency checks</button></p>\n</form>\n",
        escape(show)
    );
    if let Some((ask, r)) = p.checks {
        main.push_str(&checks_section(ask, r));
    }
    page(c, "Health", main, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::layout::tests::assert_page_rules;
    use crate::pages::ops::session::Operator;
    use shared::token::{Grant, Scope};

    fn status() -> ShardStatus {
        serde_json::from_value(serde_json::json!({
            "as_of": "2026-12-05T10:00:00.123Z",
            "answered_by": { "replica": "core-<mum>-0", "fast_path": true },
            "leases": [{ "job": "redis-path", "holder": "core-mum-0", "epoch": 3,
                "acquired_at": "2026-12-05T08:00:00Z", "expires_at": "2026-12-05T10:00:05Z", "live": false }],
            "redis_path": { "generation": 3, "fast": false, "changed_at": "2026-12-05T09:12:00Z",
                "changed_by": "core-mum-1", "reason": "redis unreachable" },
            "replicas": [{ "replica": "core-mum-0", "ok": false, "seen_at": "2026-12-05T10:00:00Z", "counted": true }],
            "outbox": { "unpublished": 0, "oldest_seconds": null },
            "sweeper": { "expired_held_seats": 3, "overdue_seats": 2, "overdue_after_seconds": 10.0,
                "oldest_expired_at": "2026-12-05T09:59:59Z" },
            "mail": { "pending": 1, "failed": 2, "oldest_pending_seconds": 30.0 },
            "money": { "payments_unsettled": 0, "oldest_unsettled_seconds": null,
                "refunds_pending": 1, "refunds_failed": 0 }
        }))
        .unwrap()
    }

    #[test]
    fn the_shard_status_says_each_state_in_words() {
        let op = Operator {
            sub: "ops".into(),
            grant: Grant::new(vec!["mum".into()], vec![Scope::Read]).unwrap(),
            exp: 0,
        };
        let c = Console {
            op: Some(&op),
            csrf: "t",
            city: Some("mum"),
        };
        let s = status();
        let html = render(
            &c,
            &HealthPage {
                city: "mum",
                shard: Ok(&s),
                checks: None,
            },
        );
        assert_page_rules(&html);
        assert!(html.contains("core-&lt;mum&gt;-0"));
        assert!(html.contains("<strong>2 overdue</strong>"));
        assert!(html.contains("href=\"/ops/c/mum/mail\">E-mail given up</a></th><td>2</td>"));
        assert!(html.contains(
            "Postgres only: Redis is not used for holds</strong> (generation 3), since 2026-12-05 09:12 UTC, \
             switched by core-mum-1: redis unreachable.</p>"
        ));
        assert!(html.contains("<strong>not reached</strong>"));
        assert!(html.contains("<strong>lapsed</strong>"));
        assert!(html.contains("name=\"check\" value=\"1\""));
        assert!(!html.contains("id=\"check-result\""));

        let refused = render(
            &c,
            &HealthPage {
                city: "mum",
                shard: Err("Your grant does not reach <del>."),
                checks: None,
            },
        );
        assert_page_rules(&refused);
        assert!(refused.contains("id=\"shard-refused\"") && refused.contains("reach &lt;del&gt;."));

        let ask = IntegrityAsk {
            show: Some("s<1>".into()),
        };
        let ok: Integrity = serde_json::from_value(serde_json::json!({
            "ok": true, "checked_at": "2026-12-05T10:00:00Z",
            "redis": { "checked": true, "reason": null, "seats": 10, "mismatches": [] }
        }))
        .unwrap();
        let html = render(
            &c,
            &HealthPage {
                city: "mum",
                shard: Ok(&s),
                checks: Some((&ask, &ok)),
            },
        );
        assert_page_rules(&html);
        assert!(html.contains(
            "id=\"check-ok\"><strong>OK:</strong> no problem found in the show s&lt;1&gt;"
        ));
        assert!(html.contains("Redis agrees with Postgres on all 10 seats."));
        assert!(html.contains("value=\"s&lt;1&gt;\""));

        let bad: Integrity = serde_json::from_value(serde_json::json!({
            "ok": false, "checked_at": "2026-12-05T10:00:00Z",
            "double_holds": [{ "show_id": "s", "seat": "A1", "holds": ["h1", "h2"] }],
            "booking_mismatches": [{ "show_id": "s", "seat": "B1", "problem": "booking_seat_not_booked",
                "status": "AVAILABLE", "show_seats_says": null, "bookings_say": ["b1"] }],
            "truncated": true,
            "redis": { "checked": false, "reason": "Redis could not be reached", "seats": 0, "mismatches": [] }
        }))
        .unwrap();
        let all = IntegrityAsk { show: None };
        let html = render(
            &c,
            &HealthPage {
                city: "mum",
                shard: Ok(&s),
                checks: Some((&all, &bad)),
            },
        );
        assert_page_rules(&html);
        assert!(html.contains("id=\"check-problems\""));
        assert!(html.contains("<caption>Seats in two live holds (1)</caption>"));
        assert!(html.contains("<th scope=\"row\">A1</th><td>s</td><td>h1, h2</td>"));
        assert!(html.contains("booking seat not booked"));
        assert!(!html.contains("id=\"partial-holds\""));
        assert!(html.contains("cut at 100 rows"));
        assert!(html.contains("Redis was not compared: Redis could not be reached."));
    }
}
