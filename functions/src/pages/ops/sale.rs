//! A show's sale in the console (`/ops/c/{city}/shows/{id}/sale`): the
//! form's fields read and checked one by one, so each problem is told
//! next to its field; the region's `SetSale` they make; and the page.
//! The write itself is the edge's sale endpoint's own code
//! (`wasm::handlers::store_sale`, behind `PUT /v1/operator/sales/{show}`),
//! so the console and the API cannot drift apart.
//!
//! Times: the opening is typed in venue time (a `datetime-local` field)
//! and read at the UTC offset of the show's start, as every other time
//! of a show is shown (`layout`'s module comment has the one caveat: a
//! daylight-saving change between the opening and the show).

use std::fmt::Write as _;
use std::ops::RangeInclusive;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Timelike, Utc};
use shared::api::{SaleMode, SetSale, Show, ShowSale, WaitingRoomSettings};

use super::render::{page, show_heading, Console};
use crate::pages::layout::{csrf_field, duration, escape, parse_local, time_element};

/// A fresh form's waiting room (a show in an open sale has none yet):
/// the values docs/api.md uses.
const DEFAULT_RATE: &str = "50";
const DEFAULT_PASS_TTL_S: &str = "300";
const DEFAULT_GRACE_S: &str = "60";

/// The sale form's values as typed, so a refused form comes back as it
/// was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaleForm {
    /// `open` or `flash_sale`.
    pub mode: String,
    /// Venue-local `YYYY-MM-DDTHH:MM` (seconds allowed).
    pub opens_at: String,
    /// Admissions per second.
    pub rate_per_sec: String,
    /// Pass lifetime, seconds.
    pub pass_ttl_s: String,
    /// Dropout grace, seconds.
    pub grace_s: String,
}

/// A problem with one field: the field's name (its input's id) and what
/// to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// `sale_mode`, `opens_at`, `rate_per_sec`, `pass_ttl_s` or `grace_s`.
    pub field: &'static str,
    /// A sentence for the operator.
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }

    /// The id of the control the error summary links to (the first
    /// radio button for the sale mode).
    fn anchor(&self) -> &'static str {
        match self.field {
            "sale_mode" => "sale_mode-open",
            f => f,
        }
    }
}

/// The UTC offset of the show's start (UTC when it does not parse).
fn venue_offset(show: &Show) -> FixedOffset {
    parse_local(&show.starts_at_local).map_or_else(
        || FixedOffset::east_opt(0).expect("zero offset"),
        |t| *t.offset(),
    )
}

/// `instant` as a `datetime-local` value at the venue's offset (seconds
/// only when there are some).
fn local_value(instant: DateTime<Utc>, show: &Show) -> String {
    let t = instant.with_timezone(&venue_offset(show));
    if t.second() == 0 {
        t.format("%Y-%m-%dT%H:%M").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    }
}

/// A whole number of seconds in `range`, or the field's problem.
fn seconds(
    value: &str,
    field: &'static str,
    what: &str,
    range: &RangeInclusive<u32>,
) -> Result<u32, FieldError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            let message = if value.is_empty() {
                format!("Enter the {what} in seconds.")
            } else {
                format!(
                    "The {what} must be a whole number of seconds from {} to {}.",
                    range.start(),
                    range.end()
                )
            };
            FieldError::new(field, message)
        })
}

impl SaleForm {
    /// The form as the sale stands (a fresh waiting room's defaults for
    /// an open sale).
    pub fn from_stored(stored: &ShowSale, show: &Show) -> Self {
        match &stored.waiting_room {
            Some(r) => Self {
                mode: stored.sale_mode.as_db_str().to_owned(),
                opens_at: local_value(r.opens_at, show),
                rate_per_sec: r.rate_per_sec.to_string(),
                pass_ttl_s: r.pass_ttl_s.to_string(),
                grace_s: r.grace_s.to_string(),
            },
            None => Self {
                mode: stored.sale_mode.as_db_str().to_owned(),
                opens_at: String::new(),
                rate_per_sec: DEFAULT_RATE.to_owned(),
                pass_ttl_s: DEFAULT_PASS_TTL_S.to_owned(),
                grace_s: DEFAULT_GRACE_S.to_owned(),
            },
        }
    }

