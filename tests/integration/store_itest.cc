// The storage contract, script by script, against the real Redis: what the
// enqueue, claim, settle, start and finish scripts write, and what `ripen
// status` reads back from it, including orderings that are races in the running
// system (a worker finishing before the dispatcher records the broker's confirm).
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "ripen/producer.h"
#include "ripen/scripts.h"
#include "ripen/stored_task.h"
#include "testing.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Store : public NamespaceTest {
 protected:
  void SetUp() override {
    NamespaceTest::SetUp();
    config_.shards = 1;  // every task in shard 0: the scripts can be driven by hand
    redis_ = connect_redis(config_);
    keys_ = std::make_unique<Keys>(config_.ns, config_.shards);
    auto lease = redis_->eval(scripts::shard_lease(), {keys_->lease(0), keys_->fence(0)}, {"test", "60000"});
    ASSERT_TRUE(lease.ok()) << lease.error().describe();
    lease_ = lease->str();
  }

  std::string enqueue_due_now(nlohmann::json payload = {{"n", 1}}) {
    Producer producer(config_);
    auto r = producer.enqueue(make_task("send", std::move(payload)));
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r ? r->id.get() : "";
  }

  // Runs the claim script; returns its reply.
  RedisReply claim() {
    auto r = redis_->eval(scripts::claim(),
                          {keys_->due(0), keys_->inflight(0), keys_->lease(0), keys_->tasks(0), keys_->status(0)},
                          {lease_, "100", "30000"});
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r ? std::move(*r) : RedisReply();
  }

  void settle(const std::string& id, const std::string& outcome, const std::string& reason = "") {
    auto r = redis_->eval(scripts::settle(), {keys_->due(0), keys_->inflight(0), keys_->status(0)},
                          {keys_->shard_prefix(0), "60000", id, outcome, reason});
    ASSERT_TRUE(r.ok()) << r.error().describe();
  }

  RedisReply start(const std::string& id) {
    auto r = redis_->eval(scripts::start(), {keys_->status(0)}, {keys_->shard_prefix(0), "w1", id});
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r ? std::move(*r) : RedisReply();
  }

  std::string finish(const std::string& id, const std::string& outcome, const std::string& error = "") {
    auto r = redis_->eval(scripts::finish(), {keys_->status(0), keys_->due(0)},
                          {keys_->shard_prefix(0), "60000", "", "0", id, outcome, error, "5000", ""});
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r ? r->at(0).str() : "";
  }

  TaskRecord record(const std::string& id) {
    auto r = read_task_record(*redis_, *keys_, id);
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r ? *r : TaskRecord{};
  }

  std::unique_ptr<Redis> redis_;
  std::unique_ptr<Keys> keys_;
  std::string lease_;
};

TEST_F(Store, ScheduledTaskIsOneTaskFieldAndOneDueEntryAndNoStatus) {
  const std::string id = enqueue_due_now();
  auto tasks = redis_->command({"HLEN", keys_->tasks(0)});
  auto status = redis_->command({"HLEN", keys_->status(0)});
  ASSERT_TRUE(tasks.ok() && status.ok());
  EXPECT_EQ(tasks->integer(), 1);
  EXPECT_EQ(status->integer(), 0) << "no STATUS until the first claim";
  EXPECT_EQ(due_count(*redis_, *keys_), 1);
  const TaskRecord t = record(id);
  EXPECT_EQ(t.state, "scheduled");
  EXPECT_EQ(t.queue, "default");
  EXPECT_EQ(t.type, "send");
  EXPECT_EQ(t.max_attempts, config_.default_max_attempts);
  EXPECT_TRUE(t.created_ms.has_value());
  EXPECT_GE(t.due_ms, *t.created_ms);
}

TEST_F(Store, ClaimReturnsTheStoredTaskAndTheEnvelopeBuiltFromItDecodes) {
  const nlohmann::json payload = {{"to", "+15550100"}, {"text", "tab\there, quote \" and \u001f unit sep"}};
  const std::string id = enqueue_due_now(payload);
  const RedisReply r = claim();
  ASSERT_EQ(r.size(), 6u) << "now, next, recovered, then one (id, task, due)";
  EXPECT_EQ(r.at(3).str(), id);
  auto stored = parse_stored_task(r.at(4).sv());
  ASSERT_TRUE(stored.has_value()) << r.at(4).str();
  auto env = decode_envelope(envelope_json(id, *stored));
  ASSERT_TRUE(env.ok()) << env.error().describe() << "\n" << envelope_json(id, *stored);
  EXPECT_EQ(env->id, id);
  EXPECT_EQ(env->queue, "default");
  EXPECT_EQ(env->type, "send");
  EXPECT_EQ(env->payload, payload);
  EXPECT_EQ(record(id).state, "scheduled") << "claimed, not yet confirmed";
  EXPECT_EQ(inflight_count(*redis_, *keys_), 1);
}

