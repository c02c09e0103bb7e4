// Idempotency keys at enqueue: while a task holding a key is unfinished, the same
// key gives back that task instead of adding another; once it has ended, the key
// is free for a new task.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "fleet.h"
#include "ripen/ids.h"
#include "ripen/stored_task.h"

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

// A key is taken per queue and type: whoever may enqueue one type cannot take
// (and so hijack or block) a key another type's tasks use.
TEST_F(Idempotency, TheSameKeyInAnotherQueueOrTypeIsAnotherTask) {
  Envelope work = keyed("order-9", {{"n", 1}});
  Envelope other_type = keyed("order-9", {{"n", 2}});
  other_type.type = "refund";
  Envelope other_queue = keyed("order-9", {{"n", 3}});
  other_queue.queue = "mail";
  queues_.push_back("mail");
  const auto ids = enqueue({work, other_type, other_queue});
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_NE(ids[0], ids[2]);
  EXPECT_NE(ids[1], ids[2]);
  auto again = producer().enqueue(keyed("order-9", {{"n", 4}}));
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->id.get(), ids[0]);
  EXPECT_EQ(task_records(), 3u);
}

// A key taken before keys were scoped (its bare name, keys.h) still holds its
// task, and is freed when that task ends.
TEST_F(Idempotency, AKeyTakenBeforeScopingHoldsItsTaskUntilItEnds) {
  config_.idempotency_retention_ms = 0;
  const std::string id = enqueue({make_task("work", {{"old", true}})}).at(0);
  auto redis = connect_redis(config_);
  const Keys keys(config_.ns, config_.shards);
  // As an older ripen left it: the bare key, and the key in the TASK.
  std::string key = "legacy-0";  // one in the task's shard, as an older ripen would have drawn the id
  for (int i = 1; keys.shard_of(key) != keys.shard_of(id); ++i) key = "legacy-" + std::to_string(i);
  const std::string bare = keys.shard_prefix(keys.shard_of(id)) + "idem:" + key;
  ASSERT_TRUE(redis->command({"SET", bare, id}).ok());
  auto packed = redis->command({"HGET", keys.tasks(keys.shard_of(id)), id});
  ASSERT_TRUE(packed.ok() && packed->is_string());
  const std::string stored = packed->str();
  auto fields = split_fields(stored, 8);
  ASSERT_EQ(fields.size(), 8u);
  fields[5] = key;
  std::string rewritten;
  for (size_t f = 0; f < fields.size(); ++f) rewritten += (f ? std::string(1, kSep) : "") + std::string(fields[f]);
  ASSERT_TRUE(redis->command({"HSET", keys.tasks(keys.shard_of(id)), id, rewritten}).ok());

  auto dup = producer().enqueue(keyed(key, {{"new", true}}));
  ASSERT_TRUE(dup.ok()) << dup.error().describe();
  EXPECT_FALSE(dup->created) << "the old key still holds its task";
  EXPECT_EQ(dup->id.get(), id);

  start_worker({{"work", recorder()}});
  start_dispatcher();
  ASSERT_TRUE(reaches(id, "succeeded", 20s));
  auto left = redis->command({"EXISTS", bare});
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->integer(), 0) << "the bare key was freed with its task";
}

}  // namespace
}  // namespace ripen::testing
