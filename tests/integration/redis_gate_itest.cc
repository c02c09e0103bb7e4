// A process that cannot reach Redis takes no work from RabbitMQ, with real
// servers: a worker or dispatcher started with a Redis that does not answer
// consumes nothing and exits (kExitRedisUnreachable) naming Redis once
// redis_startup_timeout has passed; one that loses Redis mid-run hands back
// what it has not started or stored and consumes again once Redis answers.
// And a second SIGINT to a draining worker stops it at once, its task retried.
#include <gtest/gtest.h>

#include <csignal>
#include <string>
#include <vector>

#include "fleet.h"
#include "ripen/redis.h"
#include "ripen/topology.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class RedisGate : public FleetTest {
 protected:
  // config_ with a Redis URL nothing listens on, and a short bound.
  Config unreachable() {
    Config c = config_;
    bad_port_ = free_port();
    c.redis_url = "redis://127.0.0.1:" + std::to_string(bad_port_) + "/0";
    c.redis_startup_timeout_ms = 1500;
    return c;
  }

  AmqpQueueCounts counts(const std::string& amqp_queue) {
    auto amqp = connect_amqp(config_);
    auto c = amqp->queue_counts(amqp_queue);
    EXPECT_TRUE(c.ok()) << c.error().describe();
    return c ? *c : AmqpQueueCounts{};
  }

  // Publishes `n` envelopes of type "greet" to the ingress exchange.
  void publish_to_ingress(int n, const std::string& label) {
    auto amqp = connect_amqp(config_);
    const Keys keys(config_.ns, config_.shards);
    for (int i = 0; i < n; ++i) {
      const nlohmann::json env = {{"v", 1}, {"queue", "default"}, {"type", "greet"}, {"payload", {{"i", i}}}};
      AmqpMessageProps props;
      props.message_id = label + "-" + std::to_string(i);
      ASSERT_TRUE(amqp->publish(keys.ingress_exchange(), "any-key", env.dump(), props, false).ok());
    }
  }

  int bad_port_ = 0;
};

TEST_F(RedisGate, WorkerThatCannotReachRedisTakesNoDeliveryAndExitsNamingIt) {
  config_.dispatcher.bundle = 1;  // a message per task
  auto ids = enqueue(tasks(3, "greet"));
  ASSERT_EQ(ids.size(), 3u);
  ASSERT_TRUE(dispatch_all());
  const std::string queue = producer().keys().queue("default");
  ASSERT_EQ(counts(queue).messages, 3u);

  const Config bad = unreachable();
  const std::string file = write_config_file(bad, config_.ns + "-bad-worker");
  Child worker(binary("worker/ripen-worker"), {"--config", file, "--exec", "greet=true"}, child_env(bad));
  // While it waits for Redis: it says so, and the broker sees no consumer.
  ASSERT_TRUE(wait_until([&] { return worker.output().find("waiting for Redis") != std::string::npos; }, 10s))
      << worker.output();
  EXPECT_EQ(counts(queue).consumers, 0u) << worker.output();

  const int code = worker.wait(20s);
  EXPECT_EQ(code, kExitRedisUnreachable) << worker.output();
  const std::string out = worker.output();
  EXPECT_NE(out.find("cannot reach Redis at redis://127.0.0.1:" + std::to_string(bad_port_)), std::string::npos) << out;
  EXPECT_NE(out.find("redis_startup_timeout"), std::string::npos) << out;
  EXPECT_EQ(out.find("consuming ["), std::string::npos) << "it never consumed:\n" << out;
  const AmqpQueueCounts after = counts(queue);
  EXPECT_EQ(after.messages, 3u) << "every message still ready";
  EXPECT_EQ(after.consumers, 0u);
  for (const auto& id : ids) EXPECT_EQ(producer().get(TaskId(id))->state, "dispatched");
}

TEST_F(RedisGate, DispatcherThatCannotReachRedisIngestsNothingAndExitsNamingIt) {
  const Keys keys(config_.ns, config_.shards);
  {
    auto amqp = connect_amqp(config_);
    ASSERT_TRUE(declare_ingress(*amqp, keys).ok());
  }
  publish_to_ingress(4, "m");
  ASSERT_TRUE(wait_until([&] { return counts(keys.ingress_queue()).messages == 4; }, 10s));

  const Config bad = unreachable();
  const std::string file = write_config_file(bad, config_.ns + "-bad-dispatcher");
  Child dispatcher(binary("dispatcher/ripen-dispatcher"), {"--config", file}, child_env(bad));
  ASSERT_TRUE(wait_until([&] { return dispatcher.output().find("waiting for Redis") != std::string::npos; }, 10s))
      << dispatcher.output();
  EXPECT_EQ(counts(keys.ingress_queue()).consumers, 0u) << dispatcher.output();

  EXPECT_EQ(dispatcher.wait(20s), kExitRedisUnreachable) << dispatcher.output();
  const std::string out = dispatcher.output();
  EXPECT_NE(out.find("cannot reach Redis at redis://127.0.0.1:" + std::to_string(bad_port_)), std::string::npos) << out;
  const AmqpQueueCounts after = counts(keys.ingress_queue());
  EXPECT_EQ(after.messages, 4u) << "every ingress message still ready: none taken, none answered";
  EXPECT_EQ(after.consumers, 0u);
}

