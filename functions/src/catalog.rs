//! Cached catalog reads: what is cached, under which key, for how long,
//! and whether a cached copy is fresh, stale (served while one refresh
//! runs in the background) or too old. Also the merged city list and the
//! sold-out flag read off availability answers. Pure; the Cache API calls
//! are in `wasm::cache`.
//!
//! Every cache key carries a catalog version, which operator writes
//! increment (through the edge: the Worker; sent to a region core
//! directly: the region core, when given the edge's Upstash): a new version makes every older entry
//! unreachable at once, in every location, without a purge. Versions are
//! per city (`edge:catalog:v:{city}`), so an operator busy in one city
//! does not empty the cache of a city in the middle of a flash sale; the
//! merged city list uses the global `edge:catalog:v`, which every
//! operator write also increments.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use shared::api::City;

/// The version keys, shared with the region core, which bumps them too
/// on a catalog write sent to it directly (`REGION_EDGE_UPSTASH_URL`).
pub use shared::catalog_version::{version_key, VERSION_KEY};

/// Response header telling whether the edge cache answered.
pub const CACHE_HEADER: &str = "X-Edge-Cache";

/// Header stored with a cached copy: when it was fetched (unix ms).
pub const STORED_AT_HEADER: &str = "X-Edge-Stored-At";

/// The kinds of cached reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheKind {
    /// `GET /v1/cities`, merged from every region.
    Cities,
    /// A city's shows on a date.
    Shows,
    /// One show.
    Show,
    /// A show's free-seat count.
    Availability,
    /// A show's seat map.
    Seats,
    /// One title of the global catalog.
    Movie,
    /// A title search of the global catalog.
    Search,
}

impl CacheKind {
    /// Name in keys and in `CACHE_TTLS`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cities => "cities",
            Self::Shows => "shows",
            Self::Show => "show",
            Self::Availability => "availability",
            Self::Seats => "seats",
            Self::Movie => "movie",
            Self::Search => "search",
        }
    }

    /// Answered by the global catalog, not a city's shard.
    pub fn is_global(self) -> bool {
        matches!(self, Self::Movie | Self::Search)
    }
}

/// How long a cached copy is fresh, then how long it may still be served
/// stale while it is refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// Fresh for this long.
    pub ttl_s: u32,
    /// Then stale-while-revalidate for this long.
    pub swr_s: u32,
}

const fn ttl(s: u32) -> Ttl {
    Ttl { ttl_s: s, swr_s: s }
}

/// Lifetimes of every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTtls {
    /// City list.
    pub cities: Ttl,
    /// Shows of a city on a date.
    pub shows: Ttl,
    /// One show.
    pub show: Ttl,
    /// Free-seat count.
    pub availability: Ttl,
    /// Seat map.
    pub seats: Ttl,
    /// One global title.
    pub movie: Ttl,
    /// A title search.
    pub search: Ttl,
    /// How long "sold out" is believed without asking again.
    pub sold_out_s: u32,
}

