-- finish: records how runs of tasks of one shard ended (lifecycle.h):
--   'ok'      succeed   running -> succeeded
--   'retry'   retry     running -> failed, back in the wheel delay_ms from now.
--                       Written before the worker acks the delivery: a crash in
--                       between duplicates a retry but never loses one.
--   'dead'    die       running -> dead (the worker has had the dead-letter copy
--                       confirmed by the broker before it asks)
--   'defer'   defer     running -> waiting delay_ms from now, with the attempt its
--                       start counted given back: it did not run (its breaker held
--                       it back, or no handler here serves its type)
--   'unstart' unstart   running -> dispatched, the attempt given back: the worker
--                       hands its delivery back to the queue (shutting down)
--   'discard' discard   dispatched -> discarded, `error` saying why: it never
--                       started (its type, blocking discard_if_busy, was busy)
-- All but discard are fenced by the run token: written only while the task is
-- `running` under the run that started it. A run whose lease passed and that
-- another run took over, or an outcome written already by a call whose reply was
-- lost, gets 'stale' and writes nothing: the other run's outcome counts.
-- KEYS: status, due, outstanding
-- ARGV: prefix, worker name, retention_ms, done_ms (how long a succeeded task's
--       idempotency key stays taken; 0: freed at once), wake_channel, shard,
--       then per task six values: id, run (the token its start was recorded
--       with), outcome, error, delay_ms, the TASK head (stored_task.h), or ''
--       to read it
-- Reply: per task the state written ('succeeded', 'failed', 'dead', 'deferred',
--        'unstarted', 'discarded'); 'stale' (running under another run);
--        'refused:<state>' (its state does not allow the outcome); 'missing'
--        (no live task: it ended, and its record may be gone).
local TRANSITION = {
  ok = 'succeed', retry = 'retry', dead = 'die', defer = 'defer', unstart = 'unstart', discard = 'discard'
}
local function run(KEYS, A, o, n)
  local prefix, worker = A[o + 1], A[o + 2]
  local retention, done_ms, wake, shard = A[o + 3], tonumber(A[o + 4]), A[o + 5], A[o + 6]
  local now = now_ms()
  local now_s = text(now)
  local ids = {}
  for i = o + 7, o + n, 6 do
    if not TRANSITION[A[i + 2]] then return redis.error_reply('finish: unknown outcome ' .. tostring(A[i + 2])) end
    ids[#ids + 1] = A[i]
  end
  local statuses = gather('HMGET', KEYS[1], ids)
  -- STATUS as this call left it (false once retired), for a task listed twice.
  local written = {}
  local retire = retirer(prefix, retention)
  local tally = minute_tally(prefix)
  local counts = live_counts(prefix)
  local fields, entries, out = {}, {}, {}
  local unwatched, rewatched = {}, {}
  local earliest = nil
  for k, id in ipairs(ids) do
    local i = o + 7 + (k - 1) * 6
    local outcome, err_arg, head = A[i + 2], A[i + 3], A[i + 5]
    local transition = TRANSITION[outcome]
    local st = statuses[k]
    if written[id] ~= nil then st = written[id] end
    local state, attempts, due, dispatched, started, finished, runner, lease_until, err
    if st then state, attempts, due, dispatched, started, finished, runner, lease_until, err = read_status(st) end
    if written[id] == false then
      out[#out + 1] = 'missing'  -- ended earlier in this call
    elseif not st then
      local current = current_state(prefix, id, nil)
      out[#out + 1] = current == 'absent' and 'missing' or 'refused:' .. current
    elseif not may(transition, state) then
      out[#out + 1] = 'refused:' .. state
    elseif transition ~= 'discard' and runner ~= worker .. '#' .. A[i + 1] then
      out[#out + 1] = 'stale'
    elseif transition == 'discard' then
      counts.move(queue_of(prefix, id, head), state, 'discarded')
      retire.add(id, status('discarded', attempts, due, dispatched, started, now_s, runner, '', err_arg), head, 0)
      written[id] = false
      out[#out + 1] = 'discarded'
    elseif transition == 'unstart' then
      attempts = text(math.max((tonumber(attempts) or 1) - 1, 0))
      st = status('dispatched', attempts, due, dispatched, '', finished, '', '', err)
      counts.move(queue_of(prefix, id, head), state, 'dispatched')
      written[id] = st
      fields[#fields + 1] = id
      fields[#fields + 1] = st
      -- Back in the broker: watched from now as a confirmed publish is.
      rewatched[#rewatched + 1] = now_s
      rewatched[#rewatched + 1] = id
      out[#out + 1] = 'unstarted'
    elseif transition == 'retry' or transition == 'defer' then
      local next_due = now + tonumber(A[i + 4])
      local next_due_s = text(next_due)
      local known = head_of(prefix, id, head)
      local queue = queue_of(prefix, id, known)
      if transition == 'retry' then
        st = status('failed', attempts, next_due_s, dispatched, started, now_s, runner, '', err_arg)
        tally.add(queue, 'failed', lateness(started, due, known))
        counts.move(queue, state, 'failed')
        out[#out + 1] = 'failed'
      else
        attempts = text(math.max((tonumber(attempts) or 1) - 1, 0))
        st = status(waiting(attempts), attempts, next_due_s, dispatched, started, finished, runner, '', err)
        counts.move(queue, state, waiting(attempts))
        out[#out + 1] = 'deferred'
      end
      written[id] = st
      fields[#fields + 1] = id
      fields[#fields + 1] = st
      unwatched[#unwatched + 1] = id
      entries[#entries + 1] = next_due_s
      entries[#entries + 1] = id
      if earliest == nil or next_due < earliest then earliest = next_due end
    else
      local ended = transition == 'succeed' and 'succeeded' or 'dead'
      if ended == 'dead' then err = err_arg end
      local known = head_of(prefix, id, head)
      local queue = queue_of(prefix, id, known)
      tally.add(queue, ended, lateness(started, due, known))
      counts.move(queue, state, ended)
      retire.add(id, status(ended, attempts, due, dispatched, started, now_s, runner, '', err), head,
        ended == 'succeeded' and done_ms or 0)
      written[id] = false
      out[#out + 1] = ended
    end
  end
  if #fields > 0 then each_slice('HSET', KEYS[1], fields) end
  if #unwatched > 0 then each_slice('ZREM', KEYS[3], unwatched) end
  if #rewatched > 0 then each_slice('ZADD', KEYS[3], rewatched) end
  schedule(KEYS[2], entries, earliest, wake, shard)
  retire.done()
  tally.done()
  counts.done()
  return out
end
