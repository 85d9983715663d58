//! The failed e-mail page (`/ops/c/{city}/mail`): messages the SMTP
//! server refused for good (`GET /v1/operator/mail?state=failed`), each
//! with **Send again**, and one form for all of them
//! (`POST /v1/operator/mail/resend`, scope `sales`). Pure: the list in,
//! the document out.

use std::fmt::Write as _;

use super::data::MailItem;
use super::render::{page, sales_notice, scroll_box, when, Console};
use crate::pages::layout::{csrf_field, escape};

/// What the mail page shows.
pub struct MailPage<'a> {
    /// City code.
    pub city: &'a str,
    /// This city's failed messages of the page, newest first.
    pub messages: &'a [MailItem],
    /// The next, older page's cursor.
    pub next_after: Option<&'a str>,
    /// This page's cursor (`None`: the newest).
    pub after: Option<&'a str>,
    /// The token allows `sales` (the forms are shown).
    pub can_send: bool,
    /// How many were just queued again (the status line).
    pub sent: Option<u32>,
}

/// A message kind in words.
fn kind_words(kind: &str) -> &str {
    match kind {
        "booking.confirmed" => "Booking confirmation",
        "booking.cancelled" => "Cancellation notice",
        "refund.succeeded" => "Refund notice",
        other => other,
    }
}

