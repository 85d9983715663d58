//! The waiting room's landing page for browsers: the same state as the
//! JSON status, as a plain HTML document that works without JavaScript
//! or CSS. It refreshes itself (`<meta http-equiv="refresh">`) as often
//! as the status says, joins with an ordinary form POST, declares its
//! language, uses real headings and a definition list, and puts the
//! changing status in an `aria-live` region so screen readers announce
//! it. Everything interpolated is escaped.

use std::fmt::Write as _;

use crate::waiting_room::{State, StatusView};

/// What the page is about.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// City code.
    pub city: &'a str,
    /// Show (= sale) id.
    pub show: &'a str,
    /// The user's status (`None`: not signed in).
    pub view: Option<&'a StatusView>,
    /// The CSRF token the join form carries (`shared::csrf`).
    pub csrf: &'a str,
}

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

/// "45 seconds", "3 minutes", "1 hour 5 minutes".
pub fn duration(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        0..=59 => plural(secs, "second"),
        60..=3599 => {
            let m = (secs + 30) / 60;
            plural(m, "minute")
        }
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

fn join_form(p: &Page<'_>, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/c/{}/sales/{}/join\">\n<input type=\"hidden\" name=\"{}\" value=\"{}\">\n<p><button type=\"submit\">{}</button></p>\n</form>\n",
        escape(p.city),
        escape(p.show),
        shared::csrf::FIELD,
        escape(p.csrf),
        escape(label)
    )
}

/// What the user's state means, in `status`, and what they can do about
/// it (a join form, their pass), in `after`.
fn describe_state(p: &Page<'_>, v: &StatusView, status: &mut String, after: &mut String) {
    match v.state {
        State::NotJoined => {
            status.push_str("<p><strong>You are not in the queue yet.</strong></p>\n");
            after.push_str(&join_form(p, "Join the queue"));
        }
        State::Dropped => {
            status.push_str(
                "<p><strong>You lost your place</strong> because this page was not refreshed for a while. \
                 You can join again; you will be placed at the back of the queue.</p>\n",
            );
            after.push_str(&join_form(p, "Join the queue again"));
        }
        State::Expired => {
            status.push_str(
                "<p><strong>Your admission pass has expired.</strong> \
                 You can join again; you will be placed at the back of the queue.</p>\n",
            );
            after.push_str(&join_form(p, "Join the queue again"));
        }
        State::PreQueue => {
            let _ = writeln!(
                status,
                "<p><strong>You are in the queue.</strong> The sale opens in about {}. \
                 At opening, everyone who joined before then is put in a random order: \
                 joining earlier neither helps nor hurts.</p>",
                duration(v.wait_min_s)
            );
        }
        State::Waiting => {
            let _ = writeln!(
                status,
                "<p><strong>You are number {} in the queue.</strong></p>\n<dl>\n\
                 <dt>People ahead of you</dt><dd>{}</dd>\n\
                 <dt>Estimated wait</dt><dd>between {} and {}</dd>\n</dl>",
                v.position.unwrap_or(0),
                v.ahead.unwrap_or(0),
                duration(v.wait_min_s),
                duration(v.wait_max_s)
            );
        }
        State::Ready => {
            status.push_str(
                "<p><strong>It is your turn.</strong> Your admission pass is being issued: \
                 this page shows it in a moment.</p>\n",
            );
        }
        State::Admitted => {
            let _ = writeln!(
                status,
                "<p><strong>It is your turn.</strong> Choose your seats now: your admission pass \
                 is valid until <time datetime=\"{0}\">{0}</time>.</p>",
                escape(v.pass_expires_at.as_deref().unwrap_or(""))
            );
            let _ = writeln!(
                after,
                "<h2>Your admission pass</h2>\n\
                 <p>The booking app sends it with your seat request (as the <code>Admission-Pass</code> header). \
                 It works only for you and only for this sale.</p>\n\
                 <p><label for=\"pass\">Admission pass</label><br>\n\
                 <textarea id=\"pass\" readonly rows=\"4\" cols=\"60\">{}</textarea></p>",
                escape(v.pass.as_deref().unwrap_or(""))
            );
        }
    }
}

/// The committed seed of the early queue, and the seed once revealed.
fn describe_fairness(v: &StatusView, after: &mut String) {
    if let Some(c) = &v.seed_commitment {
        let _ = writeln!(
            after,
            "<h2>Fair ordering</h2>\n<p>Before the sale opened we published this commitment to the \
             random seed that orders the early queue: <code>{}</code> (SHA-256 of the seed).</p>",
            escape(c)
        );
        match &v.seed {
            Some(seed) => {
                let _ = writeln!(
                    after,
                    "<p>The seed is <code>{}</code>. Your place in the early queue is the first 12 hex \
                     digits of SHA-1(seed, \":\", your user id), smallest first, so you can check it.</p>",
                    escape(seed)
                );
            }
            None => after.push_str("<p>The seed itself is revealed when the sale opens.</p>\n"),
        }
    }
}

