//! The console's pages. Pure: each takes what it shows (and `today` where
//! dates matter) and returns the document. Every value from the region
//! or the request is escaped; every form that changes something posts
//! the console session's CSRF token.

use std::fmt::Write as _;

use chrono::NaiveDate;
use shared::api::{SaleMode, SeatMap, Show};

use super::data::{BookingLookup, Occupancy, RefundList, SalesLine, SalesReport, ShowBookings};
use super::session::Operator;
use super::ReportAsk;
use crate::pages::layout::{
    category_name, csrf_field, document, escape, money, show_time, Shell, Viewer,
};
use crate::pages::show::{seat_name, split_label, state_word};

/// Who is looking and where: the header's navigation and the forms'
/// token.
#[derive(Debug, Clone, Copy, Default)]
pub struct Console<'a> {
    /// The signed-in operator.
    pub op: Option<&'a Operator>,
    /// The console session's CSRF token (empty when signed out).
    pub csrf: &'a str,
    /// The city the page is about (the navigation's links).
    pub city: Option<&'a str>,
}

fn header(c: &Console<'_>) -> String {
    let mut nav = String::new();
    if let Some(city) = c.city {
        let city = escape(city);
        let _ = write!(
            nav,
            "<a href=\"/ops/c/{city}\">Shows</a><a href=\"/ops/c/{city}/bookings\">Find a booking</a>\
             <a href=\"/ops/c/{city}/reports\">Reports</a><a href=\"/ops/c/{city}/refunds\">Refunds</a>\
             <a href=\"/ops/c/{city}/mail\">E-mail</a><a href=\"/ops/c/{city}/health\">Health</a>"
        );
    }
    match c.op {
        Some(op) => {
            let _ = write!(
                nav,
                "<form method=\"post\" action=\"/ops/signout\" class=\"inline\">{}\
                 <span class=\"who\">{}</span> <button type=\"submit\" class=\"link\">Sign out</button></form>",
                csrf_field(c.csrf),
                escape(&op.sub)
            );
        }
        None => nav.push_str("<a href=\"/ops/signin\">Sign in</a>"),
    }
    format!(
        "<a class=\"brand\" href=\"/ops\">Tickets console</a><nav aria-label=\"Console\">{nav}</nav>"
    )
}

/// A console page: the console's header, the buyer pages' frame.
pub(super) fn page(c: &Console<'_>, title: &str, main: String, status: Option<String>) -> String {
    document(&Shell {
        title,
        viewer: Viewer {
            user: None,
            csrf: c.csrf,
        },
        main,
        status,
        header: Some(header(c)),
        ..Shell::default()
    })
}

/// An RFC 3339 instant, shortened for a table (`2026-12-05 10:00 UTC`).
pub(super) fn when(s: &str) -> String {
    let utc = s.ends_with('Z');
    let short: String = s.chars().take(16).collect::<String>().replace('T', " ");
    escape(&if utc { format!("{short} UTC") } else { short })
}

/// A box that scrolls sideways on a narrow screen: a named region that
/// takes focus, so a keyboard can scroll it too.
pub(super) fn scroll_box(label: &str, inner: &str) -> String {
    format!(
        "<div class=\"grid-wrap\" role=\"region\" aria-label=\"{}\" tabindex=\"0\">\n{inner}</div>\n",
        escape(label)
    )
}

pub(super) fn words(status: &str) -> String {
    escape(&status.to_lowercase().replace('_', " "))
}

