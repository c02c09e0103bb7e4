// Run leases with real servers and a real worker process: a worker killed in the
// middle of a task leaves a lease that expires, and the task then completes on
// another worker; a redelivery while the first run still holds the lease waits
// for it instead of running the side effect twice.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <string>

#include "fleet.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class RunLease : public FleetTest {};

TEST_F(RunLease, WorkerKilledMidTaskTheTaskCompletesOnAnotherWorkerAndNothingIsLost) {
  config_.worker.lease_grace_ms = 500;
  Envelope task = make_task("slow");
  task.timeout_ms = 1000;  // its run holds it for 1 s + 0.5 s of grace
  auto enq = producer().enqueue(task);
  ASSERT_TRUE(enq.ok()) << enq.error().describe();
  const std::string id = enq->id.get();

  start_dispatcher();
  {
    // A worker process whose handler never returns in time, killed mid-run.
    const std::string file = write_config_file(config_, config_.ns);
    Child doomed(binary("worker/ripen-worker"), {"--config", file, "--exec", "slow=sleep 30"}, child_env(config_));
    auto running = wait_for_state(id, "running", 20s);
    ASSERT_TRUE(running.has_value());
    ASSERT_EQ(running->state, "running") << doomed.output();
    doomed.signal(SIGKILL);
    EXPECT_EQ(doomed.wait(5s), -SIGKILL);
  }

  start_worker({{"slow", recorder()}}, "survivor");
  auto rec = wait_for_state(id, "succeeded", 20s);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->state, "succeeded");
  EXPECT_EQ(rec->worker, "survivor");
  EXPECT_EQ(rec->attempts, 2) << "the killed run counted as an attempt";
  EXPECT_EQ(calls_.count(id), 1);
}

TEST_F(RunLease, RedeliveryWhileTheFirstRunHoldsTheLeaseDoesNotRunItAgain) {
  // The same task published twice (as after a broker redelivery): the second
  // copy arrives while the first one runs, waits, and is skipped once the
  // first run has ended.
  config_.worker.concurrency = 2;
  auto enq = producer().enqueue(make_task("once"));
  ASSERT_TRUE(enq.ok()) << enq.error().describe();
  const std::string id = enq->id.get();
  ASSERT_TRUE(run_dispatcher_until(
      [&](const Dispatcher&) { return message_count(*connect_amqp(config_), producer().keys().queue("default")) == 1; },
      20s));
  auto amqp = connect_amqp(config_);
  auto msg = get_message(*amqp, producer().keys().queue("default"));
  ASSERT_TRUE(msg.has_value());
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(amqp->publish(producer().keys().task_exchange(), "default", msg->body, {}, false).ok());
  }

  Worker& worker = start_worker({{"once", [this](const TaskContext& ctx) {
                                    record(ctx);
                                    gate_.wait();
                                  }}});
  ASSERT_TRUE(wait_until([&] { return worker.stats().received == 2; }, 20s));
  ASSERT_TRUE(wait_until([&] { return calls_.size() == 1; }, 20s));
  gate_.open();
  ASSERT_TRUE(wait_until([&] { return worker.stats().duplicates == 1; }, 20s))
      << "the second copy is skipped once the first run ended";
  EXPECT_EQ(calls_.size(), 1u);
  EXPECT_EQ(worker.stats().succeeded, 1u);
  EXPECT_EQ(read_task_record(producer().redis(), producer().keys(), id)->attempts, 1);
}

}  // namespace
}  // namespace ripen::testing
