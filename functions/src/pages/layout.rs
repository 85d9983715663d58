//! What every page shares: escaping, the document shell (language,
//! header with navigation and the session, one script, one style sheet,
//! the `aria-live` status region), the security headers, and how money
//! and venue-local times are written.
//!
//! Language: the data has no language per city (a movie's `language` is
//! the film's, not the buyer's), so pages are in English (`lang="en"`);
//! [`Lang`] is where a city's language would plug in.
//!
//! Times: the region core gives every show's start in the venue's zone
//! (`starts_at_local`, with its UTC offset, and the IANA `time_zone`).
//! Pages show that local time and the zone's name; other instants of the
//! same show (a hold's expiry, a refund deadline) are shown at the same
//! offset. That is exact unless a daylight-saving change falls between
//! them and the show's start (then off by the change); chrono-tz would
//! fix it at ~100 KB of WASM, which the Worker's cold start pays for.

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, Utc};

use super::assets;

/// Escapes text for HTML content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page language (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English, the fallback.
    #[default]
    En,
}

impl Lang {
    /// The BCP 47 tag.
    pub fn tag(self) -> &'static str {
        "en"
    }
}

/// Who is looking: the signed-in user (their e-mail) and the CSRF token
/// their forms and script carry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Viewer<'a> {
    /// The user id (the normalised e-mail), if signed in.
    pub user: Option<&'a str>,
    /// The session's CSRF token (empty when signed out).
    pub csrf: &'a str,
}

/// A hidden CSRF field for a form.
pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        shared::csrf::FIELD,
        escape(token)
    )
}

/// A page's frame.
#[derive(Debug, Clone, Default)]
pub struct Shell<'a> {
    /// `<title>` (and nothing else: the `<h1>` is in the body).
    pub title: &'a str,
    /// Who is looking.
    pub viewer: Viewer<'a>,
    /// Extra `<head>` markup (trusted: built by the renderers).
    pub head: String,
    /// The `<main>` content (trusted: built by the renderers).
    pub main: String,
    /// A message for the status region, announced on load (escaped here).
    pub status: Option<String>,
    /// Language.
    pub lang: Lang,
    /// The header's brand link and navigation, replacing the buyer's
    /// (trusted: built by the renderers; the operator console's).
    pub header: Option<String>,
}

/// The HTML document.
pub fn document(s: &Shell<'_>) -> String {
    let header = s.header.clone().unwrap_or_else(|| buyer_header(s.viewer));
    let status = s
        .status
        .as_deref()
        .map(|m| format!("<p>{}</p>", escape(m)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · Tickets</title>\n<link rel=\"stylesheet\" href=\"{css}\">\n\
         <script src=\"{js}\" defer></script>\n<meta name=\"csrf-token\" content=\"{csrf}\">\n{head}</head>\n<body>\n\
         <header class=\"site\">{header}</header>\n\
         <main id=\"main\">\n<div id=\"status\" class=\"status\" role=\"status\" aria-live=\"polite\">{status}</div>\n{main}</main>\n\
         </body>\n</html>\n",
        lang = s.lang.tag(),
        title = escape(s.title),
        css = assets::CSS.path(),
        js = assets::JS.path(),
        csrf = escape(s.viewer.csrf),
        head = s.head,
        main = s.main,
    )
}

/// The buyer's header: the brand, their bookings, signing in or out.
fn buyer_header(viewer: Viewer<'_>) -> String {
    let mut nav = String::from("<a href=\"/bookings\">My bookings</a>");
    match viewer.user {
        Some(user) => {
            let _ = write!(
                nav,
                "<form method=\"post\" action=\"/signout\" class=\"inline\">{}\
                 <span class=\"who\">{}</span> <button type=\"submit\" class=\"link\">Sign out</button></form>",
                csrf_field(viewer.csrf),
                escape(user)
            );
        }
        None => nav.push_str("<a href=\"/signin\">Sign in</a>"),
    }
    format!("<a class=\"brand\" href=\"/\">Tickets</a><nav aria-label=\"Account\">{nav}</nav>")
}

/// An error page: what went wrong, and a way on.
pub fn error_page(status: u16, message: &str, viewer: Viewer<'_>) -> String {
    let title = match status {
        401 => "Please sign in",
        403 => "Not allowed",
        404 => "Not found",
        409 | 410 => "That did not work",
        429 => "Too many requests",
        503 => "Please try again shortly",
        _ if status >= 500 => "Something went wrong",
        _ => "That request was not understood",
    };
    let mut main = format!(
        "<h1>{}</h1>\n<p role=\"alert\">{}</p>\n",
        escape(title),
        escape(message)
    );
    if status == 401 {
        main.push_str("<p><a href=\"/signin\">Sign in</a></p>\n");
    }
    main.push_str("<p><a href=\"/\">Back to the cities</a></p>\n");
    document(&Shell {
        title,
        viewer,
        main,
        ..Shell::default()
    })
}

/// The security headers of every HTML page. No inline script or style
/// anywhere (`'self'` only); sockets only to this origin; never framed.
pub fn security_headers(origin: &str) -> Vec<(&'static str, String)> {
    // `connect-src 'self'` covers ws(s) to the same host in CSP 3, but not
    // in every browser still in use: name the socket origin as well.
    let ws = origin
        .strip_prefix("https://")
        .map(|h| format!("wss://{h}"))
        .or_else(|| origin.strip_prefix("http://").map(|h| format!("ws://{h}")))
        .unwrap_or_default();
    vec![
        (
            "Content-Security-Policy",
            format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 connect-src 'self' {ws}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
            ),
        ),
        ("X-Content-Type-Options", "nosniff".into()),
        ("Referrer-Policy", "same-origin".into()),
        ("X-Frame-Options", "DENY".into()),
        ("Cache-Control", "private, no-store".into()),
    ]
}

