-- Appended to every sectioned script (one that defines run(KEYS, A, o, n)): runs
-- run() once per section, each with one shard's KEYS. A call carries as many
-- shards as the caller has work for (ScriptCall); a body reads its section's
-- arguments in place, as A[o + 1] .. A[o + n], rather than copies.
-- ARGV[1]: keys per section; then per section: how many ARGV it has, and them.
local nkeys = tonumber(ARGV[1])
local replies = {}
local at, kat = 2, 0
while at <= #ARGV do
  local n = tonumber(ARGV[at])
  local keys = {}
  for i = 1, nkeys do keys[i] = KEYS[kat + i] end
  replies[#replies + 1] = run(keys, ARGV, at, n)
  kat = kat + nkeys
  at = at + n + 1
end
return replies
