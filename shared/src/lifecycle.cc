#include "ripen/lifecycle.h"

namespace ripen {
namespace {

constexpr std::array<const char*, kTaskStates> kStateNames = {
    "absent", "scheduled", "failed", "paused", "dispatched", "running", "succeeded", "dead", "discarded", "cancelled"};

constexpr std::array<const char*, kTransitions> kTransitionNames = {
    "enqueue", "claim", "recover", "confirm", "release", "unroutable", "hold",   "resume",     "start", "takeover",
    "succeed", "retry", "die",     "defer",   "unstart", "discard",    "cancel", "reschedule", "lost"};

// The table must list the transitions in the order of the enum: rule() indexes it.
constexpr bool table_in_order() {
  for (size_t i = 0; i < kTransitions; ++i) {
    if (static_cast<size_t>(kTransitionTable[i].transition) != i) return false;
  }
  return true;
}
static_assert(table_in_order(), "kTransitionTable must follow the order of enum Transition");

}  // namespace

const char* to_string(TaskState s) noexcept { return kStateNames[static_cast<size_t>(s)]; }
const char* to_string(Transition t) noexcept { return kTransitionNames[static_cast<size_t>(t)]; }

std::optional<TaskState> parse_task_state(std::string_view name) noexcept {
  for (size_t i = 0; i < kTaskStates; ++i) {
    if (name == kStateNames[i]) return static_cast<TaskState>(i);
  }
  return std::nullopt;
}

std::optional<Transition> parse_transition(std::string_view name) noexcept {
  for (size_t i = 0; i < kTransitions; ++i) {
    if (name == kTransitionNames[i]) return static_cast<Transition>(i);
  }
  return std::nullopt;
}

std::optional<TaskState> apply(Transition t, TaskState from, int attempts) {
  if (!allowed(t, from)) return std::nullopt;
  const TransitionRule& r = rule(t);
  switch (r.target) {
    case Target::state:
      return r.to;
    case Target::same:
      return from;
    case Target::waiting:
      return attempts > 0 ? TaskState::failed : TaskState::scheduled;
  }
  return std::nullopt;
}

std::string lua_allowed_table() {
  // Generated from kTransitionTable so that the scripts and the C++ cannot
  // disagree on what is allowed.
  std::string out = "-- The lifecycle table (shared/include/ripen/lifecycle.h), generated.\nlocal ALLOWED = {\n";
  for (const TransitionRule& r : kTransitionTable) {
    out += "  ['";
    out += to_string(r.transition);
    out += "'] = {";
    for (size_t s = 0; s < kTaskStates; ++s) {
      if ((r.from & (1u << s)) == 0) continue;
      out += " ['";
      out += kStateNames[s];
      out += "'] = true,";
    }
    out += " },\n";
  }
  out +=
      "}\n"
      "local function may(transition, state) return ALLOWED[transition][state] == true end\n";
  return out;
}

}  // namespace ripen
