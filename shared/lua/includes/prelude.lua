-- Helpers every script shares, prepended to each (shared/src/scripts.cc). Before
-- this file come the lifecycle table (ALLOWED, may(); lifecycle.h) and the key
-- builders (KEY; keys.cc), both generated from the C++ so neither can drift.
--
-- The packed TASK / STATUS / ENDED strings are described in stored_task.h;
-- fields are separated by 0x1f. Keys only known inside a script (idem:<key>,
-- the buckets of ended records) are built with KEY from the shard prefix
-- (ARGV); they share the prefix's hash tag, so a script touches one slot.
--
-- Written for the Lua interpreter's costs, which a profile of Redis under load
-- shows: a packed record is taken apart with one string.match (one C call) and
-- put together with one concatenation (one allocation), not field by field in
-- Lua; numbers become text once per run; argument lists are not copied.
local US = '\31'
local match, format, unpack, byte, find = string.match, string.format, unpack, string.byte, string.find
local V = 118  -- byte('v'): a record in a versioned format starts with 'v<n>'

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

-- STATUS, format v2: v2 | state | attempts | due_ms | dispatched_ms | started_ms |
--   finished_ms | runner | lease_until | last_error
-- Format v1 (no marker, written before formats had versions) lacks lease_until:
-- it reads as '' (see start.lua for what a missing one means).
local STATUS_V2 = '^v2\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31(.*)$'
local STATUS_V1 = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31(.*)$'

-- state, attempts, due, dispatched, started, finished, runner, lease_until, err
local function read_status(st)
  if byte(st, 1) == V then return match(st, STATUS_V2) end
  local state, attempts, due, dispatched, started, finished, runner, err = match(st, STATUS_V1)
  return state, attempts, due, dispatched, started, finished, runner, '', err
end

-- A STATUS in the current format.
local function status(state, attempts, due, dispatched, started, finished, runner, lease, err)
  return 'v2' .. US .. state .. US .. attempts .. US .. due .. US .. dispatched .. US .. started .. US .. finished ..
    US .. runner .. US .. lease .. US .. err
end

-- The state a STATUS holds, or 'scheduled' for a live task without one (never claimed).
local function state_of(st)
  if not st then return 'scheduled' end
  if byte(st, 1) == V then return match(st, '^v2\31([^\31]*)') end
  return match(st, '^([^\31]*)')
end

-- A task back in the wheel waits as `scheduled` before its first attempt and
-- as `failed` (an attempt failed; the next one waits) after.
local function waiting(attempts) return attempts ~= '0' and attempts ~= '' and 'failed' or 'scheduled' end

-- The TASK without its payload (its "head") and its idempotency key, from a TASK
-- or a head: v2 | max_attempts | created_ms | queue | type | idempotency_key | extra ...
-- (v1: the same without the marker).
local HEAD_V2 = '^(v2\31[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31([^\31]*)\31[^\31]*)'
local HEAD_V1 = '^([^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31([^\31]*)\31[^\31]*)'
local function task_head(task)
  if byte(task, 1) == V then return match(task, HEAD_V2) end
  return match(task, HEAD_V1)
end

-- The idempotency key of a TASK or head as its Redis key names it, scoped by
-- queue and type ('<queue>/<type>/<key>'; keys.h), and the key alone (how it
-- was named before keys were scoped); nil when it has none.
local IDEM_V2 = '^v2\31[^\31]*\31[^\31]*\31([^\31]*)\31([^\31]*)\31([^\31]*)'
local IDEM_V1 = '^[^\31]*\31[^\31]*\31([^\31]*)\31([^\31]*)\31([^\31]*)'
local function scoped_idem(task)
  local q, t, key = match(task, byte(task, 1) == V and IDEM_V2 or IDEM_V1)
  if not key or key == '' then return nil end
  return q .. '/' .. t .. '/' .. key, key
end

-- The queue a TASK or head names.
local function queue_in(task)
  if byte(task, 1) == V then return match(task, '^v2\31[^\31]*\31[^\31]*\31([^\31]*)') end
  return match(task, '^[^\31]*\31[^\31]*\31([^\31]*)')