    /// The posted form.
    pub fn from_fields(fields: &[(String, String)]) -> Self {
        let get = |n: &str| {
            crate::pages::form::get(fields, n)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        Self {
            mode: get("sale_mode"),
            opens_at: get("opens_at"),
            rate_per_sec: get("rate_per_sec"),
            pass_ttl_s: get("pass_ttl_s"),
            grace_s: get("grace_s"),
        }
    }

    /// The sale the form asks for, or every field's problem. An open
    /// sale ignores the waiting-room fields (they stay on the page for
    /// a browser without script, filled or not).
    pub fn check(&self, show: &Show) -> Result<SetSale, Vec<FieldError>> {
        let mode = match SaleMode::from_db_str(&self.mode) {
            Some(m) => m,
            None => {
                return Err(vec![FieldError::new(
                    "sale_mode",
                    "Choose an open sale or a flash sale.",
                )])
            }
        };
        if mode == SaleMode::Open {
            return Ok(SetSale {
                sale_mode: mode,
                waiting_room: None,
            });
        }
        let mut errors = Vec::new();
        let opens_at = self.opening(show).map_err(|e| errors.push(e)).ok();
        let rate = self
            .rate_per_sec
            .parse::<f64>()
            .ok()
            .filter(|r| WaitingRoomSettings::rate_ok(*r));
        if rate.is_none() {
            errors.push(FieldError::new(
                "rate_per_sec",
                if self.rate_per_sec.is_empty() {
                    "Enter how many buyers the waiting room lets in each second.".to_owned()
                } else {
                    format!(
                        "Admissions per second must be a number above 0 and at most {}.",
                        WaitingRoomSettings::MAX_RATE_PER_SEC
                    )
                },
            ));
        }
        let pass_ttl = seconds(
            &self.pass_ttl_s,
            "pass_ttl_s",
            "pass lifetime",
            &WaitingRoomSettings::PASS_TTL_S,
        )
        .map_err(|e| errors.push(e))
        .ok();
        let grace = seconds(
            &self.grace_s,
            "grace_s",
            "dropout grace",
            &WaitingRoomSettings::GRACE_S,
        )
        .map_err(|e| errors.push(e))
        .ok();
        match (opens_at, rate, pass_ttl, grace) {
            (Some(opens_at), Some(rate_per_sec), Some(pass_ttl_s), Some(grace_s))
                if errors.is_empty() =>
            {
                Ok(SetSale {
                    sale_mode: mode,
                    waiting_room: Some(WaitingRoomSettings {
                        opens_at,
                        rate_per_sec,
                        pass_ttl_s,
                        grace_s,
                    }),
                })
            }
            _ => Err(errors),
        }
    }

    /// The opening typed in venue time, in UTC.
    fn opening(&self, show: &Show) -> Result<DateTime<Utc>, FieldError> {
        let s = self.opens_at.replace(' ', "T");
        if s.is_empty() {
            return Err(FieldError::new(
                "opens_at",
                "Enter when the waiting room opens.",
            ));
        }
        NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S"))
            .ok()
            .and_then(|n| venue_offset(show).from_local_datetime(&n).single())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| {
                FieldError::new(
                    "opens_at",
                    "Enter the opening as a date and a time, for example 2030-01-15T18:00.",
                )
            })
    }
}

/// The sale page.
pub struct SalePage<'a> {
    /// City code.
    pub city: &'a str,
    /// The show.
    pub show: &'a Show,
    /// Its sale as the region stores it.
    pub stored: &'a ShowSale,
    /// The form's values (the stored sale's, or the refused post's).
    pub form: &'a SaleForm,
    /// The refused post's problems, by field.
    pub errors: &'a [FieldError],
    /// The region's refusal of a post that passed the form's checks.
    pub refused: Option<&'a str>,
    /// The token carries the `sales` scope: the form is offered.
    pub can_write: bool,
    /// The sale was just saved (the status line says so).
    pub saved: bool,
}