/// The scopes of the signed-in operator's token, in its words.
pub(super) fn scope_words(c: &Console<'_>) -> Vec<&'static str> {
    c.op.map(|op| op.grant.scopes.iter().map(|s| s.as_str()).collect())
        .unwrap_or_default()
}

/// Why a token allowing only `scopes` may not do `what` (the message of
/// a post's 403 without the `sales` scope).
pub fn needs_sales(what: &str, scopes: &[&str]) -> String {
    format!(
        "{what} needs an operator token with the sales scope; yours allows {}. \
         Ask for one with --scope sales.",
        scopes.join(", ")
    )
}

/// Where a form needing the `sales` scope would be: why it is not
/// (`then`: what signing in with such a token lets the operator do).
pub(super) fn sales_notice(c: &Console<'_>, what: &str, then: &str) -> String {
    format!(
        "<p class=\"notice\" id=\"scope-notice\">{} needs an operator token with the \
         <strong>sales</strong> scope; yours allows {}. Ask for one with <code>--scope sales</code> \
         {}.</p>\n",
        escape(what),
        escape(&scope_words(c).join(", ")),
        escape(then)
    )
}

// ------------------------------------------------------------ sign-in

/// The sign-in page: paste an operator token.
pub fn signin(csrf: &str, error: Option<&str>) -> String {
    let mut main = String::from("<h1>Sign in to the console</h1>\n");
    if let Some(e) = error {
        let _ = writeln!(
            main,
            "<p class=\"error\" id=\"token-error\" role=\"alert\">{}</p>",
            escape(e)
        );
    }
    let described = if error.is_some() {
        " aria-describedby=\"token-error\" aria-invalid=\"true\""
    } else {
        ""
    };
    let _ = write!(
        main,
        "<p>Paste the operator token you were given (<code>region-core mint-token --role operator --city …</code>). \
         It stays in a cookie of this console until it expires or you sign out.</p>\n\
         <form method=\"post\" action=\"/ops/signin\">{}\n\
         <p><label for=\"token\">Operator token</label>\n\
         <textarea id=\"token\" name=\"token\" rows=\"4\" required autocomplete=\"off\" spellcheck=\"false\"{described}></textarea></p>\n\
         <p><button type=\"submit\" class=\"primary\">Sign in</button></p>\n</form>\n",
        csrf_field(csrf)
    );
    page(&Console::default(), "Console sign-in", main, None)
}

/// The cities the grant reaches (`cities`: code and name of each; the
/// code again when the name could not be read).
pub fn home(c: &Console<'_>, cities: &[(String, String)]) -> String {
    let mut main = String::from("<h1>Your cities</h1>\n");
    if cities.is_empty() {
        main.push_str("<p>Your token's grant reaches no city served here.</p>\n");
    } else {
        main.push_str("<ul class=\"cards\">\n");
        // The name, and the code too: it is what URLs and grants
        // (`--city mum`) say.
        for (code, name) in cities {
            let shown = if name == code {
                escape(code)
            } else {
                format!(
                    "{} <span class=\"code\">({})</span>",
                    escape(name),
                    escape(code)
                )
            };
            let _ = writeln!(
                main,
                "<li><a href=\"/ops/c/{}\">{shown}</a></li>",
                escape(code)
            );
        }
        main.push_str("</ul>\n");
    }
    if let Some(op) = c.op {
        let scopes: Vec<&str> = op.grant.scopes.iter().map(|s| s.as_str()).collect();
        let _ = writeln!(
            main,
            "<p>Your token allows: {}.</p>",
            escape(&scopes.join(", "))
        );
    }
    page(c, "Console", main, None)
}

// -------------------------------------------------------------- shows

/// The city's shows of `date` (`name`: the city's name).
pub fn shows(c: &Console<'_>, city: &str, name: &str, date: NaiveDate, shows: &[Show]) -> String {
    let ec = escape(city);
    let mut main = format!("<h1>Shows in {} on {date}</h1>\n", escape(name));
    let (prev, next) = (
        date - chrono::Duration::days(1),
        date + chrono::Duration::days(1),
    );
    let _ = write!(
        main,
        "<form method=\"get\" action=\"/ops/c/{ec}\" class=\"search\">\
         <p><label for=\"date\">Day</label> <input type=\"date\" id=\"date\" name=\"date\" value=\"{date}\" required> \
         <button type=\"submit\">Show the day</button></p></form>\n\
         <p class=\"dates\"><a href=\"/ops/c/{ec}?date={prev}\">Previous day</a> <a href=\"/ops/c/{ec}?date={next}\">Next day</a></p>\n"
    );
    if shows.is_empty() {
        main.push_str("<p>No shows on this day.</p>\n");
    } else {
        let mut t = String::from(
            "<table class=\"order ops\">\n<caption>Shows</caption>\n<thead><tr><th scope=\"col\">Starts</th>\
             <th scope=\"col\">Movie</th><th scope=\"col\">Venue</th></tr></thead>\n<tbody>\n",
        );
        for s in shows {
            let _ = writeln!(
                t,
                "<tr><td>{}</td><td><a href=\"/ops/c/{ec}/shows/{}\">{}</a></td><td>{}, {}</td></tr>",
                show_time(&s.starts_at_local, s.starts_at, &s.time_zone),
                escape(&s.id.to_string()),
                escape(&s.movie_title),
                escape(&s.venue_name),
                escape(&s.screen_name)
            );
        }
        t.push_str("</tbody>\n</table>\n");
        main.push_str(&scroll_box("Shows", &t));
    }
    page(c, &format!("Shows in {name}"), main, None)
}

fn occupancy_table(o: &Occupancy) -> String {
    let mut t = String::from(
        "<table class=\"order ops\" id=\"occupancy\">\n<caption>Seats by category</caption>\n<thead><tr>\
         <th scope=\"col\">Category</th><th scope=\"col\">Total</th><th scope=\"col\">Free</th>\
         <th scope=\"col\">Held</th><th scope=\"col\">Sold</th></tr></thead>\n<tbody>\n",
    );
    // `data-cat` (empty: all) lets the live map's script recount a row.
    for k in &o.categories {
        let _ = writeln!(
            t,
            "<tr data-cat=\"{}\"><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&k.category),
            escape(&category_name(&k.category)),
            k.total,
            k.available,
            k.held,
            k.booked
        );
    }
    let n = &o.totals;
    let _ = write!(
        t,
        "</tbody>\n<tfoot><tr data-cat=\"\"><th scope=\"row\">All</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></tfoot>\n</table>\n",
        n.total, n.available, n.held, n.booked
    );
    scroll_box("Seats by category", &t)
}

/// The read-only seat map: the buyer's seat names and state classes,
/// no inputs (an image per seat, named for a screen reader). `live` is
/// the show's path under the edge's API: the script keeps the map and
/// the counts live from there, by each seat's place in the map
/// (`data-ord`, the live protocol's index), as the buyer's map does.
fn seat_map(seats: &SeatMap, live: &str) -> String {
    let mut t = format!(
        "<table class=\"seats\" id=\"ops-seat-map\" aria-labelledby=\"map-heading\" data-live=\"{}\">\n",
        escape(live)
    );
    let mut row_open: Option<&str> = None;
    for (ord, seat) in seats.seats.iter().enumerate() {
        let (row, number) = split_label(&seat.label);
        if row_open != Some(row) {
            if row_open.is_some() {
                t.push_str("</tr>\n");
            }
            let _ = write!(t, "<tr><th scope=\"row\">{}</th>", escape(row));
            row_open = Some(row);
        }
        let _ = write!(
            t,
            "<td><span class=\"seat {state}\" role=\"img\" data-ord=\"{ord}\" data-cat=\"{}\" \
             data-state=\"{state}\" aria-label=\"{}\">{}</span></td>",
            escape(&seat.category),
            escape(&seat_name(&seat.label, &seat.category, None, seat.status)),
            escape(number),
            state = state_word(seat.status),
        );
    }
    if row_open.is_some() {
        t.push_str("</tr>\n");
    }
    t.push_str("</table>\n");
    scroll_box("Seat map", &t)
}

fn bookings_table(city: &str, b: &ShowBookings) -> String {
    if b.bookings.is_empty() {
        return "<p>No bookings.</p>\n".into();
    }
    let ec = escape(city);
    let mut t = String::from(
        "<table class=\"order ops\" id=\"bookings\">\n<caption>Bookings, oldest first</caption>\n<thead><tr>\
         <th scope=\"col\">Number</th><th scope=\"col\">Buyer</th><th scope=\"col\">Seats</th>\
         <th scope=\"col\">Paid</th><th scope=\"col\">Status</th><th scope=\"col\">Refund</th></tr></thead>\n<tbody>\n",
    );
    for x in &b.bookings {
        let _ = writeln!(
            t,
            "<tr><td><a href=\"/ops/c/{ec}/bookings?number={n}\">{n}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&x.user_id),
            escape(&x.seats.join(", ")),
            money(x.amount_minor, &x.currency),
            words(&x.status),
            x.refund_status.as_deref().map(words).unwrap_or_else(|| "—".into()),
            n = escape(&x.number),
        );
    }
    t.push_str("</tbody>\n</table>\n");
    scroll_box("Bookings", &t)
}

/// A show's page.
pub struct ShowPage<'a> {
    /// City code.
    pub city: &'a str,
    /// The show.
    pub show: &'a Show,
    /// Its occupancy now.
    pub occupancy: &'a Occupancy,
    /// Its seats.
    pub seats: &'a SeatMap,
    /// One page of its bookings.
    pub bookings: &'a ShowBookings,
    /// This page's cursor (`None`: the first page).
    pub after: Option<&'a str>,
}

