#include "ripen/backoff.h"

#include <algorithm>
#include <cmath>

namespace ripen {

int64_t backoff_ceiling_ms(const BackoffPolicy& policy, int attempt) {
  if (attempt < 1) attempt = 1;
  // Doubling past 2^62 overflows; the cap is reached long before in practice.
  const int shift = std::min(attempt - 1, 40);
  const double ceiling = static_cast<double>(policy.base_ms) * std::ldexp(1.0, shift);
  // Compared as doubles but returned as the cap itself: a double at or past 2^63
  // does not convert back to int64 (a huge cap rounds up to exactly 2^63).
  if (ceiling >= static_cast<double>(policy.cap_ms)) return policy.cap_ms;
  return static_cast<int64_t>(ceiling);
}

int64_t backoff_ms(const BackoffPolicy& policy, int attempt, const std::function<double()>& random) {
  const int64_t ceiling = backoff_ceiling_ms(policy, attempt);
  const double r = std::clamp(random(), 0.0, 1.0);
  return std::min(ceiling, static_cast<int64_t>(r * static_cast<double>(ceiling + 1)));
}

Millis ReconnectPacer::failed() {
  const auto now = clock_.now();
  // Most breaks are one dropped connection: the first retry comes quickly. A
  // server that keeps failing is not hammered.
  wait_ = failed_before_ && now - last_failure_ < settle_ ? std::min(max_, std::max(min_, wait_ * 2)) : min_;
  failed_before_ = true;
  last_failure_ = now;
  next_ = now + wait_;
  return wait_;
}

}  // namespace ripen
