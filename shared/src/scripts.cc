#include "ripen/scripts.h"

#include <string>

namespace ripen::scripts {
namespace {

// Helpers every script shares. Keys of a task are built from the shard prefix
// (ARGV) because they are only known inside the script; they share the prefix's
// hash tag, so the script still touches a single slot.
constexpr const char* kPrelude = R"lua(
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Adds id to the due set; when it becomes the earliest entry, tells sleeping
-- dispatchers so none sleeps past it.
local function schedule(due_key, id, due, wake_channel, shard)
  local head = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  redis.call('ZADD', due_key, due, id)
  if wake_channel ~= '' and (head[2] == nil or due < tonumber(head[2])) then
    redis.call('PUBLISH', wake_channel, shard)
  end
end

local terminal = { succeeded = true, dead = true, cancelled = true }

-- Ends a task's life: it keeps its record for `retention` ms and frees its
-- idempotency key for new tasks.
local function retire(task_key, prefix, id, retention)
  local key = redis.call('HGET', task_key, 'idem')
  if key and key ~= '' then
    local idem_key = prefix .. 'idem:' .. key
    if redis.call('GET', idem_key) == id then redis.call('DEL', idem_key) end
  end
  if tonumber(retention) > 0 then redis.call('PEXPIRE', task_key, retention) end
end
)lua";

LuaScript make(const char* name, const char* body) { return LuaScript{name, std::string(kPrelude) + body}; }

}  // namespace

// KEYS: due, task, [idem]
// ARGV: id, body, queue, type, due_ms ('' = use delay), delay_ms, max_attempts,
//       wake_channel, shard, prefix, idempotency_key
// Reply: {id, status, due_ms} with status 1 = created, 0 = an unfinished task
//        already holds the idempotency key (its id and due time are returned),
//        -1 = the id exists (its due time is returned).
const LuaScript& enqueue() {
  static const LuaScript s = make("enqueue", R"lua(
local id = ARGV[1]
if KEYS[3] then
  local existing = redis.call('GET', KEYS[3])
  if existing then
    local state = redis.call('HGET', ARGV[10] .. 't:' .. existing, 'state')
    if state and not terminal[state] then
      return { existing, 0, tonumber(redis.call('HGET', ARGV[10] .. 't:' .. existing, 'due_ms')) }
    end
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return { id, -1, tonumber(redis.call('HGET', KEYS[2], 'due_ms')) } end
local now = now_ms()
local due
if ARGV[5] ~= '' then due = tonumber(ARGV[5]) else due = now + tonumber(ARGV[6]) end
redis.call('HSET', KEYS[2], 'body', ARGV[2], 'queue', ARGV[3], 'type', ARGV[4], 'state', 'scheduled',
  'attempts', 0, 'max_attempts', ARGV[7], 'due_ms', due, 'created_ms', now, 'idem', KEYS[3] and ARGV[11] or '')
if KEYS[3] then redis.call('SET', KEYS[3], id) end
schedule(KEYS[1], id, due, ARGV[8], ARGV[9])
return { id, 1, due }
)lua");
  return s;
}

