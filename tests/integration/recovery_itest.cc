// The breaks of the promise issue 13 found that need the whole pipeline to
// show, each as the story that broke it, with real servers: a dead letter the
// broker never confirmed, a message the broker lost, a replay that would have
// deleted a dead letter, an ingress message Redis can never store, and a
// restarted dispatcher that served half its shards. (The breaks inside the
// scripts are in lifecycle_itest.)
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "fleet.h"
#include "ripen/dead_letters.h"
#include "ripen/topology.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Recovery : public FleetTest {
 protected:
  std::string state(const std::string& id) {
    auto r = producer().get(TaskId(id));
    return r ? r->state : r.error().describe();
  }
};

std::set<int> shards_of(const Dispatcher& d) {
  const auto s = d.stats().shards;
  return {s.begin(), s.end()};
}

// Break 3: the worker wrote `dead` and acked at once, and sent the dead-letter
// copy without a confirm: a publish that never reached the broker left a dead
// record and no copy. Now the copy is confirmed before the record says dead
// and before the delivery is acked.
TEST_F(Recovery, ADeadLetterCopyTheBrokerNeverTookLeavesTheTaskUnendedUntilItDoes) {
  auto broker = proxy_broker();
  start_dispatcher();  // publishes straight to the broker
  start_worker(broker.config,
               {{"charge", [](const TaskContext&) { throw Permanent("card declined", "card_declined"); }}});
  // The worker's publishes vanish on the way: no copy, no confirm.
  broker.proxy.drop_publishes(true);
  auto id = enqueue({make_task("charge", 1)}).at(0);
  ASSERT_TRUE(wait_until([&] { return broker.proxy.dropped_publishes() >= 1; }, 20s)) << "the copy was sent";
  auto amqp = connect_amqp(config_);
  const std::string dlq = producer().keys().dead_queue("default");
  EXPECT_FALSE(wait_until([&] { return state(id) == "dead"; }, 2s))
      << "no copy in the broker, so the record must not say dead";
  EXPECT_EQ(state(id), "running") << "its run still holds it";
  EXPECT_EQ(message_count(*amqp, dlq), 0);
  // The broker takes publishes again: the unconfirmed copy is sent again.
  broker.proxy.drop_publishes(false);
  ASSERT_TRUE(reaches(id, "dead", 40s));
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, dlq) == 1; }, 10s)) << "exactly one copy";
  EXPECT_EQ(message_count(*amqp, producer().keys().queue("default")), 0) << "and the delivery acked";
}

// Break 4: a task whose message the broker lost stayed `dispatched` for ever.
TEST_F(Recovery, TasksWhoseMessagesWerePurgedArePublishedAgainAndRunOnce) {
  config_.dispatcher.bundle = 1;
  config_.dispatcher.lost_after_ms = 1500;
  Dispatcher& dispatcher = start_dispatcher();
  const auto ids = enqueue(tasks(3, "job"));
  auto amqp = connect_amqp(config_);
  const std::string queue = producer().keys().queue("default");
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, queue) == 3; }, 20s));
  ASSERT_TRUE(amqp->purge_queue(queue).ok());  // an operator's mistake, or a lost node
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, queue) == 3; }, 20s))
      << "published again once lost_after passed with nothing heard of them";
  EXPECT_EQ(dispatcher.stats().lost, 3u);
  start_worker({{"job", recorder()}});
  for (const auto& id : ids) EXPECT_TRUE(reaches(id, "succeeded", 20s)) << id;
  EXPECT_EQ(calls_.size(), 3u);
}

TEST_F(Recovery, TasksWaitingInABackloggedQueueAreNotPublishedAgain) {
  config_.dispatcher.bundle = 1;
  config_.dispatcher.lost_after_ms = 1000;
  Dispatcher& dispatcher = start_dispatcher();
  const auto ids = enqueue(tasks(3, "job"));
  auto amqp = connect_amqp(config_);
  const std::string queue = producer().keys().queue("default");
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, queue) == 3; }, 20s));
  // No worker for a while: the messages wait their turn in the queue, which is
  // a backlog, not a loss.
  EXPECT_FALSE(wait_until([&] { return message_count(*amqp, queue) > 3; }, 4s));
  EXPECT_EQ(dispatcher.stats().lost, 0u);
}

