// The worker's ack ledger: which deliveries of a connection may be acked, when,
// and in how few frames.
#include "ripen/ack_ledger.h"

#include <gtest/gtest.h>

namespace ripen {
namespace {

using V = AckLedger::Verdict;

TEST(AckLedger, ASingleTaskDeliveryIsAckedWhenItsTaskIsDone) {
  AckLedger l;
  l.open(1, 1);
  EXPECT_EQ(l.done(1, false), V::ack);
  const auto acks = l.take_acks();
  EXPECT_EQ(acks.multiple, 1u);
  EXPECT_TRUE(acks.singles.empty());
  EXPECT_EQ(l.unacked(), 0u);
  EXPECT_TRUE(l.take_acks().empty()) << "each ack goes once";
}

TEST(AckLedger, ABundleWaitsForItsLastTask) {
  AckLedger l;
  l.open(7, 3);
  EXPECT_EQ(l.done(7, false), V::wait);
  EXPECT_EQ(l.done(7, false), V::wait);
  EXPECT_TRUE(l.take_acks().empty()) << "two of three done: not yet";
  EXPECT_EQ(l.done(7, false), V::ack);
  EXPECT_EQ(l.take_acks().multiple, 7u);
}

TEST(AckLedger, ABundleWithOneTaskGivenBackIsRequeuedNotAcked) {
  AckLedger l;
  l.open(3, 2);
  EXPECT_EQ(l.done(3, true), V::wait);
  EXPECT_EQ(l.done(3, false), V::requeue) << "its other task ended, but the delivery goes back whole";
  EXPECT_TRUE(l.take_acks().empty());
  EXPECT_EQ(l.unacked(), 0u) << "handed back: no longer ours to ack";
}

TEST(AckLedger, OneMultipleAckCoversEverythingBelowTheLowestOpenDelivery) {
  AckLedger l;
  for (uint64_t tag = 1; tag <= 5; ++tag) l.open(tag, 1);
  EXPECT_EQ(l.done(1, false), V::ack);
  EXPECT_EQ(l.done(2, false), V::ack);
  EXPECT_EQ(l.done(4, false), V::ack);  // 3 is still running
  const auto acks = l.take_acks();
  EXPECT_EQ(acks.multiple, 2u) << "1 and 2 in one frame; a multiple ack to 4 would ack 3, still running";
  EXPECT_EQ(acks.singles, std::vector<uint64_t>{4});
  EXPECT_EQ(l.unacked(), 2u);  // 3 and 5
  EXPECT_EQ(l.done(3, false), V::ack);
  EXPECT_EQ(l.done(5, false), V::ack);
  const auto rest = l.take_acks();
  EXPECT_EQ(rest.multiple, 5u);
  EXPECT_TRUE(rest.singles.empty());
}

TEST(AckLedger, ATagOfABrokenConnectionMeansNothingOnTheNext) {
  AckLedger l;
  l.open(1, 2);
  EXPECT_EQ(l.done(1, false), V::wait);
  l.reset();  // the connection broke: the broker hands the delivery on
  EXPECT_EQ(l.done(1, false), V::unknown) << "never acked on the new connection";
  EXPECT_TRUE(l.take_acks().empty());
  l.open(1, 1);  // the new connection's tag 1 is another delivery
  EXPECT_EQ(l.done(1, false), V::ack);
}

TEST(AckLedger, ADeliveryIsSettledOnce) {
  AckLedger l;
  l.open(9, 1);
  EXPECT_EQ(l.done(9, false), V::ack);
  EXPECT_EQ(l.done(9, false), V::unknown);
  EXPECT_EQ(l.take_acks().multiple, 9u);
}

}  // namespace
}  // namespace ripen
