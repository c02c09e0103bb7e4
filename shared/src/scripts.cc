#include "ripen/scripts.h"

#include <string>

namespace ripen::scripts {
namespace {

// Helpers every script shares. The packed TASK / STATUS / ENDED strings are
// described in stored_task.h; fields are separated by 0x1f. Keys of one task
// (e:<id>, idem:<key>) are built from the shard prefix (ARGV) because they are
// only known inside the script; they share the prefix's hash tag, so the script
// still touches a single slot.
constexpr const char* kPrelude = R"lua(
local US = '\31'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The first n fields of a packed string, and the rest as field n + 1.
local function split(s, n)
  local out, pos = {}, 1
  for i = 1, n do
    local j = string.find(s, US, pos, true)
    if not j then
      out[i] = string.sub(s, pos)
      return out
    end
    out[i] = string.sub(s, pos, j - 1)
    pos = j + 1
  end
  out[n + 1] = string.sub(s, pos)
  return out
end

-- STATUS: state, attempts, due_ms, dispatched_ms, started_ms, finished_ms, worker, last_error
local function read_status(status_key, id)
  local st = redis.call('HGET', status_key, id)
  if not st then return nil end
  local f = split(st, 7)
  for i = #f + 1, 8 do f[i] = '' end
  return f
end

local function write_status(status_key, id, f)
  redis.call('HSET', status_key, id, table.concat(f, US, 1, 8))
end

-- A live task's due time: from its STATUS once claimed, else its score.
local function due_of(prefix, id)
  local st = redis.call('HGET', prefix .. 'status', id)
  if st then return tonumber(split(st, 3)[3]) end
  return tonumber(redis.call('ZSCORE', prefix .. 'due', id))
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

-- Ends a task's life with STATUS f: its live entries go, the compact ENDED
-- record stays `retention` ms (Redis expires it), and its idempotency key is
-- free for new tasks. `head` is the TASK without its payload when the caller
-- has it (a worker does), else it is read.
local function retire(prefix, id, f, retention, head)
  local t
  if head and head ~= '' then
    t = split(head, 5)
  else
    local task = redis.call('HGET', prefix .. 'tasks', id)
    t = task and split(task, 6)
  end
  head = ''
  if t then
    if t[5] and t[5] ~= '' then
      local idem_key = prefix .. 'idem:' .. t[5]
      if redis.call('GET', idem_key) == id then redis.call('DEL', idem_key) end
    end
    head = table.concat(t, US, 1, 6)
  end
  redis.call('HDEL', prefix .. 'tasks', id)
  redis.call('HDEL', prefix .. 'status', id)
  redis.call('SET', prefix .. 'e:' .. id, table.concat(f, US, 1, 8) .. US .. head, 'PX', retention)
end
)lua";

LuaScript make(const char* name, const char* body) { return LuaScript{name, std::string(kPrelude) + body}; }

}  // namespace

