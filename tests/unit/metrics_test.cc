// The latency histogram reports quantiles as the upper edge of a bucket, so it may
// over-report by one bucket width (under 1/32 of the value) but never under-report.
// These tests check that promise on known data and on random data against an exact
// sort, and that merge, empty and negative inputs behave.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "ripen/metrics.h"

namespace ripen {
namespace {

// The exact q-quantile by the same rank rule (smallest value with at least
// ceil(q * n) values at or below it).
int64_t true_quantile(std::vector<int64_t> values, double q) {
  std::sort(values.begin(), values.end());
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  rank = std::max<size_t>(rank, 1);
  return values[rank - 1];
}

Histogram of(const std::vector<int64_t>& values) {
  Histogram h;
  for (int64_t v : values) h.record(v);
  return h;
}

TEST(Histogram, EmptyReportsZeroEverywhere) {
  const Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 0);
  for (double q : {0.0, 0.5, 0.99, 1.0}) EXPECT_EQ(h.quantile(q), 0) << q;
  EXPECT_EQ(h.summary(), "n=0 p50=0ms p99=0ms p99.9=0ms max=0ms");
}

TEST(Histogram, OneToThousandQuantilesWithinThreePercent) {
  Histogram h;
  for (int64_t v = 1; v <= 1000; ++v) h.record(v);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.min(), 1);
  EXPECT_EQ(h.max(), 1000);
  const int64_t p50 = h.quantile(0.5);
  const int64_t p99 = h.quantile(0.99);
  EXPECT_GE(p50, 500);
  EXPECT_LE(p50, 515) << "within 3% of 500";
  EXPECT_GE(p99, 990);
  EXPECT_LE(p99, 1019) << "within 3% of 990";
  EXPECT_EQ(h.quantile(1.0), 1000) << "the top is clamped to the observed max";
}

TEST(Histogram, OneToThousandExactBucketEdges) {
  // 500 falls in [496, 503], 990 in [976, 991]: the upper edges are reported.
  Histogram h;
  for (int64_t v = 1; v <= 1000; ++v) h.record(v);
  EXPECT_EQ(h.quantile(0.5), 503);
  EXPECT_EQ(h.quantile(0.99), 991);
}

TEST(Histogram, SmallValuesAreExact) {
  for (int64_t v = 0; v < 32; ++v) {
    const Histogram h = of({v});
    EXPECT_EQ(h.quantile(0.5), v);
    EXPECT_EQ(h.quantile(1.0), v);
    EXPECT_EQ(h.min(), v);
    EXPECT_EQ(h.max(), v);
  }
  Histogram all;
  for (int64_t v = 0; v < 32; ++v) all.record(v);
  for (int k = 1; k <= 32; ++k) {
    EXPECT_EQ(all.quantile(k / 32.0), k - 1) << "q=" << k << "/32";
  }
}

TEST(Histogram, FirstInexactValueReportsItsBucketTop) {
  // 32 and 33 are still one-wide buckets; from 64 buckets are two wide.
  EXPECT_EQ(of({32}).quantile(0.5), 32);
  EXPECT_EQ(of({63}).quantile(0.5), 63);
  Histogram h = of({64, 1000});
  EXPECT_EQ(h.quantile(0.5), 65) << "64 shares a bucket with 65";
}

