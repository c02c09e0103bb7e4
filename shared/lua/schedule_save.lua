-- schedule_save: the schedules' leader records how far one schedule got (its
-- state: spec version, cursor, last task; schedule_store.h). Fenced twice: by
-- the leader lease the caller holds, and by the state it read before it planned
-- (compare and set). A leader that stalled past its lease and woke up can thus
-- neither move a cursor back, re-firing ticks whose idempotency keys were freed,
-- nor write over what its successor recorded.
-- KEYS: the leader lease, the schedules' state hash
-- ARGV: lease value held ("owner|token"), schedule name, the state read ('' = none), the new state
-- Reply: 'saved'; 'fenced' (the caller no longer leads); 'moved' (the state is
--        not what it read: another leader, or `schedule apply`, changed it).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'fenced' end
if (redis.call('HGET', KEYS[2], ARGV[2]) or '') ~= ARGV[3] then return 'moved' end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
return 'saved'
