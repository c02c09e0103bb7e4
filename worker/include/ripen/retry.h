// What becomes of a task after a handler run: the retry policy, apart from the
// worker so it can be tested in isolation.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ripen/backoff.h"

namespace ripen {

// One task type's policy, as the worker applies it (config: [types.<type>]).
struct RetryPolicy {
  BackoffPolicy backoff;
  // A failure whose code (ripen::Failure::code) is one of these, or whose
  // message contains one, is permanent: retrying cannot fix it (e.g.
  // "card_declined", "http_404").
  std::vector<std::string> permanent_errors;
};

struct RunOutcome {
  bool ok = false;
  bool permanent = false;  // the handler threw ripen::Permanent
  std::string error;
  std::string code;  // the handler's error code, when it gave one
  int attempt = 1;   // the attempt that just ran, 1 for the first
  int max_attempts = 1;
};

struct RetryDecision {
  enum class Verdict { succeeded, retry, dead };
  Verdict verdict = Verdict::succeeded;
  int64_t delay_ms = 0;  // retry: the wait before the next attempt
  std::string reason;    // dead: "permanent failure" or "attempts exhausted"
};

// Success -> succeeded. A permanent failure (Permanent, or a code or message
// matching permanent_errors) -> dead at once, whatever attempts are left. Otherwise a
// retry after backoff_ms(policy.backoff, attempt, random) until attempt reaches
// max_attempts -> dead. `random` returns a uniform double in [0, 1).
RetryDecision decide_retry(const RunOutcome& run, const RetryPolicy& policy, const std::function<double()>& random);

}  // namespace ripen
