// The life of a task, written down once. Every state a task can be in, every
// transition between states, the Lua script that performs it and the fencing
// that script checks are in kTransitionTable below. The scripts read the same table
// (lua_allowed_table() turns it into Lua and prepends it to every script), so a
// script refuses, and says so in its reply, any transition from a state this
// table does not list. A unit test walks the table; lifecycle_itest drives each
// script against a real Redis from every state the table does not allow.
//
//   enqueue ─▶ scheduled ─claim─▶ dispatched ─start─▶ running ─succeed─▶ succeeded
//                  ▲    ▲                │    ▲         │  │ │ ─die────▶ dead
//                  │    └─ release, ─────┘    └─unstart─┘  │ └─retry──▶ failed ─claim─▶ dispatched
//                  │       recover, lost, defer            └─takeover (its lease passed) ─▶ running
//      resume ─────┘   dispatched ─hold─▶ paused;  dispatched ─unroutable─▶ dead;  ─discard─▶ discarded
//   cancel: scheduled, failed, paused, dispatched ─▶ cancelled;  reschedule: scheduled, failed, paused
//
// `failed` is `scheduled` with an attempt spent: it waits in the wheel for its
// retry, and every transition that leads back to the wheel ("waiting") lands in
// `failed` when attempts > 0, else in `scheduled`. The README's diagram is the
// readable form of this table.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace ripen {

// Where a task can be. `absent` is not a state of a live task: no task by that
// id lives (never enqueued, or it ended: its ENDED record may still be kept).
enum class TaskState {
  absent,
  scheduled,   // in the due set, no attempt spent yet
  failed,      // in the due set, waiting for a retry (attempts > 0)
  paused,      // ripe while its queue is paused: held in the queue's parked set
  dispatched,  // claimed: in flight until the broker confirms, then in the broker (the outstanding set)
  running,     // a worker runs it under a run token and a run lease (the outstanding set)
  succeeded,   // ended
  dead,        // ended: dead-lettered
  discarded,   // ended: not run (its blocking type was busy)
  cancelled,   // ended
};
inline constexpr size_t kTaskStates = 10;

constexpr bool is_ended(TaskState s) {
  return s == TaskState::succeeded || s == TaskState::dead || s == TaskState::discarded || s == TaskState::cancelled;
}

// Every transition a script performs. The name is what the scripts and their
// replies call it.
enum class Transition {
  enqueue,     // a new task enters the wheel
  claim,       // a ripe task is taken to be published
  recover,     // a claim's in-flight lease passed without a settled publish: back to the wheel
  confirm,     // the broker confirmed the publish: the task is in the broker
  release,     // the publish was refused or its connection broke: back to the wheel
  unroutable,  // the broker returned the publish: no queue, dead
  hold,        // its queue is paused: held out of the wheel
  resume,      // its queue is resumed: back to the wheel
  start,       // a worker begins a run
  takeover,    // a delivery of a task whose run lease passed (its worker died) runs it
  succeed,     // the run succeeded
  retry,       // the run failed; the next attempt waits in the wheel
  die,         // the run failed for good (attempts, permanent, no handler); dead-lettered
  defer,       // the run did not go (breaker open, no handler here): back to the wheel, attempt given back
  unstart,     // the worker stops before the run went: published again as it was
  discard,     // never run: its type (discard_if_busy) was running
  cancel,      // cancelled by an operator or the producer
  reschedule,  // a waiting task gets a new due time
  lost,        // published or running, and nothing heard of it for lost_after: back to the wheel
};
inline constexpr size_t kTransitions = 19;

// Where a transition leads: a state, the wheel ("scheduled", or "failed" once an
// attempt was spent), or the state the task had (confirm, takeover, reschedule).
enum class Target { state, waiting, same };

struct TransitionRule {
  Transition transition;
  const char* script;  // the shared/lua/ file that performs it
  unsigned from;       // bit set of TaskStates it is allowed from (bit(s))
  Target target;
  TaskState to;         // for Target::state
  const char* fencing;  // what the script checks besides the state
};

constexpr unsigned bit(TaskState s) { return 1u << static_cast<unsigned>(s); }
template <class... S>
constexpr unsigned bits(S... s) {
  return (bit(s) | ...);
}