TEST_F(Store, LifeOfATaskThatSucceeds) {
  const std::string id = enqueue_due_now();
  claim();
  settle(id, "d");
  TaskRecord t = record(id);
  EXPECT_EQ(t.state, "dispatched");
  ASSERT_TRUE(t.dispatched_ms.has_value());
  EXPECT_EQ(inflight_count(*redis_, *keys_), 0);

  const RedisReply s = start(id);
  EXPECT_EQ(s.at(0).str(), "run");
  EXPECT_EQ(s.at(1).integer(), 1) << "attempt";
  EXPECT_EQ(record(id).state, "running");
  EXPECT_EQ(finish(id, "ok"), "succeeded");

  t = record(id);
  EXPECT_EQ(t.state, "succeeded");
  EXPECT_EQ(t.attempts, 1);
  EXPECT_EQ(t.worker, "w1");
  EXPECT_EQ(t.queue, "default") << "the ended record keeps what status prints";
  EXPECT_TRUE(t.started_ms && t.finished_ms && t.dispatched_ms);
  auto hlen = redis_->command({"HLEN", keys_->tasks(0)});
  EXPECT_EQ(hlen->integer(), 0) << "the live entries are gone";
  auto ttl = redis_->command({"PTTL", keys_->ended(id)});
  EXPECT_GT(ttl->integer(), 0);
  EXPECT_LE(ttl->integer(), 60000) << "the ended record expires after the retention";
  EXPECT_EQ(start(id).at(0).str(), "skip") << "a redelivery of an ended task is skipped";
}

TEST_F(Store, ConfirmWrittenAfterTheWorkerFinishedStillStampsDispatched) {
  const std::string id = enqueue_due_now();
  claim();
  start(id);  // the worker got the message before the dispatcher wrote the confirm
  ASSERT_EQ(finish(id, "ok"), "succeeded");
  ASSERT_FALSE(record(id).dispatched_ms.has_value());
  settle(id, "d");
  const TaskRecord t = record(id);
  EXPECT_EQ(t.state, "succeeded");
  EXPECT_TRUE(t.dispatched_ms.has_value());
  EXPECT_EQ(inflight_count(*redis_, *keys_), 0);
}

TEST_F(Store, RetryGoesBackToTheWheelWithItsErrorAndANewDueTime) {
  const std::string id = enqueue_due_now();
  claim();
  settle(id, "d");
  start(id);
  ASSERT_EQ(finish(id, "retry", "smtp 451"), "failed");
  const TaskRecord t = record(id);
  EXPECT_EQ(t.state, "failed");
  EXPECT_EQ(t.last_error, "smtp 451");
  EXPECT_EQ(due_count(*redis_, *keys_), 1);
  auto score = redis_->command({"ZSCORE", keys_->due(0), id});
  EXPECT_EQ(score->integer(), t.due_ms) << "STATUS and the wheel agree on the new due time";
  EXPECT_GE(t.due_ms, *t.finished_ms + 5000);
}

TEST_F(Store, UnroutableTaskEndsDeadWithTheReason) {
  const std::string id = enqueue_due_now();
  claim();
  settle(id, "x", "unroutable: no queue");
  const TaskRecord t = record(id);
  EXPECT_EQ(t.state, "dead");
  EXPECT_EQ(t.last_error, "unroutable: no queue");
  EXPECT_EQ(due_count(*redis_, *keys_) + inflight_count(*redis_, *keys_), 0);
}

TEST_F(Store, ReleasedTaskGoesBackWithItsOriginalDueTime) {
  const std::string id = enqueue_due_now();
  const int64_t due = record(id).due_ms;
  claim();
  settle(id, "r");
  auto score = redis_->command({"ZSCORE", keys_->due(0), id});
  EXPECT_EQ(score->integer(), due);
  EXPECT_EQ(inflight_count(*redis_, *keys_), 0);
}

TEST_F(Store, SameKeyWhilePendingGivesTheExistingIdAndItsDueTime) {
  Producer producer(config_);
  Envelope a = make_task("send", 1);
  a.idempotency_key = "k|with|pipes";
  a.delay_ms = 60'000;
  auto first = producer.enqueue(a);
  ASSERT_TRUE(first.ok()) << first.error().describe();
  claim();  // nothing ripe; a claimed one would be found through its STATUS
  auto second = producer.enqueue(a);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->id, first->id);
  EXPECT_EQ(second->due_ms, first->due_ms);
  EXPECT_EQ(record(first->id.get()).idempotency_key, "k|with|pipes");
}

}  // namespace
}  // namespace ripen::testing
