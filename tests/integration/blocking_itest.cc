// Blocking policies per task type ([types.<type>] blocking), with real servers.
// The decisions are made atomically inside Redis (scripts::gate), so they are
// tested there: who gets a type's lock, in what order the waiting tasks get
// their turns, and what lapses. Then end to end: two workers never overlap two
// runs of a serial type, and a discard_if_busy task that comes while one of its
// type runs ends `discarded` without running.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "fleet.h"
#include "ripen/scripts.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Blocking : public FleetTest {
 protected:
  struct Answer {
    std::string verdict;
    int64_t n = 0;
  };

  void SetUp() override {
    FleetTest::SetUp();
    redis_ = connect_redis(config_);
    keys_ = std::make_unique<Keys>(config_.ns, config_.shards);
  }

  // One call of the gate of type "job": policy "serial" or "discard".
  Answer gate(const std::string& policy, const std::string& holder, const std::string& id, int64_t order,
              int64_t lease_ms = 60'000, int64_t wait_ms = 60'000) {
    auto r =
        redis_->eval(scripts::gate(), {keys_->type_lock("job"), keys_->type_waiters("job"), keys_->type_waiting("job")},
                     {policy, holder, id, std::to_string(order), std::to_string(lease_ms), std::to_string(wait_ms)});
    EXPECT_TRUE(r.ok()) << r.error().describe();
    if (!r) return {};
    return {r->at(0).str(), r->at(1).integer()};
  }

  int64_t ungate(const std::string& holder) {
    auto r = redis_->eval(scripts::release_held(), {keys_->type_lock("job")}, {holder});
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r ? r->integer() : -1;
  }

  std::unique_ptr<Redis> redis_;
  std::unique_ptr<Keys> keys_;
};

TEST_F(Blocking, SerialGivesTheTypeToOneRunAndTheTurnsGoInDueOrder) {
  EXPECT_EQ(gate("serial", "w1#1", "a", 100).verdict, "run");
  // Two more come while a runs; the later-due one asks first.
  auto c = gate("serial", "w2#1", "c", 300);
  EXPECT_EQ(c.verdict, "wait");
  EXPECT_EQ(c.n, 0) << "first in line, but the type is held";
  auto b = gate("serial", "w1#2", "b", 200);
  EXPECT_EQ(b.verdict, "wait");
  EXPECT_EQ(b.n, 0) << "earlier due: ahead of c";
  EXPECT_EQ(gate("serial", "w2#1", "c", 300).n, 1);
  EXPECT_EQ(gate("serial", "w1#1", "a", 100).verdict, "run") << "asked again after a lost reply: still a's";

  EXPECT_EQ(ungate("w1#1"), 1);
  EXPECT_EQ(gate("serial", "w2#1", "c", 300).verdict, "wait") << "c asks first, but b is ahead of it";
  EXPECT_EQ(gate("serial", "w1#2", "b", 200).verdict, "run");
  EXPECT_EQ(gate("serial", "w2#1", "c", 300).verdict, "wait") << "b holds it now";
  EXPECT_EQ(ungate("w2#1"), 0) << "only the holder gives it back";
  EXPECT_EQ(ungate("w1#2"), 1);
  EXPECT_EQ(gate("serial", "w2#1", "c", 300).verdict, "run");
  EXPECT_EQ(redis_->command({"ZCARD", keys_->type_waiters("job")})->integer(), 0) << "nobody left in line";
}

