//! Rate limiting by GCRA (the generic cell rate algorithm, as in
//! redis-cell and `throttled`): one timestamp per key, the "theoretical
//! arrival time" (TAT), instead of a counter per window. It allows
//! `burst` requests at once and then one every `period / limit`, with
//! no window edges to game. A request may cost more than 1 (weighted).
//!
//! [`Gcra::decide`] is the arithmetic, pure, in integer milliseconds;
//! [`GCRA_LUA`] is the same arithmetic as a Lua function for Redis scripts, so a decision
//! costs one round trip and is atomic across edge isolates. Tests check
//! that the two agree.

use serde::{Deserialize, Serialize};

/// A limit: `limit` requests per `period_ms`, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gcra {
    /// Requests allowed per period (sustained rate).
    pub limit: u32,
    /// The period, in milliseconds.
    pub period_ms: u64,
    /// Requests allowed at once from idle (at least 1).
    pub burst: u32,
}

/// The outcome of one request against a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateDecision {
    /// Whether the request may go ahead.
    pub allowed: bool,
    /// The TAT to store (only when allowed).
    pub new_tat_ms: Option<i64>,
    /// Requests (of cost 1) that would still be allowed right now.
    pub remaining: u32,
    /// When denied: how long until this request would be allowed.
    pub retry_after_ms: u64,
    /// How long until the key is back to full burst (idle).
    pub reset_after_ms: u64,
}

impl Gcra {
    /// Milliseconds between requests at the sustained rate (at least 1).
    pub fn emission_ms(&self) -> i64 {
        (self.period_ms / u64::from(self.limit.max(1))).max(1) as i64
    }

    /// How far ahead of now the TAT may run: the burst capacity.
    pub fn burst_offset_ms(&self) -> i64 {
        self.emission_ms() * i64::from(self.burst.max(1))
    }

    /// Decides a request of `cost` at `now_ms` given the stored TAT.
    pub fn decide(&self, tat_ms: Option<i64>, now_ms: i64, cost: u32) -> RateDecision {
        let t = self.emission_ms();
        let offset = self.burst_offset_ms();
        let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
        let new_tat = tat + t * i64::from(cost);
        let allow_at = new_tat - offset;
        if now_ms < allow_at {
            return RateDecision {
                allowed: false,
                new_tat_ms: None,
                remaining: remaining(now_ms, tat - offset, t),
                retry_after_ms: (allow_at - now_ms) as u64,
                reset_after_ms: (tat - now_ms).max(0) as u64,
            };
        }
        RateDecision {
            allowed: true,
            new_tat_ms: Some(new_tat),
            remaining: remaining(now_ms, allow_at, t),
            retry_after_ms: 0,
            reset_after_ms: (new_tat - now_ms) as u64,
        }
    }
}

fn remaining(now: i64, allow_at: i64, t: i64) -> u32 {
    u32::try_from(((now - allow_at) / t).max(0)).unwrap_or(u32::MAX)
}