/// The sale as it stands, in words.
fn summary(p: &SalePage<'_>) -> String {
    let s = p.show;
    match (&p.stored.sale_mode, &p.stored.waiting_room) {
        (SaleMode::FlashSale, Some(r)) => {
            let local = r.opens_at.with_timezone(&venue_offset(s));
            format!(
                "<p><strong>Flash sale.</strong> Buyers queue in the waiting room and hold seats only \
                 with its admission pass.</p>\n<dl class=\"booking\">\n\
                 <dt>Opens</dt><dd>{} — {}</dd>\n\
                 <dt>Admissions per second</dt><dd>{}</dd>\n\
                 <dt>Pass lifetime</dt><dd>{}</dd>\n\
                 <dt>Dropout grace</dt><dd>{}</dd>\n</dl>\n\
                 <p><a href=\"/c/{}/sales/{}\">The waiting room as buyers see it</a></p>\n",
                time_element(&local, &s.time_zone),
                escape(&r.opens_at.format("%Y-%m-%d %H:%M UTC").to_string()),
                r.rate_per_sec,
                escape(&duration(u64::from(r.pass_ttl_s))),
                escape(&duration(u64::from(r.grace_s))),
                escape(p.city),
                escape(&s.id.to_string()),
            )
        }
        _ => "<p><strong>Open sale.</strong> Anyone signed in may hold seats; there is no waiting room.</p>\n"
            .to_owned(),
    }
}

/// The status line after a save.
fn saved_line(p: &SalePage<'_>) -> String {
    match (&p.stored.sale_mode, &p.stored.waiting_room) {
        (SaleMode::FlashSale, Some(r)) => {
            let local = r.opens_at.with_timezone(&venue_offset(p.show));
            format!(
                "Saved: a flash sale, its waiting room opening {} ({}).",
                shared::display::long_time(&local),
                p.show.time_zone
            )
        }
        _ => "Saved: an open sale, without a waiting room.".to_owned(),
    }
}

/// One labelled input with its hint and, when refused, its error (named
/// by `aria-describedby`, the input marked `aria-invalid`).
struct Input<'a> {
    id: &'static str,
    label: &'a str,
    hint: &'a str,
    /// The rest of the input's attributes (`type`, `inputmode`…).
    attrs: &'a str,
    value: &'a str,
}

fn input(i: &Input<'_>, errors: &[FieldError]) -> String {
    let error = errors.iter().find(|e| e.field == i.id);
    let mut out = format!(
        "<div class=\"field{}\">\n<label for=\"{id}\">{}</label>\n<p class=\"hint\" id=\"{id}-hint\">{}</p>\n",
        if error.is_some() { " invalid" } else { "" },
        escape(i.label),
        escape(i.hint),
        id = i.id,
    );
    let mut described = format!("{}-hint", i.id);
    let mut invalid = "";
    if let Some(e) = error {
        let _ = writeln!(
            out,
            "<p class=\"field-error\" id=\"{}-error\"><span class=\"visually-hidden\">Error:</span> {}</p>",
            i.id,
            escape(&e.message)
        );
        let _ = write!(described, " {}-error", i.id);
        invalid = " aria-invalid=\"true\"";
    }
    let _ = write!(
        out,
        "<input id=\"{id}\" name=\"{id}\" {} value=\"{}\" aria-describedby=\"{described}\"{invalid}>\n</div>\n",
        i.attrs,
        escape(i.value),
        id = i.id,
    );
    out
}

