// Exponential backoff with full jitter: attempt n waits a uniform random time in
// [0, min(cap, base * 2^(n-1))]. Full jitter spreads retries of tasks that failed
// together (an outage) so they do not return in one stampede.
#pragma once

#include <cstdint>
#include <functional>
#include <random>

namespace ripen {

struct BackoffPolicy {
  int64_t base_ms = 1000;
  int64_t cap_ms = 3'600'000;
};

// The upper bound of the wait before attempt `attempt` + 1 (attempt >= 1 failed).
int64_t backoff_ceiling_ms(const BackoffPolicy& policy, int attempt);

// A draw in [0, ceiling]; `random` returns a uniform double in [0, 1).
int64_t backoff_ms(const BackoffPolicy& policy, int attempt, const std::function<double()>& random);

}  // namespace ripen
