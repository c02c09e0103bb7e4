-- heartbeat: registers a live dispatcher and lists the live ones.
-- KEYS: dispatchers   ARGV: owner, ttl_ms
-- Reply: the live dispatchers, sorted by name (the caller's rank is its index).
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(live)
return live