TEST(Histogram, NeverUnderReportsAndStaysWithinOneBucket) {
  std::mt19937 engine(42);
  std::lognormal_distribution<double> latency(4.0, 2.0);  // a long tail, like real latencies
  std::vector<int64_t> values;
  values.reserve(20'000);
  for (int i = 0; i < 20'000; ++i) {
    values.push_back(std::min<int64_t>(static_cast<int64_t>(latency(engine)), 3'600'000));
  }
  const Histogram h = of(values);
  for (double q : {0.0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
    const int64_t exact = true_quantile(values, q);
    const int64_t got = h.quantile(q);
    EXPECT_GE(got, exact) << "q=" << q;
    EXPECT_LE(got, exact + exact / 32) << "q=" << q;
  }
}

TEST(Histogram, EveryValueUpToAnHourReportsWithinOneBucketAbove) {
  for (int64_t v = 0; v <= 3'600'000; v = v < 100 ? v + 1 : v + v / 7) {
    const int64_t got = of({v}).quantile(0.5);
    ASSERT_GE(got, v);
    ASSERT_LE(got, v) << "a single value is clamped to the max";
    const int64_t with_larger = of({v, 3'600'000}).quantile(0.5);
    ASSERT_GE(with_larger, v);
    ASSERT_LE(with_larger, v + v / 32) << v;
  }
}

TEST(Histogram, MergeEqualsRecordingEverything) {
  std::mt19937 engine(7);
  std::uniform_int_distribution<int64_t> dist(0, 100'000);
  std::vector<int64_t> a, b;
  for (int i = 0; i < 5000; ++i) a.push_back(dist(engine));
  for (int i = 0; i < 3000; ++i) b.push_back(dist(engine) * 3);
  Histogram merged = of(a);
  merged.merge(of(b));
  std::vector<int64_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  const Histogram direct = of(all);
  EXPECT_EQ(merged.count(), direct.count());
  EXPECT_EQ(merged.min(), direct.min());
  EXPECT_EQ(merged.max(), direct.max());
  for (int i = 0; i <= 1000; ++i) {
    const double q = i / 1000.0;
    ASSERT_EQ(merged.quantile(q), direct.quantile(q)) << "q=" << q;
  }
  EXPECT_EQ(merged.summary(), direct.summary());
}

TEST(Histogram, MergeWithEmptyChangesNothing) {
  const Histogram data = of({5, 50, 500});
  Histogram into_empty;
  into_empty.merge(data);
  Histogram empty_into = data;
  empty_into.merge(Histogram());
  for (const Histogram* h : {&into_empty, &empty_into}) {
    EXPECT_EQ(h->count(), 3u);
    EXPECT_EQ(h->min(), 5);
    EXPECT_EQ(h->max(), 500);
    EXPECT_EQ(h->summary(), data.summary());
  }
}

TEST(Histogram, NegativeValuesCountAsZero) {
  const Histogram h = of({-5, -1, std::numeric_limits<int64_t>::min()});
  EXPECT_EQ(h.count(), 3u);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.quantile(0.5), 0);
  EXPECT_EQ(h.quantile(1.0), 0);
}

TEST(Histogram, QuantileOutsideZeroOneIsClamped) {
  Histogram h;
  for (int64_t v = 1; v <= 10; ++v) h.record(v);
  EXPECT_EQ(h.quantile(-1.0), h.quantile(0.0));
  EXPECT_EQ(h.quantile(2.0), h.quantile(1.0));
  EXPECT_EQ(h.quantile(0.0), 1) << "q=0 reports the smallest value";
}

TEST(Histogram, HugeValueDoesNotCrashAndMaxIsExact) {
  Histogram h;
  h.record(std::numeric_limits<int64_t>::max());
  EXPECT_EQ(h.count(), 1u);
  EXPECT_EQ(h.max(), std::numeric_limits<int64_t>::max());
}

TEST(Histogram, SummaryNamesTheQuantiles) {
  Histogram h;
  for (int64_t v = 1; v <= 1000; ++v) h.record(v);
  EXPECT_EQ(h.summary(), "n=1000 p50=503ms p99=991ms p99.9=1000ms max=1000ms");
}

TEST(Histogram, ResetEmptiesIt) {
  Histogram h = of({1, 2, 3});
  h.reset();
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.quantile(0.5), 0);
  h.record(7);
  EXPECT_EQ(h.min(), 7) << "min starts over after a reset";
}

// Lateness counts from the due time, or from creation when that is later: a
// task enqueued with a due time 6 years past is due at once, not 6 years late.
TEST(Lateness, CountsFromTheDueTimeWhenItIsAfterCreation) {
  EXPECT_EQ(lateness_ms(/*now_ms=*/10'250, /*due_ms=*/10'000, /*created_ms=*/5'000), 250);
  EXPECT_EQ(lateness_ms(10'000, 10'000, 5'000), 0);
  EXPECT_EQ(lateness_ms(9'999, 10'000, 5'000), -1);  // early: the histogram counts it as 0
}

TEST(Lateness, CountsFromCreationWhenTheDueTimeWasAlreadyPast) {
  const int64_t created = 1'796'318'053'579;
  const int64_t six_years_before = created - 218'390'929'087;
  EXPECT_EQ(lateness_ms(created + 40, six_years_before, created), 40);
  // The edge both ways: due 1 ms before creation counts from creation; due at
  // creation counts from either, the same.
  EXPECT_EQ(lateness_ms(created + 40, created - 1, created), 40);
  EXPECT_EQ(lateness_ms(created + 40, created, created), 40);
  EXPECT_EQ(lateness_ms(created + 40, created + 1, created), 39);
}

TEST(Lateness, AnUnknownCreationTimeCountsFromTheDueTime) {
  // created_ms 0: an envelope that did not carry it.
  EXPECT_EQ(lateness_ms(10'250, 10'000, 0), 250);
}

}  // namespace
}  // namespace ripen
