#include "ripen/retry.h"

namespace ripen {

RetryDecision decide_retry(const RunOutcome& run, const RetryPolicy& policy, const std::function<double()>& random) {
  RetryDecision d;
  if (run.ok) return d;
  bool permanent = run.permanent;
  for (const auto& pattern : policy.permanent_errors) {
    if (pattern.empty()) continue;
    if (run.code == pattern || run.error.find(pattern) != std::string::npos) permanent = true;
  }
  if (permanent) {
    d.verdict = RetryDecision::Verdict::dead;
    d.reason = "permanent failure";
  } else if (run.attempt >= run.max_attempts) {
    d.verdict = RetryDecision::Verdict::dead;
    d.reason = "attempts exhausted";
  } else {
    d.verdict = RetryDecision::Verdict::retry;
    d.delay_ms = backoff_ms(policy.backoff, run.attempt, random);
  }
  return d;
}

}  // namespace ripen
