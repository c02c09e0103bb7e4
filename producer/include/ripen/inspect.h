// What is in the system, for operators and scripts (`ripen list`, `ripen stats`),
// and bulk enqueue from JSON lines (`ripen enqueue --file`).
//
// Contract:
// - list_tasks() and collect_stats() only read. They walk the shards' structures
//   in bounded chunks (a script run examines about a thousand entries), so they
//   never hold Redis for long nor load a whole wheel into memory.
// - Neither is a snapshot: a task that changes state while a walk passes may be
//   met twice (in two pages, or two states) or not at all. Each page's records are
//   read afresh, and a record that no longer matches the query is left out, so a
//   page may hold fewer than `limit` tasks while more follow.
// - The figures of the last hour come from per-minute counters that the scripts
//   ending runs keep (keys.h, `minute:`): they cover the last 60 whole minutes,
//   including the current one, and only runs that ended since the counters exist.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ripen/config.h"
#include "ripen/keys.h"
#include "ripen/producer.h"
#include "ripen/redis.h"
#include "ripen/result.h"
#include "ripen/task_record.h"

namespace ripen {

// Every state a task record can have (task_record.h), in the order of a task's life.
const std::vector<std::string>& task_states();

// ---- list ----------------------------------------------------------------------

struct ListQuery {
  std::string queue;   // required
  std::string state;   // one of task_states(), or "" for any
  size_t limit = 50;   // 1 .. kMaxListLimit
  std::string cursor;  // "" from the start, or the next_cursor of an earlier page of the same query
};
inline constexpr size_t kMaxListLimit = 10'000;

struct TaskPage {
  std::vector<TaskRecord> tasks;
  // Set when at least one more task matched after this page: pass it as the next
  // query's cursor. The cursor names a shard, a structure and a place in it.
  std::optional<std::string> next_cursor;
};

// The tasks of a queue, shard by shard; within a shard the waiting ones first
// (by due time), then the published and running ones, then the ended ones
// (oldest bucket first). Errors: invalid (queue, state, limit or cursor), or
// Redis unavailable.
Result<TaskPage> list_tasks(Redis& redis, const Keys& keys, const ListQuery& query);

// ---- stats ---------------------------------------------------------------------

// A coarse lateness histogram (a handler's start minus its due time, or minus
// its creation when that is later: lateness_ms in metrics.h).
struct LatenessHistogram {
  static constexpr int64_t kInfinity = std::numeric_limits<int64_t>::max();  // the open last bucket
  std::vector<std::pair<int64_t, int64_t>> buckets;                          // (upper bound ms, runs), ascending
  int64_t samples = 0;
  // The upper bound of the bucket holding quantile q (0 < q <= 1): lateness was
  // at most this for a q share of the runs. kInfinity when that is the open
  // bucket; nullopt without samples.
  std::optional<int64_t> quantile(double q) const;
};

struct QueueStats {
  std::string queue;
  // From the shards' live counts, or a walk of the shards that keep none (see
  // Stats::complete).
  int64_t scheduled = 0;  // waiting in the wheel, failed ones waiting for a retry included
  int64_t in_flight = 0;  // dispatched: claimed to be published, or in the broker, not yet running
  int64_t running = 0;
  int64_t held = 0;     // ripe, held in the wheel because the queue is paused
  bool paused = false;  // the queue is paused now (ripen pause)
  // From the broker (passive declare); nullopt when unknown (no such queue, or
  // the broker could not be asked).
  std::optional<int64_t> ready;         // messages ready in <ns>.q.<queue>
  std::optional<int64_t> dead_letters;  // messages in <ns>.dlq.<queue>
  // The last hour (minute counters).
  int64_t succeeded = 0;
  int64_t failed = 0;  // attempts that failed and were put back for a retry
  int64_t dead = 0;
  LatenessHistogram lateness;
};

struct StatsOptions {
  // The walk behind scheduled / in_flight / running (in the shards without
  // exact live counts, or all with `walk`) stops after examining this many
  // tasks; the counts are then lower bounds.
  int64_t scan_limit = 1'000'000;
  bool broker = true;  // ask the broker for its queues' message counts
  bool walk = false;   // walk every shard, even those whose live counts are exact
};

struct Stats {
  int64_t now_ms = 0;              // Redis TIME as the figures were read
  bool complete = true;            // false: the walk stopped at scan_limit; its counts are lower bounds
  int64_t scanned = 0;             // tasks the walk examined
  int walked_shards = 0;           // shards walked: those without exact live counts (all, with `walk`)
  std::string broker_error;        // why the broker figures are missing, when it could not be reached
  std::vector<QueueStats> queues;  // every queue met in the scan or the last hour's counters, by name

  nlohmann::ordered_json to_json() const;  // what `ripen stats --json` prints
};

// Errors: Redis unavailable. The broker being down is not an error (see broker_error).
Result<Stats> collect_stats(const Config& config, Redis& redis, const Keys& keys, const StatsOptions& options = {});

// ---- bulk enqueue --------------------------------------------------------------

// One line's outcome: its task's id, or why it was not enqueued.
struct LineOutcome {
  size_t line = 0;  // 1-based
  Result<Enqueued> result;
  std::string queue;  // the line's task queue, when the line was an envelope
};

// Enqueues one envelope (JSON, envelope.h) per line of `in`, `chunk` lines per
// Producer::enqueue_batch call. Blank lines are skipped. A bad line (not JSON,
// an invalid envelope, refused by Redis) fails alone: `each` is told, in line
// order, about every line that held a task. Returns how many lines held a task;
// an error only when `in` could not be read.
Result<size_t> enqueue_lines(Producer& producer, std::istream& in, size_t max_envelope_bytes, size_t chunk,
                             const std::function<void(const LineOutcome&)>& each);

}  // namespace ripen