/// A show's crumbs, title and place and time.
pub(super) fn show_heading(city: &str, s: &Show) -> String {
    format!(
        "<p class=\"crumbs\"><a href=\"/ops/c/{}?date={}\">Shows of the day</a></p>\n<h1>{}</h1>\n<p>{}, {} — {}</p>\n",
        escape(city),
        s.local_date,
        escape(&s.movie_title),
        escape(&s.venue_name),
        escape(&s.screen_name),
        show_time(&s.starts_at_local, s.starts_at, &s.time_zone)
    )
}

/// The show: occupancy, seat map, bookings, and the way to cancel it.
pub fn show(c: &Console<'_>, p: &ShowPage<'_>) -> String {
    let (ec, id) = (escape(p.city), escape(&p.show.id.to_string()));
    let mut main = show_heading(p.city, p.show);
    let _ = write!(
        main,
        "<h2>Occupancy</h2>\n<p id=\"occupancy-as-of\">As of {}.</p>\n\
         <p class=\"notice\" id=\"live-notice\" hidden></p>\n{}",
        when(&p.occupancy.as_of),
        occupancy_table(p.occupancy)
    );
    main.push_str(
        "<h2 id=\"map-heading\">Seat map</h2>\n<ul class=\"legend\">\
        <li><span class=\"seat available\" aria-hidden=\"true\"></span> Free</li>\
        <li><span class=\"seat held\" aria-hidden=\"true\"></span> Held</li>\
        <li><span class=\"seat booked\" aria-hidden=\"true\"></span> Sold</li></ul>\n",
    );
    main.push_str(&seat_map(
        p.seats,
        &format!("/v1/c/{}/shows/{}", p.city, p.show.id),
    ));
    main.push_str("<h2>Bookings</h2>\n");
    main.push_str(&bookings_table(p.city, p.bookings));
    let mut pager = Vec::new();
    if p.after.is_some() {
        pager.push(format!(
            "<a href=\"/ops/c/{ec}/shows/{id}\">First page of bookings</a>"
        ));
    }
    if let Some(next) = &p.bookings.next_after {
        pager.push(format!(
            "<a href=\"/ops/c/{ec}/shows/{id}?after={}\" rel=\"next\">Next bookings</a>",
            escape(next)
        ));
    }
    if !pager.is_empty() {
        let _ = writeln!(main, "<p>{}</p>", pager.join(" "));
    }
    let mode = match p.show.sale_mode {
        SaleMode::Open => "Open sale: anyone signed in may hold seats.",
        SaleMode::FlashSale => "Flash sale: buyers queue in the waiting room.",
    };
    let _ = write!(
        main,
        "<h2>Sale</h2>\n<p>{mode} <a href=\"/ops/c/{ec}/shows/{id}/sale\">Sale settings</a></p>\n\
         <h2>Cancel the show</h2>\n<p><a class=\"button\" href=\"/ops/c/{ec}/shows/{id}/cancel\">Cancel this show…</a> \
         <a href=\"/ops/c/{ec}/shows/{id}/cancellation\">Cancellation progress</a></p>\n"
    );
    page(c, &p.show.movie_title, main, None)
}