end

-- Whether a TASK is the one a delivery names: its queue, type and the SHA-1 of
-- its payload (the payload as the TASK stores it, compact JSON).
local TASK_V2 = '^v2\31[^\31]*\31[^\31]*\31([^\31]*)\31([^\31]*)\31[^\31]*\31[^\31]*\31(.*)$'
local TASK_V1 = '^[^\31]*\31[^\31]*\31([^\31]*)\31([^\31]*)\31[^\31]*\31[^\31]*\31(.*)$'
local function task_matches(task, queue, type, digest)
  local q, t, payload = match(task, byte(task, 1) == V and TASK_V2 or TASK_V1)
  return q == queue and t == type and redis.sha1hex(payload or '') == digest
end

-- The head the caller has, else the live task's TASK; '' when it has neither.
local function head_of(prefix, id, head)
  if not head or head == '' then head = redis.call('HGET', KEY.tasks(prefix), id) or '' end
  return head
end

-- The queue of a live task, from the head the caller has, else its TASK.
local function queue_of(prefix, id, head)
  head = head_of(prefix, id, head)
  if head == '' then return nil end
  return queue_in(head)
end

-- An ENDED record is its final STATUS, a separator, then its TASK head (which
-- may be empty). Returns the STATUS part and the head.
local function split_ended(record)
  local fields = byte(record, 1) == V and 10 or 8
  local at = 0
  for _ = 1, fields do
    at = find(record, US, at + 1, true)
    if not at then return record, '' end
  end
  return record:sub(1, at - 1), record:sub(at + 1)
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
  local buckets = redis.call('ZRANGE', KEY.ended_index(prefix), 0, -1)
  for i = #buckets, 1, -1 do
    local record = redis.call('HGET', buckets[i], id)
    if record then return record end
  end
  return nil
end

-- The state a task is in: that of its STATUS, 'scheduled' for a live task
-- without one, the ended state of its ENDED record, or 'absent'.
local function current_state(prefix, id, st)
  if st then return state_of(st) end
  if redis.call('HEXISTS', KEY.tasks(prefix), id) == 1 then return 'scheduled' end
  local ended = ended_record(prefix, id)
  if ended then return state_of(ended) end
  return 'absent'
end

-- A task's due time: from its STATUS once claimed, its score while it waits,
-- its ENDED record once it ended (0 once that is gone too).
local function due_of(prefix, id)
  local st = redis.call('HGET', KEY.status(prefix), id)
  if st then
    local _, _, due = read_status(st)
    return tonumber(due)
  end
  local score = redis.call('ZSCORE', KEY.due(prefix), id)
  if score then return tonumber(score) end
  st = ended_record(prefix, id)  -- a task that ended: its record, while kept
  if not st then return 0 end
  local _, _, due = read_status(st)
  return tonumber(due) or 0
end

-- Ends tasks' lives. add() makes a task's compact ENDED record (STATUS, then
-- the TASK head) and frees its idempotency key, or keeps it keep_ms longer as a
-- done marker (a succeeded task; see enqueue); done() files the records in the
-- current bucket and removes the live TASK and STATUS entries and any
-- outstanding entry, all at once. `head` is the TASK head when the caller has
-- it (a worker does), else '' and it is read.
local function retirer(prefix, retention)
  local ids, records = {}, {}
  local r = {}
  function r.add(id, ended_status, head, keep_ms)
    if not head or head == '' then
      local task = redis.call('HGET', KEY.tasks(prefix), id)
      head = task and task_head(task) or ''
    end
    local scoped, legacy = nil, nil
    if head ~= '' then scoped, legacy = scoped_idem(head) end
    -- The key as scoped, and as named before scoping (a task enqueued then).
    for _, idem in ipairs(scoped and {scoped, legacy} or {}) do
      local idem_key = KEY.idem(prefix, idem)
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
    each_slice('HDEL', KEY.tasks(prefix), ids)
    each_slice('HDEL', KEY.status(prefix), ids)
    each_slice('ZREM', KEY.outstanding(prefix), ids)
    local now = now_ms()
    local width = math.max(1000, math.floor(tonumber(retention) / 16))
    local bucket = math.floor(now / width)
    local key = KEY.ended_bucket(prefix, text(width), text(bucket))
    local index = KEY.ended_index(prefix)
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

