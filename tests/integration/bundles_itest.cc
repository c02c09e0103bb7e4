// Bundles: tasks of one queue that ripen together travel in one broker message
// (dispatcher.bundle of them at most), and a worker runs each as if it had come
// alone. What must hold: every task runs once, a bad element fails alone, an
// unroutable bundle leaves each task dead with its own dead-letter copy, and a
// worker that stops halfway through a bundle hands back only what it did not run.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "fleet.h"
#include "ripen/topology.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Bundles : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    // One shard: every task due now is taken by the first claim, so the way
    // they are split into messages is exact.
    config_.shards = 1;
    config_.dispatcher.bundle = 50;
  }
};

TEST_F(Bundles, TasksThatRipenTogetherShareMessagesOfAtMostBundleTasks) {
  const auto ids = enqueue(tasks(120, "send"));
  ASSERT_EQ(ids.size(), 120u);
  ASSERT_TRUE(dispatch_all());

  auto amqp = connect_amqp(config_);
  const std::string queue = producer().keys().queue("default");
  ASSERT_EQ(message_count(*amqp, queue), 3) << "120 tasks claimed at once, 50 to a message";
  std::multiset<size_t> sizes;
  std::set<std::string> seen;
  while (auto msg = get_message(*amqp, queue)) {
    EXPECT_TRUE(is_bundle(msg->body));
    const auto envs = envelopes_of(msg->body);
    sizes.insert(envs.size());
    EXPECT_EQ(msg->message_id, envs.empty() ? "" : envs.front().id) << "a bundle is named by its first task";
    for (const auto& e : envs) {
      EXPECT_TRUE(seen.insert(e.id).second) << e.id << " in two messages";
      EXPECT_EQ(e.type, "send");
    }
  }
  EXPECT_EQ(sizes, (std::multiset<size_t>{40, 40, 40})) << "equal parts of at most 50";
  EXPECT_EQ(seen, std::set<std::string>(ids.begin(), ids.end()));
  for (const auto& id : {ids.front(), ids.back()}) {
    auto rec = read_task_record(producer().redis(), producer().keys(), id);
    ASSERT_TRUE(rec.ok());
    EXPECT_EQ(rec->state, "dispatched");
  }
}

TEST_F(Bundles, OneTaskAloneIsAPlainEnvelope) {
  const auto ids = enqueue(tasks(1, "send"));
  ASSERT_TRUE(dispatch_all());
  auto amqp = connect_amqp(config_);
  auto msg = get_message(*amqp, producer().keys().queue("default"));
  ASSERT_TRUE(msg.has_value());
  EXPECT_FALSE(is_bundle(msg->body)) << "what an AMQP consumer of a queue with one task sees: " << msg->body;
  auto env = decode_envelope(msg->body);
  ASSERT_TRUE(env.ok()) << msg->body;
  EXPECT_EQ(env->id, ids.front());
}

TEST_F(Bundles, EachTaskOfABundleRunsOnceAndEveryDeliveryIsAcked) {
  const auto ids = enqueue(tasks(230, "job"));
  Worker& worker = start_worker({{"job", recorder()}});
  Dispatcher& dispatcher = start_dispatcher();
  ASSERT_TRUE(wait_until([&] { return worker.stats().succeeded == ids.size(); }, 30s))
      << worker.stats().succeeded << " of " << ids.size() << " succeeded";
  stop();

  EXPECT_EQ(calls_.size(), ids.size());
  for (const auto& id : ids) EXPECT_EQ(calls_.count(id), 1) << id;
  auto amqp = connect_amqp(config_);
  EXPECT_EQ(message_count(*amqp, producer().keys().queue("default")), 0)
      << "every bundle was acked: none came back when the worker stopped";
  EXPECT_EQ(worker.stats().received, ids.size()) << "received counts tasks, not messages";
  EXPECT_EQ(dispatcher.stats().confirmed, ids.size());
}