// Stores a batch of tasks of one shard and puts them in its wheel.
// KEYS: due, tasks
// ARGV: prefix, wake_channel, shard, then per task 6 values:
//       id, due_ms ('' = now + delay_ms), delay_ms, max_attempts, idempotency_key,
//       the TASK fields after created_ms (queue | type | idempotency_key | extra | payload)
// Reply: per task {id, status, due_ms}: status 1 = created; 0 = an unfinished task
//        already holds the idempotency key (its id and due time are returned);
//        -1 = the id exists (its due time is returned).
const LuaScript& enqueue() {
  static const LuaScript s = make("enqueue", R"lua(
local prefix, wake, shard = ARGV[1], ARGV[2], ARGV[3]
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local head_due = tonumber(head[2])
local now = now_ms()
local earliest = nil
local out = {}
for i = 4, #ARGV, 6 do
  local id, due_arg, delay, max, idem, tail = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local existing = nil
  if idem ~= '' then
    existing = redis.call('GET', prefix .. 'idem:' .. idem)
    if existing and redis.call('HEXISTS', KEYS[2], existing) == 0 then existing = nil end
  end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 0
    out[#out + 1] = due_of(prefix, existing)
  elseif redis.call('HSETNX', KEYS[2], id, max .. US .. now .. US .. tail) == 0 then
    out[#out + 1] = id
    out[#out + 1] = -1
    out[#out + 1] = due_of(prefix, id)
  else
    local due
    if due_arg ~= '' then due = tonumber(due_arg) else due = now + tonumber(delay) end
    redis.call('ZADD', KEYS[1], due, id)
    if idem ~= '' then redis.call('SET', prefix .. 'idem:' .. idem, id) end
    if earliest == nil or due < earliest then earliest = due end
    out[#out + 1] = id
    out[#out + 1] = 1
    out[#out + 1] = due
  end
end
if earliest and wake ~= '' and (head_due == nil or earliest < head_due) then redis.call('PUBLISH', wake, shard) end
return out
)lua");
  return s;
}

// KEYS: due, inflight, lease, tasks, status
// ARGV: lease value held ("owner|token"), batch, inflight_lease_ms
// Reply: {now_ms, next_ms (-1 = none), recovered, id1, task1, due1, ...}
//        with each task the packed TASK, or {-1} when the caller no longer holds
//        the shard (fenced off). next_ms is the earliest due time or in-flight
//        lease deadline left.
const LuaScript& claim() {
  static const LuaScript s = make("claim", R"lua(
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return { -1 } end
local now = now_ms()
local batch = tonumber(ARGV[2])
-- A dispatcher that died between claim and confirm leaves its in-flight entries
-- to expire; they go back to the due set with their due time. One that ended
-- meanwhile (no STATUS) is simply dropped.
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, batch)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[2], id)
  local f = read_status(KEYS[5], id)
  if f then redis.call('ZADD', KEYS[1], f[3], id) end
end
local out = { now, -1, #expired }
local ripe = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, batch)
if #ripe > 0 then
  -- The ripe entries are exactly the head of the set, so one rank-range removal
  -- takes them all.
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ripe / 2 - 1)
  local deadline = now + tonumber(ARGV[3])
  local leases = {}
  for i = 1, #ripe, 2 do
    local id, due = ripe[i], ripe[i + 1]
    local task = redis.call('HGET', KEYS[4], id)
    if task then
      -- First claim: the STATUS appears, carrying the due time the wheel held.
      redis.call('HSETNX', KEYS[5], id, 'scheduled' .. US .. '0' .. US .. due .. US .. US .. US .. US .. US)
      leases[#leases + 1] = deadline
      leases[#leases + 1] = id
      out[#out + 1] = id
      out[#out + 1] = task
      out[#out + 1] = due
    end
  end
  -- One ZADD for the batch (in slices: Lua's unpack has a stack limit).
  for i = 1, #leases, 2000 do
    redis.call('ZADD', KEYS[2], unpack(leases, i, math.min(i + 1999, #leases)))
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

// KEYS: due, inflight, status
// ARGV: prefix, retention_ms, then triples (id, outcome, reason) where outcome is
//   'd' the broker confirmed it: state scheduled/failed -> dispatched
//   'x' the broker returned it (unroutable): the task ends dead, reason kept
//   'r' the broker refused it or the connection broke: back to the due set
// Reply: number of entries that were still in flight.
const LuaScript& settle() {
  static const LuaScript s = make("settle", R"lua(
local now = now_ms()
local prefix = ARGV[1]
local settled = 0
-- Which are still in flight, in one call, then one ZREM for those.
local ids = {}
for i = 3, #ARGV, 3 do ids[#ids + 1] = ARGV[i] end
local present = {}
for i = 1, #ids, 1000 do
  local scores = redis.call('ZMSCORE', KEYS[2], unpack(ids, i, math.min(i + 999, #ids)))
  local gone = {}
  for k, score in ipairs(scores) do
    local id = ids[i + k - 1]
    if score and not present[id] then
      present[id] = true
      gone[#gone + 1] = id
    end
  end
  if #gone > 0 then redis.call('ZREM', KEYS[2], unpack(gone)) end
end
for i = 3, #ARGV, 3 do
  local id, outcome, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if present[id] then
    present[id] = nil  -- settled once, even if listed twice
    settled = settled + 1
    local f = read_status(KEYS[3], id)
    if not f and outcome == 'd' then
      -- A worker ran it to the end before this confirm was written: stamp the
      -- ended record instead.
      local ended_key = prefix .. 'e:' .. id
      local ended = redis.call('GET', ended_key)
      if ended then
        local e = split(ended, 8)
        if e[4] == '' then
          e[4] = now
          redis.call('SET', ended_key, table.concat(e, US), 'KEEPTTL')
        end
      end
    elseif f then
      if outcome == 'd' then
        -- A worker may already have started it (the confirm came late): keep its state.
        if f[1] == 'scheduled' or f[1] == 'failed' then f[1] = 'dispatched' end
        f[4] = now
        write_status(KEYS[3], id, f)
      elseif outcome == 'x' then
        f[1], f[6], f[8] = 'dead', now, reason
        retire(prefix, id, f, ARGV[2])
      else
        redis.call('ZADD', KEYS[1], f[3], id)
      end
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

// Records that deliveries of tasks of one shard begin running.
// KEYS: status   ARGV: prefix, worker name, then task ids
// Reply: per id four values: {'run', attempt, due_ms, now} when the handler
//        should run; {'skip', state, 0, 0} when the task has already ended;
//        {'missing', 0, 0, 0} when there is no record (retention passed, never
//        existed, or another namespace). A live task always has a STATUS by now:
//        the claim that published it wrote one.
const LuaScript& start() {
  static const LuaScript s = make("start", R"lua(
local prefix, worker = ARGV[1], ARGV[2]
local now = now_ms()
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local f = read_status(KEYS[1], id)
  if f then
    f[1], f[2], f[5], f[7] = 'running', tonumber(f[2]) + 1, now, worker
    write_status(KEYS[1], id, f)
    out[#out + 1] = 'run'
    out[#out + 1] = f[2]
    out[#out + 1] = tonumber(f[3])
    out[#out + 1] = now
  else
    local ended = redis.call('GET', prefix .. 'e:' .. id)
    if ended then
      out[#out + 1] = 'skip'
      out[#out + 1] = split(ended, 1)[1]
    else
      out[#out + 1] = 'missing'
      out[#out + 1] = 0
    end
    out[#out + 1] = 0
    out[#out + 1] = 0
  end
end
return out
)lua");
  return s;
}

// Records how runs of tasks of one shard ended.
// KEYS: status, due
// ARGV: prefix, retention_ms, wake_channel, shard, then per task five values:
//       id, outcome ('ok' | 'retry' | 'dead'), error, retry_delay_ms,
//       the TASK without its payload (see stored_task.h), or '' to read it
// Reply: per task the state written ('succeeded', 'failed', 'dead'), or 'missing'.
const LuaScript& finish() {
  static const LuaScript s = make("finish", R"lua(
local prefix, retention, wake, shard = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local out = {}
for i = 5, #ARGV, 5 do
  local id, outcome, err, delay, head = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local f = read_status(KEYS[1], id)
  if not f then
    out[#out + 1] = 'missing'
  else
    f[6] = now
    if outcome == 'ok' then
      f[1] = 'succeeded'
      retire(prefix, id, f, retention, head)
    elseif outcome == 'retry' then
      -- Written back into the wheel before the worker acks the delivery: a crash
      -- in between duplicates a retry but never loses one.
      local due = now + tonumber(delay)
      f[1], f[3], f[8] = 'failed', due, err
      write_status(KEYS[1], id, f)
      schedule(KEYS[2], id, due, wake, shard)
    else
      f[1], f[8] = 'dead', err
      retire(prefix, id, f, retention, head)
    end
    out[#out + 1] = f[1]
  end
end
return out
)lua");
  return s;
}

}  // namespace ripen::scripts
