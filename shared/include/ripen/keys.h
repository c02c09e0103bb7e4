// Every Redis key and AMQP name ripen uses is built here, and nowhere else.
//
// Redis: the keys of one timer-wheel shard share the hash tag `{sN}`, so each Lua
// script touches a single slot and runs unchanged on Redis Cluster:
//   <ns>:{sN}:due         ZSET  member = task id, score = due time (epoch ms, Redis TIME)
//   <ns>:{sN}:inflight    ZSET  member = task id, score = lease deadline (epoch ms, Redis TIME)
//   <ns>:{sN}:outstanding ZSET  member = task id in the broker's or a worker's hands (dispatched and
//                         confirmed, or running), score = the moment from which silence counts: its
//                         confirm, or the end of its run lease (epoch ms, Redis TIME); see sweep.lua
//   <ns>:{sN}:tasks       HASH  task id -> TASK, the packed task (see stored_task.h)
//   <ns>:{sN}:status      HASH  task id -> STATUS, its state and stamps once claimed
//   <ns>:{sN}:ended       ZSET  member = a bucket of ENDED records, score = when it is deleted (epoch ms)
//   <ns>:{sN}:ended:<w>:<n>  HASH task id -> ENDED, the compact record of a finished task, for the
//                         tasks that ended in the n-th stretch of w ms (built by the scripts)
//   <ns>:{sN}:idem:<queue>/<type>/<key>  STRING task id holding this idempotency key (until the task
//                         ends): a key is taken per queue and task type, so a publisher allowed one
//                         type cannot take another type's keys. (Before keys were scoped:
//                         <ns>:{sN}:idem:<key>, still read and freed until no task can hold one.)
//   <ns>:{sN}:minute:<m>  HASH  how runs ended in epoch minute m (epoch ms / 60000), per queue:
//                         "<queue>|succeeded", "<queue>|failed" (a retry waits), "<queue>|dead",
//                         "<queue>|late|<le>" lateness histogram (le: bucket bound, ms, or "inf");
//                         written by the finish and settle scripts, expires 2 h after m begins
//   <ns>:{sN}:counts      HASH  live tasks per queue and class, kept by every script that moves one:
//                         "<queue>|scheduled" (scheduled or failed), "<queue>|in_flight" (dispatched),
//                         "<queue>|running", "<queue>|held" (paused); "~exact" = "1" once the counts
//                         are exact (set when an enqueue finds the shard without live tasks)
//   <ns>:{sN}:pausedq     HASH  queue -> "1" for each paused queue: what the settle script checks
//   <ns>:{sN}:paused:<q>  ZSET  member = task id of paused queue q held out of the wheel, score = due time
//   <ns>:{sN}:lease       STRING "<owner>|<token>" of the dispatcher holding the shard, PX
//   <ns>:{sN}:fence       STRING fencing counter, bumped on each new lease
// Outside the shards, for the fleet (not touched by the task scripts):
//   <ns>:paused           SET   the paused queues, as dispatchers and `ripen stats` read them
//   <ns>:breaker:<downstream>:open  STRING "<worker>|<wait ms>", PX = the open wait: while it
//                         exists, every worker treats the downstream's breaker as open
//   <ns>:breakers:<worker>  HASH downstream -> JSON snapshot of that worker's breaker, PX 30 s
//                         renewed while the worker lives (for the console and `ripen`)
// Per task type with a blocking policy ([types.<type>] blocking), one slot per type:
//   <ns>:{t:<type>}:lock     STRING the run token ("<worker>#<n>") of the run holding the type,
//                         PX = that run's lease
//   <ns>:{t:<type>}:waiters  ZSET  member = task id waiting its turn (serial), score = its due time
//   <ns>:{t:<type>}:waiting  ZSET  member = the same ids, score = when its place lapses unless renewed
// Recurring schedules (ripen schedule apply; the dispatcher that leads them), one slot:
//   <ns>:{sched}:specs    HASH  schedule name -> its spec, canonical JSON (schedules.h)
//   <ns>:{sched}:state    HASH  schedule name -> "<spec version>|<last tick accounted for, epoch ms>|<its task id>"
//   <ns>:{sched}:leader   STRING "<owner>|<token>" of the dispatcher leading the schedules, PX
//   <ns>:{sched}:fence    STRING fencing counter of that lease
// A task lives in shard `shard_of(id)`; ids with an idempotency key are generated
// so that `shard_of(id) == shard_of(key)` and both keys share the slot.
//
// AMQP (all under the same namespace):
//   <ns>.tasks            direct exchange, routing key = queue name
//   <ns>.q.<queue>        durable queue per task queue, dead-letters to <ns>.dlx
//   <ns>.dlx              direct exchange for dead letters, routing key = queue name
//   <ns>.dlq.<queue>      dead-letter queue per task queue
//   <ns>.dlq._unroutable  dead letters whose queue did not exist at publish time
//   <ns>.ingress          fanout exchange where any AMQP client publishes an envelope to enqueue it
//   <ns>.ingress          durable queue bound to it, consumed by the dispatchers
//   <ns>.dlq._ingress     ingress messages that were refused, with the reason (x-ripen-reason)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ripen {

