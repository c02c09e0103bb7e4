// The circuit breaker, in simulated time: each test walks one path of the state
// machine (closed -> open -> half-open -> closed or open again) on a ManualClock and
// checks each edge both ways: one call or one millisecond short, nothing changes;
// at the edge, it does.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ripen/breaker.h"

namespace ripen {
namespace {

using State = BreakerState;

// Small numbers so that every edge is a few calls or a few seconds away.
BreakerPolicy small_policy() {
  BreakerPolicy p;
  p.window = BreakerPolicy::Window::count;
  p.window_calls = 10;
  p.minimum_calls = 4;
  p.failure_rate = 0.5;
  p.open_ms = 1000;
  p.open_backoff = 2.0;
  p.max_open_ms = 10'000;
  p.half_open_calls = 2;
  return p;
}

// One permitted call that ends with `ok` after `took`.
void call(CircuitBreaker& b, bool ok, Millis took = Millis(0)) {
  ASSERT_TRUE(b.allow());
  b.record(ok, took);
}

void calls(CircuitBreaker& b, int n, bool ok, Millis took = Millis(0)) {
  for (int i = 0; i < n; ++i) call(b, ok, took);
}

// Fails calls until the breaker opens (from closed).
void trip(CircuitBreaker& b) {
  for (int i = 0; i < 1000 && b.state() == State::closed; ++i) call(b, false);
  ASSERT_EQ(b.state(), State::open);
}

class BreakerTest : public ::testing::Test {
 protected:
  ManualClock clock_;
};

// ---- closed -> open ---------------------------------------------------------

TEST_F(BreakerTest, ClosedOpensOnFailureRate) {
  CircuitBreaker b(small_policy(), clock_);
  EXPECT_EQ(b.state(), State::closed);
  calls(b, 2, true);
  call(b, false);
  // 1 of 3 failed, and 3 is under the minimum anyway.
  EXPECT_EQ(b.state(), State::closed);
  const auto now = clock_.now();
  call(b, false);  // 2 of 4 = 0.5
  EXPECT_EQ(b.state(), State::open);
  EXPECT_FALSE(b.allow());
  const BreakerSnapshot s = b.snapshot();
  EXPECT_EQ(s.state, State::open);
  EXPECT_EQ(s.trips, 1);
  EXPECT_EQ(s.open_for, Millis(1000));
  EXPECT_EQ(s.open_until, now + Millis(1000));
  EXPECT_EQ(s.calls, 0);  // opening clears the window
  EXPECT_EQ(s.failures, 0);
  EXPECT_EQ(b.next_allowed(), now + Millis(1000));
}

TEST_F(BreakerTest, StaysClosedBelowMinimumCalls) {
  CircuitBreaker b(small_policy(), clock_);
  calls(b, 3, false);  // 100% failures, but only 3 calls of the minimum 4
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.snapshot().calls, 3);
  EXPECT_EQ(b.snapshot().failures, 3);
  EXPECT_EQ(b.next_allowed(), clock_.now());
  call(b, false);
  EXPECT_EQ(b.state(), State::open);
}

TEST_F(BreakerTest, FailureRateJustBelowTheLimitStaysClosed) {
  BreakerPolicy p = small_policy();
  p.window_calls = 20;
  p.minimum_calls = 10;
  p.failure_rate = 0.3;
  CircuitBreaker b(p, clock_);
  calls(b, 8, true);
  calls(b, 3, false);  // judged at 2/10, then 3/11 = 0.27
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.snapshot().calls, 11);
  EXPECT_EQ(b.snapshot().failures, 3);
}

TEST_F(BreakerTest, FailureRateExactlyAtTheLimitOpens) {
  BreakerPolicy p = small_policy();
  p.window_calls = 20;
  p.minimum_calls = 10;
  p.failure_rate = 0.3;  // not exact in binary; 3/10 must still count as reaching it
  CircuitBreaker b(p, clock_);
  calls(b, 7, true);
  calls(b, 2, false);
  EXPECT_EQ(b.state(), State::closed);
  call(b, false);  // 3/10
  EXPECT_EQ(b.state(), State::open);
}

