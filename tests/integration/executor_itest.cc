// The worker's executor settings with real servers: a queue's own concurrency
// caps its tasks whatever the worker's; queue weights share the handlers out
// while several queues have work; worker.local_queue bounds the tasks started
// ahead of a free handler (the rest wait unstarted, their run leases not
// ticking).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "fleet.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Executor : public FleetTest {
 protected:
  // Dispatches what is due and waits until the broker has confirmed all `tasks`:
  // the worker then starts with every queue backlogged.
  void dispatch_all(const std::vector<std::string>& queues, int tasks) {
    ASSERT_TRUE(run_dispatcher_until(
        [&](const Dispatcher& d) { return d.stats().confirmed == static_cast<uint64_t>(tasks); }, 20s));
    auto amqp = connect_amqp(config_);
    for (const auto& q : queues) EXPECT_GT(message_count(*amqp, producer().keys().queue(q)), 0) << q;
  }
};

TEST_F(Executor, AQueuesConcurrencyCapsItsTasksWhileOtherQueuesUseTheRest) {
  queues_ = {"default", "slow"};
  config_.dispatcher.queues = queues_;
  config_.worker.queues = queues_;
  config_.worker.concurrency = 4;
  config_.worker.queue["slow"].concurrency = 1;
  enqueue(tasks(8, "slow-job", "slow"));
  enqueue(tasks(40, "fast-job", "default"));
  dispatch_all(queues_, 48);

  auto& slow = keep<Overlap>();
  auto& fast = keep<Overlap>();
  auto& done = keep<std::atomic<int>>(0);
  Worker& worker = start_worker({{"slow-job",
                                  [&](const TaskContext&) {
                                    slow.enter();
                                    std::this_thread::sleep_for(20ms);  // the work
                                    slow.leave();
                                    ++done;
                                  }},
                                 {"fast-job", [&](const TaskContext&) {
                                    fast.enter();
                                    std::this_thread::sleep_for(10ms);
                                    fast.leave();
                                    ++done;
                                  }}});
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
  const auto heavy_ids = enqueue(tasks(kEach, "heavy-job", "heavy"));
  enqueue(tasks(kEach, "light-job", "light"));
  dispatch_all(queues_, 2 * kEach);

  auto working = [this](const TaskContext& ctx) {
    std::this_thread::sleep_for(2ms);  // the work
    record(ctx);
  };
  Worker& worker = start_worker({{"heavy-job", working}, {"light-job", working}});
  ASSERT_TRUE(wait_until([&] { return worker.stats().succeeded == 2 * kEach; }, 60s));
  // While both queues had work (the first 100 runs: heavy runs out after 160
  // at 3:1), the handlers went 3:1.
  const auto order = calls_.ids();
  ASSERT_EQ(order.size(), static_cast<size_t>(2 * kEach));
  const std::set<std::string> on_heavy(heavy_ids.begin(), heavy_ids.end());
  int heavy = 0;
  for (size_t i = 0; i < 100; ++i) heavy += on_heavy.count(order[i]) ? 1 : 0;
  EXPECT_GE(heavy, 65) << "weight 3 of 4: about 75 of the first 100 runs";
  EXPECT_LE(heavy, 85);
}

TEST_F(Executor, LocalQueueBoundsTheTasksStartedAheadOfAFreeHandler) {
  config_.worker.concurrency = 2;
  config_.worker.local_queue = 1;
  config_.worker.shutdown_grace_ms = 1000;  // a failed assertion leaves the handlers blocked: not for long
  const auto ids = enqueue(tasks(10, "blocked", "default"));
  dispatch_all({"default"}, 10);

  auto& overlap = keep<Overlap>();
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
  Worker& worker = start_worker({{"blocked", [this, &overlap](const TaskContext& ctx) {
                                    overlap.enter();
                                    gate_.wait(ctx);
                                    overlap.leave();
                                  }}});
  ASSERT_TRUE(wait_until([&] { return worker.stats().received == 10 && overlap.inside.load() == 2; }, 20s));
  ASSERT_TRUE(wait_until([&] { return started() == 3; }, 10s)) << "two running and one started ahead";
  // Every delivery is here; none of the other seven may start while the handlers are busy.
  EXPECT_FALSE(wait_until([&] { return started() > 3; }, 1s)) << started() << " started";
  gate_.open();
  ASSERT_TRUE(wait_until([&] { return worker.stats().succeeded == 10; }, 20s));
  EXPECT_EQ(overlap.most.load(), 2);
}

}  // namespace
}  // namespace ripen::testing