fn form(c: &Console<'_>, p: &SalePage<'_>) -> String {
    let (ec, id) = (escape(p.city), escape(&p.show.id.to_string()));
    let f = p.form;
    let checked = |m: &str| if f.mode == m { " checked" } else { "" };
    let mode_error = p.errors.iter().find(|e| e.field == "sale_mode");
    let mut out = format!(
        "<h2>Change the sale</h2>\n<form method=\"post\" action=\"/ops/c/{ec}/shows/{id}/sale\" class=\"sale-form\" novalidate>{}\n",
        csrf_field(c.csrf)
    );
    let _ = write!(
        out,
        "<fieldset{}>\n<legend>Sale mode</legend>\n",
        if mode_error.is_some() {
            " aria-describedby=\"sale_mode-error\""
        } else {
            ""
        }
    );
    if let Some(e) = mode_error {
        let _ = writeln!(
            out,
            "<p class=\"field-error\" id=\"sale_mode-error\"><span class=\"visually-hidden\">Error:</span> {}</p>",
            escape(&e.message)
        );
    }
    let _ = write!(
        out,
        "<div class=\"choice\"><input type=\"radio\" id=\"sale_mode-open\" name=\"sale_mode\" value=\"open\"{}> \
         <label for=\"sale_mode-open\">Open sale: anyone signed in may hold seats</label></div>\n\
         <div class=\"choice\"><input type=\"radio\" id=\"sale_mode-flash\" name=\"sale_mode\" value=\"flash_sale\"{}> \
         <label for=\"sale_mode-flash\">Flash sale: buyers queue in the waiting room below</label></div>\n</fieldset>\n",
        checked("open"),
        checked("flash_sale"),
    );
    let opens_hint = format!(
        "Venue time: {} (UTC{}).",
        p.show.time_zone,
        venue_offset(p.show)
    );
    let ttl_hint = format!(
        "How long an admitted buyer has to hold seats, {}–{} seconds.",
        WaitingRoomSettings::PASS_TTL_S.start(),
        WaitingRoomSettings::PASS_TTL_S.end()
    );
    let grace_hint = format!(
        "A waiting buyer whose page stops asking for this long loses the place, {}–{} seconds.",
        WaitingRoomSettings::GRACE_S.start(),
        WaitingRoomSettings::GRACE_S.end()
    );
    let rate_hint = format!(
        "Buyers let in each second, above 0 and at most {}.",
        WaitingRoomSettings::MAX_RATE_PER_SEC
    );
    out.push_str(
        "<fieldset>\n<legend>Waiting room</legend>\n<p class=\"hint\">Needed for a flash sale; left out of an open sale.</p>\n",
    );
    for i in [
        Input {
            id: "opens_at",
            label: "Opens at",
            hint: &opens_hint,
            attrs: "type=\"datetime-local\"",
            value: &f.opens_at,
        },
        Input {
            id: "rate_per_sec",
            label: "Admissions per second",
            hint: &rate_hint,
            attrs: "type=\"text\" inputmode=\"decimal\" class=\"short\" autocomplete=\"off\"",
            value: &f.rate_per_sec,
        },
        Input {
            id: "pass_ttl_s",
            label: "Pass lifetime (seconds)",
            hint: &ttl_hint,
            attrs: "type=\"text\" inputmode=\"numeric\" class=\"short\" autocomplete=\"off\"",
            value: &f.pass_ttl_s,
        },
        Input {
            id: "grace_s",
            label: "Dropout grace (seconds)",
            hint: &grace_hint,
            attrs: "type=\"text\" inputmode=\"numeric\" class=\"short\" autocomplete=\"off\"",
            value: &f.grace_s,
        },
    ] {
        out.push_str(&input(&i, p.errors));
    }
    out.push_str(
        "</fieldset>\n<p><button type=\"submit\" class=\"primary\">Save the sale</button></p>\n</form>\n",
    );
    out
}

