// The chaos suite's ledger: what the harness knows independently of ripen's own
// bookkeeping, and the verdict it draws from it.
//
// Sources, and why each can be trusted under the faults:
// - the plan: every task the producer enqueued, its number, id and due time
//   (epoch ms by the ripen Redis's TIME, as the producer returned it);
// - the runs: one record per handler start, written by the handler itself into
//   a sink Redis that no fault touches, stamped by the sink's TIME at start and
//   end; at start the handler also reads the ripen Redis's TIME and the task's
//   score in the timer wheel in one script (the "started before due" check is
//   against due times, which are ripen-Redis ms, so it needs that clock);
// - the kills: when the harness SIGKILLed which worker, by the sink's TIME read
//   after the process was reaped;
// - the deduping sink: one SET NX key per idempotency key a successful run
//   presented, its value the task's number;
// - the dead-letter queue, drained at the end: the ids of the tasks in it;
// - ripen's final records, read once everything is quiet: only to say whether
//   each task ended `succeeded`.
//
// Clocks: run intervals and kills are all on the sink's clock, so overlaps never
// compare two clocks. Only when the ripen Redis could not be read at a run's
// start (it was being restarted) does the early check fall back to the sink's
// TIME; both servers run on the test host, so they share its clock, and the
// verdict counts those runs (`unprobed`).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace ripen::chaos {

struct PlannedTask {
  int n = 0;           // the task's number, in its payload and its idempotency key
  std::string id;      // the task id the producer returned
  int64_t due_ms = 0;  // ripen Redis TIME ms
  bool fail_first = false;
  bool permanent = false;  // every attempt fails permanently: it must end `dead`, with a dead letter
};

enum class RunOutcome { open, ok, failed };

struct RunRecord {
  std::string token;  // "<worker>#<k>", unique per handler start
  int n = 0;
  std::string id;
  int attempt = 0;
  std::string worker;                   // the worker process's name, one per process
  int64_t given_due_ms = 0;             // TaskContext::due_ms: the due ripen gave this attempt
  std::optional<int64_t> ripen_now_ms;  // the ripen Redis's TIME at start; none if it could not be read
  std::optional<int64_t> wheel_due_ms;  // the task's score in its due set at start, if it was there
  int64_t start_ms = 0;                 // sink TIME
  std::optional<int64_t> end_ms;        // sink TIME; none while open (or its worker died)
  RunOutcome outcome = RunOutcome::open;
  std::string idempotency_key;
};

struct Kill {
  std::string worker;
  int64_t at_ms = 0;  // sink TIME, after the process was reaped
};

struct LedgerInput {
  std::vector<PlannedTask> tasks;
  std::vector<RunRecord> runs;
  std::vector<Kill> kills;
  std::map<std::string, std::string> final_state;  // task id -> ripen's state at the end
  std::map<int, int> dedup_effects;                // task number -> keys in the deduping sink
  int dedup_effects_unknown = 0;                   // keys naming no planned task
  std::set<std::string> dead_letters;              // task ids of the messages in the dead-letter queue
};

struct Verdict {
  int enqueued = 0;
  int executed = 0;                   // tasks that ran at least once
  int dead_lettered = 0;              // permanently failing tasks found `dead`, with their dead letter
  int runs = 0;                       // handler starts
  int lost = 0;                       // not `succeeded` in ripen's records or no successful run; a permanently failing
                                      // task: not `dead`, or no dead letter
  int early = 0;                      // runs started before their due time
  int overlapping = 0;                // runs that began while another run of the same task was still going
  int duplicates = 0;                 // successful runs beyond the first, per task
  int unexplained = 0;                // ... of which not after a kill of the earlier run's worker past its side effect
  int dedup_wrong = 0;                // tasks without exactly one effect in the deduping sink
  int unprobed = 0;                   // runs whose early check used the sink's clock (ripen Redis unreadable)
  int unfinished = 0;                 // runs with no end whose worker was never killed
  int strays = 0;                     // runs of a task number the producer never enqueued
  int64_t max_late_ms = 0;            // the latest first start after its due, by the ripen clock
  std::vector<std::string> examples;  // the first violations of each kind, for the failure message

  bool holds() const {
    return lost == 0 && early == 0 && overlapping == 0 && unexplained == 0 && dedup_wrong == 0 && unfinished == 0 &&
           strays == 0;
  }
};

// Draws the verdict. Pure: the unit test feeds it hand-made ledgers.
Verdict judge(const LedgerInput& in);

// One row of the table the suite prints, and its header.
struct Row {
  std::string fault;
  int faults = 0;  // injections made
  Verdict verdict;
  double recovery_s = 0;  // from the last fault's end (or the last due time, if later) to quiescence
  bool quiescent = true;  // false: the deadline passed first
};
std::string table_header();
std::string table_row(const Row& row);

}  // namespace ripen::chaos
