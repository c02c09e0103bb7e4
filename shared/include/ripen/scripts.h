// The Lua scripts that make each step of a task's life atomic, and one small
// C++ wrapper per script that builds its KEYS and ARGV and reads its reply, so
// no caller indexes a reply by hand. The scripts themselves are Lua files
// (shared/lua/<name>.lua, with shared helpers in shared/lua/includes/),
// embedded at build time; each file's header documents its KEYS, ARGV and reply,
// and the transitions it performs are those of the table in lifecycle.h, which
// every script is prefixed with (it refuses what the table does not allow).
// They read the time from Redis TIME, the single clock of the fleet.
//
// The task scripts (enqueue, claim, settle, start, finish, sweep) work on one
// shard at a time: a section's keys share the shard's hash tag. One call
// carries any number of sections (ScriptCall), so a process with work for many
// shards pays one script run, not one per shard; on Redis Cluster a call would
// carry one section, in one slot, and the scripts run unchanged.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ripen/keys.h"
#include "ripen/lifecycle.h"
#include "ripen/redis.h"
#include "ripen/result.h"

namespace ripen::scripts {

const LuaScript& enqueue();        // store a task and put it in the wheel
const LuaScript& claim();          // move ripe tasks to in-flight under a lease (fenced); recover expired ones
const LuaScript& settle();         // after publish: confirmed, released, returned (dead), or held (paused)
const LuaScript& start();          // worker: a delivery begins running
const LuaScript& finish();         // worker: how a run ended
const LuaScript& sweep();          // dispatcher: tasks whose message was lost go back to the wheel
const LuaScript& cancel();         // producer: a task not yet running never runs
const LuaScript& reschedule();     // producer: move a task waiting in the wheel
const LuaScript& resume();         // a paused queue's held tasks go back to the wheel (one shard)
const LuaScript& read_ended();     // the record of a task that ended, if still kept
const LuaScript& shard_lease();    // take or renew a shard's (or the schedules') lease
const LuaScript& release_held();   // delete a lease or lock while it holds the caller's value
const LuaScript& heartbeat();      // register a live dispatcher, list the live ones
const LuaScript& gate();           // worker: may a run of a blocking task type begin now?
const LuaScript& survey();         // read only: walk a shard's tasks a chunk at a time (ripen list, stats)
const LuaScript& schedule_save();  // the schedules' leader records how far a schedule got (fenced)

// Every script, for tools that load them all (bench, tests).
std::vector<const LuaScript*> all();

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
  [[maybe_unused]] size_t keys_per_section_;  // checked by an assert
  size_t sections_ = 0;
  std::vector<std::string> keys_;
  std::vector<std::string> args_;
};

// ---- enqueue.lua -----------------------------------------------------------------

struct EnqueueRequest {
  std::string id;
  std::optional<int64_t> due_ms;  // else now + delay_ms by Redis TIME
  int64_t delay_ms = 0;
  int max_attempts = 0;
  std::string idempotency_key;
  std::string tail;  // the TASK fields after created_ms (pack_task_tail)
};
enum class EnqueueVerdict {
  created,   // stored, in the wheel
  keyed,     // another task holds the idempotency key: its id and due time
  id_taken,  // a live task has this id (enqueue is only allowed from `absent`)
};
struct EnqueueReply {
  EnqueueVerdict verdict = EnqueueVerdict::created;
  std::string id;
  int64_t due_ms = 0;
};
class EnqueueCall {
 public:
  explicit EnqueueCall(const Keys& keys) : keys_(keys), call_(enqueue(), 2) {}
  void add(int shard, const std::vector<const EnqueueRequest*>& tasks);
  size_t sections() const { return call_.sections(); }
  void append_to(Redis& redis) { call_.append_to(redis); }
  // One section's reply; an error when it is not of the script's shape.
  static Result<std::vector<EnqueueReply>> read(RedisReply::View section, size_t tasks);

 private:
  const Keys& keys_;
  ScriptCall call_;
};

// ---- claim.lua -------------------------------------------------------------------

