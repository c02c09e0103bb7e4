// The worker's executor settings with real servers: a queue's own concurrency
// caps its tasks whatever the worker's; queue weights share the handlers out
// while several queues have work; worker.local_queue bounds the tasks started
// ahead of a free handler (the rest wait unstarted, their run leases not
// ticking).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ripen/dispatcher.h"
#include "ripen/producer.h"
#include "ripen/worker.h"
#include "testing.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Executor : public NamespaceTest {
 protected:
  // The most handlers seen inside at once.
  struct Overlap {
    std::atomic<int> inside{0}, most{0};
    void enter() {
      const int now = ++inside;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
    }
    void leave() { --inside; }
  };

  // Enqueues `n` tasks of `type` on `queue`, due now; returns their ids.
  std::vector<std::string> enqueue(Producer& producer, const std::string& type, const std::string& queue, int n) {
    std::vector<Envelope> tasks;
    for (int i = 0; i < n; ++i) tasks.push_back(make_task(type, i, queue));
    std::vector<std::string> ids;
    for (auto& r : producer.enqueue_batch(tasks)) {
      EXPECT_TRUE(r.ok()) << r.error().describe();
      if (r) ids.push_back(r->id.get());
    }
    return ids;
  }

  // Dispatches what is due and waits until the queues hold `messages` in all:
  // the worker then starts with every queue backlogged.
  void dispatch_all(const std::vector<std::string>& queues, int tasks) {
    Dispatcher dispatcher(config_);
    Running running(dispatcher);
    auto amqp = connect_amqp(config_);
    Keys keys(config_.ns, config_.shards);
    ASSERT_TRUE(wait_until([&] { return dispatcher.stats().confirmed == static_cast<uint64_t>(tasks); }, 20s));
    for (const auto& q : queues) EXPECT_GT(message_count(*amqp, keys.queue(q)), 0) << q;
  }
};

TEST_F(Executor, AQueuesConcurrencyCapsItsTasksWhileOtherQueuesUseTheRest) {
  queues_ = {"default", "slow"};
  config_.dispatcher.queues = queues_;
  config_.worker.queues = queues_;
  config_.worker.concurrency = 4;
  config_.worker.queue["slow"].concurrency = 1;
  Producer producer(config_);
  enqueue(producer, "slow-job", "slow", 8);
  enqueue(producer, "fast-job", "default", 40);
  dispatch_all(queues_, 48);

  Overlap slow, fast;
  std::atomic<int> done{0};
  Worker worker(config_);
  worker.handle("slow-job", [&](const TaskContext&) {
    slow.enter();
    std::this_thread::sleep_for(20ms);  // the work
    slow.leave();
    ++done;
  });
  worker.handle("fast-job", [&](const TaskContext&) {
    fast.enter();
    std::this_thread::sleep_for(10ms);
    fast.leave();
    ++done;
  });
  Running running(worker);
  ASSERT_TRUE(wait_until([&] { return worker.stats().succeeded == 48; }, 30s)) << done.load() << " done";
  EXPECT_EQ(slow.most.load(), 1) << "queue 'slow' has concurrency 1";
  EXPECT_GT(fast.most.load(), 1) << "the other handlers kept running the default queue";
}

TEST_F(Executor, QueueWeightsShareTheHandlersWhileBothQueuesHaveWork) {
  queues_ = {"heavy", "light"};
  config_.dispatcher.queues = queues_;
  config_.worker.queues = queues_;
  config_.worker.concurrency = 2;
  config_.worker.local_queue = 2;
  config_.worker.queue["heavy"].weight = 3;
  config_.worker.queue["light"].weight = 1;
  constexpr int kEach = 120;
  Producer producer(config_);
  enqueue(producer, "heavy-job", "heavy", kEach);
  enqueue(producer, "light-job", "light", kEach);
  dispatch_all(queues_, 2 * kEach);

  std::mutex mu;
  std::vector<std::string> order;
  auto record = [&](const std::string& queue) {
    return [&, queue](const TaskContext&) {
      std::this_thread::sleep_for(2ms);  // the work
      std::lock_guard lock(mu);
      order.push_back(queue);
    };
  };
  Worker worker(config_);
  worker.handle("heavy-job", record("heavy"));
  worker.handle("light-job", record("light"));
  Running running(worker);
  ASSERT_TRUE(wait_until([&] { return worker.stats().succeeded == 2 * kEach; }, 60s));
  // While both queues had work (the first 100 runs: heavy runs out after 160
  // at 3:1), the handlers went 3:1.
  std::lock_guard lock(mu);
  ASSERT_EQ(order.size(), static_cast<size_t>(2 * kEach));
  int heavy = 0;
  for (size_t i = 0; i < 100; ++i) heavy += order[i] == "heavy" ? 1 : 0;
  EXPECT_GE(heavy, 65) << "weight 3 of 4: about 75 of the first 100 runs";
  EXPECT_LE(heavy, 85);
}

TEST_F(Executor, LocalQueueBoundsTheTasksStartedAheadOfAFreeHandler) {
  config_.worker.concurrency = 2;
  config_.worker.local_queue = 1;
  config_.worker.shutdown_grace_ms = 1000;  // a failed assertion leaves the handlers blocked: not for long
  Producer producer(config_);
  const auto ids = enqueue(producer, "blocked", "default", 10);
  dispatch_all({"default"}, 10);

  std::atomic<bool> release{false};
  Overlap overlap;
  Worker worker(config_);
  worker.handle("blocked", [&](const TaskContext& ctx) {
    overlap.enter();
    while (!release.load() && !ctx.cancelled->load()) std::this_thread::sleep_for(1ms);
    overlap.leave();
  });
  auto redis = connect_redis(config_);
  Keys keys(config_.ns, config_.shards);
  auto started = [&] {
    int n = 0;
    for (const auto& id : ids) {
      auto r = read_task_record(*redis, keys, id);
      if (r && r->state == "running") ++n;
    }
    return n;
  };
  Running running(worker);
  ASSERT_TRUE(wait_until([&] { return worker.stats().received == 10 && overlap.inside.load() == 2; }, 20s));
  ASSERT_TRUE(wait_until([&] { return started() == 3; }, 10s)) << "two running and one started ahead";
  // Every delivery is here; none of the other seven may start while the handlers are busy.
  EXPECT_FALSE(wait_until([&] { return started() > 3; }, 1s)) << started() << " started";
  release = true;
  ASSERT_TRUE(wait_until([&] { return worker.stats().succeeded == 10; }, 20s));
  EXPECT_EQ(overlap.most.load(), 2);
}

}  // namespace
}  // namespace ripen::testing
