// The pipeline end to end: producer -> Redis timer wheel -> dispatcher ->
// RabbitMQ -> worker, first in-process, then through the shipped binaries.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fleet.h"
#include "ripen/ids.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Pipeline : public FleetTest {};

TEST_F(Pipeline, OneTaskRunsOnceWithItsPayloadAndEndsSucceeded) {
  start_worker({{"echo", recorder()}});
  start_dispatcher();

  const nlohmann::json payload = {{"to", "+15550100"}, {"n", 42}, {"tags", {"a", "b"}}, {"nested", {{"ok", true}}}};
  auto enq = producer().enqueue_in(make_task("echo", payload), 200ms);
  ASSERT_TRUE(enq.ok()) << enq.error().describe();
  ASSERT_TRUE(enq->created);

  ASSERT_TRUE(reaches(enq->id.get(), "succeeded", 20s));
  // Stopped, so every confirm is settled and nothing can run again unseen.
  stop();

  const auto calls = calls_.calls();
  ASSERT_EQ(calls.size(), 1u) << "the handler must run exactly once";
  EXPECT_EQ(calls[0].id, enq->id.get());
  EXPECT_EQ(calls[0].attempt, 1);
  EXPECT_EQ(nlohmann::json::parse(calls[0].payload), payload);

  auto final_rec = producer().get(enq->id);
  ASSERT_TRUE(final_rec.ok()) << final_rec.error().describe();
  EXPECT_EQ(final_rec->state, "succeeded");
  EXPECT_EQ(final_rec->attempts, 1);
  EXPECT_EQ(final_rec->due_ms, enq->due_ms);
  EXPECT_TRUE(final_rec->last_error.empty()) << final_rec->last_error;
  ASSERT_TRUE(final_rec->dispatched_ms.has_value());
  ASSERT_TRUE(final_rec->started_ms.has_value());
  ASSERT_TRUE(final_rec->finished_ms.has_value());
  EXPECT_GE(*final_rec->dispatched_ms, final_rec->due_ms);
  EXPECT_GE(*final_rec->started_ms, final_rec->due_ms) << "started before it was due (Redis TIME)";
  EXPECT_GE(*final_rec->finished_ms, *final_rec->started_ms);
  EXPECT_EQ(due_count(producer().redis(), producer().keys()), 0);
  EXPECT_EQ(inflight_count(producer().redis(), producer().keys()), 0);
}

TEST_F(Pipeline, FiveHundredTasksSpreadOverTwoSecondsEachRunOnceAndNeverEarly) {
  constexpr int kTasks = 500;
  start_worker({{"count", recorder()}});
  Dispatcher& dispatcher = start_dispatcher();

  std::vector<Envelope> tasks;
  for (int i = 0; i < kTasks; ++i) {
    Envelope e = make_task("count", {{"i", i}});
    e.delay_ms = static_cast<int64_t>(i) * 2000 / kTasks;  // 0 .. 1996 ms
    tasks.push_back(std::move(e));
  }
  auto results = producer().enqueue_batch(std::move(tasks));
  ASSERT_EQ(results.size(), static_cast<size_t>(kTasks));
  std::map<std::string, int64_t> due_by_id;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.error().describe();
    ASSERT_TRUE(r->created);
    due_by_id[r->id.get()] = r->due_ms;
  }
  ASSERT_EQ(due_by_id.size(), static_cast<size_t>(kTasks)) << "ids must be distinct";

  std::vector<TaskRecord> records;
  const bool all_succeeded = wait_until(
      [&] {
        if (calls_.per_id().size() < static_cast<size_t>(kTasks)) return false;
        records.clear();
        for (const auto& [id, due] : due_by_id) {
          auto rec = producer().get(TaskId(id));
          if (!rec || rec->state != "succeeded") return false;
          records.push_back(*rec);
        }
        return true;
      },
      60s, 100ms);
  stop();
  ASSERT_TRUE(all_succeeded) << calls_.per_id().size() << " of " << kTasks << " tasks ran";

  const auto per_id = calls_.per_id();
  EXPECT_EQ(per_id.size(), static_cast<size_t>(kTasks));
  for (const auto& [id, count] : per_id) {
    EXPECT_EQ(due_by_id.count(id), 1u) << "a task nobody enqueued ran: " << id;
    EXPECT_EQ(count, 1) << "task " << id << " ran " << count << " times";
  }
  int64_t worst = 0;
  for (const auto& rec : records) {
    EXPECT_EQ(rec.due_ms, due_by_id[rec.id]);
    ASSERT_TRUE(rec.started_ms.has_value()) << rec.id;
    EXPECT_GE(*rec.started_ms, rec.due_ms) << "task " << rec.id << " started before it was due (Redis TIME)";
    worst = std::max(worst, *rec.started_ms - rec.due_ms);
  }
  std::cout << "500 tasks: worst start lateness " << worst << " ms; dispatcher lateness "
            << dispatcher.stats().lateness.summary() << "\n";
  EXPECT_EQ(due_count(producer().redis(), producer().keys()), 0);
  EXPECT_EQ(inflight_count(producer().redis(), producer().keys()), 0);
}

