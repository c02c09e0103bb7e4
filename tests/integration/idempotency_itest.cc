// Idempotency keys at enqueue: while a task holding a key is unfinished, the same
// key gives back that task instead of adding another; once it has ended, the key
// is free for a new task.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "fleet.h"
#include "ripen/ids.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Idempotency : public FleetTest {
 protected:
  Envelope keyed(const std::string& key, nlohmann::json payload) {
    Envelope e = make_task("work", std::move(payload));
    e.idempotency_key = key;
    return e;
  }

  // Tasks in the namespace, live (fields of the per-shard TASK hashes) or ended
  // (fields of the buckets of ENDED records).
  size_t task_records() {
    auto redis = connect_redis(config_);
    const Keys keys(config_.ns, config_.shards);
    size_t n = 0;
    for (int s = 0; s < config_.shards; ++s) {
      auto len = redis->command({"HLEN", keys.tasks(s)});
      EXPECT_TRUE(len.ok());
      if (len) n += static_cast<size_t>(len->integer());
    }
    for (const auto& k : namespace_keys(*redis, config_.ns)) {
      if (k.find("}:ended:") == std::string::npos) continue;
      auto len = redis->command({"HLEN", k});
      EXPECT_TRUE(len.ok());
      if (len) n += static_cast<size_t>(len->integer());
    }
    return n;
  }
};

TEST_F(Idempotency, SameKeyWhileScheduledGivesTheSameTaskAndItRunsOnce) {
  start_worker({{"work", recorder()}});
  start_dispatcher();

  auto first = producer().enqueue_in(keyed("order-17-receipt", {{"copy", 1}}), 1000ms);
  ASSERT_TRUE(first.ok()) << first.error().describe();
  EXPECT_TRUE(first->created);
  auto rec = producer().get(first->id);
  ASSERT_TRUE(rec.ok());
  ASSERT_EQ(rec->state, "scheduled");

  auto second = producer().enqueue_in(keyed("order-17-receipt", {{"copy", 2}}), 1000ms);
  ASSERT_TRUE(second.ok()) << second.error().describe();
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->id, first->id);
  EXPECT_EQ(second->due_ms, first->due_ms);
  EXPECT_EQ(task_records(), 1u);

  ASSERT_TRUE(reaches(first->id.get(), "succeeded", 20s));
  stop();

  const auto calls = calls_.calls();
  ASSERT_EQ(calls.size(), 1u) << "one task, one run";
  EXPECT_EQ(calls[0].id, first->id.get());
  EXPECT_EQ(nlohmann::json::parse(calls[0].payload), nlohmann::json({{"copy", 1}})) << "the first task's payload";
  EXPECT_EQ(task_records(), 1u);
}

TEST_F(Idempotency, SameKeyWhileRunningGivesTheSameTask) {
  start_worker({{"work", [this](const TaskContext& ctx) {
                   record(ctx);
                   gate_.wait(ctx);
                 }}});
  start_dispatcher();

  auto first = producer().enqueue(keyed("nightly-report", "a"));
  ASSERT_TRUE(first.ok()) << first.error().describe();
  ASSERT_TRUE(reaches(first->id.get(), "running", 20s));

  auto second = producer().enqueue(keyed("nightly-report", "b"));
  gate_.open();
  ASSERT_TRUE(second.ok()) << second.error().describe();
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->id, first->id);

  ASSERT_TRUE(reaches(first->id.get(), "succeeded", 20s));
  stop();
  EXPECT_EQ(calls_.size(), 1u);
  EXPECT_EQ(task_records(), 1u);
}

TEST_F(Idempotency, SameKeyAfterTheTaskSucceededGivesThatTaskUntilTheRetentionPasses) {
  config_.idempotency_retention_ms = 1500;
  start_worker({{"work", recorder()}});
  start_dispatcher();

  auto first = producer().enqueue(keyed("digest-2026-W48", 1));
  ASSERT_TRUE(first.ok()) << first.error().describe();
  auto rec = wait_for_state(first->id.get(), "succeeded", 20s);
  ASSERT_TRUE(in_state(rec, "succeeded"));

  // Within the retention the key is done: the same task comes back, nothing runs.
  auto again = producer().enqueue(keyed("digest-2026-W48", 2));
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->id, first->id);
  EXPECT_EQ(again->due_ms, rec->due_ms);

  // Once it has passed, the key makes a new task.
  std::optional<Enqueued> later;
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = producer().enqueue(keyed("digest-2026-W48", 3));
        if (r.ok() && r->created) later = *r;
        return later.has_value();
      },
      10s, 100ms));
  EXPECT_NE(later->id, first->id);
  ASSERT_TRUE(reaches(later->id.get(), "succeeded", 20s));
  stop();

  EXPECT_EQ(calls_.count(first->id.get()), 1);
  EXPECT_EQ(calls_.count(later->id.get()), 1);
  EXPECT_EQ(calls_.size(), 2u);
}

TEST_F(Idempotency, WithNoRetentionTheKeyIsFreedWhenTheTaskSucceeds) {
  config_.idempotency_retention_ms = 0;
  start_worker({{"work", recorder()}});
  start_dispatcher();

  auto first = producer().enqueue(keyed("weekly-digest", 1));
  ASSERT_TRUE(first.ok()) << first.error().describe();
  ASSERT_TRUE(reaches(first->id.get(), "succeeded", 20s));

  auto second = producer().enqueue(keyed("weekly-digest", 2));
  ASSERT_TRUE(second.ok()) << second.error().describe();
  EXPECT_TRUE(second->created);
  EXPECT_NE(second->id, first->id);
  ASSERT_TRUE(reaches(second->id.get(), "succeeded", 20s));
  stop();

  EXPECT_EQ(calls_.count(first->id.get()), 1);
  EXPECT_EQ(calls_.count(second->id.get()), 1);
  EXPECT_EQ(calls_.size(), 2u);
  EXPECT_EQ(task_records(), 2u);
}

TEST_F(Idempotency, CliEnqueueTwiceWithTheSameKeyPrintsTheSameId) {
  const std::string file = write_config_file(config_, config_.ns);
  const auto env = child_env(config_);
  const std::vector<std::string> args = {"--config", file,      "enqueue", "--queue",           "default",    "--type",
                                         "work",     "--delay", "30s",     "--idempotency-key", "invoice-881"};
  auto first = run_command(binary("producer/ripen"), args, env);
  ASSERT_EQ(first.code, 0) << first.err;
  auto second = run_command(binary("producer/ripen"), args, env);
  ASSERT_EQ(second.code, 0) << second.err;
  const std::string id = trim(first.out);
  EXPECT_TRUE(is_valid_task_id(id)) << first.out;
  EXPECT_EQ(trim(second.out), id);

  auto with_json = args;
  with_json.push_back("--json");
  auto third = run_command(binary("producer/ripen"), with_json, env);
  ASSERT_EQ(third.code, 0) << third.err;
  auto j = nlohmann::json::parse(third.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << third.out;
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["created"], false);
  EXPECT_EQ(task_records(), 1u);
}

}  // namespace
}  // namespace ripen::testing
