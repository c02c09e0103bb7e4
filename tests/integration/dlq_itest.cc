// Dead letters through the operator CLI with real servers: a permanently failing
// task lands in its queue's dead-letter queue with its reason and last error,
// `ripen dlq list` shows it without taking it, `ripen dlq replay` puts it back
// into the wheel with its attempts reset, and `ripen dlq purge` empties the queue.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fleet.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class DeadLetters : public FleetTest {
 protected:
  CommandResult cli(std::vector<std::string> args) {
    if (file_.empty()) file_ = write_config_file(config_, config_.ns);
    args.insert(args.begin(), {"--config", file_});
    return run_command(binary("producer/ripen"), args, child_env(config_));
  }

  static std::vector<nlohmann::json> lines(const std::string& out) {
    std::vector<nlohmann::json> v;
    size_t at = 0;
    while (at < out.size()) {
      const size_t nl = out.find('\n', at);
      const std::string line = out.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
      if (!line.empty()) v.push_back(nlohmann::json::parse(line));
      if (nl == std::string::npos) break;
      at = nl + 1;
    }
    return v;
  }

  std::string file_;
};

TEST_F(DeadLetters, PermanentFailureLandsInTheDlqWithItsReasonAndCanBeReplayed) {
  auto& declined = keep<std::atomic<bool>>(true);
  Worker& worker = start_worker({{"charge", [this, &declined](const TaskContext& ctx) {
                                    record(ctx);
                                    if (declined.load()) throw Permanent("card declined (code 51)", "card_declined");
                                  }}});
  start_dispatcher();

  auto enq = producer().enqueue(make_task("charge", {{"amount", 42}}));
  ASSERT_TRUE(enq.ok()) << enq.error().describe();
  const std::string id = enq->id.get();
  auto dead = wait_for_state(id, "dead", 20s);
  ASSERT_TRUE(dead.has_value());
  ASSERT_EQ(dead->state, "dead");
  auto amqp = connect_amqp(config_);
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, producer().keys().dead_queue("default")) == 1; }, 10s));

  for (int i = 0; i < 2; ++i) {  // listing takes nothing: twice the same
    auto list = cli({"dlq", "list", "default"});
    ASSERT_EQ(list.code, 0) << list.err;
    const auto letters = lines(list.out);
    ASSERT_EQ(letters.size(), 1u) << list.out;
    EXPECT_EQ(letters[0]["id"], id);
    EXPECT_EQ(letters[0]["type"], "charge");
    EXPECT_EQ(letters[0]["reason"], "permanent failure");
    EXPECT_EQ(letters[0]["error"], "card declined (code 51)");
    EXPECT_EQ(letters[0]["error_code"], "card_declined") << "the handler's code, from x-ripen-error-code";
    EXPECT_EQ(letters[0]["attempts"], 1);
    EXPECT_EQ(letters[0]["worker"], worker.name());
  }

  declined = false;
  auto replay = cli({"dlq", "replay", "default", "--id", id});
  ASSERT_EQ(replay.code, 0) << replay.err;
  EXPECT_EQ(trim(replay.out), id);
  auto done = wait_for_state(id, "succeeded", 20s);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->state, "succeeded") << done->last_error;
  EXPECT_EQ(done->attempts, 1) << "attempts start again from zero";
  EXPECT_EQ(calls_.size(), 2u);
  EXPECT_EQ(message_count(*amqp, producer().keys().dead_queue("default")), 0);
}

