//! `/c/{city}/shows/{show}`: the seat map. Without JavaScript it is a
//! form: one checkbox per free seat (taken seats are disabled), posted to
//! `/c/{city}/shows/{show}/hold`. The script turns the table into an APG
//! grid (one tab stop, arrow keys move, Enter/Space toggle), greys chosen
//! seats at once when holding, and keeps the map live (WebSocket, else
//! polling). Every seat's accessible name says row, number, category,
//! price and state; the state is also drawn as a symbol and a pattern,
//! never by colour alone.

use std::fmt::Write as _;

use shared::api::{SaleMode, SeatMap, Show};
use shared::SeatState;

use super::layout::{category_name, csrf_field, document, escape, money, show_time, Shell, Viewer};

/// A seat label split into its row and number (`AA12` → `AA`, `12`).
pub fn split_label(label: &str) -> (&str, &str) {
    let at = label
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(label.len());
    label.split_at(at)
}

/// The word for a seat's state.
pub fn state_word(s: SeatState) -> &'static str {
    match s {
        SeatState::Available => "available",
        SeatState::Held => "held",
        SeatState::Booked => "sold",
    }
}

/// A seat's accessible name: "Row F, seat 12, Regular, ₹250, available".
pub fn seat_name(label: &str, category: &str, price: Option<String>, state: SeatState) -> String {
    let (row, number) = split_label(label);
    let mut name = format!("Row {row}, seat {number}, {}", category_name(category));
    if let Some(p) = price {
        let _ = write!(name, ", {p}");
    }
    let _ = write!(name, ", {}", state_word(state));
    name
}

/// A refused hold, in words for the buyer: what happened, what to do.
/// `taken` is the region's `details` for `seats_unavailable`.
pub fn hold_problem(code: &str, taken: &[String]) -> String {
    match code {
        "seats_unavailable" if taken.is_empty() => {
            "Sorry, some of those seats were just taken by someone else. Nothing is held: choose again.".into()
        }
        "seats_unavailable" => {
            let (noun, verb) = if taken.len() == 1 { ("Seat", "was") } else { ("Seats", "were") };
            format!(
                "Sorry, {noun} {} {verb} just taken by someone else. Nothing is held: choose other seats.",
                taken.join(", ")
            )
        }
        "no_seats" => "Choose at least one seat.".into(),
        "invalid_seat_label" | "unknown_seat" | "duplicate_seat" => {
            "Those seats are not on this show's map. Choose seats from the map.".into()
        }
        "too_many_seats" | "seat_limit_exceeded" => {
            "That is more seats than one buyer may hold for this show. Choose fewer.".into()
        }
        "pass_required" => {
            "This show is sold through a queue: join the queue, and choose seats when your turn comes.".into()
        }
        "pass_expired" | "pass_used" | "pass_invalid" | "pass_malformed" | "pass_wrong_user"
        | "pass_wrong_sale" => {
            "Your turn in the queue has ended or is not valid for this show. Join the queue again.".into()
        }
        "show_started" => "The show has already started.".into(),
        "sold_out" => "Sorry, this show is sold out.".into(),
        "unauthorized" => "Please sign in, then choose your seats again.".into(),
        "rate_limited" => "Too many attempts. Wait a few seconds, then try again.".into(),
        _ => "Your seats could not be held just now. Please try again.".into(),
    }
}

/// The show page.
pub struct ShowPage<'a> {
    /// City code.
    pub city: &'a str,
    /// The show.
    pub show: &'a Show,
    /// Its seat map.
    pub seats: &'a SeatMap,
    /// A flash-sale show and this browser has no pass for it.
    pub needs_pass: bool,
    /// What happened to the last form post (a refused hold), if anything.
    pub message: Option<&'a str>,
}

/// The legend, shared by the page and its tests.
const LEGEND: &str = "<ul class=\"legend\" aria-label=\"Legend\">\
<li><span class=\"seat available\" aria-hidden=\"true\"></span> Available</li>\
<li><span class=\"seat selected\" aria-hidden=\"true\"></span> Your choice</li>\
<li><span class=\"seat held\" aria-hidden=\"true\"></span> Held by someone</li>\
<li><span class=\"seat booked\" aria-hidden=\"true\"></span> Sold</li></ul>\n";

