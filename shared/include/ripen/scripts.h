// The Lua scripts that make each timer-wheel step atomic. They read the time from
// Redis TIME, the single clock of the fleet. Arguments and replies are documented
// beside each script in scripts.cc.
//
// The five task scripts (enqueue ... finish) work on one shard at a time: a
// section's keys share the shard's hash tag. One call carries any number of
// sections (ScriptCall), so a process with work for many shards pays one script
// run, not one per shard; on Redis Cluster a call would carry one section, in
// one slot, and the scripts run unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ripen/redis.h"

namespace ripen::scripts {

const LuaScript& enqueue();       // store a task and put it in the wheel
const LuaScript& claim();         // move ripe tasks to in-flight under a lease (fenced)
const LuaScript& settle();        // after publish: confirmed, returned (dead), or released
const LuaScript& read_ended();    // the record of a task that ended, if still kept
const LuaScript& shard_lease();   // take or renew a shard's lease
const LuaScript& release_held();  // delete a lease or lock while it holds the caller's value
const LuaScript& heartbeat();     // register a live dispatcher, list the live ones
const LuaScript& start();         // worker: a delivery begins running
const LuaScript& finish();        // worker: succeeded, retry later, or dead
const LuaScript& cancel();        // producer: a task not yet running never runs
const LuaScript& reschedule();    // producer: move a task waiting in the wheel
const LuaScript& gate();          // worker: may a run of a blocking task type begin now?
const LuaScript& resume();        // a paused queue's held tasks go back to the wheel (one shard)
const LuaScript& survey();        // read only: walk a shard's tasks a chunk at a time (ripen list, stats)

// claim()'s reply, read. The views point into the reply, which must outlive them.
struct ClaimedTask {
  std::string_view id;
  std::string_view task;  // the packed TASK (stored_task.h)
  int64_t due_ms = 0;
};
struct ClaimReply {
  bool fenced = false;         // the caller no longer holds the shard; nothing was claimed
  int64_t now_ms = 0;          // Redis TIME as the script ran
  int64_t next_ms = -1;        // earliest due time or in-flight lease deadline left; -1 = none
  int64_t recovered = 0;       // expired in-flight entries put back in the due set
  int64_t lease_deadline = 0;  // in-flight score of every task claimed: settle() is handed it back
  std::vector<ClaimedTask> tasks;
};
ClaimReply read_claim_reply(RedisReply::View reply);

// One call of a sectioned script: add() a section per shard, append_to() a
// pipeline; the reply holds one element per section, in order.
class ScriptCall {
 public:
  ScriptCall(const LuaScript& script, size_t keys_per_section);
  void add(std::vector<std::string> keys, std::vector<std::string> args);
  size_t sections() const { return sections_; }
  // Hands the call to the pipeline; the call is spent (its arguments moved).
  void append_to(Redis& redis);

 private:
  const LuaScript& script_;
  size_t keys_per_section_;
  size_t sections_ = 0;
  std::vector<std::string> keys_;
  std::vector<std::string> args_;
};

}  // namespace ripen::scripts
