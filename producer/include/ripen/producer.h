// ripen::Producer: schedules tasks into the Redis timer wheel.
//
// Contract:
// - enqueue() validates the envelope (every error names its field) and either
//   stores the task and its place in the wheel atomically, or writes nothing.
// - A task with an idempotency key that an unfinished task holds, or that a task
//   succeeded with less than config.idempotency_retention ago, is not added
//   again: that task's id comes back with created == false.
// - Due times are resolved against Redis TIME: a delay is "from when Redis stored
//   it", so the producer's own clock cannot make a task early or late.
// - A dropped connection is retried within the call; the task id is chosen
//   before the first try, so a retry of a write that did land is recognised and
//   never schedules the task twice.
// - One Producer is one Redis connection: not thread-safe; use one per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ripen/clock.h"
#include "ripen/config.h"
#include "ripen/envelope.h"
#include "ripen/keys.h"
#include "ripen/redis.h"
#include "ripen/result.h"
#include "ripen/strong.h"
#include "ripen/task_record.h"

namespace ripen {

struct Enqueued {
  TaskId id;
  bool created = true;  // false: the idempotency key is held (see above); id is the holder's
  int64_t due_ms = 0;   // epoch ms by Redis TIME
};

// Idempotency keys beginning "schedule:" (a schedule's ticks) or "amqp:" (an
// ingress message's id) are ripen's own: a key from a caller (the CLI, the
// ingress) must not take one, or it could take a schedule's next tick for good.
// The C++ API itself does not refuse them: whoever holds the Redis credentials
// it needs can write any key anyway.
inline constexpr std::string_view kReservedKeyPrefixes[] = {"schedule:", "amqp:"};
Status check_caller_key(std::string_view idempotency_key);

class Producer {
 public:
  // Throws ConfigError for a malformed Redis URL; connects on first use.
  explicit Producer(const Config& config, Clock& clock = SystemClock::instance());

  // Schedules `task` at task.due_ms, or task.delay_ms after now; with neither, now.
  Result<Enqueued> enqueue(Envelope task);
  Result<Enqueued> enqueue_in(Envelope task, std::chrono::milliseconds delay);
  Result<Enqueued> enqueue_at(Envelope task, int64_t due_epoch_ms);

  // Schedules many tasks in one pipelined round trip (one script call per shard
  // and up to 256 tasks). One result per task, in order; an invalid task fails
  // alone and does not stop the others.
  std::vector<Result<Enqueued>> enqueue_batch(std::vector<Envelope> tasks);

  Result<TaskRecord> get(const TaskId& id);

  // Cancels a task that has not started: it never runs and ends `cancelled`.
  // Returns the state it had: "scheduled" or "failed" (it left the wheel), or
  // "dispatched" (it had been published; the worker that receives it skips it).
  // Errors: not_found (no such task, or its record has expired); conflict when
  // it is running now or has already ended (the message says which).
  Result<std::string> cancel(const TaskId& id, const std::string& reason = "cancelled");

  // Moves a task that waits in the wheel (scheduled, or failed and waiting for
  // its retry) to `due_epoch_ms` (by Redis's clock, like every due time).
  // Errors: not_found; conflict when it has been published, runs, or ended.
  Status reschedule(const TaskId& id, int64_t due_epoch_ms);
  Status reschedule_in(const TaskId& id, std::chrono::milliseconds delay);  // from now, by Redis's clock

  // Pauses a queue: from within about a second, its tasks that ripen are held
  // in the timer wheel (state `paused`) instead of being published, until
  // resume_queue(). Tasks already published are not called back, and new tasks
  // can still be enqueued. Errors: invalid queue name; a server error.
  Status pause_queue(const std::string& queue);
  // Lets a paused queue's tasks be published again: those held go back to the
  // wheel at their due times (the ripe ones at once). Returns how many.
  Result<int64_t> resume_queue(const std::string& queue);
  Result<std::vector<std::string>> paused_queues();

  const Keys& keys() const { return keys_; }
  Redis& redis() { return redis_; }

 private:
  struct Prepared;
  Result<Prepared> prepare(Envelope task);
  std::string draw_id(const Envelope& task);
  Status move(const TaskId& id, std::optional<int64_t> due_ms, int64_t delay_ms);

  Config config_;
  Clock& clock_;
  Keys keys_;
  Redis redis_;
};

}  // namespace ripen
