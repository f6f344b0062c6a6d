//! The Lua scripts that make single-point operations atomic on their shard.
//!
//! Each script touches only keys of one point (or the shard's star directory), so it runs
//! on one shard, atomically.

use std::sync::LazyLock;

use redis::Script;

/// KEYS: rec, art. ARGV: strategy, kind, status, owner, properties, request id ('' for
/// none). Returns `{outcome, existing kind}` with outcome `created`, `kept`, `replaced` or
/// `exists`. The request id is stored in field `r` of the record it writes; a record
/// whose `r` is this request id was written by this same registration, sent again after
/// its answer was lost: it is answered `created`, as the first time, and left as it is.
pub static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local kind = redis.call('HGET', KEYS[1], 'k')
if kind then
  if ARGV[6] ~= '' and redis.call('HGET', KEYS[1], 'r') == ARGV[6] then
    return {'created', kind}
  end
  if ARGV[1] == 'Commit' then return {'exists', kind} end
  if ARGV[1] == 'Ensure' then
    if kind == ARGV[2] then return {'kept', kind} end
    return {'exists', kind}
  end
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'k', ARGV[2], 's', ARGV[3], 'o', ARGV[4], 'p', ARGV[5])
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'r', ARGV[6]) end
  return {'replaced', kind}
end
redis.call('HSET', KEYS[1], 'k', ARGV[2], 's', ARGV[3], 'o', ARGV[4], 'p', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'r', ARGV[6]) end
return {'created', ARGV[2]}
",
    )
});

/// KEYS: parent rec, parent kids. ARGV: is-root flag, child. Adds the child to an
/// existing parent's children index: 1, or 0 when the parent does not exist.
pub static LINK_CHILD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SADD', KEYS[2], ARGV[2])
return 1
",
    )
});

/// KEYS: rec. ARGV: field, value. Sets one field of an existing record; 1 if it exists.
pub static SET_FIELD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
",
    )
});

/// KEYS: rec, art. ARGV: state. Saves an existing particle's state: 1, or -1 when the
/// particle does not exist.
pub static PUT_STATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[2], 'state', ARGV[1])
return 1
",
    )
});

/// KEYS: rec. ARGV: expected star ('' for none), new star. Compare-and-set of `st`:
/// -1 missing record, 0 another star is there, 1 done.
pub static SWAP_STAR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local current = redis.call('HGET', KEYS[1], 'st') or ''
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'st', ARGV[2])
return 1
",
    )
});

/// KEYS: rec. ARGV: expected kind, expected properties, new properties. Compare-and-set
/// of `p`, valid only while the kind is the one the change was checked against:
/// -1 missing record, 0 changed meanwhile (retry), 1 done.
pub static SWAP_PROPERTIES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local kind = redis.call('HGET', KEYS[1], 'k') or ''
local current = redis.call('HGET', KEYS[1], 'p') or ''
if kind ~= ARGV[1] or current ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'p', ARGV[3])
return 1
",
    )
});

/// KEYS: rec, counter. ARGV: '1' when the point is a root (exists without a record).
/// Increments the counter of an existing point; -1 if it does not exist.
pub static NEXT_IN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('INCR', KEYS[2])
",
    )
});

/// KEYS: rec, gseq, grants. ARGV: is-root flag, grant, most grants. Stores a grant: its
/// number, -1 when the root is not registered, -2 when it holds the most grants already.
pub static ADD_GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HLEN', KEYS[3]) >= tonumber(ARGV[3]) then return -2 end
local n = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], n, ARGV[2])
return n
",
    )
});

/// KEYS: granted. ARGV: most grants. Takes one grant of a granter's allowance: the
/// granter's new count, or -1 (and nothing changes) when it has the most already.
pub static RESERVE_GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return -1 end
return redis.call('INCR', KEYS[1])
",
    )
});

/// KEYS: granted. ARGV: how many. Gives a granter back the allowance of grants removed
/// or dropped, never below zero (the key goes at zero); returns the new count.
pub static RELEASE_GRANTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local left = tonumber(redis.call('GET', KEYS[1]) or '0') - tonumber(ARGV[1])
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], left)
return left
",
    )
});

/// KEYS: rec, art. ARGV: hash, bytes. Stores an artifact once:
/// -1 no record, -2 not an Artifact, 0 other bytes already there, 1 stored (or same).
pub static PUT_ARTIFACT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local kind = redis.call('HGET', KEYS[1], 'k')
if not kind then return -1 end
if kind ~= 'Artifact' then return -2 end
local hash = redis.call('HGET', KEYS[2], 'hash')
if hash then
  if hash == ARGV[1] then return 1 end
  return 0
end
redis.call('HSET', KEYS[2], 'hash', ARGV[1], 'bytes', ARGV[2])
return 1
",
    )
});

/// KEYS: dir, load, seen. ARGV: star, load, now (ms), cutoff (ms).
/// Refreshes a live star: 1; 0 (and forgets it) when unknown or expired.
pub static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local seen = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not seen or tonumber(seen) < tonumber(ARGV[4]) then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
",
    )
});

/// KEYS: dir, load, seen. ARGV: cutoff (ms). Forgets expired stars and returns the live
/// ones as a flat list: entry, load, entry, load, …
pub static LIVE_STARS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[1])
for _, star in ipairs(dead) do
  redis.call('HDEL', KEYS[1], star)
  redis.call('HDEL', KEYS[2], star)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[1])
local out = {}
for _, star in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[1], '+inf')) do
  table.insert(out, redis.call('HGET', KEYS[1], star) or '')
  table.insert(out, redis.call('HGET', KEYS[2], star) or '0')
end
return out
",
    )
});
