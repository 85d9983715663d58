//! The buyer's pages, rendered at the edge: plain server-side HTML that
//! works without JavaScript, enhanced by one small script and one style
//! sheet (`functions/assets/`, served under `/assets/` with their content
//! hash in the name). Every renderer is pure: it takes the data it shows
//! and `now`, and returns the document, so it is unit-tested natively;
//! the Worker glue that fetches the data is `wasm::pages`.
//!
//! | Route | Method and path | What |
//! |---|---|---|
//! | `Home` | `GET /` | the cities |
//! | `City` | `GET /c/{city}?date=YYYY-MM-DD` | the city's shows by date |
//! | `Show` | `GET /c/{city}/shows/{show}` | the seat map (live with JS) |
//! | `HoldForm` | `POST /c/{city}/shows/{show}/hold` | the no-JS seat form: hold, then 303 to checkout |
//! | `Checkout` | `GET /c/{city}/holds/{hold}/checkout` | order summary and payment |
//! | `Pay` | `POST /c/{city}/holds/{hold}/checkout` | pay (idempotent), then 303 to the booking |
//! | `Extend` | `POST /c/{city}/holds/{hold}/extend` | extend the hold once, 303 back |
//! | `Booking` | `GET /c/{city}/bookings/{id}` | the confirmation |
//! | `CancelQuote` | `GET /c/{city}/bookings/{id}/cancel` | what cancelling now refunds |
//! | `Cancel` | `POST /c/{city}/bookings/{id}/cancel` | cancel, 303 to `/bookings` |
//! | `Bookings` | `GET /bookings` | the user's bookings in every city |
//! | `SignIn` | `GET`/`POST /signin` | development sign-in by e-mail |
//! | `SignOut` | `POST /signout` | ends the session |
//! | `Asset` | `GET /assets/{name}` | the script and the style sheet |
//! | `Ops` | `/ops/…` | the operator console ([`ops`]) |
//!
//! The flash-sale landing page (`/c/{city}/sales/{show}`) keeps its
//! routes in `routes.rs`; it is rendered by [`sale`].

pub mod assets;
pub mod bookings;
pub mod checkout;
pub mod city;
pub mod form;
pub mod home;
pub mod layout;
pub mod ops;
pub mod qr;
pub mod sale;
pub mod search;
pub mod session;
pub mod show;
pub mod signin;

use shared::{HoldId, ShowId};

use crate::config::Regions;
use crate::error::EdgeError;
use crate::rate_limit::RouteClass;

/// A page route (see the table above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRoute {
    /// `GET /`.
    Home,
    /// `GET /c/{city}`.
    City {
        /// City code.
        city: String,
        /// The date asked for (`None`: today).
        date: Option<String>,
    },
    /// `GET /c/{city}/shows/{show}`.
    Show {
        /// City code.
        city: String,
        /// Show id.
        show: String,
    },
    /// `POST /c/{city}/shows/{show}/hold`.
    HoldForm {
        /// City code.
        city: String,
        /// Show id.
        show: String,
    },
    /// `GET /c/{city}/holds/{hold}/checkout`.
    Checkout {
        /// City code.
        city: String,
        /// Hold id.
        hold: String,
    },
    /// `POST /c/{city}/holds/{hold}/checkout`.
    Pay {
        /// City code.
        city: String,
        /// Hold id.
        hold: String,
    },
    /// `POST /c/{city}/holds/{hold}/extend`.
    Extend {
        /// City code.
        city: String,
        /// Hold id.
        hold: String,
    },
    /// `GET /c/{city}/bookings/{id}`.
    Booking {
        /// City code.
        city: String,
        /// Booking id or number.
        booking: String,
    },
    /// `GET /c/{city}/bookings/{id}/cancel`.
    CancelQuote {
        /// City code.
        city: String,
        /// Booking id or number.
        booking: String,
    },
    /// `POST /c/{city}/bookings/{id}/cancel`.
    Cancel {
        /// City code.
        city: String,
        /// Booking id or number.
        booking: String,
    },
    /// `GET /bookings`.
    Bookings,
    /// `GET /search?q=`: titles across cities (the global catalog).
    Search,
    /// `GET` (form) or `POST` (sign in) `/signin`.
    SignIn {
        /// `POST` rather than `GET`.
        post: bool,
    },
    /// `POST /signout`.
    SignOut,
    /// `GET /assets/{name}`.
    Asset {
        /// File name, with its hash.
        name: String,
    },
    /// `/ops/…`: the operator console (`ops`).
    Ops(ops::OpsRoute),
}

