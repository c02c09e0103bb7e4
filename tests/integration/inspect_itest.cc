// What an operator reads with the CLI, with real servers: `ripen list` pages
// through a queue's tasks with cursors, every task once, in any state, and only
// that queue's; `ripen stats` counts what waits, runs and ended in the last
// hour from per-minute counters the workers keep; `ripen enqueue --file` takes
// JSON lines, reports each bad line by its number and enqueues the rest; and
// the task commands print JSON for scripts.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fleet.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class Inspect : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    queues_ = {"default", "other"};
  }

  CommandResult cli(const std::vector<std::string>& args) {
    return run_command(binary("producer/ripen"), args, child_env(config_));
  }

  // Every task `ripen list` shows for these arguments, page by page (up to
  // `limit` each), following the cursors.
  std::vector<json> list_all(const std::vector<std::string>& args, size_t limit, int* pages = nullptr) {
    std::vector<json> all;
    std::string cursor;
    for (int page = 1; page < 1000; ++page) {
      std::vector<std::string> a = {"list"};
      a.insert(a.end(), args.begin(), args.end());
      a.insert(a.end(), {"--limit", std::to_string(limit), "--json"});
      if (!cursor.empty()) a.insert(a.end(), {"--cursor", cursor});
      auto r = cli(a);
      EXPECT_EQ(r.code, 0) << r.err;
      if (r.code != 0) break;
      const json doc = json::parse(r.out);
      EXPECT_LE(doc["tasks"].size(), limit);
      for (const auto& t : doc["tasks"]) all.push_back(t);
      if (pages != nullptr) *pages = page;
      if (doc["next_cursor"].is_null()) break;
      EXPECT_GT(doc["tasks"].size(), 0u) << "a page with a cursor after it is never empty";
      cursor = doc["next_cursor"];
    }
    return all;
  }

  static std::set<std::string> ids_of(const std::vector<json>& tasks) {
    std::set<std::string> ids;
    for (const auto& t : tasks) ids.insert(t["id"].get<std::string>());
    return ids;
  }

  std::string write_file(const std::string& name, const std::string& text) {
    auto dir = std::filesystem::temp_directory_path() / "ripen-tests";
    std::filesystem::create_directories(dir);
    auto path = dir / (config_.ns + "-" + name);
    std::ofstream(path) << text;
    return path.string();
  }
};

