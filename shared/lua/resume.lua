-- resume: a paused queue resumes in one shard (lifecycle: paused -> waiting).
-- The shard stops parking its tasks, and those it holds go back to the wheel
-- at their due times (the ripe ones are claimed at once: the dispatchers are
-- woken). A parked entry whose task is no longer `paused` (cancelled meanwhile)
-- is dropped.
-- KEYS: due, status, the shard's pausedq, the queue's parked set
-- ARGV: wake_channel, shard, queue, prefix
-- Reply: how many tasks went back.
redis.call('HDEL', KEYS[3], ARGV[3])
local moved = 0
local counts = live_counts(ARGV[4])
while true do
  local batch = redis.call('ZRANGE', KEYS[4], 0, 999, 'WITHSCORES')
  if #batch == 0 then break end
  local ids, entries, fields, earliest = {}, {}, {}, nil
  for i = 1, #batch, 2 do ids[#ids + 1] = batch[i] end
  local statuses = gather('HMGET', KEYS[2], ids)
  for k = 1, #ids do
    local id, due = ids[k], batch[2 * k]
    local st = statuses[k]
    if st and may('resume', state_of(st)) then
      local state, attempts, d, dispatched, started, finished, runner, lease, err = read_status(st)
      counts.move(ARGV[3], state, waiting(attempts))
      fields[#fields + 1] = id
      fields[#fields + 1] = status(waiting(attempts), attempts, d, dispatched, started, finished, runner, lease, err)
      entries[#entries + 1] = due
      entries[#entries + 1] = id
      if not earliest or tonumber(due) < earliest then earliest = tonumber(due) end
      moved = moved + 1
    end
  end
  if #fields > 0 then each_slice('HSET', KEYS[2], fields) end
  schedule(KEYS[1], entries, earliest, ARGV[1], ARGV[2])
  each_slice('ZREM', KEYS[4], ids)
end
counts.done()
return moved
