// ManualClock is what every time-based unit test stands on: it must start where it
// is told, move only when advanced, move its monotonic and wall readings together,
// and count whole milliseconds exactly at the edge.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "ripen/clock.h"

namespace ripen {
namespace {

using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(ManualClock, StartsAtTheGivenEpoch) {
  const ManualClock clock(1'795'341'600'000);
  EXPECT_EQ(clock.epoch_ms(), 1'795'341'600'000);
}

TEST(ManualClock, DefaultStartIsNovember2023) {
  const ManualClock clock;
  EXPECT_EQ(clock.epoch_ms(), 1'700'000'000'000);
}

TEST(ManualClock, StandsStillUntilAdvanced) {
  const ManualClock clock(1'795'341'600'000);
  const auto now = clock.now();
  const int64_t epoch = clock.epoch_ms();
  std::this_thread::sleep_for(milliseconds(5));
  EXPECT_EQ(clock.now(), now);
  EXPECT_EQ(clock.epoch_ms(), epoch);
}

TEST(ManualClock, NowStartsWellAfterTheSteadyClockEpoch) {
  // Code under test subtracts durations from now(); a start at time_point(0)
  // would make "now - 30s" fall before the clock's epoch.
  const ManualClock clock;
  EXPECT_GE(clock.now().time_since_epoch(), hours(1));
}

TEST(ManualClock, AdvanceMovesNowAndEpochTogether) {
  ManualClock clock(1'795'341'600'000);
  const auto start_now = clock.now();
  const int64_t start_epoch = clock.epoch_ms();
  for (const auto step : {milliseconds(1), milliseconds(250), milliseconds(30'000),
                          std::chrono::duration_cast<milliseconds>(hours(24))}) {
    const auto before_now = clock.now();
    const int64_t before_epoch = clock.epoch_ms();
    clock.advance(step);
    EXPECT_EQ(clock.now() - before_now, step);
    EXPECT_EQ(clock.epoch_ms() - before_epoch, step.count());
  }
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(clock.now() - start_now).count(), clock.epoch_ms() - start_epoch);
}

TEST(ManualClock, EpochCountsWholeMillisecondsAtTheEdge) {
  ManualClock clock(1'795'341'600'000);
  const int64_t start = clock.epoch_ms();
  clock.advance(microseconds(999));
  EXPECT_EQ(clock.epoch_ms(), start) << "999 us is not yet a millisecond";
  EXPECT_EQ(clock.now().time_since_epoch() % milliseconds(1), microseconds(999)) << "but now() saw it";
  clock.advance(microseconds(1));
  EXPECT_EQ(clock.epoch_ms(), start + 1);
}

TEST(ManualClock, NanosecondStepsAddUp) {
  ManualClock clock(0);
  const int64_t start = clock.epoch_ms();
  for (int i = 0; i < 999'999; ++i) clock.advance(nanoseconds(1));
  EXPECT_EQ(clock.epoch_ms(), start);
  clock.advance(nanoseconds(1));
  EXPECT_EQ(clock.epoch_ms(), start + 1);
}

TEST(ManualClock, DeadlineMinusOneMsHasNotPassedAndThenHas) {
  ManualClock clock;
  const auto deadline = clock.now() + seconds(3);
  clock.advance(milliseconds(2999));
  EXPECT_LT(clock.now(), deadline);
  clock.advance(milliseconds(1));
  EXPECT_GE(clock.now(), deadline);
}

TEST(ManualClock, AdvancingFromAnotherThreadIsSeen) {
  ManualClock clock(0);
  const int64_t start = clock.epoch_ms();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) clock.advance(milliseconds(1));
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(clock.epoch_ms() - start, 4000);
}

TEST(ManualClock, IsUsableThroughTheClockInterface) {
  ManualClock manual(1'795'341'600'000);
  const Clock& clock = manual;
  const int64_t before = clock.epoch_ms();
  manual.advance(seconds(2));
  EXPECT_EQ(clock.epoch_ms(), before + 2000);
}

TEST(SystemClock, EpochIsNearTheRealTimeAndNowIsMonotonic) {
  const Clock& clock = SystemClock::instance();
  // After 2024-01-01 and before 2100-01-01: a sanity bound, not a time source test.
  EXPECT_GT(clock.epoch_ms(), 1'704'067'200'000);
  EXPECT_LT(clock.epoch_ms(), 4'102'444'800'000);
  const auto a = clock.now();
  const auto b = clock.now();
  EXPECT_LE(a, b);
  EXPECT_EQ(&SystemClock::instance(), &SystemClock::instance());
}

}  // namespace
}  // namespace ripen
