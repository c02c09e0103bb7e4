-- claim: takes the ripe tasks of a shard for publishing (lifecycle: scheduled |
-- failed -> dispatched): out of the due set, into the in-flight set under a
-- lease, STATUS stamped `dispatched` now. Until the broker's confirm is settled
-- (settle.lua) the task stays in flight; if no settle comes before the lease
-- passes (its dispatcher died), the next claim recovers it (dispatched ->
-- waiting), unless a worker started it meanwhile (running: its run owns it now).
-- Fenced by the shard lease: a dispatcher that lost the shard claims nothing.
-- KEYS: due, inflight, lease, tasks, status
-- ARGV: prefix, lease value held ("owner|token"), batch, inflight_lease_ms
-- Reply: {now_ms, next_ms (-1 = none), recovered, lease_deadline, id1, task1, due1, ...}
--        with each task the packed TASK, or {-1} when the caller no longer holds
--        the shard (fenced off). next_ms is the earliest due time or in-flight
--        lease deadline left. lease_deadline (the in-flight score of every task
--        claimed here) is what settle() is handed back.
local function run(KEYS, A, o, n)
  local prefix = A[o + 1]
  if redis.call('GET', KEYS[3]) ~= A[o + 2] then return { -1 } end
  local now = now_ms()
  local batch = tonumber(A[o + 3])
  local deadline = now + tonumber(A[o + 4])
  local now_s, deadline_s = text(now), text(deadline)
  -- A dispatcher that died between claim and settle leaves its in-flight
  -- entries to expire. The earliest lease is looked at first: it is also the
  -- shard's next deadline when none expired.
  local recovered = 0
  local counts = live_counts(prefix)
  local inflight_head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if inflight_head[2] and tonumber(inflight_head[2]) <= now then
    local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, batch)
    each_slice('ZREM', KEYS[2], expired)
    local statuses = gather('HMGET', KEYS[5], expired)
    for k, id in ipairs(expired) do
      local st = statuses[k]
      -- Only a task still `dispatched` goes back: one a worker started is its
      -- run's (the broker delivered it; putting it back would run it twice at
      -- once), and one that ended is done.
      if st and may('recover', state_of(st)) then
        local state, attempts, due, dispatched, started, finished, runner, _, err = read_status(st)
        to_wheel(prefix, id, attempts, due, dispatched, started, finished, runner, err)
        counts.move(queue_of(prefix, id, ''), state, waiting(attempts))
        recovered = recovered + 1
      end
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
      local st = statuses[i]
      if task and may('claim', state_of(st)) then
        counts.move(queue_in(task), state_of(st), 'dispatched')
        if st then
          -- A retry, or a task whose earlier publish came to nothing.
          local _, attempts, _, _, started, finished, runner, _, err = read_status(st)
          st = status('dispatched', attempts, due, now_s, started, finished, runner, '', err)
        else
          st = status('dispatched', '0', due, now_s, '', '', '', '', '')
        end
        fields[#fields + 1] = id
        fields[#fields + 1] = st
        leases[#leases + 1] = deadline_s
        leases[#leases + 1] = id
        out[#out + 1] = id
        out[#out + 1] = task
        out[#out + 1] = due
      end
      -- A due entry of a task that is gone or not waiting cannot come from the
      -- scripts (each keeps a task in the wheel only while it waits); it is
      -- dropped rather than published.
    end
    if #fields > 0 then
      each_slice('HSET', KEYS[5], fields)
      each_slice('ZADD', KEYS[2], leases)
      if not inflight_head[2] or deadline < tonumber(inflight_head[2]) then inflight_head = { '', deadline } end
    end
  end
  counts.done()
  -- The next moment this shard needs a look: its earliest due task, or the
  -- earliest in-flight lease to expire (a dead dispatcher's tasks come back then).
  local due_head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  for _, head in ipairs({ due_head, inflight_head }) do
    if head[2] and (out[2] < 0 or tonumber(head[2]) < out[2]) then out[2] = tonumber(head[2]) end
  end
  return out
end
