// plan_ticks: which ticks of a schedule become tasks, on time and after
// downtime, by misfire policy. Pure arithmetic over cron times in UTC.
#include <gtest/gtest.h>

#include "ripen/scheduler.h"

namespace ripen {
namespace {

constexpr int64_t kMinute = 60'000;
// 2026-01-01T00:00:00Z
constexpr int64_t kT0 = 1'767'225'600'000;

CronExpr every_minute() { return *CronExpr::parse("* * * * *"); }

TEST(PlanTicks, NothingBeforeTheNextTick) {
  const TickPlan p = plan_ticks(every_minute(), TimeZone::utc(), "run_once", 100, kT0, kT0 + 59'999);
  EXPECT_TRUE(p.runs.empty());
  EXPECT_EQ(p.cursor_ms, kT0);
  EXPECT_EQ(p.missed, 0);
  ASSERT_TRUE(p.next_ms.has_value());
  EXPECT_EQ(*p.next_ms, kT0 + kMinute);
}

TEST(PlanTicks, TheTickThatCameRunsAtItsTime) {
  const TickPlan p = plan_ticks(every_minute(), TimeZone::utc(), "run_once", 100, kT0, kT0 + kMinute + 3);
  ASSERT_EQ(p.runs.size(), 1u);
  EXPECT_EQ(p.runs[0].tick_ms, kT0 + kMinute);
  EXPECT_EQ(p.runs[0].due_ms, kT0 + kMinute);
  EXPECT_EQ(p.cursor_ms, kT0 + kMinute);
  EXPECT_EQ(*p.next_ms, kT0 + 2 * kMinute);
}

TEST(PlanTicks, LateTicksWithinTheGraceEachRunAtTheirTick) {
  // A failover of 2.5 minutes with a 3-minute grace: nothing is missed.
  const int64_t now = kT0 + 2 * kMinute + 30'000;
  const TickPlan p = plan_ticks(every_minute(), TimeZone::utc(), "skip", 100, kT0, now, 3 * kMinute);
  ASSERT_EQ(p.runs.size(), 2u);
  EXPECT_EQ(p.runs[0].due_ms, kT0 + kMinute);
  EXPECT_EQ(p.runs[1].due_ms, kT0 + 2 * kMinute);
  EXPECT_EQ(p.missed, 0);
}

struct MisfireCase {
  const char* policy;
  int limit;
  std::vector<int64_t> run_ticks;  // minutes after kT0 of the missed ticks that run, due now
  int64_t missed;
};

class Misfire : public ::testing::TestWithParam<MisfireCase> {};

TEST_P(Misfire, TicksMissedDuringDowntimeFollowThePolicy) {
  const MisfireCase& c = GetParam();
  // Down for ten minutes: ticks 1..10 are over a minute late, tick 10 is not (it
  // came 30 s ago) and runs at its time whatever the policy.
  const int64_t now = kT0 + 10 * kMinute + 30'000;
  const TickPlan p = plan_ticks(every_minute(), TimeZone::utc(), c.policy, c.limit, kT0, now, kMinute);
  std::vector<int64_t> caught_up;
  for (const auto& r : p.runs) {
    if (r.tick_ms == kT0 + 10 * kMinute) {
      EXPECT_EQ(r.due_ms, r.tick_ms) << "within the grace: on time";
      continue;
    }
    EXPECT_EQ(r.due_ms, now) << "a missed tick runs now";
    caught_up.push_back((r.tick_ms - kT0) / kMinute);
  }
  EXPECT_EQ(caught_up, c.run_ticks);
  EXPECT_EQ(p.missed, c.missed);
  EXPECT_EQ(p.runs.back().tick_ms, kT0 + 10 * kMinute) << "oldest first, the on-time tick last";
  EXPECT_EQ(p.cursor_ms, kT0 + 10 * kMinute);
}

INSTANTIATE_TEST_SUITE_P(Policies, Misfire,
                         ::testing::Values(MisfireCase{"skip", 100, {}, 9}, MisfireCase{"run_once", 100, {9}, 8},
                                           MisfireCase{"run_all", 100, {1, 2, 3, 4, 5, 6, 7, 8, 9}, 0},
                                           MisfireCase{"run_all", 3, {7, 8, 9}, 6}),
                         [](const auto& param_info) {
                           return std::string(param_info.param.policy) + "_limit" +
                                  std::to_string(param_info.param.limit);
                         });

TEST(PlanTicks, ALongOutageIsWalkedInBoundedSteps) {
  const CronExpr every_second = *CronExpr::parse("* * * * * *");
  const int64_t now = kT0 + 3600'000;  // an hour: 3600 ticks
  const TickPlan first = plan_ticks(every_second, TimeZone::utc(), "run_once", 100, kT0, now, kMinute, 1000);
  EXPECT_EQ(first.cursor_ms, kT0 + 1000 * 1000) << "stops after 1000 ticks";
  ASSERT_EQ(first.runs.size(), 1u);
  const TickPlan rest = plan_ticks(every_second, TimeZone::utc(), "skip", 100, first.cursor_ms, now, kMinute);
  EXPECT_EQ(rest.cursor_ms, now);
  // Ticks at now - 60 s .. now are within the grace (its bound included): 61.
  EXPECT_EQ(rest.runs.size(), 61u);
  EXPECT_EQ(rest.missed, 3600 - 1000 - 61);
}

TEST(PlanTicks, AScheduleThatNeverFiresAgainHasNoNext) {
  const CronExpr once = *CronExpr::parse("0 0 1 1 *");
  const TickPlan p = plan_ticks(once, TimeZone::utc(), "skip", 1, kT0 - 1, kT0);
  ASSERT_EQ(p.runs.size(), 1u);
  ASSERT_TRUE(p.next_ms.has_value());
  EXPECT_EQ(*p.next_ms, 1'798'761'600'000) << "2027-01-01";
}

}  // namespace
}  // namespace ripen
