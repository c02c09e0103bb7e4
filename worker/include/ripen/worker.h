// ripen::Worker: consumes task queues and runs a handler per task type.
//
// Handler contract: return -> success, the delivery is acked and the task ends
// `succeeded`. Throw -> failure: the task goes back into the timer wheel with
// exponential, jittered backoff (written before the delivery is acked, so a crash
// in between duplicates a retry and never loses one) until max_attempts, then it
// is dead-lettered. Throw ripen::Permanent -> dead-lettered at once.
// Delivery is at-least-once; runs are once in effect within these bounds:
// - A task whose record says it ended is acked and skipped (a duplicate).
// - A started run holds its task under a lease (its timeout, else
//   worker.exec_timeout, plus worker.lease_grace): a redelivery meanwhile (the
//   broker handing a task on after a connection broke) is not run; it looks
//   again every second and is skipped once the run ended, or runs when the lease
//   has passed (the first worker died). A stopping worker marks the tasks it
//   started but did not run as not running before handing them back.
// - A handler can still run twice if its worker dies after the side effect and
//   before recording success, or if it runs past its lease, so side effects
//   should be keyed by TaskContext::idempotency_key.
//
// Circuit breakers: a task that names a `downstream` (an http task without one:
// its URL's host) passes that downstream's breaker (breaker.h; thresholds from
// config.breakers) before it starts. Only configured downstreams have breakers
// of their own; any other name shares "default" (breaker_registry.h). While the breaker holds it back, the task is
// not run and not failed: it goes back into the timer wheel until the breaker's
// next trial, its attempts untouched, and is counted in WorkerStats::deferred. A
// handler's failure counts against the breaker, and so does a slow run; a
// Permanent failure does not (the downstream answered). Fleet-wide: a worker that
// opens a breaker announces it in Redis for the length of its open wait, and every
// worker that meets the downstream holds its own breaker open until then; the
// half-open trials are each worker's own.
//
// Blocking policies ([types.<type>] blocking, config.h): for a `serial` or
// `discard_if_busy` type, a delivery takes its type's fleet-wide lock in Redis
// before its start is recorded, and gives it back once its outcome is. Serial:
// a task that finds the type held waits its turn, unacked, asking again every
// 20 ms; turns go earliest due first among the tasks waiting (a place lapses
// 10 s after its worker stops asking). discard_if_busy: it is not run, and ends
// `discarded`, counted in WorkerStats::discarded. A lock whose run never gives
// it back (its worker died) lapses after that run's lease. Waiting deliveries
// hold prefetch slots, so a busy serial type is best given a queue of its own.
//
// Executor (config.worker): each consumed queue gets its weighted share of the
// prefetch. A delivered task's start is recorded only while fewer than
// concurrency + local_queue tasks are started here and not yet done, and fewer
// than its queue's own concurrency; each free place goes to the queue with the
// fewest started tasks for its weight. The rest wait unstarted (no attempt
// counted, no run lease ticking) and unacked.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ripen/clock.h"
#include "ripen/config.h"
#include "ripen/envelope.h"
#include "ripen/metrics.h"

namespace ripen {

// Thrown by a handler for a failure that names a code (e.g. "http_503",
// "card_declined"): the code goes with the task's last error into its dead
// letter (x-ripen-error-code) and can be listed in [types.<type>]
// permanent_errors. Any other exception is a failure without a code.
class Failure : public std::runtime_error {
 public:
  explicit Failure(const std::string& message, std::string code = "")
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Thrown by a handler for a failure that retrying cannot fix.
class Permanent : public Failure {
 public:
  using Failure::Failure;
};

struct TaskContext {
  const Envelope& task;
  std::string id;
  std::string idempotency_key;                   // the task's key, or its id when it has none
  int attempt = 1;                               // 1 for the first run
  int64_t due_ms = 0;                            // epoch ms, Redis TIME
  int64_t timeout_ms = 0;                        // the time limit for this run
  Clock::time_point deadline;                    // now + timeout_ms, on the worker's clock
  const std::atomic<bool>* stopping = nullptr;   // set when the worker begins to shut down
  const std::atomic<bool>* cancelled = nullptr;  // set when its shutdown grace has passed: return at once
};

using Handler = std::function<void(const TaskContext&)>;

struct WorkerStats {
  uint64_t received = 0;
  uint64_t succeeded = 0;
  uint64_t retried = 0;
  uint64_t dead = 0;
  uint64_t duplicates = 0;   // deliveries of tasks that had already ended
  uint64_t deferred = 0;     // tasks sent back to the wheel unrun: breaker open, or no handler here
  uint64_t discarded = 0;    // tasks not run because their type was busy (blocking discard_if_busy)
  uint64_t handed_back = 0;  // tasks given back to their queue unstarted, for a worker with room (confirmed)
  Histogram lateness;        // handler start - max(due time, created), ms, by Redis TIME (lateness_ms)
};

class Worker {
 public:
  // Throws ConfigError for bad URLs.
  explicit Worker(const Config& config, const std::string& name = "", Clock& clock = SystemClock::instance());
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Registers the handler for a task type. Call before run().
  void handle(const std::string& type, Handler handler);