/// The headers of a decision (IETF draft `RateLimit` fields): `limit` is
/// the burst, `reset` whole seconds until full. On a denial, callers also
/// send `Retry-After` = [`retry_after_secs`].
pub fn headers(limit: &Gcra, d: &RateDecision) -> [(&'static str, String); 3] {
    [
        ("RateLimit-Limit", limit.burst.max(1).to_string()),
        ("RateLimit-Remaining", d.remaining.to_string()),
        (
            "RateLimit-Reset",
            d.reset_after_ms.div_ceil(1000).to_string(),
        ),
    ]
}

/// Whole seconds to wait before retrying a denied request (at least 1).
pub fn retry_after_secs(d: &RateDecision) -> u64 {
    d.retry_after_ms.div_ceil(1000).max(1)
}

/// [`Gcra::decide`] as a Lua function for Redis scripts, as a string
/// literal so scripts can `concat!` it (the edge's gate script does; its
/// tests run it on a real Redis against [`Gcra::decide`]). One copy: a
/// script that limits calls `gcra(key, now, emission_ms, burst_offset_ms,
/// cost)`, which reads the key's TAT and returns `{0, remaining,
/// retry_after_ms, reset_after_ms}` when denied, or `{1, remaining, 0,
/// reset_after_ms, new_tat}` when allowed; the caller stores `new_tat`
/// (with a TTL of its distance from now, so idle keys vanish) once every
/// key it checks has allowed the request.
#[macro_export]
macro_rules! gcra_lua {
    () => {
        r#"
local function gcra(key, now, t, offset, cost)
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + t * cost
  local allow_at = new_tat - offset
  if now < allow_at then
    local rem = math.floor((now - (tat - offset)) / t)
    if rem < 0 then rem = 0 end
    local reset = tat - now
    if reset < 0 then reset = 0 end
    return {0, rem, allow_at - now, reset}
  end
  local rem = math.floor((now - allow_at) / t)
  if rem < 0 then rem = 0 end
  return {1, rem, 0, new_tat - now, new_tat}
end
"#
    };
}

/// The text of [`gcra_lua!`].
pub const GCRA_LUA: &str = gcra_lua!();

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 per second, bursts of 5.
    const L: Gcra = Gcra {
        limit: 10,
        period_ms: 1000,
        burst: 5,
    };

    fn run(limit: &Gcra, tat: &mut Option<i64>, now: i64, cost: u32) -> RateDecision {
        let d = limit.decide(*tat, now, cost);
        if let Some(n) = d.new_tat_ms {
            *tat = Some(n);
        }
        d
    }

    #[test]
    fn a_burst_is_allowed_then_the_sustained_rate() {
        let mut tat = None;
        for i in 0..5 {
            let d = run(&L, &mut tat, 0, 1);
            assert!(d.allowed, "request {i} of the burst");
            assert_eq!(d.remaining, 4 - i);
        }
        let d = run(&L, &mut tat, 0, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_ms, 100);
        assert_eq!(d.remaining, 0);
        // One emission interval later, exactly one more.
        assert!(run(&L, &mut tat, 100, 1).allowed);
        assert!(!run(&L, &mut tat, 100, 1).allowed);
        // Idle for the whole burst window: full burst again.
        assert_eq!(run(&L, &mut tat, 10_000, 1).remaining, 4);
    }

    #[test]
    fn weighted_requests_spend_more() {
        let mut tat = None;
        let d = run(&L, &mut tat, 0, 3);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
        assert!(!run(&L, &mut tat, 0, 3).allowed, "only 2 left");
        assert!(run(&L, &mut tat, 0, 2).allowed);
        // A cost above the burst can never pass.
        assert!(!L.decide(None, 0, 6).allowed);
    }

    #[test]
    fn denials_do_not_move_the_tat() {
        let mut tat = None;
        for _ in 0..5 {
            run(&L, &mut tat, 0, 1);
        }
        let before = tat;
        for _ in 0..100 {
            assert!(!run(&L, &mut tat, 50, 1).allowed);
        }
        assert_eq!(
            tat, before,
            "a blocked client cannot push its own reset further"
        );
        assert!(run(&L, &mut tat, 100, 1).allowed);
    }

    #[test]
    fn headers_and_retry_after_round_up() {
        let d = L.decide(Some(450), 0, 1);
        assert!(!d.allowed);
        assert_eq!(retry_after_secs(&d), 1);
        let h = headers(&L, &d);
        assert_eq!(h[0], ("RateLimit-Limit", "5".to_string()));
        assert_eq!(h[1], ("RateLimit-Remaining", "0".to_string()));
        assert_eq!(h[2], ("RateLimit-Reset", "1".to_string()));
    }

    #[test]
    fn degenerate_limits_stay_safe() {
        let zero = Gcra {
            limit: 0,
            period_ms: 0,
            burst: 0,
        };
        assert_eq!(zero.emission_ms(), 1);
        assert!(zero.decide(None, 0, 1).allowed);
        assert!(!zero.decide(Some(1), 0, 1).allowed);
    }
}