-- How runs ended, per queue and minute, for `ripen stats`: one hash per shard
-- and minute (KEY.minute), fields '<queue>|succeeded', '<queue>|failed' (an
-- attempt failed; a retry waits), '<queue>|dead', and '<queue>|late|<le>': a
-- coarse histogram of lateness (the handler's start minus its due time), <le>
-- the bucket's upper bound in ms or 'inf'. add() only counts in Lua; done()
-- writes one HINCRBY per field seen, so a script run that ends many tasks of one
-- queue pays a few calls, not a few per task.
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
    local key = KEY.minute(prefix, text(minute))
    for field, n in pairs(counts) do redis.call('HINCRBY', key, field, n) end
    -- Read back an hour; kept two from the minute's start.
    redis.call('PEXPIREAT', key, text(minute * 60000 + 7200000))
  end
  return t
end

-- Live tasks per queue and class, per shard (KEY.counts), for `ripen stats`
-- without a walk over every task: every script that moves a live task from one
-- state to another tells move(queue, from, to) (states as STATUS names them;
-- 'absent' or an ended state for none), and done() writes one HINCRBY per field
-- that changed. A state's class is what stats shows; a move within a class
-- (scheduled -> failed, a takeover) changes nothing. The counts are exact once
-- an enqueue found the shard without live tasks and marked them so (fresh());
-- a shard that had tasks before the counts were kept is walked instead.
local COUNTED = { scheduled = 'scheduled', failed = 'scheduled', dispatched = 'in_flight', running = 'running',
  paused = 'held' }
local function live_counts(prefix)
  local delta, any = {}, false
  local c = {}
  function c.move(queue, from, to)
    local a, b = COUNTED[from], COUNTED[to]
    if a == b or not queue or queue == '' then return end
    any = true
    if a then
      local f = queue .. '|' .. a
      delta[f] = (delta[f] or 0) - 1
    end
    if b then
      local f = queue .. '|' .. b
      delta[f] = (delta[f] or 0) + 1
    end
  end
  -- When the shard has no live task, its counts start again from nothing, exact.
  function c.fresh(tasks_key)
    if redis.call('HLEN', tasks_key) == 0 then
      local key = KEY.counts(prefix)
      redis.call('DEL', key)
      redis.call('HSET', key, KEY.counts_exact, '1')
    end
  end
  function c.done()
    if not any then return end
    local key = KEY.counts(prefix)
    for f, n in pairs(delta) do
      if n ~= 0 then redis.call('HINCRBY', key, f, n) end
    end
  end
  return c
end

-- The created_ms a TASK or head names, or nil.
local function created_in(task)
  if not task or task == '' then return nil end
  if byte(task, 1) == V then return tonumber(match(task, '^v2\31[^\31]*\31([^\31]*)')) end
  return tonumber(match(task, '^[^\31]*\31([^\31]*)'))
end

-- A run's lateness in ms from its STATUS stamps and its TASK (or head), or nil:
-- counted from its due time, or from its creation when that is later (a task
-- given a due time already past was not late before it existed), as
-- lateness_ms in metrics.h counts it.
local function lateness(started, due, task)
  local s, d = tonumber(started), tonumber(due)
  if not (s and d) then return nil end
  local c = created_in(task)
  if c and c > d then d = c end
  return math.max(s - d, 0)
end

-- Puts a task back in the wheel at `due` (a dispatched or running task whose
-- publish or run came to nothing): out of the outstanding set, STATUS waiting
-- again with its stamps kept, the attempts given.
local function to_wheel(prefix, id, attempts, due, dispatched, started, finished, runner, err)
  redis.call('ZADD', KEY.due(prefix), due, id)
  redis.call('ZREM', KEY.outstanding(prefix), id)
  redis.call('HSET', KEY.status(prefix), id,
    status(waiting(attempts), attempts, due, dispatched, started, finished, runner, '', err))
end
