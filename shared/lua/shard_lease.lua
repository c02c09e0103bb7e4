-- shard_lease: takes or renews a lease (a timer-wheel shard's, or the
-- schedules' leader's). A new holder gets a new fencing token from the fence
-- counter; the scripts a holder runs check its value ("owner|token").
-- KEYS: lease, fence
-- ARGV: owner, ttl_ms
-- Reply: the lease value "owner|token" when the caller holds it, else nil.
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.sub(cur, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return cur
  end
  return false
end
local value = ARGV[1] .. '|' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
