// The retry policy: success, retryable failures with backoff, permanent
// failures by exception, code or message, and exhausted attempts, at their edges.
#include <gtest/gtest.h>

#include "ripen/retry.h"

namespace ripen {
namespace {

using Verdict = RetryDecision::Verdict;

RetryPolicy policy() {
  RetryPolicy p;
  p.backoff = {1000, 60'000};
  p.permanent_errors = {"card declined", "E_INVALID"};
  return p;
}

RunOutcome failed(const std::string& error, int attempt, int max_attempts) {
  RunOutcome r;
  r.error = error;
  r.attempt = attempt;
  r.max_attempts = max_attempts;
  return r;
}

double top() { return 0.999999; }

TEST(Retry, SuccessSucceeds) {
  RunOutcome ok;
  ok.ok = true;
  EXPECT_EQ(decide_retry(ok, policy(), top).verdict, Verdict::succeeded);
}

TEST(Retry, FailureWithAttemptsLeftRetriesWithinTheBackoffCeiling) {
  for (int attempt = 1; attempt <= 4; ++attempt) {
    auto d = decide_retry(failed("timeout", attempt, 5), policy(), top);
    EXPECT_EQ(d.verdict, Verdict::retry) << attempt;
    EXPECT_LE(d.delay_ms, backoff_ceiling_ms(policy().backoff, attempt));
    EXPECT_GE(d.delay_ms, backoff_ceiling_ms(policy().backoff, attempt) - 1) << "the top of the jitter range";
    EXPECT_EQ(decide_retry(failed("timeout", attempt, 5), policy(), [] { return 0.0; }).delay_ms, 0)
        << "full jitter reaches zero";
  }
}

TEST(Retry, LastAttemptIsDeadAsAttemptsExhaustedAndOneBeforeItRetries) {
  EXPECT_EQ(decide_retry(failed("timeout", 2, 3), policy(), top).verdict, Verdict::retry);
  auto d = decide_retry(failed("timeout", 3, 3), policy(), top);
  EXPECT_EQ(d.verdict, Verdict::dead);
  EXPECT_EQ(d.reason, "attempts exhausted");
  EXPECT_EQ(decide_retry(failed("timeout", 1, 1), policy(), top).verdict, Verdict::dead) << "max_attempts 1: no retry";
}

TEST(Retry, PermanentExceptionIsDeadAtOnce) {
  RunOutcome r = failed("bad request", 1, 10);
  r.permanent = true;
  auto d = decide_retry(r, policy(), top);
  EXPECT_EQ(d.verdict, Verdict::dead);
  EXPECT_EQ(d.reason, "permanent failure");
}

TEST(Retry, MessageMatchingAPermanentErrorIsDeadAtOnce) {
  auto d = decide_retry(failed("gateway said: card declined (51)", 1, 10), policy(), top);
  EXPECT_EQ(d.verdict, Verdict::dead);
  EXPECT_EQ(d.reason, "permanent failure");
  EXPECT_EQ(decide_retry(failed("E_INVALID: phone number", 1, 10), policy(), top).verdict, Verdict::dead);
  EXPECT_EQ(decide_retry(failed("card", 1, 10), policy(), top).verdict, Verdict::retry)
      << "a part of a pattern is not it";
  EXPECT_EQ(decide_retry(failed("e_invalid", 1, 10), policy(), top).verdict, Verdict::retry) << "case counts";
}

TEST(Retry, CodeNamedAsAPermanentErrorIsDeadAtOnceButOnlyWhole) {
  RetryPolicy p = policy();
  p.permanent_errors = {"http_404"};
  RunOutcome r = failed("POST example.org answered 404", 1, 10);
  r.code = "http_404";
  EXPECT_EQ(decide_retry(r, p, top).verdict, Verdict::dead);
  r.code = "http_4040";
  EXPECT_EQ(decide_retry(r, p, top).verdict, Verdict::retry) << "a code is matched whole";
}

TEST(Retry, EmptyPatternMatchesNothing) {
  RetryPolicy p = policy();
  p.permanent_errors = {""};
  EXPECT_EQ(decide_retry(failed("anything", 1, 3), p, top).verdict, Verdict::retry);
}

}  // namespace
}  // namespace ripen
