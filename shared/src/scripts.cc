#include "ripen/scripts.h"

#include <cassert>
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

-- Lua turns a number into a string with sprintf each time it is concatenated
-- or passed to redis.call: a stamp written into many records is converted once.
local function text(n) return string.format('%d', n) end

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
local function parse_status(st)
  local f = split(st, 7)
  for i = #f + 1, 8 do f[i] = '' end
  return f
end

local function read_status(status_key, id)
  local st = redis.call('HGET', status_key, id)
  if not st then return nil end
  return parse_status(st)
end

local function pack_status(f) return table.concat(f, US, 1, 8) end

local function write_status(status_key, id, f)
  redis.call('HSET', status_key, id, pack_status(f))
end

-- Commands that take many members are sent in slices: Lua's unpack has a
-- stack limit. One call per slice instead of one per task is most of what a
-- script saves under load.
local SLICE = 1000

-- redis.call(cmd, key, list...), sliced; for commands whose reply is not needed.
local function each_slice(cmd, key, list)
  for i = 1, #list, SLICE do
    redis.call(cmd, key, unpack(list, i, math.min(i + SLICE - 1, #list)))
  end
end

-- One reply per member, like HMGET or ZMSCORE, for any number of members.
local function gather(cmd, key, list)
  local out = {}
  for i = 1, #list, SLICE do
    local part = redis.call(cmd, key, unpack(list, i, math.min(i + SLICE - 1, #list)))
    for k = 1, #part do out[i + k - 1] = part[k] end
  end
  return out
end

-- A live task's due time: from its STATUS once claimed, else its score.
local function due_of(prefix, id)
  local st = redis.call('HGET', prefix .. 'status', id)
  if st then return tonumber(split(st, 3)[3]) end
  return tonumber(redis.call('ZSCORE', prefix .. 'due', id))
end

-- Adds (due, id) pairs to the due set; when one becomes the earliest entry,
-- tells sleeping dispatchers so none sleeps past it.
local function schedule(due_key, pairs_, earliest, wake_channel, shard)
  if #pairs_ == 0 then return end
  local head = redis.call('ZRANGE', due_key, 0, 0, 'WITHSCORES')
  each_slice('ZADD', due_key, pairs_)
  if wake_channel ~= '' and (head[2] == nil or earliest < tonumber(head[2])) then
    redis.call('PUBLISH', wake_channel, shard)
  end
end

-- Ends tasks' lives. add() writes a task's compact ENDED record (it stays
-- `retention` ms; Redis expires it) and frees its idempotency key; done()
-- removes the live TASK and STATUS entries of all of them at once. `head` is
-- the TASK without its payload when the caller has it (a worker does), else ''
-- and it is read.
local function retirer(prefix, retention)
  local ids = {}
  local r = {}
  function r.add(id, f, head)
    local t
    if head and head ~= '' then
      t = split(head, 5)
    else
      local task = redis.call('HGET', prefix .. 'tasks', id)
      if task then
        t = split(task, 6)
        head = table.concat(t, US, 1, 6)
      else
        head = ''
      end
    end
    if t and t[5] and t[5] ~= '' then
      local idem_key = prefix .. 'idem:' .. t[5]
      if redis.call('GET', idem_key) == id then redis.call('DEL', idem_key) end
    end
    ids[#ids + 1] = id
    redis.call('SET', prefix .. 'e:' .. id, pack_status(f) .. US .. head, 'PX', retention)
  end
  function r.done()
    each_slice('HDEL', prefix .. 'tasks', ids)
    each_slice('HDEL', prefix .. 'status', ids)
  end
  return r
end
)lua";

LuaScript make(const char* name, const char* body) { return LuaScript{name, std::string(kPrelude) + body}; }

// Runs the body once per section, each with one shard's KEYS and ARGV: a
// call carries as many shards as the caller has work for (see ScriptCall).
constexpr const char* kSections = R"lua(
-- ARGV[1]: keys per section; then per section: how many ARGV it has, and them.
local nkeys = tonumber(ARGV[1])
local replies = {}
local at, kat = 2, 0
while at <= #ARGV do
  local argc = tonumber(ARGV[at])
  local keys, args = {}, {}
  for i = 1, nkeys do keys[i] = KEYS[kat + i] end
  for i = 1, argc do args[i] = ARGV[at + i] end
  replies[#replies + 1] = run(keys, args)
  kat = kat + nkeys
  at = at + argc + 1
end
return replies
)lua";

LuaScript make_sectioned(const char* name, const char* body) {
  return LuaScript{name, std::string(kPrelude) + "local function run(KEYS, ARGV)\n" + body + "end\n" + kSections};
}

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
  static const LuaScript s = make_sectioned("enqueue", R"lua(
local prefix, wake, shard = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local now_s = text(now)
local ids = {}
for i = 4, #ARGV, 6 do ids[#ids + 1] = ARGV[i] end
local stored = gather('HMGET', KEYS[2], ids)
-- What this call creates, so a later task of the same call sees it: by id, its
-- due time; by idempotency key, its id.
local created, keyed = {}, {}
local fields, entries, out = {}, {}, {}
local earliest = nil
for k = 1, #ids do
  local i = 4 + (k - 1) * 6
  local id, due_arg, delay, max, idem, tail = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local existing = nil
  if idem ~= '' then
    existing = keyed[idem]
    if not existing then
      existing = redis.call('GET', prefix .. 'idem:' .. idem)
      if existing and redis.call('HEXISTS', KEYS[2], existing) == 0 then existing = nil end
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
each_slice('HSET', KEYS[2], fields)
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
  if f then
    redis.call('ZADD', KEYS[1], f[3], id)
    if f[1] == 'dispatched' then
      f[1] = tonumber(f[2]) > 0 and 'failed' or 'scheduled'
      write_status(KEYS[5], id, f)
    end
  end
end
local deadline = now + tonumber(ARGV[3])
local now_s, deadline_s = text(now), text(deadline)
local out = { now, -1, #expired, deadline }
local ripe = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, batch)
local n = #ripe / 2
if n > 0 then
  -- The ripe entries are exactly the head of the set, so one rank-range removal
  -- takes them all.
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 1)
  local ids = {}
  for i = 1, n do ids[i] = ripe[2 * i - 1] end
  local tasks = gather('HMGET', KEYS[4], ids)
  local statuses = gather('HMGET', KEYS[5], ids)
  local fields, leases = {}, {}
  for i = 1, n do
    local id, task, due = ids[i], tasks[i], ripe[2 * i]
    if task then
      local status
      if statuses[i] then
        -- A retry, or a task whose earlier publish was never confirmed.
        local f = parse_status(statuses[i])
        f[1], f[3], f[4] = 'dispatched', due, now_s
        status = pack_status(f)
      else
        status = 'dispatched' .. US .. '0' .. US .. due .. US .. now_s .. US .. US .. US .. US
      end
      fields[#fields + 1] = id
      fields[#fields + 1] = status
      leases[#leases + 1] = deadline_s
      leases[#leases + 1] = id
      out[#out + 1] = id
      out[#out + 1] = task
      out[#out + 1] = due
    end
  end
  each_slice('HSET', KEYS[5], fields)
  each_slice('ZADD', KEYS[2], leases)
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
// Reply: number of publishes whose claim was still in flight.
const LuaScript& settle() {
  static const LuaScript s = make_sectioned("settle", R"lua(
local prefix, retention = ARGV[1], ARGV[2]
local ids = {}
for i = 3, #ARGV, 4 do ids[#ids + 1] = ARGV[i] end
local scores = gather('ZMSCORE', KEYS[2], ids)
local gone, seen = {}, {}
local now = nil
local retire = retirer(prefix, retention)
for k = 1, #ids do
  local i = 3 + (k - 1) * 4
  local id, outcome, deadline, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if scores[k] and not seen[id] and tonumber(scores[k]) == tonumber(deadline) then
    seen[id] = true
    gone[#gone + 1] = id
    if outcome ~= 'd' then
      local f = read_status(KEYS[3], id)
      if f and outcome == 'x' then
        now = now or now_ms()
        f[1], f[6], f[8] = 'dead', now, reason
        retire.add(id, f, '')
      elseif f then
        redis.call('ZADD', KEYS[1], f[3], id)
        if f[1] == 'dispatched' then
          f[1] = tonumber(f[2]) > 0 and 'failed' or 'scheduled'
          write_status(KEYS[3], id, f)
        end
      end
    end
  end
end
each_slice('ZREM', KEYS[2], gone)
retire.done()
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
  static const LuaScript s = make_sectioned("start", R"lua(
local prefix, worker = ARGV[1], ARGV[2]
local now = now_ms()
local now_s = text(now)
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
local statuses = gather('HMGET', KEYS[1], ids)
-- STATUS as this call left it, so a task listed twice starts twice, in order.
local written = {}
local fields, out = {}, {}
for k, id in ipairs(ids) do
  local st = written[id] or statuses[k]
  if st then
    local f = parse_status(st)
    f[1], f[2], f[5], f[7] = 'running', text(tonumber(f[2]) + 1), now_s, worker
    written[id] = pack_status(f)
    fields[#fields + 1] = id
    fields[#fields + 1] = written[id]
    out[#out + 1] = 'run'
    out[#out + 1] = tonumber(f[2])
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
each_slice('HSET', KEYS[1], fields)
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
  static const LuaScript s = make_sectioned("finish", R"lua(
local prefix, retention, wake, shard = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local now_s = text(now)
local ids = {}
for i = 5, #ARGV, 5 do ids[#ids + 1] = ARGV[i] end
local statuses = gather('HMGET', KEYS[1], ids)
-- STATUS as this call left it (false once retired), for a task listed twice.
local written = {}
local retire = retirer(prefix, retention)
local fields, entries, out = {}, {}, {}
local earliest = nil
for k, id in ipairs(ids) do
  local i = 5 + (k - 1) * 5
  local outcome, err, delay, head = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local st = statuses[k]
  if written[id] ~= nil then st = written[id] end
  if not st then
    out[#out + 1] = 'missing'
  else
    local f = parse_status(st)
    f[6] = now_s
    if outcome == 'retry' then
      -- Written back into the wheel before the worker acks the delivery: a crash
      -- in between duplicates a retry but never loses one.
      local due = now + tonumber(delay)
      f[1], f[3], f[8] = 'failed', text(due), err
      written[id] = pack_status(f)
      fields[#fields + 1] = id
      fields[#fields + 1] = written[id]
      entries[#entries + 1] = f[3]
      entries[#entries + 1] = id
      if earliest == nil or due < earliest then earliest = due end
    else
      if outcome == 'ok' then f[1] = 'succeeded' else f[1], f[8] = 'dead', err end
      retire.add(id, f, head)
      written[id] = false
    end
    out[#out + 1] = f[1]
  end
end
each_slice('HSET', KEYS[1], fields)
schedule(KEYS[2], entries, earliest, wake, shard)
retire.done()
return out
)lua");
  return s;
}

ScriptCall::ScriptCall(const LuaScript& script, size_t keys_per_section)
    : script_(script), keys_per_section_(keys_per_section) {
  args_.push_back(std::to_string(keys_per_section));
}

void ScriptCall::add(const std::vector<std::string>& keys, const std::vector<std::string>& args) {
  assert(keys.size() == keys_per_section_);
  keys_.insert(keys_.end(), keys.begin(), keys.end());
  args_.push_back(std::to_string(args.size()));
  args_.insert(args_.end(), args.begin(), args.end());
  ++sections_;
}

void ScriptCall::append_to(Redis& redis) const { redis.append_eval(script_, keys_, args_); }

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
