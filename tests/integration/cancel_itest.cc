// Cancelling and rescheduling tasks, through the producer API and the CLI, with
// real servers: a cancelled task never runs, wherever it was short of running
// (in the wheel, or already published); a running or ended one says so; a task
// moved in the wheel runs at its new time; its idempotency key is free again.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "fleet.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Cancel : public FleetTest {
 protected:
  CommandResult cli(std::vector<std::string> args) {
    return run_command(binary("producer/ripen"), args, child_env(config_));
  }
};

TEST_F(Cancel, TaskInTheWheelIsCancelledAndItsKeyIsFreeAgain) {
  Envelope task = make_task("report");
  task.idempotency_key = "report-2026-11";
  auto enq = producer().enqueue_in(task, 1h);
  ASSERT_TRUE(enq.ok()) << enq.error().describe();
  const TaskId id = enq->id;

  auto cancelled = producer().cancel(id, "not needed");
  ASSERT_TRUE(cancelled.ok()) << cancelled.error().describe();
  EXPECT_EQ(*cancelled, "scheduled");
  auto rec = producer().get(id);
  ASSERT_TRUE(rec.ok()) << rec.error().describe();
  EXPECT_EQ(rec->state, "cancelled");
  EXPECT_EQ(rec->last_error, "not needed");
  EXPECT_EQ(due_count(producer().redis(), producer().keys()), 0) << "out of the wheel";

  auto again = producer().cancel(id);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Errc::conflict);
  EXPECT_NE(again.error().message.find("already ended: cancelled"), std::string::npos) << again.error().message;

  auto fresh = producer().enqueue_in(task, 1h);
  ASSERT_TRUE(fresh.ok()) << fresh.error().describe();
  EXPECT_TRUE(fresh->created) << "a cancelled task frees its idempotency key";
  EXPECT_NE(fresh->id.get(), id.get());
}

TEST_F(Cancel, PublishedTaskIsCancelledAndTheWorkerSkipsItsDelivery) {
  auto enq = producer().enqueue(make_task("report"));
  ASSERT_TRUE(enq.ok()) << enq.error().describe();
  const TaskId id = enq->id;
  ASSERT_TRUE(run_dispatcher_until([](const Dispatcher& d) { return d.stats().confirmed == 1; }, 20s));
  auto cancelled = cli({"cancel", id.get()});
  ASSERT_EQ(cancelled.code, 0) << cancelled.err;
  EXPECT_NE(cancelled.out.find("it had been published"), std::string::npos) << cancelled.out;

  Worker& worker = start_worker({{"report", recorder()}});
  ASSERT_TRUE(wait_until([&] { return worker.stats().duplicates == 1; }, 20s)) << "its delivery is skipped";
  EXPECT_EQ(calls_.size(), 0u);
  EXPECT_EQ(producer().get(id)->state, "cancelled");
}

TEST_F(Cancel, RunningTaskIsNotCancelledAndTheErrorNamesItsWorker) {
  config_.worker.shutdown_grace_ms = 1000;
  auto enq = producer().enqueue(make_task("slow"));
  ASSERT_TRUE(enq.ok()) << enq.error().describe();
  start_worker({{"slow", [this](const TaskContext& ctx) { gate_.wait(ctx); }}}, "busy-worker");
  start_dispatcher();
  ASSERT_TRUE(wait_for_state(enq->id.get(), "running", 20s).has_value());

  auto refused = cli({"cancel", enq->id.get()});
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.err.find("is running on worker busy-worker"), std::string::npos) << refused.err;
  gate_.open();
  auto done = wait_for_state(enq->id.get(), "succeeded", 20s);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->state, "succeeded");
}

TEST_F(Cancel, RescheduledTaskRunsAtItsNewTimeAndOnlyAWaitingOneMoves) {
  auto enq = producer().enqueue_in(make_task("report"), 1h);
  ASSERT_TRUE(enq.ok()) << enq.error().describe();
  const TaskId id = enq->id;

  auto bad = cli({"reschedule", id.get()});
  EXPECT_EQ(bad.code, 2) << "neither --delay nor --at";
  EXPECT_NE(bad.err.find("give --delay or --at"), std::string::npos) << bad.err;
  auto bad_delay = cli({"reschedule", id.get(), "--delay", "5"});
  EXPECT_EQ(bad_delay.code, 2);
  EXPECT_NE(bad_delay.err.find("--delay"), std::string::npos) << bad_delay.err;
  EXPECT_EQ(producer().get(id)->due_ms, enq->due_ms) << "a refused reschedule moves nothing";

  auto moved = cli({"reschedule", id.get(), "--delay", "0s"});
  ASSERT_EQ(moved.code, 0) << moved.err;
  EXPECT_LT(producer().get(id)->due_ms, enq->due_ms - 3'500'000) << "due now, not in an hour";

  start_worker({{"report", recorder()}});
  start_dispatcher();
  auto done = wait_for_state(id.get(), "succeeded", 20s);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->state, "succeeded");
  EXPECT_EQ(calls_.size(), 1u);

  auto late = producer().reschedule_in(id, 10s);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, Errc::conflict);
  auto missing = producer().reschedule_in(TaskId("0VcTzzzzzzzzzz"), 10s);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
}

}  // namespace
}  // namespace ripen::testing
