// Retry backoff: the ceiling doubles from the base per failed attempt and stops at
// the cap; each wait is a full-jitter draw in [0, ceiling]. The random source is
// injected, so the edges of the draw are tested with a source that returns
// exactly the values we choose.
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <random>
#include <vector>

#include "ripen/backoff.h"

namespace ripen {
namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// ---- backoff_ceiling_ms ---------------------------------------------------

TEST(BackoffCeiling, DefaultPolicyIsOneSecondCappedAtOneHour) {
  const BackoffPolicy policy;
  EXPECT_EQ(policy.base_ms, 1000);
  EXPECT_EQ(policy.cap_ms, 3'600'000);
  EXPECT_EQ(backoff_ceiling_ms(policy, 1), 1000);
}

TEST(BackoffCeiling, DoublesFromBasePerAttempt) {
  const BackoffPolicy policy{1000, 3'600'000};
  const std::vector<int64_t> expected = {1000,   2000,    4000,    8000,    16'000,    32'000,
                                         64'000, 128'000, 256'000, 512'000, 1'024'000, 2'048'000};
  for (size_t i = 0; i < expected.size(); ++i) {
    const int attempt = static_cast<int>(i) + 1;
    EXPECT_EQ(backoff_ceiling_ms(policy, attempt), expected[i]) << "attempt " << attempt;
  }
}

TEST(BackoffCeiling, DefaultPolicyFirstHitsCapAtAttempt13) {
  // 1000 * 2^11 = 2048000 is still under one hour; 1000 * 2^12 = 4096000 is over.
  const BackoffPolicy policy{1000, 3'600'000};
  EXPECT_EQ(backoff_ceiling_ms(policy, 12), 2'048'000);
  EXPECT_EQ(backoff_ceiling_ms(policy, 13), 3'600'000);
  EXPECT_EQ(backoff_ceiling_ms(policy, 14), 3'600'000);
}

TEST(BackoffCeiling, CapThatIsAPowerOfTwoOfBaseIsReachedExactly) {
  // 100 * 2^4 = 1600 = cap: attempt 4 is one doubling short, attempt 5 lands on it.
  const BackoffPolicy policy{100, 1600};
  EXPECT_EQ(backoff_ceiling_ms(policy, 4), 800);
  EXPECT_EQ(backoff_ceiling_ms(policy, 5), 1600);
  EXPECT_EQ(backoff_ceiling_ms(policy, 6), 1600);
}

TEST(BackoffCeiling, CapOneBelowADoublingStopsThere) {
  const BackoffPolicy policy{100, 1599};
  EXPECT_EQ(backoff_ceiling_ms(policy, 4), 800);
  EXPECT_EQ(backoff_ceiling_ms(policy, 5), 1599);
}

TEST(BackoffCeiling, CapBelowBaseWins) {
  const BackoffPolicy policy{1000, 500};
  EXPECT_EQ(backoff_ceiling_ms(policy, 1), 500);
}

TEST(BackoffCeiling, AttemptZeroAndNegativeCountAsTheFirst) {
  const BackoffPolicy policy{250, 60'000};
  for (int attempt : {0, -1, -100, INT_MIN}) {
    EXPECT_EQ(backoff_ceiling_ms(policy, attempt), 250) << "attempt " << attempt;
  }
}

TEST(BackoffCeiling, HugeAttemptStaysAtTheCap) {
  const BackoffPolicy policy{1000, 3'600'000};
  for (int attempt : {40, 41, 62, 63, 64, 65, 1000, INT_MAX - 1, INT_MAX}) {
    EXPECT_EQ(backoff_ceiling_ms(policy, attempt), 3'600'000) << "attempt " << attempt;
  }
}

struct ExtremePolicy {
  const char* name;
  BackoffPolicy policy;
};

void PrintTo(const ExtremePolicy& c, std::ostream* os) { *os << c.name; }

class BackoffCeilingExtreme : public ::testing::TestWithParam<ExtremePolicy> {};

// Config accepts any positive base and cap (e.g. cap = 9223372036854775807), so
// the arithmetic must hold at the int64 edge: never negative, never above the
// cap, never decreasing as attempts grow.
TEST_P(BackoffCeilingExtreme, NeverOverflows) {
  const BackoffPolicy& policy = GetParam().policy;
  int64_t previous = 0;
  for (int attempt : {1, 2, 3, 10, 30, 40, 41, 42, 62, 63, 64, 100, 1000, INT_MAX}) {
    const int64_t c = backoff_ceiling_ms(policy, attempt);
    EXPECT_GE(c, 1) << "attempt " << attempt;
    EXPECT_LE(c, policy.cap_ms) << "attempt " << attempt;
    EXPECT_GE(c, previous) << "attempt " << attempt;
    previous = c;
  }
}

INSTANTIATE_TEST_SUITE_P(Backoff, BackoffCeilingExtreme,
                         ::testing::Values(ExtremePolicy{"TinyBaseHugeCap", {1, kInt64Max}},
                                           ExtremePolicy{"SecondBaseHugeCap", {1000, kInt64Max}},
                                           ExtremePolicy{"HalfMaxBaseHugeCap", {int64_t{1} << 62, kInt64Max}},
                                           ExtremePolicy{"HugeBaseAndCap", {kInt64Max, kInt64Max}},
                                           ExtremePolicy{"OneMsBoth", {1, 1}}),
                         [](const ::testing::TestParamInfo<ExtremePolicy>& p) { return p.param.name; });

// ---- backoff_ms -----------------------------------------------------------

TEST(BackoffMs, RandomZeroWaitsNothing) {
  const BackoffPolicy policy{1000, 3'600'000};
  for (int attempt : {1, 2, 13, 100}) {
    EXPECT_EQ(backoff_ms(policy, attempt, [] { return 0.0; }), 0) << "attempt " << attempt;
  }
}

TEST(BackoffMs, RandomJustUnderOneWaitsTheWholeCeiling) {
  const BackoffPolicy policy{1000, 3'600'000};
  EXPECT_EQ(backoff_ms(policy, 1, [] { return 0.999999; }), 1000);
  // The largest double below 1 reaches the ceiling even when it is an hour.
  const double just_under_one = std::nextafter(1.0, 0.0);
  for (int attempt : {1, 2, 12, 13, 100}) {
    EXPECT_EQ(backoff_ms(policy, attempt, [&] { return just_under_one; }), backoff_ceiling_ms(policy, attempt))
        << "attempt " << attempt;
  }
}

TEST(BackoffMs, EachMillisecondOfTheRangeGetsAnEqualSlice) {
  // Ceiling 1000 -> 1001 outcomes, each r in [k/1001, (k+1)/1001) gives k.
  const BackoffPolicy policy{1000, 1000};
  EXPECT_EQ(backoff_ms(policy, 1, [] { return 0.5; }), 500);
  EXPECT_EQ(backoff_ms(policy, 1, [] { return 1.0 / 1001.0 - 1e-12; }), 0);
  EXPECT_EQ(backoff_ms(policy, 1, [] { return 1.0 / 1001.0 + 1e-12; }), 1);
  EXPECT_EQ(backoff_ms(policy, 1, [] { return 1000.0 / 1001.0 - 1e-12; }), 999);
  EXPECT_EQ(backoff_ms(policy, 1, [] { return 1000.0 / 1001.0 + 1e-12; }), 1000);
}

TEST(BackoffMs, OutOfContractRandomIsClampedIntoRange) {
  const BackoffPolicy policy{1000, 1000};
  EXPECT_EQ(backoff_ms(policy, 1, [] { return -0.5; }), 0);
  EXPECT_EQ(backoff_ms(policy, 1, [] { return 1.0; }), 1000);
  EXPECT_EQ(backoff_ms(policy, 1, [] { return 7.0; }), 1000);
}

TEST(BackoffMs, SeededDrawsStayWithinZeroAndCeiling) {
  const BackoffPolicy policy{1000, 3'600'000};
  std::mt19937 engine(12345);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  auto random = [&] { return uniform(engine); };
  for (int attempt : {1, 5, 13}) {
    const int64_t ceiling = backoff_ceiling_ms(policy, attempt);
    int64_t lowest = ceiling;
    int64_t highest = 0;
    double sum = 0;
    constexpr int kDraws = 10'000;
    for (int i = 0; i < kDraws; ++i) {
      const int64_t d = backoff_ms(policy, attempt, random);
      ASSERT_GE(d, 0) << "attempt " << attempt;
      ASSERT_LE(d, ceiling) << "attempt " << attempt;
      lowest = std::min(lowest, d);
      highest = std::max(highest, d);
      sum += static_cast<double>(d);
    }
    // Full jitter: the draws cover the range and average about half the ceiling.
    EXPECT_LT(lowest, ceiling / 100) << "attempt " << attempt;
    EXPECT_GT(highest, ceiling - ceiling / 100) << "attempt " << attempt;
    EXPECT_NEAR(sum / kDraws, static_cast<double>(ceiling) / 2, static_cast<double>(ceiling) * 0.02)
        << "attempt " << attempt;
  }
}

TEST(BackoffMs, HugeCeilingDrawStaysInRange) {
  const BackoffPolicy policy{1000, kInt64Max};
  for (double r : {0.0, 0.5, std::nextafter(1.0, 0.0)}) {
    const int64_t d = backoff_ms(policy, INT_MAX, [&] { return r; });
    EXPECT_GE(d, 0) << "r=" << r;
    EXPECT_LE(d, backoff_ceiling_ms(policy, INT_MAX)) << "r=" << r;
  }
}

}  // namespace
}  // namespace ripen