impl Default for CacheTtls {
    fn default() -> Self {
        Self {
            cities: ttl(300),
            shows: ttl(60),
            show: ttl(60),
            availability: ttl(2),
            seats: ttl(1),
            movie: ttl(300),
            search: ttl(60),
            sold_out_s: 5,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TtlJson {
    Secs(u32),
    Full { ttl_s: u32, swr_s: u32 },
}

impl CacheTtls {
    /// Parses `CACHE_TTLS`: `{"cities": 300, "seats": {"ttl_s": 1,
    /// "swr_s": 5}, "sold_out": 5}`. A bare number sets both the TTL and
    /// the stale window. Kinds left out keep their defaults.
    pub fn parse(json: &str) -> Result<Self, String> {
        let given: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(json).map_err(|e| format!("not a JSON object: {e}"))?;
        let mut out = Self::default();
        for (name, value) in given {
            if name == "sold_out" {
                out.sold_out_s = value
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|v| *v >= 1)
                    .ok_or("sold_out must be a whole number of seconds, at least 1")?;
                continue;
            }
            let t = match serde_json::from_value::<TtlJson>(value) {
                Ok(TtlJson::Secs(s)) => ttl(s),
                Ok(TtlJson::Full { ttl_s, swr_s }) => Ttl { ttl_s, swr_s },
                Err(_) => {
                    return Err(format!(
                        "{name}: give seconds, or {{\"ttl_s\": …, \"swr_s\": …}}"
                    ))
                }
            };
            if t.ttl_s == 0 {
                return Err(format!("{name}: the TTL must be at least 1 s"));
            }
            let slot = match name.as_str() {
                "cities" => &mut out.cities,
                "shows" => &mut out.shows,
                "show" => &mut out.show,
                "availability" => &mut out.availability,
                "seats" => &mut out.seats,
                "movie" => &mut out.movie,
                "search" => &mut out.search,
                _ => return Err(format!("unknown kind {name:?}")),
            };
            *slot = t;
        }
        Ok(out)
    }

    /// The lifetime of `kind`.
    pub fn get(&self, kind: CacheKind) -> Ttl {
        match kind {
            CacheKind::Cities => self.cities,
            CacheKind::Shows => self.shows,
            CacheKind::Show => self.show,
            CacheKind::Availability => self.availability,
            CacheKind::Seats => self.seats,
            CacheKind::Movie => self.movie,
            CacheKind::Search => self.search,
        }
    }
}

/// The Cache API key of a read: under the Worker's own origin, a path no
/// client route uses, with the catalog version, the kind, the city and the
/// upstream path and query.
pub fn cache_key(
    origin: &str,
    version: i64,
    kind: CacheKind,
    city: &str,
    upstream: &str,
) -> String {
    format!(
        "{}/__edge_cache/v{version}/{}/{city}{upstream}",
        origin.trim_end_matches('/'),
        kind.name()
    )
}

/// The key of a show's sold-out flag.
pub fn sold_out_key(origin: &str, version: i64, city: &str, show: &str) -> String {
    format!(
        "{}/__edge_cache/v{version}/sold_out/{city}/{show}",
        origin.trim_end_matches('/')
    )
}

/// How usable a cached copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it and refresh in the background.
    Stale,
    /// Fetch again (serve it only if the region cannot answer).
    Expired,
}

/// The freshness of a copy stored at `stored_at_ms`.
pub fn freshness(stored_at_ms: i64, now_ms: i64, t: Ttl) -> Freshness {
    let age = (now_ms - stored_at_ms).max(0);
    if age < i64::from(t.ttl_s) * 1000 {
        Freshness::Fresh
    } else if age < (i64::from(t.ttl_s) + i64::from(t.swr_s)) * 1000 {
        Freshness::Stale
    } else {
        Freshness::Expired
    }
}

/// `Cache-Control` for the stored copy: kept for TTL + stale window.
pub fn storage_cache_control(t: Ttl) -> String {
    format!("public, max-age={}", t.ttl_s + t.swr_s)
}

/// `Cache-Control` for the client, given the copy's age.
pub fn client_cache_control(t: Ttl, stored_at_ms: i64, now_ms: i64) -> String {
    let age_s = ((now_ms - stored_at_ms).max(0) / 1000) as u32;
    format!(
        "public, max-age={}, stale-while-revalidate={}",
        t.ttl_s.saturating_sub(age_s),
        t.swr_s
    )
}

/// `Age` in whole seconds.
pub fn age_secs(stored_at_ms: i64, now_ms: i64) -> i64 {
    (now_ms - stored_at_ms).max(0) / 1000
}

/// Merges the city lists of several regions: each region contributes only
/// the cities the routing table sends to it; sorted by code.
pub fn merge_cities<'a>(
    parts: impl IntoIterator<Item = (&'a [&'a str], &'a [u8])>,
) -> Result<Vec<City>, serde_json::Error> {
    let mut out: BTreeMap<String, City> = BTreeMap::new();
    for (routed, body) in parts {
        let routed: BTreeSet<&str> = routed.iter().copied().collect();
        for city in serde_json::from_slice::<Vec<City>>(body)? {
            if routed.contains(city.code.as_str()) {
                out.insert(city.code.as_str().to_owned(), city);
            }
        }
    }
    Ok(out.into_values().collect())
}

#[derive(Deserialize)]
struct Available {
    available: u32,
}

