-- read_ended: the ENDED record of a task (stored_task.h), or nil.
-- KEYS: the shard's ended index   ARGV: shard prefix, task id
return ended_record(ARGV[1], ARGV[2])
