//! The Redis Lua scripts of the region core's fast path, as text: seat
//! locks (all of a hold's seats or none), compare-and-delete release,
//! extension, re-assertion, and the seat-map bitfield update. One copy,
//! here, so the load generator's Redis baseline runs the very script the
//! region core runs. Keys and arguments are documented per script; the
//! region core's `redis_path` runs them (and its tests run them on a real
//! Redis).

/// Takes every key (value = hold id, PX = ttl) or none. Returns the 1-based
/// indexes of keys already taken; an empty list means the lock is ours.
pub const ACQUIRE_LUA: &str = r#"
local taken = {}
for i, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then taken[#taken + 1] = i end
end
if #taken > 0 then return taken end
for _, k in ipairs(KEYS) do
  redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
end
return taken
"#;

/// Deletes each key only if it still holds this hold id (a stale holder
/// can never delete a lock that has passed to someone else).
pub const RELEASE_LUA: &str = r#"
local n = 0
for _, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[1] then
    redis.call('DEL', k)
    n = n + 1
  end
end
return n
"#;

/// Re-sets each key to this hold id with a new TTL, unless some key is held
/// by another hold (then nothing changes and 0 is returned).
pub const EXTEND_LUA: &str = r#"
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v and v ~= ARGV[1] then return 0 end
end
for _, k in ipairs(KEYS) do
  redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
end
return 1
"#;

/// Sets every key to this hold id unconditionally: used only for a hold
/// Postgres has just granted, so Postgres, not Redis, decides the owner.
pub const ASSERT_LUA: &str = r#"
for _, k in ipairs(KEYS) do
  redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
end
return 1
"#;

/// Applies (ordinal, state) pairs to a show's seat map and numbers the
/// change for its live viewers, atomically (issue 11).
///
/// KEYS: the map (`seatmap:{<show>}`), its change counter
/// (`seatmap:{<show>}:seq`). ARGV: the live channel (`live:{<show>}`), the
/// counter's TTL in ms, then (ordinal, state code) pairs.
///
/// When the map exists, the seats whose state really changes are set, the
/// counter is incremented and `"<seq> <ordinal>:<state>,…"` is published;
/// nothing changing costs no number. When the map is missing (expired, or
/// dropped after an outage) it is not born from a partial update (it is
/// rebuilt whole from Postgres): the counter is still incremented and
/// `"<seq> R"` published, so every viewer's copy is known to be stale and
/// resynchronises from a snapshot. Returns the number assigned, or 0.
pub const SEATMAP_UPDATE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  local seq = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  redis.call('PUBLISH', ARGV[1], seq .. ' R')
  return seq
end
local args = {}
for i = 3, #ARGV, 2 do
  args[#args + 1] = 'SET'
  args[#args + 1] = 'u2'
  args[#args + 1] = '#' .. ARGV[i]
  args[#args + 1] = ARGV[i + 1]
end
local old = redis.call('BITFIELD', KEYS[1], unpack(args))
local changed = {}
for j, prev in ipairs(old) do
  local i = 1 + 2 * j
  if tostring(prev) ~= ARGV[i + 1] then
    changed[#changed + 1] = ARGV[i] .. ':' .. ARGV[i + 1]
  end
end
if #changed == 0 then return 0 end
local seq = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[1], seq .. ' ' .. table.concat(changed, ','))
return seq
"#;

/// Reads a show's seat map and its change number together (a snapshot:
/// the map includes exactly the changes up to that number). KEYS: map,
/// counter. Returns `{map or false, seq}`.
pub const SEATMAP_SNAPSHOT_LUA: &str = r#"
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
return {redis.call('GET', KEYS[1]), seq}
"#;

/// Stores a seat map rebuilt from Postgres only if no change was numbered
/// since the caller read the counter (ARGV[1]) before reading Postgres:
/// every change is numbered after its commit, so an unchanged counter
/// means the rebuilt map holds every numbered change and no later one.
/// KEYS: map, counter. ARGV: expected seq, map bytes, map TTL in ms.
/// Returns 1 if stored.
pub const SEATMAP_PUT_LUA: &str = r#"
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// Drops a show's seat map and tells its viewers to resynchronise (after
/// an outage, when Postgres alone may have changed seats). KEYS: map,
/// counter. ARGV: live channel, counter TTL in ms. Returns the number.
pub const SEATMAP_DROP_LUA: &str = r#"
redis.call('DEL', KEYS[1])
local seq = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[1], seq .. ' R')
return seq
"#;