/// Confirming a show's cancellation: what it will do, and the form.
pub fn cancel_confirm(
    c: &Console<'_>,
    city: &str,
    s: &Show,
    occupancy: &Occupancy,
    bookings: &ShowBookings,
    error: Option<&str>,
) -> String {
    let (ec, id) = (escape(city), escape(&s.id.to_string()));
    let mut main = show_heading(city, s);
    main = main.replacen("<h1>", "<h1>Cancel: ", 1);
    let confirmed: Vec<_> = bookings
        .bookings
        .iter()
        .filter(|b| b.status == "CONFIRMED")
        .collect();
    let more = if bookings.next_after.is_some() {
        " (at least: more are on the show's later pages)"
    } else {
        ""
    };
    let _ = write!(
        main,
        "<div class=\"panel\"><p><strong>What will happen:</strong> the show is taken off sale, \
         its {} sold seats are released, and every confirmed booking is cancelled and refunded in full.</p>\n\
         <p>Confirmed bookings to refund: <strong>{}</strong>{more}.</p></div>\n",
        occupancy.totals.booked,
        confirmed.len()
    );
    if !confirmed.is_empty() {
        main.push_str("<ul>\n");
        for b in &confirmed {
            let _ = writeln!(
                main,
                "<li>{} — {}, {}</li>",
                escape(&b.number),
                escape(&b.user_id),
                money(b.amount_minor, &b.currency)
            );
        }
        main.push_str("</ul>\n");
    }
    if let Some(e) = error {
        let _ = writeln!(
            main,
            "<p class=\"error\" id=\"reason-error\" role=\"alert\">{}</p>",
            escape(e)
        );
    }
    let described = if error.is_some() {
        " aria-describedby=\"reason-error\" aria-invalid=\"true\""
    } else {
        ""
    };
    let _ = write!(
        main,
        "<form method=\"post\" action=\"/ops/c/{ec}/shows/{id}/cancel\">{}\n\
         <p><label for=\"reason\">Reason (the buyers are told)</label>\n\
         <textarea id=\"reason\" name=\"reason\" rows=\"3\" maxlength=\"1000\" required{described}></textarea></p>\n\
         <p><button type=\"submit\" class=\"danger\">Cancel the show and refund everyone</button> \
         <a href=\"/ops/c/{ec}/shows/{id}\">Keep the show</a></p>\n</form>\n",
        csrf_field(c.csrf)
    );
    page(c, &format!("Cancel {}", s.movie_title), main, None)
}

/// A JSON object's scalar fields as a definition list (a job's progress:
/// its shape is the region's, shown as it is).
fn fields(v: &serde_json::Value) -> String {
    let Some(obj) = v.as_object() else {
        return String::new();
    };
    let mut out = String::from("<dl class=\"booking\">\n");
    for (k, v) in obj {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "—".into(),
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => continue,
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "<dt>{}</dt><dd>{}</dd>",
            escape(&k.replace('_', " ")),
            escape(&text)
        );
    }
    out.push_str("</dl>\n");
    out
}

/// The region's answer to a cancellation (`job`), or its progress.
pub fn cancellation(
    c: &Console<'_>,
    city: &str,
    show: &str,
    started: bool,
    job: &serde_json::Value,
) -> String {
    let (ec, id) = (escape(city), escape(show));
    let mut main = String::from(if started {
        "<h1>The show's cancellation has started</h1>\n"
    } else {
        "<h1>Cancellation progress</h1>\n"
    });
    main.push_str(&fields(job));
    let _ = writeln!(
        main,
        "<p><a href=\"/ops/c/{ec}/shows/{id}/cancellation\">See the progress</a> · \
         <a href=\"/ops/c/{ec}/shows/{id}\">Back to the show</a></p>"
    );
    let status = started.then(|| "The show's cancellation has started.".to_owned());
    page(c, "Cancellation", main, status)
}

// ----------------------------------------------------------- bookings