TEST_F(DeadLetters, ReplayOfOneIdLeavesTheOthersInOrderAndPurgeEmptiesTheQueue) {
  Worker& worker = start_worker({{"doomed", [](const TaskContext&) { throw Permanent("no"); }}});
  start_dispatcher();
  std::vector<std::string> ids;
  ids.reserve(3);
  for (int i = 0; i < 3; ++i) ids.push_back(producer().enqueue(make_task("doomed", i))->id.get());
  auto amqp = connect_amqp(config_);
  const std::string dlq = producer().keys().dead_queue("default");
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, dlq) == 3; }, 20s));
  stop(worker);  // what is replayed now stays in the wheel or the queue

  auto unknown = cli({"dlq", "replay", "default", "--id", "0NoSuchTask000"});
  EXPECT_EQ(unknown.code, 1) << unknown.err;
  EXPECT_NE(unknown.err.find("no dead letter of task '0NoSuchTask000'"), std::string::npos) << unknown.err;
  EXPECT_EQ(message_count(*amqp, dlq), 3);

  auto neither = cli({"dlq", "replay", "default"});
  EXPECT_EQ(neither.code, 2) << neither.err;
  EXPECT_NE(neither.err.find("--id ID or --all"), std::string::npos) << neither.err;

  const auto before = lines(cli({"dlq", "list", "default"}).out);  // in the order they died
  ASSERT_EQ(before.size(), 3u);
  auto one = cli({"dlq", "replay", "default", "--id", before[1]["id"].get<std::string>()});
  ASSERT_EQ(one.code, 0) << one.err;
  EXPECT_EQ(message_count(*amqp, dlq), 2);
  EXPECT_EQ(trim(one.out), before[1]["id"]);
  auto rec = read_task_record(producer().redis(), producer().keys(), before[1]["id"].get<std::string>());
  ASSERT_TRUE(rec.ok());
  EXPECT_NE(rec->state, "dead") << "back in the wheel";
  EXPECT_EQ(rec->attempts, 0);
  const auto left = lines(cli({"dlq", "list", "default"}).out);
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0]["id"], before[0]["id"]) << "the others kept their order";
  EXPECT_EQ(left[1]["id"], before[2]["id"]);

  auto purge = cli({"dlq", "purge", "default"});
  ASSERT_EQ(purge.code, 0) << purge.err;
  EXPECT_EQ(purge.out, "purged 2 dead letters of queue 'default'\n");
  EXPECT_EQ(message_count(*amqp, dlq), 0);
  auto purge_json = cli({"dlq", "purge", "default", "--json"});
  ASSERT_EQ(purge_json.code, 0) << purge_json.err;
  EXPECT_EQ(nlohmann::json::parse(purge_json.out), (nlohmann::json{{"queue", "default"}, {"purged", 0}}));
  EXPECT_TRUE(lines(cli({"dlq", "list", "default"}).out).empty());

  auto bad = cli({"dlq", "list", "no such queue"});
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_EQ(bad.err, "ripen: queue 'no such queue': must be 1-128 characters of [A-Za-z0-9._-]\n");
}

TEST_F(DeadLetters, ReplayAllPutsEveryDeadTaskBack) {
  start_worker({{"doomed", [](const TaskContext&) { throw Permanent("no"); }}});
  start_dispatcher();
  std::vector<std::string> ids;
  ids.reserve(2);
  for (int i = 0; i < 2; ++i) ids.push_back(producer().enqueue(make_task("doomed", i))->id.get());
  auto amqp = connect_amqp(config_);
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp, producer().keys().dead_queue("default")) == 2; }, 20s));
  stop();
  auto all = cli({"dlq", "replay", "default", "--all"});
  ASSERT_EQ(all.code, 0) << all.err;
  auto replayed = all.out;
  for (const auto& id : ids) {
    EXPECT_NE(replayed.find(id), std::string::npos) << replayed;
    auto rec = read_task_record(producer().redis(), producer().keys(), id);
    ASSERT_TRUE(rec.ok());
    EXPECT_EQ(rec->state, "scheduled") << "due now, in the wheel (no dispatcher runs)";
    EXPECT_EQ(rec->attempts, 0);
  }
  EXPECT_EQ(message_count(*connect_amqp(config_), producer().keys().dead_queue("default")), 0);
}

}  // namespace
}  // namespace ripen::testing
