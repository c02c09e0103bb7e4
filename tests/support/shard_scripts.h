// A test that drives the task scripts by hand, through their wrappers
// (scripts.h), on one shard of its own namespace: every task lands in shard 0
// and the test holds that shard's lease, as its dispatcher would.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ripen/scripts.h"
#include "testing.h"

namespace ripen::testing {

class ShardScriptsTest : public NamespaceTest {
 protected:
  void SetUp() override;

  // Runs a call with one section (shard 0); returns the section's reply, which
  // lives as long as the test.
  template <class Call>
  RedisReply::View run(Call& call) {
    call.append_to(*redis_);
    auto r = redis_->flush();
    EXPECT_TRUE(r.ok()) << r.error().describe();
    if (!r) return RedisReply::View(nullptr);
    EXPECT_TRUE(r->front().ok()) << r->front().error().describe();
    if (!r->front()) return RedisReply::View(nullptr);
    replies_.push_back(std::move(*r->front()));
    EXPECT_EQ(replies_.back().size(), 1u) << "one reply per section";
    return replies_.back().at(0);
  }

  // The claim script, with an in-flight lease of `inflight_lease_ms`; the lease
  // deadline of the last claim is what settle() names by default.
  scripts::ClaimReply claim(int64_t inflight_lease_ms = 30'000);
  scripts::SettleReply settle(const std::string& id, scripts::SettleOutcome outcome, const std::string& reason = "",
                              std::optional<int64_t> deadline = std::nullopt, int64_t retention_ms = 60'000);
  std::vector<scripts::StartReply> start_all(const std::vector<scripts::StartRequest>& deliveries,
                                             const std::string& worker = "w1");
  // `delivery` is the number the worker makes unique to each delivery it starts.
  scripts::StartReply start(const std::string& id, const std::string& worker = "w1", int64_t lease_ms = 3'600'000,
                            uint64_t delivery = 1);
  // One finish call, each ending the run `worker`#`run` of its request.
  std::vector<scripts::FinishReply> finish_all(const std::vector<scripts::FinishRequest>& runs,
                                               int64_t retention_ms = 60'000, const std::string& worker = "w1");

  std::unique_ptr<Redis> redis_;
  std::unique_ptr<Keys> keys_;
  std::string lease_;
  int64_t deadline_ = 0;
  std::deque<RedisReply> replies_;  // own what run() returned views of
};

}  // namespace ripen::testing