/// The booking lookup: the form, and the booking when one was asked for
/// (`resent`: its confirmation was just queued again).
pub fn booking(
    c: &Console<'_>,
    city: &str,
    number: Option<&str>,
    found: Option<&BookingLookup>,
    resent: bool,
) -> String {
    let ec = escape(city);
    let mut main = format!(
        "<h1>Find a booking</h1>\n<form method=\"get\" action=\"/ops/c/{ec}/bookings\" class=\"search\">\
         <p><label for=\"number\">Booking number or id</label>\
         <input type=\"search\" id=\"number\" name=\"number\" required value=\"{}\"> \
         <button type=\"submit\">Find</button></p></form>\n",
        escape(number.unwrap_or_default())
    );
    if let Some(l) = found {
        let b = &l.booking;
        let seats: Vec<&str> = b.seats.iter().map(|s| s.label.as_str()).collect();
        let _ = write!(
            main,
            "<h2>Booking {}</h2>\n<dl class=\"booking\">\n\
             <dt>Status</dt><dd>{}</dd>\n<dt>Buyer</dt><dd>{}</dd>\n\
             <dt>Show</dt><dd><a href=\"/ops/c/{ec}/shows/{}\">{}</a>, {}</dd>\n\
             <dt>Seats</dt><dd>{}</dd>\n<dt>Paid</dt><dd>{}</dd>\n<dt>Payment</dt><dd>{} {}</dd>\n\
             <dt>Booked</dt><dd>{}</dd>\n</dl>\n",
            escape(&b.number),
            words(&b.status),
            escape(&l.user_id),
            escape(&b.show_id),
            escape(&b.title),
            escape(&b.venue_name),
            escape(&seats.join(", ")),
            money(b.amount_minor, &b.currency),
            l.payment_status.as_deref().map(words).unwrap_or_default(),
            escape(l.gateway_payment_id.as_deref().unwrap_or_default()),
            when(&b.created_at),
        );
        match &l.refund {
            None => main.push_str("<p>No refund.</p>\n"),
            Some(r) => {
                let _ = write!(
                    main,
                    "<h3>Refund</h3>\n<dl class=\"booking\">\n<dt>Status</dt><dd>{}</dd>\n\
                     <dt>Amount</dt><dd>{}</dd>\n<dt>Attempts</dt><dd>{}</dd>\n<dt>Last error</dt><dd>{}</dd>\n</dl>\n",
                    words(&r.status),
                    money(r.amount_minor, &b.currency),
                    r.attempts,
                    escape(r.last_error.as_deref().unwrap_or("—")),
                );
                if r.status == "FAILED" {
                    let _ = writeln!(
                        main,
                        "<p><a href=\"/ops/c/{ec}/refunds\">Act on it in the refunds needing attention</a></p>"
                    );
                }
            }
        }
        if b.status == "CONFIRMED" {
            main.push_str(&resend_confirmation(c, city, &b.number));
        }
    }
    let status = resent.then(|| {
        "The confirmation will be sent again now, as a new message with the tickets as they are today."
            .to_owned()
    });
    page(c, "Find a booking", main, status)
}

/// A confirmed booking's "send the confirmation again" form (scope
/// `sales`; without it, why not).
fn resend_confirmation(c: &Console<'_>, city: &str, number: &str) -> String {
    let mut out = String::from(
        "<h3>Confirmation e-mail</h3>\n<p>Sends the buyer a new confirmation, its tickets signed with \
         today's key (after a key rotation, this is how a buyer gets codes that open the doors).</p>\n",
    );
    let can =
        c.op.is_some_and(|op| op.grant.allows(shared::token::Scope::Sales));
    if can {
        let _ = writeln!(
            out,
            "<form method=\"post\" action=\"/ops/c/{}/bookings/{}/resend-confirmation\">{}\
             <p><button type=\"submit\">Send the confirmation again</button></p></form>",
            escape(city),
            escape(number),
            csrf_field(c.csrf)
        );
    } else {
        out.push_str(&sales_notice(
            c,
            "Sending a confirmation again",
            "and sign in with it to send it",
        ));
    }
    out
}

// ------------------------------------------------------------ reports

fn sales_row(head: &str, l: &SalesLine) -> String {
    let m = |v: i64| money(v, &l.currency);
    format!(
        "<tr><th scope=\"row\">{head}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
        l.bookings_confirmed,
        l.seats_sold,
        m(l.gross_minor),
        l.bookings_cancelled,
        m(l.refunded_minor),
        m(l.refunds_pending_minor),
        m(l.refunds_failed_minor),
        m(l.net_minor),
    )
}

const SALES_HEAD: &str = "<th scope=\"col\">Bookings</th><th scope=\"col\">Seats</th><th scope=\"col\">Gross</th>\
    <th scope=\"col\">Cancelled</th><th scope=\"col\">Refunded</th><th scope=\"col\">Refunds pending</th>\
    <th scope=\"col\">Refunds failed</th><th scope=\"col\">Net</th>";

