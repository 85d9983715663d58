//! The Worker's configuration: `[vars]` from `wrangler.toml` and the
//! secrets, read through a lookup function so the parsing is tested
//! without the runtime. Every problem names its variable. Vars that are
//! missing take defaults that work locally; secrets have no default (the
//! dev server `functions/dev/serve.mjs` passes local ones).

use std::collections::BTreeMap;
use std::fmt;

use shared::CityCode;

use crate::catalog::CacheTtls;
use crate::rate_limit::{DenyList, RateLimits};
use shared::breaker::BreakerSettings;

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable or secret.
    pub var: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn bad(var: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        problem: problem.into(),
    }
}

/// The routing table: city code → the replicas of that city's region
/// core (its shard), as base URLs. Several cities may share one shard.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Regions {
    by_city: BTreeMap<String, Vec<String>>,
}

/// One city's entry: a URL, or the list of its shard's replicas.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Replicas {
    One(String),
    Many(Vec<String>),
}

impl Regions {
    /// Parses `{"mum": "https://mum.example", "nyc": ["https://nyc-1…",
    /// "https://nyc-2…"], …}`: each city's shard, as one URL or as the
    /// list of its replicas (which the edge spreads requests over).
    pub fn parse(json: &str) -> Result<Self, String> {
        let raw: BTreeMap<String, Replicas> = serde_json::from_str(json)
            .map_err(|e| format!("not a JSON object of URLs or lists of URLs: {e}"))?;
        if raw.is_empty() {
            return Err("no city is configured".into());
        }
        let mut by_city = BTreeMap::new();
        for (city, replicas) in raw {
            CityCode::parse(&city).map_err(|e| e.to_string())?;
            let urls = match replicas {
                Replicas::One(u) => vec![u],
                Replicas::Many(us) => us,
            };
            if urls.is_empty() {
                return Err(format!("{city:?} has an empty list of replicas"));
            }
            let mut clean = Vec::with_capacity(urls.len());
            for url in urls {
                let url = url.trim().trim_end_matches('/').to_owned();
                let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
                if !scheme_ok || url.len() <= "https://".len() || url.contains(['?', '#', ' ']) {
                    return Err(format!(
                        "the region URL of {city:?} must be an http(s) base URL, got {url:?}"
                    ));
                }
                if clean.contains(&url) {
                    return Err(format!("{city:?} lists {url:?} twice"));
                }
                clean.push(url);
            }
            by_city.insert(city, clean);
        }
        Ok(Self { by_city })
    }

    /// The base URLs (no trailing slash) of `city`'s replicas.
    pub fn replicas(&self, city: &str) -> Option<&[String]> {
        self.by_city.get(city).map(Vec::as_slice)
    }

    /// Each distinct shard (its replica list) with the cities it serves,
    /// so a read that spans every city asks each shard once.
    pub fn distinct(&self) -> Vec<(&[String], Vec<&str>)> {
        let mut out: BTreeMap<&[String], Vec<&str>> = BTreeMap::new();
        for (city, urls) in &self.by_city {
            out.entry(urls.as_slice()).or_default().push(city.as_str());
        }
        out.into_iter().collect()
    }

    /// Whether `city` is routed.
    pub fn contains(&self, city: &str) -> bool {
        self.by_city.contains_key(city)
    }

    /// The table as JSON, in the form [`Regions::parse`] reads (every
    /// city with its list of replicas).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.by_city
                .iter()
                .map(|(city, urls)| (city.clone(), serde_json::json!(urls)))
                .collect(),
        )
    }
}

/// The Upstash key (under `KEY_PREFIX`) of the city → shard directory an
/// operator sets with `PUT /v1/operator/directory`; while it is absent the
/// deploy's `REGIONS` is the directory.
pub const DIRECTORY_KEY: &str = "directory";

/// How long an isolate trusts the directory it read by default
/// (`DIRECTORY_REFRESH_MS`).
pub const DIRECTORY_TTL_MS: i64 = 5_000;

/// The order in which a request tries a shard's `n` replicas: a rotation
/// starting at `turn % n`, so successive requests spread over them.
pub fn rotation(n: usize, turn: u64) -> impl Iterator<Item = usize> {
    let start = if n == 0 {
        0
    } else {
        (turn % n as u64) as usize
    };
    (0..n).map(move |i| (start + i) % n)
}

