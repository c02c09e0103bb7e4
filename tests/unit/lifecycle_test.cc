// The lifecycle table (lifecycle.h), walked: what each transition allows,
// where it leads, and that the Lua the scripts are prefixed with says the same.
#include "ripen/lifecycle.h"

#include <gtest/gtest.h>

#include <set>
#include <sstream>
#include <string>

namespace ripen {
namespace {

constexpr TaskState kAll[] = {TaskState::absent,     TaskState::scheduled, TaskState::failed,    TaskState::paused,
                              TaskState::dispatched, TaskState::running,   TaskState::succeeded, TaskState::dead,
                              TaskState::discarded,  TaskState::cancelled};
static_assert(std::size(kAll) == kTaskStates);

// The pairs of lines of the form  ['claim'] = { ['scheduled'] = true, ['failed'] = true, },
std::set<std::pair<std::string, std::string>> allowed_pairs_in_lua(const std::string& lua) {
  std::set<std::pair<std::string, std::string>> out;
  std::istringstream in(lua);
  for (std::string line; std::getline(in, line);) {
    const size_t open = line.find("] = {");
    if (line.rfind("  ['", 0) != 0 || open == std::string::npos) continue;
    const std::string transition = line.substr(4, open - 5);
    for (size_t at = line.find("['", open); at != std::string::npos; at = line.find("['", at + 2)) {
      const size_t end = line.find("']", at);
      out.insert({transition, line.substr(at + 2, end - at - 2)});
    }
  }
  return out;
}

TEST(Lifecycle, EveryTransitionAndStateHasANameThatReadsBack) {
  for (TaskState s : kAll) EXPECT_EQ(parse_task_state(to_string(s)), s) << to_string(s);
  for (size_t i = 0; i < kTransitions; ++i) {
    const auto t = static_cast<Transition>(i);
    EXPECT_EQ(parse_transition(to_string(t)), t) << to_string(t);
    EXPECT_EQ(rule(t).transition, t) << "the table follows the enum";
    EXPECT_NE(std::string(rule(t).script).find(".lua"), std::string::npos) << to_string(t) << " names its script";
    EXPECT_NE(rule(t).from, 0u) << to_string(t) << " is allowed from somewhere";
  }
  EXPECT_FALSE(parse_task_state("queued").has_value());
  EXPECT_FALSE(parse_transition("fly").has_value());
}

TEST(Lifecycle, ApplyFollowsTheTableFromEveryState) {
  for (size_t i = 0; i < kTransitions; ++i) {
    const auto t = static_cast<Transition>(i);
    for (TaskState from : kAll) {
      const auto to = apply(t, from, 0);
      EXPECT_EQ(to.has_value(), allowed(t, from)) << to_string(t) << " from " << to_string(from);
      if (!to) continue;
      EXPECT_NE(*to, TaskState::absent) << "no transition makes a task vanish without a record";
      if (rule(t).target == Target::same) {
        EXPECT_EQ(*to, from) << to_string(t);
      }
    }
  }
}

TEST(Lifecycle, BackToTheWheelIsScheduledBeforeAnAttemptAndFailedAfter) {
  for (Transition t :
       {Transition::recover, Transition::release, Transition::resume, Transition::defer, Transition::lost}) {
    const TaskState from = allowed(t, TaskState::dispatched) ? TaskState::dispatched
                           : allowed(t, TaskState::running)  ? TaskState::running
                                                             : TaskState::paused;
    EXPECT_EQ(apply(t, from, 0), TaskState::scheduled) << to_string(t);
    EXPECT_EQ(apply(t, from, 2), TaskState::failed) << to_string(t);
  }
}

TEST(Lifecycle, EndedStatesLeadNowhereButToAReplayUnderTheirId) {
  for (TaskState s : {TaskState::succeeded, TaskState::dead, TaskState::discarded, TaskState::cancelled}) {
    EXPECT_TRUE(is_ended(s));
    for (size_t i = 0; i < kTransitions; ++i) {
      const auto t = static_cast<Transition>(i);
      EXPECT_EQ(allowed(t, s), t == Transition::enqueue) << to_string(t) << " from " << to_string(s);
    }
  }
  for (TaskState s : {TaskState::scheduled, TaskState::failed, TaskState::paused, TaskState::dispatched,
                      TaskState::running, TaskState::absent}) {
    EXPECT_FALSE(is_ended(s)) << to_string(s);
  }
}

// The breaks issue 13 found, as rules of the table.
TEST(Lifecycle, OnlyADispatchedTaskStartsSoAnOldCopyNeverRunsARetryEarly) {
  EXPECT_TRUE(allowed(Transition::start, TaskState::dispatched));
  for (TaskState s : {TaskState::scheduled, TaskState::failed, TaskState::paused}) {
    EXPECT_FALSE(allowed(Transition::start, s)) << to_string(s) << ": its wheel entry publishes it when due";
    EXPECT_FALSE(allowed(Transition::takeover, s)) << to_string(s);
  }
}

TEST(Lifecycle, ARunningTaskIsNeverPutBackInTheWheelByAPublishThatCameToNothing) {
  for (Transition t : {Transition::recover, Transition::release, Transition::unroutable, Transition::hold,
                       Transition::claim, Transition::cancel, Transition::reschedule}) {
    EXPECT_FALSE(allowed(t, TaskState::running)) << to_string(t);
  }
  EXPECT_TRUE(allowed(Transition::takeover, TaskState::running)) << "only a delivery, once the run's lease passed";
  EXPECT_TRUE(allowed(Transition::lost, TaskState::running)) << "only lost_after past its lease";
}

TEST(Lifecycle, ARunEndsOnlyFromRunning) {
  for (Transition t :
       {Transition::succeed, Transition::retry, Transition::die, Transition::defer, Transition::unstart}) {
    for (TaskState s : kAll) EXPECT_EQ(allowed(t, s), s == TaskState::running) << to_string(t) << to_string(s);
  }
}

TEST(Lifecycle, TheLuaTableSaysExactlyWhatTheHeaderSays) {
  const auto lua = allowed_pairs_in_lua(lua_allowed_table());
  std::set<std::pair<std::string, std::string>> expected;
  for (size_t i = 0; i < kTransitions; ++i) {
    const auto t = static_cast<Transition>(i);
    for (TaskState s : kAll) {
      if (allowed(t, s)) expected.insert({to_string(t), to_string(s)});
    }
  }
  EXPECT_EQ(lua, expected);
  EXPECT_NE(lua_allowed_table().find("local function may(transition, state)"), std::string::npos);
}

}  // namespace
}  // namespace ripen
