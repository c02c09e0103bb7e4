#include "ripen/breaker_policy.h"

#include <cmath>

namespace ripen {
namespace {

// NaN, which a config parser can produce, fails both comparisons and is rejected.
bool is_rate(double x) { return x > 0 && x <= 1; }

}  // namespace

std::string check_breaker_policy(const BreakerPolicy& p) {
  if (p.window != BreakerPolicy::Window::count && p.window != BreakerPolicy::Window::time)
    return "window: must be count or time";
  if (p.window_calls < 1) return "window_calls: must be at least 1";
  // Results are kept in per-second buckets; a shorter window would forget a result
  // before the end of the second it was recorded in.
  if (p.window_ms < 1000) return "window_ms: must be at least 1000";
  if (p.minimum_calls < 1) return "minimum_calls: must be at least 1";
  if (!is_rate(p.failure_rate)) return "failure_rate: must be above 0 and at most 1";
  if (p.slow_call_ms < 0) return "slow_call_ms: must be 0 (off) or more";
  if (!is_rate(p.slow_rate)) return "slow_rate: must be above 0 and at most 1";
  if (p.open_ms < 1) return "open_ms: must be at least 1";
  if (!(p.open_backoff >= 1) || !std::isfinite(p.open_backoff)) return "open_backoff: must be at least 1";
  if (p.max_open_ms < p.open_ms) return "max_open_ms: must be at least open_ms";
  if (p.half_open_calls < 1) return "half_open_calls: must be at least 1";
  return "";
}

}  // namespace ripen