/// Whether a request that failed on one replica (no answer, or a 502/504
/// from a proxy) may be sent to another: reads always; writes only with
/// an `Idempotency-Key`, which makes the region answer a repeat with the
/// first outcome (a write without one may have been applied already).
pub fn may_fail_over(method: &str, has_idempotency_key: bool) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS") || has_idempotency_key
}

/// Where the edge's state lives: Upstash (or the local gateway).
#[derive(Clone, PartialEq, Eq)]
pub struct UpstashSettings {
    /// REST base URL, no trailing slash.
    pub url: String,
    /// Bearer token (a secret).
    pub token: String,
    /// A slower answer counts as "unreachable".
    pub timeout_ms: u64,
    /// Put in front of every Redis key, so several edges (tests, staging)
    /// can share one database without seeing each other's state.
    pub key_prefix: String,
}

impl fmt::Debug for UpstashSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstashSettings")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("timeout_ms", &self.timeout_ms)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

/// Everything the Worker is configured with.
#[derive(Clone)]
pub struct EdgeConfig {
    /// City → region core.
    pub regions: Regions,
    /// Rate limits per route class.
    pub limits: RateLimits,
    /// Clients refused outright (plus the Redis set `edge:deny`).
    pub deny_list: DenyList,
    /// Catalog cache lifetimes.
    pub cache_ttls: CacheTtls,
    /// How long to wait for a region core.
    pub region_timeout_ms: u64,
    /// How long an isolate trusts the directory it read from Upstash
    /// (`DIRECTORY_REFRESH_MS`): a directory change reaches every isolate
    /// within this.
    pub directory_refresh_ms: i64,
    /// How long an isolate trusts the edge controls it read
    /// (`CONTROLS_REFRESH_MS`, default `controls::REFRESH_MS`): a deny-list
    /// or peak-mode change reaches every isolate within this.
    pub controls_refresh_ms: i64,
    /// How long to wait for a region core's answer to a payment (a
    /// checkout): it waits on the payment gateway for up to its own
    /// `REGION_GATEWAY_TIMEOUT_MS` before answering, so this must be
    /// longer, or a slow gateway would look like a region that is down.
    pub payment_timeout_ms: u64,
    /// The per-region circuit breaker.
    pub breaker: BreakerSettings,
    /// Largest request body forwarded or read.
    pub max_body_bytes: usize,
    /// The state store.
    pub upstash: UpstashSettings,
    /// Signs admission passes (the region core verifies with it).
    pub admission_key: Vec<u8>,
    /// Older signing keys still accepted when the edge checks a pass
    /// (rotation); never used to sign.
    pub admission_keys_previous: Vec<Vec<u8>>,
    /// Verifies the platform's user and operator tokens.
    pub jwt_secret: Vec<u8>,
    /// Where client addresses come from (`TRUST_CF_CONNECTING_IP`,
    /// `TRUSTED_PROXIES`).
    pub client_ip: crate::auth::ClientIpSource,
    /// `LIVE_BUCKETS`: Durable Objects per show for the live seat map
    /// (each keeps one socket to the region core; see `crate::live`).
    pub live_buckets: u32,
    /// `DEV_SIGNIN`: the pages' sign-in by e-mail alone (development only).
    pub dev_signin: bool,
    /// `CATALOG_URL`: the global catalog service (titles every city
    /// shares, search); `None` when the deployment has none.
    pub catalog_url: Option<String>,
}

/// The name the global catalog goes by where calls name a city: in the
/// region calls, the breakers and the cache keys. Not a city code (those
/// are `[a-z]{2,8}`), so it cannot collide with one.
pub const CATALOG: &str = "_catalog";

impl fmt::Debug for EdgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeConfig")
            .field("regions", &self.regions)
            .field("limits", &self.limits)
            .field("cache_ttls", &self.cache_ttls)
            .field("region_timeout_ms", &self.region_timeout_ms)
            .field("directory_refresh_ms", &self.directory_refresh_ms)
            .field("controls_refresh_ms", &self.controls_refresh_ms)
            .field("payment_timeout_ms", &self.payment_timeout_ms)
            .field("breaker", &self.breaker)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("upstash", &self.upstash)
            .field("dev_signin", &self.dev_signin)
            .field("catalog_url", &self.catalog_url)
            .finish_non_exhaustive()
    }
}