/// The mail page.
pub fn render(c: &Console<'_>, p: &MailPage<'_>) -> String {
    let ec = escape(p.city);
    let mut main = String::from(
        "<h1>E-mail not delivered</h1>\n<p>Messages the mail server refused for good (after its \
         permanent refusals ran out). Fix the cause first (the sender domain, the credentials), then \
         send them again: each goes out as the same message (same Message-ID), since it never arrived.</p>\n",
    );
    if p.messages.is_empty() {
        main.push_str(
            "<p id=\"no-mail\">None: every message has been sent or is on its way.</p>\n",
        );
    } else {
        if p.can_send {
            let _ = write!(
                main,
                "<form method=\"post\" action=\"/ops/c/{ec}/mail/resend\">{}\
                 <input type=\"hidden\" name=\"all\" value=\"1\">\n\
                 <p><button type=\"submit\" class=\"primary\">Send all failed messages of {ec} again</button></p></form>\n",
                csrf_field(c.csrf)
            );
        } else {
            main.push_str(&sales_notice(
                c,
                "Sending e-mail again",
                "and sign in with it to send these again",
            ));
        }
        let mut t = String::from(
            "<table class=\"order ops\" id=\"failed-mail\">\n<caption>Failed messages, newest first</caption>\n\
             <thead><tr><th scope=\"col\">Message</th><th scope=\"col\">To</th><th scope=\"col\">Booking</th>\
             <th scope=\"col\">Queued</th><th scope=\"col\">Attempts</th><th scope=\"col\">Server's answer</th>",
        );
        if p.can_send {
            t.push_str("<th scope=\"col\">Action</th>");
        }
        t.push_str("</tr></thead>\n<tbody>\n");
        for m in p.messages {
            let id = escape(&m.event_id);
            let booking = match &m.booking_number {
                Some(n) => format!(
                    "<a href=\"/ops/c/{ec}/bookings?number={n}\">{n}</a>",
                    n = escape(n)
                ),
                None => "—".into(),
            };
            let _ = write!(
                t,
                "<tr><th scope=\"row\">{}</th><td>{}</td><td>{booking}</td><td>{}</td><td>{}</td><td class=\"wrap\">{}</td>",
                escape(kind_words(&m.kind)),
                escape(&m.recipient),
                when(&m.created_at),
                m.attempts,
                escape(m.last_error.as_deref().unwrap_or("—")),
            );
            if p.can_send {
                // The button's name says which message (its kind and
                // buyer): "Send again" alone would not. An attribute, not
                // a hidden span: an absolutely placed span would escape
                // the table's scroll box and widen the page.
                let _ = write!(
                    t,
                    "<td><form method=\"post\" action=\"/ops/c/{ec}/mail/resend\" class=\"inline\">{}\
                     <input type=\"hidden\" name=\"event_id\" value=\"{id}\">\
                     <button type=\"submit\" aria-label=\"Send again: {} to {}\">Send again</button></form></td>",
                    csrf_field(c.csrf),
                    escape(kind_words(&m.kind)),
                    escape(&m.recipient)
                );
            }
            t.push_str("</tr>\n");
        }
        t.push_str("</tbody>\n</table>\n");
        main.push_str(&scroll_box("Failed messages", &t));
    }
    let mut pager = Vec::new();
    if p.after.is_some() {
        pager.push(format!("<a href=\"/ops/c/{ec}/mail\">Newest messages</a>"));
    }
    if let Some(next) = p.next_after {
        pager.push(format!(
            "<a href=\"/ops/c/{ec}/mail?after={}\" rel=\"next\">Older messages</a>",
            escape(next)
        ));
    }
    if !pager.is_empty() {
        let _ = writeln!(main, "<p>{}</p>", pager.join(" "));
    }
    let status = p.sent.map(|n| match n {
        0 => "Nothing was sent again: no failed message was left.".to_owned(),
        1 => "1 message will be sent again now.".to_owned(),
        n => format!("{n} messages will be sent again now."),
    });
    page(c, "E-mail not delivered", main, status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::layout::tests::assert_page_rules;
    use crate::pages::ops::session::Operator;
    use shared::token::{Grant, Scope};

    fn op(scopes: Vec<Scope>) -> Operator {
        Operator {
            sub: "ops".into(),
            grant: Grant::new(vec!["mum".into()], scopes).unwrap(),
            exp: 0,
        }
    }

    fn failed() -> Vec<MailItem> {
        serde_json::from_value(serde_json::json!([{
            "event_id": "e-1", "kind": "booking.confirmed", "recipient": "<ann>@x.com",
            "state": "failed", "attempts": 3, "last_error": "permanent error (554): 5.7.1 <no>",
            "created_at": "2026-12-05T10:00:00Z", "booking_number": "BMS1", "city": "mum"
        }]))
        .unwrap()
    }

    #[test]
    fn each_message_and_all_of_them_can_be_sent_again_with_the_scope() {
        let o = op(vec![Scope::Read, Scope::Sales]);
        let c = Console {
            op: Some(&o),
            csrf: "tok",
            city: Some("mum"),
        };
        let list = failed();
        let html = render(
            &c,
            &MailPage {
                city: "mum",
                messages: &list,
                next_after: Some("e-1"),
                after: None,
                can_send: true,
                sent: Some(2),
            },
        );
        assert_page_rules(&html);
        assert!(html.contains("action=\"/ops/c/mum/mail/resend\""));
        assert!(html.contains("name=\"event_id\" value=\"e-1\""));
        assert!(html.contains("name=\"all\" value=\"1\""));
        assert_eq!(
            html.matches("name=\"csrf\" value=\"tok\"").count(),
            3,
            "sign-out, all, one"
        );
        assert!(html.contains("&lt;ann&gt;@x.com") && html.contains("5.7.1 &lt;no&gt;"));
        assert!(html.contains("href=\"/ops/c/mum/bookings?number=BMS1\""));
        assert!(
            html.contains("aria-label=\"Send again: Booking confirmation to &lt;ann&gt;@x.com\"")
        );
        assert!(html.contains("?after=e-1\" rel=\"next\""));
        assert!(html.contains("2 messages will be sent again now."));

        let r = op(vec![Scope::Read]);
        let c = Console {
            op: Some(&r),
            csrf: "tok",
            city: Some("mum"),
        };
        let html = render(
            &c,
            &MailPage {
                city: "mum",
                messages: &list,
                next_after: None,
                after: None,
                can_send: false,
                sent: None,
            },
        );
        assert_page_rules(&html);
        assert!(!html.contains("/mail/resend"));
        assert!(html.contains("id=\"scope-notice\"") && html.contains("yours allows read."));
        let none = render(
            &c,
            &MailPage {
                city: "mum",
                messages: &[],
                next_after: None,
                after: None,
                can_send: false,
                sent: None,
            },
        );
        assert!(none.contains("id=\"no-mail\""));
    }
}
