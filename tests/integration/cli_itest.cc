// What the `ripen` CLI says, run as a user runs it (the built binary, its
// stdout, stderr and exit code) against the real servers: the truth about a
// held idempotency key, a warning for a queue no worker consumes or that does
// not exist (never a refusal: the task is in the wheel), a note when the broker
// cannot be asked, dead letters of a queue that has none, what a purge purged,
// and the global options before or after the command.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fleet.h"
#include "ripen/duration.h"
#include "ripen/topology.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Cli : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    queues_.insert(queues_.end(), {"idle", "orphan"});
  }

  CommandResult cli(const std::vector<std::string>& args) { return cli(args, child_env(config_)); }
  CommandResult cli(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
    return run_command(binary("producer/ripen"), args, env);
  }

  // Waits until a worker consumes task queue `queue`, as the broker reports it.
  ::testing::AssertionResult consumed(const std::string& queue) {
    auto amqp = connect_amqp(config_);
    const bool ok = wait_until(
        [&] {
          auto c = amqp->queue_counts(producer().keys().queue(queue));
          if (!c) amqp = connect_amqp(config_);  // a missing queue closes the connection
          return c && c->consumers > 0;
        },
        15s);
    if (ok) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "no worker consumes '" << queue << "'";
  }

  std::string write_lines(const std::vector<std::string>& lines) {
    std::string path = ::testing::TempDir() + "/" + config_.ns + "-tasks.jsonl";
    std::ofstream out(path);
    for (const auto& l : lines) out << l << "\n";
    return path;
  }

  static size_t occurrences(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }
};

// Once the task holding a key has succeeded, the key is kept for
// idempotency_retention: the CLI says so, not that an unfinished task holds it.
TEST_F(Cli, AKeyHeldByASucceededTaskSaysItSucceeded) {
  start_worker({{"work", recorder()}});
  start_dispatcher();
  ASSERT_TRUE(consumed("default"));
  const std::vector<std::string> args = {"enqueue", "--queue", "default", "--type", "work", "--idempotency-key", "k1"};
  auto first = cli(args);
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_EQ(first.err, "");
  const std::string id = trim(first.out);
  ASSERT_TRUE(reaches(id, "succeeded", 20s));

  auto again = cli(args);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(trim(again.out), id);
  EXPECT_EQ(again.err, "ripen: task " + id +
                           " already succeeded with this idempotency key (keys are kept for idempotency_retention, " +
                           format_duration_ms(config_.idempotency_retention_ms) +
                           ", after success); not added again\n");

  auto with_json = args;
  with_json.push_back("--json");
  auto json = cli(with_json);
  ASSERT_EQ(json.code, 0) << json.err;
  const auto doc = nlohmann::json::parse(json.out);
  EXPECT_EQ(doc["created"], false);
  EXPECT_EQ(doc["state"], "succeeded");
  EXPECT_EQ(json.err, "");
}

