//! `/c/{city}/sales/{show}`: the flash sale's landing page. It names the
//! event, venue and venue-local start; before opening it counts down and
//! shows the fairness notice with the committed seed; in line it shows
//! the position, the people ahead, an ETA range and a progress bar. The
//! script polls the JSON status and updates all of that without a reload;
//! without it, `<meta http-equiv="refresh">` (inside `<noscript>`) does.
//! An admitted user never sees this page: the edge stores the pass in a
//! cookie and sends them to the seat map.

use std::fmt::Write as _;

use shared::api::Show;

use super::layout::{csrf_field, document, duration, escape, show_time, Shell, Viewer};
use crate::waiting_room::{State, StatusView};

/// What the page shows.
#[derive(Debug, Clone, Copy)]
pub struct SalePage<'a> {
    /// City code.
    pub city: &'a str,
    /// Show (= sale) id.
    pub show: &'a str,
    /// The show, when the catalog could be read.
    pub details: Option<&'a Show>,
    /// The user's status (`None`: not signed in).
    pub view: Option<&'a StatusView>,
    /// The join form's CSRF token (the session's, `pages::session`).
    pub csrf: &'a str,
}

fn join_form(p: &SalePage<'_>, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/c/{}/sales/{}/join\">\n{}\n<p><button type=\"submit\" class=\"primary\">{}</button></p>\n</form>\n",
        escape(p.city),
        escape(p.show),
        csrf_field(p.csrf),
        escape(label)
    )
}

/// The status block: what the user's state means, and what they can do.
fn describe_state(p: &SalePage<'_>, v: &StatusView, out: &mut String) {
    match v.state {
        State::NotJoined => {
            out.push_str("<p><strong>You are not in the queue yet.</strong></p>\n");
            out.push_str(&join_form(p, "Join the queue"));
        }
        State::Dropped => {
            out.push_str(
                "<p><strong>You lost your place</strong> because this page was not refreshed for a while. \
                 You can join again; you will be placed at the back of the queue.</p>\n",
            );
            out.push_str(&join_form(p, "Join the queue again"));
        }
        State::Expired => {
            out.push_str(
                "<p><strong>Your turn to buy has ended.</strong> \
                 You can join again; you will be placed at the back of the queue.</p>\n",
            );
            out.push_str(&join_form(p, "Join the queue again"));
        }
        State::PreQueue => {
            let _ = writeln!(
                out,
                "<p><strong>You are in the queue.</strong> The sale opens in \
                 <strong id=\"sale-countdown\" class=\"countdown\" data-opens-at=\"{}\">about {}</strong>. \
                 At opening, everyone who joined before then is put in a random order: \
                 joining earlier neither helps nor hurts.</p>",
                escape(&v.opens_at),
                duration(v.wait_min_s)
            );
        }
        State::Waiting => {
            let _ = writeln!(
                out,
                "<p><strong>You are number <span id=\"sale-position\">{}</span> in the queue.</strong></p>\n\
                 <dl>\n<dt>People ahead of you</dt><dd id=\"sale-ahead\">{}</dd>\n\
                 <dt>Estimated wait</dt><dd id=\"sale-eta\">between {} and {}</dd>\n</dl>\n\
                 <p><label for=\"sale-progress\">Your progress</label>\n\
                 <progress id=\"sale-progress\" max=\"100\"></progress></p>",
                v.position.unwrap_or(0),
                v.ahead.unwrap_or(0),
                duration(v.wait_min_s),
                duration(v.wait_max_s)
            );
        }
        State::Ready => {
            out.push_str(
                "<p><strong>It is your turn.</strong> You will be taken to the seat map in a moment.</p>\n",
            );
        }
        State::Admitted => {
            let _ = writeln!(
                out,
                "<p><strong>It is your turn.</strong> <a href=\"/c/{}/shows/{}\">Choose your seats</a>.</p>",
                escape(p.city),
                escape(p.show)
            );
        }
    }
}

/// The committed seed of the early queue, and the seed once revealed.
fn describe_fairness(v: &StatusView, out: &mut String) {
    out.push_str("<h2>Fair ordering</h2>\n");
    match &v.seed_commitment {
        Some(c) => {
            let _ = writeln!(
                out,
                "<p>Everyone who joins before the sale opens is put in a random order at opening. \
                 The random seed was fixed before opening; this is its SHA-256 fingerprint: \
                 <code class=\"hash\">{}</code>.</p>",
                escape(c)
            );
            match &v.seed {
                Some(seed) => {
                    let _ = writeln!(
                        out,
                        "<p>The seed is <code class=\"hash\">{}</code>. Your place in the early queue is the first 12 \
                         hex digits of SHA-1(seed, \":\", your user id), smallest first, so you can check it.</p>",
                        escape(seed)
                    );
                }
                None => out.push_str("<p>The seed itself is revealed when the sale opens, so anyone can check the order.</p>\n"),
            }
        }
        None => out.push_str("<p>Everyone who joins before the sale opens is put in a random order at opening; the seed's fingerprint appears here once the first person joins.</p>\n"),
    }
}

