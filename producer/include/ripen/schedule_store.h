// The recurring schedules as Redis holds them (keys.h: <ns>:{sched}:*): what
// `ripen schedule apply` writes from a schedules file, what `ripen schedule
// list` shows, and what the dispatcher leading the schedules reads.
//
// Contract:
// - apply() makes Redis hold exactly the given specs, in one MULTI/EXEC: all of
//   it or none. A changed or removed schedule loses its state, so a changed one
//   starts again from the next tick after the change.
// - Each tick of a schedule is one task whose idempotency key names the
//   schedule and the tick (schedule_task()), so however many dispatchers (or
//   retries) turn a tick into a task, it is scheduled once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ripen/envelope.h"
#include "ripen/keys.h"
#include "ripen/redis.h"
#include "ripen/result.h"
#include "ripen/schedules.h"
#include "ripen/scripts.h"

namespace ripen {

// What the leading dispatcher records about one schedule after each tick.
struct ScheduleState {
  std::string version;    // schedule_version() of the spec it was computed for
  int64_t cursor_ms = 0;  // the last tick accounted for (run, skipped or missed)
  std::string last_task;  // the task of the last tick that ran; empty before the first

  std::string encode() const;
  static std::optional<ScheduleState> decode(const std::string& text);
};

// A short hash of the spec's canonical JSON: a different version is a changed spec.
std::string schedule_version(const ScheduleSpec& spec);

struct StoredSchedule {
  ScheduleSpec spec;
  std::optional<ScheduleState> state;  // none until the leader has looked at it
  std::string raw_state;               // the state as stored ('' = none): what a fenced save compares with
};

// One line of the difference between Redis and a schedules file.
struct ScheduleChange {
  enum class Kind { add, change, remove };
  Kind kind;
  std::string name;
  std::vector<std::string> details;  // for a change: "cron: \"0 2 * * *\" -> \"0 3 * * *\"", one per field
};

// What apply() would do to make `current` hold exactly `wanted`, by name.
std::vector<ScheduleChange> diff_schedules(const std::vector<StoredSchedule>& current,
                                           const std::vector<ScheduleSpec>& wanted);

// The task a schedule's tick enqueues: due at `tick_ms`, with the idempotency key
// "schedule:<name>:<tick_ms>" and the headers schedule=<name>, tick_ms=<tick_ms>.
Envelope schedule_task(const ScheduleSpec& spec, int64_t tick_ms);

class ScheduleStore {
 public:
  ScheduleStore(Redis& redis, const Keys& keys) : redis_(redis), keys_(keys) {}

  // Every stored schedule, by name. A stored spec that no longer validates
  // (written by hand, or by a newer ripen) is an error naming it.
  Result<std::vector<StoredSchedule>> list();
  Result<StoredSchedule> get(const std::string& name);  // not_found when there is no such schedule

  Status apply(const std::vector<ScheduleSpec>& wanted, const std::vector<ScheduleChange>& changes);
  // Records `task_id`, run on demand (`ripen schedule trigger`), as the
  // schedule's last task, keeping its version and cursor: `schedule list` shows
  // it, and overlap = "skip" waits for it as for a tick's run. Atomic against the
  // leader's fenced writes (WATCH): a leader that read the state before finds it
  // moved and reads it again. Errors: not_found (no such schedule), a server
  // error, or conflict after a few tries against a state that keeps changing.
  Status record_trigger(const std::string& name, const std::string& task_id);
  // Writes a schedule's state unconditionally (tools and tests).
  Status save_state(const std::string& name, const ScheduleState& state);
  // The leader's write (scripts::save_schedule_state): only while it holds
  // `lease` and the stored state is still `expected` (raw_state as it read it).
  Result<scripts::ScheduleSaveVerdict> save_state_fenced(const std::string& name, const std::string& lease,
                                                         const std::string& expected, const std::string& state);

 private:
  Redis& redis_;
  const Keys& keys_;
};

}  // namespace ripen
