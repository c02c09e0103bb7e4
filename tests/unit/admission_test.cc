// Which queue's task starts next: room, per-queue caps, and weights, as the
// worker applies them task by task.
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "ripen/admission.h"

namespace ripen {
namespace {

// Admits until next_queue() says none may start; returns how many each queue got.
std::vector<int> admit_all(std::vector<QueueLoad> queues, int started_total, int room) {
  std::vector<int> got(queues.size(), 0);
  for (int i; (i = next_queue(queues, started_total, room)) >= 0;) {
    auto& q = queues[static_cast<size_t>(i)];
    --q.waiting;
    ++q.started;
    ++started_total;
    ++got[static_cast<size_t>(i)];
  }
  return got;
}

TEST(Admission, NothingStartsWithoutRoomOrWithoutWaitingTasks) {
  EXPECT_EQ(next_queue({{5, 0, 1, 0}}, 8, 8), -1) << "no room";
  EXPECT_EQ(next_queue({{0, 0, 1, 0}}, 0, 8), -1) << "nothing waiting";
  EXPECT_EQ(next_queue({}, 0, 8), -1);
  EXPECT_EQ(next_queue({{5, 0, 1, 0}}, 7, 8), 0);
}

TEST(Admission, RoomBoundsTheTotalStarted) { EXPECT_EQ(admit_all({{100, 0, 1, 0}}, 3, 10), (std::vector<int>{7})); }

TEST(Admission, AQueueAtItsCapIsPassedOverAndTheOthersGetTheRoom) {
  const auto got = admit_all({{10, 0, 1, 2}, {10, 0, 1, 0}}, 0, 8);
  EXPECT_EQ(got, (std::vector<int>{2, 6}));
  EXPECT_EQ(next_queue({{10, 2, 1, 2}}, 2, 8), -1) << "at its cap, with room left";
}

TEST(Admission, WeightsShareThePlacesWhileBothQueuesWait) {
  EXPECT_EQ(admit_all({{100, 0, 3, 0}, {100, 0, 1, 0}}, 0, 8), (std::vector<int>{6, 2}));
  // Task by task, as places free up one at a time: 3 to 1 over any stretch.
  std::vector<QueueLoad> q = {{1000, 0, 3, 0}, {1000, 0, 1, 0}};
  std::vector<int> got = {0, 0};
  for (int n = 0; n < 400; ++n) {
    const int i = next_queue(q, 0, 1);
    ASSERT_GE(i, 0);
    --q[static_cast<size_t>(i)].waiting;
    ++q[static_cast<size_t>(i)].started;  // never done: the share is of what has started
    ++got[static_cast<size_t>(i)];
  }
  EXPECT_EQ(got, (std::vector<int>{300, 100}));
}

TEST(Admission, AQueueWithNothingWaitingLeavesItsShareToTheOthers) {
  EXPECT_EQ(admit_all({{0, 0, 3, 0}, {100, 0, 1, 0}}, 0, 8), (std::vector<int>{0, 8}));
}

TEST(Admission, EqualLoadsGoToTheFirstQueue) {
  EXPECT_EQ(next_queue({{1, 2, 2, 0}, {1, 1, 1, 0}}, 0, 8), 0) << "2/2 == 1/1";
}

constexpr std::chrono::milliseconds kHold{200};

TEST(AutoPrefetch, SlowHandlersGetOneMessageEach) {
  EXPECT_EQ(auto_prefetch(8, 1000, 1, kHold), 10) << "8 running + 8 x 0.2 s / 1 s, rounded up";
  EXPECT_EQ(auto_prefetch(8, 60'000, 1, kHold), 9);
  EXPECT_EQ(auto_prefetch(4, 250, 1, kHold), 8) << "4 + 4 x 0.8";
}

TEST(AutoPrefetch, FastHandlersGetWhatTheyFinishInTheHold) {
  EXPECT_EQ(auto_prefetch(8, 10, 1, kHold), 168) << "8 + 8 x 20";
  EXPECT_EQ(auto_prefetch(8, 2, 1, kHold), 808);
}

TEST(AutoPrefetch, HandlersThatTakeNoTimeGetTheCap) {
  EXPECT_EQ(auto_prefetch(8, 0, 1, kHold), kMaxAutoPrefetch);
  EXPECT_EQ(auto_prefetch(8, 0.01, 1, kHold), kMaxAutoPrefetch);
  EXPECT_EQ(auto_prefetch(2000, 0, 1, kHold), 2000) << "never below one message per handler";
}

TEST(AutoPrefetch, BundlesCountAsTheirTasks) {
  EXPECT_EQ(auto_prefetch(8, 10, 50, kHold), 8) << "168 tasks in 4 bundles: still one message per handler";
  EXPECT_EQ(auto_prefetch(8, 1, 50, kHold), 33) << "1608 tasks in bundles of 50";
  EXPECT_EQ(auto_prefetch(8, 10, 0.2, kHold), 168) << "fewer than one task a message counts as one";
}

TEST(AutoPrefetch, ConsumesAgainOnlyForAMoveOfTwiceOrMore) {
  EXPECT_FALSE(prefetch_moved(10, 19));
  EXPECT_TRUE(prefetch_moved(10, 20));
  EXPECT_FALSE(prefetch_moved(10, 6));
  EXPECT_TRUE(prefetch_moved(10, 5));
  EXPECT_FALSE(prefetch_moved(8, 8));
}

}  // namespace
}  // namespace ripen