/// The state as the JSON status spells it (the script compares them).
fn state_name(s: State) -> &'static str {
    match s {
        State::PreQueue => "pre_queue",
        State::Waiting => "waiting",
        State::Ready => "ready",
        State::Admitted => "admitted",
        State::NotJoined => "not_joined",
        State::Dropped => "dropped",
        State::Expired => "expired",
    }
}

/// The document.
pub fn render(p: &SalePage<'_>, viewer: Viewer<'_>) -> String {
    let refresh = p.view.map_or(0, |v| v.refresh_after_s);
    let title = p.details.map_or("Flash sale", |s| s.movie_title.as_str());
    let mut main = format!("<h1>{}</h1>\n", escape(title));
    match p.details {
        Some(s) => {
            let _ = writeln!(
                main,
                "<p>{}, {}<br>{}</p>",
                escape(&s.venue_name),
                escape(&s.screen_name),
                show_time(&s.starts_at_local, s.starts_at, &s.time_zone)
            );
        }
        None => main.push_str("<p>Flash sale.</p>\n"),
    }
    let _ = write!(
        main,
        "<section id=\"sale\" class=\"panel\" aria-labelledby=\"sale-heading\" data-status-url=\"/v1/c/{}/sales/{}/status\" \
         data-state=\"{}\" data-refresh=\"{}\">\n<h2 id=\"sale-heading\">Your place</h2>\n",
        escape(p.city),
        escape(p.show),
        p.view.map_or("signed_out", |v| state_name(v.state)),
        refresh
    );
    match p.view {
        None => main.push_str(
            "<p><a href=\"/signin\">Sign in</a> to join the queue for this sale, then come back to this page.</p>\n",
        ),
        Some(v) => {
            describe_state(p, v, &mut main);
            if matches!(v.state, State::PreQueue | State::Waiting) {
                let _ = writeln!(
                    main,
                    "<p>Keep this page open: it updates itself every {}. \
                     If it is not updated for a while, you lose your place.</p>",
                    duration(refresh.max(1))
                );
            }
        }
    }
    main.push_str("</section>\n");
    if let Some(v) = p.view {
        describe_fairness(v, &mut main);
    }
    let head = if refresh > 0 {
        format!("<noscript><meta http-equiv=\"refresh\" content=\"{refresh}\"></noscript>\n")
    } else {
        String::new()
    };
    document(&Shell {
        title,
        viewer,
        head,
        main,
        ..Shell::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::city::tests::show;
    use crate::pages::layout::tests::assert_page_rules;

    fn view(state: State) -> StatusView {
        StatusView {
            sale: "s".into(),
            state,
            position: Some(12),
            ahead: Some(7),
            wait_min_s: 80,
            wait_max_s: 125,
            refresh_after_s: 5,
            opens_at: "2030-01-15T04:30:00Z".into(),
            seed_commitment: Some("abc".into()),
            seed: None,
            pass: Some("ap1.x<y".into()),
            pass_expires_at: Some("2030-01-15T04:35:00Z".into()),
            pass_in_ms: None,
        }
    }

    fn page(v: Option<&StatusView>) -> String {
        let s = show();
        render(
            &SalePage {
                city: "mum",
                show: "s\"><script>",
                details: Some(&s),
                view: v,
                csrf: "tok\"en",
            },
            Viewer {
                user: Some("ann@example.com"),
                csrf: "t",
            },
        )
    }

    #[test]
    fn names_the_event_in_venue_time_and_refreshes_without_script() {
        let html = page(Some(&view(State::Waiting)));
        assert!(html.contains("<h1>Dune: Part Two</h1>"), "{html}");
        assert!(html.contains("Tue 15 Jan 2030, 19:30</time>"));
        assert!(html.contains("<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"));
        assert!(html.contains("number <span id=\"sale-position\">12</span>"));
        assert!(html.contains("between 1 minute and 2 minutes"));
        assert!(html.contains("<progress"));
        assert!(!html.contains("ap1."), "the pass is never shown");
        assert!(!html.contains("<script>"), "escaped");
        assert_page_rules(&html);
    }

    #[test]
    fn before_opening_a_countdown_and_the_commitment() {
        let html = page(Some(&view(State::PreQueue)));
        assert!(html.contains("data-opens-at=\"2030-01-15T04:30:00Z\""));
        assert!(html.contains("<code class=\"hash\">abc</code>"));
        assert!(html.contains("revealed when the sale opens"));
    }

    #[test]
    fn joining_works_without_javascript() {
        let html = page(Some(&view(State::NotJoined)));
        assert!(html.contains(
            "<form method=\"post\" action=\"/c/mum/sales/s&quot;&gt;&lt;script&gt;/join\">"
        ));
        assert!(html.contains("name=\"csrf\" value=\"tok&quot;en\""));
        assert_page_rules(&html);
        let out = page(None);
        assert!(out.contains("Sign in") && !out.contains("http-equiv"));
    }
}
