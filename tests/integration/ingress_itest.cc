// Enqueue over AMQP, with real servers: an envelope published to the ingress
// exchange is scheduled and answered; a malformed one lands in the ingress
// dead-letter queue with its reason and is answered with it; a message that
// names itself (idempotency key or message_id) schedules once, also when a
// dispatcher is killed mid-ingest; and the Python and Node examples enqueue
// tasks that a worker runs.
#include <gtest/gtest.h>

#include <algorithm>

#include <unistd.h>

#include <csignal>
#include <set>
#include <string>

#include "fleet.h"
#include "ripen/topology.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

class Ingress : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    queues_.push_back("replies");
    keys_ = std::make_unique<Keys>(config_.ns, config_.shards);
    amqp_ = connect_amqp(config_);
    // The topology exists before anything is published, as it does once any
    // dispatcher has started; the reply queue stands for a client's own.
    ASSERT_TRUE(declare_ingress(*amqp_, *keys_).ok());
    ASSERT_TRUE(amqp_->declare_queue(reply_queue()).ok());
    config_.ingress.reply_to_prefix = reply_queue();  // replies go only where configured (docs/security.md)
  }

  std::string reply_queue() const { return keys_->queue("replies"); }

  void publish(const std::string& body, const std::string& message_id, const std::string& correlation_id = "",
               const std::string& user_id = "") {
    AmqpMessageProps props;
    props.message_id = message_id;
    props.correlation_id = correlation_id;
    props.user_id = user_id;
    if (!correlation_id.empty()) props.reply_to = reply_queue();
    ASSERT_TRUE(amqp_->publish(keys_->ingress_exchange(), "any-key", body, props, false).ok());
  }

  // Every message in the ingress dead-letter queue once `count` are there, by message id.
  std::map<std::string, AmqpMessage> dead_letters(size_t count) {
    std::map<std::string, AmqpMessage> dead;
    wait_until(
        [&] {
          while (auto m = get_message(*amqp_, keys_->dead_queue(Keys::kIngress))) dead[m->message_id] = *m;
          return dead.size() >= count;
        },
        30s);
    return dead;
  }

  // The replies, by correlation id, once `count` have come (or `timeout` passed).
  std::map<std::string, json> read_replies(size_t count, std::chrono::milliseconds timeout) {
    std::map<std::string, json> out;
    wait_until(
        [&] {
          auto got = amqp_->get(reply_queue(), /*no_ack=*/true);
          if (!got || !got->has_value()) return out.size() >= count;
          out[(*got)->correlation_id] = json::parse((*got)->body);
          return out.size() >= count;
        },
        timeout, 5ms);
    return out;
  }

  // A dispatcher, and a worker that records each "greet" task it runs.
  Dispatcher& start_fleet() {
    Dispatcher& dispatcher = start_dispatcher();
    start_worker({{"greet", recorder()}});
    return dispatcher;
  }

  std::unique_ptr<Keys> keys_;
  std::unique_ptr<Amqp> amqp_;
};

json envelope(const std::string& type, json payload = nullptr) {
  return {{"v", 1}, {"queue", "default"}, {"type", type}, {"payload", std::move(payload)}};
}

TEST_F(Ingress, EnvelopeIsScheduledRepliedToAndRun) {
  Dispatcher& dispatcher = start_fleet();

  json later = envelope("greet", {{"name", "later"}});
  later["delay_ms"] = 3'600'000;
  publish(later.dump(), "m-later", "c-later");
  publish(envelope("greet", {{"name", "now"}}).dump(), "m-now", "c-now");

  auto replies = read_replies(2, 30s);
  ASSERT_EQ(replies.size(), 2u);
  std::string now_id, later_id;
  for (const auto& [correlation, r] : replies) {
    ASSERT_TRUE(r.value("ok", false)) << r.dump();
    const std::string id = r.value("id", "");
    EXPECT_TRUE(r.value("created", false)) << r.dump();
    auto rec = producer().get(TaskId(id));
    ASSERT_TRUE(rec.ok()) << rec.error().describe();
    EXPECT_EQ(rec->idempotency_key, "amqp:m-" + correlation.substr(2));
    (correlation == "c-now" ? now_id : later_id) = id;
  }
  ASSERT_FALSE(now_id.empty());
  ASSERT_FALSE(later_id.empty());
  ASSERT_TRUE(reaches(now_id, "succeeded", 30s));
  ASSERT_EQ(calls_.size(), 1u);
  EXPECT_EQ(calls_.calls()[0].payload, R"({"name":"now"})");
  EXPECT_EQ(producer().get(TaskId(later_id))->state, "scheduled");
  EXPECT_EQ(message_count(*amqp_, keys_->ingress_queue()), 0) << "every message acked";
  EXPECT_EQ(dispatcher.stats().ingress.enqueued, 2u);
}