/// Minor units as money (`shared::display::money`), escaped for HTML.
pub fn money(minor: i64, currency: &str) -> String {
    escape(&shared::display::money(minor, currency))
}

/// A venue-local RFC 3339 time (`2030-01-15T19:30:00+05:30`).
pub fn parse_local(local: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(local).ok()
}

/// `instant` at the offset of `like` (a venue-local time of the same
/// show); UTC when `like` does not parse.
pub fn at_venue(instant: DateTime<Utc>, like: &str) -> DateTime<FixedOffset> {
    let offset = parse_local(like).map_or_else(
        || FixedOffset::east_opt(0).expect("zero offset"),
        |t| *t.offset(),
    );
    instant.with_timezone(&offset)
}

/// `Tue 15 Jan 2030, 19:30`.
pub fn long_time(t: &DateTime<FixedOffset>) -> String {
    shared::display::long_time(t)
}

/// A `<time>` element for a venue-local time, with the zone's name:
/// `Tue 15 Jan 2030, 19:30 (Asia/Kolkata)`.
pub fn time_element(t: &DateTime<FixedOffset>, zone: &str) -> String {
    format!(
        "<time datetime=\"{}\">{}</time> <span class=\"zone\">({})</span>",
        t.to_rfc3339(),
        long_time(t),
        escape(zone)
    )
}

/// A show's local start as a `<time>`, falling back to UTC.
pub fn show_time(local: &str, utc: DateTime<Utc>, zone: &str) -> String {
    match parse_local(local) {
        Some(t) => time_element(&t, zone),
        None => time_element(&utc.fixed_offset(), "UTC"),
    }
}

/// Sentence case of a category code: `PREMIUM` → `Premium`.
pub fn category_name(code: &str) -> String {
    let lower = code.to_lowercase().replace('_', " ");
    let mut c = lower.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// "45 seconds", "3 minutes", "1 hour 5 minutes".
pub fn duration(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        0..=59 => plural(secs, "second"),
        60..=3599 => plural((secs + 30) / 60, "minute"),
        _ => {
            let (h, m) = (secs / 3600, (secs % 3600 + 30) / 60);
            if m == 0 {
                plural(h, "hour")
            } else {
                format!("{} {}", plural(h, "hour"), plural(m, "minute"))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks what every page must be: one language, no inline script or
    /// style, the script and style sheet from `/assets/`.
    pub(crate) fn assert_page_rules(html: &str) {
        assert!(html.starts_with("<!doctype html>"), "{html}");
        assert!(html.contains("<html lang=\"en\">"));
        assert_eq!(html.matches("<script").count(), 1, "one script: {html}");
        assert!(
            html.contains(&format!(
                "<script src=\"{}\" defer></script>",
                assets::JS.path()
            )),
            "{html}"
        );
        assert!(!html.contains("<style"), "no inline style: {html}");
        assert!(!html.contains(" style="), "no style attribute: {html}");
        let inline_handler = html.match_indices(" on").any(|(i, _)| {
            let rest = &html.as_bytes()[i + 3..];
            let n = rest.iter().take_while(|b| b.is_ascii_lowercase()).count();
            n > 0 && rest.get(n) == Some(&b'=')
        });
        assert!(!inline_handler, "no inline event handler: {html}");
        assert!(html.contains("<h1"), "a heading: {html}");
        assert!(html.contains("aria-live=\"polite\""), "a status region");
        for form in html.split("<form").skip(1) {
            let form = form.split("</form>").next().unwrap_or_default();
            if form.contains("method=\"post\"") {
                assert!(form.contains("name=\"csrf\""), "CSRF field in {form}");
            }
        }
    }

    #[test]
    fn money_and_times() {
        assert_eq!(money(25000, "INR"), "₹250");
        assert_eq!(money(25050, "INR"), "₹250.50");
        assert_eq!(money(1205, "CHF"), "CHF 12.05");
        let utc = "2030-01-15T14:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let t = at_venue(utc, "2030-01-15T19:30:00+05:30");
        assert_eq!(long_time(&t), "Tue 15 Jan 2030, 19:30");
        assert!(show_time("2030-01-15T19:30:00+05:30", utc, "Asia/Kolkata")
            .contains("19:30</time> <span class=\"zone\">(Asia/Kolkata)"));
        assert_eq!(category_name("PREMIUM"), "Premium");
        assert_eq!(duration(3900), "1 hour 5 minutes");
    }

    #[test]
    fn security_headers_forbid_inline_code_and_framing() {
        let h = security_headers("https://tickets.example");
        let csp = &h
            .iter()
            .find(|(n, _)| *n == "Content-Security-Policy")
            .unwrap()
            .1;
        assert!(csp.contains("script-src 'self';"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains("wss://tickets.example"));
        assert!(!csp.contains("unsafe"));
        assert!(h
            .iter()
            .any(|(n, v)| *n == "X-Content-Type-Options" && v == "nosniff"));
        assert!(h.iter().any(|(n, _)| *n == "Referrer-Policy"));
    }

    #[test]
    fn error_pages_escape_and_follow_the_rules() {
        let html = error_page(404, "no <show>", Viewer::default());
        assert!(html.contains("no &lt;show&gt;"));
        assert_page_rules(&html);
    }
}
