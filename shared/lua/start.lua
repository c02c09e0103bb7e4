-- start: records that deliveries of tasks of one shard begin running
-- (lifecycle: dispatched -> running, or takeover: running -> running once the
-- running run's lease has passed). Only a `dispatched` task starts: a delivery
-- of a task that waits in the wheel (its retry or deferral not yet due, or put
-- back after its publish came to nothing) is an old copy of an earlier dispatch,
-- and running it would run the task early; the wheel's entry publishes it
-- again when it is due.
-- KEYS: status, outstanding
-- ARGV: prefix, worker name, then per delivery six values: task id, run (a
--       token the worker made unique to this delivery), lease_ms (how long the
--       run holds the task against another delivery: its own time limit and a
--       grace), and the queue, type and payload digest (SHA-1 hex of its compact
--       JSON) the delivery names
-- A delivery is only the broker's word for a task: whoever may publish to a
-- task queue could send a known task id with a type or payload of their own.
-- So the delivery's queue, type and payload must be the stored TASK's, or it
-- is not run.
-- A run's STATUS names its runner as `worker#run` and its lease's end. The same
-- start asked again (its reply was lost when Redis went away, or the worker
-- renews the lease of a run that waited for a thread) finds its own run, renews
-- its lease and answers the same, rather than mistaking it for another worker's.
-- Reply: per delivery four values:
--   {'run', attempt, due_ms, now}     the handler should run (a new run, a
--                                     takeover, or this run asking again)
--   {'busy', ms_left, 0, 0}           another run of it holds its lease for ms_left
--                                     more (a redelivery while a worker, maybe
--                                     this one before its connection broke, still
--                                     runs it): look again then
--   {'refused', state, 0, 0}          its state does not allow a start: it waits
--                                     in the wheel, or it ended. Ack the delivery.
--   {'missing', 0, 0, 0}              no record at all (retention passed, never
--                                     existed, or another namespace)
--   {'mismatch', 0, 0, 0}             a live task of that id differs from the
--                                     delivery in queue, type or payload: a forged
--                                     or foreign message. Ack it; the task is untouched.
local function run(KEYS, A, o, n)
  local prefix, worker = A[o + 1], A[o + 2]
  local now = now_ms()
  local now_s = text(now)
  local ids = {}
  for i = o + 3, o + n, 6 do ids[#ids + 1] = A[i] end
  local counts = live_counts(prefix)
  local statuses = gather('HMGET', KEYS[1], ids)
  local tasks = gather('HMGET', KEY.tasks(prefix), ids)
  -- STATUS as this call left it, so a task listed twice is busy the second time.
  local written = {}
  local fields, watched, out = {}, {}, {}
  for k, id in ipairs(ids) do
    local i = o + 3 + (k - 1) * 6
    local run_token, lease = worker .. '#' .. A[i + 1], tonumber(A[i + 2])
    local st = written[id] or statuses[k]
    local task = tasks[k]
    local state, attempts, due, dispatched, started, finished, runner, lease_until, err
    if st then state, attempts, due, dispatched, started, finished, runner, lease_until, err = read_status(st) end
    -- A STATUS of format v1 has no lease end: its run holds for the lease this
    -- delivery would take.
    local held_until = st and state == 'running' and (tonumber(lease_until) or (tonumber(started) or 0) + lease)
    if task and not task_matches(task, A[i + 3], A[i + 4], A[i + 5]) then
      out[#out + 1] = 'mismatch'
      out[#out + 1] = 0
      out[#out + 1] = 0
      out[#out + 1] = 0
    elseif st and state == 'running' and runner == run_token then
      -- Its own run, asking again: a reply lost on the way, or the worker
      -- renewing the lease of a run that waited for a handler thread before it
      -- began. Either way the lease counts from now.
      local until_s = text(now + lease)
      st = status('running', attempts, due, dispatched, started, finished, runner, until_s, err)
      written[id] = st
      fields[#fields + 1] = id
      fields[#fields + 1] = st
      watched[#watched + 1] = until_s
      watched[#watched + 1] = id
      out[#out + 1] = 'run'
      out[#out + 1] = tonumber(attempts)
      out[#out + 1] = tonumber(due)
      out[#out + 1] = now
    elseif st and state == 'running' and now < held_until then
      out[#out + 1] = 'busy'
      out[#out + 1] = held_until - now
      out[#out + 1] = 0
      out[#out + 1] = 0
    elseif st and (may('start', state) or may('takeover', state)) then
      counts.move(A[i + 3], state, 'running')
      local attempt = tonumber(attempts) + 1
      local until_s = text(now + lease)
      st = status('running', text(attempt), due, dispatched, now_s, finished, run_token, until_s, err)
      written[id] = st
      fields[#fields + 1] = id
      fields[#fields + 1] = st
      -- Watched while it runs: if its worker dies and no redelivery takes it over
      -- by lost_after past its lease, it is presumed lost (sweep.lua).
      watched[#watched + 1] = until_s
      watched[#watched + 1] = id
      out[#out + 1] = 'run'
      out[#out + 1] = attempt
      out[#out + 1] = tonumber(due)
      out[#out + 1] = now
    else
      local current = current_state(prefix, id, st)
      out[#out + 1] = current == 'absent' and 'missing' or 'refused'
      out[#out + 1] = current == 'absent' and 0 or current
      out[#out + 1] = 0
      out[#out + 1] = 0
    end
  end
  if #fields > 0 then
    each_slice('HSET', KEYS[1], fields)
    each_slice('ZADD', KEYS[2], watched)
  end
  counts.done()
  return out
end
