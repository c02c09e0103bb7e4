-- cancel: a task that has not started running never runs (lifecycle:
-- scheduled | failed | paused | dispatched -> cancelled). It leaves the wheel,
-- its in-flight lease or its queue's parked set, and ends `cancelled` at once,
-- with its ENDED record kept for the retention and its idempotency key freed. A
-- published one (dispatched) is cancelled too: its delivery finds the task
-- ended and is acked unrun.
-- KEYS: due, inflight, status, outstanding
-- ARGV: prefix, retention_ms, id, reason
-- Reply: {'cancelled', state it had}; {'refused', state}: it runs now or it
--        ended, and is not cancelled ('running', with the worker as a third
--        value); {'missing'}.
local prefix, retention, id, reason = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local st = redis.call('HGET', KEYS[3], id)
local state = current_state(prefix, id, st)
if state == 'absent' then return {'missing'} end
if not may('cancel', state) then
  if state == 'running' then
    local _, _, _, _, _, _, runner = read_status(st)
    return {'refused', state, match(runner, '^[^#]*')}
  end
  return {'refused', state}
end
local _, attempts, due, dispatched, started, runner
if st then
  _, attempts, due, dispatched, started, _, runner = read_status(st)
else
  attempts, due, dispatched, started, runner = '0', text(due_of(prefix, id)), '', '', ''
end
local queue = queue_of(prefix, id, '')
redis.call('ZREM', KEYS[1], id)
redis.call('ZREM', KEYS[2], id)
if state == 'paused' then redis.call('ZREM', KEY.parked(prefix, queue or ''), id) end
local counts = live_counts(prefix)
counts.move(queue, state, 'cancelled')
counts.done()
local retire = retirer(prefix, retention)
retire.add(id, status('cancelled', attempts, due, dispatched, started, text(now_ms()), runner, '', reason), '', 0)
retire.done()  -- also out of the outstanding set
return {'cancelled', state}
