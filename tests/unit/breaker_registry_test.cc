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

TEST_F(Registry, DownstreamsNotConfiguredShareTheDefaultBreaker) {
  for (int i = 0; i < 10'000; ++i) {
    const std::string name = "made-up-" + std::to_string(i);
    breakers_.meet(name);
    ASSERT_FALSE(breakers_.hold_back(name));
    breakers_.report(name, true, 1ms);
  }
  EXPECT_EQ(breakers_.size(), 1u) << "10k names a task chose cost one breaker";
  EXPECT_EQ(breakers_.breaker_of("made-up-7"), "default");
  EXPECT_EQ(breakers_.breaker_of("sms"), "sms") << "configured: its own";
  const auto sync = breakers_.plan_sync(1s);
  ASSERT_TRUE(sync.has_value());
  ASSERT_EQ(sync->all.size(), 1u);
  EXPECT_EQ(sync->all[0].first, "default");
}

TEST_F(Registry, AKnownDownstreamGetsItsOwnBreakerWithTheDefaultPolicy) {
  BreakerRegistry known({{"default", quick_trip()}}, clock_, {"api.example.com"});
  EXPECT_EQ(known.breaker_of("api.example.com"), "api.example.com");
  EXPECT_EQ(known.breaker_of("evil.example.com"), "default");
  known.report("api.example.com", false, 1ms);
  EXPECT_TRUE(known.report("api.example.com", false, 1ms).has_value()) << "the default policy: quick_trip";
  EXPECT_EQ(known.snapshot("evil.example.com").state, BreakerState::closed) << "another breaker";
}

TEST_F(Registry, AnIdleClosedBreakerIsFreedAtTheSyncAfterItsIdleTime) {
  BreakerRegistry idle({{"default", BreakerPolicy{}}, {"sms", quick_trip()}}, clock_, {}, 10min);
  ASSERT_FALSE(idle.hold_back("sms"));
  idle.report("sms", true, 1ms);
  clock_.advance(10min - 1ms);
  auto sync = idle.plan_sync(1ms);
  ASSERT_TRUE(sync.has_value());
  EXPECT_TRUE(sync->freed.empty());
  EXPECT_EQ(idle.size(), 1u) << "1 ms short of its idle time";
  clock_.advance(1ms);
  sync = idle.plan_sync(1ms);
  ASSERT_TRUE(sync.has_value()) << "a freed breaker is told to the fleet";
  EXPECT_EQ(sync->freed, (std::vector<std::string>{"sms"}));
  EXPECT_TRUE(sync->all.empty());
  EXPECT_EQ(idle.size(), 0u);
  clock_.advance(1s);
  EXPECT_FALSE(idle.plan_sync(1ms).has_value()) << "nothing left to tell";
  EXPECT_EQ(idle.snapshot("sms").calls, 0) << "met again: a fresh breaker";
}

TEST_F(Registry, AnOpenBreakerIsNotFreedHoweverIdle) {
  BreakerPolicy slow = quick_trip();
  slow.open_ms = 3'600'000;
  slow.max_open_ms = 3'600'000;
  BreakerRegistry idle({{"default", BreakerPolicy{}}, {"sms", slow}}, clock_, {}, 10min);
  idle.report("sms", false, 1ms);
  ASSERT_TRUE(idle.report("sms", false, 1ms).has_value());
  clock_.advance(30min);
  ASSERT_TRUE(idle.plan_sync(1s).has_value());
  EXPECT_EQ(idle.size(), 1u);
  EXPECT_EQ(idle.snapshot("sms").state, BreakerState::open);
}

}  // namespace
}  // namespace ripen
