// plan_shards decides which timer-wheel shards a dispatcher holds. These tests
// walk the fleet through joins and departures and check that every shard ends up
// with exactly one holder and the load is even.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "ripen/dispatcher.h"

namespace ripen {
namespace {

TEST(ShardPlan, AloneTakesEveryShard) {
  ShardPlan plan = plan_shards(16, 1, 0, {});
  EXPECT_EQ(plan.target, 16);
  EXPECT_TRUE(plan.release.empty());
  EXPECT_EQ(plan.acquire.size(), 16u);
}

TEST(ShardPlan, PreferredShardsComeFirst) {
  ShardPlan plan = plan_shards(8, 2, 1, {});
  ASSERT_EQ(plan.acquire.size(), 8u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(plan.acquire[i] % 2, 1) << "position " << i;
  for (size_t i = 4; i < 8; ++i) EXPECT_EQ(plan.acquire[i] % 2, 0) << "position " << i;
}

TEST(ShardPlan, HolderOfAllGivesBackOthersShareWhenSecondJoins) {
  std::set<int> held;
  for (int s = 0; s < 16; ++s) held.insert(s);
  ShardPlan plan = plan_shards(16, 2, 0, held);
  EXPECT_EQ(plan.target, 8);
  ASSERT_EQ(plan.release.size(), 8u);
  for (int s : plan.release) EXPECT_EQ(s % 2, 1) << "kept its own share, gave back the other's";
  EXPECT_TRUE(plan.acquire.empty());
}

TEST(ShardPlan, HoldingExactlyTargetReleasesNothing) {
  ShardPlan plan = plan_shards(16, 2, 0, {1, 3, 5, 7, 9, 11, 13, 15});
  EXPECT_TRUE(plan.release.empty()) << "at target, even non-preferred shards are kept";
}

TEST(ShardPlan, OneOverTargetReleasesOne) {
  ShardPlan plan = plan_shards(16, 2, 0, {0, 1, 2, 3, 4, 5, 6, 7, 8});
  EXPECT_EQ(plan.release.size(), 1u);
}

TEST(ShardPlan, TargetIsTheSizeOfTheOwnShare) {
  EXPECT_EQ(plan_shards(16, 3, 0, {}).target, 6);  // 0 3 6 9 12 15
  EXPECT_EQ(plan_shards(16, 3, 1, {}).target, 5);  // 1 4 7 10 13
  EXPECT_EQ(plan_shards(16, 3, 2, {}).target, 5);  // 2 5 8 11 14
  EXPECT_EQ(plan_shards(16, 16, 15, {}).target, 1);
  EXPECT_EQ(plan_shards(4, 8, 5, {}).target, 0) << "more dispatchers than shards: the extra ones idle";
}

TEST(ShardPlan, ZeroLiveIsTreatedAsAlone) { EXPECT_EQ(plan_shards(16, 0, 0, {}).target, 16); }

// Simulates rounds of maintenance for a fleet: each dispatcher, in turn, releases
// what its plan says and then acquires free shards up to its target.
std::map<int, int> settle(int shards, int live, std::map<int, int> owner_of, int rounds = 4) {
  for (int round = 0; round < rounds; ++round) {
    for (int rank = 0; rank < live; ++rank) {
      std::set<int> held;
      for (auto [s, o] : owner_of) {
        if (o == rank) held.insert(s);
      }
      ShardPlan plan = plan_shards(shards, live, rank, held);
      for (int s : plan.release) owner_of.erase(s);
      int count = static_cast<int>(held.size() - plan.release.size());
      for (int s : plan.acquire) {
        if (count >= plan.target) break;
        if (owner_of.count(s) == 0) {
          owner_of[s] = rank;
          ++count;
        }
      }
    }
  }
  return owner_of;
}

TEST(ShardPlan, FleetOfThreeCoversEveryShardEvenly) {
  std::map<int, int> owner_of;
  for (int s = 0; s < 16; ++s) owner_of[s] = 0;  // the first dispatcher held everything
  auto result = settle(16, 3, owner_of);
  ASSERT_EQ(result.size(), 16u) << "every shard has a holder";
  std::map<int, int> load;
  for (auto [s, o] : result) ++load[o];
  for (auto [o, n] : load) {
    EXPECT_GE(n, 5) << "dispatcher " << o;
    EXPECT_LE(n, 6) << "dispatcher " << o;
  }
}

TEST(ShardPlan, SurvivorTakesOverADeadPeersShards) {
  std::map<int, int> owner_of;
  for (int s = 0; s < 16; ++s) owner_of[s] = s % 2;
  // Dispatcher 1 dies: its leases expire, so its shards are free; 0 is now alone.
  for (auto it = owner_of.begin(); it != owner_of.end();) it = it->second == 1 ? owner_of.erase(it) : std::next(it);
  auto result = settle(16, 1, owner_of);
  ASSERT_EQ(result.size(), 16u);
  for (auto [s, o] : result) EXPECT_EQ(o, 0) << "shard " << s;
}

}  // namespace
}  // namespace ripen
