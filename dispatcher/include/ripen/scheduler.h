// ripen::Scheduler: turns the recurring schedules (ripen schedule apply) into
// tasks in the timer wheel, tick by tick.
//
// Contract:
// - One dispatcher leads the schedules at a time, by a lease with a fencing
//   token (keys.h: <ns>:{sched}:leader); another takes over within
//   dispatcher.shard_lease after it dies.
// - Each tick becomes at most one task, even with several dispatchers, a
//   leader that dies mid-way, or a lease that passes to another while the old
//   leader still runs: the task's idempotency key names the schedule and the
//   tick (schedule_store.h).
// - A tick is enqueued when it comes (due at the tick), so an overlap = "skip"
//   schedule looks at its previous run when the tick is due, not before.
// - A tick up to scheduler misfire grace late (a failover, a busy Redis) still
//   runs, due at its tick. Ticks missed by more than that (nothing ran the
//   schedules) follow the schedule's misfire policy.
// - One Scheduler is one thread: run() until stop().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ripen/clock.h"
#include "ripen/config.h"
#include "ripen/cron.h"

namespace ripen {

// Ticks later than this when their turn comes are missed, not late.
inline constexpr int64_t kMisfireGraceMs = 60'000;

// What to do with a schedule's ticks from its cursor up to now. Pure, for unit tests.
struct TickPlan {
  struct Run {
    int64_t tick_ms;  // the tick it stands for (its task's identity)
    int64_t due_ms;   // when it runs: its tick, or now for a missed tick
  };
  std::vector<Run> runs;           // oldest first
  int64_t cursor_ms = 0;           // the last tick accounted for
  int64_t missed = 0;              // missed ticks that do not run (misfire policy)
  std::optional<int64_t> next_ms;  // the first tick after the cursor, if it ever fires again
};
// Ticks t with cursor < t <= now: those within `grace_ms` of now run at their
// tick; older ones are missed and, by `misfire`, all skipped ("skip"), run once
// as the latest of them ("run_once"), or run each, the latest `misfire_limit`
// of them ("run_all"). At most `max_ticks` are looked at in one call (the
// cursor then stops there; the next call goes on).
TickPlan plan_ticks(const CronExpr& cron, const TimeZone& zone, const std::string& misfire, int misfire_limit,
                    int64_t cursor_ms, int64_t now_ms, int64_t grace_ms = kMisfireGraceMs, int64_t max_ticks = 100'000);

struct SchedulerStats {
  bool leading = false;
  uint64_t enqueued = 0;    // tick tasks created
  uint64_t duplicates = 0;  // ticks whose task was already there (another leader, a retry)
  uint64_t overlapped = 0;  // ticks skipped because the previous run had not ended (overlap = "skip")
  uint64_t missed = 0;      // missed ticks not run (misfire policy)
  uint64_t fenced = 0;      // writes refused because another dispatcher had taken the lead
};

class Scheduler {
 public:
  Scheduler(const Config& config, std::string owner, Clock& clock = SystemClock::instance());
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void run();
  void stop();  // thread-safe
  SchedulerStats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ripen