TEST_F(Ingress, MalformedMessagesGoToTheIngressDeadLetterQueueWithTheirReason) {
  config_.max_envelope_bytes = 2048;
  struct Case {
    std::string name;
    std::string body;
    std::string reason;  // a part of x-ripen-reason
  };
  json no_queue = envelope("t");
  no_queue.erase("queue");
  json bad_queue = envelope("t");
  bad_queue["queue"] = "has space";
  json no_v = envelope("t");
  no_v.erase("v");
  json v9 = envelope("t");
  v9["v"] = 9;
  json both = envelope("t");
  both["due_ms"] = 1;
  both["delay_ms"] = 1;
  json priority = envelope("t");
  priority["priority"] = 12;
  json delay_text = envelope("t");
  delay_text["delay_ms"] = "soon";
  json unknown = envelope("t");
  unknown["colour"] = "red";
  json big = envelope("t", std::string(4000, 'x'));
  json bad_id = envelope("t");
  bad_id["id"] = "no spaces allowed";
  const std::vector<Case> cases = {
      {"not-json", "hello", "not valid JSON"},
      {"empty", "", "not valid JSON"},
      {"array", "[" + envelope("t").dump() + "]", "JSON array"},
      {"string", R"("just a string")", "must be a JSON object"},
      {"no-queue", no_queue.dump(), "field 'queue': is required"},
      {"bad-queue", bad_queue.dump(), "field 'queue': must be"},
      {"no-type", R"({"v":1,"queue":"default"})", "field 'type': is required"},
      {"no-v", no_v.dump(), "field 'v': is required"},
      {"v9", v9.dump(), "unsupported envelope version 9"},
      {"due-and-delay", both.dump(), "either due_ms or delay_ms"},
      {"priority", priority.dump(), "field 'priority'"},
      {"delay-text", delay_text.dump(), "field 'delay_ms': must be an integer"},
      {"unknown-field", unknown.dump(), "field 'colour': unknown field"},
      {"too-big", big.dump(), "over max_envelope_bytes (2048)"},
      {"bad-id", bad_id.dump(), "field 'id'"},
  };
  Dispatcher& dispatcher = start_dispatcher();
  for (const auto& c : cases) publish(c.body, c.name, "c-" + c.name);

  const std::string dlq = keys_->dead_queue(Keys::kIngress);
  std::map<std::string, AmqpMessage> dead;
  ASSERT_TRUE(wait_until(
      [&] {
        while (auto m = get_message(*amqp_, dlq)) dead[m->message_id] = *m;
        return dead.size() >= cases.size();
      },
      30s));
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto it = dead.find(c.name);
    ASSERT_NE(it, dead.end()) << "not dead-lettered";
    EXPECT_EQ(it->second.body, c.body) << "the message as it came";
    const std::string reason = it->second.headers["x-ripen-reason"];
    EXPECT_NE(reason.find(c.reason), std::string::npos) << reason;
  }
  auto replies = read_replies(cases.size(), 10s);
  EXPECT_EQ(replies.size(), cases.size()) << "each asker is told why";
  for (const auto& c : cases) {
    const json& r = replies["c-" + c.name];
    EXPECT_FALSE(r.value("ok", true)) << c.name;
    EXPECT_EQ(r.value("code", ""), "invalid") << c.name;
    EXPECT_NE(r.value("error", "").find(c.reason), std::string::npos) << r.dump();
  }
  EXPECT_EQ(due_count(producer().redis(), producer().keys()), 0) << "nothing half-written";
  EXPECT_EQ(message_count(*amqp_, keys_->ingress_queue()), 0);
  EXPECT_EQ(dispatcher.stats().ingress.refused, cases.size());
}

