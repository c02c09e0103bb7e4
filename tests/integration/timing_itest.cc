// Timing: a task runs no earlier than its due time by Redis TIME, and within
// tens of milliseconds after it; a sleeping dispatcher is woken by an enqueue of
// an earlier task instead of sleeping out its poll interval.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "fleet.h"
#include "ripen/inspect.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

// Generous for a loaded CI machine; on an idle one lateness is a few ms.
constexpr int64_t kMaxLatenessMs = 100;

class Timing : public FleetTest {
 protected:
  // A handler that stamps Redis TIME the moment it starts, on its own connection
  // (connected up front so the first call pays no handshake).
  Handler stamping_handler() {
    clock_redis_ = connect_redis(config_);
    auto t = clock_redis_->time_ms();
    EXPECT_TRUE(t.ok()) << t.error().describe();
    return [this](const TaskContext& ctx) {
      std::lock_guard lock(clock_mu_);
      auto now = clock_redis_->time_ms();
      calls_.add({ctx.id, ctx.attempt, ctx.task.payload.dump(), now ? *now : -1});
    };
  }

  // Starts a worker with the stamping handler for "tick" and a dispatcher, and
  // waits until the dispatcher holds every shard, so it is past start-up.
  void start_ready() {
    start_worker({{"tick", stamping_handler()}});
    Dispatcher& dispatcher = start_dispatcher();
    ASSERT_TRUE(
        wait_until([&] { return dispatcher.stats().shards.size() == static_cast<size_t>(config_.shards); }, 15s))
        << "the dispatcher did not take its shards";
  }

  std::optional<CallLog::Call> call_for(const std::string& id) {
    for (const auto& c : calls_.calls()) {
      if (c.id == id) return c;
    }
    return std::nullopt;
  }

  std::mutex clock_mu_;
  std::unique_ptr<Redis> clock_redis_;
};

TEST_F(Timing, TaskDueInTwoSecondsStartsOnTimeByRedisClock) {
  start_ready();

  auto enq = producer().enqueue_in(make_task("tick"), 2000ms);
  ASSERT_TRUE(enq.ok()) << enq.error().describe();
  auto now = producer().redis().time_ms();
  ASSERT_TRUE(now.ok());
  EXPECT_GE(enq->due_ms - *now, 1900) << "due time is 2 s after the enqueue by Redis TIME";

  ASSERT_TRUE(wait_for_calls(1, 15s)) << "the task never ran";
  auto rec = wait_for_state(enq->id.get(), "succeeded", 10s);
  stop();

  const auto call = call_for(enq->id.get());
  ASSERT_TRUE(call.has_value());
  EXPECT_EQ(calls_.size(), 1u);
  const int64_t lateness = call->redis_ms - enq->due_ms;
  std::cout << "task due in 2 s: handler started " << lateness << " ms after its due time (Redis TIME)\n";
  EXPECT_GE(lateness, 0) << "the handler started before the task was due";
  EXPECT_LE(lateness, kMaxLatenessMs);
  ASSERT_TRUE(rec && rec->started_ms);
  EXPECT_GE(*rec->started_ms, enq->due_ms);
}

TEST_F(Timing, FiveTasksDueAtDifferentTimesEachStartOnTime) {
  start_ready();

  // Enqueued out of order, so some later enqueues move a shard's head earlier.
  const std::vector<std::chrono::milliseconds> delays = {1700ms, 300ms, 2300ms, 900ms, 1300ms};
  std::vector<Enqueued> enqueued;
  for (auto delay : delays) {
    auto enq = producer().enqueue_in(make_task("tick", {{"delay_ms", delay.count()}}), delay);
    ASSERT_TRUE(enq.ok()) << enq.error().describe();
    enqueued.push_back(*enq);
  }

  ASSERT_TRUE(wait_for_calls(delays.size(), 20s)) << calls_.size() << " of " << delays.size() << " tasks ran";
  stop();

  EXPECT_EQ(calls_.size(), delays.size()) << "a task ran twice";
  for (size_t i = 0; i < enqueued.size(); ++i) {
    const auto call = call_for(enqueued[i].id.get());
    ASSERT_TRUE(call.has_value()) << "task " << i << " did not run";
    const int64_t lateness = call->redis_ms - enqueued[i].due_ms;
    std::cout << "task due in " << delays[i].count() << " ms: started " << lateness << " ms after its due time\n";
    EXPECT_GE(lateness, 0) << "task due in " << delays[i].count() << " ms started early";
    EXPECT_LE(lateness, kMaxLatenessMs) << "task due in " << delays[i].count() << " ms";
  }
}

