// Exponential backoff with full jitter: attempt n waits a uniform random time in
// [0, min(cap, base * 2^(n-1))]. Full jitter spreads retries of tasks that failed
// together (an outage) so they do not return in one stampede.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>

#include "ripen/clock.h"

namespace ripen {

struct BackoffPolicy {
  int64_t base_ms = 1000;
  int64_t cap_ms = 3'600'000;
};

// The upper bound of the wait before attempt `attempt` + 1 (attempt >= 1 failed).
int64_t backoff_ceiling_ms(const BackoffPolicy& policy, int attempt);

// A draw in [0, ceiling]; `random` returns a uniform double in [0, 1).
int64_t backoff_ms(const BackoffPolicy& policy, int attempt, const std::function<double()>& random);

// Paces reconnects to one server. After a failure the next attempt waits `min`;
// each failure within `settle` of the previous one doubles the wait, up to `max`.
// A failure after a quiet `settle` starts again from `min`. Keyed on failures
// alone, so a connection that opens and then breaks at once (a broker refusing a
// declare, say) backs off as surely as one that cannot open at all.
class ReconnectPacer {
 public:
  explicit ReconnectPacer(Clock& clock, Millis min = Millis(50), Millis max = Millis(2000),
                          Millis settle = Millis(30'000))
      : clock_(clock), min_(min), max_(max), settle_(settle) {}

  // Whether an attempt may be made now.
  bool ready() const { return clock_.now() >= next_; }
  // Records a failed attempt or a broken connection; returns the wait before the next.
  Millis failed();
  Millis wait() const { return wait_; }

 private:
  Clock& clock_;
  Millis min_, max_, settle_;
  Millis wait_{0};
  bool failed_before_ = false;
  Clock::time_point last_failure_{};
  Clock::time_point next_{};
};

}  // namespace ripen
