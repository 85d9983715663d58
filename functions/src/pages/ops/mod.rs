//! The operator console (issue 16): server-rendered pages under `/ops/`
//! with the buyer pages' rules (no JavaScript needed, escaped output,
//! CSRF-protected forms), signed in with an operator token rather than
//! the buyer's session. Renderers are pure (data and `now` in, HTML out);
//! the Worker glue that reads the region core is `wasm::ops`.
//!
//! | Route | Method and path | What |
//! |---|---|---|
//! | `Home` | `GET /ops` | the cities the token's grant reaches |
//! | `SignIn` | `GET`/`POST /ops/signin` | paste an operator token |
//! | `SignOut` | `POST /ops/signout` | ends the console session |
//! | `Shows` | `GET /ops/c/{city}?date=` | the city's shows of a day |
//! | `Show` | `GET /ops/c/{city}/shows/{id}?after=` | occupancy, seat map, bookings |
//! | `CancelConfirm` | `GET /ops/c/{city}/shows/{id}/cancel` | what cancelling the show does |
//! | `Cancel` | `POST /ops/c/{city}/shows/{id}/cancel` | cancel the show (reason required) |
//! | `Cancellation` | `GET /ops/c/{city}/shows/{id}/cancellation` | the cancellation's progress |
//! | `Sale` | `GET /ops/c/{city}/shows/{id}/sale?done=` | the show's sale, and the form to change it |
//! | `SaveSale` | `POST /ops/c/{city}/shows/{id}/sale` | change it (scope `sales`) |
//! | `Booking` | `GET /ops/c/{city}/bookings?number=&done=` | a booking by number or id |
//! | `ResendConfirmation` | `POST /ops/c/{city}/bookings/{ref}/resend-confirmation` | its confirmation again (scope `sales`) |
//! | `Reports` | `GET /ops/c/{city}/reports?from=&to=&group=&format=` | sales totals, or the CSV |
//! | `Refunds` | `GET /ops/c/{city}/refunds` | FAILED and PENDING refunds |
//! | `Retry` | `POST /ops/c/{city}/refunds/{id}/retry` | send a FAILED refund again |
//! | `Settle` | `POST /ops/c/{city}/refunds/{id}/settle` | record a refund paid by hand |
//! | `Health` | `GET /ops/c/{city}/health?check=&show_id=` | the shard's status; the consistency checks |
//! | `Mail` | `GET /ops/c/{city}/mail?after=&sent=` | e-mail the SMTP server refused for good |
//! | `ResendMail` | `POST /ops/c/{city}/mail/resend` | send one (`event_id`) or all (`all`) again (scope `sales`) |
//!
//! Every error under `/ops`, a path that is no page included, is a
//! console page ([`is_console_path`]).

pub mod data;
pub mod health;
pub mod mail;
pub mod render;
pub mod sale;
pub mod session;

use chrono::NaiveDate;
use shared::ShowId;

use super::form;
use crate::config::Regions;
use crate::error::EdgeError;