// claim's reply, read. The views point into the reply, which must outlive them.
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
class ClaimCall {
 public:
  ClaimCall(const Keys& keys, int64_t inflight_lease_ms) : keys_(keys), lease_ms_(inflight_lease_ms) {}
  // `lease` is the shard lease value the caller holds ("owner|token").
  void add(int shard, const std::string& lease, int batch);
  size_t sections() const { return call_.sections(); }
  void append_to(Redis& redis) { call_.append_to(redis); }
  static ClaimReply read(RedisReply::View section);

 private:
  const Keys& keys_;
  int64_t lease_ms_;
  ScriptCall call_{claim(), 5};
};

// ---- settle.lua ------------------------------------------------------------------

enum class SettleOutcome { confirm, release, unroutable, hold };
struct SettleRequest {
  std::string id;
  SettleOutcome outcome = SettleOutcome::confirm;
  int64_t deadline = 0;  // the in-flight lease deadline of the claim it settles
  std::string reason;    // unroutable: why; hold: the paused queue
};
enum class SettleResult { confirmed, released, dead, held, refused, stale };
struct SettleReply {
  SettleResult result = SettleResult::stale;
  TaskState state = TaskState::absent;  // refused: the state that did not allow it
};
class SettleCall {
 public:
  SettleCall(const Keys& keys, int64_t retention_ms) : keys_(keys), retention_(std::to_string(retention_ms)) {}
  void add(int shard, const std::vector<SettleRequest>& publishes);
  size_t sections() const { return call_.sections(); }
  void append_to(Redis& redis) { call_.append_to(redis); }
  static Result<std::vector<SettleReply>> read(RedisReply::View section);

 private:
  const Keys& keys_;
  std::string retention_;
  ScriptCall call_{settle(), 4};
};

// ---- start.lua -------------------------------------------------------------------

struct StartRequest {
  std::string_view id;
  uint64_t run = 0;      // unique among this worker's deliveries: the run token is "<worker>#<run>"
  int64_t lease_ms = 0;  // how long the run holds the task against another delivery
  // What the delivery says the task is: a run starts only if they are the
  // stored task's (a forged message must not run a known id with its own type
  // or payload). payload_digest: payload_digest(encode_payload(payload)).
  std::string_view queue, type, payload_digest;
};
enum class StartVerdict { run, busy, refused, missing, mismatch };
struct StartReply {
  StartVerdict verdict = StartVerdict::missing;
  int attempt = 0;                      // run: the attempt this run is (1 = first)
  int64_t due_ms = 0;                   // run
  int64_t now_ms = 0;                   // run: Redis TIME as it started
  int64_t busy_ms = 0;                  // busy: how long the other run's lease holds
  TaskState state = TaskState::absent;  // refused: its state
};
class StartCall {
 public:
  StartCall(const Keys& keys, std::string worker) : keys_(keys), worker_(std::move(worker)) {}
  void add(int shard, const std::vector<StartRequest>& deliveries);
  size_t sections() const { return call_.sections(); }
  void append_to(Redis& redis) { call_.append_to(redis); }
  static Result<std::vector<StartReply>> read(RedisReply::View section);

 private:
  const Keys& keys_;
  std::string worker_;
  ScriptCall call_{start(), 2};
};

// ---- finish.lua ------------------------------------------------------------------

enum class FinishOutcome { ok, retry, dead, defer, unstart, discard };
const char* to_string(FinishOutcome o) noexcept;
struct FinishRequest {
  std::string_view id;
  uint64_t run = 0;
  FinishOutcome outcome = FinishOutcome::ok;
  std::string_view error;
  int64_t delay_ms = 0;   // retry, defer: back in the wheel this long from now
  std::string_view head;  // the TASK head (pack_task_head), or empty to read it
};
enum class FinishResult { succeeded, failed, dead, deferred, unstarted, discarded, stale, refused, missing };
struct FinishReply {
  FinishResult result = FinishResult::missing;
  TaskState state = TaskState::absent;  // refused: the state that did not allow it
};
class FinishCall {
 public:
  FinishCall(const Keys& keys, std::string worker, int64_t retention_ms, int64_t done_ms)
      : keys_(keys),
        worker_(std::move(worker)),
        retention_(std::to_string(retention_ms)),
        done_(std::to_string(done_ms)) {}
  void add(int shard, const std::vector<FinishRequest>& runs);
  size_t sections() const { return call_.sections(); }
  void append_to(Redis& redis) { call_.append_to(redis); }
  static Result<std::vector<FinishReply>> read(RedisReply::View section);