TEST_F(RedisGate, WorkerThatLosesRedisHandsBackWhatItHasNotStartedAndResumesWhenItAnswers) {
  // One handler, a prefetch of 8 and a message per task: while "hold" runs,
  // one task's start is recorded (it waits for the handler) and the others
  // wait in the worker for room, unstarted and unacked.
  config_.worker.concurrency = 1;
  config_.worker.local_queue = 1;
  config_.worker.prefetch = 8;
  config_.dispatcher.bundle = 1;
  auto [proxy, through] = proxy_redis();
  Worker& worker = start_worker(through, {{"hold",
                                           [this](const TaskContext& ctx) {
                                             record(ctx);
                                             gate_.wait(ctx);
                                           }},
                                          {"greet", recorder()}});
  start_dispatcher();  // straight to Redis: it goes on publishing
  const auto hold = enqueue(tasks(1, "hold"));
  ASSERT_TRUE(wait_for_calls(1, 20s));
  const auto ids = enqueue(tasks(4, "greet"));
  ASSERT_EQ(ids.size(), 4u);
  ASSERT_TRUE(wait_until([&] { return worker.stats().received == 5; }, 20s)) << worker.stats().received;
  const std::string queue = producer().keys().queue("default");

  // Redis goes away; the worker meets it when it records how "hold" ended.
  proxy.set_down(true);
  gate_.open();
  AmqpQueueCounts c;
  EXPECT_TRUE(wait_until(
      [&] {
        c = counts(queue);
        return c.messages == 3 && c.consumers == 0;
      },
      20s, 50ms))
      << "ready " << c.messages << ", consumers " << c.consumers
      << ": the three tasks that found no room are handed back, and the worker stops consuming";
  EXPECT_LE(calls_.size(), 2u) << "only the run started before the outage went on";

  proxy.set_down(false);
  for (const auto& id : ids) EXPECT_TRUE(reaches(id, "succeeded", 30s));
  EXPECT_TRUE(reaches(hold.at(0), "succeeded", 30s));
  for (const auto& id : ids) EXPECT_EQ(calls_.count(id), 1) << id;
  EXPECT_TRUE(wait_until([&] { return counts(queue).consumers == 1; }, 10s)) << "consuming again";
}

TEST_F(RedisGate, IngressThatLosesRedisHandsBackItsMessagesAndResumesWhenItAnswers) {
  const Keys keys(config_.ns, config_.shards);
  {
    auto amqp = connect_amqp(config_);
    ASSERT_TRUE(declare_ingress(*amqp, keys).ok());
  }
  auto [proxy, through] = proxy_redis();
  Dispatcher& dispatcher = start_dispatcher(through);
  ASSERT_TRUE(wait_until([&] { return counts(keys.ingress_queue()).consumers == 1; }, 20s));

  proxy.set_down(true);
  publish_to_ingress(4, "lost");
  AmqpQueueCounts c;
  EXPECT_TRUE(wait_until(
      [&] {
        c = counts(keys.ingress_queue());
        return c.messages == 4 && c.consumers == 0;
      },
      20s, 50ms))
      << "ready " << c.messages << ", consumers " << c.consumers;
  EXPECT_EQ(dispatcher.stats().ingress.enqueued, 0u);

  proxy.set_down(false);
  // Each message once, enqueued (or found stored already, had a reply been lost).
  const auto settled = [&] {
    const IngressStats in = dispatcher.stats().ingress;
    return in.enqueued + in.duplicates;
  };
  EXPECT_TRUE(wait_until([&] { return settled() == 4; }, 30s)) << "settled " << settled();
  EXPECT_TRUE(wait_until([&] { return counts(keys.ingress_queue()).messages == 0; }, 10s));
}

TEST_F(RedisGate, SecondSigintStopsADrainingWorkerAtOnceAndItsTaskIsRetried) {
  config_.worker.shutdown_grace_ms = 120'000;  // far longer than the test waits
  Envelope task = make_task("slow");
  task.max_attempts = 3;
  auto enq = producer().enqueue(task);
  ASSERT_TRUE(enq.ok()) << enq.error().describe();
  const std::string id = enq->id.get();
  start_dispatcher();

  const std::string file = write_config_file(config_, config_.ns);
  Child worker(binary("worker/ripen-worker"), {"--config", file, "--exec", "slow=sleep 60"}, child_env(config_));
  ASSERT_TRUE(reaches(id, "running", 20s)) << worker.output();

  worker.signal(SIGINT);
  ASSERT_TRUE(wait_until([&] { return worker.output().find("draining: 1 tasks running") != std::string::npos; }, 10s))
      << worker.output();
  EXPECT_NE(worker.output().find("worker.shutdown_grace"), std::string::npos) << worker.output();
  EXPECT_TRUE(worker.running()) << "the first SIGINT drains; it does not stop the run";

  worker.signal(SIGINT);
  // Generous: "at once" is well under the 120 s grace.
  EXPECT_EQ(worker.wait(20s), 130) << worker.output();
  EXPECT_NE(worker.output().find("abandoning 1 running tasks"), std::string::npos) << worker.output();

  // Not lost: the killed run is a failed attempt, retried on another worker.
  start_worker({{"slow", recorder()}}, "survivor");
  auto rec = wait_for_state(id, "succeeded", 30s);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->state, "succeeded") << worker.output();
  EXPECT_EQ(rec->attempts, 2) << "the abandoned run counted as an attempt";
  EXPECT_EQ(calls_.count(id), 1);
}

}  // namespace
}  // namespace ripen::testing
