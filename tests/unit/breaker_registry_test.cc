// A worker's breakers by downstream, on a manual clock: the policy each gets,
// a permit and its report, when the fleet must be told, and a trip elsewhere in
// the fleet holding ours open.
#include "ripen/breaker_registry.h"

#include <gtest/gtest.h>

namespace ripen {
namespace {

using namespace std::chrono_literals;

BreakerPolicy quick_trip() {
  BreakerPolicy p;
  p.window = BreakerPolicy::Window::count;
  p.window_calls = 4;
  p.minimum_calls = 2;
  p.failure_rate = 0.5;
  p.open_ms = 1000;
  p.half_open_calls = 1;
  return p;
}

class Registry : public ::testing::Test {
 protected:
  ManualClock clock_;
  BreakerRegistry breakers_{{{"default", BreakerPolicy{}}, {"sms", quick_trip()}}, clock_};
};

TEST_F(Registry, AClosedBreakerLetsACallGo) {
  EXPECT_FALSE(breakers_.hold_back("sms").has_value());
  EXPECT_FALSE(breakers_.report("sms", true, 5ms).has_value());
  EXPECT_EQ(breakers_.snapshot("sms").calls, 1);
}

TEST_F(Registry, FailuresOpenItAndHoldCallsBackUntilTheTrial) {
  ASSERT_FALSE(breakers_.hold_back("sms"));
  EXPECT_FALSE(breakers_.report("sms", false, 1ms).has_value()) << "one call is under minimum_calls";
  ASSERT_FALSE(breakers_.hold_back("sms"));
  const auto opened = breakers_.report("sms", false, 1ms);
  ASSERT_TRUE(opened.has_value());
  EXPECT_EQ(opened->before, BreakerState::closed);
  EXPECT_EQ(opened->failures, 1) << "the counts before this call";
  EXPECT_EQ(opened->open_for, 1000ms);
  EXPECT_EQ(breakers_.hold_back("sms"), 1000ms);
  clock_.advance(999ms);
  EXPECT_EQ(breakers_.hold_back("sms"), 1ms);
  clock_.advance(1ms);
  EXPECT_FALSE(breakers_.hold_back("sms").has_value()) << "the trial call goes";
  EXPECT_EQ(breakers_.hold_back("sms"), 1000ms) << "every trial out: looked at again a second later";
}

TEST_F(Registry, ADownstreamWithoutItsOwnPolicyUsesTheDefault) {
  for (int i = 0; i < 2; ++i) {
    ASSERT_FALSE(breakers_.hold_back("mail"));
    EXPECT_FALSE(breakers_.report("mail", false, 1ms)) << "the default needs 10 calls";
  }
}

TEST_F(Registry, TheFleetIsToldAtOnceOfANewDownstreamOrATripAndOtherwiseEverySecond) {
  EXPECT_FALSE(breakers_.plan_sync(1s).has_value()) << "no breaker yet";
  breakers_.meet("sms");
  auto first = breakers_.plan_sync(1s);
  ASSERT_TRUE(first.has_value()) << "met for the first time: read the fleet's view before its first call";
  EXPECT_EQ(first->all.size(), 1u);
  EXPECT_TRUE(first->opened.empty());
  clock_.advance(999ms);
  EXPECT_FALSE(breakers_.plan_sync(1s).has_value());
  clock_.advance(1ms);
  EXPECT_TRUE(breakers_.plan_sync(1s).has_value()) << "every second";
  breakers_.report("sms", false, 1ms);
  breakers_.report("sms", false, 1ms);  // opens
  auto tripped = breakers_.plan_sync(1s);
  ASSERT_TRUE(tripped.has_value()) << "a trip is announced at once";
  ASSERT_EQ(tripped->opened.size(), 1u);
  EXPECT_EQ(tripped->opened[0].downstream, "sms");
  EXPECT_EQ(tripped->opened[0].left, 1000ms);
}

TEST_F(Registry, ATripElsewhereInTheFleetHoldsOursOpenForWhatIsLeft) {
  breakers_.fleet_open("sms", 3000ms);
  EXPECT_EQ(breakers_.snapshot("sms").state, BreakerState::open);
  clock_.advance(2999ms);
  EXPECT_TRUE(breakers_.hold_back("sms").has_value());
  clock_.advance(1ms);
  EXPECT_FALSE(breakers_.hold_back("sms").has_value()) << "half-open: our own trial";
  breakers_.fleet_open("mail", 0ms);
  EXPECT_EQ(breakers_.snapshot("mail").state, BreakerState::closed) << "nothing left: no hold";
}

}  // namespace
}  // namespace ripen