TEST_F(Inspect, ListPagesThroughOneQueueInAnyStateEveryTaskOnce) {
  std::set<std::string> waiting, cancelled, others;
  for (int i = 0; i < 7; ++i) waiting.insert(producer().enqueue_in(make_task("report", i), 1h)->id.get());
  for (int i = 0; i < 3; ++i) others.insert(producer().enqueue_in(make_task("report", i, "other"), 1h)->id.get());
  for (int i = 0; i < 2; ++i) {
    const std::string id = producer().enqueue_in(make_task("report", i), 1h)->id.get();
    ASSERT_TRUE(producer().cancel(TaskId(id)).ok());
    cancelled.insert(id);
  }

  int pages = 0;
  const auto all = list_all({"--queue", "default"}, 3, &pages);
  EXPECT_EQ(all.size(), 9u) << "each task once";
  std::set<std::string> want = waiting;
  want.insert(cancelled.begin(), cancelled.end());
  EXPECT_EQ(ids_of(all), want) << "only the queue's own";
  EXPECT_GE(pages, 3);
  for (const auto& t : all) {
    EXPECT_EQ(t["queue"], "default");
    EXPECT_EQ(t["state"], cancelled.count(t["id"]) ? "cancelled" : "scheduled");
    auto status = cli({"status", t["id"], "--json"});
    ASSERT_EQ(status.code, 0) << status.err;
    EXPECT_EQ(json::parse(status.out), t) << "the records `ripen status` prints";
  }

  EXPECT_EQ(ids_of(list_all({"--queue", "default", "--state", "cancelled"}, 50)), cancelled);
  EXPECT_EQ(ids_of(list_all({"--queue", "default", "--state", "scheduled"}, 50)), waiting);
  EXPECT_EQ(ids_of(list_all({"--queue", "other", "--state", "scheduled"}, 2)), others);
  EXPECT_TRUE(list_all({"--queue", "default", "--state", "running"}, 50).empty());
  EXPECT_TRUE(list_all({"--queue", "nobody", "--state", "dead"}, 50).empty());

  // Text: a table on stdout, the cursor on stderr.
  auto text = cli({"list", "--queue", "default", "--state", "scheduled", "--limit", "5"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_EQ(text.out.rfind("ID", 0), 0u) << text.out;
  EXPECT_EQ(std::count(text.out.begin(), text.out.end(), '\n'), 6) << text.out;
  ASSERT_EQ(text.err.rfind("ripen: more: --cursor ", 0), 0u) << text.err;
  const std::string cursor = trim(text.err.substr(std::string("ripen: more: --cursor ").size()));
  auto rest = cli({"list", "--queue", "default", "--state", "scheduled", "--cursor", cursor});
  ASSERT_EQ(rest.code, 0) << rest.err;
  EXPECT_EQ(std::count(rest.out.begin(), rest.out.end(), '\n'), 3) << rest.out;
  EXPECT_EQ(rest.err, "") << "the last page has no cursor";
}

TEST_F(Inspect, ListWalksManyTasksOfOneDueTimeAndLargeEndedBucketsWithoutLosingOne) {
  // One due time for all: the due set orders them by id alone, and a page may
  // end in the middle of them.
  const int64_t due = *producer().redis().time_ms() + 3'600'000;
  std::vector<Envelope> batch;
  batch.reserve(40);
  for (int i = 0; i < 40; ++i) batch.push_back(make_task("report", i));
  for (auto& e : batch) e.due_ms = due;
  std::set<std::string> waiting;
  for (auto& r : producer().enqueue_batch(batch)) waiting.insert(r->id.get());
  // Enough ended records in a shard that its bucket is a real hash table,
  // walked by HSCAN cursor over several script runs.
  std::set<std::string> cancelled;
  for (int i = 0; i < 600; ++i) {
    const std::string id = producer().enqueue_in(make_task("report", i), 1h)->id.get();
    ASSERT_TRUE(producer().cancel(TaskId(id)).ok());
    cancelled.insert(id);
  }

  const auto scheduled = list_all({"--queue", "default", "--state", "scheduled"}, 7);
  EXPECT_EQ(scheduled.size(), 40u);
  EXPECT_EQ(ids_of(scheduled), waiting);
  const auto ended = list_all({"--queue", "default", "--state", "cancelled"}, 97);
  EXPECT_EQ(ended.size(), 600u);
  EXPECT_EQ(ids_of(ended), cancelled);
  EXPECT_EQ(list_all({"--queue", "default"}, 1000).size(), 640u);
}

TEST_F(Inspect, ListRefusesBadInputWithOneLine) {
  auto state = cli({"list", "--queue", "default", "--state", "sleeping"});
  EXPECT_EQ(state.code, 2);
  EXPECT_EQ(state.err.rfind("ripen: ", 0), 0u) << state.err;
  EXPECT_EQ(std::count(state.err.begin(), state.err.end(), '\n'), 1) << state.err;

  auto cursor = cli({"list", "--queue", "default", "--cursor", "not-a-cursor"});
  EXPECT_EQ(cursor.code, 2);
  EXPECT_NE(cursor.err.find("ripen: --cursor 'not-a-cursor'"), std::string::npos) << cursor.err;
  auto other_state = cli({"list", "--queue", "default", "--state", "dispatched", "--cursor", "0.d.123.abc"});
  EXPECT_EQ(other_state.code, 2);
  EXPECT_NE(other_state.err.find("another state"), std::string::npos) << other_state.err;

  auto queue = cli({"list", "--queue", "bad queue!"});
  EXPECT_EQ(queue.code, 2);
  EXPECT_EQ(queue.err.rfind("ripen: --queue: queue '", 0), 0u) << queue.err;
  auto missing = cli({"list"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("--queue"), std::string::npos) << missing.err;

  for (const char* command : {"list", "stats"}) {
    auto help = cli({command, "--help"});
    EXPECT_EQ(help.code, 0) << command;
    EXPECT_NE(help.out.find("--json"), std::string::npos) << help.out;
  }
}

TEST_F(Inspect, StatsCountsWhatWaitsRunsAndEndedInTheLastHour) {
  config_.default_max_attempts = 2;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(producer().enqueue_in(make_task("later", i), 1h).ok());
  ASSERT_TRUE(producer().enqueue_in(make_task("later", 0, "other"), 1h).ok());

  start_worker({{"ok", [](const TaskContext&) {}},
                {"flaky",
                 [this](const TaskContext& ctx) {
                   record(ctx);
                   if (calls_.size() == 1) throw Failure("first time unlucky");
                 }},
                {"doomed", [](const TaskContext&) { throw Permanent("no"); }},
                {"slow", [this](const TaskContext& ctx) { gate_.wait(ctx); }}});
  start_dispatcher();
  std::vector<std::string> ended;
  for (const char* type : {"ok", "ok", "flaky", "doomed"})
    ended.push_back(producer().enqueue(make_task(type))->id.get());
  for (size_t i = 0; i < ended.size(); ++i) {
    const char* want = i == 3 ? "dead" : "succeeded";
    auto rec = wait_for_state(ended[i], want, 20s);
    ASSERT_TRUE(rec.has_value());
    ASSERT_EQ(rec->state, want) << i << " " << rec->last_error;
  }
  // After the others: a bundle's tasks run one after another, behind it.
  const std::string slow = producer().enqueue(make_task("slow"))->id.get();
  auto running = wait_for_state(slow, "running", 20s);
  ASSERT_TRUE(running.has_value());
  ASSERT_EQ(running->state, "running");
  auto amqp = connect_amqp(config_);
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, producer().keys().dead_queue("default")) == 1; }, 10s));

  auto r = cli({"stats", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const json doc = json::parse(r.out);
  EXPECT_TRUE(doc["counts_complete"]);
  EXPECT_EQ(doc["scanned"], 0) << "every shard keeps exact live counts: no task read";
  EXPECT_EQ(doc["walked_shards"], 0);
  EXPECT_TRUE(doc["broker_error"].is_null());
  ASSERT_EQ(doc["queues"].size(), 2u) << doc.dump();
  const json& d = doc["queues"][0];
  EXPECT_EQ(d["queue"], "default");
  EXPECT_EQ(d["scheduled"], 3);
  EXPECT_EQ(d["in_flight"], 0);
  EXPECT_EQ(d["running"], 1);
  EXPECT_EQ(d["ready"], 0);
  EXPECT_EQ(d["dead_letters"], 1);
  EXPECT_EQ(d["last_hour"]["succeeded"], 3);
  EXPECT_EQ(d["last_hour"]["failed"], 1) << "flaky's first attempt";
  EXPECT_EQ(d["last_hour"]["dead"], 1);
  const json& late = d["last_hour"]["lateness_ms"];
  EXPECT_EQ(late["samples"], 5) << "every run that ended: 3 succeeded, 1 failed, 1 dead";
  EXPECT_TRUE(late["p50"].is_number()) << late.dump();
  EXPECT_TRUE(late["p99"].is_number() || late["p99"] == "inf") << late.dump();
  const json& o = doc["queues"][1];
  EXPECT_EQ(o["queue"], "other");
  EXPECT_EQ(o["scheduled"], 1);
  EXPECT_TRUE(o["ready"].is_null()) << "its broker queue was never declared";
  EXPECT_EQ(o["last_hour"]["succeeded"], 0);
  EXPECT_TRUE(o["last_hour"]["lateness_ms"]["p50"].is_null());

  // The counters live in the key Keys names, and go after two hours.
  const int64_t minute = *producer().redis().time_ms() / 60'000;
  int64_t ttl = -1;
  for (int s = 0; s < config_.shards && ttl < 0; ++s) {
    for (int64_t m = minute - 1; m <= minute && ttl < 0; ++m) {
      auto t = producer().redis().command({"PTTL", producer().keys().minute_counts(s, m)});
      if (t && t->integer() > 0) ttl = t->integer();
    }
  }
  EXPECT_GT(ttl, 3'600'000);
  EXPECT_LE(ttl, 7'200'000);

  // A walk of every task finds what the counts say.
  auto walk = cli({"stats", "--json", "--walk"});
  ASSERT_EQ(walk.code, 0) << walk.err;
  const json walked = json::parse(walk.out);
  EXPECT_EQ(walked["scanned"], 5) << "4 waiting + 1 running";
  EXPECT_EQ(walked["walked_shards"], config_.shards);
  EXPECT_EQ(walked["counts_complete"], true);
  for (const char* field : {"scheduled", "in_flight", "running", "held"}) {
    EXPECT_EQ(walked["queues"][0][field], d[field]) << field;
    EXPECT_EQ(walked["queues"][1][field], o[field]) << field;
  }

  // Shards whose counts are not known exact (kept since before they held
  // tasks: an upgrade) are walked, and the figures stay right.
  auto mark = [&](const char* command) {
    for (int s = 0; s < config_.shards; ++s) {
      std::vector<std::string> args = {command, producer().keys().live_counts(s), std::string(kExactCounts)};
      if (std::string(command) == "HSET") args.emplace_back("1");
      ASSERT_TRUE(producer().redis().command(args).ok());
    }
  };
  mark("HDEL");
  const json upgraded = json::parse(cli({"stats", "--json"}).out);
  mark("HSET");  // as they were: exact
  EXPECT_GE(upgraded["walked_shards"], 1) << "those with tasks; an empty shard has nothing to count";
  EXPECT_EQ(upgraded["scanned"], 5);
  for (const char* field : {"scheduled", "in_flight", "running", "held"}) {
    EXPECT_EQ(upgraded["queues"][0][field], d[field]) << field;
  }

  // A walk cut short says so: ">=" in the table, a line on stderr.
  auto capped = cli({"stats", "--walk", "--scan-limit", "2"});
  ASSERT_EQ(capped.code, 0) << capped.err;
  EXPECT_EQ(capped.out.rfind("QUEUE", 0), 0u) << capped.out;
  EXPECT_NE(capped.out.find(">="), std::string::npos) << capped.out;
  EXPECT_NE(capped.err.find("lower bounds"), std::string::npos) << capped.err;
  auto capped_json = json::parse(cli({"stats", "--json", "--walk", "--scan-limit", "2"}).out);
  EXPECT_FALSE(capped_json["counts_complete"]);
}

TEST_F(Inspect, EnqueueFromFileReportsBadLinesByNumberAndEnqueuesTheRest) {
  const std::string file =
      write_file("tasks.jsonl", R"({"v":1,"queue":"default","type":"a","delay_ms":3600000})"
                                "\n"
                                R"({"v":1,"type":"a"})"
                                "\n"
                                "\n"
                                R"({"v":1,"queue":"default","type":"b","payload":{"n":2},"delay_ms":3600000})"
                                "\n"
                                "{not json\n"
                                R"({"v":1,"queue":"default","type":"c","due_ms":4102444800000})");
  auto r = cli({"enqueue", "--file", file});
  EXPECT_EQ(r.code, 2) << "some lines were bad";
  const std::string errors =
      "ripen: line 2: field 'queue': is required\n"
      "ripen: line 5: envelope is not valid JSON\n";
  EXPECT_EQ(r.err.substr(0, errors.size()), errors) << "one line each, and no progress bar off a terminal";
  // Then, once, that no worker consumes the queue (none runs in this test).
  EXPECT_EQ(r.err.substr(std::min(errors.size(), r.err.size()))
                .rfind("ripen: warning: queue 'default' does not exist in the broker", 0),
            0u)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 3) << r.err;
  std::vector<std::string> ids;
  std::string line;
  for (std::istringstream out(r.out); std::getline(out, line);) ids.push_back(line);
  ASSERT_EQ(ids.size(), 3u) << r.out;
  EXPECT_EQ(producer().get(TaskId(ids[0]))->type, "a");
  EXPECT_EQ(producer().get(TaskId(ids[1]))->type, "b");
  EXPECT_EQ(producer().get(TaskId(ids[2]))->due_ms, 4102444800000);

  // From stdin, as JSON, in chunks: every line answered in order.
  std::string many;
  for (int i = 0; i < 2500; ++i)
    many += R"({"v":1,"queue":"default","type":"bulk","delay_ms":3600000,"payload":)" + std::to_string(i) + "}\n";
  const std::string big = write_file("many.jsonl", many);
  auto piped = run_command("/bin/sh", {"-c", "\"$0\" enqueue --file - --json < \"$1\"", binary("producer/ripen"), big},
                           child_env(config_));
  ASSERT_EQ(piped.code, 0) << piped.err;
  size_t n = 0;
  for (std::istringstream out(piped.out); std::getline(out, line); ++n) {
    const json j = json::parse(line);
    ASSERT_EQ(j["line"], n + 1);
    ASSERT_TRUE(j["created"]) << line;
  }
  EXPECT_EQ(n, 2500u);
  EXPECT_EQ(due_count(producer().redis(), producer().keys()), 2503);

  auto missing = cli({"enqueue", "--file", "/nonexistent/tasks.jsonl"});
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("ripen: --file: cannot open"), std::string::npos) << missing.err;
  auto both = cli({"enqueue", "--file", file, "--queue", "default"});
  EXPECT_EQ(both.code, 2) << both.err;
  auto neither = cli({"enqueue", "--type", "a"});
  EXPECT_EQ(neither.code, 2);
  EXPECT_NE(neither.err.find("give --queue and --type, or --file"), std::string::npos) << neither.err;
}