impl PageRoute {
    /// The rate-limit class (`None`: not limited, the static assets).
    pub fn class(&self) -> Option<RouteClass> {
        Some(match self {
            Self::Asset { .. } => return None,
            Self::Home | Self::City { .. } | Self::Show { .. } | Self::Search => {
                RouteClass::Catalog
            }
            Self::HoldForm { .. } => RouteClass::Hold,
            Self::Pay { .. } => RouteClass::Checkout,
            _ => RouteClass::Api,
        })
    }

    /// The city of the route, if it has one.
    pub fn city(&self) -> Option<&str> {
        match self {
            Self::City { city, .. }
            | Self::Show { city, .. }
            | Self::HoldForm { city, .. }
            | Self::Checkout { city, .. }
            | Self::Pay { city, .. }
            | Self::Extend { city, .. }
            | Self::Booking { city, .. }
            | Self::CancelQuote { city, .. }
            | Self::Cancel { city, .. } => Some(city),
            _ => None,
        }
    }
}

fn show_id(s: &str) -> Result<String, EdgeError> {
    let id = ShowId::parse(s).map_err(|_| EdgeError::invalid_show_id())?;
    canonical(s, id.to_string())
}

fn hold_id(s: &str) -> Result<String, EdgeError> {
    let id = HoldId::parse(s).map_err(|_| EdgeError::invalid_hold_id())?;
    canonical(s, id.to_string())
}

fn canonical(s: &str, canon: String) -> Result<String, EdgeError> {
    if s == canon {
        Ok(canon)
    } else {
        Err(EdgeError::non_canonical_id(&canon))
    }
}

/// A booking id (UUID) or number (`BMS…`): letters, digits and dashes
/// only, so it can go into a region path as it is.
fn booking_ref(s: &str) -> Result<String, EdgeError> {
    let ok =
        (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(EdgeError::new(
            400,
            "invalid_booking_id",
            "the booking must be named by its id or its number",
        ))
    }
}

fn city(regions: &Regions, s: &str) -> Result<String, EdgeError> {
    if regions.contains(s) {
        Ok(s.to_owned())
    } else {
        Err(EdgeError::unknown_city(s))
    }
}

/// `date=YYYY-MM-DD` of the city page, if given (anything else is 400).
fn date_query(query: Option<&str>) -> Result<Option<String>, EdgeError> {
    match query.filter(|q| !q.is_empty()) {
        None => Ok(None),
        Some(_) => crate::auth::shows_date(query).map(Some),
    }
}

