// Pausing a queue, with real servers: its tasks that ripen stay in the wheel
// (state `paused`) while other queues run, and run after resume; a held task
// can still be cancelled or moved; the CLI says what it did.
#include <gtest/gtest.h>

#include "fleet.h"
#include "ripen/inspect.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Pause : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    queues_.push_back("other");
    config_.worker.queues = {"default", "other"};
  }

  std::string enqueue_on(const std::string& queue) {
    auto r = producer().enqueue(make_task("job", nullptr, queue));
    EXPECT_TRUE(r.ok()) << r.error().describe();
    return r ? r->id.get() : "";
  }

  std::string state(const std::string& id) {
    auto r = producer().get(TaskId(id));
    return r ? r->state : r.error().message;
  }
};

TEST_F(Pause, PausedQueueTasksStayInTheWheelAndRunAfterResume) {
  ASSERT_TRUE(producer().pause_queue("default").ok());
  auto paused = producer().paused_queues();
  ASSERT_TRUE(paused.ok());
  EXPECT_EQ(*paused, std::vector<std::string>{"default"});

  start_worker({{"job", recorder()}});
  Dispatcher& dispatcher = start_dispatcher();
  std::vector<std::string> held;
  for (int i = 0; i < 5; ++i) held.push_back(enqueue_on("default"));
  const std::string other = enqueue_on("other");

  ASSERT_TRUE(reaches(other, "succeeded", 20s)) << "another queue runs meanwhile";
  // stats().held counts a hold when the dispatcher decides it; the task is
  // `paused` once that is written, with the round's other outcomes.
  ASSERT_TRUE(wait_until([&] { return dispatcher.stats().held >= 5; }, 20s));
  for (const auto& id : held) EXPECT_TRUE(wait_until([&] { return state(id) == "paused"; }, 5s)) << state(id);
  EXPECT_EQ(calls_.size(), 1u) << "only the other queue's task ran";
  EXPECT_EQ(message_count(*connect_amqp(config_), producer().keys().queue("default")), 0) << "nothing published";
  auto stats = collect_stats(config_, producer().redis(), producer().keys(), {1'000'000, false});
  ASSERT_TRUE(stats.ok());
  auto def =
      std::find_if(stats->queues.begin(), stats->queues.end(), [](const auto& q) { return q.queue == "default"; });
  ASSERT_NE(def, stats->queues.end());
  EXPECT_TRUE(def->paused);
  EXPECT_EQ(def->held, 5);
  EXPECT_EQ(def->scheduled, 0);

  auto released = producer().resume_queue("default");
  ASSERT_TRUE(released.ok()) << released.error().describe();
  EXPECT_EQ(*released, 5);
  for (const auto& id : held) {
    ASSERT_TRUE(reaches(id, "succeeded", 20s)) << id;
  }
  EXPECT_EQ(calls_.size(), 6u);
  EXPECT_TRUE(producer().paused_queues()->empty());
}

TEST_F(Pause, AHeldTaskCanBeCancelledOrMoved) {
  ASSERT_TRUE(producer().pause_queue("default").ok());
  Dispatcher& dispatcher = start_dispatcher();
  const std::string dropped = enqueue_on("default");
  const std::string moved = enqueue_on("default");
  ASSERT_TRUE(wait_until([&] { return dispatcher.stats().held >= 2; }, 20s));
  for (const auto& id : {dropped, moved}) {
    ASSERT_TRUE(wait_until([&] { return state(id) == "paused"; }, 5s)) << state(id);
  }

  auto cancelled = producer().cancel(TaskId(dropped));
  ASSERT_TRUE(cancelled.ok()) << cancelled.error().describe();
  EXPECT_EQ(*cancelled, "paused");
  EXPECT_EQ(state(dropped), "cancelled");
  ASSERT_TRUE(producer().reschedule_in(TaskId(moved), 1h).ok());
  EXPECT_EQ(state(moved), "paused");

  auto released = producer().resume_queue("default");
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(*released, 1) << "the cancelled one is gone from the held tasks";
  auto rec = producer().get(TaskId(moved));
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->state, "scheduled");
  auto now = producer().redis().time_ms();
  EXPECT_GT(rec->due_ms, *now + 3500'000) << "back at its new due time, an hour away";
  EXPECT_EQ(due_count(producer().redis(), producer().keys()), 1);
}

TEST_F(Pause, TheCliPausesAndResumes) {
  auto cli = [&](std::vector<std::string> args) {
    return run_command(binary("producer/ripen"), args, child_env(config_));
  };
  auto p = cli({"pause", "default", "--json"});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(nlohmann::json::parse(p.out)["paused"], true);
  EXPECT_EQ(*producer().paused_queues(), std::vector<std::string>{"default"});
  auto r = cli({"resume", "default"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "queue 'default' resumed: 0 held tasks back in the wheel\n");
  auto bad = cli({"pause", "no spaces"});
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(bad.err, "ripen: queue 'no spaces': must be 1-128 characters of [A-Za-z0-9._-]\n");
}

}  // namespace
}  // namespace ripen::testing