TEST_F(BreakerTest, FailureRateOfOneNeedsEveryCallToFail) {
  BreakerPolicy p = small_policy();
  p.failure_rate = 1.0;
  CircuitBreaker b(p, clock_);
  call(b, true);
  calls(b, 3, false);  // 3/4
  EXPECT_EQ(b.state(), State::closed);
  CircuitBreaker all(p, clock_);
  calls(all, 4, false);
  EXPECT_EQ(all.state(), State::open);
}

TEST_F(BreakerTest, ClosedOpensOnSlowCallRate) {
  BreakerPolicy p = small_policy();
  p.slow_call_ms = 100;
  p.slow_rate = 0.5;
  CircuitBreaker b(p, clock_);
  calls(b, 2, true, Millis(99));  // just under the slow limit: not slow
  call(b, true, Millis(100));     // at the limit: slow
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.snapshot().slow, 1);
  EXPECT_EQ(b.snapshot().failures, 0);
  call(b, true, Millis(100));  // 2 of 4 slow, none failed
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.snapshot().trips, 1);
}

TEST_F(BreakerTest, SlowRateJustBelowTheLimitStaysClosed) {
  BreakerPolicy p = small_policy();
  p.slow_call_ms = 100;
  p.slow_rate = 0.75;
  CircuitBreaker b(p, clock_);
  call(b, true, Millis(0));
  calls(b, 2, true, Millis(500));  // 2/3, under the minimum
  call(b, true, Millis(0));        // 2/4
  call(b, true, Millis(500));      // 3/5 = 0.6
  EXPECT_EQ(b.state(), State::closed);
  call(b, true, Millis(500));  // 4/6 = 0.67
  EXPECT_EQ(b.state(), State::closed);
  call(b, true, Millis(500));  // 5/7 = 0.71
  EXPECT_EQ(b.state(), State::closed);
  call(b, true, Millis(500));  // 6/8 = 0.75
  EXPECT_EQ(b.state(), State::open);
}

TEST_F(BreakerTest, SlowCallMsZeroTurnsTheSlowRuleOff) {
  BreakerPolicy p = small_policy();
  p.slow_call_ms = 0;
  p.slow_rate = 0.1;
  CircuitBreaker b(p, clock_);
  calls(b, 10, true, Millis(3'600'000));
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.snapshot().slow, 0);
}

TEST_F(BreakerTest, FailureThatIsAlsoSlowCountsInBoth) {
  BreakerPolicy p = small_policy();
  p.slow_call_ms = 100;
  CircuitBreaker b(p, clock_);
  call(b, false, Millis(100));
  const BreakerSnapshot s = b.snapshot();
  EXPECT_EQ(s.calls, 1);
  EXPECT_EQ(s.failures, 1);
  EXPECT_EQ(s.slow, 1);
}

// ---- windows --------------------------------------------------------------

TEST_F(BreakerTest, CountWindowForgetsOldCalls) {
  BreakerPolicy p = small_policy();
  p.window_calls = 4;
  CircuitBreaker b(p, clock_);
  call(b, false);
  calls(b, 3, true);
  EXPECT_EQ(b.snapshot().calls, 4);
  EXPECT_EQ(b.snapshot().failures, 1);
  call(b, true);  // pushes the failure out
  EXPECT_EQ(b.snapshot().calls, 4);
  EXPECT_EQ(b.snapshot().failures, 0);
  call(b, false);
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.snapshot().failures, 1);
  call(b, false);  // 2 of the last 4
  EXPECT_EQ(b.state(), State::open);
}

TEST_F(BreakerTest, CountWindowMinimumIsCappedAtTheWindowSize) {
  BreakerPolicy p = small_policy();
  p.window_calls = 4;
  p.minimum_calls = 10;  // could never be reached in a window of 4; capped as resilience4j does
  CircuitBreaker b(p, clock_);
  calls(b, 3, false);
  EXPECT_EQ(b.state(), State::closed);
  call(b, false);
  EXPECT_EQ(b.state(), State::open);
}

TEST_F(BreakerTest, CountWindowKeepsNoTimeLimit) {
  CircuitBreaker b(small_policy(), clock_);
  calls(b, 3, false);
  clock_.advance(std::chrono::hours(24));
  EXPECT_EQ(b.snapshot().calls, 3);
  call(b, false);
  EXPECT_EQ(b.state(), State::open);
}

BreakerPolicy time_policy() {
  BreakerPolicy p = small_policy();
  p.window = BreakerPolicy::Window::time;
  p.window_ms = 10'000;
  p.minimum_calls = 2;
  return p;
}