// Stable 64-bit FNV-1a. Shard assignment must never change between releases or
// hosts, so this is spelled out rather than taken from std::hash.
uint64_t stable_hash(std::string_view data) noexcept;

// The field of a shard's live counts that says they are exact (see above).
inline constexpr std::string_view kExactCounts = "~exact";

class Keys {
 public:
  Keys(std::string ns, int shards);

  const std::string& ns() const noexcept { return ns_; }
  int shards() const noexcept { return shards_; }
  int shard_of(std::string_view id_or_key) const noexcept;

  // Redis
  std::string shard_prefix(int shard) const;  // "<ns>:{sN}:", the prefix scripts build keys from
  std::string due(int shard) const;
  std::string inflight(int shard) const;
  std::string outstanding(int shard) const;
  std::string lease(int shard) const;
  std::string fence(int shard) const;
  std::string tasks(int shard) const;
  std::string status(int shard) const;
  std::string ended_index(int shard) const;                          // the buckets of ended tasks' records (see above)
  std::string minute_counts(int shard, int64_t epoch_minute) const;  // how runs ended that minute (see above)
  std::string live_counts(int shard) const;                          // live tasks per queue and class (see above)
  std::string idempotency(std::string_view queue, std::string_view type, std::string_view key) const;
  std::string paused_flags(int shard) const;
  std::string parked(int shard, std::string_view queue) const;
  std::string paused_queues() const;
  std::string wake_channel() const;  // PUBLISHed with the shard number when a shard's head moves earlier
  std::string dispatchers() const;   // ZSET of live dispatchers, score = heartbeat deadline
  std::string breaker_open(std::string_view downstream) const;
  std::string breakers(std::string_view worker) const;
  std::string type_lock(std::string_view type) const;
  std::string type_waiters(std::string_view type) const;
  std::string type_waiting(std::string_view type) const;
  std::string schedule_specs() const;
  std::string schedule_state() const;
  std::string schedule_leader() const;
  std::string schedule_fence() const;

  // Lua functions KEY.due(prefix), KEY.idem(prefix, key), ... building a shard's
  // keys from its prefix exactly as the methods above do; every script is
  // prefixed with them (scripts.cc).
  static std::string lua_key_builders();

  // AMQP
  std::string task_exchange() const;
  std::string queue(std::string_view queue_name) const;
  std::string dead_exchange() const;
  std::string dead_queue(std::string_view queue_name) const;
  std::string ingress_exchange() const;
  std::string ingress_queue() const;
  static constexpr std::string_view kUnroutable = "_unroutable";
  static constexpr std::string_view kIngress = "_ingress";  // dead_queue(kIngress): refused ingress messages

 private:
  std::string ns_;
  int shards_;
};

}  // namespace ripen