// The ingress policy (docs/security.md): a publisher enqueues only to the
// configured queues, only allowed types, never under ripen's own key prefixes,
// and, with ingress.users, only as a listed user (RabbitMQ checks user_id).
TEST_F(Ingress, ThePolicyRefusesQueuesTypesKeysAndUsersItDoesNotAllow) {
  config_.dispatcher.queues = {"default"};
  config_.worker.queues = {"default"};
  config_.ingress.allowed_types = {"greet", "report"};
  config_.ingress.users = {{"guest", {"greet"}}};
  struct Case {
    std::string name;
    json body;
    std::string user;
    std::string reason;  // a part of x-ripen-reason; empty: accepted
  };
  json other_queue = envelope("greet");
  other_queue["queue"] = "payroll";
  json schedule_key = envelope("greet");
  schedule_key["idempotency_key"] = "schedule:nightly:1767225600000";
  json amqp_key = envelope("greet");
  amqp_key["idempotency_key"] = "amqp:someone-elses-message";
  const std::vector<Case> cases = {
      {"ok", envelope("greet"), "guest", ""},
      {"no-user", envelope("greet"), "", "has no user_id"},
      {"queue", other_queue, "guest", "queue 'payroll' is not in ingress.allowed_queues"},
      {"type", envelope("shutdown"), "guest", "type 'shutdown' is not in ingress.allowed_types"},
      {"user-type", envelope("report"), "guest", "user 'guest' may not enqueue type 'report'"},
      {"schedule-key", schedule_key, "guest", "the prefix 'schedule:' is reserved"},
      {"amqp-key", amqp_key, "guest", "the prefix 'amqp:' is reserved"},
  };
  Dispatcher& dispatcher = start_dispatcher();
  for (auto c : cases) {
    c.body["delay_ms"] = 3'600'000;  // stays in the wheel, to be counted
    publish(c.body.dump(), c.name, "c-" + c.name, c.user);
  }
  auto dead = dead_letters(cases.size() - 1);
  auto replies = read_replies(cases.size(), 10s);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const json& r = replies["c-" + c.name];
    if (c.reason.empty()) {
      EXPECT_TRUE(r.value("ok", false)) << r.dump();
      EXPECT_EQ(dead.count(c.name), 0u);
      continue;
    }
    ASSERT_EQ(dead.count(c.name), 1u) << "not dead-lettered";
    const std::string reason = dead[c.name].headers["x-ripen-reason"];
    EXPECT_NE(reason.find(c.reason), std::string::npos) << reason;
    EXPECT_FALSE(r.value("ok", true)) << r.dump();
    EXPECT_EQ(r.value("code", ""), c.name == "schedule-key" || c.name == "amqp-key" ? "invalid" : "forbidden");
  }
  EXPECT_EQ(dispatcher.stats().ingress.enqueued, 1u);
  EXPECT_EQ(due_count(producer().redis(), producer().keys()), 1) << "only the allowed task";
}

// reply_to names the queue a reply is published to, by the default exchange:
// only RabbitMQ's direct reply-to or a configured prefix is answered, so a
// publisher cannot drop JSON into another queue of the vhost.
TEST_F(Ingress, AReplyGoesOnlyToADirectReplyToOrTheConfiguredPrefix) {
  queues_.push_back("victim");
  const std::string victim = keys_->queue("victim");
  ASSERT_TRUE(amqp_->declare_queue(victim).ok());
  Dispatcher& dispatcher = start_dispatcher();
  AmqpMessageProps props;
  props.message_id = "m-aimed";
  props.correlation_id = "c-aimed";
  props.reply_to = victim;
  ASSERT_TRUE(amqp_->publish(keys_->ingress_exchange(), "", envelope("greet").dump(), props, false).ok());
  publish(envelope("greet").dump(), "m-fine", "c-fine");  // to the configured prefix: answered
  auto replies = read_replies(1, 20s);
  ASSERT_EQ(replies.count("c-fine"), 1u);
  ASSERT_TRUE(wait_until([&] { return dispatcher.stats().ingress.replies_refused == 1; }, 10s));
  EXPECT_EQ(message_count(*amqp_, victim), 0) << "nothing published into the queue reply_to named";
  EXPECT_EQ(dispatcher.stats().ingress.enqueued, 2u) << "the task itself is taken";
}