/// Default largest body: 64 KiB (a hold or checkout body is < 1 KiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Default of `REGION_PAYMENT_TIMEOUT_MS`: the region core's default
/// gateway timeout (10 s) plus room for its queue and its two writes.
pub const DEFAULT_PAYMENT_TIMEOUT_MS: u64 = 15_000;

fn number<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
    ok: impl Fn(&T) -> bool,
    expect: &str,
) -> Result<T, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(s) if s.trim().is_empty() => Ok(default),
        Some(s) => match s.trim().parse::<T>() {
            Ok(v) if ok(&v) => Ok(v),
            _ => Err(bad(var, format!("must be {expect}, got {s:?}"))),
        },
    }
}

fn secret(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    min_len: usize,
) -> Result<String, ConfigError> {
    match get(var) {
        None => Err(bad(
            var,
            "is not set (a secret: `wrangler secret put`, or the dev server's environment)",
        )),
        Some(s) if s.len() < min_len => Err(bad(var, format!("must be at least {min_len} bytes"))),
        Some(s) => Ok(s),
    }
}

/// `BREAKER_FAILURES`, `BREAKER_OPEN_MS`; a probe times out a second after
/// the region timeout.
fn breaker_settings(
    get: &impl Fn(&str) -> Option<String>,
    region_timeout_ms: u64,
) -> Result<BreakerSettings, ConfigError> {
    let defaults = BreakerSettings::default();
    Ok(BreakerSettings {
        failures: number(
            get,
            "BREAKER_FAILURES",
            defaults.failures,
            |v| (1..=1000).contains(v),
            "1–1000",
        )?,
        open_ms: number(
            get,
            "BREAKER_OPEN_MS",
            defaults.open_ms,
            |v| (100..=600_000).contains(v),
            "100–600000 ms",
        )?,
        // A probe that has not come back within the region timeout
        // has failed; let another through after that.
        probe_timeout_ms: region_timeout_ms + 1_000,
    })
}

/// `UPSTASH_REDIS_REST_URL`, `UPSTASH_REDIS_REST_TOKEN`,
/// `UPSTASH_TIMEOUT_MS`, `KEY_PREFIX`.
fn upstash_settings(get: &impl Fn(&str) -> Option<String>) -> Result<UpstashSettings, ConfigError> {
    let url = secret(&get, "UPSTASH_REDIS_REST_URL", 8)?
        .trim()
        .trim_end_matches('/')
        .to_owned();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad("UPSTASH_REDIS_REST_URL", "must be an http(s) URL"));
    }
    Ok(UpstashSettings {
        url,
        token: secret(&get, "UPSTASH_REDIS_REST_TOKEN", 1)?,
        timeout_ms: number(
            &get,
            "UPSTASH_TIMEOUT_MS",
            1_000u64,
            |v| (50..=30_000).contains(v),
            "50–30000 ms",
        )?,
        key_prefix: match get("KEY_PREFIX") {
            None => String::new(),
            Some(p) if p.len() <= 64 && p.bytes().all(|b| b.is_ascii_graphic()) => p,
            Some(_) => {
                return Err(bad(
                    "KEY_PREFIX",
                    "must be at most 64 printable ASCII characters without spaces",
                ))
            }
        },
    })
}

/// `ADMISSION_KEYS_PREVIOUS`: keys passes signed before a rotation may
/// still carry (comma-separated, each at least 16 bytes).
fn previous_admission_keys(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<Vec<u8>>, ConfigError> {
    Ok(match get("ADMISSION_KEYS_PREVIOUS") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| {
                if k.len() < 16 {
                    Err(bad(
                        "ADMISSION_KEYS_PREVIOUS",
                        "every key must be at least 16 bytes",
                    ))
                } else {
                    Ok(k.as_bytes().to_vec())
                }
            })
            .collect::<Result<_, _>>()?,
    })
}

