//! The sales report's pure core: sales rows per (venue-local day, show,
//! currency), as Postgres sums them, folded into lines per day or per
//! show, totals per currency (different currencies are never added up),
//! and the CSV rendering. No I/O.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Longest range a report may cover, in days (both ends included).
pub const MAX_RANGE_DAYS: i64 = 366;

/// What a report's lines are per.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// One line per venue-local day of sale and currency.
    Day,
    /// One line per show and currency.
    Show,
}

impl Group {
    /// `day` or `show`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "day" => Some(Self::Day),
            "show" => Some(Self::Show),
            _ => None,
        }
    }
}

/// Checks a report's range: both dates `YYYY-MM-DD`, `from <= to`, at
/// most [`MAX_RANGE_DAYS`] days. The error says what is wrong.
pub fn parse_range(from: &str, to: &str) -> Result<(NaiveDate, NaiveDate), String> {
    let date = |field: &str, raw: &str| {
        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
            .map_err(|_| format!("{field} must be a date as YYYY-MM-DD, got {raw:?}"))
    };
    let (from, to) = (date("from", from)?, date("to", to)?);
    if from > to {
        return Err(format!("from ({from}) is after to ({to})"));
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_RANGE_DAYS {
        return Err(format!(
            "the range covers {days} days; at most {MAX_RANGE_DAYS} are allowed"
        ));
    }
    Ok((from, to))
}

/// Sales of one show on one venue-local day in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesRow {
    /// The venue-local day the bookings were made.
    pub day: NaiveDate,
    /// Show.
    pub show_id: Uuid,
    /// The show's movie title.
    pub title: String,
    /// The show's start.
    pub show_starts_at: DateTime<Utc>,
    /// Currency.
    pub currency: String,
    /// The figures.
    pub figures: Figures,
}

