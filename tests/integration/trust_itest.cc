// What a publisher may and may not reach (docs/security.md): a message on a
// task queue runs only the task Redis stores under its id, with that task's
// type and payload.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "fleet.h"
#include "ripen/amqp.h"
#include "testing.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Trust : public FleetTest {};

// A publisher that can write to a task queue and knows a dispatched task's id
// sends the id with a type or payload of its own: the worker must not run it
// (start.lua compares queue, type and payload digest with the stored task), and
// the genuine message still runs the task.
TEST_F(Trust, AForgedDeliveryOfAKnownIdIsNotRunAndTheGenuineOneIs) {
  Envelope task;
  task.queue = "default";
  task.type = "transfer";
  task.payload = {{"amount", 1}};
  const std::string id = enqueue({task}).at(0);
  ASSERT_TRUE(dispatch_all());
  ASSERT_TRUE(reaches(id, "dispatched", 10s));

  auto amqp = connect_amqp(config_);
  const std::string queue = producer().keys().queue("default");
  auto genuine = get_message(*amqp, queue);  // taken off the queue; published again below
  ASSERT_TRUE(genuine.has_value());
  auto forged_with = [&](const std::string& type, const nlohmann::json& payload) {
    auto doc = nlohmann::json::parse(genuine->body);
    doc["type"] = type;
    doc["payload"] = payload;
    return doc.dump();
  };
  AmqpMessageProps props;
  ASSERT_TRUE(amqp->publish("", queue, forged_with("admin-task", {{"amount", 1}}), props, false));
  ASSERT_TRUE(amqp->publish("", queue, forged_with("transfer", {{"amount", 1000000}}), props, false));

  auto& evil_runs = keep<std::atomic<int>>(0);
  Worker& worker = start_worker({{"transfer", recorder()}, {"admin-task", [&](const TaskContext&) { ++evil_runs; }}});
  const std::string dead = producer().keys().dead_queue("default");
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, dead) == 2; }, 20s))
      << "both forged messages dead-lettered; dead queue holds " << message_count(*amqp, dead);
  EXPECT_EQ(evil_runs.load(), 0) << "a forged type ran";
  EXPECT_EQ(calls_.size(), 0u) << "a forged payload ran";
  EXPECT_TRUE(reaches(id, "dispatched", 1s)) << "the task itself is untouched";
  auto copy = get_message(*amqp, dead);
  ASSERT_TRUE(copy.has_value());
  EXPECT_NE(copy->headers["x-ripen-reason"].find("does not match"), std::string::npos)
      << copy->headers["x-ripen-reason"];

  ASSERT_TRUE(amqp->publish("", queue, genuine->body, props, false));
  ASSERT_TRUE(wait_for_calls(1, 20s));
  EXPECT_EQ(calls_.calls().at(0).payload, task.payload.dump());
  EXPECT_TRUE(reaches(id, "succeeded", 10s));
  EXPECT_EQ(worker.stats().succeeded, 1u);
}

}  // namespace
}  // namespace ripen::testing