TEST_F(Inspect, EnqueueFromFileDrawsAProgressBarOnATerminal) {
  const std::string script = find_program("script");
  if (script.empty()) GTEST_SKIP() << "no `script` to give the CLI a terminal";
  std::string many;
  for (int i = 0; i < 1200; ++i)
    many += R"({"v":1,"queue":"default","type":"bulk","delay_ms":3600000})"
            "\n";
  const std::string file = write_file("bar.jsonl", many);
  const std::string command = binary("producer/ripen") + " enqueue --file " + file + " > /dev/null";
  auto r = run_command(script, {"-qec", command, "/dev/null"}, child_env(config_));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\r["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1,200/1,200 tasks"), std::string::npos) << r.out;
}

TEST_F(Inspect, TaskCommandsPrintJsonForScripts) {
  const std::string id = producer().enqueue_in(make_task("report"), 1h)->id.get();

  auto moved = cli({"reschedule", id, "--delay", "2h", "--json"});
  ASSERT_EQ(moved.code, 0) << moved.err;
  const json m = json::parse(moved.out);
  EXPECT_EQ(m["id"], id);
  EXPECT_EQ(m["rescheduled"], true);
  EXPECT_EQ(m["due_ms"], producer().get(TaskId(id))->due_ms);

  auto cancelled = cli({"cancel", id, "--json"});
  ASSERT_EQ(cancelled.code, 0) << cancelled.err;
  EXPECT_EQ(json::parse(cancelled.out), (json{{"id", id}, {"cancelled", true}, {"was", "scheduled"}}));

  auto again = cli({"cancel", id, "--json"});
  EXPECT_EQ(again.code, 1);
  EXPECT_EQ(again.out, "") << "errors stay one line on stderr";
  EXPECT_EQ(again.err.rfind("ripen: ", 0), 0u) << again.err;

  auto status = cli({"status", id, "--json"});
  ASSERT_EQ(status.code, 0) << status.err;
  EXPECT_EQ(json::parse(status.out)["state"], "cancelled");

  auto amqp = connect_amqp(config_);  // the dead-letter queue exists once a worker or dispatcher declared it
  start_worker({{"doomed", [](const TaskContext&) { throw Permanent("no"); }}});
  start_dispatcher();
  const std::string dead = producer().enqueue(make_task("doomed"))->id.get();
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, producer().keys().dead_queue("default")) == 1; }, 20s));
  auto letters = cli({"dlq", "list", "default", "--json"});
  ASSERT_EQ(letters.code, 0) << letters.err;
  const json all = json::parse(letters.out);
  ASSERT_TRUE(all.is_array());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0]["id"], dead);
}

}  // namespace
}  // namespace ripen::testing
