// Per-type settings with real servers: [types.<type>] gives a type its own
// attempts, backoff, time limit and permanent errors, and a task's own envelope
// fields still win.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "fleet.h"
#include "http_server.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class TaskTypes : public FleetTest {};

TEST_F(TaskTypes, ATypesAttemptsPermanentErrorsAndTimeoutApplyAndATasksOwnAttemptsWin) {
  TaskTypeConfig flaky;
  flaky.max_attempts = 2;
  flaky.retry = BackoffPolicy{20, 50};
  flaky.timeout_ms = 1234;
  flaky.permanent_errors = {"E_BAD_NUMBER"};
  config_.types["sms"] = flaky;

  auto& seen_timeout = keep<std::atomic<int64_t>>(0);
  start_worker({{"sms", [&seen_timeout](const TaskContext& ctx) {
                   seen_timeout = ctx.timeout_ms;
                   if (ctx.task.payload == "bad") throw std::runtime_error("gateway: E_BAD_NUMBER +0000");
                   throw std::runtime_error("gateway: try later");
                 }}});
  start_dispatcher();

  const std::string by_type = producer().enqueue(make_task("sms", "later"))->id.get();
  Envelope own = make_task("sms", "later");
  own.max_attempts = 4;
  const std::string by_task = producer().enqueue(own)->id.get();
  const std::string bad = producer().enqueue(make_task("sms", "bad"))->id.get();

  auto rec = wait_for_state(by_type, "dead", 20s);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->state, "dead");
  EXPECT_EQ(rec->attempts, 2) << "the type's max_attempts";
  EXPECT_EQ(rec->max_attempts, 2);
  rec = wait_for_state(by_task, "dead", 20s);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->attempts, 4) << "the task's own max_attempts wins";
  rec = wait_for_state(bad, "dead", 20s);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->attempts, 1) << "a permanent error is not retried";
  EXPECT_EQ(seen_timeout.load(), 1234);

  auto amqp = connect_amqp(config_);
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, producer().keys().dead_queue("default")) == 3; }, 10s));
  int permanent = 0, exhausted = 0;
  while (auto m = get_message(*amqp, producer().keys().dead_queue("default"))) {
    if (m->headers["x-ripen-reason"] == "permanent failure") ++permanent;
    if (m->headers["x-ripen-reason"] == "attempts exhausted") ++exhausted;
  }
  EXPECT_EQ(permanent, 1);
  EXPECT_EQ(exhausted, 2);
}

TEST_F(TaskTypes, ATaskNoWorkerHandlesGoesBackUntilItsGraceThenIsDeadLettered) {
  config_.worker.unknown_type_grace_ms = 500;
  Worker& worker = start_worker({{"known", [](const TaskContext&) {}}});
  start_dispatcher();
  const std::string id = producer().enqueue(make_task("ghost"))->id.get();
  auto rec = wait_for_state(id, "dead", 20s);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->state, "dead");
  EXPECT_EQ(rec->attempts, 1) << "the passes within the grace spent no attempt";
  EXPECT_GE(worker.stats().deferred, 1u);
  auto amqp = connect_amqp(config_);
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, producer().keys().dead_queue("default")) == 1; }, 10s));
  auto m = get_message(*amqp, producer().keys().dead_queue("default"));
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->headers["x-ripen-reason"], "no handler");
  EXPECT_NE(m->headers["x-ripen-error"].find("'ghost'"), std::string::npos) << m->headers["x-ripen-error"];
}

TEST_F(TaskTypes, TasksAWorkerCannotRunReachOneThatCanWithinTheGrace) {
  config_.worker.unknown_type_grace_ms = 60'000;
  Worker& without = start_worker({{"known", [](const TaskContext&) {}}}, "without");
  start_worker({{"ghost", recorder()}}, "with");
  start_dispatcher();
  std::vector<std::string> ids;
  for (int i = 0; i < 10; ++i) {
    ids.push_back(producer().enqueue(make_task("ghost", i))->id.get());
    ASSERT_TRUE(producer().enqueue(make_task("known", i)).ok());  // both workers get messages
  }
  for (const auto& id : ids) {
    auto rec = wait_for_state(id, "succeeded", 60s);
    ASSERT_TRUE(rec.has_value());
    EXPECT_EQ(rec->state, "succeeded");
    EXPECT_EQ(rec->attempts, 1);
  }
  EXPECT_EQ(calls_.size(), 10u);
  EXPECT_EQ(without.stats().dead, 0u);
}

TEST_F(TaskTypes, ATasksOwnTimeoutIsClampedToItsTypesMaximumOrTheFleets) {
  config_.types["capped"].max_timeout_ms = 2000;
  config_.worker.max_task_timeout_ms = 5000;
  auto& seen = keep<std::map<std::string, int64_t>>();
  auto& mu = keep<std::mutex>();
  const Handler note = [&seen, &mu](const TaskContext& ctx) {
    std::lock_guard lock(mu);
    seen[ctx.task.payload.get<std::string>()] = ctx.timeout_ms;
  };
  start_worker({{"capped", note}, {"plain", note}});
  start_dispatcher();
  Envelope days = make_task("capped", "days");
  days.timeout_ms = 7LL * 24 * 3600 * 1000;
  Envelope under = make_task("capped", "under");
  under.timeout_ms = 1500;
  Envelope fleet = make_task("plain", "fleet");
  fleet.timeout_ms = 3600 * 1000;
  for (const auto& id : enqueue({days, under, fleet})) ASSERT_TRUE(reaches(id, "succeeded", 20s));
  std::lock_guard lock(mu);
  EXPECT_EQ(seen["days"], 2000) << "clamped to [types.capped] max_timeout, and run";
  EXPECT_EQ(seen["under"], 1500);
  EXPECT_EQ(seen["fleet"], 5000) << "clamped to worker.max_task_timeout";
}

TEST_F(TaskTypes, ATypeNotConfiguredForHttpHasNoHttpHandler) {
  auto& server = keep<HttpServer>();
  config_.http.types["webhook"] = {server.url("/")};
  config_.http.allow_networks = {"127.0.0.1/32"};
  config_.worker.unknown_type_grace_ms = 300;
  start_worker(builtin_handlers(config_));
  start_dispatcher();
  const std::string hook = producer().enqueue(make_task("webhook", {{"url", server.url("/hook")}}))->id.get();
  const std::string http = producer().enqueue(make_task("http", {{"url", server.url("/hook")}}))->id.get();
  EXPECT_TRUE(reaches(hook, "succeeded", 20s));
  auto rec = wait_for_state(http, "dead", 20s);
  ASSERT_TRUE(rec.has_value());
  EXPECT_NE(rec->last_error.find("no worker handles task type 'http'"), std::string::npos) << rec->last_error;
  EXPECT_EQ(server.requests(), 1) << "only the configured type's request was sent";
}

}  // namespace
}  // namespace ripen::testing
