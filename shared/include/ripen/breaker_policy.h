// A circuit breaker's thresholds (the breaker itself: worker/include/ripen/breaker.h).
// In shared because the config file carries one per downstream.
#pragma once

#include <cstdint>
#include <string>

namespace ripen {

struct BreakerPolicy {
  enum class Window { count, time };
  Window window = Window::count;
  int window_calls = 20;          // count window: the last N recorded calls (>= 1)
  int64_t window_ms = 60'000;     // time window: calls recorded in the last window_ms (>= 1000, per-second buckets)
  int minimum_calls = 10;         // no trip before this many calls are in the window (>= 1)
  double failure_rate = 0.5;      // trips when failures/calls >= this (0 < x <= 1)
  int64_t slow_call_ms = 0;       // a call taking >= this is slow; 0 = no slow-call rule
  double slow_rate = 1.0;         // trips when slow/calls >= this (0 < x <= 1)
  int64_t open_ms = 5'000;        // first wait in open before half-open (>= 1)
  double open_backoff = 2.0;      // each consecutive trip (without a close in between) multiplies the wait (>= 1)
  int64_t max_open_ms = 300'000;  // cap of the wait (>= open_ms)
  int half_open_calls = 3;        // trial calls let through in half-open (>= 1)
};

// Checks a policy; returns an error message naming the bad field ("failure_rate: must
// be ..."), or "" if fine.
std::string check_breaker_policy(const BreakerPolicy& policy);

}  // namespace ripen
