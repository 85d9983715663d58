//! How amounts and times read to a buyer, the same on the edge's pages
//! and in the region core's e-mail: `₹250`, `Tue 15 Jan 2030, 19:30`.
//! Plain text; callers escape for HTML.

use chrono::{DateTime, TimeZone};

/// A currency's symbol, for the currencies a venue is likely to use.
fn symbol(currency: &str) -> Option<&'static str> {
    Some(match currency {
        "INR" => "₹",
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "JPY" => "¥",
        _ => return None,
    })
}

/// Minor units as money: `₹250`, `₹250.50`, `$12.00` → `$12`, `CHF 3.50`.
pub fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let m = minor.unsigned_abs();
    let amount = if m.is_multiple_of(100) {
        format!("{}", m / 100)
    } else {
        format!("{}.{:02}", m / 100, m % 100)
    };
    match symbol(currency) {
        Some(s) => format!("{sign}{s}{amount}"),
        None => format!("{sign}{currency} {amount}"),
    }
}

/// A venue-local time as a buyer reads it: `Tue 15 Jan 2030, 19:30`.
pub fn long_time<Tz: TimeZone>(t: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    t.format("%a %-d %b %Y, %H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    #[test]
    fn money_and_times() {
        assert_eq!(money(25000, "INR"), "₹250");
        assert_eq!(money(25050, "INR"), "₹250.50");
        assert_eq!(money(-1200, "USD"), "-$12");
        assert_eq!(money(1205, "CHF"), "CHF 12.05");
        let utc = "2030-01-15T14:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let ist = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
        assert_eq!(
            long_time(&utc.with_timezone(&ist)),
            "Tue 15 Jan 2030, 19:30"
        );
    }
}
