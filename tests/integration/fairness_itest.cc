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

// A worker that holds more than it can start soon hands the rest back to the
// queue, where a worker with free handlers takes them: here w0 alone gets one
// bundle of 10 it has room to start 4 of (2 handlers + a local queue of 2),
// and w1, started after, runs some of the other 6 while w0's handlers are
// still held (a share of its handlers' size each time w0 finds it consuming).
TEST_F(Fairness, AWorkerHandsBackWhatItCannotStartSoon) {
  config_.worker.local_queue = 2;
  config_.worker.hand_back = true;
  auto& held = keep<Overlap>();
  auto& late = keep<Overlap>();
  auto hold = [&](Overlap& inside) {
    return [this, &inside](const TaskContext& ctx) {
      inside.enter();
      gate_.wait(ctx);
      record(ctx);
      inside.leave();
    };
  };
  Worker& first = start_worker({{"job", hold(held)}}, "w0");
  start_dispatcher();
  auto amqp = connect_amqp(config_);
  const std::string queue = producer().keys().queue("default");
  const auto ids = enqueue(tasks(10, "job"));
  ASSERT_EQ(ids.size(), 10u);
  ASSERT_TRUE(wait_until([&] { return held.most.load() == kHandlers; }, 20s)) << "w0's handlers busy";
  EXPECT_EQ(first.stats().handed_back, 0u) << "nobody to hand them to";

  Worker& second = start_worker({{"job", hold(late)}}, "w1");
  ASSERT_TRUE(wait_until([&] { return late.most.load() == kHandlers; }, 20s))
      << "w1's handlers busy with what w0 could not start; most " << late.most.load();
  EXPECT_EQ(held.inside.load(), kHandlers) << "while w0's runs were still held";
  const uint64_t handed = first.stats().handed_back;
  EXPECT_GE(handed, static_cast<uint64_t>(kHandlers)) << "a share for w1's handlers at least";
  EXPECT_LE(handed, 6u) << "never one it had started";

  gate_.open();
  ASSERT_TRUE(wait_for_calls(ids.size(), 30s)) << calls_.size() << " ran";
  for (const auto& id : ids) EXPECT_TRUE(reaches(id, "succeeded", 10s)) << id;
  EXPECT_EQ(calls_.per_id().size(), ids.size());
  for (const auto& [id, n] : calls_.per_id()) EXPECT_EQ(n, 1) << id << " ran once";
  EXPECT_EQ(second.stats().handed_back, 0u) << "a handed-back task is kept by whoever gets it";
}

}  // namespace
}  // namespace ripen::testing