/// A `true`/`false` var, `false` when unset or empty.
fn flag(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<bool, ConfigError> {
    match get(var).as_deref().map(str::trim) {
        None | Some("") | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(bad(var, format!("must be true or false, got {other:?}"))),
    }
}

/// `TRUST_CF_CONNECTING_IP` and `TRUSTED_PROXIES`: where a client's
/// address is read from.
fn client_ip_source(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<crate::auth::ClientIpSource, ConfigError> {
    let trust_cf_connecting_ip = match get("TRUST_CF_CONNECTING_IP").as_deref().map(str::trim) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(bad(
                "TRUST_CF_CONNECTING_IP",
                format!("must be true or false, got {other:?}"),
            ))
        }
    };
    let trusted_proxies = shared::client_ip::parse_list(
        get("TRUSTED_PROXIES")
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or("127.0.0.1,::1"),
    )
    .map_err(|e| bad("TRUSTED_PROXIES", e))?;
    Ok(crate::auth::ClientIpSource {
        trust_cf_connecting_ip,
        trusted_proxies,
    })
}

impl EdgeConfig {
    /// Reads and checks every setting. `get` returns a var or secret by
    /// name (the Worker passes `env.var`/`env.secret`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let regions = Regions::parse(
            &get("REGIONS")
                .ok_or_else(|| bad("REGIONS", "is not set (JSON: city -> region core URL)"))?,
        )
        .map_err(|e| bad("REGIONS", e))?;
        let limits = match get("RATE_LIMITS") {
            Some(json) if !json.trim().is_empty() => {
                RateLimits::parse(&json).map_err(|e| bad("RATE_LIMITS", e))?
            }
            _ => RateLimits::default(),
        };
        let deny_list = DenyList::parse(get("DENY_LIST").as_deref().unwrap_or(""))
            .map_err(|e| bad("DENY_LIST", e))?;
        let cache_ttls = match get("CACHE_TTLS") {
            Some(json) if !json.trim().is_empty() => {
                CacheTtls::parse(&json).map_err(|e| bad("CACHE_TTLS", e))?
            }
            _ => CacheTtls::default(),
        };
        let directory_refresh_ms = number(
            &get,
            "DIRECTORY_REFRESH_MS",
            DIRECTORY_TTL_MS,
            |v| (100..=3_600_000).contains(v),
            "100–3600000 ms",
        )?;
        let controls_refresh_ms = number(
            &get,
            "CONTROLS_REFRESH_MS",
            crate::controls::REFRESH_MS,
            |v| (100..=3_600_000).contains(v),
            "100–3600000 ms",
        )?;
        let region_timeout_ms = number(
            &get,
            "REGION_TIMEOUT_MS",
            5_000u64,
            |v| (100..=60_000).contains(v),
            "100–60000 ms",
        )?;
        let payment_timeout_ms = number(
            &get,
            "REGION_PAYMENT_TIMEOUT_MS",
            DEFAULT_PAYMENT_TIMEOUT_MS.max(region_timeout_ms),
            |v| (region_timeout_ms..=120_000).contains(v),
            "at least REGION_TIMEOUT_MS, at most 120000 ms",
        )?;
        let breaker = breaker_settings(&get, region_timeout_ms)?;
        let max_body_bytes = number(
            &get,
            "MAX_BODY_BYTES",
            DEFAULT_MAX_BODY_BYTES,
            |v| (1_024..=1 << 20).contains(v),
            "1024–1048576 bytes",
        )?;
        let upstash = upstash_settings(&get)?;
        let admission_key = secret(&get, "ADMISSION_KEY", 16)?.into_bytes();
        let admission_keys_previous = previous_admission_keys(&get)?;
        let jwt_secret = secret(&get, "JWT_SECRET", 16)?.into_bytes();
        let client_ip = client_ip_source(&get)?;
        let live_buckets = number(
            &get,
            "LIVE_BUCKETS",
            crate::live::DEFAULT_BUCKETS,
            |v| (1..=crate::live::MAX_BUCKETS).contains(v),
            "1–1024",
        )?;
        let dev_signin = flag(&get, "DEV_SIGNIN")?;
        let catalog_url =
            match get("CATALOG_URL").map(|u| u.trim().trim_end_matches('/').to_owned()) {
                None => None,
                Some(u) if u.is_empty() => None,
                Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u),
                Some(u) => {
                    return Err(bad(
                        "CATALOG_URL",
                        format!("must be an http(s) URL, got {u:?}"),
                    ))
                }
            };
        Ok(Self {
            catalog_url,
            regions,
            directory_refresh_ms,
            controls_refresh_ms,
            limits,
            deny_list,
            cache_ttls,
            region_timeout_ms,
            payment_timeout_ms,
            breaker,
            max_body_bytes,
            upstash,
            admission_key,
            admission_keys_previous,
            jwt_secret,
            client_ip,
            live_buckets,
            dev_signin,
        })
    }

    /// Keys a pass may be signed with: the current one first.
    pub fn admission_keys(&self) -> Vec<&[u8]> {
        std::iter::once(self.admission_key.as_slice())
            .chain(self.admission_keys_previous.iter().map(Vec::as_slice))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(crate) fn vars() -> HashMap<&'static str, String> {
        HashMap::from([
            (
                "REGIONS",
                r#"{"mum":"http://127.0.0.1:8080/","pune":"http://127.0.0.1:8080","blr":"http://127.0.0.1:9090"}"#.to_string(),
            ),
            ("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:8079".to_string()),
            ("UPSTASH_REDIS_REST_TOKEN", "local-dev-token".to_string()),
            ("ADMISSION_KEY", "dev-only-admission-key-change-me".to_string()),
            ("JWT_SECRET", "dev-only-secret-change-me".to_string()),
        ])
    }

    pub(crate) fn config() -> EdgeConfig {
        let v = vars();
        EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap()
    }

    fn err_with(var: &'static str, value: &str) -> ConfigError {
        let mut v = vars();
        v.insert(var, value.to_string());
        EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err()
    }

    #[test]
    fn local_defaults_work() {
        let c = config();
        assert_eq!(
            c.regions.replicas("mum"),
            Some(&["http://127.0.0.1:8080".to_owned()][..])
        );
        assert_eq!(c.region_timeout_ms, 5_000);
        assert_eq!(c.payment_timeout_ms, DEFAULT_PAYMENT_TIMEOUT_MS);
        assert_eq!(c.max_body_bytes, 64 * 1024);
        assert_eq!(c.admission_keys().len(), 1);
        assert_eq!(c.upstash.key_prefix, "");
        assert_eq!(c.live_buckets, 1, "one live object per show locally");
        // Two cities on one region core: one read of its city list.
        let d = c.regions.distinct();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].1, vec!["mum", "pune"]);
        assert_eq!(d[0].0, &["http://127.0.0.1:8080".to_owned()][..]);
    }

    #[test]
    fn a_shard_may_list_its_replicas() {
        let r = Regions::parse(
            r#"{"mum": ["http://m1:1/", "http://m2:2"], "pune": ["http://m1:1", "http://m2:2"], "nyc": "http://n:3"}"#,
        )
        .unwrap();
        assert_eq!(r.replicas("mum").unwrap(), ["http://m1:1", "http://m2:2"]);
        assert_eq!(r.replicas("nyc").unwrap(), ["http://n:3"]);
        // mum and pune share a shard: one read for both.
        let d = r.distinct();
        assert_eq!(d.len(), 2);
        assert!(d.iter().any(|(_, c)| c == &vec!["mum", "pune"]));
    }

    #[test]
    fn the_directory_reads_back_what_it_writes() {
        let r = Regions::parse(r#"{"mum": ["http://m1:1", "http://m2:2"], "nyc": "http://n:3"}"#)
            .unwrap();
        assert_eq!(Regions::parse(&r.to_json().to_string()).unwrap(), r);
    }

    #[test]
    fn requests_rotate_over_replicas_and_only_safe_ones_fail_over() {
        assert_eq!(rotation(3, 0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(rotation(3, 4).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(rotation(1, 9).collect::<Vec<_>>(), [0]);
        assert!(may_fail_over("GET", false));
        assert!(may_fail_over("POST", true));
        assert!(!may_fail_over("POST", false));
        assert!(!may_fail_over("DELETE", false));
    }

    #[test]
    fn every_problem_names_its_variable() {
        assert_eq!(err_with("REGIONS", "{}").var, "REGIONS");
        assert_eq!(err_with("REGIONS", r#"{"MUM":"http://x"}"#).var, "REGIONS");
        assert_eq!(err_with("REGIONS", r#"{"mum":"ftp://x"}"#).var, "REGIONS");
        assert_eq!(err_with("REGIONS", r#"{"mum":[]}"#).var, "REGIONS");
        assert_eq!(
            err_with("REGIONS", r#"{"mum":["http://a","http://a/"]}"#).var,
            "REGIONS"
        );
        assert_eq!(err_with("REGION_TIMEOUT_MS", "0").var, "REGION_TIMEOUT_MS");
        // A payment may not be given up on sooner than any other call.
        assert_eq!(
            err_with("REGION_PAYMENT_TIMEOUT_MS", "4999").var,
            "REGION_PAYMENT_TIMEOUT_MS"
        );
        assert_eq!(err_with("ADMISSION_KEY", "short").var, "ADMISSION_KEY");
        assert_eq!(err_with("JWT_SECRET", "short").var, "JWT_SECRET");
        assert_eq!(err_with("RATE_LIMITS", "[]").var, "RATE_LIMITS");
        assert_eq!(err_with("CACHE_TTLS", r#"{"nope":1}"#).var, "CACHE_TTLS");
        assert_eq!(err_with("DENY_LIST", "ip:not-an-ip").var, "DENY_LIST");
        assert_eq!(err_with("KEY_PREFIX", "a b").var, "KEY_PREFIX");
        assert_eq!(err_with("LIVE_BUCKETS", "0").var, "LIVE_BUCKETS");
        assert_eq!(err_with("DEV_SIGNIN", "yes").var, "DEV_SIGNIN");
        assert_eq!(
            err_with("UPSTASH_REDIS_REST_URL", "redis://127.0.0.1").var,
            "UPSTASH_REDIS_REST_URL"
        );
        let mut v = vars();
        v.remove("UPSTASH_REDIS_REST_TOKEN");
        let e = EdgeConfig::from_lookup(|k| v.get(k).cloned()).unwrap_err();
        assert_eq!(e.var, "UPSTASH_REDIS_REST_TOKEN");
        assert!(e.to_string().starts_with("UPSTASH_REDIS_REST_TOKEN: "));
    }

    /// The committed `wrangler.toml` is a valid configuration: its vars,
    /// read as the Worker reads them (TOML tables reach it as objects and
    /// are taken as their JSON), plus the secrets it names. So is each
    /// deployed environment's (`[env.staging]`, `[env.production]`),
    /// which repeats the vars in full (wrangler does not inherit them).
    #[test]
    fn the_committed_wrangler_toml_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wrangler.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(doc["main"].as_str(), Some("functions/build/index.js"));
        assert!(doc["compatibility_date"].as_str().unwrap() <= "2026-04-26");
        let envs = doc["env"].as_table().unwrap();
        let deployed = ["staging", "production"].map(|e| (e, envs[e]["vars"].as_table().unwrap()));
        for (name, vars) in [("top level", doc["vars"].as_table().unwrap())]
            .into_iter()
            .chain(deployed)
        {
            let mut v = vars_with_secrets_only();
            for (var, value) in vars.clone() {
                let text = match value {
                    toml::Value::String(s) => s,
                    other => serde_json::to_string(&other).unwrap(),
                };
                v.insert(Box::leak(var.into_boxed_str()), text);
            }
            let c = EdgeConfig::from_lookup(|k| v.get(k).cloned())
                .unwrap_or_else(|e| panic!("wrangler.toml, {name}: {e}"));
            assert!(c.regions.contains("mum"), "{name}");
            assert_eq!(
                c.limits,
                RateLimits::default(),
                "wrangler.toml spells out the defaults ({name})"
            );
            assert_eq!(c.cache_ttls, CacheTtls::default(), "{name}");
            assert_eq!(c.breaker.failures, 5, "{name}");
            assert!(
                c.live_buckets > 1,
                "production spreads a show's viewers ({name})"
            );
            assert!(
                !c.dev_signin,
                "no e-mail-only sign-in in production ({name})"
            );
        }
    }

    fn vars_with_secrets_only() -> HashMap<&'static str, String> {
        let mut v = vars();
        v.remove("REGIONS");
        v
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let shown = format!("{:?}", config());
        assert!(!shown.contains("local-dev-token"));
        assert!(!shown.contains("dev-only"));
    }
}
