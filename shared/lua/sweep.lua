-- sweep: finds tasks whose message the broker seems to have lost, and puts them
-- back in the wheel to be published again (lifecycle: dispatched | running ->
-- waiting, transition `lost`). The outstanding set holds every task in the
-- broker's or a worker's hands, scored by the moment from which silence counts:
-- a confirmed publish by its confirm, a run by the end of its lease. A task
-- still there lost_after past that moment was neither started nor finished:
-- its message was purged, its queue deleted, or the node holding a classic
-- queue was lost; or its worker died mid-run and no redelivery came.
-- A task of a queue that has messages waiting in the broker (or whose backlog is
-- not known yet) is not swept: its message may simply be waiting its turn. It
-- is looked at again recheck_ms later; the caller learns its queue's backlog
-- meanwhile (the queues named in the reply).
-- Publishing a task again whose message was not lost after all is safe: the
-- first delivery to start runs it, any other finds it running (busy) or ended
-- (refused) and is acked.
-- Fenced by the shard lease: only the shard's dispatcher sweeps it.
-- KEYS: lease, outstanding, status, tasks
-- ARGV: prefix, lease value held, lost_after_ms, recheck_ms, limit, then the
--       queues known to have no backlog
-- Reply: {-1} when the caller no longer holds the shard, else {swept, held,
--        queue1, queue2, ...}: how many went back to the wheel, how many were
--        held for their queue's backlog, and the queues of those held.
local function run(KEYS, A, o, n)
  local prefix = A[o + 1]
  if redis.call('GET', KEYS[1]) ~= A[o + 2] then return { -1 } end
  local lost_after, recheck, limit = tonumber(A[o + 3]), tonumber(A[o + 4]), tonumber(A[o + 5])
  local clear = {}
  for i = o + 6, o + n do clear[A[i]] = true end
  local now = now_ms()
  local overdue = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - lost_after, 'LIMIT', 0, limit)
  if #overdue == 0 then return { 0, 0 } end
  local statuses = gather('HMGET', KEYS[3], overdue)
  local tasks = gather('HMGET', KEYS[4], overdue)
  local swept, held, queues, dropped, later = 0, 0, {}, {}, {}
  local counts = live_counts(prefix)
  local later_s = text(now - lost_after + recheck)
  for k, id in ipairs(overdue) do
    local st, task = statuses[k], tasks[k]
    if not st or not task or not may('lost', state_of(st)) then
      dropped[#dropped + 1] = id  -- it moved on; the entry is left over
    else
      local queue = queue_in(task)
      if not clear[queue] then
        held = held + 1
        queues[queue] = true
        later[#later + 1] = later_s
        later[#later + 1] = id
      else
        local state, attempts, due, dispatched, started, finished, runner, _, err = read_status(st)
        -- A run that never reported back spent its attempt.
        to_wheel(prefix, id, attempts, due, dispatched, started, finished, runner, err)
        counts.move(queue, state, waiting(attempts))
        swept = swept + 1
      end
    end
  end
  if #dropped > 0 then each_slice('ZREM', KEYS[2], dropped) end
  if #later > 0 then each_slice('ZADD', KEYS[2], later) end
  counts.done()
  local out = { swept, held }
  for q in pairs(queues) do out[#out + 1] = q end
  return out
end
