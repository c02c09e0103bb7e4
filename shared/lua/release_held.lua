-- release_held: deletes a key only while it still holds the caller's value: a
-- shard's lease given back by its dispatcher, a task type's lock by the run that
-- held it.
-- KEYS: the key   ARGV: the value held
-- Reply: 1 if it held it, else 0 (it lapsed, and another may hold it now).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