TEST_F(Timing, SleepingDispatcherIsWokenByAnEarlierTask) {
  // Long sleeps: without a wake-up the dispatcher would look at the wheel only
  // every 5 s (max_poll), and its shard maintenance only every 10 s.
  config_.dispatcher.max_poll_ms = 5000;
  config_.dispatcher.inflight_lease_ms = 10'000;
  config_.dispatcher.shard_lease_ms = 30'000;
  start_ready();

  auto later = producer().enqueue_in(make_task("tick", "later"), 60s);
  ASSERT_TRUE(later.ok()) << later.error().describe();
  // Part of the scenario, not a wait for a condition: let the dispatcher go back
  // to sleep with nothing due for a minute.
  std::this_thread::sleep_for(500ms);

  auto soon = producer().enqueue_in(make_task("tick", "soon"), 300ms);
  ASSERT_TRUE(soon.ok()) << soon.error().describe();
  ASSERT_TRUE(wait_until([&] { return call_for(soon->id.get()).has_value(); }, 10s))
      << "the task due in 300 ms did not run";
  stop();

  const auto call = call_for(soon->id.get());
  const int64_t lateness = call->redis_ms - soon->due_ms;
  std::cout << "task due in 300 ms behind one due in 60 s: started " << lateness << " ms after its due time\n";
  EXPECT_GE(lateness, 0);
  EXPECT_LE(lateness, kMaxLatenessMs) << "the dispatcher slept past the due time: no wake-up";
  EXPECT_FALSE(call_for(later->id.get()).has_value()) << "the task due in 60 s ran early";
}

// A task given a due time already past (here by the CLI's --at, six years
// back) is due at once: the CLI warns and exits 0, and the task was not late
// for the years before it existed. Lateness counts from max(due, created) in the
// dispatcher's and the worker's histograms and in the per-minute tally behind
// `ripen stats`, where such a task once showed as ">1h" and
// "p99=218390929087ms".
TEST_F(Timing, TaskGivenAPastDueTimeWarnsAndDoesNotCountAsLate) {
  const auto enq = run_command(binary("producer/ripen"),
                               {"enqueue", "--config", write_config_file(config_, config_.ns), "--queue", "default",
                                "--type", "tick", "--at", "2020-01-01T00:00:00Z"},
                               child_env(config_));
  ASSERT_EQ(enq.code, 0) << enq.err;
  EXPECT_NE(enq.err.find("ripen: warning: --at 2020-01-01T00:00:00Z is "), std::string::npos) << enq.err;
  EXPECT_NE(enq.err.find(" ago (by Redis's clock): the task is due now"), std::string::npos) << enq.err;
  const std::string id = trim(enq.out);

  Worker& worker = start_worker({{"tick", stamping_handler()}});
  Dispatcher& dispatcher = start_dispatcher();
  ASSERT_TRUE(reaches(id, "succeeded", 20s));
  // Generous: start-up of the fleet counts, the years before do not.
  constexpr int64_t kBoundMs = 60'000;
  EXPECT_EQ(dispatcher.stats().lateness.count(), 1u);
  EXPECT_LE(dispatcher.stats().lateness.max(), kBoundMs) << dispatcher.stats().lateness.summary();
  EXPECT_EQ(worker.stats().lateness.count(), 1u);
  EXPECT_LE(worker.stats().lateness.max(), kBoundMs) << worker.stats().lateness.summary();
  stop();

  auto stats = collect_stats(config_, producer().redis(), producer().keys());
  ASSERT_TRUE(stats.ok()) << stats.error().describe();
  ASSERT_EQ(stats->queues.size(), 1u);
  const LatenessHistogram& late = stats->queues[0].lateness;
  EXPECT_EQ(late.samples, 1);
  const auto p99 = late.quantile(0.99);
  ASSERT_TRUE(p99.has_value());
  EXPECT_LE(*p99, kBoundMs) << "bucket bound; " << LatenessHistogram::kInfinity << " is past 1h";
}

}  // namespace
}  // namespace ripen::testing
