#include "ripen/scripts.h"

#include <cassert>
#include <iterator>
#include <string>

namespace ripen::scripts {
namespace {

// Helpers every script shares. The packed TASK / STATUS / ENDED strings are
// described in stored_task.h; fields are separated by 0x1f. Keys only known
// inside a script (idem:<key>, the buckets of ended records) are built from the
// shard prefix (ARGV); they share the prefix's hash tag, so the script still
// touches a single slot.
//
// Written for the Lua interpreter's costs, which a profile of Redis under load
// shows: a packed record is taken apart with one string.match (one C call) and
// put together with one concatenation (one allocation), not field by field in
// Lua; numbers become text once per run; argument lists are not copied.
constexpr const char* kPrelude = R"lua(
local US = '\31'
local match, format, unpack = string.match, string.format, unpack

-- Redis TIME in ms, read once per script run: every section and task of one
-- run is stamped with the same instant.
local now_cache = nil
local function now_ms()
  if not now_cache then
    local t = redis.call('TIME')
    now_cache = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now_cache
end

-- Lua turns a number into text with sprintf('%.14g') each time it is
-- concatenated or passed to redis.call; '%d' once is much cheaper.
local function text(n) return format('%d', n) end

-- STATUS: state | attempts | due_ms | dispatched_ms | started_ms | finished_ms | worker | last_error
local STATUS = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31(.*)$'
local function status(state, attempts, due, dispatched, started, finished, worker, err)
  return state .. US .. attempts .. US .. due .. US .. dispatched .. US .. started .. US .. finished .. US ..
    worker .. US .. err
end

-- The due time a STATUS holds.
local function status_due(st) return match(st, '^[^\31]*\31[^\31]*\31([^\31]*)') end

-- A state for a task back in the due set: a first attempt waits as
-- `scheduled`, a retry as `failed` (an attempt failed; the next one waits).
local function waiting(attempts) return attempts ~= '0' and attempts ~= '' and 'failed' or 'scheduled' end

-- Puts a claimed task (its STATUS `st`) back in the due set at its due time;
-- one the claim marked `dispatched` shows as waiting again.
local function put_back(due_key, status_key, id, st)
  local state, attempts, due, dispatched, started, finished, worker, err = match(st, STATUS)
  redis.call('ZADD', due_key, due, id)
  if state == 'dispatched' then
    redis.call('HSET', status_key, id, status(waiting(attempts), attempts, due, dispatched, started, finished, worker, err))
  end
end

-- Commands that take many members are sent in slices: Lua's unpack has a
-- stack limit. One call per slice instead of one per task is most of what a
-- script saves under load.
local SLICE = 1000

-- redis.call(cmd, key, list[from..to]...), sliced; for replies not needed.
local function each_slice(cmd, key, list, from, to)
  from, to = from or 1, to or #list
  for i = from, to, SLICE do redis.call(cmd, key, unpack(list, i, math.min(i + SLICE - 1, to))) end
end

-- One reply per member of list[from..to], as HMGET or ZMSCORE give them.
local function gather(cmd, key, list, from, to)
  from, to = from or 1, to or #list
  if to - from < SLICE then return redis.call(cmd, key, unpack(list, from, to)) end
  local out = {}
  for i = from, to, SLICE do
    local part = redis.call(cmd, key, unpack(list, i, math.min(i + SLICE - 1, to)))
    for k = 1, #part do out[#out + 1] = part[k] end
  end
  return out
end

-- Adds (due, id) pairs to the due set; when one becomes the earliest entry,
-- tells sleeping dispatchers so none sleeps past it.
local function schedule(due_key, entries, earliest, wake_channel, shard)
  if #entries == 0 then return end
  local head = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  each_slice('ZADD', due_key, entries)
  if wake_channel ~= '' and (head[2] == nil or earliest < tonumber(head[2])) then
    redis.call('PUBLISH', wake_channel, shard)
  end
end

-- Ended tasks' records are kept in buckets: one hash per shard and stretch of
-- time (a sixteenth of the retention, at least a second), listed in the
-- shard's `ended` index with the time the bucket goes. A whole bucket is
-- deleted at once when its newest record is past the retention; records thus
-- stay retention to retention + a sixteenth. A key per record with its own TTL
-- cost Redis a third more CPU per task (creating the key, its expiry entry,
-- growing the keyspace, expiring keys one by one) and a quarter more memory.
local function ended_record(prefix, id)
  local buckets = redis.call('ZRANGE', prefix .. 'ended', 0, -1)
  for i = #buckets, 1, -1 do
    local record = redis.call('HGET', buckets[i], id)
    if record then return record end
  end
  return nil
end

-- A task's due time: from its STATUS once claimed, its score while it waits,
-- its ENDED record once it ended (0 once that is gone too).
local function due_of(prefix, id)
  local st = redis.call('HGET', prefix .. 'status', id)
  if st then return tonumber(status_due(st)) end
  local score = redis.call('ZSCORE', prefix .. 'due', id)
  if score then return tonumber(score) end
  st = ended_record(prefix, id)  -- a task that ended: its record, while kept
  return st and tonumber(status_due(st)) or 0
end

-- Ends tasks' lives. add() makes a task's compact ENDED record (STATUS, then
-- the TASK without its payload) and frees its idempotency key, or keeps it
-- keep_ms longer as a done marker (a succeeded task; see enqueue); done() files the
-- records in the current bucket and removes the live TASK and STATUS entries,
-- all at once. `head` is the TASK without its payload when the caller has it (a
-- worker does), else '' and it is read.
local TASK_HEAD = '^([^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31([^\31]*)\31[^\31]*)'
local function retirer(prefix, retention)
  local ids, records = {}, {}
  local r = {}
  function r.add(id, ended_status, head, keep_ms)
    local idem
    if head and head ~= '' then
      idem = match(head, '^[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31([^\31]*)')
    else
      local task = redis.call('HGET', prefix .. 'tasks', id)
      head = ''
      if task then head, idem = match(task, TASK_HEAD) end
      head = head or ''
    end
    if idem and idem ~= '' then
      local idem_key = prefix .. 'idem:' .. idem
      if redis.call('GET', idem_key) == id then
        if keep_ms and keep_ms > 0 then
          redis.call('PEXPIRE', idem_key, keep_ms)
        else
          redis.call('DEL', idem_key)
        end
      end
    end
    ids[#ids + 1] = id
    records[#records + 1] = id
    records[#records + 1] = ended_status .. US .. head
  end
  function r.done()
    if #ids == 0 then return end
    each_slice('HDEL', prefix .. 'tasks', ids)
    each_slice('HDEL', prefix .. 'status', ids)
    local now = now_ms()
    local width = math.max(1000, math.floor(tonumber(retention) / 16))
    local bucket = math.floor(now / width)
    local key = prefix .. 'ended:' .. text(width) .. ':' .. text(bucket)
    local index = prefix .. 'ended'
    local goes_at = (bucket + 1) * width + tonumber(retention)
    each_slice('HSET', key, records)
    redis.call('ZADD', index, text(goes_at), key)
    -- Redis expires it a stretch later, should no writer come by to delete it.
    redis.call('PEXPIREAT', key, text(goes_at + width))
    -- Buckets whose time has come go now, by UNLINK: a large one is freed off
    -- Redis's main thread, where an expiry would free it in one stall.
    local old = redis.call('ZRANGEBYSCORE', index, '-inf', now)
    if #old > 0 then
      redis.call('UNLINK', unpack(old))  -- a handful: one bucket per stretch of time
      redis.call('ZREM', index, unpack(old))
    end
  end
  return r
end

-- The queue a TASK head (the TASK without its payload; stored_task.h) names,
-- read from the TASK when the caller has no head.
local function queue_of(prefix, id, head)
  if not head or head == '' then head = redis.call('HGET', prefix .. 'tasks', id) or '' end
  return match(head, '^[^\31]*\31[^\31]*\31([^\31]*)')
end

-- The parked set of a paused task's queue (keys.h: <prefix>paused:<queue>).
local function parked_key(prefix, id) return prefix .. 'paused:' .. (queue_of(prefix, id, '') or '') end

-- How runs ended, per queue and minute, for `ripen stats`: one hash per shard
-- and minute, <prefix>minute:<epoch minute> (keys.h), fields '<queue>|succeeded',
-- '<queue>|failed' (an attempt failed; a retry waits), '<queue>|dead', and
-- '<queue>|late|<le>': a coarse histogram of lateness (the handler's start minus
-- its due time), <le> the bucket's upper bound in ms or 'inf'. add() only
-- counts in Lua; done() writes one HINCRBY per field seen, so a script run that
-- ends many tasks of one queue pays a few calls, not a few per task.
local LATE_BOUNDS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 900000, 3600000}
local function minute_tally(prefix)
  local counts, any = {}, false
  local t = {}
  function t.add(queue, outcome, late_ms)
    if not queue or queue == '' then return end
    any = true
    local field = queue .. '|' .. outcome
    counts[field] = (counts[field] or 0) + 1
    if late_ms then
      local le = 'inf'
      for _, bound in ipairs(LATE_BOUNDS) do
        if late_ms <= bound then le = text(bound) break end
      end
      field = queue .. '|late|' .. le
      counts[field] = (counts[field] or 0) + 1
    end
  end
  function t.done()
    if not any then return end
    local minute = math.floor(now_ms() / 60000)
    local key = prefix .. 'minute:' .. text(minute)
    for field, n in pairs(counts) do redis.call('HINCRBY', key, field, n) end
    -- Read back an hour; kept two from the minute's start.
    redis.call('PEXPIREAT', key, text(minute * 60000 + 7200000))
  end
  return t
end

-- A run's lateness in ms from its STATUS stamps, or nil.
local function lateness(started, due)
  local s, d = tonumber(started), tonumber(due)
  return s and d and math.max(s - d, 0) or nil
end
)lua";

LuaScript make(const char* name, const char* body) { return LuaScript{name, std::string(kPrelude) + body}; }

// Runs the body once per section, each with one shard's KEYS: a call carries
// as many shards as the caller has work for (see ScriptCall). A body reads its
// section's arguments in place, as A[o + 1] .. A[o + n], rather than copies.
constexpr const char* kSections = R"lua(
-- ARGV[1]: keys per section; then per section: how many ARGV it has, and them.
local nkeys = tonumber(ARGV[1])
local replies = {}
local at, kat = 2, 0
while at <= #ARGV do
  local n = tonumber(ARGV[at])
  local keys = {}
  for i = 1, nkeys do keys[i] = KEYS[kat + i] end
  replies[#replies + 1] = run(keys, ARGV, at, n)
  kat = kat + nkeys
  at = at + n + 1
end
return replies
)lua";

LuaScript make_sectioned(const char* name, const char* body) {
  return LuaScript{name, std::string(kPrelude) + "local function run(KEYS, A, o, n)\n" + body + "end\n" + kSections};
}

}  // namespace

// Every task script below is sectioned: KEYS and ARGV are given per section
// (one shard each), and the reply is one element per section.

// Stores a batch of tasks of one shard and puts them in its wheel.
// KEYS: due, tasks
// ARGV: prefix, wake_channel, shard, then per task 6 values:
//       id, due_ms ('' = now + delay_ms), delay_ms, max_attempts, idempotency_key,
//       the TASK fields after created_ms (queue | type | idempotency_key | extra | payload)
// Reply: per task {id, status, due_ms}: status 1 = created; 0 = an unfinished task
//        already holds the idempotency key (its id and due time are returned);
//        -1 = the id exists (its due time is returned).
const LuaScript& enqueue() {
  static const LuaScript s = make_sectioned("enqueue", R"lua(
local prefix, wake, shard = A[o + 1], A[o + 2], A[o + 3]
local now = now_ms()
local now_s = text(now)
local ids = {}
for i = o + 4, o + n, 6 do ids[#ids + 1] = A[i] end
local stored = gather('HMGET', KEYS[2], ids)
-- What this call creates, so a later task of the same call sees it: by id, its
-- due time; by idempotency key, its id.
local created, keyed = {}, {}
local fields, entries, out = {}, {}, {}
local earliest = nil
for k = 1, #ids do
  local i = o + 4 + (k - 1) * 6
  local id, due_arg, delay, max, idem, tail = A[i], A[i + 1], A[i + 2], A[i + 3], A[i + 4], A[i + 5]
  local existing = nil
  if idem ~= '' then
    existing = keyed[idem]
    if not existing then
      local idem_key = prefix .. 'idem:' .. idem
      existing = redis.call('GET', idem_key)
      -- A key whose task is gone is a done marker while it has a TTL (the task
      -- succeeded less than idempotency_retention ago), else stale.
      if existing and redis.call('HEXISTS', KEYS[2], existing) == 0 and redis.call('PTTL', idem_key) < 0 then
        existing = nil
      end
    end
  end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 0
    out[#out + 1] = created[existing] or due_of(prefix, existing)
  elseif stored[k] or created[id] then
    out[#out + 1] = id
    out[#out + 1] = -1
    out[#out + 1] = created[id] or due_of(prefix, id)
  else
    local due, due_s
    if due_arg ~= '' then
      due, due_s = tonumber(due_arg), due_arg
    else
      due = now + tonumber(delay)
      due_s = text(due)
    end
    created[id] = due
    fields[#fields + 1] = id
    fields[#fields + 1] = max .. US .. now_s .. US .. tail
    entries[#entries + 1] = due_s
    entries[#entries + 1] = id
    if idem ~= '' then
      keyed[idem] = id
      redis.call('SET', prefix .. 'idem:' .. idem, id)
    end
    if earliest == nil or due < earliest then earliest = due end
    out[#out + 1] = id
    out[#out + 1] = 1
    out[#out + 1] = due
  end
end
if #fields > 0 then each_slice('HSET', KEYS[2], fields) end
schedule(KEYS[1], entries, earliest, wake, shard)
return out
)lua");
  return s;
}

// Takes the ripe tasks of a shard for publishing: out of the due set, into the
// in-flight set under a lease, STATUS stamped `dispatched` now. Until the
// broker's confirm is settled the task stays in flight, and readers show it as
// still waiting (see task_record.cc); if the confirm never comes, the lease
// expires and the task goes back to the due set.
// KEYS: due, inflight, lease, tasks, status
// ARGV: lease value held ("owner|token"), batch, inflight_lease_ms
// Reply: {now_ms, next_ms (-1 = none), recovered, lease_deadline, id1, task1, due1, ...}
//        with each task the packed TASK, or {-1} when the caller no longer holds
//        the shard (fenced off). next_ms is the earliest due time or in-flight
//        lease deadline left. lease_deadline (the in-flight score of every task
//        claimed here) is what settle() is handed back.
const LuaScript& claim() {
  static const LuaScript s = make_sectioned("claim", R"lua(
if redis.call('GET', KEYS[3]) ~= A[o + 1] then return { -1 } end
local now = now_ms()
local batch = tonumber(A[o + 2])
local deadline = now + tonumber(A[o + 3])
local now_s, deadline_s = text(now), text(deadline)
-- A dispatcher that died between claim and confirm leaves its in-flight entries
-- to expire; they go back to the due set with their due time. One that ended
-- meanwhile (no STATUS) is simply dropped. The earliest lease is looked at
-- first: it is also the shard's next deadline when none expired.
local recovered = 0
local inflight_head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if inflight_head[2] and tonumber(inflight_head[2]) <= now then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, batch)
  recovered = #expired
  for _, id in ipairs(expired) do
    redis.call('ZREM', KEYS[2], id)
    local st = redis.call('HGET', KEYS[5], id)
    if st then put_back(KEYS[1], KEYS[5], id, st) end
  end
  inflight_head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
end
local out = { now, -1, recovered, deadline }
local ripe = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, batch)
local count = #ripe / 2
if count > 0 then
  -- The ripe entries are exactly the head of the set, so one rank-range removal
  -- takes them all.
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, count - 1)
  local ids = {}
  for i = 1, count do ids[i] = ripe[2 * i - 1] end
  local tasks = gather('HMGET', KEYS[4], ids)
  local statuses = gather('HMGET', KEYS[5], ids)
  local fields, leases = {}, {}
  for i = 1, count do
    local id, task, due = ids[i], tasks[i], ripe[2 * i]
    if task then
      local st = statuses[i]
      if st then
        -- A retry, or a task whose earlier publish was never confirmed.
        local _, attempts, _, _, started, finished, worker, err = match(st, STATUS)
        st = status('dispatched', attempts, due, now_s, started, finished, worker, err)
      else
        st = 'dispatched' .. US .. '0' .. US .. due .. US .. now_s .. US .. US .. US .. US
      end
      fields[#fields + 1] = id
      fields[#fields + 1] = st
      leases[#leases + 1] = deadline_s
      leases[#leases + 1] = id
      out[#out + 1] = id
      out[#out + 1] = task
      out[#out + 1] = due
    end
  end
  if #fields > 0 then
    each_slice('HSET', KEYS[5], fields)
    each_slice('ZADD', KEYS[2], leases)
    if not inflight_head[2] or deadline < tonumber(inflight_head[2]) then inflight_head = { '', deadline } end
  end
end
-- The next moment this shard needs a look: its earliest due task, or the
-- earliest in-flight lease to expire (a dead dispatcher's tasks come back then).
local due_head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
for _, head in ipairs({ due_head, inflight_head }) do
  if head[2] and (out[2] < 0 or tonumber(head[2]) < out[2]) then out[2] = tonumber(head[2]) end
end
return out
)lua");
  return s;
}

// Records what became of publishes, once the broker has answered (or the
// connection broke). Each outcome names the claim it belongs to by its lease
// deadline: a task can be claimed again before the outcome of its earlier
// publish is written (a retry due at once, claimed before the first confirm
// arrived), and that later claim's in-flight entry must not be taken for it.
// KEYS: due, inflight, status
// ARGV: prefix, retention_ms, then per publish 4 values: id, outcome, lease_deadline, reason
//   outcome 'd' the broker confirmed it: out of the in-flight set (its STATUS
//               says dispatched since the claim)
//           'x' the broker returned it (unroutable): the task ends dead, reason kept
//           'r' the broker refused it or the connection broke: back to the due set
//           'p' not published: its queue (the reason value) is paused. Held out of
//               the wheel in the queue's parked set (keys.h), state `paused`, until
//               resume(); back to the due set if the queue was resumed meanwhile.
// Reply: number of publishes whose claim was still in flight.
const LuaScript& settle() {
  static const LuaScript s = make_sectioned("settle", R"lua(
local prefix, retention = A[o + 1], A[o + 2]
local ids = {}
for i = o + 3, o + n, 4 do ids[#ids + 1] = A[i] end
local scores = gather('ZMSCORE', KEYS[2], ids)
local gone, seen = {}, {}
local retire = retirer(prefix, retention)
local tally = minute_tally(prefix)
for k = 1, #ids do
  local i = o + 3 + (k - 1) * 4
  local id, outcome, deadline = A[i], A[i + 1], A[i + 2]
  if scores[k] and not seen[id] and tonumber(scores[k]) == tonumber(deadline) then
    seen[id] = true
    gone[#gone + 1] = id
    if outcome ~= 'd' then
      local st = redis.call('HGET', KEYS[3], id)
      if st and outcome == 'x' then
        local _, attempts, due, dispatched, started, _, worker = match(st, STATUS)
        retire.add(id, status('dead', attempts, due, dispatched, started, text(now_ms()), worker, A[i + 3]), '')
        tally.add(queue_of(prefix, id, ''), 'dead', nil)
      elseif st and outcome == 'p' and redis.call('HEXISTS', prefix .. 'pausedq', A[i + 3]) == 1 then
        local _, attempts, due, dispatched, started, finished, worker, err = match(st, STATUS)
        redis.call('ZADD', prefix .. 'paused:' .. A[i + 3], due, id)
        redis.call('HSET', KEYS[3], id, status('paused', attempts, due, dispatched, started, finished, worker, err))
      elseif st then
        put_back(KEYS[1], KEYS[3], id, st)
      end
    end
  end
end
if #gone > 0 then each_slice('ZREM', KEYS[2], gone) end
retire.done()
tally.done()
return #gone
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

// The ENDED record of a task (stored_task.h), or nil.
// KEYS: the shard's ended index   ARGV: shard prefix, task id
const LuaScript& read_ended() {
  static const LuaScript s = make("read_ended", R"lua(
return ended_record(ARGV[1], ARGV[2])
)lua");
  return s;
}

// Deletes a key only while it still holds the caller's value: a shard's lease
// given back by its dispatcher, a task type's lock by the run that held it.
// KEYS: the key   ARGV: the value held
// Reply: 1 if it held it, else 0 (it lapsed, and another may hold it now).
const LuaScript& release_held() {
  static const LuaScript s = make("release_held", R"lua(
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
// KEYS: status   ARGV: prefix, worker name, lease_ms, then per delivery two
//       values: task id, run (a token the worker made unique to this delivery)
// A run's STATUS names its runner as `worker#run`. The same start asked again
// (its reply was lost when Redis went away) finds its own run and answers the
// same, rather than mistaking it for another worker's.
// Reply: per id four values: {'run', attempt, due_ms, now} when the handler
//        should run; {'busy', ms_left, 0, 0} when another run of it started less
//        than lease_ms ago and has not ended (a redelivery while a worker, maybe
//        this one before its connection broke, still runs it): look again when
//        ms_left have passed; {'skip', state, 0, 0} when the task has already ended;
//        {'missing', 0, 0, 0} when there is no record (retention passed, never
//        existed, or another namespace). A live task always has a STATUS by now:
//        the claim that published it wrote one.
const LuaScript& start() {
  static const LuaScript s = make_sectioned("start", R"lua(
local prefix, worker, lease = A[o + 1], A[o + 2], tonumber(A[o + 3])
local now = now_ms()
local now_s = text(now)
local ids, runs = {}, {}
for i = o + 4, o + n, 2 do
  ids[#ids + 1] = A[i]
  runs[#runs + 1] = worker .. '#' .. A[i + 1]
end
local statuses = gather('HMGET', KEYS[1], ids)
-- STATUS as this call left it, so a task listed twice is busy the second time.
local written = {}
local fields, out = {}, {}
for k, id in ipairs(ids) do
  local st = written[id] or statuses[k]
  local state, attempts, due, dispatched, started, finished, ran_by, err
  if st then state, attempts, due, dispatched, started, finished, ran_by, err = match(st, STATUS) end
  if st and state == 'running' and ran_by == runs[k] then
    out[#out + 1] = 'run'
    out[#out + 1] = tonumber(attempts)
    out[#out + 1] = tonumber(due)
    out[#out + 1] = now
  elseif st and state == 'running' and started ~= '' and now < tonumber(started) + lease then
    out[#out + 1] = 'busy'
    out[#out + 1] = tonumber(started) + lease - now
    out[#out + 1] = 0
    out[#out + 1] = 0
  elseif st then
    local attempt = tonumber(attempts) + 1
    st = status('running', text(attempt), due, dispatched, now_s, finished, runs[k], err)
    written[id] = st
    fields[#fields + 1] = id
    fields[#fields + 1] = st
    out[#out + 1] = 'run'
    out[#out + 1] = attempt
    out[#out + 1] = tonumber(due)
    out[#out + 1] = now
  else
    local ended = ended_record(prefix, id)
    if ended then
      out[#out + 1] = 'skip'
      out[#out + 1] = match(ended, '^[^\31]*')
    else
      out[#out + 1] = 'missing'
      out[#out + 1] = 0
    end
    out[#out + 1] = 0
    out[#out + 1] = 0
  end
end
if #fields > 0 then each_slice('HSET', KEYS[1], fields) end
return out
)lua");
  return s;
}

// Records how runs of tasks of one shard ended.
// KEYS: status, due
// ARGV: prefix, worker name, retention_ms, done_ms (how long a succeeded task's
//       idempotency key stays taken; 0: freed at once), wake_channel, shard,
//       then per task six values: id, run (the token its start was recorded
//       with), outcome ('ok' | 'retry' | 'dead' | 'defer' | 'unstart' |
//       'discard'), error,
//       delay_ms, the TASK without its payload (see stored_task.h), or '' to read it
//       'defer' puts a task that started but did not run back in the wheel
//       delay_ms from now, with the attempt its start counted given back;
//       'unstart' gives the attempt back and leaves it `dispatched`: the
//       worker hands its delivery back to the queue (shutting down).
//       'discard' ends a task that never started (its type was busy) as
//       `discarded`, with `error` saying why; it applies only while the task is
//       `dispatched`, run token aside.
// Any other outcome is written only while the task is still `running` under that
// run. Otherwise it answers 'stale' and writes nothing: this outcome was written
// already by a call whose reply was lost, or the run lease passed and another
// run took the task over, and that run's outcome is the one that counts.
// Reply: per task the state written ('succeeded', 'failed', 'dead', 'deferred',
//        'unstarted', 'discarded'), 'stale', or 'missing' (no live record: ended already).
const LuaScript& finish() {
  static const LuaScript s = make_sectioned("finish", R"lua(
local prefix, worker = A[o + 1], A[o + 2]
local retention, done_ms, wake, shard = A[o + 3], tonumber(A[o + 4]), A[o + 5], A[o + 6]
local now = now_ms()
local now_s = text(now)
local ids = {}
for i = o + 7, o + n, 6 do ids[#ids + 1] = A[i] end
local statuses = gather('HMGET', KEYS[1], ids)
-- STATUS as this call left it (false once retired), for a task listed twice.
local written = {}
local retire = retirer(prefix, retention)
local tally = minute_tally(prefix)
local fields, entries, out = {}, {}, {}
local earliest = nil
for k, id in ipairs(ids) do
  local i = o + 7 + (k - 1) * 6
  local outcome = A[i + 2]
  local st = statuses[k]
  if written[id] ~= nil then st = written[id] end
  local state, attempts, due, dispatched, started, finished, ran_by, err
  if st then state, attempts, due, dispatched, started, finished, ran_by, err = match(st, STATUS) end
  if not st then
    out[#out + 1] = 'missing'
  elseif outcome == 'discard' then
    -- Never started: its type was busy when it came (blocking discard_if_busy).
    if state == 'dispatched' then
      retire.add(id, status('discarded', attempts, due, dispatched, started, now_s, ran_by, A[i + 3]), A[i + 5], 0)
      written[id] = false
      out[#out + 1] = 'discarded'
    else
      out[#out + 1] = 'stale'
    end
  elseif state ~= 'running' or ran_by ~= worker .. '#' .. A[i + 1] then
    out[#out + 1] = 'stale'
  else
    if outcome == 'unstart' then
      state = 'unstarted'
      attempts = text(math.max((tonumber(attempts) or 1) - 1, 0))
      st = status('dispatched', attempts, due, dispatched, '', finished, '', err)
      written[id] = st
      fields[#fields + 1] = id
      fields[#fields + 1] = st
    elseif outcome == 'retry' or outcome == 'defer' then
      local next_due = now + tonumber(A[i + 4])
      local next_due_s = text(next_due)
      if outcome == 'retry' then
        -- Written back into the wheel before the worker acks the delivery: a
        -- crash in between duplicates a retry but never loses one.
        state = 'failed'
        st = status(state, attempts, next_due_s, dispatched, started, now_s, ran_by, A[i + 3])
        tally.add(queue_of(prefix, id, A[i + 5]), state, lateness(started, due))
      else
        -- Did not run (its breaker held it back after its start was recorded):
        -- the attempt the start counted is given back, and it waits as before.
        state = 'deferred'
        attempts = text(math.max((tonumber(attempts) or 1) - 1, 0))
        st = status(waiting(attempts), attempts, next_due_s, dispatched, started, finished, ran_by, err)
      end
      written[id] = st
      fields[#fields + 1] = id
      fields[#fields + 1] = st
      entries[#entries + 1] = next_due_s
      entries[#entries + 1] = id
      if earliest == nil or next_due < earliest then earliest = next_due end
    else
      if outcome == 'ok' then state = 'succeeded' else state, err = 'dead', A[i + 3] end
      tally.add(queue_of(prefix, id, A[i + 5]), state, lateness(started, due))
      retire.add(id, status(state, attempts, due, dispatched, started, now_s, ran_by, err), A[i + 5],
        state == 'succeeded' and done_ms or 0)
      written[id] = false
    end
    out[#out + 1] = state
  end
end
if #fields > 0 then each_slice('HSET', KEYS[1], fields) end
schedule(KEYS[2], entries, earliest, wake, shard)
retire.done()
tally.done()
return out
)lua");
  return s;
}

// Cancels a task that has not started running: it leaves the wheel (or its
// in-flight lease) and ends `cancelled` at once, with its ENDED record kept
// for the retention and its idempotency key freed. A published one (state
// `dispatched`) is cancelled too: its delivery finds the task ended and is
// skipped, so it never runs.
// KEYS: due, inflight, status   ARGV: prefix, retention_ms, id, reason
// Reply: {'cancelled', state it had}; {'running', worker}: it runs now and is
//        not cancelled; {'ended', state}; {'missing'}.
const LuaScript& cancel() {
  static const LuaScript s = make("cancel", R"lua(
local prefix, retention, id, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('HEXISTS', prefix .. 'tasks', id) == 0 then
  local ended = ended_record(prefix, id)
  if ended then return {'ended', match(ended, '^[^\31]*')} end
  return {'missing'}
end
local st = redis.call('HGET', KEYS[3], id)
local state, attempts, due, dispatched, started, finished, ran_by, err
if st then
  state, attempts, due, dispatched, started, finished, ran_by, err = match(st, STATUS)
else
  state, attempts, due, dispatched, started, ran_by = 'scheduled', '0', text(due_of(prefix, id)), '', '', ''
end
if state == 'running' then return {'running', match(ran_by, '^[^#]*')} end
redis.call('ZREM', KEYS[1], id)
redis.call('ZREM', KEYS[2], id)
if state == 'paused' then redis.call('ZREM', parked_key(prefix, id), id) end
local retire = retirer(prefix, retention)
retire.add(id, status('cancelled', attempts, due, dispatched, started, text(now_ms()), ran_by, reason), '', 0)
retire.done()
return {'cancelled', state}
)lua");
  return s;
}

// Moves a task that waits in the wheel (scheduled, or failed and waiting for
// its retry) to a new due time.
// KEYS: due, status
// ARGV: prefix, id, due_ms ('': now + delay_ms, by Redis TIME), delay_ms, wake_channel, shard
// Reply: {'rescheduled', due_ms}; {'not_waiting', state} (dispatched or
//        running: too late); {'ended', state}; {'missing'}.
const LuaScript& reschedule() {
  static const LuaScript s = make("reschedule", R"lua(
local prefix, id, due = ARGV[1], ARGV[2], ARGV[3]
if due == '' then due = text(now_ms() + tonumber(ARGV[4])) end
if redis.call('HEXISTS', prefix .. 'tasks', id) == 0 then
  local ended = ended_record(prefix, id)
  if ended then return {'ended', match(ended, '^[^\31]*')} end
  return {'missing'}
end
local st = redis.call('HGET', KEYS[2], id)
local paused = st and match(st, '^[^\31]*') == 'paused'
if not paused and not redis.call('ZSCORE', KEYS[1], id) then
  return {'not_waiting', st and match(st, '^[^\31]*') or 'unknown'}
end
if st then
  local state, attempts, _, dispatched, started, finished, ran_by, err = match(st, STATUS)
  redis.call('HSET', KEYS[2], id, status(state, attempts, due, dispatched, started, finished, ran_by, err))
end
if paused then
  -- Held out of the wheel while its queue is paused; resume() puts it back at this time.
  redis.call('ZADD', parked_key(prefix, id), due, id)
else
  schedule(KEYS[1], {due, id}, tonumber(due), ARGV[5], ARGV[6])
end
return {'rescheduled', tonumber(due)}
)lua");
  return s;
}

// Resumes a paused queue in one shard: the shard stops parking its tasks, and
// those it holds go back to the wheel at their due times, waiting again (the
// ripe ones are claimed at once: the dispatchers are woken).
// KEYS: due, status, the shard's pausedq, the queue's parked set
// ARGV: wake_channel, shard, queue
// Reply: how many tasks went back.
const LuaScript& resume() {
  static const LuaScript s = make("resume", R"lua(
redis.call('HDEL', KEYS[3], ARGV[3])
local moved = 0
while true do
  local batch = redis.call('ZRANGE', KEYS[4], 0, 999, 'WITHSCORES')
  if #batch == 0 then break end
  local ids, entries, fields, earliest = {}, {}, {}, nil
  for i = 1, #batch, 2 do ids[#ids + 1] = batch[i] end
  local statuses = gather('HMGET', KEYS[2], ids)
  for k = 1, #ids do
    local id, due = ids[k], batch[2 * k]
    entries[#entries + 1] = due
    entries[#entries + 1] = id
    if not earliest or tonumber(due) < earliest then earliest = tonumber(due) end
    local st = statuses[k]
    if st then
      local state, attempts, d, dispatched, started, finished, worker, err = match(st, STATUS)
      if state == 'paused' then
        fields[#fields + 1] = id
        fields[#fields + 1] = status(waiting(attempts), attempts, d, dispatched, started, finished, worker, err)
      end
    end
  end
  if #fields > 0 then each_slice('HSET', KEYS[2], fields) end
  schedule(KEYS[1], entries, earliest, ARGV[1], ARGV[2])
  each_slice('ZREM', KEYS[4], ids)
  moved = moved + #ids
end
return moved
)lua");
  return s;
}

// Gates the runs of a task type whose [types.<type>] blocking policy is not
// `concurrent`: one run of the type at a time across the fleet. Asked before a
// delivery's start is recorded.
// KEYS: lock, waiters, waiting (keys.h, one type's slot)
// ARGV: policy ('serial' | 'discard'), holder (the run token, worker#n), task id,
//       order (its due time, ms), lease_ms (how long the lock holds if never
//       given back: the run's lease), wait_ms (how long a waiting place holds
//       unless asked again)
// Reply: {'run', 0}: the lock is this run's (taken now, or already: a call
//        repeated after a lost reply); {'wait', n}: serial, another run holds the
//        lock or n tasks wait ahead (earliest due first, then by id): ask again;
//        {'busy', ms}: discard, another run holds the lock for up to ms more.
// A serial task takes the lock only at the head of the waiters, so turns go in
// due order across the fleet; a waiting place whose worker stopped asking (it
// died) lapses after wait_ms, and a lock whose run never gave it back after
// lease_ms.
const LuaScript& gate() {
  static const LuaScript s = make("gate", R"lua(
local policy, holder, id, order = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lease, wait = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #lapsed > 0 then
  each_slice('ZREM', KEYS[2], lapsed)
  each_slice('ZREM', KEYS[3], lapsed)
end
local current = redis.call('GET', KEYS[1])
if current == holder then return {'run', 0} end
if policy == 'discard' then
  if current then return {'busy', math.max(redis.call('PTTL', KEYS[1]), 0)} end
  redis.call('SET', KEYS[1], holder, 'PX', lease)
  return {'run', 0}
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if not current and (head == nil or head == id) then
  redis.call('SET', KEYS[1], holder, 'PX', lease)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  return {'run', 0}
end
redis.call('ZADD', KEYS[2], 'NX', order, id)
redis.call('ZADD', KEYS[3], now + wait, id)
return {'wait', redis.call('ZRANK', KEYS[2], id)}
)lua");
  return s;
}

// Walks one shard's structures a bounded chunk at a time, reading only, for
// `ripen list` (the ids of the tasks that match) and `ripen stats` (how many of
// each queue are in each state). A walk is one phase per structure:
//   'due'       the due set by (due time, id): tasks waiting, scheduled or failed
//   'inflight'  the in-flight set by (lease deadline, id): claimed, confirm pending
//   'status'    STATUS by HSCAN, but the ids in the two sets: dispatched, running,
//               paused
//   'ended'     the ENDED buckets, oldest first, each by HSCAN; ids whose task
//               lives again (replayed) are left to the other phases
// A live task's state is read as task_record.cc reads it: no STATUS is
// scheduled; `dispatched` while still in flight is waiting (scheduled or failed).
// A run reads one chunk: up to `count` members of a set, or one HSCAN call
// (COUNT `count`, a hint) of a hash, and says where it stopped; a walk resumes
// from any such place. Not a snapshot: a task that moves between structures
// during a walk may be met twice or not at all.
// KEYS: due, inflight, tasks, status, ended (the shard's bucket index)
// ARGV: prefix, phase, pos, after, count, queue ('' any), state ('' any), mode ('ids' | 'tally')
//   pos/after, where the walk stands ('' '' = the phase's start):
//     due, inflight  pos = the score reached, after = the last id met with it
//     status         pos = an HSCAN cursor; after = '', or an id: take that
//                    chunk again, without its ids up to this one (byte order)
//     ended          pos = '<w>:<n>:<HSCAN cursor>' of a bucket, after as for status
// Reply: {pos, after, done (1: the phase has nothing left), examined, ...}, then
//   mode 'ids': per matching task: id, pos, after (a walk resumed there starts right
//               after it; in a hash, the ids of a chunk come in byte order)
//   mode 'tally': per (queue, state) met: '<queue>|<state>', count
const LuaScript& survey() {
  static const LuaScript s = make("survey", R"lua(
local prefix, phase, pos, after = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local count, want_queue, want_state, mode = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]
local tasks_key, status_key = KEYS[3], KEYS[4]
local out = { '', '', 0, 0 }
local tallies = {}
local examined = 0

-- Byte order, as Redis orders members of equal score (Lua's own < follows the locale).
local function lex_lt(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function met(id, queue, state, at_pos, at_after)
  if queue == nil or (want_queue ~= '' and queue ~= want_queue) or (want_state ~= '' and state ~= want_state) then
    return
  end
  if mode == 'tally' then
    local k = queue .. '|' .. state
    tallies[k] = (tallies[k] or 0) + 1
  else
    out[#out + 1] = id
    out[#out + 1] = at_pos
    out[#out + 1] = at_after
  end
end

local function live_state(st, in_flight)
  if not st then return 'scheduled' end
  local state, attempts = match(st, '^([^\31]*)\31([^\31]*)')
  if state == 'dispatched' and in_flight then return waiting(attempts) end
  return state
end

-- A sorted set after (pos, after): the first rank past them, found by rank for
-- members of the same score (binary search, O(log n) calls), then one range.
local function zwalk(key, in_flight)
  local start = 0
  if pos ~= '' then
    start = redis.call('ZCOUNT', key, '-inf', '(' .. pos)
    if after ~= '' then
      local lo, hi = start, redis.call('ZCOUNT', key, '-inf', pos)
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        local m = redis.call('ZRANGE', key, mid, mid)[1]
        if m and not lex_lt(after, m) then lo = mid + 1 else hi = mid end
      end
      start = lo
    end
  end
  local entries = redis.call('ZRANGE', key, start, start + count - 1, 'WITHSCORES')
  out[1], out[2] = pos, after
  for i = 1, #entries, 2 do
    local id, score = entries[i], entries[i + 1]
    examined = examined + 1
    local task = redis.call('HGET', tasks_key, id)
    if task then
      met(id, queue_of(prefix, id, task), live_state(redis.call('HGET', status_key, id), in_flight), score, id)
    end
    out[1], out[2] = score, id
  end
  if #entries < 2 * count then out[3] = 1 end
end

-- One HSCAN chunk of `key` from `cursor`: visit(id, value) for its entries in
-- byte order of id, those up to `skip_to` left out. Returns the next cursor.
-- Byte order, not the order HSCAN gives: that changes as the hash is rehashed,
-- while a chunk taken again from its cursor holds the same entries as long as
-- the hash is left alone (callers cut a walk between chunks when they can).
local function hchunk(key, cursor, skip_to, visit)
  local r = redis.call('HSCAN', key, cursor, 'COUNT', count)
  local kv, ids, values = r[2], {}, {}
  for i = 1, #kv, 2 do
    if skip_to == '' or lex_lt(skip_to, kv[i]) then
      ids[#ids + 1] = kv[i]
      values[kv[i]] = kv[i + 1]
    end
  end
  table.sort(ids, lex_lt)
  for _, id in ipairs(ids) do
    examined = examined + 1
    visit(id, values[id])
  end
  return r[1]
end

local function status_walk()
  local cursor = pos ~= '' and pos or '0'
  local next_cursor = hchunk(status_key, cursor, after, function(id, st)
    if redis.call('ZSCORE', KEYS[1], id) or redis.call('ZSCORE', KEYS[2], id) then return end
    local task = redis.call('HGET', tasks_key, id)
    if task then met(id, queue_of(prefix, id, task), live_state(st, false), cursor, id) end
  end)
  out[1] = next_cursor
  if next_cursor == '0' then out[3] = 1 end
end

local ENDED_QUEUE = '^' .. string.rep('[^\31]*\31', 10) .. '([^\31]*)'
local function ended_walk()
  local buckets = redis.call('ZRANGE', KEYS[5], 0, -1)
  local w, n, cursor = match(pos, '^(%d+):(%d+):(%d+)$')
  local at, skip = nil, after
  for i, b in ipairs(buckets) do
    local bw, bn = match(b, 'ended:(%d+):(%d+)$')
    if bw then
      if w == nil then
        at, cursor = i, '0'
        break
      elseif bw == w and bn == n then
        at = i
        break
      elseif tonumber(bw) * tonumber(bn) > tonumber(w) * tonumber(n) then
        at, cursor, skip = i, '0', ''  -- its bucket went (retention): the next one
        break
      end
    end
  end
  if not at then
    out[3] = 1
    return
  end
  local bw, bn = match(buckets[at], 'ended:(%d+):(%d+)$')
  local here = bw .. ':' .. bn .. ':' .. cursor
  cursor = hchunk(buckets[at], cursor, skip, function(id, record)
    if redis.call('HEXISTS', tasks_key, id) == 1 then return end
    met(id, match(record, ENDED_QUEUE) or '', match(record, '^[^\31]*'), here, id)
  end)
  if cursor == '0' then
    at = at + 1
    if at > #buckets then
      out[3] = 1
      return
    end
    bw, bn = match(buckets[at], 'ended:(%d+):(%d+)$')
  end
  out[1] = bw .. ':' .. bn .. ':' .. cursor
end

if phase == 'due' then
  zwalk(KEYS[1], false)
elseif phase == 'inflight' then
  zwalk(KEYS[2], true)
elseif phase == 'status' then
  status_walk()
elseif phase == 'ended' then
  ended_walk()
else
  return redis.error_reply('survey: unknown phase ' .. phase)
end
out[4] = examined
for k, v in pairs(tallies) do
  out[#out + 1] = k
  out[#out + 1] = v
end
return out
)lua");
  return s;
}

ScriptCall::ScriptCall(const LuaScript& script, size_t keys_per_section)
    : script_(script), keys_per_section_(keys_per_section) {
  args_.push_back(std::to_string(keys_per_section));
}

void ScriptCall::add(std::vector<std::string> keys, std::vector<std::string> args) {
  assert(keys.size() == keys_per_section_);
  keys_.insert(keys_.end(), std::make_move_iterator(keys.begin()), std::make_move_iterator(keys.end()));
  args_.push_back(std::to_string(args.size()));
  args_.insert(args_.end(), std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
  ++sections_;
}

void ScriptCall::append_to(Redis& redis) {
  redis.append_eval(script_, std::move(keys_), std::move(args_));
  keys_.clear();
  args_.clear();
  sections_ = 0;
}

ClaimReply read_claim_reply(RedisReply::View r) {
  ClaimReply out;
  if (r.size() < 4) {
    out.fenced = true;  // {-1}
    return out;
  }
  out.now_ms = r.at(0).integer();
  out.next_ms = r.at(1).integer();
  out.recovered = r.at(2).integer();
  out.lease_deadline = r.at(3).integer();
  out.tasks.reserve((r.size() - 4) / 3);
  for (size_t i = 4; i + 2 < r.size(); i += 3)
    out.tasks.push_back({r.at(i).sv(), r.at(i + 1).sv(), r.at(i + 2).integer()});
  return out;
}

}  // namespace ripen::scripts