TEST_F(Bundles, ABundlesBadElementIsDeadLetteredAloneAndTheOthersRun) {
  const auto ids = enqueue(tasks(2, "job"));
  ASSERT_TRUE(dispatch_all());
  // Take what the dispatcher published, and put back a bundle of those two
  // tasks around an element that is not a valid envelope.
  auto amqp = connect_amqp(config_);
  const std::string queue = producer().keys().queue("default");
  auto published = get_message(*amqp, queue);
  ASSERT_TRUE(published.has_value());
  ASSERT_EQ(message_count(*amqp, queue), 0);
  auto envs = envelopes_of(published->body);
  ASSERT_EQ(envs.size(), 2u);
  const std::string a = encode_envelope(envs[0]);
  const std::string b = encode_envelope(envs[1]);
  const std::string bad = R"({"v":1,"id":"no-type-here","queue":"default","payload":{"x":1}})";
  AmqpMessageProps props;
  props.message_id = "hand-made";
  ASSERT_TRUE(
      amqp->publish(producer().keys().task_exchange(), "default", encode_bundle({a, bad, b}), props, false).ok());

  Worker& worker = start_worker({{"job", recorder()}});
  ASSERT_TRUE(wait_until([&] { return worker.stats().succeeded == 2 && worker.stats().dead == 1; }, 20s))
      << "succeeded " << worker.stats().succeeded << ", dead " << worker.stats().dead;
  stop(worker);

  EXPECT_EQ(calls_.count(ids[0]), 1);
  EXPECT_EQ(calls_.count(ids[1]), 1);
  const std::string dlq = producer().keys().dead_queue("default");
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, dlq) == 1; }, 10s));
  auto dead = get_message(*amqp, dlq);
  ASSERT_TRUE(dead.has_value());
  EXPECT_EQ(dead->headers["x-ripen-reason"], "invalid envelope");
  EXPECT_NE(dead->headers["x-ripen-error"].find("'type'"), std::string::npos) << dead->headers["x-ripen-error"];
  EXPECT_EQ(nlohmann::json::parse(dead->body), nlohmann::json::parse(bad)) << "the bad element alone, as it came";
  EXPECT_EQ(message_count(*amqp, queue), 0) << "the bundle was acked once each element was done with";
}

TEST_F(Bundles, UnroutableBundleLeavesEachTaskDeadWithItsOwnCopy) {
  queues_.push_back("nowhere");
  config_.dispatcher.auto_declare = DispatcherConfig::AutoDeclare::none;
  const auto ids = enqueue(tasks(5, "send", "nowhere"));
  Dispatcher& dispatcher = start_dispatcher();
  for (const auto& id : ids) {
    auto rec = wait_for_state(id, "dead", 20s);
    ASSERT_TRUE(in_state(rec, "dead")) << id;
    EXPECT_NE(rec->last_error.find("unroutable"), std::string::npos) << rec->last_error;
  }
  auto amqp = connect_amqp(config_);
  const std::string dlq = producer().keys().dead_queue(Keys::kUnroutable);
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, dlq) == 5; }, 10s)) << message_count(*amqp, dlq);
  std::set<std::string> copies;
  while (auto msg = get_message(*amqp, dlq)) {
    auto env = decode_envelope(msg->body);
    ASSERT_TRUE(env.ok()) << "each copy is one envelope: " << msg->body;
    EXPECT_EQ(msg->message_id, env->id);
    EXPECT_EQ(msg->headers["x-ripen-queue"], "nowhere");
    copies.insert(env->id);
  }
  EXPECT_EQ(copies, std::set<std::string>(ids.begin(), ids.end()));
  stop(dispatcher);
  EXPECT_EQ(dispatcher.stats().returned, ids.size());
  EXPECT_EQ(inflight_count(producer().redis(), producer().keys()), 0);
}

TEST_F(Bundles, WorkerStoppedHalfwayHandsTheBundleBackAndTheRestRunOnce) {
  config_.worker.concurrency = 1;
  config_.worker.shutdown_grace_ms = 10'000;
  const auto ids = enqueue(tasks(10, "job"));
  ASSERT_TRUE(dispatch_all());
  auto amqp = connect_amqp(config_);
  ASSERT_EQ(message_count(*amqp, producer().keys().queue("default")), 1) << "the ten share one message";

  Worker& first = start_worker({{"job", [this](const TaskContext& ctx) {
                                   record(ctx);
                                   // The first task runs until the worker is told to stop: the rest
                                   // of the bundle waits unstarted behind it (concurrency 1).
                                   gate_.wait();
                                 }}});
  ASSERT_TRUE(wait_for_calls(1, 20s));
  first.stop();
  gate_.open();
  stop(first);
  EXPECT_EQ(first.stats().succeeded, 1u) << "the running one finishes within the grace";
  EXPECT_EQ(calls_.size(), 1u);

  Worker& second = start_worker({{"job", recorder()}});
  ASSERT_TRUE(wait_until([&] { return second.stats().succeeded == 9; }, 20s)) << second.stats().succeeded;
  stop(second);
  for (const auto& id : ids) EXPECT_EQ(calls_.count(id), 1) << id << " ran " << calls_.count(id) << " times";
  EXPECT_EQ(second.stats().duplicates, 1u) << "the one that ended is skipped when the bundle comes again";
  EXPECT_EQ(message_count(*amqp, producer().keys().queue("default")), 0);
}

}  // namespace
}  // namespace ripen::testing
