//! The edge's routing table: a method and a path become a [`Route`], or a
//! clear 4xx before anything else happens (unknown city, bad id, no such
//! route). Pure.
//!
//! | Route | Method and path | Region core path |
//! |---|---|---|
//! | `Health` | `GET /healthz` | — |
//! | `Cities` | `GET /v1/cities` | `/v1/cities` of every region, merged |
//! | `CityShows` | `GET /v1/cities/{city}/shows?date=` | same |
//! | `Show` | `GET /v1/c/{city}/shows/{id}` | `/v1/shows/{id}` |
//! | `Availability` | `GET /v1/c/{city}/shows/{id}/availability` | `/v1/shows/{id}/availability` |
//! | `Seats` | `GET /v1/c/{city}/shows/{id}/seats` | `/v1/shows/{id}/seats` |
//! | `SeatsSince` | `GET /v1/c/{city}/shows/{id}/seats?since=N` | same (micro-cached 1 s) |
//! | `Live` | `GET /v1/c/{city}/shows/{id}/live` (WebSocket) | a Durable Object, which holds `/v1/shows/{id}/live` |
//! | `Hold` | `POST /v1/c/{city}/shows/{id}/holds` | `/v1/shows/{id}/holds` |
//! | `Checkout` | `POST /v1/c/{city}/holds/{id}/checkout` | `/v1/holds/{id}/checkout` |
//! | `Operator` | any `/v1/c/{city}/operator/…` | `/v1/operator/…` |
//! | `Forward` | any other `/v1/c/{city}/…` | `/v1/…` |
//! | `Join` | `POST /v1/c/{city}/sales/{show}/join` | — (Upstash) |
//! | `Status` | `GET /v1/c/{city}/sales/{show}/status` | — (Upstash) |
//! | `Page` | `GET /c/{city}/sales/{show}` | — (HTML) |
//! | `PageJoin` | `POST /c/{city}/sales/{show}/join` | — (HTML form, 303) |
//! | `SaleConfig` | `GET`/`PUT /v1/operator/sales/{show}` | — (Upstash) |
//! | `Directory` | `GET`/`PUT /v1/operator/directory` | — (Upstash; the city → shard table) |
//! | `EdgeControl` | `GET`/`PUT /v1/operator/edge/deny`, `…/edge/peak` | — (Upstash; `crate::controls`) |
//! | `EdgeAudit` | `GET /v1/operator/edge/audit` | — (Upstash; `crate::edge_audit`) |
//! | `FindBooking` | `GET /v1/bookings/{number or id}` | `/v1/bookings/{ref}` of every shard (`crate::cross_shard`) |
//! | `MyBookings` | `GET /v1/me/bookings` | `/v1/bookings` of every shard, merged |
//! | `GlobalRead` | `GET /v1/search?q=`, `GET /v1/movies/{id}` | the same path of the global catalog (`CATALOG_URL`), cached |
//! | `CatalogWrite` | `POST /v1/operator/movies` | the global catalog's |
//! | `Pages` | the buyer's pages (`crate::pages::classify`) | — (HTML) |

use shared::{HoldId, MovieId, ShowId};

use crate::catalog::CacheKind;
use crate::config::Regions;
use crate::error::EdgeError;
use crate::rate_limit::RouteClass;

