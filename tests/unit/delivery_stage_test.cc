// The stages of a delivery in a worker (delivery_stage.h): every stage is
// reachable from `received`, every stage can reach `done`, and the moves that
// would skip recording a run are not there.
#include "ripen/delivery_stage.h"

#include <gtest/gtest.h>

#include <set>

namespace ripen {
namespace {

using S = DeliveryStage;

std::set<S> reachable_from(S start) {
  std::set<S> seen = {start};
  std::vector<S> todo = {start};
  while (!todo.empty()) {
    const S s = todo.back();
    todo.pop_back();
    for (size_t i = 0; i < kDeliveryStages; ++i) {
      const auto next = static_cast<S>(i);
      if (delivery_may_move(s, next) && seen.insert(next).second) todo.push_back(next);
    }
  }
  return seen;
}

TEST(DeliveryStage, EveryStageIsReachedFromReceivedAndReachesDone) {
  EXPECT_EQ(reachable_from(S::received).size(), kDeliveryStages);
  for (size_t i = 0; i < kDeliveryStages; ++i) {
    const auto s = static_cast<S>(i);
    EXPECT_TRUE(reachable_from(s).count(S::done)) << to_string(s);
  }
}

TEST(DeliveryStage, DoneIsFinal) {
  for (size_t i = 0; i < kDeliveryStages; ++i) EXPECT_FALSE(delivery_may_move(S::done, static_cast<S>(i)));
}

TEST(DeliveryStage, ARunNeverEndsWithoutItsOutcomeOrItsDeadLetterCopy) {
  EXPECT_FALSE(delivery_may_move(S::running, S::done)) << "acked without its outcome recorded";
  EXPECT_FALSE(delivery_may_move(S::ready, S::done)) << "a started task handed back without being unstarted";
  EXPECT_TRUE(delivery_may_move(S::running, S::finishing));
  EXPECT_TRUE(delivery_may_move(S::running, S::copying));
  EXPECT_TRUE(delivery_may_move(S::copying, S::finishing)) << "dead: recorded once its copy is confirmed";
}

TEST(DeliveryStage, OnlyAnUnstartedTaskIsHandedBack) {
  for (size_t i = 0; i < kDeliveryStages; ++i) {
    const auto s = static_cast<S>(i);
    EXPECT_EQ(delivery_may_move(s, S::handing_back), s == S::admitting) << to_string(s);
  }
  EXPECT_TRUE(delivery_may_move(S::handing_back, S::done)) << "its copy confirmed";
  EXPECT_TRUE(delivery_may_move(S::handing_back, S::admitting)) << "not confirmed: kept here";
  EXPECT_FALSE(delivery_may_move(S::handing_back, S::starting)) << "never started while a copy may be in the queue";
}

TEST(DeliveryStage, NothingRunsWithoutItsStartRecorded) {
  for (S s : {S::received, S::gating, S::waiting, S::admitting, S::starting, S::busy}) {
    EXPECT_FALSE(delivery_may_move(s, S::running)) << to_string(s);
  }
  EXPECT_TRUE(delivery_may_move(S::ready, S::running));
}

}  // namespace
}  // namespace ripen
