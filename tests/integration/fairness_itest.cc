// Competing workers share a burst: the tasks of a queue that ripen together
// reach every worker consuming it, not one bundle's worth to whichever worker
// the broker picked. What must hold, counted and never timed: no task waits
// for a busy worker's handler while another worker has a free one.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "fleet.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kWorkers = 4;
constexpr int kHandlers = 2;

// Which worker ran each task, and how many runs were inside a handler at once.
struct Fleetwide {
  Overlap overlap;
  std::mutex mu;
  std::map<std::string, int> runs_by_worker;
};

class Fairness : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    config_.worker.concurrency = kHandlers;  // and so a prefetch of 2 messages
    config_.dispatcher.bundle = 50;
  }

  // kWorkers workers of kHandlers handlers whose runs stay inside until
  // `together` runs have been inside at once (or the gate opens), and the
  // queue's consumers all known to the broker.
  Fleetwide& start_fleet(int together) {
    auto& seen = keep<Fleetwide>();
    for (int w = 0; w < kWorkers; ++w) {
      const std::string name = "w" + std::to_string(w);
      start_worker({{"job",
                     [this, &seen, name, together](const TaskContext& ctx) {
                       {
                         std::lock_guard lock(seen.mu);
                         ++seen.runs_by_worker[name];
                       }
                       seen.overlap.enter();
                       // Held until every run expected at once has been inside
                       // together: a task stuck behind a busy handler never lets
                       // them go.
                       while (seen.overlap.most.load() < together && !gate_.is_open() &&
                              (ctx.cancelled == nullptr || !ctx.cancelled->load())) {
                         std::this_thread::sleep_for(5ms);
                       }
                       record(ctx);
                       seen.overlap.leave();
                     }}},
                   name);
    }
    auto amqp = connect_amqp(config_);
    const std::string queue = producer().keys().queue("default");
    EXPECT_TRUE(wait_until(
        [&] {
          auto counts = amqp->queue_counts(queue);
          return counts && counts->consumers == kWorkers;
        },
        20s))
        << "every worker consuming";
    return seen;
  }

  // `n` tasks due together a moment from now, so that one claim takes them all.
  std::vector<std::string> burst(int n) {
    auto all = tasks(n, "job");
    const int64_t due = *producer().redis().time_ms() + 500;
    for (auto& t : all) t.due_ms = due;
    return enqueue(std::move(all));
  }
};

// As many tasks as the fleet has handlers: they can all run at once, and do
// only if each worker got its share. One bundle of 8 on one worker of 2
// handlers would leave 6 waiting behind it while 6 handlers idle.
TEST_F(Fairness, ABurstAsBigAsTheFleetRunsAllAtOnce) {
  auto& seen = start_fleet(kWorkers * kHandlers);
  start_dispatcher();
  const auto ids = burst(kWorkers * kHandlers);
  ASSERT_EQ(ids.size(), static_cast<size_t>(kWorkers * kHandlers));
  ASSERT_TRUE(wait_for_calls(ids.size(), 30s)) << calls_.size() << " ran";
  EXPECT_EQ(seen.overlap.most.load(), kWorkers * kHandlers) << "every task was running at the same time";
  std::lock_guard lock(seen.mu);
  for (int w = 0; w < kWorkers; ++w) {
    EXPECT_EQ(seen.runs_by_worker["w" + std::to_string(w)], kHandlers) << "w" << w << "'s share";
  }
}

// A burst bigger than the fleet: each worker gets an equal share (16 tasks, 4
// each), whatever it is the broker delivers first.
TEST_F(Fairness, ABiggerBurstIsSharedEquallyByTheWorkers) {
  auto& seen = start_fleet(kWorkers * kHandlers);
  start_dispatcher();
  const auto ids = burst(4 * kWorkers);
  ASSERT_EQ(ids.size(), static_cast<size_t>(4 * kWorkers));
  // The first eight are all inside at once, then the rest run as handlers free:
  // the last eight cannot fill the fleet again once the count drops, so open
  // the gate when the first eight have been inside together.
  ASSERT_TRUE(wait_until([&] { return seen.overlap.most.load() == kWorkers * kHandlers; }, 30s))
      << "the fleet's handlers all busy at once; most " << seen.overlap.most.load();
  gate_.open();
  ASSERT_TRUE(wait_for_calls(ids.size(), 30s)) << calls_.size() << " ran";
  std::lock_guard lock(seen.mu);
  for (int w = 0; w < kWorkers; ++w) EXPECT_EQ(seen.runs_by_worker["w" + std::to_string(w)], 4) << "w" << w;
}

}  // namespace
}  // namespace ripen::testing