/// Classifies a page request (`segs`: the path split at `/`, without the
/// leading one). Paths that are not pages are `404 no_route`.
pub fn classify(
    method: &str,
    segs: &[&str],
    query: Option<&str>,
    regions: &Regions,
) -> Result<PageRoute, EdgeError> {
    let is_get = method == "GET" || method == "HEAD";
    let get = |r: PageRoute| {
        if is_get {
            Ok(r)
        } else {
            Err(EdgeError::method_not_allowed("GET, HEAD"))
        }
    };
    let post = |r: PageRoute| {
        if method == "POST" {
            Ok(r)
        } else {
            Err(EdgeError::method_not_allowed("POST"))
        }
    };
    match segs {
        [""] => get(PageRoute::Home),
        ["bookings"] => get(PageRoute::Bookings),
        ["search"] => get(PageRoute::Search),
        ["signin"] => match method {
            "GET" | "HEAD" => Ok(PageRoute::SignIn { post: false }),
            "POST" => Ok(PageRoute::SignIn { post: true }),
            _ => Err(EdgeError::method_not_allowed("GET, HEAD, POST")),
        },
        ["signout"] => post(PageRoute::SignOut),
        ["ops", rest @ ..] => ops::classify(method, rest, query, regions).map(PageRoute::Ops),
        ["assets", name] => get(PageRoute::Asset {
            name: (*name).to_owned(),
        }),
        ["c", c] => {
            let (city, date) = (city(regions, c)?, date_query(query)?);
            get(PageRoute::City { city, date })
        }
        ["c", c, "shows", s] => {
            let (city, show) = (city(regions, c)?, show_id(s)?);
            get(PageRoute::Show { city, show })
        }
        ["c", c, "shows", s, "hold"] => {
            let (city, show) = (city(regions, c)?, show_id(s)?);
            post(PageRoute::HoldForm { city, show })
        }
        ["c", c, "holds", h, "checkout"] => {
            let (city, hold) = (city(regions, c)?, hold_id(h)?);
            match method {
                "GET" | "HEAD" => Ok(PageRoute::Checkout { city, hold }),
                "POST" => Ok(PageRoute::Pay { city, hold }),
                _ => Err(EdgeError::method_not_allowed("GET, HEAD, POST")),
            }
        }
        ["c", c, "holds", h, "extend"] => {
            let (city, hold) = (city(regions, c)?, hold_id(h)?);
            post(PageRoute::Extend { city, hold })
        }
        ["c", c, "bookings", b] => {
            let (city, booking) = (city(regions, c)?, booking_ref(b)?);
            get(PageRoute::Booking { city, booking })
        }
        ["c", c, "bookings", b, "cancel"] => {
            let (city, booking) = (city(regions, c)?, booking_ref(b)?);
            match method {
                "GET" | "HEAD" => Ok(PageRoute::CancelQuote { city, booking }),
                "POST" => Ok(PageRoute::Cancel { city, booking }),
                _ => Err(EdgeError::method_not_allowed("GET, HEAD, POST")),
            }
        }
        _ => Err(EdgeError::no_route()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "01a2205a-d387-7029-933e-ebdbc50f0011";

    fn route(method: &str, path: &str) -> Result<PageRoute, EdgeError> {
        let regions = Regions::parse(r#"{"mum":"http://127.0.0.1:8080"}"#).unwrap();
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let segs: Vec<&str> = path[1..].split('/').collect();
        classify(method, &segs, query, &regions)
    }

    #[test]
    fn pages_are_routed_and_bad_input_is_a_4xx() {
        assert_eq!(route("GET", "/").unwrap(), PageRoute::Home);
        assert_eq!(
            route("GET", "/c/mum?date=2030-01-15").unwrap(),
            PageRoute::City {
                city: "mum".into(),
                date: Some("2030-01-15".into())
            }
        );
        assert!(matches!(
            route("POST", &format!("/c/mum/holds/{SHOW}/checkout")).unwrap(),
            PageRoute::Pay { .. }
        ));
        assert!(matches!(
            route("GET", "/c/mum/bookings/BMS20261128-MUM-000042").unwrap(),
            PageRoute::Booking { .. }
        ));
        assert_eq!(route("GET", "/c/xyz").unwrap_err().code, "unknown_city");
        assert_eq!(
            route("GET", "/c/mum?date=soon").unwrap_err().code,
            "bad_query"
        );
        assert_eq!(
            route("GET", "/c/mum/shows/nope").unwrap_err().code,
            "invalid_show_id"
        );
        assert_eq!(
            route("GET", "/c/mum/bookings/a%2fb").unwrap_err().code,
            "invalid_booking_id"
        );
        assert_eq!(
            route("GET", &format!("/c/mum/shows/{SHOW}/hold"))
                .unwrap_err()
                .code,
            "method_not_allowed"
        );
        assert_eq!(route("GET", "/nothing").unwrap_err().code, "no_route");
        assert_eq!(PageRoute::Asset { name: "x".into() }.class(), None);
    }
}
