-- survey: walks one shard's structures a bounded chunk at a time, reading only, for
-- `ripen list` (the ids of the tasks that match) and `ripen stats` (how many of
-- each queue are in each state). A walk is one phase per structure:
--   'due'       the due set by (due time, id): tasks waiting, scheduled or failed
--   'inflight'  the in-flight set by (lease deadline, id): claimed, confirm pending
--   'status'    STATUS by HSCAN, but the ids in the two sets: dispatched, running,
--               paused
--   'ended'     the ENDED buckets, oldest first, each by HSCAN; ids whose task
--               lives again (replayed) are left to the other phases
-- A live task's state is read as task_record.cc reads it: no STATUS is
-- scheduled; `dispatched` while still in flight is waiting (scheduled or failed).
-- A run reads one chunk: up to `count` members of a set, or one HSCAN call
-- (COUNT `count`, a hint) of a hash, and says where it stopped; a walk resumes
-- from any such place. Not a snapshot: a task that moves between structures
-- during a walk may be met twice or not at all.
-- KEYS: due, inflight, tasks, status, ended (the shard's bucket index)
-- ARGV: prefix, phase, pos, after, count, queue ('' any), state ('' any), mode ('ids' | 'tally')
--   pos/after, where the walk stands ('' '' = the phase's start):
--     due, inflight  pos = the score reached, after = the last id met with it
--     status         pos = an HSCAN cursor; after = '', or an id: take that
--                    chunk again, without its ids up to this one (byte order)
--     ended          pos = '<w>:<n>:<HSCAN cursor>' of a bucket, after as for status
-- Reply: {pos, after, done (1: the phase has nothing left), examined, ...}, then
--   mode 'ids': per matching task: id, pos, after (a walk resumed there starts right
--               after it; in a hash, the ids of a chunk come in byte order)
--   mode 'tally': per (queue, class) met: '<queue>|<class>', count, a live state's class
--               as the live counts name it (prelude's COUNTED)
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
    local k = queue .. '|' .. (COUNTED[state] or state)
    tallies[k] = (tallies[k] or 0) + 1
  else
    out[#out + 1] = id
    out[#out + 1] = at_pos
    out[#out + 1] = at_after
  end
end

-- A tally counts a task by its STATUS alone, as the live counts do (prelude's
-- live_counts): a claimed one is dispatched from its claim on.
local function live_state(st, in_flight)
  if not st then return 'scheduled' end
  local state, attempts = read_status(st)
  if state == 'dispatched' and in_flight and mode ~= 'tally' then return waiting(attempts) end
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
      met(id, queue_in(task), live_state(redis.call('HGET', status_key, id), in_flight), score, id)
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
    if task then met(id, queue_in(task), live_state(st, false), cursor, id) end
  end)
  out[1] = next_cursor
  if next_cursor == '0' then out[3] = 1 end
end

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
    local st, head = split_ended(record)
    met(id, head ~= '' and queue_in(head) or '', state_of(st), here, id)
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
