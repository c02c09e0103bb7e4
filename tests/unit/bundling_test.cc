#include "ripen/bundling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

namespace ripen {
namespace {

size_t sum(const std::vector<size_t>& v) { return std::accumulate(v.begin(), v.end(), size_t{0}); }

TEST(BundleSizes, ABurstIsCutIntoEqualSharesForEveryConsumer) {
  // The bursts, four workers: 64 tasks went as one bundle of 50 and one of 14.
  EXPECT_EQ(bundle_sizes(64, 50, 4), (std::vector<size_t>{16, 16, 16, 16}));
  // 320 as seven messages gave the workers 100/100/70/50; eight give 80 each.
  EXPECT_EQ(bundle_sizes(320, 50, 4), std::vector<size_t>(8, 40));
}

TEST(BundleSizes, NoMessageExceedsTheBundleLimit) {
  for (size_t tasks : {1, 7, 49, 50, 51, 99, 100, 101, 1000, 4321}) {
    for (size_t consumers : {0, 1, 2, 3, 4, 7, 64}) {
      for (size_t max_bundle : {1, 8, 50}) {
        const auto sizes = bundle_sizes(tasks, max_bundle, consumers);
        EXPECT_EQ(sum(sizes), tasks) << tasks << "/" << max_bundle << "/" << consumers;
        EXPECT_LE(*std::max_element(sizes.begin(), sizes.end()), max_bundle);
        EXPECT_LE(*std::max_element(sizes.begin(), sizes.end()) - *std::min_element(sizes.begin(), sizes.end()), 1u)
            << "equal shares, give or take one";
        if (sizes.size() < tasks && consumers > 0) {
          EXPECT_EQ(sizes.size() % consumers, 0u) << "a multiple of consumers, unless one task each";
        }
      }
    }
  }
}

TEST(BundleSizes, FewerTasksThanConsumersGoOneEach) {
  EXPECT_EQ(bundle_sizes(3, 50, 4), (std::vector<size_t>{1, 1, 1}));
  EXPECT_EQ(bundle_sizes(1, 50, 4), (std::vector<size_t>{1}));
}

TEST(BundleSizes, WithoutConsumersTheFewestMessagesCarryThem) {
  EXPECT_EQ(bundle_sizes(120, 50, 0), (std::vector<size_t>{40, 40, 40}));
  EXPECT_EQ(bundle_sizes(120, 50, 1), (std::vector<size_t>{40, 40, 40}));
  EXPECT_TRUE(bundle_sizes(0, 50, 4).empty());
}

TEST(BundleSizes, BundleOneIsOneMessagePerTask) {
  EXPECT_EQ(bundle_sizes(5, 1, 2), std::vector<size_t>(5, 1));
  EXPECT_EQ(bundle_sizes(5, 0, 2), std::vector<size_t>(5, 1));
}

}  // namespace
}  // namespace ripen
