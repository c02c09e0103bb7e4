-- gate: gates the runs of a task type whose [types.<type>] blocking policy is
-- not `concurrent`: one run of the type at a time across the fleet. Asked
-- before a delivery's start is recorded.
-- KEYS: lock, waiters, waiting (keys.h, one type's slot)
-- ARGV: policy ('serial' | 'discard'), holder (the run token, worker#n), task id,
--       order (its due time, ms), lease_ms (how long the lock holds if never
--       given back: the run's lease), wait_ms (how long a waiting place holds
--       unless asked again)
-- Reply: {'run', 0}: the lock is this run's (taken now, or already: a call
--        repeated after a lost reply); {'wait', n}: serial, another run holds the
--        lock or n tasks wait ahead (earliest due first, then by id): ask again;
--        {'busy', ms}: discard, another run holds the lock for up to ms more.
-- A serial task takes the lock only at the head of the waiters, so turns go in
-- due order across the fleet; a waiting place whose worker stopped asking (it
-- died) lapses after wait_ms, and a lock whose run never gave it back after
-- lease_ms.
local policy, holder, id, order = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local lease, wait = tonumber(ARGV[5]), tonumber(ARGV[6])
local now = now_ms()
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
if #lapsed > 0 then
  each_slice('ZREM', KEYS[2], lapsed)
  each_slice('ZREM', KEYS[3], lapsed)
end
local current = redis.call('GET', KEYS[1])
if current == holder then return {'run', 0} end
if policy == 'discard' then
  if current then return {'busy', math.max(redis.call('PTTL', KEYS[1]), 0)} end
  redis.call('SET', KEYS[1], holder, 'PX', lease)
  return {'run', 0}
end
local head = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if not current and (head == nil or head == id) then
  redis.call('SET', KEYS[1], holder, 'PX', lease)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  return {'run', 0}
end
redis.call('ZADD', KEYS[2], 'NX', order, id)
redis.call('ZADD', KEYS[3], now + wait, id)
return {'wait', redis.call('ZRANK', KEYS[2], id)}
