// The task record kept in Redis beside the timer wheel: what `ripen status`
// prints and what the console will show. All stamps are epoch ms by Redis TIME.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ripen/keys.h"
#include "ripen/redis.h"
#include "ripen/result.h"

namespace ripen {

// scheduled  waiting in the wheel for its due time
// dispatched published to its queue (confirmed by the broker), not yet picked up
// running    a worker is running its handler
// succeeded  the handler returned success
// failed     the last attempt failed; a retry waits in the wheel until due_ms
// dead       attempts exhausted, a permanent failure, or unroutable: dead-lettered
// discarded  not run: its type (blocking discard_if_busy) was running elsewhere when it came
// cancelled  cancelled before it ran
struct TaskRecord {
  std::string id;
  std::string queue;
  std::string type;
  std::string state;
  int attempts = 0;
  int max_attempts = 0;
  int64_t due_ms = 0;
  std::optional<int64_t> created_ms, dispatched_ms, started_ms, finished_ms;
  std::string last_error;
  std::string idempotency_key;
  std::string worker;

  nlohmann::ordered_json to_json() const;  // the fields `ripen status` prints, in that order
};

Result<TaskRecord> read_task_record(Redis& redis, const Keys& keys, const std::string& id);
// Many at once, in one pipelined round trip; one result per id, in order.
std::vector<Result<TaskRecord>> read_task_records(Redis& redis, const Keys& keys, const std::vector<std::string>& ids);

}  // namespace ripen