// A body over max_envelope_bytes is refused from its content header's size and
// kept in the dead-letter queue as its first bytes; a field name or value of
// any size is quoted short, so the reason always fits its header (a 140 KB
// name once made the copy's publish fail, the connection drop, and the message
// come back for good).
TEST_F(Ingress, OversizeBodiesAreKeptCutAndHugeNamesAreQuotedShort) {
  config_.ingress.dead_letter_body_bytes = 1000;
  json huge_name = envelope("greet");
  huge_name[std::string(140 * 1024, 'k')] = 1;
  const std::string oversize(1024 * 1024, 'x');
  Dispatcher& dispatcher = start_dispatcher();
  publish(huge_name.dump(), "m-name");
  publish(oversize, "m-oversize");
  publish(envelope("greet").dump(), "m-after");
  auto dead = dead_letters(2);
  ASSERT_EQ(dead.count("m-name"), 1u);
  ASSERT_EQ(dead.count("m-oversize"), 1u);
  const std::string name_reason = dead["m-name"].headers["x-ripen-reason"];
  EXPECT_LT(name_reason.size(), 1024u);
  EXPECT_NE(name_reason.find("kkkk"), std::string::npos) << name_reason.substr(0, 200);
  EXPECT_EQ(dead["m-oversize"].body, oversize.substr(0, 1000));
  EXPECT_EQ(dead["m-oversize"].headers["x-ripen-truncated-from"], std::to_string(oversize.size()));
  EXPECT_NE(dead["m-oversize"].headers["x-ripen-reason"].find("1048576 bytes, over max_envelope_bytes"),
            std::string::npos);
  ASSERT_TRUE(wait_until([&] { return dispatcher.stats().ingress.enqueued == 1; }, 20s));
  EXPECT_EQ(message_count(*amqp_, keys_->ingress_queue()), 0);
}

// The ingress dead-letter queue is bounded (anyone who may publish can fill
// it): once full, what is refused is dropped, counted and logged, and the
// ingress goes on; handing such messages back would loop them for good.
TEST_F(Ingress, AFullDeadLetterQueueDropsRefusedMessagesAndTheIngressGoesOn) {
  config_.ingress.dead_letter_max_bytes = 1024;
  // The queue is declared bounded by whoever declares it first: here, with this bound.
  ASSERT_TRUE(amqp_->delete_queue(keys_->dead_queue(Keys::kIngress)).ok());
  ASSERT_TRUE(declare_ingress(*amqp_, *keys_, config_.ingress.dead_letter_max_bytes).ok());
  Dispatcher& dispatcher = start_dispatcher();
  for (int i = 0; i < 6; ++i) publish("not json " + std::string(600, 'x'), "m-bad-" + std::to_string(i));
  publish(envelope("greet").dump(), "m-good");
  // Every message settled: the bad ones refused or dropped, the good one enqueued
  // (a message the dispatcher holds unacked is not counted as ready in the queue).
  ASSERT_TRUE(wait_until(
      [&] {
        const auto s = dispatcher.stats().ingress;
        return s.refused + s.dropped == 6 && s.enqueued == 1;
      },
      30s));
  EXPECT_EQ(message_count(*amqp_, keys_->ingress_queue()), 0);
  const auto stats = dispatcher.stats().ingress;
  EXPECT_GE(stats.dropped, 4u) << "1 KiB holds at most one 600-byte message";
  EXPECT_LE(message_count(*amqp_, keys_->dead_queue(Keys::kIngress)), 1);
}