/// An operator console route (see the table above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpsRoute {
    /// `GET /ops`.
    Home,
    /// `GET`/`POST /ops/signin`.
    SignIn {
        /// `POST` rather than `GET`.
        post: bool,
    },
    /// `POST /ops/signout`.
    SignOut,
    /// `GET /ops/c/{city}?date=`.
    Shows {
        /// City code.
        city: String,
        /// The day asked for (`None`: today).
        date: Option<NaiveDate>,
    },
    /// `GET /ops/c/{city}/shows/{id}?after=`.
    Show {
        /// City code.
        city: String,
        /// Show id.
        show: String,
        /// The bookings page's cursor.
        after: Option<String>,
    },
    /// `GET /ops/c/{city}/shows/{id}/cancel`.
    CancelConfirm {
        /// City code.
        city: String,
        /// Show id.
        show: String,
    },
    /// `POST /ops/c/{city}/shows/{id}/cancel`.
    Cancel {
        /// City code.
        city: String,
        /// Show id.
        show: String,
    },
    /// `GET /ops/c/{city}/shows/{id}/cancellation`.
    Cancellation {
        /// City code.
        city: String,
        /// Show id.
        show: String,
    },
    /// `GET /ops/c/{city}/shows/{id}/sale?done=`.
    Sale {
        /// City code.
        city: String,
        /// Show id.
        show: String,
        /// The sale was just saved (`done=saved`), for the status line.
        saved: bool,
    },
    /// `POST /ops/c/{city}/shows/{id}/sale`.
    SaveSale {
        /// City code.
        city: String,
        /// Show id.
        show: String,
    },
    /// `GET /ops/c/{city}/bookings?number=&done=`.
    Booking {
        /// City code.
        city: String,
        /// The number or id asked for (`None`: the empty form).
        number: Option<String>,
        /// Its confirmation was just queued again (`done=resent`).
        resent: bool,
    },
    /// `POST /ops/c/{city}/bookings/{ref}/resend-confirmation`.
    ResendConfirmation {
        /// City code.
        city: String,
        /// The booking's number or id.
        booking: String,
    },
    /// `GET /ops/c/{city}/reports?from=&to=&group=&format=`.
    Reports {
        /// City code.
        city: String,
        /// The report asked for (`None`: the empty form).
        ask: Option<ReportAsk>,
    },
    /// `GET /ops/c/{city}/refunds`.
    Refunds {
        /// City code.
        city: String,
        /// What was just done (`retried`, `settled`), for the status line.
        done: Option<String>,
    },
    /// `POST /ops/c/{city}/refunds/{id}/retry`.
    Retry {
        /// City code.
        city: String,
        /// Refund id.
        refund: String,
    },
    /// `POST /ops/c/{city}/refunds/{id}/settle`.
    Settle {
        /// City code.
        city: String,
        /// Refund id.
        refund: String,
    },
    /// `GET /ops/c/{city}/health?check=&show_id=`.
    Health {
        /// City code.
        city: String,
        /// The consistency checks asked for (`None`: not run).
        check: Option<IntegrityAsk>,
    },
    /// `GET /ops/c/{city}/mail?after=&sent=`.
    Mail {
        /// City code.
        city: String,
        /// The page's cursor (`None`: the newest).
        after: Option<String>,
        /// How many were just sent again, for the status line.
        sent: Option<u32>,
    },
    /// `POST /ops/c/{city}/mail/resend`.
    ResendMail {
        /// City code.
        city: String,
    },
}

/// The consistency checks asked for from the health page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityAsk {
    /// One show (then Redis is compared too); `None`: every show of the
    /// token's cities.
    pub show: Option<String>,
}

impl IntegrityAsk {
    /// The region core's path for these checks.
    pub fn region_path(&self) -> String {
        match &self.show {
            Some(s) => format!("/v1/operator/integrity?show_id={s}"),
            None => "/v1/operator/integrity".to_owned(),
        }
    }
}

/// A sales report asked for from the reports form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportAsk {
    /// First day (venue-local), included.
    pub from: NaiveDate,
    /// Last day, included.
    pub to: NaiveDate,
    /// `day` or `show`.
    pub group: &'static str,
    /// Download the CSV rather than show the totals.
    pub csv: bool,
}

impl ReportAsk {
    /// The region core's query for this report.
    pub fn region_query(&self) -> String {
        let mut q = format!("from={}&to={}&group={}", self.from, self.to, self.group);
        if self.csv {
            q.push_str("&format=csv");
        }
        q
    }
}

impl OpsRoute {
    /// The city of the route, if it has one.
    pub fn city(&self) -> Option<&str> {
        match self {
            Self::Home | Self::SignIn { .. } | Self::SignOut => None,
            Self::Shows { city, .. }
            | Self::Show { city, .. }
            | Self::CancelConfirm { city, .. }
            | Self::Cancel { city, .. }
            | Self::Cancellation { city, .. }
            | Self::Sale { city, .. }
            | Self::SaveSale { city, .. }
            | Self::Booking { city, .. }
            | Self::Reports { city, .. }
            | Self::Refunds { city, .. }
            | Self::Retry { city, .. }
            | Self::Settle { city, .. }
            | Self::ResendConfirmation { city, .. }
            | Self::Health { city, .. }
            | Self::Mail { city, .. }
            | Self::ResendMail { city } => Some(city),
        }
    }
}

/// Whether `path` is the console's: its errors are console pages.
pub fn is_console_path(path: &str) -> bool {
    path == "/ops" || path.starts_with("/ops/")
}

fn bad_query(m: &str) -> EdgeError {
    EdgeError::new(400, "bad_query", m.to_owned())
}

