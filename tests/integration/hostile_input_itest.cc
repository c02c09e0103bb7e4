// Input written to do harm, with real servers: a message nested 100k levels deep
// (once a stack overflow that killed the dispatcher or worker that decoded it,
// over and over, since the message was never acked) is dead-lettered with a
// reason naming the depth, and the process goes on with the next message; and
// the JSON log lines the real binaries write stay valid JSON whatever the
// messages they log about hold.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fleet.h"
#include "ripen/topology.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

constexpr size_t kHostileDepth = 100'000;

std::string nested_arrays(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }
std::string nested_objects(size_t depth) {
  std::string out;
  for (size_t i = 0; i < depth; ++i) out += "{\"\":";
  out += "0";
  out.append(depth, '}');
  return out;
}

std::string envelope_with_raw_payload(const std::string& type, const std::string& payload) {
  return R"({"v":1,"queue":"default","type":")" + type + R"(","payload":)" + payload + "}";
}

class HostileInput : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    keys_ = std::make_unique<Keys>(config_.ns, config_.shards);
    amqp_ = connect_amqp(config_);
    ASSERT_TRUE(declare_ingress(*amqp_, *keys_).ok());
    ASSERT_TRUE(declare_queue(*amqp_, *keys_, "default").ok());
  }

  void publish_ingress(const std::string& body, const std::string& message_id) {
    AmqpMessageProps props;
    props.message_id = message_id;
    ASSERT_TRUE(amqp_->publish(keys_->ingress_exchange(), "any-key", body, props, false).ok());
  }

  void publish_task_queue(const std::string& body, const std::string& message_id) {
    AmqpMessageProps props;
    props.message_id = message_id;
    ASSERT_TRUE(amqp_->publish(keys_->task_exchange(), "default", body, props, false).ok());
  }

  // The dead letters of `amqp_queue` by message id, once `count` have come.
  std::map<std::string, AmqpMessage> dead_letters(const std::string& amqp_queue, size_t count) {
    std::map<std::string, AmqpMessage> dead;
    wait_until(
        [&] {
          while (auto m = get_message(*amqp_, amqp_queue)) dead[m->message_id] = *m;
          return dead.size() >= count;
        },
        30s);
    return dead;
  }

  // Each message of `ids` comes to `amqp_queue`, its `header` holding `text`.
  void expect_dead(const std::string& amqp_queue, const std::vector<std::string>& ids, const std::string& header,
                   const std::string& text) {
    auto dead = dead_letters(amqp_queue, ids.size());
    for (const auto& id : ids) {
      SCOPED_TRACE(id);
      auto it = dead.find(id);
      ASSERT_NE(it, dead.end()) << "not dead-lettered";
      const std::string value = it->second.headers[header];
      EXPECT_NE(value.find(text), std::string::npos) << header << ": " << value;
    }
  }

  std::unique_ptr<Keys> keys_;
  std::unique_ptr<Amqp> amqp_;
};