// The table. Keep it in the order of the enum.
inline constexpr std::array<TransitionRule, kTransitions> kTransitionTable = {{
    {Transition::enqueue, "enqueue.lua",
     bits(TaskState::absent, TaskState::succeeded, TaskState::dead, TaskState::discarded, TaskState::cancelled),
     Target::state, TaskState::scheduled,
     "no live task has the id (an ended one may: a dead letter replayed under its id); an idempotency key held by "
     "a live or recently succeeded task returns that task instead"},
    {Transition::claim, "claim.lua", bits(TaskState::scheduled, TaskState::failed), Target::state,
     TaskState::dispatched, "the shard lease's fencing token; due time <= Redis TIME"},
    {Transition::recover, "claim.lua", bits(TaskState::dispatched), Target::waiting, TaskState::scheduled,
     "the shard lease's fencing token; the claim's in-flight deadline has passed"},
    {Transition::confirm, "settle.lua", bits(TaskState::dispatched), Target::same, TaskState::dispatched,
     "the claim's in-flight deadline (a later claim is not settled by an earlier publish)"},
    {Transition::release, "settle.lua", bits(TaskState::dispatched), Target::waiting, TaskState::scheduled,
     "the claim's in-flight deadline"},
    {Transition::unroutable, "settle.lua", bits(TaskState::dispatched), Target::state, TaskState::dead,
     "the claim's in-flight deadline"},
    {Transition::hold, "settle.lua", bits(TaskState::dispatched), Target::state, TaskState::paused,
     "the claim's in-flight deadline; the shard's own paused flag for the queue"},
    {Transition::resume, "resume.lua", bits(TaskState::paused), Target::waiting, TaskState::scheduled, "none"},
    {Transition::start, "start.lua", bits(TaskState::dispatched), Target::state, TaskState::running,
     "a new run token; the same token asking again gets the same answer"},
    {Transition::takeover, "start.lua", bits(TaskState::running), Target::same, TaskState::running,
     "the running run's lease has passed (Redis TIME)"},
    {Transition::succeed, "finish.lua", bits(TaskState::running), Target::state, TaskState::succeeded,
     "the run token of the run that started it"},
    {Transition::retry, "finish.lua", bits(TaskState::running), Target::state, TaskState::failed, "the run token"},
    {Transition::die, "finish.lua", bits(TaskState::running), Target::state, TaskState::dead, "the run token"},
    {Transition::defer, "finish.lua", bits(TaskState::running), Target::waiting, TaskState::scheduled, "the run token"},
    {Transition::unstart, "finish.lua", bits(TaskState::running), Target::state, TaskState::dispatched,
     "the run token"},
    {Transition::discard, "finish.lua", bits(TaskState::dispatched), Target::state, TaskState::discarded,
     "none (no run started)"},
    {Transition::cancel, "cancel.lua",
     bits(TaskState::scheduled, TaskState::failed, TaskState::paused, TaskState::dispatched), Target::state,
     TaskState::cancelled, "none"},
    {Transition::reschedule, "reschedule.lua", bits(TaskState::scheduled, TaskState::failed, TaskState::paused),
     Target::same, TaskState::scheduled, "none"},
    {Transition::lost, "sweep.lua", bits(TaskState::dispatched, TaskState::running), Target::waiting,
     TaskState::scheduled,
     "the shard lease's fencing token; confirmed (or its run lease passed) more than lost_after ago, and its queue "
     "has no backlog"},
}};

constexpr const TransitionRule& rule(Transition t) { return kTransitionTable[static_cast<size_t>(t)]; }
constexpr bool allowed(Transition t, TaskState from) { return (rule(t).from & bit(from)) != 0; }

// Where a transition from `from` leads, given the attempts spent; nullopt if not allowed.
std::optional<TaskState> apply(Transition t, TaskState from, int attempts);

const char* to_string(TaskState s) noexcept;
const char* to_string(Transition t) noexcept;
std::optional<TaskState> parse_task_state(std::string_view name) noexcept;
std::optional<Transition> parse_transition(std::string_view name) noexcept;

// The table as Lua source, defining ALLOWED[transition][state] = true for every
// allowed pair, and may(transition, state). Every script is prefixed with it.
std::string lua_allowed_table();

}  // namespace ripen