  // Consumes config.worker.queues until stop(). First waits for Redis to
  // answer, consuming nothing meanwhile; throws RedisUnreachable (redis.h)
  // when it has not within redis_startup_timeout. Connection failures are
  // retried with backoff. While Redis does not answer, the worker consumes
  // nothing and hands back every delivery it has not started (said once per
  // outage); runs already started go on. On stop: consumers are cancelled,
  // running handlers get worker.shutdown_grace to finish, deliveries not
  // started are handed back.
  void run();
  // Thread-safe and async-signal-safe.
  void stop();
  // A second stop: running handlers get no grace. They are cancelled
  // (TaskContext::cancelled) and their outcomes recorded as they return; one
  // not recorded is run again once its run lease passes, as after a crash.
  // Thread-safe and async-signal-safe.
  void abandon();
  // Whether abandon() cut short runs that were going on (after run() returned).
  bool abandoned() const;

  WorkerStats stats() const;
  const std::string& name() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// A run's time limit (TaskContext::timeout_ms): the task's own timeout_ms,
// clamped to its type's max_timeout (else worker.max_task_timeout), else its
// type's timeout, else worker.exec_timeout. The clamp holds only the task's own
// value: what the operator configured is taken as it is.
int64_t run_timeout_ms(const Config& config, const std::string& type, int64_t own_timeout_ms);

// Built-in handlers.
// `log`: logs the task at info level.
Handler make_log_handler();

// How an exec handler's command runs, besides its command line.
struct ExecOptions {
  // The worker's environment variables passed on (a trailing '*' matches a
  // prefix); WorkerConfig::exec_env.
  std::vector<std::string> env = WorkerConfig{}.exec_env;
  ExecLimits limits;  // user, group and rlimits ([worker.exec_limits.<type>])
};

// `exec`: runs `command` with /bin/sh -c, the payload JSON on stdin, and
// RIPEN_TASK_ID, RIPEN_IDEMPOTENCY_KEY, RIPEN_ATTEMPT, RIPEN_TASK_TYPE, RIPEN_QUEUE
// in its environment. Exit 0 is success; any other exit (code "exit_<status>"), a
// signal ("signal_<n>"), running past the task's timeout ("timeout"; default
// `default_timeout_ms`), or not being able to wait for it ("wait_failed") is a
// failure whose message ends with the command's stderr tail (under 1 KiB).
//
// The child: in a process group of its own, which is killed (SIGKILL) once the
// command exits or its time is up, so nothing it started in the background
// outlives the run; no descriptor of the worker's but stdin/stdout/stderr
// (pipes); only the environment variables `options.env` allows, plus the task's;
// `options.limits` applied (rlimits, then group and user) before it execs.
// Throws ConfigError at once for an unknown user or group, or another user
// without root.
Handler make_exec_handler(const std::string& command, int64_t default_timeout_ms, const ExecOptions& options = {});

// The built-in handlers `config` asks for, by task type, for Worker::handle():
// `log`; the http handler (http_handler.h) for each type of
// [handlers.http.types], and for no other; an exec handler per worker.exec
// type, with worker.exec_env and its [worker.exec_limits.<type>]. Throws
// ConfigError naming the key.
std::map<std::string, Handler> builtin_handlers(const Config& config);

}  // namespace ripen
