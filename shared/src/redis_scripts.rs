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

/// Applies (ordinal, state) pairs to a seat map only if it exists: a map
/// is rebuilt whole from Postgres, never born from a partial update.
pub const SEATMAP_UPDATE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local args = {}
for i = 1, #ARGV, 2 do
  args[#args + 1] = 'SET'
  args[#args + 1] = 'u2'
  args[#args + 1] = '#' .. ARGV[i]
  args[#args + 1] = ARGV[i + 1]
end
redis.call('BITFIELD', KEYS[1], unpack(args))
return 1
"#;
