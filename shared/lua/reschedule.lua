-- reschedule: moves a task that waits (lifecycle: scheduled | failed | paused,
-- each keeping its state) to a new due time.
-- KEYS: due, status
-- ARGV: prefix, id, due_ms ('': now + delay_ms, by Redis TIME), delay_ms, wake_channel, shard
-- Reply: {'rescheduled', due_ms}; {'refused', state} (dispatched or running: too
--        late; or ended); {'missing'}.
local prefix, id, due = ARGV[1], ARGV[2], ARGV[3]
if due == '' then due = text(now_ms() + tonumber(ARGV[4])) end
local st = redis.call('HGET', KEYS[2], id)
local state = current_state(prefix, id, st)
if state == 'absent' then return {'missing'} end
if not may('reschedule', state) then return {'refused', state} end
if st then
  local s, attempts, _, dispatched, started, finished, runner, lease, err = read_status(st)
  redis.call('HSET', KEYS[2], id, status(s, attempts, due, dispatched, started, finished, runner, lease, err))
end
if state == 'paused' then
  -- Held out of the wheel while its queue is paused; resume puts it back at this time.
  redis.call('ZADD', KEY.parked(prefix, queue_of(prefix, id, '') or ''), due, id)
else
  schedule(KEYS[1], {due, id}, tonumber(due), ARGV[5], ARGV[6])
end
return {'rescheduled', tonumber(due)}
