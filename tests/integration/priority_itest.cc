// Task priorities, end to end: a task queue is a priority queue in the broker,
// the dispatcher sends a task's priority with its message (and publishes the
// higher ones first among those that ripen together), so a high-priority task
// overtakes a backlog of ready ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fleet.h"
#include "ripen/envelope.h"
#include "ripen/topology.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Priority : public FleetTest {
 protected:
  static Envelope with_priority(Envelope e, int priority) {
    e.priority = priority;
    return e;
  }
};

// 30 tasks wait in the queue; one of priority 9 joins them after; a worker
// taking one message at a time runs it first.
TEST_F(Priority, AHighPriorityTaskOvertakesABacklog) {
  config_.dispatcher.bundle = 1;  // the backlog one message per task, as the broker orders messages
  const auto backlog = enqueue(tasks(30, "job"));
  ASSERT_EQ(backlog.size(), 30u);
  ASSERT_TRUE(dispatch_all());
  const auto urgent = enqueue({with_priority(make_task("job", {{"urgent", true}}), 9)});
  ASSERT_EQ(urgent.size(), 1u);
  ASSERT_TRUE(dispatch_all());
  auto amqp = connect_amqp(config_);
  ASSERT_EQ(message_count(*amqp, producer().keys().queue("default")), 31) << "all waiting before any worker starts";

  // One handler, and an automatic prefetch of two messages to start with: the
  // broker sends the highest priority first, and the worker runs it first.
  config_.worker.concurrency = 1;
  start_worker({{"job", recorder()}});
  ASSERT_TRUE(wait_for_calls(31, 30s)) << calls_.size() << " ran";
  const auto ran = calls_.ids();
  EXPECT_EQ(ran.front(), urgent.front()) << "the priority-9 task ran first, ahead of the 30 enqueued before it; it ran "
                                         << std::find(ran.begin(), ran.end(), urgent.front()) - ran.begin() + 1;
}

// Among tasks that ripen together, the dispatcher publishes each priority in
// messages of its own, with that priority: the queue hands them out highest first.
TEST_F(Priority, TasksThatRipenTogetherGoHighestFirst) {
  std::vector<Envelope> batch;
  for (int i = 0; i < 12; ++i) batch.push_back(with_priority(make_task("job", {{"i", i}}), i % 3 * 4));  // 0, 4, 8
  const auto ids = enqueue(std::move(batch));
  ASSERT_EQ(ids.size(), 12u);
  ASSERT_TRUE(dispatch_all());
  auto amqp = connect_amqp(config_);
  const std::string queue = producer().keys().queue("default");
  std::vector<int> order;
  while (auto msg = get_message(*amqp, queue)) {
    for (const auto& e : envelopes_of(msg->body)) order.push_back(e.priority);
  }
  ASSERT_EQ(order.size(), 12u);
  EXPECT_TRUE(std::is_sorted(order.rbegin(), order.rend())) << "highest priority first";
  EXPECT_EQ(order.front(), 8);
  EXPECT_EQ(order.back(), 0);
}

// A queue that an older ripen declared without priorities is still used, as it is.
TEST_F(Priority, AQueueDeclaredWithoutPrioritiesIsStillUsed) {
  auto amqp = connect_amqp(config_);
  const std::string queue = producer().keys().queue("default");
  ASSERT_TRUE(amqp->declare_queue(queue, {{"x-dead-letter-exchange", producer().keys().dead_exchange()},
                                          {"x-dead-letter-routing-key", std::string("default")}})
                  .ok());
  start_worker({{"job", recorder()}});
  Dispatcher& dispatcher = start_dispatcher();
  const auto ids = enqueue({with_priority(make_task("job"), 5)});
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_TRUE(reaches(ids.front(), "succeeded", 20s));
  ASSERT_TRUE(wait_until([&] { return dispatcher.stats().confirmed == 1; }, 20s));
  EXPECT_EQ(dispatcher.stats().released, 0u) << "confirmed on the connection it was published on, not timed out";
}

}  // namespace
}  // namespace ripen::testing