TEST_F(HostileInput, DeepMessageAtTheIngressIsDeadLetteredAndTheDispatcherGoesOn) {
  Dispatcher& dispatcher = start_dispatcher();
  start_worker({{"greet", recorder()}});
  const std::string deep_arrays = envelope_with_raw_payload("greet", nested_arrays(kHostileDepth));
  const std::string deep_objects = envelope_with_raw_payload("greet", nested_objects(50'000));
  ASSERT_LT(deep_arrays.size(), static_cast<size_t>(config_.max_envelope_bytes)) << "only the depth can refuse it";
  ASSERT_LT(deep_objects.size(), static_cast<size_t>(config_.max_envelope_bytes));
  publish_ingress(deep_arrays, "deep-arrays");
  publish_ingress(nested_objects(50'000), "deep-bare");  // (an array is refused as one before it is parsed)
  publish_ingress(deep_objects, "deep-objects");
  publish_ingress(json({{"v", 1}, {"queue", "default"}, {"type", "greet"}, {"payload", {{"after", true}}}}).dump(),
                  "valid-after");

  expect_dead(keys_->dead_queue(Keys::kIngress), {"deep-arrays", "deep-bare", "deep-objects"}, "x-ripen-reason",
              "nested deeper than 64 levels");
  ASSERT_TRUE(wait_for_calls(1, 30s)) << "the valid task after them was enqueued and run";
  EXPECT_EQ(calls_.calls()[0].payload, R"({"after":true})");
  EXPECT_EQ(dispatcher.stats().ingress.refused, 3u);
  EXPECT_EQ(message_count(*amqp_, keys_->ingress_queue()), 0) << "every message settled";
}

// A refusal once quoted a 140 KB unknown field name whole in its x-ripen-reason
// header, which outgrew an AMQP frame: the dead-letter copy failed, the
// connection dropped and the message came back, for ever.
TEST_F(HostileInput, LongFieldNameAtTheIngressIsRefusedWithAShortReason) {
  start_dispatcher();
  start_worker({{"greet", recorder()}});
  const std::string name = "evil" + std::string(140'000, 'x');
  publish_ingress(json({{"v", 1}, {"queue", "default"}, {"type", "greet"}, {name, 1}}).dump(), "long-name");
  publish_ingress(json({{"v", 1}, {"queue", "default"}, {"type", "greet"}, {"payload", {{"after", true}}}}).dump(),
                  "valid-after");

  auto dead = dead_letters(keys_->dead_queue(Keys::kIngress), 1);
  auto it = dead.find("long-name");
  ASSERT_NE(it, dead.end()) << "not dead-lettered";
  const std::string reason = it->second.headers["x-ripen-reason"];
  EXPECT_LT(reason.size(), 300u);
  EXPECT_NE(reason.find("field 'evilxxxx"), std::string::npos) << reason;
  EXPECT_NE(reason.find("(140004 bytes): unknown field"), std::string::npos) << reason;
  ASSERT_TRUE(wait_for_calls(1, 30s)) << "the valid task after it was enqueued and run";
  EXPECT_EQ(message_count(*amqp_, keys_->ingress_queue()), 0) << "every message settled";
}

TEST_F(HostileInput, DeepMessageOnATaskQueueIsDeadLetteredAndTheWorkerGoesOn) {
  Worker& worker = start_worker({{"greet", recorder()}});
  const std::string deep_envelope = envelope_with_raw_payload("greet", nested_arrays(kHostileDepth));
  publish_task_queue(deep_envelope, "deep-envelope");
  publish_task_queue(nested_arrays(kHostileDepth), "deep-bundle");
  publish_task_queue("[" + deep_envelope + "]", "deep-in-bundle");
  const auto ids = enqueue({make_task("greet", {{"after", true}})});
  start_dispatcher();

  expect_dead(keys_->dead_queue("default"), {"deep-envelope", "deep-bundle", "deep-in-bundle"}, "x-ripen-error",
              "nested deeper than");
  ASSERT_TRUE(reaches(ids[0], "succeeded", 30s)) << "the worker lives and runs the next task";
  EXPECT_EQ(worker.stats().dead, 3u);
}

// `ripen dlq list` and `ripen dlq replay` read every dead letter's envelope: a deep
// one is listed (its id unknown) and refused, not a crash of the CLI.
TEST_F(HostileInput, DeepDeadLetterIsListedAndRefusedByTheCli) {
  const std::string deep = envelope_with_raw_payload("greet", nested_arrays(kHostileDepth));
  AmqpMessageProps props;
  props.message_id = "deep-dead";
  ASSERT_TRUE(amqp_->publish(keys_->dead_exchange(), "default", deep, props, false).ok());
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp_, keys_->dead_queue("default")) == 1; }, 10s));
  const std::string file = write_config_file(config_, config_.ns);
  auto list = run_command(binary("producer/ripen"), {"--config", file, "dlq", "list", "default"}, child_env(config_));
  ASSERT_EQ(list.code, 0) << list.err;
  const json row = json::parse(list.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(row.is_object()) << list.out.substr(0, 300);
  EXPECT_EQ(row.value("id", ""), "deep-dead") << "the message id stands in for the id it does not give";
  auto replay = run_command(binary("producer/ripen"), {"--config", file, "dlq", "replay", "default", "--all"},
                            child_env(config_));
  EXPECT_GT(replay.code, 0) << "refused, not killed by a signal: " << replay.err;
  EXPECT_NE((replay.out + replay.err).find("nested deeper than 64 levels"), std::string::npos)
      << replay.out << replay.err;
  EXPECT_EQ(message_count(*amqp_, keys_->dead_queue("default")), 1) << "a refused dead letter stays";
}

TEST_F(HostileInput, DeepPayloadOnTheCommandLineIsRefused) {
  const std::string file = write_config_file(config_, config_.ns);
  // 60k levels: one argument may hold at most 128 KiB.
  auto r = run_command(
      binary("producer/ripen"),
      {"--config", file, "enqueue", "--queue", "default", "--type", "greet", "--payload", nested_arrays(60'000)},
      child_env(config_));
  EXPECT_GT(r.code, 0) << "refused, not killed by a signal: " << r.err.substr(0, 300);
  EXPECT_NE(r.err.find("--payload '[[[["), std::string::npos) << r.err.substr(0, 300);
  EXPECT_NE(r.err.find("is nested deeper than 63 levels"), std::string::npos) << r.err.substr(0, 300);
  EXPECT_LT(r.err.size(), 400u) << "the payload is quoted by a short prefix";
  EXPECT_EQ(due_count(producer().redis(), producer().keys()), 0);
}

// ---- JSON logs of the real binaries ------------------------------------------------

std::vector<std::string> lines_of_file(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Every line the binaries wrote (stdout and stderr: the child's log) is one JSON
// object, while they log about message ids and field names made to break lines.
TEST_F(HostileInput, JsonLogsOfTheRealBinariesStayJsonWhateverTheyLog) {
  auto env = child_env(config_);
  env["RIPEN_LOG_FORMAT"] = "json";
  env["RIPEN_LOG_LEVEL"] = "debug";
  Child dispatcher(binary("dispatcher/ripen-dispatcher"), {}, env);
  Child worker(binary("worker/ripen-worker"), {"--queue", "default"}, env);

  const std::string forged = "x\n{\"ts\":\"forged\"}\r\"quote\\ \x01\x1b[31m \xff\xfe";
  json unknown = {{"v", 1}, {"queue", "default"}, {"type", "greet"}};
  const std::string body = unknown.dump().substr(0, unknown.dump().size() - 1) + ",\"" +
                           std::string("field\\n\\u0000\\\"") + "\":1}";  // an unknown field with escapes
  publish_ingress(body, "ingress-" + forged);
  publish_ingress(std::string("not json \xff\n"), "bad-" + forged);
  publish_task_queue(body, "poison-" + forged);
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp_, keys_->dead_queue(Keys::kIngress)) == 2; }, 30s))
      << dispatcher.output();
  ASSERT_TRUE(wait_until([&] { return message_count(*amqp_, keys_->dead_queue("default")) == 1; }, 30s))
      << worker.output();
  dispatcher.signal(SIGTERM);
  worker.signal(SIGTERM);
  EXPECT_EQ(dispatcher.wait(30s), 0);
  EXPECT_EQ(worker.wait(30s), 0);

  for (const Child* child : {&dispatcher, &worker}) {
    const auto lines = lines_of_file(child->log_path());
    ASSERT_GE(lines.size(), 3u) << child->output();
    bool saw_refusal = false;
    for (const auto& line : lines) {
      const json doc = json::parse(line, nullptr, /*allow_exceptions=*/false);
      ASSERT_TRUE(doc.is_object()) << "not a JSON object: " << line.substr(0, 300);
      EXPECT_TRUE(doc.contains("ts") && doc.contains("level") && doc.contains("msg")) << line.substr(0, 300);
      const std::string msg = doc.value("msg", "");
      if (msg.find("x\n{\"ts\":\"forged\"}\r\"quote\\") != std::string::npos) saw_refusal = true;
    }
    EXPECT_TRUE(saw_refusal) << "a line about a hostile message id, with it whole:\n" << child->output();
  }
}

}  // namespace
}  // namespace ripen::testing
