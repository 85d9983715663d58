//! The edge's Redis scripts: one `EVAL` per edge decision, so a decision
//! is one round trip to Upstash and atomic across isolates.
//!
//! - [`GATE`]: the deny-list check and the rate limit for the caller's IP
//!   and user keys, plus `GET`s of a few context keys (the catalog
//!   version, a sale's config) the route needs anyway.
//! - [`ROOM`]: the gate, then a waiting-room join or status (pre-queue
//!   draw, dropout sweep, admission pass record). One call per poll.
//! - [`COMPLETE`]: a pass reported completed gives its slot back, once.
//!
//! The rate-limit arithmetic is `shared::gcra_lua!` (one copy, in
//! `shared`), run for two keys; the `SET`s wait until every key has
//! allowed the request, so a request refused by one key spends nothing
//! from the other (as a denied request never moves the TAT in
//! `Gcra::decide`). The Rust side
//! ([`crate::rate_limit`], [`crate::waiting_room`]) builds the arguments
//! and reads the replies; `tests/scripts_redis.rs` runs these scripts on
//! the real Redis and checks them against `shared`'s arithmetic.
//!
//! Lua tables stop at the first `nil`, so replies use `false` (→ `null`)
//! for absent values.

use crate::upstash::Script;

/// The gate as a Lua prologue shared by [`GATE`] and [`ROOM`].
///
/// KEYS[1] deny set, KEYS[2] IP limit key, KEYS[3] user limit key (a
/// placeholder, never touched, when ARGV[7] is `0`).
/// ARGV[1] now_ms, [2] cost, [3]/[4] IP emission_ms / burst_offset_ms,
/// [5]/[6] user emission_ms / burst_offset_ms, [7] has_user `0|1`,
/// [8]/[9] the IP's and the user's deny-set members.
///
/// `gate()` returns `{-1, 1|2}` when the IP (1) or user (2) is on the
/// deny list, else `{allowed, ip_allowed, ip_remaining, ip_retry_ms,
/// ip_reset_ms, user_allowed, user_remaining, user_retry_ms,
/// user_reset_ms}`.
macro_rules! gate_prologue {
    () => {
        concat!(
            shared::gcra_lua!(),
            r#"
local function gate()
  local now = tonumber(ARGV[1])
  local has_user = ARGV[7] == '1'
  if redis.call('SISMEMBER', KEYS[1], ARGV[8]) == 1 then return {-1, 1} end
  if has_user and redis.call('SISMEMBER', KEYS[1], ARGV[9]) == 1 then return {-1, 2} end
  local cost = tonumber(ARGV[2])
  local ip = gcra(KEYS[2], now, tonumber(ARGV[3]), tonumber(ARGV[4]), cost)
  local user = {1, 0, 0, 0}
  if has_user then user = gcra(KEYS[3], now, tonumber(ARGV[5]), tonumber(ARGV[6]), cost) end
  if ip[1] == 1 and user[1] == 1 then
    redis.call('SET', KEYS[2], ip[5], 'PX', math.max(1, ip[5] - now))
    if has_user then redis.call('SET', KEYS[3], user[5], 'PX', math.max(1, user[5] - now)) end
    return {1, ip[1], ip[2], ip[3], ip[4], user[1], user[2], user[3], user[4]}
  end
  return {0, ip[1], ip[2], ip[3], ip[4], user[1], user[2], user[3], user[4]}
end
"#
        )
    };
}

/// The gate, then `GET` of KEYS[4..] when allowed. Reply: `{gate,
/// ctx1, ctx2, …}` (`{gate}` when refused).
pub const GATE: Script = Script {
    name: "gate",
    source: concat!(
        gate_prologue!(),
        r#"
local g = gate()
local out = {g}
if g[1] == 1 then
  for i = 4, #KEYS do out[#out + 1] = redis.call('GET', KEYS[i]) end
end
return out
"#
    ),
};