/// The page: the sale as it stands, then the form (with the `sales`
/// scope) or why there is none.
pub fn render(c: &Console<'_>, p: &SalePage<'_>) -> String {
    let mut main = show_heading(p.city, p.show)
        .replacen("<h1>", "<h1>Sale: ", 1)
        .replacen(
            "<p class=\"crumbs\">",
            &format!(
                "<p class=\"crumbs\"><a href=\"/ops/c/{}/shows/{}\">Back to the show</a> · ",
                escape(p.city),
                escape(&p.show.id.to_string())
            ),
            1,
        );
    let failed = !p.errors.is_empty() || p.refused.is_some();
    if failed {
        main.push_str(
            "<div class=\"error-summary\" role=\"alert\" tabindex=\"-1\" aria-labelledby=\"error-summary-title\">\n\
             <h2 id=\"error-summary-title\">The sale was not saved</h2>\n<ul>\n",
        );
        if let Some(r) = p.refused {
            let _ = writeln!(main, "<li>{}</li>", escape(r));
        }
        for e in p.errors {
            let _ = writeln!(
                main,
                "<li><a href=\"#{}\">{}</a></li>",
                e.anchor(),
                escape(&e.message)
            );
        }
        main.push_str("</ul>\n</div>\n");
    }
    let _ = write!(
        main,
        "<h2>The sale now</h2>\n<div class=\"panel\" id=\"sale-now\">\n{}</div>\n",
        summary(p)
    );
    if p.can_write {
        main.push_str(&form(c, p));
    } else {
        main.push_str(&super::render::sales_notice(
            c,
            "Changing a sale",
            "and sign in with it to change this sale",
        ));
    }
    let title = format!(
        "{}Sale of {}",
        if failed { "Error: " } else { "" },
        p.show.movie_title
    );
    let status = p.saved.then(|| saved_line(p));
    page(c, &title, main, status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::city::tests::show as a_show;
    use crate::pages::layout::tests::assert_page_rules;
    use crate::pages::ops::session::Operator;
    use shared::token::{Grant, Scope};

    fn rfc3339(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn open_sale() -> ShowSale {
        serde_json::from_value(serde_json::json!({
            "show_id": "01a2205a-d387-7029-933e-ebdbc50f0011", "city": "mum",
            "sale_mode": "open", "waiting_room": null
        }))
        .unwrap()
    }

    fn flash_sale() -> ShowSale {
        serde_json::from_value(serde_json::json!({
            "show_id": "01a2205a-d387-7029-933e-ebdbc50f0011", "city": "mum",
            "sale_mode": "flash_sale",
            "waiting_room": { "opens_at": "2030-01-10T04:30:00Z", "rate_per_sec": 2.5,
                              "pass_ttl_s": 300, "grace_s": 60 }
        }))
        .unwrap()
    }

    fn op(scopes: Vec<Scope>) -> Operator {
        Operator {
            sub: "ops-ann".into(),
            grant: Grant::new(vec!["mum".into()], scopes).unwrap(),
            exp: 0,
        }
    }

    #[test]
    fn a_flash_sale_is_read_in_venue_time_and_checked_field_by_field() {
        let show = a_show(); // starts 19:30 at +05:30
        let f = SaleForm::from_fields(&fields(&[
            ("sale_mode", "flash_sale"),
            ("opens_at", "2030-01-10T10:00"),
            ("rate_per_sec", " 2.5 "),
            ("pass_ttl_s", "300"),
            ("grace_s", "60"),
        ]));
        let set = f.check(&show).unwrap();
        assert_eq!(set.sale_mode, SaleMode::FlashSale);
        let room = set.waiting_room.unwrap();
        assert_eq!(rfc3339(room.opens_at), "2030-01-10T04:30:00Z");
        assert!((room.rate_per_sec - 2.5).abs() < f64::EPSILON);
        assert_eq!((room.pass_ttl_s, room.grace_s), (300, 60));

        let bad = SaleForm {
            mode: "flash_sale".into(),
            opens_at: "soon".into(),
            rate_per_sec: "0".into(),
            pass_ttl_s: "5".into(),
            grace_s: String::new(),
        };
        let errors = bad.check(&show).unwrap_err();
        let named: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(named, ["opens_at", "rate_per_sec", "pass_ttl_s", "grace_s"]);
        assert!(errors[2].message.contains("from 10 to 86400"));
        assert_eq!(errors[3].message, "Enter the dropout grace in seconds.");
        for nan in ["NaN", "inf", "100001"] {
            let f = SaleForm {
                rate_per_sec: nan.into(),
                ..f.clone()
            };
            assert_eq!(f.check(&show).unwrap_err()[0].field, "rate_per_sec");
        }
        // Seconds are kept; a space for the T is fine.
        let f = SaleForm {
            opens_at: "2030-01-10 10:00:30".into(),
            ..f
        };
        assert_eq!(
            rfc3339(f.check(&show).unwrap().waiting_room.unwrap().opens_at),
            "2030-01-10T04:30:30Z"
        );
    }

    #[test]
    fn an_open_sale_ignores_the_room_and_a_mode_is_required() {
        let show = a_show();
        let f = SaleForm {
            mode: "open".into(),
            opens_at: "nonsense".into(),
            ..SaleForm::default()
        };
        assert_eq!(
            f.check(&show).unwrap(),
            SetSale {
                sale_mode: SaleMode::Open,
                waiting_room: None
            }
        );
        let none = SaleForm::default().check(&show).unwrap_err();
        assert_eq!(none[0].field, "sale_mode");
        assert_eq!(none[0].anchor(), "sale_mode-open");
    }

    #[test]
    fn the_stored_sale_fills_the_form_in_venue_time() {
        let show = a_show();
        let f = SaleForm::from_stored(&flash_sale(), &show);
        assert_eq!(f.mode, "flash_sale");
        assert_eq!(f.opens_at, "2030-01-10T10:00");
        assert_eq!(f.rate_per_sec, "2.5");
        let open = SaleForm::from_stored(&open_sale(), &show);
        assert_eq!((open.mode.as_str(), open.opens_at.as_str()), ("open", ""));
        assert_eq!(open.rate_per_sec, DEFAULT_RATE);
        // What is filled in is what is read back.
        assert_eq!(
            f.check(&show).unwrap().waiting_room,
            flash_sale().waiting_room
        );
    }

    #[test]
    fn the_page_names_each_error_beside_its_field() {
        let (show, stored, op) = (a_show(), flash_sale(), op(vec![Scope::Sales]));
        let c = Console {
            op: Some(&op),
            csrf: "t0k",
            city: Some("mum"),
        };
        let form = SaleForm {
            mode: "flash_sale".into(),
            opens_at: "<soon>".into(),
            rate_per_sec: "1".into(),
            pass_ttl_s: "300".into(),
            grace_s: "60".into(),
        };
        let errors = form.check(&show).unwrap_err();
        let html = render(
            &c,
            &SalePage {
                city: "mum",
                show: &show,
                stored: &stored,
                form: &form,
                errors: &errors,
                refused: None,
                can_write: true,
                saved: false,
            },
        );
        assert_page_rules(&html);
        assert!(html.contains("<title>Error: Sale of Dune: Part Two"));
        assert!(html.contains("name=\"csrf\" value=\"t0k\""));
        assert!(html.contains("role=\"alert\""));
        assert!(html.contains("<a href=\"#opens_at\">Enter the opening as a date"));
        assert!(html.contains(
            "value=\"&lt;soon&gt;\" aria-describedby=\"opens_at-hint opens_at-error\" aria-invalid=\"true\""
        ), "{html}");
        assert!(html.contains("id=\"opens_at-error\""));
        assert!(!html.contains("rate_per_sec-error"));
        assert!(html.contains("value=\"flash_sale\" checked"));
        assert!(html.contains("Venue time: Asia/Kolkata (UTC+05:30)."));
        // The sale as stored: venue time and UTC, the buyers' room linked.
        assert!(html.contains("Thu 10 Jan 2030, 10:00</time>"), "{html}");
        assert!(html.contains("2030-01-10 04:30 UTC"));
        assert!(html.contains("href=\"/c/mum/sales/01a2205a-d387-7029-933e-ebdbc50f0011\""));
        assert!(html.contains("5 minutes"));
    }

    #[test]
    fn without_the_sales_scope_the_page_says_why_there_is_no_form() {
        let (show, stored, op) = (a_show(), open_sale(), op(vec![Scope::Read]));
        let c = Console {
            op: Some(&op),
            csrf: "t0k",
            city: Some("mum"),
        };
        let form = SaleForm::from_stored(&stored, &show);
        let html = render(
            &c,
            &SalePage {
                city: "mum",
                show: &show,
                stored: &stored,
                form: &form,
                errors: &[],
                refused: None,
                can_write: false,
                saved: true,
            },
        );
        assert_page_rules(&html);
        assert!(!html.contains("<form method=\"post\" action=\"/ops/c/mum/shows/"));
        assert!(html.contains("id=\"scope-notice\""));
        assert!(html.contains("yours allows read."));
        assert!(html.contains("<strong>Open sale.</strong>"));
        assert!(html.contains("Saved: an open sale"));
        assert!(
            super::super::render::needs_sales("Changing a sale", &["read"])
                .contains("Changing a sale needs an operator token with the sales scope")
        );
    }
}