// Break 6: `dlq replay` of a dead letter whose idempotency key another task
// had taken since acked (deleted) it, though nothing was replayed.
TEST_F(Recovery, AReplayThatWouldCollideWithTheKeysNewOwnerLeavesTheDeadLetter) {
  start_worker({{"charge", [](const TaskContext&) { throw Permanent("declined"); }}});
  start_dispatcher();
  Envelope first = make_task("charge", 1);
  first.idempotency_key = "order-7";
  const std::string dead = enqueue({first}).at(0);
  ASSERT_TRUE(reaches(dead, "dead", 20s));
  auto amqp = connect_amqp(config_);
  const std::string dlq = producer().keys().dead_queue("default");
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, dlq) == 1; }, 10s));
  // The key is free once its task died; a new task takes it.
  Envelope second = make_task("charge", 2);
  second.idempotency_key = "order-7";
  second.delay_ms = 3'600'000;
  const std::string holder = enqueue({second}).at(0);
  ASSERT_NE(holder, dead);

  auto report = replay_dead_letters(config_, producer(), "default", dead);
  ASSERT_TRUE(report.ok()) << report.error().describe();
  EXPECT_TRUE(report->replayed.empty());
  ASSERT_EQ(report->refused.size(), 1u);
  EXPECT_NE(report->refused[0].find(holder), std::string::npos) << report->refused[0];
  EXPECT_TRUE(wait_until([&] { return message_count(*amqp, dlq) == 1; }, 5s)) << "the dead letter stays";
}

// Break 8: the ingress held a batch for ever on any Redis error, a
// deterministic one (a script error, a key of the wrong type) included.
TEST_F(Recovery, AnIngressMessageRedisCanNeverStoreIsRefusedWithTheReason) {
  config_.shards = 1;
  Keys keys(config_.ns, config_.shards);
  // The shard's task hash is the wrong type: every store fails the same way.
  auto redis = connect_redis(config_);
  ASSERT_TRUE(redis->command({"SET", keys.tasks(0), "not a hash"}).ok());
  auto amqp = connect_amqp(config_);
  ASSERT_TRUE(declare_ingress(*amqp, keys).ok());
  Dispatcher& dispatcher = start_dispatcher();
  AmqpMessageProps props;
  props.message_id = "m-1";
  ASSERT_TRUE(
      amqp->publish(keys.ingress_exchange(), "", R"({"v":1,"queue":"default","type":"log","payload":1})", props, false)
          .ok());
  ASSERT_TRUE(wait_until([&] { return dispatcher.stats().ingress.refused == 1; }, 20s))
      << "refused, not held: a retry would meet the same error";
  auto letter = get_message(*amqp, keys.dead_queue(Keys::kIngress));
  ASSERT_TRUE(letter.has_value());
  EXPECT_NE(letter->headers["x-ripen-reason"].find("WRONGTYPE"), std::string::npos)
      << letter->headers["x-ripen-reason"];
  EXPECT_EQ(message_count(*amqp, keys.ingress_queue()), 0) << "acked once its copy was safe";
}

// Break 9: a dispatcher that stopped cleanly stayed in the live set, so the one
// started after it took only its half of the shards until the heartbeat lapsed.
TEST_F(Recovery, ADispatcherStartedAfterACleanStopServesEveryShardAtOnce) {
  config_.dispatcher.shard_lease_ms = 20'000;  // a heartbeat that lasts: the old wait was this long
  Dispatcher& first = start_dispatcher("first");
  ASSERT_TRUE(wait_until([&] { return shards_of(first).size() == 4u; }, 10s));
  stop(first);
  auto live = producer().redis().command({"ZRANGE", producer().keys().dispatchers(), "0", "-1"});
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live->size(), 0u) << "a clean stop leaves the live set";
  Dispatcher& second = start_dispatcher("second");
  EXPECT_TRUE(wait_until([&] { return shards_of(second).size() == 4u; }, 5s))
      << "alone, it takes every shard without waiting for the first one's heartbeat to lapse";
}

}  // namespace
}  // namespace ripen::testing