/// The gate, then a waiting-room join or status for one user.
///
/// KEYS[1..3] as the gate; KEYS[4] `q` (ZSET user → order), [5] `seen`
/// (ZSET user → last poll ms), [6] `seed`, [7] `bonus` (places given
/// back), [8] `n` (arrival counter), [9] `drawn` (flag), [10] `gone` (SET
/// of users dropped for not polling), [11] `passes` (HASH user →
/// `iat_ms|pos|pid`), [12] `slot` (the last pass's issue instant, ms).
/// ARGV[1..9] as the gate; [10] `join|status`, [11] user id, [12]
/// opens_at_ms, [13] the serving counter without bonus
/// (`SaleConfig::served(now, 0)`, computed in Rust), [14] grace_ms, [15]
/// a fresh seed (used only by the first join), [16] a fresh pass id (used
/// only when a pass is first recorded), [17] pass_ttl_ms, [18] most stale
/// users to sweep, [19] how long the sale's keys live after a join (ms),
/// [20] the spacing of pass issue instants, ms (`1000 / rate`).
///
/// Reply: `{gate}` when refused, else `{gate, {rank or -1, bonus, seed or
/// nil, pass record or nil, dropped 0|1, served}}`.
pub const ROOM: Script = Script {
    name: "room",
    source: concat!(
        gate_prologue!(),
        r#"
local g = gate()
if g[1] ~= 1 then return {g} end
local q, seen, seedk, bonusk, nk, drawn, gone, passes, slotk =
  KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12]
local mode, user = ARGV[10], ARGV[11]
local now, opens = tonumber(ARGV[1]), tonumber(ARGV[12])
local base, grace = tonumber(ARGV[13]), tonumber(ARGV[14])
local ttl, sweep, keep = tonumber(ARGV[17]), tonumber(ARGV[18]), tonumber(ARGV[19])
local spacing = tonumber(ARGV[20])

-- If an isolate whose clock runs a little ahead has drawn already, the
-- sale is open whatever our clock says: a late pre-queue join must not
-- land in front of the drawn order.
local open = now >= opens or redis.call('EXISTS', drawn) == 1

-- The seed exists from the first join, so its commitment can be shown
-- before opening; it is revealed after.
if mode == 'join' then redis.call('SET', seedk, ARGV[15], 'NX') end
local seed = redis.call('GET', seedk)

-- The first call after opening draws the pre-queue order, once:
-- score = first 48 bits of SHA-1(seed ':' user) (shared::waiting_room::prequeue_score).
if open and seed and redis.call('SET', drawn, '1', 'NX', 'PX', keep) then
  local pre = redis.call('ZRANGEBYSCORE', q, 0, 0)
  for i = 1, #pre do
    local score = tonumber(string.sub(redis.sha1hex(seed .. ':' .. pre[i]), 1, 12), 16)
    redis.call('ZADD', q, 'XX', score, pre[i])
  end
end

-- `bonus` counts completed passes (reported, not admitted on): the
-- configured rate is a cap on admissions.
local bonus = tonumber(redis.call('GET', bonusk) or '0')
local served = base

if mode == 'join' then
  local rank = redis.call('ZRANK', q, user)
  -- An admitted user whose pass has lapsed may queue again, at the back.
  if rank then
    local p = redis.call('HGET', passes, user)
    if p and tonumber(string.match(p, '^(%d+)|')) + ttl <= now then
      redis.call('ZREM', q, user)
      redis.call('HDEL', passes, user)
      rank = false
    end
  end
  if not rank then
    -- Before opening: the pre-queue (score 0, ordered by the draw).
    -- After: behind everyone already in line, in arrival order.
    local score = 0
    if open then score = 281474976710656 + redis.call('INCR', nk) end
    redis.call('ZADD', q, 'NX', score, user)
    redis.call('SREM', gone, user)
  end
end

if redis.call('ZSCORE', q, user) then redis.call('ZADD', seen, now, user) end

-- Dropouts: a waiting user (not admitted) who has not polled for grace
-- loses the place; everyone behind moves up. A bounded number per call.
local cutoff = now - grace
if served > 0 and cutoff > opens then
  local stale = redis.call('ZRANGEBYSCORE', seen, '-inf', string.format('(%d', cutoff), 'LIMIT', 0, sweep)
  for i = 1, #stale do
    local u = stale[i]
    local r = redis.call('ZRANK', q, u)
    if r and r >= served then
      redis.call('ZREM', q, u)
      redis.call('SADD', gone, u)
    end
    redis.call('ZREM', seen, u)
  end
end

local rank = redis.call('ZRANK', q, user)
local pass = false
if rank and rank < served then
  pass = redis.call('HGET', passes, user)
  if not pass then
    -- The pass is dated to the next free issue slot: at least `spacing`
    -- after the previous pass (shared::waiting_room::next_slot). Users
    -- whose turns came while they were between polls collect passes
    -- together; without this their issue times bunch above the rate.
    -- A slot in the future means "your pass in a moment": the Worker
    -- hands the pass out only from that instant.
    local last = tonumber(redis.call('GET', slotk) or '-1e18')
    local slot = math.max(now, last + spacing)
    redis.call('SET', slotk, string.format('%.3f', slot), 'PX', keep)
    pass = string.format('%d|%d|%s', math.ceil(slot), rank + 1, ARGV[16])
    redis.call('HSET', passes, user, pass)
  end
end
local dropped = 0
if not rank then dropped = redis.call('SISMEMBER', gone, user) end

if mode == 'join' then
  for _, k in ipairs({q, seen, seedk, nk, gone, passes, bonusk, slotk}) do
    redis.call('PEXPIRE', k, keep)
  end
end
return {g, {rank or -1, bonus, seed, pass, dropped, served}}
"#
    ),
};

/// A completed pass gives its place back, once per pass id.
/// KEYS[1] `done` (SET of pass ids), KEYS[2] `bonus`; ARGV[1] pass id,
/// ARGV[2] key lifetime ms. Reply: the new bonus, or -1 if already done.
pub const COMPLETE: Script = Script {
    name: "complete",
    source: r#"
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  local b = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return b
end
return -1
"#,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_runs_the_one_gcra_function_of_shared() {
        assert!(GATE.source.starts_with(shared::rate_limit::GCRA_LUA));
        assert!(ROOM.source.starts_with(shared::rate_limit::GCRA_LUA));
    }

    #[test]
    fn the_scripts_share_the_gate_and_have_distinct_shas() {
        assert!(ROOM.source.starts_with(gate_prologue!()));
        assert!(GATE.source.starts_with(gate_prologue!()));
        assert_ne!(GATE.sha1(), ROOM.sha1());
        assert_ne!(ROOM.sha1(), COMPLETE.sha1());
    }
}