/// A recognised request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The Worker's own health.
    Health,
    /// Every city, from every region.
    Cities,
    /// A city's shows on a date.
    CityShows {
        /// City code.
        city: String,
        /// `YYYY-MM-DD`.
        date: String,
    },
    /// A cached per-show read.
    ShowRead {
        /// City code.
        city: String,
        /// Show id.
        show: String,
        /// Which read.
        kind: CacheKind,
    },
    /// The seat map's changes since `since` (the polling fallback of the
    /// live seat map; `crate::live`).
    SeatsSince {
        /// City code.
        city: String,
        /// Show id.
        show: String,
        /// The poller's sequence number.
        since: u64,
    },
    /// A viewer's live seat-map socket, served by the show's Durable
    /// Object (`crate::live`).
    Live {
        /// City code.
        city: String,
        /// Show id.
        show: String,
    },
    /// Create a hold.
    Hold {
        /// City code.
        city: String,
        /// Show id.
        show: String,
    },
    /// Pay for a hold.
    Checkout {
        /// City code.
        city: String,
        /// Hold id.
        hold: String,
    },
    /// An operator call for a city's region (bumps the catalog version
    /// when it succeeds and is a write).
    Operator {
        /// City code.
        city: String,
        /// Path after `/v1/`.
        rest: String,
    },
    /// Anything else for a city's region.
    Forward {
        /// City code.
        city: String,
        /// Path after `/v1/`.
        rest: String,
    },
    /// Join a sale's waiting room (JSON).
    Join {
        /// City code.
        city: String,
        /// Show (= sale) id.
        show: String,
    },
    /// A waiting-room status (JSON).
    Status {
        /// City code.
        city: String,
        /// Show (= sale) id.
        show: String,
    },
    /// The waiting room's HTML page.
    Page {
        /// City code.
        city: String,
        /// Show (= sale) id.
        show: String,
    },
    /// The HTML page's join form.
    PageJoin {
        /// City code.
        city: String,
        /// Show (= sale) id.
        show: String,
    },
    /// A buyer's page (`crate::pages`).
    Pages(crate::pages::PageRoute),
    /// A booking by its number or id, from whichever shard has it.
    FindBooking {
        /// The booking number or id, canonical.
        reference: String,
    },
    /// The caller's bookings from every shard.
    MyBookings,
    /// A cached read of the global catalog: a title, or a search.
    GlobalRead {
        /// [`CacheKind::Movie`] or [`CacheKind::Search`].
        kind: CacheKind,
        /// The catalog's path and query.
        upstream: String,
    },
    /// A title created in the global catalog.
    CatalogWrite,
    /// Read (`write: false`) or replace the city → shard directory.
    Directory {
        /// `PUT` rather than `GET`.
        write: bool,
    },
    /// Read (`write: false`) or change an edge control.
    EdgeControl {
        /// Which.
        control: Control,
        /// `PUT` rather than `GET`.
        write: bool,
    },
    /// The edge's audit log (`crate::edge_audit`).
    EdgeAudit {
        /// `before` and `limit`, unchecked.
        query: String,
    },
    /// Read (`write: false`) or set a sale's waiting-room config.
    SaleConfig {
        /// Show (= sale) id.
        show: String,
        /// `PUT` rather than `GET`.
        write: bool,
    },
}

/// An edge control (`crate::controls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The deny list.
    Deny,
    /// Peak mode.
    Peak,
}

impl Route {
    /// The rate-limit class (`None`: not limited).
    pub fn class(&self) -> Option<RouteClass> {
        Some(match self {
            Self::Health => return None,
            Self::Cities
            | Self::CityShows { .. }
            | Self::ShowRead { .. }
            | Self::SeatsSince { .. }
            | Self::GlobalRead { .. } => RouteClass::Catalog,
            Self::Live { .. } => RouteClass::Api,
            Self::Hold { .. } => RouteClass::Hold,
            Self::Checkout { .. } => RouteClass::Checkout,
            Self::Join { .. } | Self::PageJoin { .. } => RouteClass::Join,
            Self::Status { .. } | Self::Page { .. } => RouteClass::Status,
            Self::Operator { .. }
            | Self::SaleConfig { .. }
            | Self::Directory { .. }
            | Self::EdgeControl { .. }
            | Self::EdgeAudit { .. }
            | Self::CatalogWrite => RouteClass::Operator,
            Self::Forward { .. } | Self::FindBooking { .. } | Self::MyBookings => RouteClass::Api,
            Self::Pages(p) => return p.class(),
        })
    }

    /// The city the route is for.
    pub fn city(&self) -> Option<&str> {
        match self {
            Self::Health
            | Self::Cities
            | Self::SaleConfig { .. }
            | Self::Directory { .. }
            | Self::EdgeControl { .. }
            | Self::EdgeAudit { .. }
            | Self::FindBooking { .. }
            | Self::MyBookings
            | Self::GlobalRead { .. }
            | Self::CatalogWrite => None,
            Self::CityShows { city, .. }
            | Self::ShowRead { city, .. }
            | Self::SeatsSince { city, .. }
            | Self::Live { city, .. }
            | Self::Hold { city, .. }
            | Self::Checkout { city, .. }
            | Self::Operator { city, .. }
            | Self::Forward { city, .. }
            | Self::Join { city, .. }
            | Self::Status { city, .. }
            | Self::Page { city, .. }
            | Self::PageJoin { city, .. } => Some(city),
            Self::Pages(p) => p.city(),
        }
    }