// KEYS: due, inflight, lease
// ARGV: lease value held ("owner|token"), batch, inflight_lease_ms, prefix
// Reply: {now_ms, next_ms (-1 = none), recovered, id1, queue1, body1, due1, ...}
//        next_ms is the earliest due time or in-flight lease deadline left.
//        or {-1} when the caller no longer holds the shard (fenced off).
const LuaScript& claim() {
  static const LuaScript s = make("claim", R"lua(
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return { -1 } end
local now = now_ms()
local batch = tonumber(ARGV[2])
local prefix = ARGV[4]
-- A dispatcher that died between claim and confirm leaves its in-flight entries
-- to expire; they go back to the due set with their original due time.
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, batch)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  local due = redis.call('HGET', prefix .. 't:' .. id, 'due_ms')
  if due then redis.call('ZADD', KEYS[1], due, id) end
end
local out = { now, -1, #expired }
local ripe = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, batch)
if #ripe > 0 then
  -- The ripe entries are exactly the head of the set, so one rank-range removal
  -- takes them all.
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ripe / 2 - 1)
  local deadline = now + tonumber(ARGV[3])
  for i = 1, #ripe, 2 do
    local id = ripe[i]
    local rec = redis.call('HMGET', prefix .. 't:' .. id, 'queue', 'body')
    if rec[2] then
      redis.call('ZADD', KEYS[2], deadline, id)
      out[#out + 1] = id
      out[#out + 1] = rec[1]
      out[#out + 1] = rec[2]
      out[#out + 1] = ripe[i + 1]
    end
  end
end
-- The next moment this shard needs a look: its earliest due task, or the
-- earliest in-flight lease to expire (a dead dispatcher's tasks come back then).
for _, key in ipairs({ KEYS[1], KEYS[2] }) do
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if head[2] and (out[2] < 0 or tonumber(head[2]) < out[2]) then out[2] = tonumber(head[2]) end
end
return out
)lua");
  return s;
}

// KEYS: due, inflight
// ARGV: prefix, retention_ms, then triples (id, outcome, reason) where outcome is
//   'd' the broker confirmed it: state scheduled/failed -> dispatched
//   'x' the broker returned it (unroutable): state -> dead, reason kept
//   'r' the broker refused it or the connection broke: back to the due set
// Reply: number of entries that were still in flight.
const LuaScript& settle() {
  static const LuaScript s = make("settle", R"lua(
local now = now_ms()
local prefix = ARGV[1]
local settled = 0
for i = 3, #ARGV, 3 do
  local id, outcome, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local task = prefix .. 't:' .. id
  if redis.call('ZREM', KEYS[2], id) == 1 then
    settled = settled + 1
    local state = redis.call('HGET', task, 'state')
    if outcome == 'd' then
      if state == 'scheduled' or state == 'failed' then
        redis.call('HSET', task, 'state', 'dispatched', 'dispatched_ms', now)
      elseif state then
        redis.call('HSET', task, 'dispatched_ms', now)
      end
    elseif outcome == 'x' then
      if state then
        redis.call('HSET', task, 'state', 'dead', 'last_error', reason, 'finished_ms', now)
        retire(task, prefix, id, ARGV[2])
      end
    elseif state then
      redis.call('ZADD', KEYS[1], redis.call('HGET', task, 'due_ms'), id)
    end
  end
end
return settled
)lua");
  return s;
}

// KEYS: lease, fence
// ARGV: owner, ttl_ms
// Reply: the lease value "owner|token" when the caller holds the shard, else nil.
// A new holder gets a new fencing token, which the claim script checks.
const LuaScript& shard_lease() {
  static const LuaScript s = make("shard_lease", R"lua(
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return cur
  end
  return false
end
local value = ARGV[1] .. '|' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
)lua");
  return s;
}

// KEYS: lease   ARGV: lease value held
const LuaScript& shard_release() {
  static const LuaScript s = make("shard_release", R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua");
  return s;
}

// KEYS: dispatchers   ARGV: owner, ttl_ms
// Reply: the live dispatchers, sorted by name (the caller's rank is its index).
const LuaScript& heartbeat() {
  static const LuaScript s = make("heartbeat", R"lua(
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(live)
return live
)lua");
  return s;
}

// KEYS: task   ARGV: worker name
// Reply: {'run', attempt, max_attempts, due_ms, now} when the handler should run;
//        {'skip', state} when the task has already ended; {'missing'} when there is
//        no record (retention passed or never existed).
const LuaScript& start() {
  static const LuaScript s = make("start", R"lua(
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return { 'missing' } end
if terminal[state] then return { 'skip', state } end
local now = now_ms()
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'started_ms', now, 'worker', ARGV[1])
local rec = redis.call('HMGET', KEYS[1], 'max_attempts', 'due_ms')
return { 'run', attempt, tonumber(rec[1]), tonumber(rec[2]), now }
)lua");
  return s;
}

// KEYS: task, due
// ARGV: outcome ('ok' | 'retry' | 'dead'), error, retry_delay_ms, retention_ms, id,
//       prefix, wake_channel, shard
// Reply: the state written, or 'missing'.
const LuaScript& finish() {
  static const LuaScript s = make("finish", R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local now = now_ms()
local outcome = ARGV[1]
if outcome == 'ok' then
  redis.call('HSET', KEYS[1], 'state', 'succeeded', 'finished_ms', now)
  retire(KEYS[1], ARGV[6], ARGV[5], ARGV[4])
  return 'succeeded'
elseif outcome == 'retry' then
  -- Written back into the wheel before the worker acks the delivery: a crash in
  -- between duplicates a retry but never loses one.
  local due = now + tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], 'state', 'failed', 'last_error', ARGV[2], 'finished_ms', now, 'due_ms', due)
  schedule(KEYS[2], ARGV[5], due, ARGV[7], ARGV[8])
  return 'failed'
else
  redis.call('HSET', KEYS[1], 'state', 'dead', 'last_error', ARGV[2], 'finished_ms', now)
  retire(KEYS[1], ARGV[6], ARGV[5], ARGV[4])
  return 'dead'
end
)lua");
  return s;
}

}  // namespace ripen::scripts