TEST_F(BreakerTest, TimeWindowForgetsCallsOlderThanTheWindow) {
  CircuitBreaker b(time_policy(), clock_);
  call(b, false);
  clock_.advance(Millis(9'999));
  EXPECT_EQ(b.snapshot().calls, 1);
  EXPECT_EQ(b.snapshot().failures, 1);
  clock_.advance(Millis(1));
  EXPECT_EQ(b.snapshot().calls, 0);
  EXPECT_EQ(b.snapshot().failures, 0);
  call(b, false);  // alone in the window: under the minimum of 2
  EXPECT_EQ(b.state(), State::closed);
}

TEST_F(BreakerTest, TimeWindowOpensWhenBothCallsAreInside) {
  CircuitBreaker b(time_policy(), clock_);
  call(b, false);
  clock_.advance(Millis(9'999));
  call(b, false);
  EXPECT_EQ(b.state(), State::open);
}

TEST_F(BreakerTest, TimeWindowGroupsCallsByTheSecond) {
  // Seconds count from the breaker's creation. A call late in a second leaves with
  // the whole second, window_ms after the second began.
  BreakerPolicy p = time_policy();
  p.minimum_calls = 3;  // keep it closed while we watch the window
  CircuitBreaker b(p, clock_);
  clock_.advance(Millis(999));
  call(b, false);  // second 0
  clock_.advance(Millis(1));
  call(b, true);                  // second 1
  clock_.advance(Millis(8'999));  // t = 9'999
  EXPECT_EQ(b.snapshot().calls, 2);
  clock_.advance(Millis(1));  // t = 10'000: second 0 leaves
  EXPECT_EQ(b.snapshot().calls, 1);
  EXPECT_EQ(b.snapshot().failures, 0);
  clock_.advance(Millis(999));  // t = 10'999
  EXPECT_EQ(b.snapshot().calls, 1);
  clock_.advance(Millis(1));  // t = 11'000: second 1 leaves
  EXPECT_EQ(b.snapshot().calls, 0);
}

TEST_F(BreakerTest, TimeWindowCountsEverySecondInside) {
  BreakerPolicy p = time_policy();
  p.minimum_calls = 10;
  CircuitBreaker b(p, clock_);
  for (int i = 0; i < 9; ++i) {
    call(b, false);
    clock_.advance(Millis(1000));
  }
  // Calls at 0..8 s; at t = 9 s all nine are inside.
  EXPECT_EQ(b.snapshot().calls, 9);
  EXPECT_EQ(b.state(), State::closed);
  call(b, false);
  EXPECT_EQ(b.state(), State::open);
}

// ---- open -> half-open ------------------------------------------------------

TEST_F(BreakerTest, OpenToHalfOpenAfterWait) {
  CircuitBreaker b(small_policy(), clock_);
  trip(b);
  const auto until = b.snapshot().open_until;
  clock_.advance(Millis(999));
  EXPECT_EQ(b.state(), State::open);
  EXPECT_FALSE(b.allow());
  EXPECT_EQ(b.next_allowed(), until);
  clock_.advance(Millis(1));
  EXPECT_EQ(clock_.now(), until);
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_EQ(b.next_allowed(), clock_.now());
  EXPECT_TRUE(b.allow());
  const BreakerSnapshot s = b.snapshot();
  EXPECT_EQ(s.state, State::half_open);
  EXPECT_EQ(s.trips, 1);
  EXPECT_EQ(s.open_for, Millis(1000));
  EXPECT_EQ(s.open_until, Clock::time_point{});
}

TEST_F(BreakerTest, AllowAloneMakesTheTransition) {
  CircuitBreaker b(small_policy(), clock_);
  trip(b);
  clock_.advance(Millis(1000));
  EXPECT_TRUE(b.allow());  // no state() call in between: allow() is lazy too
}

// ---- half-open ----------------------------------------------------------------

TEST_F(BreakerTest, HalfOpenLetsOnlyTheTrialCallsThrough) {
  CircuitBreaker b(small_policy(), clock_);  // half_open_calls = 2
  trip(b);
  clock_.advance(Millis(1000));
  EXPECT_TRUE(b.allow());
  EXPECT_TRUE(b.allow());
  EXPECT_FALSE(b.allow());
  EXPECT_EQ(b.next_allowed(), Clock::time_point::max());
  // A recorded success keeps its slot: trials in flight + recorded <= 2.
  b.record(true, Millis(0));
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_FALSE(b.allow());
  EXPECT_EQ(b.snapshot().calls, 1);
  // Time does not free a slot either.
  clock_.advance(std::chrono::hours(1));
  EXPECT_FALSE(b.allow());
}

TEST_F(BreakerTest, HalfOpenSuccessesClose) {
  CircuitBreaker b(small_policy(), clock_);
  trip(b);
  clock_.advance(Millis(1000));
  call(b, true);
  EXPECT_EQ(b.state(), State::half_open);  // one trial short
  call(b, true);
  EXPECT_EQ(b.state(), State::closed);
  const BreakerSnapshot s = b.snapshot();
  EXPECT_EQ(s.trips, 0);
  EXPECT_EQ(s.calls, 0);
  EXPECT_EQ(s.failures, 0);
  // A fresh window: the minimum counts again from zero.
  calls(b, 3, false);
  EXPECT_EQ(b.state(), State::closed);
  call(b, false);
  EXPECT_EQ(b.state(), State::open);
}

TEST_F(BreakerTest, HalfOpenFailureReopensWithLongerWait) {
  CircuitBreaker b(small_policy(), clock_);
  trip(b);
  clock_.advance(Millis(1000));
  call(b, true);
  const auto now = clock_.now();
  call(b, false);  // the second trial fails: reopen at once
  EXPECT_EQ(b.state(), State::open);
  EXPECT_FALSE(b.allow());
  BreakerSnapshot s = b.snapshot();
  EXPECT_EQ(s.trips, 2);
  EXPECT_EQ(s.open_for, Millis(2000));
  EXPECT_EQ(s.open_until, now + Millis(2000));
  clock_.advance(Millis(1999));
  EXPECT_EQ(b.state(), State::open);
  clock_.advance(Millis(1));
  EXPECT_EQ(b.state(), State::half_open);
  call(b, false);  // the first trial fails
  s = b.snapshot();
  EXPECT_EQ(s.state, State::open);
  EXPECT_EQ(s.trips, 3);
  EXPECT_EQ(s.open_for, Millis(4000));
}

TEST_F(BreakerTest, HalfOpenSlowTrialReopens) {
  BreakerPolicy p = small_policy();
  p.slow_call_ms = 100;
  CircuitBreaker b(p, clock_);
  trip(b);
  clock_.advance(Millis(1000));
  call(b, true, Millis(99));  // just fast enough
  EXPECT_EQ(b.state(), State::half_open);
  call(b, true, Millis(100));  // slow, though it succeeded
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.snapshot().trips, 2);
}

TEST_F(BreakerTest, HalfOpenLateTrialResultsAfterReopenAreIgnored) {
  CircuitBreaker b(small_policy(), clock_);
  trip(b);
  clock_.advance(Millis(1000));
  ASSERT_TRUE(b.allow());
  ASSERT_TRUE(b.allow());
  b.record(false, Millis(0));  // reopens (wait 2000)
  b.record(true, Millis(0));   // the other trial ends while open
  clock_.advance(Millis(2000));
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_EQ(b.snapshot().calls, 0);
  // Both slots are free again.
  EXPECT_TRUE(b.allow());
  EXPECT_TRUE(b.allow());
  EXPECT_FALSE(b.allow());
}

// The open waits of `n` consecutive trips: trips once, then each time the wait is
// over fails the one trial (half_open_calls is set to 1).
std::vector<int64_t> waits_of_trips(BreakerPolicy p, ManualClock& clock, int n) {
  p.half_open_calls = 1;
  CircuitBreaker b(p, clock);
  trip(b);
  std::vector<int64_t> waits;
  for (int i = 0; i < n; ++i) {
    const BreakerSnapshot s = b.snapshot();
    EXPECT_EQ(s.trips, i + 1);
    waits.push_back(s.open_for.count());
    clock.advance(s.open_for - Millis(1));
    EXPECT_EQ(b.state(), State::open) << "trip " << i + 1;
    clock.advance(Millis(1));
    call(b, false);
  }
  return waits;
}

TEST_F(BreakerTest, WaitGrowsByTheBackoffFactor) {
  BreakerPolicy p = small_policy();
  p.open_backoff = 1.5;
  EXPECT_EQ(waits_of_trips(p, clock_, 4), (std::vector<int64_t>{1000, 1500, 2250, 3375}));
}

TEST_F(BreakerTest, BackoffOfOneKeepsTheWait) {
  BreakerPolicy p = small_policy();
  p.open_backoff = 1.0;
  EXPECT_EQ(waits_of_trips(p, clock_, 5), (std::vector<int64_t>{1000, 1000, 1000, 1000, 1000}));
}

TEST_F(BreakerTest, OpenWaitIsCapped) {
  BreakerPolicy p = small_policy();
  p.max_open_ms = 4000;  // reached exactly by the third trip
  EXPECT_EQ(waits_of_trips(p, clock_, 6), (std::vector<int64_t>{1000, 2000, 4000, 4000, 4000, 4000}));
}

TEST_F(BreakerTest, OpenWaitCapBetweenDoublingsIsTheCap) {
  BreakerPolicy p = small_policy();
  p.max_open_ms = 3999;
  EXPECT_EQ(waits_of_trips(p, clock_, 4), (std::vector<int64_t>{1000, 2000, 3999, 3999}));
}

TEST_F(BreakerTest, ManyTripsStayAtTheCap) {
  // open_backoff^(trips - 1) is far past any integer (and double) here.
  const std::vector<int64_t> waits = waits_of_trips(small_policy(), clock_, 2000);
  EXPECT_EQ(waits.back(), 10'000);
}

TEST_F(BreakerTest, HugeWaitStaysOpenInsteadOfOverflowing) {
  BreakerPolicy p = small_policy();
  p.open_ms = std::numeric_limits<int64_t>::max();
  p.max_open_ms = std::numeric_limits<int64_t>::max();
  CircuitBreaker b(p, clock_);
  trip(b);
  EXPECT_EQ(b.snapshot().open_until, Clock::time_point::max());
  clock_.advance(std::chrono::hours(24 * 365));
  EXPECT_EQ(b.state(), State::open);
  EXPECT_FALSE(b.allow());
}

TEST_F(BreakerTest, CloseResetsTheGrowingWait) {
  CircuitBreaker b(small_policy(), clock_);
  trip(b);
  clock_.advance(Millis(1000));
  call(b, false);  // trips = 2, wait 2000
  ASSERT_EQ(b.snapshot().open_for, Millis(2000));
  clock_.advance(Millis(2000));
  calls(b, 2, true);
  ASSERT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.snapshot().trips, 0);
  EXPECT_EQ(b.snapshot().open_for, Millis(2000));  // the last wait, for the console
  trip(b);
  EXPECT_EQ(b.snapshot().trips, 1);
  EXPECT_EQ(b.snapshot().open_for, Millis(1000));
}

// ---- permits ------------------------------------------------------------------

TEST_F(BreakerTest, ReleaseFreesATrialSlot) {
  BreakerPolicy p = small_policy();
  p.half_open_calls = 1;
  CircuitBreaker b(p, clock_);
  trip(b);
  clock_.advance(Millis(1000));
  EXPECT_TRUE(b.allow());
  EXPECT_FALSE(b.allow());
  b.release();
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_EQ(b.next_allowed(), clock_.now());
  EXPECT_TRUE(b.allow());
  EXPECT_FALSE(b.allow());
  b.record(true, Millis(0));
  EXPECT_EQ(b.state(), State::closed);
}

TEST_F(BreakerTest, ReleaseWithoutAnOutstandingTrialFreesNothing) {
  CircuitBreaker b(small_policy(), clock_);
  trip(b);
  clock_.advance(Millis(1000));
  b.release();  // a permit from before the trip
  EXPECT_TRUE(b.allow());
  EXPECT_TRUE(b.allow());
  EXPECT_FALSE(b.allow());
}

TEST_F(BreakerTest, ReleaseInClosedChangesNothing) {
  CircuitBreaker b(small_policy(), clock_);
  ASSERT_TRUE(b.allow());
  b.release();
  EXPECT_EQ(b.snapshot().calls, 0);
  EXPECT_EQ(b.state(), State::closed);
}

TEST_F(BreakerTest, ResultsWhileOpenAreIgnored) {
  CircuitBreaker b(small_policy(), clock_);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(b.allow());  // slow calls in flight
  trip(b);
  // The five end while open, under the old judgement: they count nowhere.
  for (int i = 0; i < 5; ++i) b.record(i % 2 == 0, Millis(0));
  b.release();
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.snapshot().calls, 0);
  EXPECT_EQ(b.snapshot().trips, 1);
  clock_.advance(Millis(1000));
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_EQ(b.snapshot().calls, 0);
  EXPECT_TRUE(b.allow());
  EXPECT_TRUE(b.allow());
}

TEST_F(BreakerTest, HalfOpenIgnoresResultsWithoutAnOutstandingTrial) {
  CircuitBreaker b(small_policy(), clock_);
  ASSERT_TRUE(b.allow());  // a call from the closed days, still running
  ASSERT_TRUE(b.allow());
  trip(b);
  clock_.advance(Millis(1000));
  b.record(false, Millis(0));  // no trial out: ignored
  EXPECT_EQ(b.state(), State::half_open);
  // Permits are not tagged: once a trial is out, the old call's result takes its place.
  ASSERT_TRUE(b.allow());
  b.record(false, Millis(0));
  EXPECT_EQ(b.state(), State::open);
  EXPECT_EQ(b.snapshot().trips, 2);
}

// ---- force_open_until ---------------------------------------------------------

TEST_F(BreakerTest, ForceOpenUntilOpensWithoutCountingATrip) {
  CircuitBreaker b(small_policy(), clock_);
  calls(b, 3, false);
  const auto until = clock_.now() + Millis(3000);
  b.force_open_until(until);
  BreakerSnapshot s = b.snapshot();
  EXPECT_EQ(s.state, State::open);
  EXPECT_EQ(s.trips, 0);
  EXPECT_EQ(s.open_until, until);
  EXPECT_EQ(s.open_for, Millis(3000));
  EXPECT_EQ(s.calls, 0);
  EXPECT_FALSE(b.allow());
  EXPECT_EQ(b.next_allowed(), until);
  clock_.advance(Millis(2999));
  EXPECT_EQ(b.state(), State::open);
  clock_.advance(Millis(1));
  EXPECT_EQ(b.state(), State::half_open);
  // The first local trip: the first wait, not a grown one.
  call(b, false);
  s = b.snapshot();
  EXPECT_EQ(s.state, State::open);
  EXPECT_EQ(s.trips, 1);
  EXPECT_EQ(s.open_for, Millis(1000));
}

TEST_F(BreakerTest, ForceOpenUntilThenTrialsClose) {
  CircuitBreaker b(small_policy(), clock_);
  b.force_open_until(clock_.now() + Millis(500));
  clock_.advance(Millis(500));
  calls(b, 2, true);
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.snapshot().trips, 0);
}

TEST_F(BreakerTest, ForceOpenUntilDoesNotShortenALongerOpen) {
  CircuitBreaker b(small_policy(), clock_);
  trip(b);
  const auto until = b.snapshot().open_until;  // now + 1000
  b.force_open_until(until - Millis(1));
  EXPECT_EQ(b.snapshot().open_until, until);
  b.force_open_until(until);
  EXPECT_EQ(b.snapshot().open_until, until);
  EXPECT_EQ(b.snapshot().open_for, Millis(1000));
  b.force_open_until(until + Millis(1));  // later: extends
  EXPECT_EQ(b.snapshot().open_until, until + Millis(1));
  EXPECT_EQ(b.snapshot().trips, 1);
  clock_.advance(Millis(1000));
  EXPECT_EQ(b.state(), State::open);
  clock_.advance(Millis(1));
  EXPECT_EQ(b.state(), State::half_open);
  call(b, false);  // the local count went on from 1
  EXPECT_EQ(b.snapshot().trips, 2);
  EXPECT_EQ(b.snapshot().open_for, Millis(2000));
}

TEST_F(BreakerTest, ForceOpenUntilNowOrEarlierDoesNothing) {
  CircuitBreaker b(small_policy(), clock_);
  call(b, false);
  b.force_open_until(clock_.now());
  b.force_open_until(clock_.now() - Millis(1));
  EXPECT_EQ(b.state(), State::closed);
  EXPECT_EQ(b.snapshot().calls, 1);
}

TEST_F(BreakerTest, ForceOpenUntilInHalfOpenDropsTheTrials) {
  CircuitBreaker b(small_policy(), clock_);
  trip(b);
  clock_.advance(Millis(1000));
  call(b, true);
  ASSERT_TRUE(b.allow());
  b.force_open_until(clock_.now() + Millis(100));
  b.record(true, Millis(0));  // while open: ignored
  clock_.advance(Millis(100));
  EXPECT_EQ(b.state(), State::half_open);
  EXPECT_EQ(b.snapshot().calls, 0);
  call(b, true);
  EXPECT_EQ(b.state(), State::half_open);  // needs two fresh successes
  call(b, true);
  EXPECT_EQ(b.state(), State::closed);
}

// ---- policy and names -----------------------------------------------------------

TEST(BreakerPolicyCheck, DefaultAndEdgeValuesAreFine) {
  EXPECT_EQ(check_breaker_policy(BreakerPolicy{}), "");
  BreakerPolicy p;
  p.window_calls = 1;
  p.window_ms = 1000;
  p.minimum_calls = 1;
  p.failure_rate = 1.0;
  p.slow_call_ms = 0;
  p.slow_rate = 1.0;
  p.open_ms = 1;
  p.open_backoff = 1.0;
  p.max_open_ms = 1;
  p.half_open_calls = 1;
  EXPECT_EQ(check_breaker_policy(p), "");
  p.failure_rate = std::nextafter(0.0, 1.0);
  p.slow_rate = std::nextafter(0.0, 1.0);
  EXPECT_EQ(check_breaker_policy(p), "");
}

struct BadPolicy {
  const char* field;
  void (*spoil)(BreakerPolicy&);
};

TEST(BreakerPolicyCheck, CheckPolicyNamesTheBadField) {
  constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const std::vector<BadPolicy> cases = {
      {"window", [](BreakerPolicy& p) { p.window = static_cast<BreakerPolicy::Window>(7); }},
      {"window_calls", [](BreakerPolicy& p) { p.window_calls = 0; }},
      {"window_ms", [](BreakerPolicy& p) { p.window_ms = 999; }},
      {"minimum_calls", [](BreakerPolicy& p) { p.minimum_calls = 0; }},
      {"failure_rate", [](BreakerPolicy& p) { p.failure_rate = 0; }},
      {"failure_rate", [](BreakerPolicy& p) { p.failure_rate = std::nextafter(1.0, 2.0); }},
      {"failure_rate", [](BreakerPolicy& p) { p.failure_rate = kNaN; }},
      {"slow_call_ms", [](BreakerPolicy& p) { p.slow_call_ms = -1; }},
      {"slow_rate", [](BreakerPolicy& p) { p.slow_rate = 0; }},
      {"slow_rate", [](BreakerPolicy& p) { p.slow_rate = 1.5; }},
      {"open_ms", [](BreakerPolicy& p) { p.open_ms = 0; }},
      {"open_backoff", [](BreakerPolicy& p) { p.open_backoff = std::nextafter(1.0, 0.0); }},
      {"open_backoff", [](BreakerPolicy& p) { p.open_backoff = kNaN; }},
      {"open_backoff", [](BreakerPolicy& p) { p.open_backoff = kInf; }},
      {"max_open_ms", [](BreakerPolicy& p) { p.max_open_ms = p.open_ms - 1; }},
      {"half_open_calls", [](BreakerPolicy& p) { p.half_open_calls = 0; }},
  };
  for (const BadPolicy& c : cases) {
    BreakerPolicy p;
    c.spoil(p);
    const std::string error = check_breaker_policy(p);
    EXPECT_EQ(error.rfind(std::string(c.field) + ": ", 0), 0u) << c.field << " -> '" << error << "'";
  }
}

TEST(BreakerPolicyCheck, ConstructorRejectsABadPolicy) {
  ManualClock clock;
  BreakerPolicy p;
  p.half_open_calls = 0;
  try {
    CircuitBreaker b(p, clock);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()).rfind("half_open_calls: ", 0), 0u) << e.what();
  }
}

TEST(BreakerStateName, ToStringNamesEachState) {
  EXPECT_STREQ(to_string(BreakerState::closed), "closed");
  EXPECT_STREQ(to_string(BreakerState::open), "open");
  EXPECT_STREQ(to_string(BreakerState::half_open), "half_open");
}

}  // namespace
}  // namespace ripen
