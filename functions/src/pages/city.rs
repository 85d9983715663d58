//! `/c/{city}`: the city's shows on one date, from the edge's cached
//! catalog, with a week of dates to pick from (plain links: no script).
//! Each show: movie, venue and screen, venue-local start time, price
//! range, and a "few seats left" or "sold out" mark in words.

use std::fmt::Write as _;

use chrono::{Duration, NaiveDate};
use shared::api::{SaleMode, Show};

use super::layout::{document, escape, money, show_time, Shell, Viewer};

/// Free seats of a show, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seats {
    /// Free seats.
    pub available: u32,
    /// All seats.
    pub total: u32,
}

/// What a show's availability means to a buyer.
pub fn mark(seats: Option<Seats>) -> Option<&'static str> {
    let s = seats?;
    if s.available == 0 {
        Some("Sold out")
    } else if s.available <= (s.total / 10).max(5) {
        Some("Few seats left")
    } else {
        None
    }
}

/// The cheapest and dearest seat of a show, as text.
pub fn price_range(show: &Show) -> String {
    let min = show.prices.values().min().copied().unwrap_or(0);
    let max = show.prices.values().max().copied().unwrap_or(0);
    if min == max {
        money(min, &show.currency)
    } else {
        format!(
            "{}–{}",
            money(min, &show.currency),
            money(max, &show.currency)
        )
    }
}

/// The city page.
pub struct CityPage<'a> {
    /// City code.
    pub city: &'a str,
    /// City name (the code when unknown).
    pub name: &'a str,
    /// The date shown.
    pub date: NaiveDate,
    /// Today (the first date offered).
    pub today: NaiveDate,
    /// That date's shows, with their free seats where known.
    pub shows: &'a [(Show, Option<Seats>)],
    /// Why this date is shown, when it is not the one asked for.
    pub note: Option<&'a str>,
}

/// The document.
pub fn render(p: &CityPage<'_>, viewer: Viewer<'_>) -> String {
    let city = escape(p.city);
    let mut main = format!("<h1>Shows in {}</h1>\n", escape(p.name));
    main.push_str("<nav aria-label=\"Dates\"><ul class=\"dates\">\n");
    for d in 0..7 {
        let day = p.today + Duration::days(d);
        let label = match d {
            0 => "Today".to_owned(),
            1 => "Tomorrow".to_owned(),
            _ => day.format("%a %-d %b").to_string(),
        };
        let current = if day == p.date {
            " aria-current=\"date\""
        } else {
            ""
        };
        let _ = writeln!(
            main,
            "<li><a href=\"/c/{city}?date={day}\"{current}>{label}</a></li>"
        );
    }
    main.push_str("</ul></nav>\n");
    let _ = writeln!(main, "<h2>{}</h2>", p.date.format("%A %-d %B %Y"));
    if let Some(n) = p.note {
        let _ = writeln!(main, "<p class=\"notice\">{}</p>", escape(n));
    }
    if p.shows.is_empty() {
        main.push_str("<p>No shows on this date. Try another day.</p>\n");
    } else {
        main.push_str("<ul class=\"shows\">\n");
        for (s, seats) in p.shows {
            let mut mark = match mark(*seats) {
                Some(m) if m == "Sold out" => format!(" <strong class=\"mark sold\">{m}</strong>"),
                Some(m) => format!(" <strong class=\"mark few\">{m}</strong>"),
                None => String::new(),
            };
            // A flash sale is bought through its waiting room: link there.
            let page = if s.sale_mode == SaleMode::FlashSale {
                mark.push_str(" <strong class=\"mark queue\">Flash sale: queue</strong>");
                "sales"
            } else {
                "shows"
            };
            let _ = writeln!(
                main,
                "<li class=\"show\"><h3><a href=\"/c/{city}/{page}/{id}\">{title}</a>{mark}</h3>\n\
                 <p>{venue}, {screen}</p>\n<p>{time}</p>\n<p>{prices}</p></li>",
                id = escape(&s.id.to_string()),
                title = escape(&s.movie_title),
                venue = escape(&s.venue_name),
                screen = escape(&s.screen_name),
                time = show_time(&s.starts_at_local, s.starts_at, &s.time_zone),
                prices = escape(&price_range(s)),
            );
        }
        main.push_str("</ul>\n");
    }
    document(&Shell {
        title: p.name,
        viewer,
        main,
        ..Shell::default()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pages::layout::tests::assert_page_rules;

    pub(crate) fn show() -> Show {
        serde_json::from_value(serde_json::json!({
            "id": "01a2205a-d387-7029-933e-ebdbc50f0011", "city": "mum",
            "venue_id": "01a2205a-d011-761d-95fa-71830e7ee5ea", "venue_name": "PVR <Phoenix>",
            "screen_id": "01a2205a-d141-71aa-af8f-26d6b5a7726e", "screen_name": "Audi 1",
            "movie_id": "01a2205a-d255-7300-972f-639720908a4d", "movie_title": "Dune: Part Two",
            "starts_at": "2030-01-15T14:00:00Z", "starts_at_local": "2030-01-15T19:30:00+05:30",
            "time_zone": "Asia/Kolkata", "local_date": "2030-01-15",
            "prices": { "PREMIUM": 45000, "REGULAR": 25000 }, "currency": "INR",
            "sale_mode": "open", "seat_count": 8,
            "refund_policy": { "tiers": [ { "min_hours_before": 24, "percent": 100 } ] }
        }))
        .unwrap()
    }

    #[test]
    fn shows_in_venue_time_with_prices_and_marks() {
        let d = NaiveDate::from_ymd_opt(2030, 1, 15).unwrap();
        let shows = [
            (
                show(),
                Some(Seats {
                    available: 0,
                    total: 8,
                }),
            ),
            (
                show(),
                Some(Seats {
                    available: 3,
                    total: 100,
                }),
            ),
            (show(), None),
        ];
        let html = render(
            &CityPage {
                city: "mum",
                name: "Mumbai",
                date: d,
                today: d,
                shows: &shows,
                note: None,
            },
            Viewer::default(),
        );
        assert!(
            html.contains("Tue 15 Jan 2030, 19:30</time>"),
            "venue-local: {html}"
        );
        assert!(html.contains("(Asia/Kolkata)"));
        assert!(html.contains("₹250–₹450"));
        assert!(html.contains("Sold out") && html.contains("Few seats left"));
        assert!(html.contains("PVR &lt;Phoenix&gt;"));
        assert!(html.contains("aria-current=\"date\""));
        let mut flash = show();
        flash.sale_mode = SaleMode::FlashSale;
        let html = render(
            &CityPage {
                city: "mum",
                name: "Mumbai",
                date: d,
                today: d,
                shows: &[(flash, None)],
                note: Some("No shows <today>"),
            },
            Viewer::default(),
        );
        assert!(
            html.contains("href=\"/c/mum/sales/01a2205a-d387-7029-933e-ebdbc50f0011\""),
            "{html}"
        );
        assert!(html.contains("Flash sale: queue"));
        assert!(html.contains("No shows &lt;today&gt;"));
        assert_page_rules(&html);
    }

    #[test]
    fn marks() {
        assert_eq!(
            mark(Some(Seats {
                available: 50,
                total: 100
            })),
            None
        );
        assert_eq!(
            mark(Some(Seats {
                available: 10,
                total: 100
            })),
            Some("Few seats left")
        );
        assert_eq!(mark(None), None);
    }
}