/// The document.
pub fn render(p: &ShowPage<'_>, viewer: Viewer<'_>) -> String {
    let s = p.show;
    let (city, id) = (escape(p.city), escape(&s.id.to_string()));
    let price = |cat: &str| s.prices.get(cat).map(|m| money(*m, &s.currency));
    let mut main = format!(
        "<p class=\"crumbs\"><a href=\"/c/{city}\">All shows</a></p>\n<h1>{}</h1>\n\
         <p>{}, {}</p>\n<p>{}</p>\n",
        escape(&s.movie_title),
        escape(&s.venue_name),
        escape(&s.screen_name),
        show_time(&s.starts_at_local, s.starts_at, &s.time_zone)
    );
    if s.sale_mode == SaleMode::FlashSale && p.needs_pass {
        let _ = writeln!(
            main,
            "<p class=\"notice\">Tickets for this show are sold through a queue, so everyone gets a fair turn. \
             <a href=\"/c/{city}/sales/{id}\">Join the queue</a>; when your turn comes you will be brought back here.</p>"
        );
    }
    if let Some(m) = p.message {
        let _ = writeln!(main, "<p class=\"error\" role=\"alert\">{}</p>", escape(m));
    }
    main.push_str("<h2>Prices</h2>\n<ul class=\"prices\">\n");
    for (cat, minor) in &s.prices {
        let _ = writeln!(
            main,
            "<li>{}: {}</li>",
            escape(&category_name(cat)),
            escape(&money(*minor, &s.currency))
        );
    }
    main.push_str("</ul>\n<h2 id=\"map-heading\">Choose your seats</h2>\n");
    main.push_str(LEGEND);
    let _ = writeln!(
        main,
        "<p class=\"counts\" id=\"counts\">{} of {} seats free.</p>\n\
         <p class=\"notice\" id=\"live-notice\" hidden></p>",
        p.seats.available,
        p.seats.available + p.seats.held + p.seats.booked
    );
    let _ = writeln!(
        main,
        "<form method=\"post\" action=\"/c/{city}/shows/{id}/hold\" id=\"seat-form\" \
         data-city=\"{city}\" data-show=\"{id}\">\n{}\n\
         <p class=\"screen\" aria-hidden=\"true\">Screen</p>\n<div class=\"grid-wrap\">\n\
         <table class=\"seats\" id=\"seat-grid\" aria-labelledby=\"map-heading\">",
        csrf_field(viewer.csrf)
    );
    let mut row_open: Option<&str> = None;
    for (ord, seat) in p.seats.seats.iter().enumerate() {
        let (row, number) = split_label(&seat.label);
        if row_open != Some(row) {
            if row_open.is_some() {
                main.push_str("</tr>\n");
            }
            let _ = write!(main, "<tr><th scope=\"row\">{}</th>", escape(row));
            row_open = Some(row);
        }
        let state = seat.status;
        let label = escape(&seat.label);
        let disabled = if state == SeatState::Available {
            ""
        } else {
            " disabled"
        };
        let _ = write!(
            main,
            "<td><input type=\"checkbox\" name=\"seats\" value=\"{label}\" id=\"seat-{label}\" \
             data-ord=\"{ord}\" data-cat=\"{cat}\" data-price=\"{pr}\" aria-label=\"{name}\"{disabled}>\
             <label for=\"seat-{label}\" class=\"seat {cls}\">{num}</label></td>",
            cat = escape(&category_name(&seat.category)),
            pr = escape(&price(&seat.category).unwrap_or_default()),
            name = escape(&seat_name(
                &seat.label,
                &seat.category,
                price(&seat.category),
                state
            )),
            cls = state_word(state),
            num = escape(number),
        );
    }
    if row_open.is_some() {
        main.push_str("</tr>\n");
    }
    main.push_str(
        "</table>\n</div>\n<p><button type=\"submit\" id=\"hold-button\">Hold the chosen seats</button></p>\n</form>\n",
    );
    main.push_str(
        "<section id=\"hold-panel\" class=\"panel\" hidden aria-labelledby=\"hold-heading\">\n\
         <h2 id=\"hold-heading\">Your seats are held</h2>\n<p id=\"hold-seats\"></p>\n\
         <p>Time left: <strong id=\"hold-countdown\" class=\"countdown\"></strong></p>\n\
         <p><button type=\"button\" id=\"hold-extend\">Extend by 5 minutes</button> \
         <a id=\"hold-continue\" class=\"button primary\" href=\"#\">Continue to checkout</a></p>\n</section>\n",
    );
    if viewer.user.is_none() {
        main.push_str("<p class=\"notice\">You will be asked to <a href=\"/signin\">sign in</a> before your seats are held.</p>\n");
    }
    document(&Shell {
        title: &s.movie_title,
        viewer,
        main,
        ..Shell::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::city::tests::show;
    use crate::pages::layout::tests::assert_page_rules;

    fn seats() -> SeatMap {
        serde_json::from_value(serde_json::json!({
            "show_id": "01a2205a-d387-7029-933e-ebdbc50f0011",
            "available": 1, "held": 1, "booked": 1,
            "seats": [
                { "label": "F12", "category": "REGULAR", "status": "AVAILABLE" },
                { "label": "F13", "category": "REGULAR", "status": "HELD" },
                { "label": "G1", "category": "PREMIUM", "status": "BOOKED" }
            ]
        }))
        .unwrap()
    }

    #[test]
    fn every_seat_is_named_and_the_form_works_without_script() {
        let (show, map) = (show(), seats());
        let html = render(
            &ShowPage {
                city: "mum",
                show: &show,
                seats: &map,
                needs_pass: false,
                message: Some("Seat <F13> was taken"),
            },
            Viewer {
                user: Some("ann@example.com"),
                csrf: "tok",
            },
        );
        assert!(
            html.contains("aria-label=\"Row F, seat 12, Regular, ₹250, available\""),
            "{html}"
        );
        assert!(html.contains("aria-label=\"Row F, seat 13, Regular, ₹250, held\" disabled"));
        assert!(html.contains("aria-label=\"Row G, seat 1, Premium, ₹450, sold\" disabled"));
        assert!(
            html.contains("class=\"seat booked\""),
            "state as a class (symbol + pattern)"
        );
        assert!(html.contains("<th scope=\"row\">G</th>"));
        assert!(html.contains("action=\"/c/mum/shows/01a2205a-d387-7029-933e-ebdbc50f0011/hold\""));
        assert!(html.contains("Seat &lt;F13&gt; was taken"));
        assert!(
            html.contains("Held by someone") && html.contains("Sold"),
            "a legend"
        );
        assert!(html.contains("Tue 15 Jan 2030, 19:30"));
        assert_page_rules(&html);
    }

    #[test]
    fn refused_holds_are_explained() {
        assert_eq!(
            hold_problem("seats_unavailable", &["F12".into()]),
            "Sorry, Seat F12 was just taken by someone else. Nothing is held: choose other seats."
        );
        assert!(hold_problem("pass_required", &[]).contains("join the queue"));
    }

    #[test]
    fn labels_split() {
        assert_eq!(split_label("AA12"), ("AA", "12"));
        assert_eq!(split_label("F1"), ("F", "1"));
    }
}