/// The reports form, and the report's totals and lines when asked.
pub fn reports(
    c: &Console<'_>,
    city: &str,
    today: NaiveDate,
    ask: Option<&ReportAsk>,
    report: Option<&SalesReport>,
) -> String {
    let ec = escape(city);
    // By default the last week up to tomorrow: `today` is UTC's, and the
    // report's days are the venue's, which may already be tomorrow.
    let (from, to) = ask.map_or(
        (
            today - chrono::Duration::days(7),
            today + chrono::Duration::days(1),
        ),
        |a| (a.from, a.to),
    );
    let group = ask.map_or("day", |a| a.group);
    let sel = |g: &str| if g == group { " selected" } else { "" };
    let mut main = format!(
        "<h1>Sales reports</h1>\n<p>Bookings made on the venue-local days from–to (both included), as they stand now.</p>\n\
         <form method=\"get\" action=\"/ops/c/{ec}/reports\" class=\"report-form\">\n\
         <p><label for=\"from\">From</label> <input type=\"date\" id=\"from\" name=\"from\" value=\"{from}\" required></p>\n\
         <p><label for=\"to\">To</label> <input type=\"date\" id=\"to\" name=\"to\" value=\"{to}\" required></p>\n\
         <p><label for=\"group\">One line per</label> <select id=\"group\" name=\"group\">\
         <option value=\"day\"{}>day of sale</option><option value=\"show\"{}>show</option></select></p>\n\
         <p><button type=\"submit\" name=\"format\" value=\"html\" class=\"primary\">Show the totals</button> \
         <button type=\"submit\" name=\"format\" value=\"csv\">Download CSV</button></p>\n</form>\n",
        sel("day"),
        sel("show"),
    );
    if let Some(r) = report {
        main.push_str("<h2>Totals</h2>\n");
        if r.totals.is_empty() {
            main.push_str("<p>No sales in these days.</p>\n");
        } else {
            let _ = write!(
                main,
                "<div class=\"grid-wrap\" role=\"region\" aria-label=\"Totals\" tabindex=\"0\"><table class=\"order ops\" id=\"totals\">\n<caption>Totals by currency</caption>\n\
                 <thead><tr><th scope=\"col\">Currency</th>{SALES_HEAD}</tr></thead>\n<tbody>\n"
            );
            for t in &r.totals {
                main.push_str(&sales_row(&escape(&t.currency), t));
            }
            main.push_str("</tbody>\n</table></div>\n");
            let _ = write!(
                main,
                "<h2>Lines</h2>\n<div class=\"grid-wrap\" role=\"region\" aria-label=\"Lines\" tabindex=\"0\"><table class=\"order ops\" id=\"lines\">\n<caption>One line per {}</caption>\n\
                 <thead><tr><th scope=\"col\">{}</th>{SALES_HEAD}</tr></thead>\n<tbody>\n",
                if group == "show" { "show" } else { "day" },
                if group == "show" { "Show" } else { "Day" },
            );
            for l in &r.lines {
                let head = match (&l.day, &l.title) {
                    (Some(d), _) => escape(d),
                    (None, Some(t)) => format!(
                        "{} ({})",
                        escape(t),
                        when(l.show_starts_at.as_deref().unwrap_or_default())
                    ),
                    _ => String::new(),
                };
                main.push_str(&sales_row(&head, l));
            }
            main.push_str("</tbody>\n</table></div>\n");
        }
    }
    page(c, "Sales reports", main, None)
}

// ------------------------------------------------------------ refunds

/// The refunds needing attention, with the two actions on FAILED ones.
pub fn refunds(c: &Console<'_>, city: &str, list: &RefundList, done: Option<&str>) -> String {
    let ec = escape(city);
    let mut main = String::from("<h1>Refunds needing attention</h1>\n");
    if list.refunds.is_empty() {
        main.push_str("<p>None: every refund has reached its buyer.</p>\n");
    }
    for r in &list.refunds {
        let id = escape(&r.id);
        let _ = write!(
            main,
            "<section class=\"panel refund\" aria-labelledby=\"r-{id}\">\n<h2 id=\"r-{id}\">{} — {}</h2>\n\
             <p>{} refund of {}, {} attempt(s), waiting {} min.</p>\n<p>Last error: {}</p>\n",
            escape(&category_name(&r.status)),
            escape(r.booking_number.as_deref().unwrap_or("no booking")),
            escape(&r.reason),
            money(r.amount_minor, &r.currency),
            r.attempts,
            r.age_seconds / 60,
            escape(r.last_error.as_deref().unwrap_or("—")),
        );
        if r.status == "FAILED" {
            let _ = write!(
                main,
                "<form method=\"post\" action=\"/ops/c/{ec}/refunds/{id}/retry\" class=\"inline-form\">{csrf}\
                 <p><button type=\"submit\" aria-describedby=\"r-{id}\">Retry</button></p></form>\n\
                 <form method=\"post\" action=\"/ops/c/{ec}/refunds/{id}/settle\">{csrf}\n\
                 <p><label for=\"note-{id}\">How it was paid back (required)</label>\
                 <input type=\"text\" id=\"note-{id}\" name=\"note\" required maxlength=\"1000\"></p>\n\
                 <p><label for=\"ref-{id}\">Bank or transfer reference (optional)</label>\
                 <input type=\"text\" id=\"ref-{id}\" name=\"gateway_reference\" maxlength=\"200\"></p>\n\
                 <p><button type=\"submit\" aria-describedby=\"r-{id}\">Settled by hand</button></p></form>\n",
                csrf = csrf_field(c.csrf)
            );
        } else {
            main.push_str("<p>The refund worker is still sending it; nothing to do yet.</p>\n");
        }
        main.push_str("</section>\n");
    }
    let status = match done {
        Some("retried") => Some("The refund will be sent again now.".to_owned()),
        Some("settled") => Some("The refund is recorded as paid back by hand.".to_owned()),
        _ => None,
    };
    page(c, "Refunds", main, status)
}

// -------------------------------------------------------------- errors