/// The query's fields (a form sent by GET); unknown names are refused.
fn query_fields(query: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, EdgeError> {
    let fields = form::parse(query.unwrap_or_default())
        .ok_or_else(|| bad_query("the query could not be read"))?;
    if let Some((k, _)) = fields.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(bad_query(&format!("unknown query parameter {k:?}")));
    }
    Ok(fields)
}

fn date(s: &str, name: &str) -> Result<NaiveDate, EdgeError> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .ok()
        .filter(|_| s.trim().len() == 10)
        .ok_or_else(|| bad_query(&format!("{name} must be a date, YYYY-MM-DD")))
}

/// An id or booking number that may go into a region path as it is:
/// letters, digits and dashes, 1–64 of them.
pub fn plain_ref(s: &str) -> Option<String> {
    let s = s.trim();
    ((1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .then(|| s.to_owned())
}

fn show_id(s: &str) -> Result<String, EdgeError> {
    let id = ShowId::parse(s).map_err(|_| EdgeError::invalid_show_id())?;
    Ok(id.to_string())
}

fn reports_ask(query: Option<&str>) -> Result<Option<ReportAsk>, EdgeError> {
    let f = query_fields(query, &["from", "to", "group", "format"])?;
    let (Some(from), Some(to)) = (form::get(&f, "from"), form::get(&f, "to")) else {
        return Ok(None);
    };
    let group = match form::get(&f, "group").unwrap_or("day") {
        "day" => "day",
        "show" => "show",
        _ => return Err(bad_query("group must be day or show")),
    };
    let csv = match form::get(&f, "format").unwrap_or("html") {
        "csv" => true,
        "html" | "json" => false,
        _ => return Err(bad_query("format must be html or csv")),
    };
    Ok(Some(ReportAsk {
        from: date(from, "from")?,
        to: date(to, "to")?,
        group,
        csv,
    }))
}

/// Classifies a console request (`segs`: the path after `/ops`, split at
/// `/`). Paths that are not console pages are `404 no_route`.
pub fn classify(
    method: &str,
    segs: &[&str],
    query: Option<&str>,
    regions: &Regions,
) -> Result<OpsRoute, EdgeError> {
    let is_get = method == "GET" || method == "HEAD";
    let get = |r: OpsRoute| {
        if is_get {
            Ok(r)
        } else {
            Err(EdgeError::method_not_allowed("GET, HEAD"))
        }
    };
    let post = |r: OpsRoute| {
        if method == "POST" {
            Ok(r)
        } else {
            Err(EdgeError::method_not_allowed("POST"))
        }
    };
    let get_or_post = |g: OpsRoute, p: OpsRoute| match method {
        "GET" | "HEAD" => Ok(g),
        "POST" => Ok(p),
        _ => Err(EdgeError::method_not_allowed("GET, HEAD, POST")),
    };
    let city = |c: &str| {
        if regions.contains(c) {
            Ok(c.to_owned())
        } else {
            let shown: String = c.chars().take(16).collect();
            Err(EdgeError::new(
                404,
                "unknown_city",
                format!("This console serves no city {shown:?}. Your cities are on the console's home page."),
            ))
        }
    };
    let refund = |r: &str| {
        plain_ref(r).ok_or_else(|| EdgeError::new(400, "invalid_refund_id", "not a refund id"))
    };
    match segs {
        [] | [""] => get(OpsRoute::Home),
        ["signin"] => get_or_post(
            OpsRoute::SignIn { post: false },
            OpsRoute::SignIn { post: true },
        ),
        ["signout"] => post(OpsRoute::SignOut),
        ["c", c] => {
            let f = query_fields(query, &["date"])?;
            let date = form::get(&f, "date")
                .filter(|d| !d.is_empty())
                .map(|d| date(d, "date"))
                .transpose()?;
            get(OpsRoute::Shows {
                city: city(c)?,
                date,
            })
        }
        ["c", c, "shows", s] => {
            let f = query_fields(query, &["after"])?;
            let after = match form::get(&f, "after") {
                None => None,
                Some(a) => Some(plain_ref(a).ok_or_else(|| bad_query("after must be an id"))?),
            };
            get(OpsRoute::Show {
                city: city(c)?,
                show: show_id(s)?,
                after,
            })
        }
        ["c", c, "shows", s, "cancel"] => {
            let (city, show) = (city(c)?, show_id(s)?);
            get_or_post(
                OpsRoute::CancelConfirm {
                    city: city.clone(),
                    show: show.clone(),
                },
                OpsRoute::Cancel { city, show },
            )
        }
        ["c", c, "shows", s, "cancellation"] => get(OpsRoute::Cancellation {
            city: city(c)?,
            show: show_id(s)?,
        }),
        ["c", c, "shows", s, "sale"] => {
            let (city, show) = (city(c)?, show_id(s)?);
            let saved = method != "POST"
                && form::get(&query_fields(query, &["done"])?, "done") == Some("saved");
            get_or_post(
                OpsRoute::Sale {
                    city: city.clone(),
                    show: show.clone(),
                    saved,
                },
                OpsRoute::SaveSale { city, show },
            )
        }
        ["c", c, "bookings"] => {
            let f = query_fields(query, &["number", "done"])?;
            let number = form::get(&f, "number")
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned);
            get(OpsRoute::Booking {
                city: city(c)?,
                number,
                resent: form::get(&f, "done") == Some("resent"),
            })
        }
        ["c", c, "bookings", n, "resend-confirmation"] => post(OpsRoute::ResendConfirmation {
            city: city(c)?,
            booking: plain_ref(n).ok_or_else(|| {
                EdgeError::new(400, "invalid_booking_id", "not a booking number or id")
            })?,
        }),
        ["c", c, "health"] => {
            let f = query_fields(query, &["check", "show_id"])?;
            let check = match form::get(&f, "check") {
                None => None,
                Some(_) => Some(IntegrityAsk {
                    show: form::get(&f, "show_id")
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(show_id)
                        .transpose()?,
                }),
            };
            get(OpsRoute::Health {
                city: city(c)?,
                check,
            })
        }
        ["c", c, "mail"] => {
            let f = query_fields(query, &["after", "sent"])?;
            let after = match form::get(&f, "after") {
                None => None,
                Some(a) => Some(plain_ref(a).ok_or_else(|| bad_query("after must be an id"))?),
            };
            get(OpsRoute::Mail {
                city: city(c)?,
                after,
                sent: form::get(&f, "sent").and_then(|n| n.parse().ok()),
            })
        }
        ["c", c, "mail", "resend"] => post(OpsRoute::ResendMail { city: city(c)? }),
        ["c", c, "reports"] => get(OpsRoute::Reports {
            city: city(c)?,
            ask: reports_ask(query)?,
        }),
        ["c", c, "refunds"] => {
            let f = query_fields(query, &["done"])?;
            let done = form::get(&f, "done")
                .filter(|d| matches!(*d, "retried" | "settled"))
                .map(str::to_owned);
            get(OpsRoute::Refunds {
                city: city(c)?,
                done,
            })
        }
        ["c", c, "refunds", r, "retry"] => post(OpsRoute::Retry {
            city: city(c)?,
            refund: refund(r)?,
        }),
        ["c", c, "refunds", r, "settle"] => post(OpsRoute::Settle {
            city: city(c)?,
            refund: refund(r)?,
        }),
        _ => Err(EdgeError::no_route()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "01a2205a-d387-7029-933e-ebdbc50f0011";

    fn route(method: &str, path: &str) -> Result<OpsRoute, EdgeError> {
        let regions = Regions::parse(r#"{"mum":"http://127.0.0.1:8080"}"#).unwrap();
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let segs: Vec<&str> = path.split('/').skip(2).collect();
        classify(method, &segs, query, &regions)
    }

    #[test]
    fn console_routes_and_bad_input() {
        assert_eq!(route("GET", "/ops").unwrap(), OpsRoute::Home);
        assert_eq!(
            route("POST", "/ops/signin").unwrap(),
            OpsRoute::SignIn { post: true }
        );
        assert_eq!(
            route("GET", "/ops/c/mum?date=2030-01-15").unwrap(),
            OpsRoute::Shows {
                city: "mum".into(),
                date: NaiveDate::from_ymd_opt(2030, 1, 15)
            }
        );
        assert!(matches!(
            route("POST", &format!("/ops/c/mum/shows/{SHOW}/cancel")).unwrap(),
            OpsRoute::Cancel { .. }
        ));
        assert!(matches!(
            route("GET", &format!("/ops/c/mum/shows/{SHOW}?after={SHOW}")).unwrap(),
            OpsRoute::Show { after: Some(_), .. }
        ));
        let r = route(
            "GET",
            "/ops/c/mum/reports?from=2030-01-01&to=2030-01-31&group=show&format=csv",
        )
        .unwrap();
        let OpsRoute::Reports { ask: Some(ask), .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            ask.region_query(),
            "from=2030-01-01&to=2030-01-31&group=show&format=csv"
        );
        assert_eq!(route("GET", "/ops/c/xyz").unwrap_err().code, "unknown_city");
        let far = route("GET", &format!("/ops/c/xyz/shows/{SHOW}/sale")).unwrap_err();
        assert_eq!((far.status, far.code), (404, "unknown_city"));
        assert!(far.message.contains("console serves no city \"xyz\""));
        assert_eq!(
            route("GET", &format!("/ops/c/mum/shows/{SHOW}/sale?done=saved")).unwrap(),
            OpsRoute::Sale {
                city: "mum".into(),
                show: SHOW.into(),
                saved: true
            }
        );
        assert!(matches!(
            route("POST", &format!("/ops/c/mum/shows/{SHOW}/sale")).unwrap(),
            OpsRoute::SaveSale { .. }
        ));
        assert_eq!(
            route("PUT", &format!("/ops/c/mum/shows/{SHOW}/sale"))
                .unwrap_err()
                .code,
            "method_not_allowed"
        );
        assert!(is_console_path("/ops") && is_console_path("/ops/c/xyz"));
        assert!(!is_console_path("/opsx") && !is_console_path("/c/mum"));
        assert_eq!(
            route("GET", "/ops/c/mum?date=soon").unwrap_err().code,
            "bad_query"
        );
        assert_eq!(
            route("GET", "/ops/c/mum?evil=1").unwrap_err().code,
            "bad_query"
        );
        assert_eq!(
            route("GET", "/ops/c/mum/refunds/r-1/retry")
                .unwrap_err()
                .code,
            "method_not_allowed"
        );
        assert_eq!(
            route("POST", "/ops/c/mum/refunds/a%2fb/retry")
                .unwrap_err()
                .code,
            "invalid_refund_id"
        );
        assert_eq!(
            route("GET", "/ops/c/mum/shows/nope").unwrap_err().code,
            "invalid_show_id"
        );
        assert_eq!(route("GET", "/ops/nothing").unwrap_err().code, "no_route");
    }

    #[test]
    fn health_mail_and_resend_routes() {
        assert_eq!(
            route("GET", "/ops/c/mum/health").unwrap(),
            OpsRoute::Health {
                city: "mum".into(),
                check: None
            }
        );
        let r = route("GET", "/ops/c/mum/health?check=1&show_id=").unwrap();
        let OpsRoute::Health {
            check: Some(ask), ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(ask.region_path(), "/v1/operator/integrity");
        let r = route("GET", &format!("/ops/c/mum/health?check=1&show_id={SHOW}")).unwrap();
        let OpsRoute::Health {
            check: Some(ask), ..
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(
            ask.region_path(),
            format!("/v1/operator/integrity?show_id={SHOW}")
        );
        assert_eq!(
            route("GET", "/ops/c/mum/health?check=1&show_id=nope")
                .unwrap_err()
                .code,
            "invalid_show_id"
        );
        assert_eq!(
            route("GET", "/ops/c/mum/mail?sent=2").unwrap(),
            OpsRoute::Mail {
                city: "mum".into(),
                after: None,
                sent: Some(2)
            }
        );
        assert_eq!(
            route("GET", "/ops/c/mum/mail?after=a%2fb")
                .unwrap_err()
                .code,
            "bad_query"
        );
        assert_eq!(
            route("POST", "/ops/c/mum/mail/resend").unwrap(),
            OpsRoute::ResendMail { city: "mum".into() }
        );
        assert_eq!(
            route("GET", "/ops/c/mum/mail/resend").unwrap_err().code,
            "method_not_allowed"
        );
        assert_eq!(
            route("POST", "/ops/c/mum/bookings/BMS1/resend-confirmation").unwrap(),
            OpsRoute::ResendConfirmation {
                city: "mum".into(),
                booking: "BMS1".into()
            }
        );
        assert_eq!(
            route("GET", "/ops/c/mum/bookings?number=BMS1&done=resent").unwrap(),
            OpsRoute::Booking {
                city: "mum".into(),
                number: Some("BMS1".into()),
                resent: true
            }
        );
        assert_eq!(
            route("GET", "/ops/c/xyz/health").unwrap_err().code,
            "unknown_city"
        );
    }
}