/// Whether an availability (or seat-map) answer says the show has no free
/// seat: `Some(true)` sold out, `Some(false)` seats left, `None` not an
/// answer we understand.
pub fn sold_out(body: &[u8]) -> Option<bool> {
    serde_json::from_slice::<Available>(body)
        .ok()
        .map(|a| a.available == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_over_defaults() {
        let t = CacheTtls::parse(r#"{"cities":10,"seats":{"ttl_s":1,"swr_s":4},"sold_out":3}"#)
            .unwrap();
        assert_eq!(
            t.cities,
            Ttl {
                ttl_s: 10,
                swr_s: 10
            }
        );
        assert_eq!(t.get(CacheKind::Seats), Ttl { ttl_s: 1, swr_s: 4 });
        assert_eq!(t.get(CacheKind::Availability), Ttl { ttl_s: 2, swr_s: 2 });
        assert_eq!(t.sold_out_s, 3);
        for bad in [
            r#"{"nope":1}"#,
            r#"{"show":0}"#,
            r#"{"show":"x"}"#,
            r#"{"sold_out":0}"#,
            "1",
        ] {
            assert!(CacheTtls::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_are_per_city_plus_one_for_the_city_list() {
        assert_eq!(version_key(Some("mum")), "edge:catalog:v:mum");
        assert_eq!(version_key(None), "edge:catalog:v");
    }

    #[test]
    fn keys_carry_the_version_so_a_bump_invalidates_everything() {
        let a = cache_key(
            "https://edge.example/",
            7,
            CacheKind::Shows,
            "mum",
            "/v1/cities/mum/shows?date=2030-01-15",
        );
        assert_eq!(
            a,
            "https://edge.example/__edge_cache/v7/shows/mum/v1/cities/mum/shows?date=2030-01-15"
        );
        let b = cache_key(
            "https://edge.example",
            8,
            CacheKind::Shows,
            "mum",
            "/v1/cities/mum/shows?date=2030-01-15",
        );
        assert_ne!(a, b);
        assert_eq!(
            sold_out_key("http://127.0.0.1:1", 0, "mum", "s"),
            "http://127.0.0.1:1/__edge_cache/v0/sold_out/mum/s"
        );
    }

    #[test]
    fn fresh_then_stale_then_expired() {
        let t = Ttl {
            ttl_s: 60,
            swr_s: 30,
        };
        assert_eq!(freshness(0, 59_999, t), Freshness::Fresh);
        assert_eq!(freshness(0, 60_000, t), Freshness::Stale);
        assert_eq!(freshness(0, 89_999, t), Freshness::Stale);
        assert_eq!(freshness(0, 90_000, t), Freshness::Expired);
        assert_eq!(
            freshness(10, 0, t),
            Freshness::Fresh,
            "clock skew between isolates"
        );
        assert_eq!(storage_cache_control(t), "public, max-age=90");
        assert_eq!(
            client_cache_control(t, 0, 15_500),
            "public, max-age=45, stale-while-revalidate=30"
        );
        assert_eq!(
            client_cache_control(t, 0, 75_000),
            "public, max-age=0, stale-while-revalidate=30"
        );
        assert_eq!(age_secs(0, 15_500), 15);
    }

    #[test]
    fn cities_merge_only_what_each_region_is_routed() {
        let a: &[&str] = &["mum", "pune"];
        let b: &[&str] = &["blr"];
        let merged = merge_cities([
            (a, br#"[{"code":"pune","name":"Pune"},{"code":"mum","name":"Mumbai"},{"code":"blr","name":"stale copy"}]"#.as_slice()),
            (b, br#"[{"code":"blr","name":"Bengaluru"}]"#.as_slice()),
        ])
        .unwrap();
        let names: Vec<_> = merged.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Bengaluru", "Mumbai", "Pune"]);
        assert!(merge_cities([(a, b"{}".as_slice())]).is_err());
    }

    #[test]
    fn sold_out_is_read_off_the_count() {
        assert_eq!(
            sold_out(br#"{"show_id":"x","available":0,"total":8}"#),
            Some(true)
        );
        assert_eq!(
            sold_out(br#"{"available":3,"held":1,"seats":[]}"#),
            Some(false)
        );
        assert_eq!(sold_out(b"nope"), None);
    }
}