TEST_F(Ingress, ARefusedMessageWhoseCopyIsNotConfirmedGoesBackNotAway) {
  // The dispatcher reaches the broker through a proxy that swallows its
  // publishes: the dead-letter copy never lands and is never confirmed.
  auto [proxy, through] = proxy_broker();
  proxy.drop_publishes(true);
  Dispatcher& dispatcher = start_dispatcher(through);
  publish("not json", "m-bad");
  const std::string dlq = keys_->dead_queue(Keys::kIngress);
  // After the confirm wait (5 s) the message is handed back, and taken again.
  ASSERT_TRUE(wait_until([&] { return dispatcher.stats().ingress.received >= 2; }, 20s));
  EXPECT_EQ(dispatcher.stats().ingress.refused, 0u);
  EXPECT_EQ(message_count(*amqp_, dlq), 0);

  // Publishes lost on a live connection are the proxy's trick (the broker's
  // confirm numbering no longer matches ours); a real loss breaks the
  // connection, so that is how the trick ends.
  proxy.drop_publishes(false);
  proxy.set_down(true);
  proxy.set_down(false);
  ASSERT_TRUE(wait_until([&] { return dispatcher.stats().ingress.refused == 1; }, 30s))
      << "in the end it is dead-lettered";
  EXPECT_EQ(message_count(*amqp_, dlq), 1);
  EXPECT_EQ(message_count(*amqp_, keys_->ingress_queue()), 0);
  auto m = get_message(*amqp_, dlq);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->message_id, "m-bad");
}

TEST_F(Ingress, MessagesNamingTheSameTaskScheduleItOnce) {
  // As if a dispatcher stored this message's task and died before acking it.
  Envelope stored = make_task("t");
  stored.delay_ms = 3'600'000;
  stored.idempotency_key = "amqp:m-landed";
  auto first = producer().enqueue(stored);
  ASSERT_TRUE(first.ok()) << first.error().describe();

  Dispatcher& dispatcher = start_dispatcher();
  json later = envelope("t");
  later["delay_ms"] = 3'600'000;
  publish(later.dump(), "m-landed", "c1");
  json keyed = later;
  keyed["idempotency_key"] = "invoice-7";
  publish(keyed.dump(), "m-a", "c2");
  publish(keyed.dump(), "m-b", "c3");
  json chosen = later;
  chosen["id"] = "my-own-id-1";
  publish(chosen.dump(), "", "c4");
  publish(chosen.dump(), "", "c5");

  auto replies = read_replies(5, 30s);
  ASSERT_EQ(replies.size(), 5u);
  EXPECT_EQ(replies["c1"].value("id", ""), first->id.get()) << "the stored task's id is the answer";
  EXPECT_FALSE(replies["c1"].value("created", true));
  EXPECT_TRUE(replies["c2"].value("created", false));
  EXPECT_EQ(replies["c3"].value("id", "c3"), replies["c2"].value("id", "c2"));
  EXPECT_FALSE(replies["c3"].value("created", true));
  EXPECT_EQ(replies["c4"].value("id", ""), "my-own-id-1");
  EXPECT_TRUE(replies["c4"].value("created", false));
  EXPECT_EQ(replies["c5"].value("id", ""), "my-own-id-1");
  EXPECT_FALSE(replies["c5"].value("created", true));
  EXPECT_EQ(due_count(producer().redis(), producer().keys()), 3);
  const auto stats = dispatcher.stats().ingress;
  EXPECT_EQ(stats.enqueued, 2u);
  EXPECT_EQ(stats.duplicates, 3u);
}

