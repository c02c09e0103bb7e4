// ReconnectPacer in simulated time: how long a client waits before it tries a
// server again, at the exact edges.
#include <gtest/gtest.h>

#include <chrono>

#include "ripen/backoff.h"
#include "ripen/clock.h"

namespace ripen {
namespace {

using std::chrono::milliseconds;

TEST(ReconnectPacer, ReadyBeforeAnyFailure) {
  ManualClock clock;
  ReconnectPacer pacer(clock);
  EXPECT_TRUE(pacer.ready());
  EXPECT_EQ(pacer.wait(), milliseconds(0));
}

TEST(ReconnectPacer, FirstFailureWaitsTheMinimumToTheMillisecond) {
  ManualClock clock;
  ReconnectPacer pacer(clock, milliseconds(50), milliseconds(2000));
  EXPECT_EQ(pacer.failed(), milliseconds(50));
  EXPECT_FALSE(pacer.ready());
  clock.advance(milliseconds(49));
  EXPECT_FALSE(pacer.ready());
  clock.advance(milliseconds(1));
  EXPECT_TRUE(pacer.ready());
}

TEST(ReconnectPacer, RepeatedFailuresDoubleUpToTheCap) {
  ManualClock clock;
  ReconnectPacer pacer(clock, milliseconds(50), milliseconds(2000));
  const int expected[] = {50, 100, 200, 400, 800, 1600, 2000, 2000, 2000};
  for (int ms : expected) {
    EXPECT_EQ(pacer.failed(), milliseconds(ms));
    clock.advance(pacer.wait());  // the next attempt comes as soon as allowed, and fails
    EXPECT_TRUE(pacer.ready());
  }
}

TEST(ReconnectPacer, FailureAfterAQuietSettlePeriodStartsOverFromTheMinimum) {
  ManualClock clock;
  ReconnectPacer pacer(clock, milliseconds(50), milliseconds(2000), milliseconds(30'000));
  for (int i = 0; i < 10; ++i) pacer.failed();
  ASSERT_EQ(pacer.wait(), milliseconds(2000));

  clock.advance(milliseconds(29'999));
  EXPECT_EQ(pacer.failed(), milliseconds(2000)) << "within the settle period: still backing off";
  clock.advance(milliseconds(30'000));
  EXPECT_EQ(pacer.failed(), milliseconds(50)) << "a quiet settle period since the last failure";
}

// A connection that opens and breaks at once (a broker that closes the channel
// on a bad declare) fails every time it is allowed to try: it must back off as
// a server that is down does, not retry every `min`.
TEST(ReconnectPacer, ConnectionThatBreaksRightAfterOpeningStillBacksOff) {
  ManualClock clock;
  ReconnectPacer pacer(clock, milliseconds(50), milliseconds(2000));
  milliseconds total{0};
  int attempts = 0;
  while (total < milliseconds(10'000)) {
    ASSERT_TRUE(pacer.ready());
    ++attempts;                        // connect succeeds...
    const auto wait = pacer.failed();  // ...and the channel is closed at once
    clock.advance(wait);
    total += wait;
  }
  EXPECT_LE(attempts, 11) << "at most ~1 attempt per 2 s once backed off";
}

}  // namespace
}  // namespace ripen
