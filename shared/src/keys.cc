#include "ripen/keys.h"

#include <stdexcept>

namespace ripen {

uint64_t stable_hash(std::string_view data) noexcept {
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

Keys::Keys(std::string ns, int shards) : ns_(std::move(ns)), shards_(shards) {
  if (shards_ < 1 || shards_ > 1024) throw std::invalid_argument("shards must be between 1 and 1024");
  if (ns_.empty()) throw std::invalid_argument("namespace must not be empty");
}

int Keys::shard_of(std::string_view id_or_key) const noexcept {
  return static_cast<int>(stable_hash(id_or_key) % static_cast<uint64_t>(shards_));
}

namespace {

// The names of a shard's keys after its prefix. The scripts build the keys only
// they know (an idempotency key's, a bucket of ended records) from the same
// names: lua_key_builders() writes them out as Lua.
constexpr const char* kDue = "due";
constexpr const char* kInflight = "inflight";
constexpr const char* kOutstanding = "outstanding";
constexpr const char* kTasks = "tasks";
constexpr const char* kStatus = "status";
constexpr const char* kEnded = "ended";
constexpr const char* kMinute = "minute:";
constexpr const char* kCounts = "counts";
constexpr const char* kPausedFlags = "pausedq";
constexpr const char* kParked = "paused:";
constexpr const char* kIdem = "idem:";

}  // namespace

std::string Keys::shard_prefix(int shard) const { return ns_ + ":{s" + std::to_string(shard) + "}:"; }
std::string Keys::due(int shard) const { return shard_prefix(shard) + kDue; }
std::string Keys::inflight(int shard) const { return shard_prefix(shard) + kInflight; }
std::string Keys::outstanding(int shard) const { return shard_prefix(shard) + kOutstanding; }
std::string Keys::lease(int shard) const { return shard_prefix(shard) + "lease"; }
std::string Keys::fence(int shard) const { return shard_prefix(shard) + "fence"; }
std::string Keys::tasks(int shard) const { return shard_prefix(shard) + kTasks; }
std::string Keys::status(int shard) const { return shard_prefix(shard) + kStatus; }
std::string Keys::ended_index(int shard) const { return shard_prefix(shard) + kEnded; }
std::string Keys::minute_counts(int shard, int64_t epoch_minute) const {
  return shard_prefix(shard) + kMinute + std::to_string(epoch_minute);
}
std::string Keys::live_counts(int shard) const { return shard_prefix(shard) + kCounts; }
std::string Keys::paused_flags(int shard) const { return shard_prefix(shard) + kPausedFlags; }
std::string Keys::parked(int shard, std::string_view queue) const {
  return shard_prefix(shard) + kParked + std::string(queue);
}
std::string Keys::paused_queues() const { return ns_ + ":paused"; }
std::string Keys::idempotency(std::string_view queue, std::string_view type, std::string_view key) const {
  // Neither a queue name nor a type holds '/' (envelope.h): the three parts
  // cannot run into each other. The task's shard is its key's alone.
  return shard_prefix(shard_of(key)) + kIdem + std::string(queue) + "/" + std::string(type) + "/" + std::string(key);
}

std::string Keys::lua_key_builders() {
  auto fixed = [](const char* fn, const char* name) {
    return std::string("function KEY.") + fn + "(prefix) return prefix .. '" + name + "' end\n";
  };
  auto with = [](const char* fn, const char* name) {
    return std::string("function KEY.") + fn + "(prefix, x) return prefix .. '" + name + "' .. x end\n";
  };
  std::string out = "-- A shard's keys from its prefix (shared/src/keys.cc), generated.\nlocal KEY = {}\n";
  out += fixed("due", kDue);
  out += fixed("inflight", kInflight);
  out += fixed("outstanding", kOutstanding);
  out += fixed("tasks", kTasks);
  out += fixed("status", kStatus);
  out += fixed("ended_index", kEnded);
  out += fixed("paused_flags", kPausedFlags);
  out += fixed("counts", kCounts);
  out += "KEY.counts_exact = '" + std::string(kExactCounts) + "'\n";
  out += with("minute", kMinute);
  out += with("parked", kParked);
  out += with("idem", kIdem);  // KEY.idem(prefix, '<queue>/<type>/<key>'), or a key from before scoping
  // The buckets of ended records: <prefix>ended:<width ms>:<n> (keys.h).
  out += std::string("function KEY.ended_bucket(prefix, width, n) return prefix .. '") + kEnded +
         ":' .. width .. ':' .. n end\n";
  return out;
}
std::string Keys::wake_channel() const { return ns_ + ":wake"; }
std::string Keys::dispatchers() const { return ns_ + ":dispatchers"; }
std::string Keys::breaker_open(std::string_view downstream) const {
  return ns_ + ":breaker:" + std::string(downstream) + ":open";
}
std::string Keys::breakers(std::string_view worker) const { return ns_ + ":breakers:" + std::string(worker); }
std::string Keys::type_lock(std::string_view type) const { return ns_ + ":{t:" + std::string(type) + "}:lock"; }
std::string Keys::type_waiters(std::string_view type) const { return ns_ + ":{t:" + std::string(type) + "}:waiters"; }
std::string Keys::type_waiting(std::string_view type) const { return ns_ + ":{t:" + std::string(type) + "}:waiting"; }
std::string Keys::schedule_specs() const { return ns_ + ":{sched}:specs"; }
std::string Keys::schedule_state() const { return ns_ + ":{sched}:state"; }
std::string Keys::schedule_leader() const { return ns_ + ":{sched}:leader"; }
std::string Keys::schedule_fence() const { return ns_ + ":{sched}:fence"; }

std::string Keys::task_exchange() const { return ns_ + ".tasks"; }
std::string Keys::queue(std::string_view queue_name) const { return ns_ + ".q." + std::string(queue_name); }
std::string Keys::dead_exchange() const { return ns_ + ".dlx"; }
std::string Keys::dead_queue(std::string_view queue_name) const { return ns_ + ".dlq." + std::string(queue_name); }
std::string Keys::ingress_exchange() const { return ns_ + ".ingress"; }
std::string Keys::ingress_queue() const { return ns_ + ".ingress"; }

}  // namespace ripen
