-- enqueue: stores a batch of new tasks of one shard and puts them in its wheel
-- (lifecycle: absent -> scheduled).
-- KEYS: due, tasks
-- ARGV: prefix, wake_channel, shard, then per task 6 values:
--       id, due_ms ('' = now + delay_ms), delay_ms, max_attempts, idempotency_key,
--       the TASK fields after created_ms (queue | type | idempotency_key | extra | payload)
-- Reply: per task {id, status, due_ms}: status 1 = created; 0 = an unfinished task
--        (or one that succeeded within idempotency_retention) already holds the
--        idempotency key: its id and due time are returned; -1 = a live task has
--        this id (refused: enqueue is only allowed from `absent`): its due time.
local function run(KEYS, A, o, n)
  local prefix, wake, shard = A[o + 1], A[o + 2], A[o + 3]
  local now = now_ms()
  local now_s = text(now)
  local counts = live_counts(prefix)
  counts.fresh(KEYS[2])
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
      -- Keys are taken per queue and type (keys.h); a key taken before they
      -- were (its bare name) still holds its task until that task ends.
      local queue, type = match(tail, '^([^\31]*)\31([^\31]*)\31')
      local bare = idem
      idem = queue .. '/' .. type .. '/' .. bare
      existing = keyed[idem]
      local names = {idem, bare}
      for n = 1, 2 do
        if existing then break end
        local idem_key = KEY.idem(prefix, names[n])
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
      -- A live task has this id: its state is not `absent`.
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
      local task = 'v2' .. US .. max .. US .. now_s .. US .. tail
      fields[#fields + 1] = id
      fields[#fields + 1] = task
      counts.move(queue_in(task), 'absent', 'scheduled')
      entries[#entries + 1] = due_s
      entries[#entries + 1] = id
      if idem ~= '' then
        keyed[idem] = id
        redis.call('SET', KEY.idem(prefix, idem), id)
      end
      if earliest == nil or due < earliest then earliest = due end
      out[#out + 1] = id
      out[#out + 1] = 1
      out[#out + 1] = due
    end
  end
  if #fields > 0 then each_slice('HSET', KEYS[2], fields) end
  schedule(KEYS[1], entries, earliest, wake, shard)
  counts.done()
  return out
end