    /// The path (and query) to ask the city's region core for.
    pub fn upstream(&self, query: Option<&str>) -> Option<String> {
        let q = |path: String| match query.filter(|q| !q.is_empty()) {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        Some(match self {
            Self::CityShows { city, date } => format!("/v1/cities/{city}/shows?date={date}"),
            Self::ShowRead { show, kind, .. } => match kind {
                CacheKind::Show => format!("/v1/shows/{show}"),
                CacheKind::Availability => format!("/v1/shows/{show}/availability"),
                _ => format!("/v1/shows/{show}/seats"),
            },
            Self::SeatsSince { show, since, .. } => format!("/v1/shows/{show}/seats?since={since}"),
            Self::Live { show, .. } => format!("/v1/shows/{show}/live"),
            Self::Hold { show, .. } => q(format!("/v1/shows/{show}/holds")),
            Self::Checkout { hold, .. } => q(format!("/v1/holds/{hold}/checkout")),
            Self::Operator { rest, .. } | Self::Forward { rest, .. } => q(format!("/v1/{rest}")),
            Self::GlobalRead { upstream, .. } => upstream.clone(),
            Self::CatalogWrite => "/v1/operator/movies".to_owned(),
            _ => return None,
        })
    }
}

/// A show id in its one canonical spelling (lowercase, hyphenated): the
/// cache key is made of it, so `{…}`, `urn:uuid:…`, upper-case or
/// dash-less spellings of the same id would be separate cache entries (and
/// separate waiting rooms). They are refused, naming the canonical form.
fn show_id(s: &str) -> Result<String, EdgeError> {
    let id = ShowId::parse(s).map_err(|_| EdgeError::invalid_show_id())?;
    canonical(s, id.to_string())
}

/// `s` if it is `canon` (the id's `Display`: lowercase, hyphenated).
fn canonical(s: &str, canon: String) -> Result<String, EdgeError> {
    if s == canon {
        Ok(canon)
    } else {
        Err(EdgeError::non_canonical_id(&canon))
    }
}

/// The methods the edge serves; anything else is 405 before routing.
pub const KNOWN_METHODS: &str = "GET, HEAD, POST, PUT, DELETE";

fn city(regions: &Regions, s: &str) -> Result<String, EdgeError> {
    if regions.contains(s) {
        Ok(s.to_owned())
    } else {
        Err(EdgeError::unknown_city(s))
    }
}

/// Classifies a request. `path` is the URL path (percent-encoded, as
/// the runtime gives it), `query` the query string without `?`.
pub fn classify(
    method: &str,
    path: &str,
    query: Option<&str>,
    regions: &Regions,
) -> Result<Route, EdgeError> {
    if !KNOWN_METHODS.split(", ").any(|m| m == method) {
        return Err(EdgeError::method_not_allowed(KNOWN_METHODS));
    }
    let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    // A dot segment would make the region see another path than the one
    // routed (runtimes normalise them, but do not rely on it).
    if segs
        .iter()
        .any(|s| matches!(*s, "." | ".." | "%2e" | "%2E" | "%2e%2e" | "%2E%2E"))
    {
        return Err(EdgeError::no_route());
    }
    let get = |route: Route| {
        if method == "GET" || method == "HEAD" {
            Ok(route)
        } else {
            Err(EdgeError::method_not_allowed("GET, HEAD"))
        }
    };
    let post = |route: Route| {
        if method == "POST" {
            Ok(route)
        } else {
            Err(EdgeError::method_not_allowed("POST"))
        }
    };
    match segs.as_slice() {
        ["healthz"] => get(Route::Health),
        ["v1", "cities"] => get(Route::Cities),
        ["v1", "cities", c, "shows"] => {
            let city = city(regions, c)?;
            let date = crate::auth::shows_date(query)?;
            get(Route::CityShows { city, date })
        }
        ["v1", "bookings", r] => get(Route::FindBooking {
            reference: crate::cross_shard::booking_reference(r)?,
        }),
        ["v1", "me", "bookings"] => get(Route::MyBookings),
        ["v1", "search"] => get(Route::GlobalRead {
            kind: CacheKind::Search,
            upstream: format!("/v1/search?{}", query.unwrap_or_default()),
        }),
        ["v1", "movies", m] => {
            let id = MovieId::parse(m).map_err(|_| EdgeError::invalid_movie_id())?;
            let id = canonical(m, id.to_string())?;
            get(Route::GlobalRead {
                kind: CacheKind::Movie,
                upstream: format!("/v1/movies/{id}"),
            })
        }
        ["v1", "operator", "movies"] => post(Route::CatalogWrite),
        ["v1", "operator", "directory"] => match method {
            "GET" => Ok(Route::Directory { write: false }),
            "PUT" => Ok(Route::Directory { write: true }),
            _ => Err(EdgeError::method_not_allowed("GET, PUT")),
        },
        ["v1", "operator", "edge", "audit"] => get(Route::EdgeAudit {
            query: query.unwrap_or_default().to_owned(),
        }),
        ["v1", "operator", "edge", which] => {
            let control = match *which {
                "deny" => Control::Deny,
                "peak" => Control::Peak,
                _ => return Err(EdgeError::no_route()),
            };
            match method {
                "GET" => Ok(Route::EdgeControl {
                    control,
                    write: false,
                }),
                "PUT" => Ok(Route::EdgeControl {
                    control,
                    write: true,
                }),
                _ => Err(EdgeError::method_not_allowed("GET, PUT")),
            }
        }
        ["v1", "operator", "sales", s] => {
            let show = show_id(s)?;
            match method {
                "GET" => Ok(Route::SaleConfig { show, write: false }),
                "PUT" => Ok(Route::SaleConfig { show, write: true }),
                _ => Err(EdgeError::method_not_allowed("GET, PUT")),
            }
        }
        ["c", c, "sales", s] => {
            let (city, show) = (city(regions, c)?, show_id(s)?);
            get(Route::Page { city, show })
        }
        ["c", c, "sales", s, "join"] => {
            let (city, show) = (city(regions, c)?, show_id(s)?);
            post(Route::PageJoin { city, show })
        }
        ["v1", "c", c, rest @ ..] if !rest.is_empty() && !rest[0].is_empty() => {
            let city = city(regions, c)?;
            city_route(method, city, rest, query)
        }
        ["v1", ..] | ["healthz", ..] => Err(EdgeError::no_route()),
        _ => crate::pages::classify(method, &segs, query, regions).map(Route::Pages),
    }
}

fn city_route(
    method: &str,
    city: String,
    rest: &[&str],
    query: Option<&str>,
) -> Result<Route, EdgeError> {
    let read = |show: &str, kind| -> Result<Route, EdgeError> {
        Ok(Route::ShowRead {
            city: city.clone(),
            show: show_id(show)?,
            kind,
        })
    };
    let is_get = method == "GET" || method == "HEAD";
    match rest {
        ["shows", s] if is_get => read(s, CacheKind::Show),
        ["shows", s, "availability"] if is_get => read(s, CacheKind::Availability),
        ["shows", s, "seats"] if is_get => match crate::live::since(query)? {
            Some(since) => Ok(Route::SeatsSince {
                show: show_id(s)?,
                city,
                since,
            }),
            None => read(s, CacheKind::Seats),
        },
        ["shows", s, "live"] if is_get => Ok(Route::Live {
            show: show_id(s)?,
            city,
        }),
        ["shows", s, "holds"] if method == "POST" => Ok(Route::Hold {
            show: show_id(s)?,
            city,
        }),
        ["holds", h, "checkout"] if method == "POST" => {
            let id = HoldId::parse(h).map_err(|_| EdgeError::invalid_hold_id())?;
            Ok(Route::Checkout {
                hold: canonical(h, id.to_string())?,
                city,
            })
        }
        ["sales", s, "join"] => {
            let show = show_id(s)?;
            if method == "POST" {
                Ok(Route::Join { city, show })
            } else {
                Err(EdgeError::method_not_allowed("POST"))
            }
        }
        ["sales", s, "status"] => {
            let show = show_id(s)?;
            if is_get {
                Ok(Route::Status { city, show })
            } else {
                Err(EdgeError::method_not_allowed("GET, HEAD"))
            }
        }
        ["operator", ..] => Ok(Route::Operator {
            rest: rest.join("/"),
            city,
        }),
        _ => Ok(Route::Forward {
            rest: rest.join("/"),
            city,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "01a2205a-d387-7029-933e-ebdbc50f0011";

    fn regions() -> Regions {
        Regions::parse(r#"{"mum":"http://127.0.0.1:8080","blr":"http://127.0.0.1:9090"}"#).unwrap()
    }

    fn route(method: &str, path: &str) -> Result<Route, EdgeError> {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        classify(method, path, query, &regions())
    }

    fn code(r: Result<Route, EdgeError>) -> &'static str {
        r.unwrap_err().code
    }

    #[test]
    fn global_catalog_routes() {
        let id = "01a2205a-d387-7029-933e-ebdbc50f0011";
        let movie = route("GET", &format!("/v1/movies/{id}")).unwrap();
        assert_eq!(movie.upstream(None), Some(format!("/v1/movies/{id}")));
        assert_eq!(movie.city(), None);
        assert_eq!(code(route("GET", "/v1/movies/nope")), "invalid_movie_id");
        assert_eq!(
            code(route("GET", &format!("/v1/movies/{}", id.to_uppercase()))),
            "non_canonical_id"
        );
        let search = route("GET", "/v1/search?q=dune").unwrap();
        assert_eq!(
            search.upstream(Some("q=dune")),
            Some("/v1/search?q=dune".into())
        );
        assert!(matches!(
            search,
            Route::GlobalRead {
                kind: CacheKind::Search,
                ..
            }
        ));
        assert_eq!(
            route("POST", "/v1/operator/movies"),
            Ok(Route::CatalogWrite)
        );
        assert_eq!(
            code(route("GET", "/v1/operator/movies")),
            "method_not_allowed"
        );
        assert_eq!(code(route("POST", "/v1/search")), "method_not_allowed");
    }

    #[test]
    fn one_spelling_per_id_and_known_methods_only() {
        let upper = SHOW.to_ascii_uppercase();
        let braced = format!("{{{SHOW}}}");
        let urn = format!("urn:uuid:{SHOW}");
        let simple = SHOW.replace('-', "");
        for spelling in [upper, braced, urn, simple] {
            let r = route("GET", &format!("/v1/c/mum/shows/{spelling}"));
            assert_eq!(code(r), "non_canonical_id", "{spelling}");
        }
        assert!(route("GET", &format!("/v1/c/mum/shows/{SHOW}")).is_ok());
        for m in ["PROPFIND", "TRACE", "CONNECT", "get", "PATCH"] {
            let e = route(m, "/v1/cities").unwrap_err();
            assert_eq!(e.code, "method_not_allowed", "{m}");
        }
    }

    #[test]
    fn catalog_reads() {
        assert_eq!(route("GET", "/healthz").unwrap(), Route::Health);
        assert_eq!(route("GET", "/v1/cities").unwrap(), Route::Cities);
        let r = route("GET", "/v1/cities/mum/shows?date=2030-01-15").unwrap();
        assert_eq!(
            r.upstream(None).unwrap(),
            "/v1/cities/mum/shows?date=2030-01-15"
        );
        assert_eq!(r.class(), Some(RouteClass::Catalog));
        let r = route("GET", &format!("/v1/c/mum/shows/{SHOW}/availability")).unwrap();
        assert_eq!(
            r,
            Route::ShowRead {
                city: "mum".into(),
                show: SHOW.into(),
                kind: CacheKind::Availability
            }
        );
        assert_eq!(
            r.upstream(Some("x=1")).unwrap(),
            format!("/v1/shows/{SHOW}/availability")
        );
        assert_eq!(
            route("GET", &format!("/v1/c/blr/shows/{SHOW}/seats"))
                .unwrap()
                .upstream(None)
                .unwrap(),
            format!("/v1/shows/{SHOW}/seats")
        );
    }

    #[test]
    fn live_routes() {
        let poll = route("GET", &format!("/v1/c/mum/shows/{SHOW}/seats?since=41")).unwrap();
        assert_eq!(
            poll,
            Route::SeatsSince {
                city: "mum".into(),
                show: SHOW.into(),
                since: 41
            }
        );
        assert_eq!(poll.class(), Some(RouteClass::Catalog));
        assert_eq!(
            poll.upstream(Some("since=41&x=1")).unwrap(),
            format!("/v1/shows/{SHOW}/seats?since=41")
        );
        assert_eq!(
            code(route(
                "GET",
                &format!("/v1/c/mum/shows/{SHOW}/seats?since=x")
            )),
            "bad_query"
        );
        let live = route("GET", &format!("/v1/c/mum/shows/{SHOW}/live")).unwrap();
        assert_eq!(live.class(), Some(RouteClass::Api));
        assert_eq!(
            live.upstream(None).unwrap(),
            format!("/v1/shows/{SHOW}/live")
        );
        assert_eq!(
            code(route("GET", "/v1/c/mum/shows/nope/live")),
            "invalid_show_id"
        );
    }

    #[test]
    fn region_bound_routes() {
        let hold = route("POST", &format!("/v1/c/mum/shows/{SHOW}/holds")).unwrap();
        assert_eq!(hold.class(), Some(RouteClass::Hold));
        assert_eq!(hold.city(), Some("mum"));
        let co = route("POST", &format!("/v1/c/mum/holds/{SHOW}/checkout")).unwrap();
        assert_eq!(
            co.upstream(None).unwrap(),
            format!("/v1/holds/{SHOW}/checkout")
        );
        let op = route("POST", "/v1/c/mum/operator/shows").unwrap();
        assert!(matches!(op, Route::Operator { .. }));
        assert_eq!(op.upstream(None).unwrap(), "/v1/operator/shows");
        let fwd = route("GET", "/v1/c/blr/bookings").unwrap();
        assert_eq!(fwd.upstream(Some("page=2")).unwrap(), "/v1/bookings?page=2");
        assert_eq!(fwd.class(), Some(RouteClass::Api));
        // Another method on a cached path goes to the region (which says 405).
        assert!(matches!(
            route("DELETE", &format!("/v1/c/mum/shows/{SHOW}")).unwrap(),
            Route::Forward { .. }
        ));
    }

    #[test]
    fn waiting_room_routes() {
        assert!(matches!(
            route("POST", &format!("/v1/c/mum/sales/{SHOW}/join")).unwrap(),
            Route::Join { .. }
        ));
        assert!(matches!(
            route("GET", &format!("/v1/c/mum/sales/{SHOW}/status")).unwrap(),
            Route::Status { .. }
        ));
        assert!(matches!(
            route("GET", &format!("/c/mum/sales/{SHOW}")).unwrap(),
            Route::Page { .. }
        ));
        assert!(matches!(
            route("POST", &format!("/c/mum/sales/{SHOW}/join")).unwrap(),
            Route::PageJoin { .. }
        ));
        assert_eq!(
            route("PUT", &format!("/v1/operator/sales/{SHOW}")).unwrap(),
            Route::SaleConfig {
                show: SHOW.into(),
                write: true
            }
        );
        assert_eq!(
            code(route("GET", &format!("/v1/c/mum/sales/{SHOW}/join"))),
            "method_not_allowed"
        );
        assert_eq!(
            code(route("DELETE", &format!("/v1/operator/sales/{SHOW}"))),
            "method_not_allowed"
        );
        assert_eq!(
            route("PUT", "/v1/operator/edge/deny").unwrap(),
            Route::EdgeControl {
                control: Control::Deny,
                write: true
            }
        );
        assert_eq!(
            route("GET", "/v1/operator/edge/peak").unwrap().class(),
            Some(RouteClass::Operator)
        );
        assert_eq!(code(route("GET", "/v1/operator/edge/other")), "no_route");
        assert_eq!(
            code(route("POST", "/v1/operator/edge/peak")),
            "method_not_allowed"
        );
    }

    #[test]
    fn bad_requests_stop_at_the_edge() {
        assert_eq!(
            code(route("GET", &format!("/v1/c/xyz/shows/{SHOW}"))),
            "unknown_city"
        );
        assert_eq!(
            code(route("GET", "/v1/cities/MUM/shows?date=2030-01-15")),
            "unknown_city"
        );
        assert_eq!(
            code(route("POST", &format!("/v1/c/nope/sales/{SHOW}/join"))),
            "unknown_city"
        );
        assert_eq!(
            code(route("GET", "/v1/c/mum/shows/not-a-uuid")),
            "invalid_show_id"
        );
        assert_eq!(
            code(route("POST", "/v1/c/mum/holds/x/checkout")),
            "invalid_hold_id"
        );
        assert_eq!(
            code(route("GET", "/v1/cities/mum/shows?date=tomorrow")),
            "bad_query"
        );
        assert_eq!(code(route("POST", "/v1/cities")), "method_not_allowed");
        assert_eq!(code(route("GET", "/nothing")), "no_route");
        assert!(matches!(route("GET", "/").unwrap(), Route::Pages(_)));
        assert_eq!(code(route("GET", "/v1/c/mum")), "no_route");
        assert_eq!(code(route("GET", "/v1/c/mum/")), "no_route");
        assert_eq!(code(route("GET", "/v1/c/mum/../../metrics")), "no_route");
        assert_eq!(code(route("GET", "/metrics")), "no_route");
    }
}
