#include "shard_scripts.h"

#include "ripen/stored_task.h"

namespace ripen::testing {

void ShardScriptsTest::SetUp() {
  NamespaceTest::SetUp();
  config_.shards = 1;  // every task in shard 0: the scripts can be driven by hand
  redis_ = connect_redis(config_);
  keys_ = std::make_unique<Keys>(config_.ns, config_.shards);
  auto lease = scripts::take_lease(*redis_, keys_->lease(0), keys_->fence(0), "test", 600'000);
  ASSERT_TRUE(lease.ok() && lease->has_value()) << (lease ? "not taken" : lease.error().describe());
  lease_ = **lease;
}

scripts::ClaimReply ShardScriptsTest::claim(int64_t inflight_lease_ms) {
  scripts::ClaimCall call(*keys_, inflight_lease_ms);
  call.add(0, lease_, 1000);
  auto c = scripts::ClaimCall::read(run(call));
  deadline_ = c.lease_deadline;
  return c;
}

scripts::SettleReply ShardScriptsTest::settle(const std::string& id, scripts::SettleOutcome outcome,
                                              const std::string& reason, std::optional<int64_t> deadline,
                                              int64_t retention_ms) {
  scripts::SettleCall call(*keys_, retention_ms);
  call.add(0, {{id, outcome, deadline.value_or(deadline_), reason}});
  auto r = scripts::SettleCall::read(run(call));
  EXPECT_TRUE(r.ok() && r->size() == 1u);
  return r && r->size() == 1u ? r->front() : scripts::SettleReply{};
}

std::vector<scripts::StartReply> ShardScriptsTest::start_all(const std::vector<scripts::StartRequest>& deliveries,
                                                             const std::string& worker) {
  // A request that names no type is the genuine delivery of its task: it says
  // what the stored TASK says, as the dispatcher's message would.
  std::vector<scripts::StartRequest> requests = deliveries;
  std::deque<std::string> held;  // what the requests' views look at
  for (auto& d : requests) {
    if (!d.type.empty()) continue;
    auto packed = redis_->command({"HGET", keys_->tasks(0), std::string(d.id)});
    if (!packed || !packed->is_string()) continue;
    const std::string& task_text = held.emplace_back(packed->str());
    if (auto task = parse_stored_task(std::string_view(task_text))) {
      d.queue = task->queue;
      d.type = task->type;
      d.payload_digest = held.emplace_back(payload_digest(task->payload));
    }
  }
  scripts::StartCall call(*keys_, worker);
  call.add(0, requests);
  auto r = scripts::StartCall::read(run(call));
  EXPECT_TRUE(r.ok()) << (r ? "" : r.error().describe());
  return r ? *r : std::vector<scripts::StartReply>(deliveries.size());
}

scripts::StartReply ShardScriptsTest::start(const std::string& id, const std::string& worker, int64_t lease_ms,
                                            uint64_t delivery) {
  return start_all({{id, delivery, lease_ms}}, worker).at(0);
}

std::vector<scripts::FinishReply> ShardScriptsTest::finish_all(const std::vector<scripts::FinishRequest>& runs,
                                                               int64_t retention_ms, const std::string& worker) {
  scripts::FinishCall call(*keys_, worker, retention_ms, 0);
  call.add(0, runs);
  auto r = scripts::FinishCall::read(run(call));
  EXPECT_TRUE(r.ok()) << (r ? "" : r.error().describe());
  return r ? *r : std::vector<scripts::FinishReply>(runs.size());
}

}  // namespace ripen::testing