// The states `ripen status` may show, in the order a task that succeeds at
// once passes through them.
bool in_life_order(const std::vector<std::string>& seen) {
  static const std::vector<std::string> order = {"scheduled", "dispatched", "running", "succeeded"};
  size_t at = 0;
  for (const auto& s : seen) {
    while (at < order.size() && order[at] != s) ++at;
    if (at == order.size()) return false;
  }
  return true;
}

TEST_F(Pipeline, BinariesTakeATaskFromEnqueueToSucceeded) {
  const std::string file = write_config_file(config_, config_.ns);
  const auto env = child_env(config_);
  const std::string cli = binary("producer/ripen");
  Child dispatcher(binary("dispatcher/ripen-dispatcher"), {"--config", file}, env);
  Child worker(binary("worker/ripen-worker"),
               {"--config", file, "--queue", "default", "--concurrency", "2", "--exec", "echo=cat > /dev/null"}, env);

  auto enq = run_command(cli,
                         {"--config", file, "enqueue", "--queue", "default", "--type", "echo", "--payload",
                          R"({"hello":"world"})", "--delay", "1s"},
                         env);
  ASSERT_EQ(enq.code, 0) << enq.err;
  const std::string id = trim(enq.out);
  ASSERT_TRUE(is_valid_task_id(id)) << "enqueue printed '" << enq.out << "'";

  std::vector<std::string> states;
  nlohmann::json last;
  auto status = [&] {
    auto st = run_command(cli, {"--config", file, "status", id}, env);
    if (st.code != 0) return nlohmann::json();
    return nlohmann::json::parse(st.out, nullptr, false);
  };
  const bool ended = wait_until(
      [&] {
        auto j = status();
        if (!j.is_object() || !j["state"].is_string()) return false;
        last = j;
        const std::string state = j["state"];
        if (states.empty() || states.back() != state) states.push_back(state);
        return state == "succeeded" || state == "dead";
      },
      30s, 20ms);
  std::string seen;
  for (const auto& s : states) seen += s + " ";
  ASSERT_TRUE(ended) << "states seen: " << seen << "\ndispatcher log:\n"
                     << dispatcher.output() << "\nworker log:\n"
                     << worker.output();
  std::cout << "states seen by `ripen status`: " << seen << "\n";
  EXPECT_EQ(states.front(), "scheduled") << seen;
  EXPECT_EQ(states.back(), "succeeded") << seen << "\nlast_error: " << last["last_error"].dump();
  EXPECT_TRUE(in_life_order(states)) << seen;

  // Graceful shutdown on SIGTERM: exit 0, confirms settled.
  dispatcher.signal(SIGTERM);
  worker.signal(SIGTERM);
  EXPECT_EQ(dispatcher.wait(15s), 0) << dispatcher.output();
  EXPECT_EQ(worker.wait(15s), 0) << worker.output();

  auto j = status();
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["queue"], "default");
  EXPECT_EQ(j["type"], "echo");
  EXPECT_EQ(j["state"], "succeeded");
  EXPECT_EQ(j["attempts"], 1);
  EXPECT_TRUE(j["last_error"].is_null()) << j.dump();
  ASSERT_TRUE(j["due_ms"].is_number() && j["dispatched_ms"].is_number() && j["started_ms"].is_number() &&
              j["finished_ms"].is_number())
      << j.dump();
  EXPECT_GE(j["started_ms"].get<int64_t>(), j["due_ms"].get<int64_t>());
  EXPECT_GE(j["finished_ms"].get<int64_t>(), j["started_ms"].get<int64_t>());
}

}  // namespace
}  // namespace ripen::testing
