//! Isolate memory: what one Workers isolate remembers between requests.
//! Each isolate has its own (there are many per location, and they come
//! and go), so nothing here is needed for correctness: it saves Redis
//! calls and region round trips. wasm32 is single-threaded, so a
//! `thread_local` `RefCell` is the whole synchronisation; no borrow is
//! held across an `.await` (every access goes through [`with`]).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use worker::js_sys::{Reflect, JSON};
use worker::wasm_bindgen::JsValue;
use worker::Env;

use crate::config::{ConfigError, EdgeConfig};
use crate::rate_limit::RefusalMemory;
use crate::waiting_room::Sale;
use shared::breaker::Breaker;

/// How long a sale's settings (or their absence) are trusted.
pub const SALE_MEMORY_MS: i64 = 5_000;

#[derive(Default)]
pub struct Isolate {
    config: Option<Rc<EdgeConfig>>,
    /// Callers refused recently (429 / deny), answered without Redis.
    pub refusals: RefusalMemory,
    /// Circuit breakers, by replica base URL (one per upstream).
    pub breakers: HashMap<String, Breaker>,
    /// The configuration with the directory last read from Upstash, and
    /// when it was read (`super::directory`).
    pub directory: Option<(Rc<EdgeConfig>, i64)>,
    /// Turns out of the replica rotation (requests spread over a shard's
    /// replicas).
    pub turn: u64,
    /// The edge controls in force, and when they were read
    /// (`super::controls`).
    pub controls: Option<(Rc<crate::controls::Controls>, i64)>,
    /// Sale settings by show id, with when they were read.
    pub sales: HashMap<String, (Option<Rc<Sale>>, i64)>,
    /// The last catalog version seen, by version key.
    pub versions: HashMap<String, i64>,
    /// Shows known sold out, until when (unix ms), by `city/show`.
    pub sold_out: HashMap<String, i64>,
    /// Cache keys being refreshed in the background right now.
    pub refreshing: HashSet<String>,
}

thread_local! {
    static ISOLATE: RefCell<Isolate> = RefCell::new(Isolate::default());
}

/// Runs `f` on the isolate's memory.
pub fn with<R>(f: impl FnOnce(&mut Isolate) -> R) -> R {
    ISOLATE.with(|s| f(&mut s.borrow_mut()))
}

/// The configuration, parsed once per isolate (vars and secrets do not
/// change during an isolate's life).
pub fn config(env: &Env) -> Result<Rc<EdgeConfig>, ConfigError> {
    if let Some(c) = with(|s| s.config.clone()) {
        return Ok(c);
    }
    let cfg = Rc::new(EdgeConfig::from_lookup(|name| binding(env, name))?);
    with(|s| s.config = Some(cfg.clone()));
    Ok(cfg)
}

/// A var or secret as text. `wrangler.toml` vars may be TOML tables or
/// numbers (they reach the Worker as JS objects and numbers): those are
/// read as their JSON, so `REGIONS = { mum = "https://…" }` works as well
/// as a JSON string.
fn binding(env: &Env, name: &str) -> Option<String> {
    let v = Reflect::get(env, &JsValue::from_str(name)).ok()?;
    if v.is_undefined() || v.is_null() {
        return None;
    }
    v.as_string()
        .or_else(|| JSON::stringify(&v).ok().and_then(|s| s.as_string()))
}

impl Isolate {
    /// The next turn of the replica rotation.
    pub fn next_turn(&mut self) -> u64 {
        self.turn = self.turn.wrapping_add(1);
        self.turn
    }

    /// The breaker of a replica (created closed).
    pub fn breaker(&mut self, region: &str, cfg: &EdgeConfig) -> &mut Breaker {
        self.breakers
            .entry(region.to_owned())
            .or_insert_with(|| Breaker::new(cfg.breaker))
    }

    /// A sale's settings if read recently: `Some(None)` = known absent.
    pub fn sale(&self, show: &str, now_ms: i64) -> Option<Option<Rc<Sale>>> {
        self.sales
            .get(show)
            .filter(|(_, at)| now_ms - at < SALE_MEMORY_MS)
            .map(|(s, _)| s.clone())
    }

    /// Remembers a sale's settings (or their absence).
    pub fn remember_sale(&mut self, show: &str, sale: Option<Rc<Sale>>, now_ms: i64) {
        if self.sales.len() > 10_000 {
            self.sales
                .retain(|_, (_, at)| now_ms - *at < SALE_MEMORY_MS);
        }
        self.sales.insert(show.to_owned(), (sale, now_ms));
    }

    /// Whether `city/show` is known sold out at `now_ms`.
    pub fn is_sold_out(&mut self, key: &str, now_ms: i64) -> bool {
        match self.sold_out.get(key) {
            Some(until) if *until > now_ms => true,
            Some(_) => {
                self.sold_out.remove(key);
                false
            }
            None => false,
        }
    }
}