TEST_F(Cli, AKeyHeldByAWaitingTaskNamesItAndItsState) {
  start_worker({{"work", recorder()}});
  ASSERT_TRUE(consumed("default"));
  const std::vector<std::string> args = {"enqueue", "--queue", "default",           "--type", "work",
                                         "--delay", "1h",      "--idempotency-key", "k2"};
  auto first = cli(args);
  ASSERT_EQ(first.code, 0) << first.err;
  const std::string id = trim(first.out);
  auto again = cli(args);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(again.err, "ripen: task " + id + " (scheduled) already holds this idempotency key; not added again\n");

  // --file: the same, per line, with the line's number; --json adds the state.
  const std::string file = write_lines({R"({"v":1,"queue":"default","type":"work","payload":1})",
                                        R"({"v":1,"queue":"default","type":"work","idempotency_key":"k2"})"});
  auto lines = cli({"enqueue", "--file", file});
  ASSERT_EQ(lines.code, 0) << lines.err;
  EXPECT_EQ(lines.err,
            "ripen: line 2: task " + id + " (scheduled) already holds this idempotency key; not added again\n");
  auto json = cli({"enqueue", "--file", file, "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  const std::string second_line = json.out.substr(json.out.find('\n') + 1);
  const auto doc = nlohmann::json::parse(second_line);
  EXPECT_EQ(doc["created"], false);
  EXPECT_EQ(doc["state"], "scheduled");
}

// A task for a queue nobody consumes would sit `dispatched` with no word; one
// for a queue that does not exist would end dead, "unroutable". Either way the
// task is in the wheel: a warning, exit 0. --file warns once per queue.
TEST_F(Cli, EnqueueWarnsOfAQueueNoWorkerConsumesOrThatDoesNotExist) {
  auto amqp = connect_amqp(config_);
  ASSERT_TRUE(declare_exchanges(*amqp, producer().keys()).ok());
  auto declared = declare_queue(*amqp, producer().keys(), "idle");
  ASSERT_TRUE(declared.ok()) << declared.error().describe();

  auto idle = cli({"enqueue", "--queue", "idle", "--type", "work", "--delay", "1h"});
  ASSERT_EQ(idle.code, 0) << idle.err;
  EXPECT_EQ(idle.err,
            "ripen: warning: no worker consumes queue 'idle' now: its tasks wait in the broker (state dispatched) "
            "until one does (ripen-worker --queue idle)\n");
  EXPECT_TRUE(producer().get(TaskId(trim(idle.out))).ok());

  auto orphan = cli({"enqueue", "--queue", "orphan", "--type", "work", "--delay", "1h"});
  ASSERT_EQ(orphan.code, 0) << orphan.err;
  EXPECT_NE(orphan.err.find("ripen: warning: queue 'orphan' does not exist in the broker, so no worker consumes it "
                            "(is the name right?)"),
            std::string::npos)
      << orphan.err;
  EXPECT_NE(orphan.err.find("the task ends dead, \"unroutable\""), std::string::npos) << orphan.err;
  EXPECT_TRUE(producer().get(TaskId(trim(orphan.out))).ok());

  const std::string task = R"(","type":"work","delay_ms":3600000})";
  const std::string file = write_lines({R"({"v":1,"queue":"idle)" + task, R"({"v":1,"queue":"orphan)" + task,
                                        R"({"v":1,"queue":"idle)" + task, R"({"v":1,"queue":"orphan)" + task});
  auto lines = cli({"enqueue", "--file", file});
  ASSERT_EQ(lines.code, 0) << lines.err;
  EXPECT_EQ(occurrences(lines.err, "no worker consumes queue 'idle'"), 1u) << lines.err;
  EXPECT_EQ(occurrences(lines.err, "queue 'orphan' does not exist"), 1u) << lines.err;

  // A queue a worker consumes: not a word.
  start_worker({{"work", recorder()}});
  ASSERT_TRUE(consumed("default"));
  auto fine = cli({"enqueue", "--queue", "default", "--type", "work", "--delay", "1h"});
  ASSERT_EQ(fine.code, 0) << fine.err;
  EXPECT_EQ(fine.err, "");
}

// --file: tasks given a due time already past are accepted and due now, with
// one warning for them all after the ids (timing_itest runs such a task and
// checks that its lateness counts from its creation).
TEST_F(Cli, EnqueueFileWarnsOnceOfDueTimesAlreadyPast) {
  start_worker({{"work", recorder()}});
  ASSERT_TRUE(consumed("default"));
  const std::string file = write_lines({R"({"v":1,"queue":"default","type":"work","due_ms":1577836800000})",
                                        R"({"v":1,"queue":"default","type":"work","delay_ms":3600000})",
                                        R"({"v":1,"queue":"default","type":"work","due_ms":1577836900000})"});
  auto r = cli({"enqueue", "--file", file});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.rfind("ripen: warning: 2 tasks were given a due time already past (the earliest ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(" ago, by Redis's clock): due now\n"), std::string::npos) << r.err;
  EXPECT_EQ(occurrences(r.err, "\n"), 1u) << r.err;
}

// A command's --help names the options every command takes, which it accepts.
TEST_F(Cli, ACommandsHelpNamesTheGlobalOptions) {
  for (const std::vector<std::string>& command : std::vector<std::vector<std::string>>{
           {"stats", "--help"}, {"dlq", "purge", "--help"}, {"schedule", "list", "--help"}}) {
    auto r = cli(command);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("before or after the command: --config FILE, --redis-url URL, --amqp-url URL, --namespace"),
              std::string::npos)
        << command.front() << ": " << r.out;
  }
}

// reschedule --at in the past: moved and due now, with the same warning as enqueue.
TEST_F(Cli, RescheduleToATimeAlreadyPastWarnsAndMakesItDueNow) {
  auto e = cli({"enqueue", "--queue", "default", "--type", "work", "--delay", "1h"});
  ASSERT_EQ(e.code, 0) << e.err;
  const std::string id = trim(e.out);
  auto r = cli({"reschedule", id, "--at", "2020-01-01T00:00:00Z"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.rfind("ripen: warning: --at 2020-01-01T00:00:00Z is ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(" ago (by Redis's clock): the task is due now\n"), std::string::npos) << r.err;
  auto later = cli({"reschedule", id, "--delay", "1h"});
  ASSERT_EQ(later.code, 0) << later.err;
  EXPECT_EQ(later.err, "") << "a due time ahead gets no warning";
}

TEST_F(Cli, PauseWarnsOfAQueueThatDoesNotExist) {
  auto p = cli({"pause", "orphan"});
  ASSERT_EQ(p.code, 0) << p.err;
  EXPECT_EQ(p.err,
            "ripen: warning: queue 'orphan' does not exist in the broker: no worker or dispatcher has declared it "
            "(is the name right?)\n");
  EXPECT_EQ(*producer().paused_queues(), std::vector<std::string>{"orphan"}) << "paused all the same";
}

// The consumer check is advice after the work: a broker out of reach leaves a
// short note, and the enqueue stands.
TEST_F(Cli, EnqueueWithTheBrokerOutOfReachNotesItAndSucceeds) {
  auto env = child_env(config_);
  env["RIPEN_AMQP_URL"] = "amqp://guest:guest@127.0.0.1:" + std::to_string(free_port()) + "/%2f";
  auto r = cli({"enqueue", "--queue", "default", "--type", "work", "--delay", "1h"}, env);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.err.rfind("ripen: note: could not ask the broker whether a worker consumes queue 'default' (", 0), 0u)
      << r.err;
  EXPECT_EQ(occurrences(r.err, "\n"), 1u) << r.err;
  EXPECT_TRUE(producer().get(TaskId(trim(r.out))).ok());
}

// README: exit 1 = the operation failed or what it names was not found.
TEST_F(Cli, DeadLettersOfAQueueWithoutADeadLetterQueueSayWhich) {
  const std::string expected =
      "ripen: no dead-letter queue for queue 'orphan': " + producer().keys().dead_queue("orphan") +
      " does not exist, as no worker or dispatcher has declared that queue (is the name "
      "right?)\n";
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"dlq", "list", "orphan"}, {"dlq", "purge", "orphan"}, {"dlq", "replay", "orphan", "--all"}}) {
    auto r = cli(args);
    EXPECT_EQ(r.code, 1) << args[1];
    EXPECT_EQ(r.err, expected) << args[1];
    EXPECT_EQ(r.out, "") << args[1];
  }
}

// Before and after the command, each of the global options, as a user types
// them; the environment names another namespace, so only the option can put
// the task where it lands.
TEST_F(Cli, GlobalOptionsWorkBeforeAndAfterTheCommand) {
  auto env = child_env(config_);
  env["RIPEN_NAMESPACE"] = config_.ns + "-not-this";
  auto before =
      cli({"--namespace", config_.ns, "enqueue", "--queue", "default", "--type", "work", "--delay", "1h"}, env);
  ASSERT_EQ(before.code, 0) << before.err;
  auto after =
      cli({"enqueue", "--queue", "default", "--type", "work", "--delay", "1h", "--namespace", config_.ns}, env);
  ASSERT_EQ(after.code, 0) << after.err;
  EXPECT_TRUE(producer().get(TaskId(trim(before.out))).ok());
  EXPECT_TRUE(producer().get(TaskId(trim(after.out))).ok());

  // --config, --redis-url and --amqp-url after a nested command, with nothing
  // from the environment but the shard count.
  const std::string file = write_config_file(config_, config_.ns);
  const std::map<std::string, std::string> bare = {{"RIPEN_SHARDS", std::to_string(config_.shards)},
                                                   {"RIPEN_REDIS_URL", "redis://127.0.0.1:1/0"},
                                                   {"RIPEN_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f"},
                                                   {"RIPEN_NAMESPACE", config_.ns}};
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--redis-url", config_.redis_url, "--amqp-url", config_.amqp_url, "stats", "--json"},
           {"stats", "--json", "--redis-url", config_.redis_url, "--amqp-url", config_.amqp_url},
           {"schedule", "list", "--redis-url", config_.redis_url, "--amqp-url", config_.amqp_url}}) {
    auto r = cli(args, bare);
    EXPECT_EQ(r.code, 0) << args[0] << ": " << r.err;
  }
  auto unset = child_env(config_);
  unset.erase("RIPEN_NAMESPACE");
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--config", file, "list", "--queue", "default", "--json"},
                                             {"list", "--queue", "default", "--json", "--config", file}}) {
    auto r = cli(args, unset);
    ASSERT_EQ(r.code, 0) << args[0] << ": " << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["tasks"].size(), 2u) << args[0] << ": " << r.out;
  }
}

}  // namespace
}  // namespace ripen::testing