 private:
  const Keys& keys_;
  std::string worker_, retention_, done_;
  ScriptCall call_{finish(), 3};
};

// ---- sweep.lua -------------------------------------------------------------------

struct SweepReply {
  bool fenced = false;              // the caller no longer holds the shard
  int64_t swept = 0;                // put back in the wheel (presumed lost)
  int64_t held = 0;                 // overdue, but their queue has (or may have) a backlog
  std::vector<std::string> queues;  // the queues of those held: learn their backlog
};
class SweepCall {
 public:
  SweepCall(const Keys& keys, int64_t lost_after_ms, int64_t recheck_ms, int limit)
      : keys_(keys), lost_after_(lost_after_ms), recheck_(recheck_ms), limit_(limit) {}
  // `clear`: the queues known to have no messages waiting in the broker.
  void add(int shard, const std::string& lease, const std::vector<std::string>& clear);
  size_t sections() const { return call_.sections(); }
  void append_to(Redis& redis) { call_.append_to(redis); }
  static SweepReply read(RedisReply::View section);

 private:
  const Keys& keys_;
  int64_t lost_after_, recheck_;
  int limit_;
  ScriptCall call_{sweep(), 4};
};

// ---- single-shard scripts ----------------------------------------------------------

// cancel.lua. The state it had (cancelled), or an error: conflict (running, with
// the worker; or ended), not_found.
Result<TaskState> run_cancel(Redis& redis, const Keys& keys, const std::string& id, const std::string& reason,
                             int64_t retention_ms);

// reschedule.lua: due_ms, or (nullopt) now + delay_ms. The new due time, or an
// error: conflict (not waiting: dispatched, running, ended), not_found.
Result<int64_t> run_reschedule(Redis& redis, const Keys& keys, const std::string& id, std::optional<int64_t> due_ms,
                               int64_t delay_ms);

// resume.lua, one call per shard appended to a pipeline; its reply is how many
// tasks went back to the wheel (an integer).
void append_resume(Redis& redis, const Keys& keys, int shard, const std::string& queue);

// shard_lease.lua: the lease value "owner|token" while `owner` holds the lease
// at `lease_key` (taken now or renewed), nullopt when another does.
Result<std::optional<std::string>> take_lease(Redis& redis, const std::string& lease_key, const std::string& fence_key,
                                              const std::string& owner, int64_t ttl_ms);
void append_take_lease(Redis& redis, const std::string& lease_key, const std::string& fence_key,
                       const std::string& owner, int64_t ttl_ms);
std::optional<std::string> read_lease(const RedisReply& reply);

// release_held.lua: deletes `key` if it still holds `value`; whether it did.
Result<bool> release_held(Redis& redis, const std::string& key, const std::string& value);
void append_release_held(Redis& redis, const std::string& key, const std::string& value);

// gate.lua (see the file): the verdict for one delivery of a blocking type.
enum class GateVerdict { run, wait, busy };
struct GateRequest {
  bool serial = true;  // else discard_if_busy
  std::string holder;  // the run token
  std::string task_id;
  int64_t order = 0;  // due time
  int64_t lease_ms = 0;
  int64_t wait_ms = 0;
};
struct GateReply {
  GateVerdict verdict = GateVerdict::wait;
  int64_t n = 0;  // wait: tasks ahead; busy: ms the lock holds
};
void append_gate(Redis& redis, const Keys& keys, const std::string& type, const GateRequest& request);
Result<GateReply> read_gate(const Result<RedisReply>& reply);

// schedule_save.lua: the schedules' leader records a schedule's state, only
// while it holds the leader lease it names and the stored state is the one it
// read (so a leader that stalled and lost its lease can neither move a cursor
// back nor write over its successor).
enum class ScheduleSaveVerdict { saved, fenced, moved };
Result<ScheduleSaveVerdict> save_schedule_state(Redis& redis, const Keys& keys, const std::string& lease,
                                                const std::string& name, const std::string& expected,
                                                const std::string& state);

}  // namespace ripen::scripts