TEST_F(Ingress, DispatcherKilledMidIngestLosesNothingAndSchedulesNothingTwice) {
  constexpr int kMessages = 4000;
  const auto env = child_env(config_);
  Child first(binary("dispatcher/ripen-dispatcher"), {"--id", "first"}, env);
  json later = envelope("t");
  later["delay_ms"] = 3'600'000;
  for (int i = 0; i < kMessages; ++i) {
    later["payload"] = i;
    publish(later.dump(), "m-" + std::to_string(i));
  }
  ASSERT_TRUE(wait_until([&] { return due_count(producer().redis(), producer().keys()) > 0; }, 30s)) << first.output();
  first.signal(SIGKILL);
  first.wait(10s);
  const int64_t at_kill = due_count(producer().redis(), producer().keys());
  EXPECT_LT(at_kill, kMessages) << "killed mid-ingest";

  Child second(binary("dispatcher/ripen-dispatcher"), {"--id", "second"}, env);
  ASSERT_TRUE(wait_until(
      [&] {
        return due_count(producer().redis(), producer().keys()) >= kMessages &&
               message_count(*amqp_, keys_->ingress_queue()) == 0;
      },
      60s))
      << "due " << due_count(producer().redis(), producer().keys()) << "\n"
      << second.output();
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait(20s), 0) << second.output();
  EXPECT_EQ(message_count(*amqp_, keys_->ingress_queue()), 0) << "nothing was left unacked";
  EXPECT_EQ(due_count(producer().redis(), producer().keys()), kMessages) << "one task per message";
  std::cout << "tasks at the kill: " << at_kill << "; the second dispatcher's log:\n"
            << second.output().substr(0, 2000) << "\n";
}

// Runs an example from producer/examples/ with the test servers and namespace;
// a worker runs what it enqueues.
class Examples : public Ingress {
 protected:
  void enqueue_and_run(const std::string& program, const std::string& script) {
    ASSERT_FALSE(program.empty()) << "the test command installs it (scripts/test)";
    start_fleet();
    auto run = run_command(program, {script, "--type", "greet", "--payload", R"({"from":")" + script + R"("})"},
                           child_env(config_));
    ASSERT_EQ(run.code, 0) << run.out << run.err;
    const std::string id = trim(run.out);
    ASSERT_TRUE(reaches(id, "succeeded", 30s)) << id;
    ASSERT_EQ(calls_.size(), 1u);
    EXPECT_EQ(calls_.calls()[0].id, id);
    EXPECT_EQ(calls_.calls()[0].payload, R"({"from":")" + script + R"("})");

    // A refusal comes back as the example's error, naming the field.
    auto refused = run_command(program, {script, "--type", "no spaces"}, child_env(config_));
    EXPECT_EQ(refused.code, 1);
    EXPECT_NE(refused.err.find("field 'type'"), std::string::npos) << refused.err;

    // A payload that is not JSON: one line naming it (quoted short), exit 2
    // (bad input), and nothing sent.
    const std::string long_text = "not json " + std::string(200, 'x');
    auto not_json = run_command(program, {script, "--type", "greet", "--payload", long_text}, child_env(config_));
    EXPECT_EQ(not_json.code, 2) << not_json.err;
    EXPECT_NE(not_json.err.find("--payload 'not json xxx"), std::string::npos) << not_json.err;
    EXPECT_NE(not_json.err.find("' is not JSON: "), std::string::npos) << not_json.err;
    EXPECT_EQ(not_json.err.find(std::string(60, 'x')), std::string::npos) << "quoted short: " << not_json.err;
    EXPECT_EQ(std::count(not_json.err.begin(), not_json.err.end(), '\n'), 1) << not_json.err;
    EXPECT_EQ(calls_.size(), 1u);
  }
};

TEST_F(Examples, PythonWithPika) {
  enqueue_and_run("/usr/bin/python3", std::string(RIPEN_SOURCE_DIR) + "/producer/examples/python/enqueue.py");
}

TEST_F(Examples, NodeWithAmqplib) {
  const std::string dir = std::string(RIPEN_SOURCE_DIR) + "/producer/examples/node";
  ASSERT_EQ(access((dir + "/node_modules/amqplib").c_str(), F_OK), 0)
      << "amqplib is not installed: scripts/test runs npm ci in " << dir;
  enqueue_and_run(find_program("node"), dir + "/enqueue.mjs");
}

}  // namespace
}  // namespace ripen::testing