/// The HTML document.
pub fn render(p: &Page<'_>) -> String {
    let refresh = p.view.map_or(0, |v| v.refresh_after_s);
    let mut status = String::new();
    let mut after = String::new();
    match p.view {
        None => {
            status.push_str(
                "<p>Sign in to join the queue for this sale, then come back to this page.</p>\n",
            );
        }
        Some(v) => {
            let _ = writeln!(
                status,
                "<p>Sale opens at <time datetime=\"{0}\">{0}</time>.</p>",
                escape(&v.opens_at)
            );
            describe_state(p, v, &mut status, &mut after);
            if matches!(v.state, State::PreQueue | State::Waiting) {
                let _ = writeln!(
                    status,
                    "<p>Keep this page open: it refreshes itself every {}. \
                     If it is not refreshed for a while, you lose your place.</p>",
                    duration(refresh.max(1))
                );
            }
            describe_fairness(v, &mut after);
        }
    }
    let meta = if refresh > 0 {
        format!("<meta http-equiv=\"refresh\" content=\"{refresh}\">\n")
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n{meta}\
         <title>Waiting room</title>\n</head>\n<body>\n<main>\n<h1>Waiting room</h1>\n\
         <p>Show <code>{show}</code> in {city}.</p>\n\
         <section aria-live=\"polite\" aria-atomic=\"true\">\n<h2>Your status</h2>\n{status}</section>\n\
         {after}</main>\n</body>\n</html>\n",
        show = escape(p.show),
        city = escape(p.city),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        render(&Page {
            city: "mum",
            show: "s\"><script>",
            view: v,
            csrf: "tok\"en",
        })
    }

    #[test]
    fn a_ready_page_says_it_is_your_turn_and_comes_back_in_a_second() {
        let mut v = view(State::Ready);
        v.pass = None;
        v.pass_in_ms = Some(400);
        v.refresh_after_s = 1;
        let html = page(Some(&v));
        if let Ok(path) = std::env::var("HTML_DUMP") {
            std::fs::write(path, &html).expect("dump");
        }
        assert!(html.contains("It is your turn."), "{html}");
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"1\">"));
        assert!(!html.contains("ap1."), "no pass before its instant");
        assert!(!html.contains("<form"), "nothing to join");
    }

    #[test]
    fn the_page_is_accessible_and_refreshes_itself() {
        let v = view(State::Waiting);
        let html = page(Some(&v));
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("aria-live=\"polite\""));
        assert!(html.contains("<h1>"));
        assert!(html.contains("number 12 in the queue"));
        assert!(html.contains("between 1 minute and 2 minutes"));
        assert!(!html.contains("<script>"), "escaped");
        assert!(!html.contains("<form"), "no join form while in line");
    }

    #[test]
    fn joining_works_without_javascript() {
        let v = view(State::NotJoined);
        let html = page(Some(&v));
        assert!(html.contains(
            "<form method=\"post\" action=\"/c/mum/sales/s&quot;&gt;&lt;script&gt;/join\">"
        ));
        assert!(html.contains("<button type=\"submit\">Join the queue</button>"));
        assert!(
            html.contains("<input type=\"hidden\" name=\"csrf\" value=\"tok&quot;en\">"),
            "the form carries its CSRF token, escaped"
        );
        let dropped = page(Some(&view(State::Dropped)));
        assert!(dropped.contains("lost your place") && dropped.contains("<form"));
        let signed_out = page(None);
        assert!(signed_out.contains("Sign in") && !signed_out.contains("refresh"));
    }

    #[test]
    fn the_admitted_page_shows_the_pass_and_no_refresh() {
        let mut v = view(State::Admitted);
        v.refresh_after_s = 0;
        v.seed = Some("s33d".into());
        let html = page(Some(&v));
        assert!(html.contains("It is your turn"));
        assert!(html.contains("ap1.x&lt;y"));
        assert!(html.contains("<label for=\"pass\">"));
        assert!(html.contains("s33d"));
        assert!(!html.contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(45), "45 seconds");
        assert_eq!(duration(89), "1 minute");
        assert_eq!(duration(90), "2 minutes");
        assert_eq!(duration(3600), "1 hour");
        assert_eq!(duration(3900), "1 hour 5 minutes");
    }
}