/// An error page: the region's (or the edge's) message, and a way on.
pub fn error(c: &Console<'_>, status: u16, message: &str) -> String {
    let title = match status {
        401 => "Please sign in",
        403 => "Not allowed",
        404 => "Not found",
        409 => "That cannot be done now",
        422 => "That was not accepted",
        429 => "Too many requests",
        s if s >= 500 => "Please try again shortly",
        _ => "That request was not understood",
    };
    let mut main = format!(
        "<h1>{}</h1>\n<p role=\"alert\">{}</p>\n",
        escape(title),
        escape(message)
    );
    match c.city {
        Some(city) => {
            let _ = writeln!(
                main,
                "<p><a href=\"/ops/c/{}\">Back to the city's shows</a></p>",
                escape(city)
            );
        }
        None => main.push_str("<p><a href=\"/ops\">Back to the console</a></p>\n"),
    }
    page(c, title, main, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::city::tests::show as a_show;
    use crate::pages::layout::tests::assert_page_rules;
    use shared::token::{Grant, Scope};

    fn op() -> Operator {
        Operator {
            sub: "ops<ann>".into(),
            grant: Grant::new(vec!["mum".into()], vec![Scope::Read, Scope::Refunds]).unwrap(),
            exp: 0,
        }
    }

    fn occupancy() -> Occupancy {
        serde_json::from_value(serde_json::json!({
            "show_id": "x", "as_of": "2030-01-15T10:00:00.123Z",
            "categories": [
                { "category": "PREMIUM", "total": 4, "available": 1, "held": 1, "booked": 2 },
                { "category": "REGULAR", "total": 6, "available": 6, "held": 0, "booked": 0 }
            ],
            "totals": { "total": 10, "available": 7, "held": 1, "booked": 2 }
        }))
        .unwrap()
    }

    fn bookings() -> ShowBookings {
        serde_json::from_value(serde_json::json!({
            "bookings": [{ "id": "b1", "number": "BMS1", "user_id": "<b>eve</b>@x.com", "status": "CONFIRMED",
                "seats": ["A1", "A2"], "amount_minor": 50000, "currency": "INR", "refund_status": null,
                "created_at": "2030-01-15T09:00:00Z", "cancelled_at": null }],
            "next_after": "b1"
        }))
        .unwrap()
    }

    fn seats() -> SeatMap {
        serde_json::from_value(serde_json::json!({
            "show_id": "01a2205a-d387-7029-933e-ebdbc50f0011",
            "available": 1, "held": 0, "booked": 1,
            "seats": [
                { "label": "A1", "category": "PREMIUM", "status": "BOOKED" },
                { "label": "A2", "category": "PREMIUM", "status": "AVAILABLE" }
            ]
        }))
        .unwrap()
    }

    fn console(op: &Operator) -> Console<'_> {
        Console {
            op: Some(op),
            csrf: "tok\"en",
            city: Some("mum"),
        }
    }

    #[test]
    fn sign_in_asks_for_a_token_with_a_csrf_field() {
        let html = signin("t0k", Some("That token has <expired>."));
        assert_page_rules(&html);
        assert!(html.contains("name=\"csrf\" value=\"t0k\""));
        assert!(html.contains("<label for=\"token\">"));
        assert!(html.contains("That token has &lt;expired&gt;."));
        assert!(html.contains("aria-invalid=\"true\""));
    }

    #[test]
    fn the_show_page_counts_by_category_and_escapes_the_buyers() {
        let (op, s) = (op(), a_show());
        let (occ, map, b) = (occupancy(), seats(), bookings());
        let html = show(
            &console(&op),
            &ShowPage {
                city: "mum",
                show: &s,
                occupancy: &occ,
                seats: &map,
                bookings: &b,
                after: None,
            },
        );
        assert_page_rules(&html);
        assert!(html.contains(
            "<tr data-cat=\"PREMIUM\"><th scope=\"row\">Premium</th><td>4</td><td>1</td><td>1</td><td>2</td></tr>"
        ));
        assert!(html.contains("<td>10</td><td>7</td><td>1</td><td>2</td>"));
        assert!(html.contains("&lt;b&gt;eve&lt;/b&gt;@x.com"), "{html}");
        assert!(!html.contains("<b>eve"));
        assert!(html.contains("aria-label=\"Row A, seat 1, Premium, sold\""));
        assert!(html.contains("?after=b1\" rel=\"next\""));
        assert!(html.contains("ops&lt;ann&gt;"), "the operator, escaped");
        assert!(
            html.contains("name=\"csrf\" value=\"tok&quot;en\""),
            "sign-out form"
        );
        assert!(!html.contains("type=\"checkbox\""), "read-only map");
        // The script's hooks for the live map: where to listen, each
        // seat's place and category, the counts' rows.
        assert!(html.contains(
            "id=\"ops-seat-map\" aria-labelledby=\"map-heading\" \
             data-live=\"/v1/c/mum/shows/01a2205a-d387-7029-933e-ebdbc50f0011\""
        ));
        assert!(html.contains(
            "<span class=\"seat available\" role=\"img\" data-ord=\"1\" data-cat=\"PREMIUM\" data-state=\"available\""
        ));
        assert!(
            html.contains("id=\"occupancy-as-of\"") && html.contains("id=\"live-notice\" hidden")
        );
        assert!(html
            .contains("Open sale: anyone signed in may hold seats. <a href=\"/ops/c/mum/shows/"));
    }

    #[test]
    fn cancelling_says_what_happens_and_needs_a_reason() {
        let (op, s) = (op(), a_show());
        let html = cancel_confirm(
            &console(&op),
            "mum",
            &s,
            &occupancy(),
            &bookings(),
            Some("Give a reason."),
        );
        assert_page_rules(&html);
        assert!(html.contains("Confirmed bookings to refund: <strong>1</strong> (at least"));
        assert!(html.contains("name=\"reason\""));
        assert!(html.contains(" required"));
        assert!(html.contains("role=\"alert\">Give a reason."));
        let done = cancellation(
            &console(&op),
            "mum",
            "s1",
            true,
            &serde_json::json!({ "status": "<RUNNING>", "bookings_total": 3 }),
        );
        assert_page_rules(&done);
        assert!(done.contains("&lt;RUNNING&gt;") && done.contains("<dd>3</dd>"));
        assert!(done.contains("href=\"/ops/c/mum/shows/s1/cancellation\""));
    }

    #[test]
    fn refunds_offer_retry_and_settle_only_when_failed() {
        let op = op();
        let list: RefundList = serde_json::from_value(serde_json::json!({ "refunds": [
            { "id": "r1", "status": "FAILED", "booking_number": "BMS1", "reason": "cancellation",
              "amount_minor": 25000, "currency": "INR", "attempts": 3,
              "last_error": "<script>x</script>", "age_seconds": 600 },
            { "id": "r2", "status": "PENDING", "booking_number": null, "reason": "compensation",
              "amount_minor": 100, "currency": "INR", "attempts": 1, "last_error": null, "age_seconds": 5 }
        ]}))
        .unwrap();
        let html = refunds(&console(&op), "mum", &list, Some("settled"));
        assert_page_rules(&html);
        assert!(html.contains("action=\"/ops/c/mum/refunds/r1/retry\""));
        assert!(html.contains("action=\"/ops/c/mum/refunds/r1/settle\""));
        assert!(!html.contains("refunds/r2/"));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("name=\"note\" required"));
        assert!(html.contains("recorded as paid back by hand"));
    }

    #[test]
    fn reports_and_lookup_and_errors() {
        let op = op();
        let today = NaiveDate::from_ymd_opt(2030, 1, 15).unwrap();
        let report: SalesReport = serde_json::from_value(serde_json::json!({
            "lines": [{ "day": "2030-01-14", "currency": "INR", "bookings_confirmed": 2, "seats_sold": 3,
                "gross_minor": 75000, "bookings_cancelled": 0, "refunded_minor": 0,
                "refunds_pending_minor": 0, "refunds_failed_minor": 0, "net_minor": 75000 }],
            "totals": [{ "currency": "INR", "bookings_confirmed": 2, "seats_sold": 3,
                "gross_minor": 75000, "bookings_cancelled": 0, "refunded_minor": 0,
                "refunds_pending_minor": 0, "refunds_failed_minor": 0, "net_minor": 75000 }]
        }))
        .unwrap();
        let html = reports(&console(&op), "mum", today, None, Some(&report));
        assert_page_rules(&html);
        assert!(html.contains("value=\"2030-01-08\"") && html.contains("value=\"2030-01-16\""));
        assert!(html.contains("<th scope=\"row\">INR</th><td>2</td><td>3</td><td>₹750</td>"));
        assert!(html.contains("name=\"format\" value=\"csv\""));
        let lookup: BookingLookup = serde_json::from_value(serde_json::json!({
            "booking": { "id": "b", "number": "BMS<1>", "status": "CANCELLED", "seats": [{"label": "A1"}],
                "amount_minor": 25000, "currency": "INR" },
            "user_id": "eve@x.com",
            "refund": { "id": "r", "status": "FAILED", "amount_minor": 25000, "attempts": 2 }
        }))
        .unwrap();
        let html = booking(&console(&op), "mum", Some("BMS\"1"), Some(&lookup), false);
        assert_page_rules(&html);
        assert!(html.contains("Booking BMS&lt;1&gt;") && html.contains("value=\"BMS&quot;1\""));
        assert!(html.contains("failed") && html.contains("/ops/c/mum/refunds"));
        assert!(!html.contains("resend-confirmation") && !html.contains("scope-notice"));
        // A confirmed booking: its confirmation again, with the scope.
        let mut confirmed = lookup.clone();
        confirmed.booking.status = "CONFIRMED".into();
        confirmed.booking.number = "BMS2".into();
        let html = booking(&console(&op), "mum", Some("BMS2"), Some(&confirmed), true);
        assert_page_rules(&html);
        assert!(html.contains("id=\"scope-notice\">Sending a confirmation again needs"));
        assert!(html.contains("The confirmation will be sent again now"));
        let seller = Operator {
            sub: "ops".into(),
            grant: Grant::new(vec!["mum".into()], vec![Scope::Sales]).unwrap(),
            exp: 0,
        };
        let html = booking(
            &console(&seller),
            "mum",
            Some("BMS2"),
            Some(&confirmed),
            false,
        );
        assert_page_rules(&html);
        assert!(html.contains(
            "<form method=\"post\" action=\"/ops/c/mum/bookings/BMS2/resend-confirmation\">"
        ));
        assert!(html.contains("Send the confirmation again</button>"));
        let e = error(
            &Console {
                op: Some(&op),
                csrf: "",
                city: None,
            },
            403,
            "Your grant does not reach <del>.",
        );
        assert_page_rules(&e);
        assert!(e.contains("Not allowed") && e.contains("reach &lt;del&gt;."));
        let home = home(&console(&op), &[("mum".into(), "Mumbai".into())]);
        assert_page_rules(&home);
        assert!(home.contains("href=\"/ops/c/mum\"") && home.contains("read, refunds"));
        assert!(home.contains(">Mumbai <span class=\"code\">(mum)</span></a>"));
        let day = shows(&console(&op), "mum", "Mumbai", today, &[a_show()]);
        assert_page_rules(&day);
        assert!(day.contains("href=\"/ops/c/mum/shows/"));
        assert!(day.contains("<h1>Shows in Mumbai on 2030-01-15</h1>"));
        assert!(day.contains("date=2030-01-14") && day.contains("date=2030-01-16"));
    }
}