TEST_F(Blocking, AWaitingPlaceWhoseWorkerStoppedAskingLapsesAndTheNextGetsItsTurn) {
  EXPECT_EQ(gate("serial", "w1#1", "a", 100).verdict, "run");
  EXPECT_EQ(gate("serial", "dead#1", "b", 200, 60'000, 200).verdict, "wait") << "its place holds 200 ms";
  EXPECT_EQ(gate("serial", "w2#1", "c", 300).verdict, "wait");
  EXPECT_EQ(ungate("w1#1"), 1);
  // b's worker died and never asks again: once its place lapses, c's turn comes.
  EXPECT_TRUE(wait_until([&] { return gate("serial", "w2#1", "c", 300).verdict == "run"; }, 5s));
}

TEST_F(Blocking, ALockNeverGivenBackLapsesAfterItsRunsLease) {
  EXPECT_EQ(gate("serial", "dead#1", "a", 100, 200).verdict, "run") << "held for 200 ms";
  EXPECT_EQ(gate("serial", "w2#1", "b", 200).verdict, "wait");
  EXPECT_TRUE(wait_until([&] { return gate("serial", "w2#1", "b", 200).verdict == "run"; }, 5s));
}

TEST_F(Blocking, DiscardIsBusyWhileARunHoldsTheTypeAndNobodyWaits) {
  EXPECT_EQ(gate("discard", "w1#1", "a", 100).verdict, "run");
  auto b = gate("discard", "w2#1", "b", 200, 5'000);
  EXPECT_EQ(b.verdict, "busy");
  EXPECT_GT(b.n, 0) << "ms left of a's lock";
  EXPECT_LE(b.n, 60'000);
  EXPECT_EQ(redis_->command({"ZCARD", keys_->type_waiters("job")})->integer(), 0) << "discard keeps no line";
  EXPECT_EQ(ungate("w1#1"), 1);
  EXPECT_EQ(gate("discard", "w2#2", "c", 300).verdict, "run");
}

TEST_F(Blocking, SerialNeverOverlapsTwoRunsOfATypeAcrossWorkers) {
  config_.types["serial-job"].blocking = ripen::Blocking::serial;
  config_.worker.concurrency = 4;
  constexpr int kTasks = 24;
  std::vector<Envelope> tasks;
  for (int i = 0; i < kTasks; ++i) {
    Envelope t = make_task("serial-job", i);
    t.delay_ms = 10 * i;  // arriving over time, faster than they run
    tasks.push_back(t);
  }
  // A concurrent type alongside, on the same workers: it is not held up.
  for (int i = 0; i < 8; ++i) tasks.push_back(make_task("free", i));
  ASSERT_EQ(enqueue(tasks).size(), tasks.size());

  auto& serial_runs = keep<Overlap>();
  auto& runs = keep<std::atomic<int>>(0);
  auto& free_runs = keep<std::atomic<int>>(0);
  auto& on_worker = keep<std::array<std::atomic<int>, 2>>();
  auto handlers = [&](int worker) {
    return Handlers{{"serial-job",
                     [&, worker](const TaskContext&) {
                       serial_runs.enter();
                       std::this_thread::sleep_for(20ms);  // the work: long enough for others to come and wait
                       serial_runs.leave();
                       ++runs;
                       ++on_worker[worker];
                     }},
                    {"free", [&](const TaskContext&) { ++free_runs; }}};
  };
  Worker& w1 = start_worker(handlers(0), "w1");
  Worker& w2 = start_worker(handlers(1), "w2");
  start_dispatcher();
  const auto succeeded = [&] { return w1.stats().succeeded + w2.stats().succeeded; };
  ASSERT_TRUE(wait_until([&] { return succeeded() == kTasks + 8; }, 60s))
      << runs.load() << " serial runs, " << free_runs.load() << " free runs, " << succeeded() << " succeeded";
  EXPECT_EQ(runs.load(), kTasks) << "each ran once";
  EXPECT_EQ(free_runs.load(), 8);
  EXPECT_EQ(serial_runs.most.load(), 1) << "two runs of a serial type overlapped";
  EXPECT_GT(on_worker[0].load(), 0) << "both workers took turns, not one alone";
  EXPECT_GT(on_worker[1].load(), 0) << "both workers took turns, not one alone";
  EXPECT_TRUE(wait_until(
      [&] {
        return redis_->command({"EXISTS", keys_->type_lock("serial-job")})->integer() == 0;
      },
      5s))
      << "the last run gave the type back";
}

TEST_F(Blocking, DiscardIfBusyTaskThatComesWhileOneRunsEndsDiscardedWithoutRunning) {
  config_.types["report"].blocking = ripen::Blocking::discard_if_busy;
  config_.worker.shutdown_grace_ms = 1000;  // a failed assertion leaves the handler blocked: not for long
  start_dispatcher();
  Worker& worker = start_worker({{"report", [this](const TaskContext& ctx) {
                                    record(ctx);
                                    gate_.wait(ctx);
                                  }}});

  auto first = producer().enqueue(make_task("report", 1));
  ASSERT_TRUE(first.ok()) << first.error().describe();
  auto running = wait_for_state(first->id.get(), "running", 20s);
  ASSERT_TRUE(running.has_value());
  auto second = producer().enqueue(make_task("report", 2));
  ASSERT_TRUE(second.ok()) << second.error().describe();
  auto discarded = wait_for_state(second->id.get(), "discarded", 20s);
  ASSERT_TRUE(discarded.has_value());
  EXPECT_EQ(discarded->state, "discarded");
  EXPECT_NE(discarded->last_error.find("discard_if_busy"), std::string::npos) << discarded->last_error;
  EXPECT_EQ(discarded->attempts, 0) << "it never started";

  gate_.open();
  auto done = wait_for_state(first->id.get(), "succeeded", 20s);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->state, "succeeded");
  EXPECT_EQ(worker.stats().discarded, 1u);
  EXPECT_EQ(calls_.ids(), std::vector<std::string>{first->id.get()}) << "the discarded task's handler never ran";

  // Once the type is free again, the next one runs.
  auto third = producer().enqueue(make_task("report", 3));
  ASSERT_TRUE(third.ok()) << third.error().describe();
  auto later = wait_for_state(third->id.get(), "succeeded", 20s);
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->state, "succeeded");
}

}  // namespace
}  // namespace ripen::testing