/// The figures of a report line: bookings made in the range, as they
/// stand now (a later cancellation or refund counts against the day of
/// sale).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Bookings made (each confirmed when paid).
    pub bookings_confirmed: i64,
    /// Seats in them.
    pub seats_sold: i64,
    /// What they were paid, minor units.
    pub gross_minor: i64,
    /// How many of them are cancelled by now.
    pub bookings_cancelled: i64,
    /// Refunds of them that reached the buyer (SUCCEEDED, or
    /// SETTLED_MANUALLY by an operator).
    pub refunded_minor: i64,
    /// Refunds of them still on their way (PENDING).
    pub refunds_pending_minor: i64,
    /// Refunds of them the gateway refused (FAILED: an operator's to act on).
    pub refunds_failed_minor: i64,
    /// `gross_minor - refunded_minor`.
    pub net_minor: i64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.bookings_confirmed += o.bookings_confirmed;
        self.seats_sold += o.seats_sold;
        self.gross_minor += o.gross_minor;
        self.bookings_cancelled += o.bookings_cancelled;
        self.refunded_minor += o.refunded_minor;
        self.refunds_pending_minor += o.refunds_pending_minor;
        self.refunds_failed_minor += o.refunds_failed_minor;
        self.net_minor = self.gross_minor - self.refunded_minor;
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SalesLine {
    /// The day (group `day`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<NaiveDate>,
    /// The show (group `show`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show_id: Option<Uuid>,
    /// Its title (group `show`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Its start (group `show`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show_starts_at: Option<DateTime<Utc>>,
    /// Currency of every amount on the line.
    pub currency: String,
    /// The figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// The totals of one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrencyTotal {
    /// Currency.
    pub currency: String,
    /// The figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// Folds rows into lines per `group` (ordered by day, or by show start)
/// and totals per currency.
pub fn fold(rows: &[SalesRow], group: Group) -> (Vec<SalesLine>, Vec<CurrencyTotal>) {
    // Keys sort as the lines are shown: by day, or by show start then id.
    type Key = (Option<NaiveDate>, Option<(DateTime<Utc>, Uuid)>, String);
    let mut lines: BTreeMap<Key, SalesLine> = BTreeMap::new();
    let mut totals: BTreeMap<String, Figures> = BTreeMap::new();
    for r in rows {
        let key: Key = match group {
            Group::Day => (Some(r.day), None, r.currency.clone()),
            Group::Show => (
                None,
                Some((r.show_starts_at, r.show_id)),
                r.currency.clone(),
            ),
        };
        let line = lines.entry(key).or_insert_with(|| SalesLine {
            day: (group == Group::Day).then_some(r.day),
            show_id: (group == Group::Show).then_some(r.show_id),
            title: (group == Group::Show).then(|| r.title.clone()),
            show_starts_at: (group == Group::Show).then_some(r.show_starts_at),
            currency: r.currency.clone(),
            figures: Figures::default(),
        });
        line.figures.add(&r.figures);
        totals
            .entry(r.currency.clone())
            .or_default()
            .add(&r.figures);
    }
    let totals = totals
        .into_iter()
        .map(|(currency, figures)| CurrencyTotal { currency, figures })
        .collect();
    (lines.into_values().collect(), totals)
}

/// The CSV columns after the line's key columns.
const FIGURE_COLUMNS: &str = "currency,bookings_confirmed,seats_sold,gross_minor,\
bookings_cancelled,refunded_minor,refunds_pending_minor,refunds_failed_minor,net_minor";

/// The lines as CSV (RFC 4180: CRLF line ends, fields quoted when they
/// hold a comma, quote or line break), with a header row.
pub fn to_csv(lines: &[SalesLine], group: Group) -> String {
    let mut out = match group {
        Group::Day => format!("day,{FIGURE_COLUMNS}\r\n"),
        Group::Show => format!("show_id,title,show_starts_at,{FIGURE_COLUMNS}\r\n"),
    };
    for l in lines {
        let mut fields: Vec<String> = match group {
            Group::Day => vec![l.day.map(|d| d.to_string()).unwrap_or_default()],
            Group::Show => vec![
                l.show_id.map(|s| s.to_string()).unwrap_or_default(),
                csv_field(l.title.as_deref().unwrap_or_default()),
                l.show_starts_at
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            ],
        };
        let f = &l.figures;
        fields.push(csv_field(&l.currency));
        fields.extend(
            [
                f.bookings_confirmed,
                f.seats_sold,
                f.gross_minor,
                f.bookings_cancelled,
                f.refunded_minor,
                f.refunds_pending_minor,
                f.refunds_failed_minor,
                f.net_minor,
            ]
            .map(|n| n.to_string()),
        );
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One CSV field, quoted if it must be. A leading `=`, `+`, `-` or `@`
/// is prefixed with `'`, so a spreadsheet never runs a title as a formula.
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(day: u32, show: u128, currency: &str, gross: i64, refunded: i64) -> SalesRow {
        SalesRow {
            day: NaiveDate::from_ymd_opt(2026, 12, day).unwrap(),
            show_id: Uuid::from_u128(show),
            title: format!("Film {show}"),
            show_starts_at: Utc
                .with_ymd_and_hms(2026, 12, 20, show as u32, 0, 0)
                .unwrap(),
            currency: currency.into(),
            figures: Figures {
                bookings_confirmed: 2,
                seats_sold: 3,
                gross_minor: gross,
                bookings_cancelled: u8::from(refunded > 0).into(),
                refunded_minor: refunded,
                refunds_pending_minor: 0,
                refunds_failed_minor: 0,
                net_minor: gross - refunded,
            },
        }
    }

    #[test]
    fn ranges_are_dates_in_order_and_bounded() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(
            parse_range("2026-01-01", "2026-12-31"),
            Ok((d("2026-01-01"), d("2026-12-31")))
        );
        // 2028 is a leap year: 366 days is the most.
        assert!(parse_range("2028-01-01", "2028-12-31").is_ok());
        assert!(parse_range("2026-01-01", "2027-01-02")
            .unwrap_err()
            .contains("367 days"));
        assert!(parse_range("2026-02-02", "2026-02-01")
            .unwrap_err()
            .contains("after"));
        assert!(parse_range("2026-2-30", "2026-03-01")
            .unwrap_err()
            .contains("from must be a date"));
        assert!(parse_range("2026-02-01", "tomorrow")
            .unwrap_err()
            .contains("to must be"));
    }

    #[test]
    fn lines_per_day_and_per_show_keep_currencies_apart() {
        let rows = [
            row(1, 1, "INR", 100, 0),
            row(1, 2, "INR", 50, 50),
            row(2, 1, "INR", 10, 0),
            row(2, 3, "USD", 7, 0),
        ];
        let (days, totals) = fold(&rows, Group::Day);
        let got: Vec<_> = days
            .iter()
            .map(|l| {
                (
                    l.day.unwrap().to_string(),
                    l.currency.as_str(),
                    l.figures.net_minor,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("2026-12-01".into(), "INR", 100),
                ("2026-12-02".into(), "INR", 10),
                ("2026-12-02".into(), "USD", 7)
            ]
        );
        assert_eq!(days[0].figures.bookings_confirmed, 4);
        assert_eq!(days[0].figures.gross_minor, 150);
        assert_eq!(days[0].figures.refunded_minor, 50);
        let t: Vec<_> = totals
            .iter()
            .map(|t| {
                (
                    t.currency.as_str(),
                    t.figures.gross_minor,
                    t.figures.net_minor,
                )
            })
            .collect();
        assert_eq!(t, [("INR", 160, 110), ("USD", 7, 7)]);

        let (shows, _) = fold(&rows, Group::Show);
        let got: Vec<_> = shows
            .iter()
            .map(|l| (l.title.clone().unwrap(), l.figures.gross_minor))
            .collect();
        assert_eq!(
            got,
            [
                ("Film 1".into(), 110),
                ("Film 2".into(), 50),
                ("Film 3".into(), 7)
            ]
        );
        assert!(shows.iter().all(|l| l.day.is_none()));
    }

    #[test]
    fn csv_has_a_header_and_quotes_what_it_must() {
        let mut r = row(1, 1, "INR", 100, 0);
        r.title = "=Tom, \"Jerry\"".into();
        let (lines, _) = fold(&[r], Group::Show);
        let csv = to_csv(&lines, Group::Show);
        let mut rows = csv.split("\r\n");
        assert_eq!(
            rows.next().unwrap(),
            format!("show_id,title,show_starts_at,{FIGURE_COLUMNS}")
        );
        assert_eq!(
            rows.next().unwrap(),
            format!(
                "{},\"'=Tom, \"\"Jerry\"\"\",2026-12-20T01:00:00Z,INR,2,3,100,0,0,0,0,100",
                Uuid::from_u128(1)
            )
        );
        assert_eq!(rows.next(), Some(""));
        let (days, _) = fold(&[row(3, 1, "INR", 5, 0)], Group::Day);
        assert_eq!(
            to_csv(&days, Group::Day),
            format!("day,{FIGURE_COLUMNS}\r\n2026-12-03,INR,2,3,5,0,0,0,0,5\r\n")
        );
    }
}
