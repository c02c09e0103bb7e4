-- settle: records what became of publishes, once the broker has answered (or
-- the connection broke). Each outcome names the claim it belongs to by its
-- lease deadline: a task can be claimed again before the outcome of its earlier
-- publish is written (a retry due at once, claimed before the first confirm
-- arrived), and that later claim's in-flight entry must not be taken for it.
-- Every outcome takes the task out of the in-flight set; what else it does
-- depends on the task's state now (lifecycle.h):
--   'd' confirm     dispatched: into the outstanding set (in the broker since now)
--   'r' release     dispatched -> waiting: the broker refused it or the connection
--                   broke before its confirm
--   'x' unroutable  dispatched -> dead, `reason` kept: the broker returned it
--   'p' hold        dispatched -> paused: its queue (`reason`) is paused. Held out
--                   of the wheel in the queue's parked set until resume.lua; back to
--                   the wheel if the queue was resumed meanwhile (its shard flag).
-- A task that is no longer `dispatched` is left as it is: a worker that already
-- runs it owns it (the broker had delivered it: putting it back would run it
-- twice at once), and one that ended is done.
-- KEYS: due, inflight, status, outstanding
-- ARGV: prefix, retention_ms, then per publish 4 values: id, outcome, lease_deadline, reason
-- Reply: per publish one word: 'confirmed', 'released', 'dead', 'held' when the
--        transition was made; 'refused:<state>' when the task's state does not
--        allow it (left as it is); 'stale' when the claim it names is no longer
--        in flight (settled already, or recovered).
local function run(KEYS, A, o, n)
  local prefix, retention = A[o + 1], A[o + 2]
  local TRANSITION = { d = 'confirm', r = 'release', x = 'unroutable', p = 'hold' }
  local ids = {}
  for i = o + 3, o + n, 4 do
    if not TRANSITION[A[i + 1]] then return redis.error_reply('settle: unknown outcome ' .. tostring(A[i + 1])) end
    ids[#ids + 1] = A[i]
  end
  local scores = gather('ZMSCORE', KEYS[2], ids)
  local statuses = gather('HMGET', KEYS[3], ids)
  local gone, seen, out = {}, {}, {}
  local confirmed = {}
  local retire = retirer(prefix, retention)
  local tally = minute_tally(prefix)
  local counts = live_counts(prefix)
  local now_s = text(now_ms())
  for k = 1, #ids do
    local i = o + 3 + (k - 1) * 4
    local id, outcome, deadline, reason = A[i], A[i + 1], A[i + 2], A[i + 3]
    local transition = TRANSITION[outcome]
    if not scores[k] or seen[id] or tonumber(scores[k]) ~= tonumber(deadline) then
      out[k] = 'stale'
    else
      seen[id] = true
      gone[#gone + 1] = id
      local st = statuses[k]
      local state = st and state_of(st) or current_state(prefix, id, nil)
      if not may(transition, state) then
        out[k] = 'refused:' .. state
      elseif outcome == 'd' then
        confirmed[#confirmed + 1] = now_s
        confirmed[#confirmed + 1] = id
        out[k] = 'confirmed'
      else
        local _, attempts, due, dispatched, started, finished, runner, _, err = read_status(st)
        local queue = queue_of(prefix, id, '')
        if outcome == 'x' then
          retire.add(id, status('dead', attempts, due, dispatched, started, now_s, runner, '', reason), '')
          tally.add(queue, 'dead', nil)
          counts.move(queue, state, 'dead')
          out[k] = 'dead'
        elseif outcome == 'p' and redis.call('HEXISTS', KEY.paused_flags(prefix), reason) == 1 then
          redis.call('ZADD', KEY.parked(prefix, reason), due, id)
          redis.call('HSET', KEYS[3], id, status('paused', attempts, due, dispatched, started, finished, runner, '', err))
          counts.move(queue, state, 'paused')
          out[k] = 'held'
        else
          -- Released, or held while its queue was resumed meanwhile: back to the wheel.
          to_wheel(prefix, id, attempts, due, dispatched, started, finished, runner, err)
          counts.move(queue, state, waiting(attempts))
          out[k] = 'released'
        end
      end
    end
  end
  if #gone > 0 then each_slice('ZREM', KEYS[2], gone) end
  -- Confirmed: the broker has it. Watched from now on: a task neither started
  -- nor ended lost_after from now is presumed lost with its message (sweep.lua).
  if #confirmed > 0 then each_slice('ZADD', KEYS[4], confirmed) end
  retire.done()
  tally.done()
  counts.done()
  return out
end
