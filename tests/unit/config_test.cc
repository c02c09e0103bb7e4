// Configuration is checked at start: a misspelt key or a bad value must stop the
// process with one line naming the key (and, from a file, its line). These tests
// walk a full file, every kind of wrong key, type and range, the environment
// layer through a fake lookup, the cross-field checks, and the URL parsers whose
// redacted forms are what logs show.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include "ripen/amqp.h"
#include "ripen/config.h"
#include "ripen/redis.h"

namespace ripen {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The message of the ConfigError `f` throws, or a marker that it threw nothing.
template <class F>
std::string config_error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<no ConfigError thrown>";
}

std::string toml_error(const std::string& text) {
  return config_error_of([&] {
    Config c;
    apply_toml(c, text, "ripen.toml");
  });
}

Config from_toml(const std::string& text) {
  Config c;
  apply_toml(c, text, "ripen.toml");
  return c;
}

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// ---- defaults -------------------------------------------------------------

TEST(ConfigDefaults, AreValid) { EXPECT_NO_THROW(validate_config(Config{})); }

TEST(ConfigDefaults, EmptyFileChangesNothing) {
  const Config c = from_toml("");
  const Config d;
  EXPECT_EQ(c.redis_url, d.redis_url);
  EXPECT_EQ(c.amqp_url, d.amqp_url);
  EXPECT_EQ(c.ns, d.ns);
  EXPECT_EQ(c.shards, d.shards);
  EXPECT_EQ(c.dispatcher.queues, d.dispatcher.queues);
  EXPECT_TRUE(c.worker.exec.empty());
}

// ---- a full file ----------------------------------------------------------

constexpr const char* kFullFile = R"(# every key ripen reads
redis_url = "redis://:pw@redis.internal:6380/2"
amqp_url = "amqp://ripen:secret@rabbit.internal:5673/prod"
namespace = "prod"
shards = 64
max_envelope_bytes = 1048576
default_max_attempts = 7
record_retention = "3d"

[retry]
base = "500ms"
cap = "10m"

[log]
level = "debug"
format = "json"

[dispatcher]
batch = 200
confirm_window = 2048
inflight_lease = "45s"
shard_lease = "15s"
max_poll = 250
auto_declare = false
queues = ["emails", "billing"]

[worker]
queues = ["emails"]
concurrency = 16
exec_timeout = "2m"
shutdown_grace = "1m30s"

[worker.exec]
send_email = "/usr/bin/send-email --fast"
"invoice:render" = "render --pdf"
)";

TEST(ApplyToml, FullFileSetsEveryField) {
  const Config c = from_toml(kFullFile);
  EXPECT_EQ(c.redis_url, "redis://:pw@redis.internal:6380/2");
  EXPECT_EQ(c.amqp_url, "amqp://ripen:secret@rabbit.internal:5673/prod");
  EXPECT_EQ(c.ns, "prod");
  EXPECT_EQ(c.shards, 64);
  EXPECT_EQ(c.max_envelope_bytes, 1'048'576);
  EXPECT_EQ(c.default_max_attempts, 7);
  EXPECT_EQ(c.record_retention_ms, 3 * 86'400'000LL);
  EXPECT_EQ(c.retry_backoff.base_ms, 500);
  EXPECT_EQ(c.retry_backoff.cap_ms, 600'000);
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.log_format, "json");
  EXPECT_EQ(c.dispatcher.batch, 200);
  EXPECT_EQ(c.dispatcher.confirm_window, 2048);
  EXPECT_EQ(c.dispatcher.inflight_lease_ms, 45'000);
  EXPECT_EQ(c.dispatcher.shard_lease_ms, 15'000);
  EXPECT_EQ(c.dispatcher.max_poll_ms, 250);
  EXPECT_EQ(c.dispatcher.auto_declare, DispatcherConfig::AutoDeclare::none);
  EXPECT_EQ(c.dispatcher.queues, (std::vector<std::string>{"emails", "billing"}));
  EXPECT_EQ(c.worker.queues, (std::vector<std::string>{"emails"}));
  EXPECT_EQ(c.worker.concurrency, 16);
  EXPECT_EQ(c.worker.exec_timeout_ms, 120'000);
  EXPECT_EQ(c.worker.shutdown_grace_ms, 90'000);
  EXPECT_EQ(c.worker.exec, (std::map<std::string, std::string>{{"send_email", "/usr/bin/send-email --fast"},
                                                               {"invoice:render", "render --pdf"}}));
  EXPECT_NO_THROW(validate_config(c));
}

TEST(ApplyToml, LaterFileOverridesOnlyWhatItNames) {
  Config c = from_toml(kFullFile);
  apply_toml(c, "shards = 8\n[dispatcher]\nbatch = 10\n", "override.toml");
  EXPECT_EQ(c.shards, 8);
  EXPECT_EQ(c.dispatcher.batch, 10);
  EXPECT_EQ(c.ns, "prod");
  EXPECT_EQ(c.dispatcher.confirm_window, 2048);
}

TEST(ApplyToml, QueuesListReplacesTheDefaultRatherThanAppending) {
  const Config c = from_toml("[dispatcher]\nqueues = [\"a\"]\n");
  EXPECT_EQ(c.dispatcher.queues, (std::vector<std::string>{"a"}));
}

TEST(ApplyToml, WorkerExecMapIsRead) {
  const Config c = from_toml("[worker.exec]\nresize = \"convert -resize 50%\"\n\"a.b:c\" = \"run\"\n");
  EXPECT_EQ(c.worker.exec, (std::map<std::string, std::string>{{"resize", "convert -resize 50%"}, {"a.b:c", "run"}}));
}

// ---- circuit breakers ------------------------------------------------------

TEST(ApplyToml, BreakerTablesStartFromTheDefaultTable) {
  const Config c = from_toml(
      "[breakers.default]\nwindow = \"time\"\nwindow_time = \"30s\"\nminimum_calls = 5\nfailure_rate = 0.25\n"
      "slow_call = \"2s\"\nslow_rate = 0.8\nopen = \"10s\"\nopen_backoff = 3\nmax_open = \"10m\"\n"
      "half_open_calls = 2\nwindow_calls = 50\n"
      "[breakers.sms-gateway]\nfailure_rate = 0.1\n");
  ASSERT_EQ(c.breakers.size(), 2u);
  const BreakerPolicy& d = c.breakers.at("default");
  EXPECT_EQ(d.window, BreakerPolicy::Window::time);
  EXPECT_EQ(d.window_ms, 30'000);
  EXPECT_EQ(d.window_calls, 50);
  EXPECT_EQ(d.minimum_calls, 5);
  EXPECT_DOUBLE_EQ(d.failure_rate, 0.25);
  EXPECT_EQ(d.slow_call_ms, 2000);
  EXPECT_DOUBLE_EQ(d.slow_rate, 0.8);
  EXPECT_EQ(d.open_ms, 10'000);
  EXPECT_DOUBLE_EQ(d.open_backoff, 3.0);
  EXPECT_EQ(d.max_open_ms, 600'000);
  EXPECT_EQ(d.half_open_calls, 2);
  const BreakerPolicy& sms = c.breakers.at("sms-gateway");
  EXPECT_DOUBLE_EQ(sms.failure_rate, 0.1);
  EXPECT_EQ(sms.open_ms, 10'000) << "what it does not set comes from [breakers.default]";
  EXPECT_EQ(sms.window, BreakerPolicy::Window::time);
}

TEST(ApplyToml, BreakerWithoutADefaultTableStartsFromTheBuiltInPolicy) {
  const Config c = from_toml("[breakers.api]\nopen = \"1s\"\n");
  EXPECT_EQ(c.breakers.at("api").open_ms, 1000);
  EXPECT_EQ(c.breakers.at("api").minimum_calls, BreakerPolicy{}.minimum_calls);
  EXPECT_EQ(c.breakers.count("default"), 0u);
}

TEST(ApplyToml, TaskTypeTablesAreRead) {
  const Config c = from_toml(
      "[retry]\nbase = \"2s\"\ncap = \"1m\"\n"
      "[types.send-sms]\nmax_attempts = 5\nretry_cap = \"10m\"\ntimeout = \"30s\"\n"
      "permanent_errors = [\"card declined\", \"E_INVALID\"]\n"
      "[types.log-line]\nmax_attempts = 1\n");
  const TaskTypeConfig& sms = c.types.at("send-sms");
  EXPECT_EQ(sms.max_attempts, 5);
  ASSERT_TRUE(sms.retry.has_value());
  EXPECT_EQ(sms.retry->base_ms, 2000) << "what the type leaves out comes from [retry]";
  EXPECT_EQ(sms.retry->cap_ms, 600'000);
  EXPECT_EQ(sms.timeout_ms, 30'000);
  EXPECT_EQ(sms.permanent_errors, (std::vector<std::string>{"card declined", "E_INVALID"}));
  EXPECT_FALSE(c.types.at("log-line").retry.has_value()) << "no retry keys: [retry] applies";
  EXPECT_THAT(toml_error("[types.sms]\nmax_attempts = 0\n"), HasSubstr("'types.sms.max_attempts': must be between 1"));
  EXPECT_THAT(toml_error("[types.sms]\nretry_base = \"10s\"\nretry_cap = \"1s\"\n"),
              HasSubstr("[types.sms] retry_cap: must be at least retry_base"));
  EXPECT_THAT(toml_error("[types.sms]\nattempts = 3\n"), HasSubstr("'types.sms.attempts': unknown key"));
  EXPECT_THAT(toml_error("[types.\"a b\"]\nmax_attempts = 3\n"), HasSubstr("'types.a b': not a task type"));
}

TEST(ApplyToml, BlockingPolicyPerTypeAndABadOneNamesTheKeyAndTheChoices) {
  const Config c = from_toml(
      "[types.nightly]\nblocking = \"serial\"\n[types.report]\nblocking = \"discard_if_busy\"\n"
      "[types.sms]\nmax_attempts = 2\n");
  EXPECT_EQ(c.types.at("nightly").blocking, Blocking::serial);
  EXPECT_EQ(c.types.at("report").blocking, Blocking::discard_if_busy);
  EXPECT_EQ(c.types.at("sms").blocking, Blocking::concurrent) << "the default";
  EXPECT_THAT(
      toml_error("[types.x]\nblocking = \"exclusive\"\n"),
      HasSubstr("ripen.toml:2: key 'types.x.blocking': must be \"concurrent\", \"serial\" or \"discard_if_busy\""));
  EXPECT_THAT(toml_error("[types.x]\nblocking = 1\n"), HasSubstr("'types.x.blocking'"));
}

TEST(ApplyToml, QueueWeightsAndConcurrencyAndTheLocalQueue) {
  const Config c = from_toml(
      "[worker]\nqueues = [\"a\", \"b\"]\nlocal_queue = 16\n"
      "[worker.queue.a]\nweight = 3\nconcurrency = 2\n[worker.queue.b]\nweight = 1\n");
  EXPECT_EQ(c.worker.local_queue, 16);
  EXPECT_EQ(c.worker.queue.at("a").weight, 3);
  EXPECT_EQ(c.worker.queue.at("a").concurrency, 2);
  EXPECT_EQ(c.worker.queue.at("b").concurrency, 0) << "no cap of its own";
  EXPECT_THAT(toml_error("[worker.queue.a]\nweight = 0\n"),
              HasSubstr("ripen.toml:2: key 'worker.queue.a.weight': must be between 1"));
  EXPECT_THAT(toml_error("[worker.queue.a]\nshare = 2\n"), HasSubstr("'worker.queue.a.share': unknown key"));
  EXPECT_THAT(toml_error("[worker]\nlocal_queue = -1\n"), HasSubstr("'worker.local_queue'"));
}

TEST(ApplyToml, HandingBackIsOffUnlessAsked) {
  EXPECT_FALSE(Config{}.worker.hand_back);
  EXPECT_TRUE(from_toml("[worker]\nhand_back = true\n").worker.hand_back);
  EXPECT_THAT(toml_error("[worker]\nhand_back = 1\n"), HasSubstr("'worker.hand_back'"));
}

TEST(ApplyToml, IngressPolicyIsReadAndItsNamesChecked) {
  Config c;
  apply_toml(c, R"([dispatcher]
queues = ["default"]
auto_declare = "any"
[worker]
queues = ["mail"]
[worker.queue.reports]
weight = 2
[ingress]
allowed_types = ["send", "report"]
reply_to_prefix = "app.replies."
dead_letter_max_bytes = 4096
dead_letter_body_bytes = 100
[ingress.users]
web = ["send"]
batch = ["*"]
)",
             "ripen.toml");
  EXPECT_EQ(c.dispatcher.auto_declare, DispatcherConfig::AutoDeclare::any);
  EXPECT_EQ(c.ingress.allowed_types, (std::vector<std::string>{"send", "report"}));
  EXPECT_TRUE(c.ingress.allowed_queues.empty()) << "unset: the configured queues";
  EXPECT_EQ(configured_queues(c), (std::vector<std::string>{"default", "mail", "reports"}));
  EXPECT_EQ(c.ingress.reply_to_prefix, "app.replies.");
  EXPECT_EQ(c.ingress.dead_letter_max_bytes, 4096);
  EXPECT_EQ(c.ingress.dead_letter_body_bytes, 100);
  EXPECT_EQ(c.ingress.users.at("web"), (std::vector<std::string>{"send"}));
  EXPECT_EQ(c.ingress.users.at("batch"), (std::vector<std::string>{"*"}));

  Config d;
  EXPECT_EQ(d.dispatcher.auto_declare, DispatcherConfig::AutoDeclare::configured) << "the default";
  apply_toml(d, "[dispatcher]\nauto_declare = true\n", "f");
  EXPECT_EQ(d.dispatcher.auto_declare, DispatcherConfig::AutoDeclare::configured);
  EXPECT_THROW(apply_toml(d, "[ingress]\nallowed_queues = [\"a b\"]\n", "f"), ConfigError);
  EXPECT_THROW(apply_toml(d, "[ingress]\nallowed_types = [\"\"]\n", "f"), ConfigError);
  EXPECT_THROW(apply_toml(d, "[ingress]\nshape = 1\n", "f"), ConfigError);
  EXPECT_THROW(apply_toml(d, "[ingress.users]\nweb = \"send\"\n", "f"), ConfigError);
  EXPECT_THROW(apply_toml(d, "[dispatcher]\nauto_declare = \"sometimes\"\n", "f"), ConfigError);
}

TEST(ApplyToml, BadBreakerSettingsNameTheKey) {
  EXPECT_THAT(toml_error("[breakers.api]\nfailure_rate = 1.5\n"),
              HasSubstr("ripen.toml:2: key 'breakers.api.failure_rate': must be between"));
  EXPECT_THAT(toml_error("[breakers.api]\nfailure_rate = 0\n"), HasSubstr("'breakers.api.failure_rate'"));
  EXPECT_THAT(toml_error("[breakers.api]\nfailure_rate = \"half\"\n"),
              HasSubstr("'breakers.api.failure_rate': must be a number"));
  EXPECT_THAT(toml_error("[breakers.default]\nwindow = \"sliding\"\n"),
              HasSubstr("'breakers.default.window': must be \"count\" or \"time\""));
  EXPECT_THAT(toml_error("[breakers.api]\nwindow_time = \"500ms\"\n"),
              HasSubstr("'breakers.api.window_time': must be at least 1000 ms"));
  EXPECT_THAT(toml_error("[breakers.api]\nopen = \"10s\"\nmax_open = \"5s\"\n"),
              HasSubstr("[breakers.api] max_open: must be at least open"));
  EXPECT_THAT(toml_error("[breakers.api]\nthreshold = 3\n"), HasSubstr("'breakers.api.threshold': unknown key"));
  EXPECT_THAT(toml_error("[breakers]\napi = 3\n"), HasSubstr("'breakers.api': must be a table"));
  EXPECT_THAT(toml_error("[breakers.\"sms gateway\"]\nopen = \"1s\"\n"),
              HasSubstr("'breakers.sms gateway': not a downstream name"));
}

// ---- durations ------------------------------------------------------------

TEST(ApplyToml, DurationAsStringOrIntegerMilliseconds) {
  EXPECT_EQ(from_toml("[dispatcher]\nmax_poll = \"30s\"\n").dispatcher.max_poll_ms, 30'000);
  EXPECT_EQ(from_toml("[dispatcher]\nmax_poll = 30000\n").dispatcher.max_poll_ms, 30'000);
  EXPECT_EQ(from_toml("[dispatcher]\nmax_poll = \"1h30m\"\n").dispatcher.max_poll_ms, 5'400'000);
  EXPECT_EQ(from_toml("record_retention = \"7d\"\n").record_retention_ms, 7 * 86'400'000LL);
  EXPECT_EQ(from_toml("idempotency_retention = \"0s\"\n").idempotency_retention_ms, 0);
  EXPECT_EQ(Config{}.idempotency_retention_ms, 86'400'000) << "a day by default";
  EXPECT_EQ(from_toml("[worker]\nlease_grace = \"5s\"\n").worker.lease_grace_ms, 5000);
}

TEST(ApplyToml, RedisStartupTimeoutIsADurationOfZeroOrMore) {
  EXPECT_EQ(Config{}.redis_startup_timeout_ms, 30'000) << "30 s by default";
  EXPECT_EQ(from_toml("redis_startup_timeout = \"2s\"\n").redis_startup_timeout_ms, 2'000);
  EXPECT_EQ(from_toml("redis_startup_timeout = 0\n").redis_startup_timeout_ms, 0);
  EXPECT_THAT(toml_error("redis_startup_timeout = -1\n"), HasSubstr("'redis_startup_timeout'"));
  EXPECT_THAT(toml_error("redis_startup_timeout = \"soon\"\n"), HasSubstr("'redis_startup_timeout'"));
}

TEST(ApplyToml, DurationMinimumHoldsBothWays) {
  // inflight_lease is at least 100 ms, shard_lease 300 ms, shutdown_grace 0.
  EXPECT_EQ(from_toml("[dispatcher]\ninflight_lease = \"100ms\"\n").dispatcher.inflight_lease_ms, 100);
  EXPECT_THAT(toml_error("[dispatcher]\ninflight_lease = \"99ms\"\n"),
              HasSubstr("ripen.toml:2: key 'dispatcher.inflight_lease': must be at least 100 ms"));
  EXPECT_EQ(from_toml("[dispatcher]\nshard_lease = 300\n").dispatcher.shard_lease_ms, 300);
  EXPECT_THAT(toml_error("[dispatcher]\nshard_lease = 299\n"), HasSubstr("'dispatcher.shard_lease'"));
  EXPECT_EQ(from_toml("[worker]\nshutdown_grace = 0\n").worker.shutdown_grace_ms, 0);
  EXPECT_THAT(toml_error("[worker]\nshutdown_grace = -1\n"), HasSubstr("'worker.shutdown_grace'"));
}

// ---- integer ranges, both ways --------------------------------------------

struct RangeCase {
  std::string name;
  std::string file_ok;
  std::string file_bad;
  std::string key;  // as the message names it
};

void PrintTo(const RangeCase& c, std::ostream* os) { *os << c.name; }

class ConfigRange : public ::testing::TestWithParam<RangeCase> {};

TEST_P(ConfigRange, EdgeAcceptedAndOneBeyondRefused) {
  EXPECT_NO_THROW(from_toml(GetParam().file_ok)) << GetParam().file_ok;
  const std::string msg = toml_error(GetParam().file_bad);
  EXPECT_THAT(msg, HasSubstr("key '" + GetParam().key + "': must be between")) << GetParam().file_bad;
}

INSTANTIATE_TEST_SUITE_P(
    Config, ConfigRange,
    ::testing::Values(
        RangeCase{"ShardsZero", "shards = 1", "shards = 0", "shards"},
        RangeCase{"Shards1025", "shards = 1024", "shards = 1025", "shards"},
        RangeCase{"ShardsNegative", "shards = 1", "shards = -16", "shards"},
        RangeCase{"EnvelopeBytesLow", "max_envelope_bytes = 1024", "max_envelope_bytes = 1023", "max_envelope_bytes"},
        RangeCase{"EnvelopeBytesHigh", "max_envelope_bytes = 67108864", "max_envelope_bytes = 67108865",
                  "max_envelope_bytes"},
        RangeCase{"MaxAttemptsZero", "default_max_attempts = 1", "default_max_attempts = 0", "default_max_attempts"},
        RangeCase{"MaxAttempts1001", "default_max_attempts = 1000", "default_max_attempts = 1001",
                  "default_max_attempts"},
        RangeCase{"BatchZero", "[dispatcher]\nbatch = 1", "[dispatcher]\nbatch = 0", "dispatcher.batch"},
        RangeCase{"Batch10001", "[dispatcher]\nbatch = 10000", "[dispatcher]\nbatch = 10001", "dispatcher.batch"},
        RangeCase{"ConfirmWindow65536", "[dispatcher]\nconfirm_window = 65535", "[dispatcher]\nconfirm_window = 65536",
                  "dispatcher.confirm_window"},
        RangeCase{"ConcurrencyZero", "[worker]\nconcurrency = 1", "[worker]\nconcurrency = 0", "worker.concurrency"},
        RangeCase{"Concurrency1025", "[worker]\nconcurrency = 1024", "[worker]\nconcurrency = 1025",
                  "worker.concurrency"}),
    [](const ::testing::TestParamInfo<RangeCase>& p) { return p.param.name; });

// ---- refusals naming the key ----------------------------------------------

struct BadFile {
  std::string name;
  std::string text;
  std::string expect_in_message;
};

void PrintTo(const BadFile& c, std::ostream* os) { *os << c.name; }

class ApplyTomlRefuses : public ::testing::TestWithParam<BadFile> {};

TEST_P(ApplyTomlRefuses, WithConfigErrorNamingTheKey) {
  EXPECT_THAT(toml_error(GetParam().text), HasSubstr(GetParam().expect_in_message)) << GetParam().text;
}

INSTANTIATE_TEST_SUITE_P(
    Config, ApplyTomlRefuses,
    ::testing::Values(
        // Unknown keys: a misspelling must not be silently ignored.
        BadFile{"UnknownTopLevel", "shards = 16\nnamespace = \"x\"\nshard = 4\n",
                "ripen.toml:3: key 'shard': unknown key"},
        BadFile{"UnknownTopLevelOnLineOne", "redis = \"redis://h\"\n", "ripen.toml:1: key 'redis': unknown key"},
        BadFile{"UnknownInDispatcher", "[dispatcher]\nbatch = 5\nbatch_size = 5\n",
                "ripen.toml:3: key 'dispatcher.batch_size': unknown key"},
        BadFile{"UnknownInWorker", "[worker]\nthreads = 4\n", "key 'worker.threads': unknown key"},
        BadFile{"UnknownInRetry", "[retry]\nmax = \"1h\"\n", "key 'retry.max': unknown key"},
        BadFile{"UnknownInLog", "[log]\nfile = \"x.log\"\n", "key 'log.file': unknown key"},
        BadFile{"UnknownTable", "[producer]\nbatch = 1\n", "key 'producer': unknown key"},
        BadFile{"TopLevelKeyInsideTable", "[dispatcher]\nshards = 4\n", "key 'dispatcher.shards': unknown key"},
        // Wrong types.
        BadFile{"StringForShards", "shards = \"16\"\n", "ripen.toml:1: key 'shards': must be an integer"},
        BadFile{"FloatForShards", "shards = 16.0\n", "key 'shards': must be an integer"},
        BadFile{"BoolForShards", "shards = true\n", "key 'shards': must be an integer"},
        BadFile{"IntForRedisUrl", "redis_url = 6379\n", "ripen.toml:1: key 'redis_url': must be a string"},
        BadFile{"ArrayForNamespace", "namespace = [\"a\"]\n", "key 'namespace': must be a string"},
        BadFile{"IntForAutoDeclare", "[dispatcher]\nauto_declare = 1\n",
                "key 'dispatcher.auto_declare': must be true, false, \"configured\", \"any\" or \"none\""},
        BadFile{"StringForAutoDeclare", "[dispatcher]\nauto_declare = \"true\"\n",
                "key 'dispatcher.auto_declare': must be true, false, \"configured\", \"any\" or \"none\""},
        BadFile{"StringForQueues", "[worker]\nqueues = \"emails\"\n",
                "key 'worker.queues': must be an array of strings"},
        BadFile{"NumbersInQueues", "[dispatcher]\nqueues = [\"a\", 2]\n",
                "key 'dispatcher.queues': must be an array of strings"},
        BadFile{"ScalarForTable", "dispatcher = 5\n", "key 'dispatcher': must be a table"},
        BadFile{"StringForLogTable", "log = \"debug\"\n", "key 'log': must be a table"},
        BadFile{"ExecNotString", "[worker.exec]\nsend_email = 5\n", "key 'worker.exec.send_email': must be a command"},
        BadFile{"ExecEmpty", "[worker.exec]\nsend_email = \"\"\n", "key 'worker.exec.send_email': must be a command"},
        // Durations.
        BadFile{"DurationWord", "[dispatcher]\nmax_poll = \"thirty\"\n",
                "ripen.toml:2: key 'dispatcher.max_poll': 'thirty' is not a duration"},
        BadFile{"DurationBareNumberString", "[retry]\nbase = \"30\"\n", "key 'retry.base': '30' is not a duration"},
        BadFile{"DurationFloat", "[worker]\nexec_timeout = 1.5\n", "key 'worker.exec_timeout': must be a duration"},
        BadFile{"DurationBool", "record_retention = true\n", "key 'record_retention': must be a duration"},
        BadFile{"DurationZeroBase", "[retry]\nbase = 0\n", "key 'retry.base': must be at least 1 ms"},
        BadFile{"RetentionUnderASecond", "record_retention = \"999ms\"\n",
                "key 'record_retention': must be at least 1000 ms"}),
    [](const ::testing::TestParamInfo<BadFile>& p) { return p.param.name; });

TEST(ApplyToml, ErrorNamesTheSourceFile) {
  const std::string msg = config_error_of([] {
    Config c;
    apply_toml(c, "shards = 0\n", "/etc/ripen/ripen.toml");
  });
  EXPECT_THAT(msg, HasSubstr("/etc/ripen/ripen.toml:1: key 'shards'"));
}

struct MalformedCase {
  std::string name;
  std::string text;
  std::string line_prefix;  // "ripen.toml:<line>:"
};

void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }

class MalformedToml : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedToml, ErrorCarriesTheLineNumber) {
  const std::string msg = toml_error(GetParam().text);
  EXPECT_EQ(msg.rfind(GetParam().line_prefix, 0), 0u) << msg;
}

INSTANTIATE_TEST_SUITE_P(
    Config, MalformedToml,
    ::testing::Values(MalformedCase{"MissingValue", "shards = 16\nredis_url = \n", "ripen.toml:2:"},
                      MalformedCase{"UnclosedTable", "shards = 16\n\n[dispatcher\nbatch = 1\n", "ripen.toml:3:"},
                      MalformedCase{"UnclosedString", "namespace = \"prod\n", "ripen.toml:1:"},
                      MalformedCase{"DuplicateKey", "shards = 1\nnamespace = \"a\"\nshards = 2\n", "ripen.toml:3:"},
                      MalformedCase{"BareWord", "# comment\n\nshards = sixteen\n", "ripen.toml:3:"}),
    [](const ::testing::TestParamInfo<MalformedCase>& p) { return p.param.name; });

// ---- environment ----------------------------------------------------------

TEST(ApplyEnv, OverridesUrlsNamespaceShardsAndLog) {
  Config c = from_toml(kFullFile);
  apply_env(c, fake_env({{"RIPEN_REDIS_URL", "redis://env-redis:6379/1"},
                         {"RIPEN_AMQP_URL", "amqp://e:e@env-rabbit:5672/%2f"},
                         {"RIPEN_NAMESPACE", "from-env"},
                         {"RIPEN_SHARDS", "32"},
                         {"RIPEN_LOG_LEVEL", "warn"},
                         {"RIPEN_LOG_FORMAT", "text"}}));
  EXPECT_EQ(c.redis_url, "redis://env-redis:6379/1");
  EXPECT_EQ(c.amqp_url, "amqp://e:e@env-rabbit:5672/%2f");
  EXPECT_EQ(c.ns, "from-env");
  EXPECT_EQ(c.shards, 32);
  EXPECT_EQ(c.log_level, "warn");
  EXPECT_EQ(c.log_format, "text");
  EXPECT_EQ(c.dispatcher.batch, 200) << "what the environment does not name stays as the file set it";
}

TEST(ApplyEnv, EmptyEnvironmentChangesNothing) {
  Config c = from_toml(kFullFile);
  apply_env(c, fake_env({}));
  EXPECT_EQ(c.redis_url, "redis://:pw@redis.internal:6380/2");
  EXPECT_EQ(c.ns, "prod");
  EXPECT_EQ(c.shards, 64);
}

TEST(ApplyEnv, ShardsEdgesBothWays) {
  for (const char* ok : {"1", "1024"}) {
    Config c;
    EXPECT_NO_THROW(apply_env(c, fake_env({{"RIPEN_SHARDS", ok}}))) << ok;
  }
  for (const char* bad : {"0", "1025", "-1"}) {
    const std::string msg = config_error_of([&] {
      Config c;
      apply_env(c, fake_env({{"RIPEN_SHARDS", bad}}));
    });
    EXPECT_THAT(msg, HasSubstr("RIPEN_SHARDS")) << bad;
  }
}

class ApplyEnvRefusesShards : public ::testing::TestWithParam<std::string> {};

TEST_P(ApplyEnvRefusesShards, NotAnInteger) {
  const std::string msg = config_error_of([&] {
    Config c;
    apply_env(c, fake_env({{"RIPEN_SHARDS", GetParam()}}));
  });
  EXPECT_THAT(msg, HasSubstr("RIPEN_SHARDS='" + GetParam() + "'"));
  EXPECT_THAT(msg, HasSubstr("must be an integer between 1 and 1024"));
}

INSTANTIATE_TEST_SUITE_P(Config, ApplyEnvRefusesShards,
                         ::testing::Values("abc", "", "16x", "1.5", "0x10", "99999999999999999999"));

TEST(LoadConfig, FileFromRipenConfigThenEnvironmentThenValidation) {
  const std::string path = ::testing::TempDir() + "ripen_config_test.toml";
  {
    std::ofstream out(path);
    out << "namespace = \"file\"\nshards = 4\n";
  }
  const Config c = load_config(std::nullopt, fake_env({{"RIPEN_CONFIG", path}, {"RIPEN_SHARDS", "8"}}));
  EXPECT_EQ(c.ns, "file");
  EXPECT_EQ(c.shards, 8) << "the environment wins over the file";
  std::remove(path.c_str());
}

TEST(LoadConfig, UnreadableFileIsAConfigError) {
  const std::string msg = config_error_of([] {
    (void)load_config(std::string("/nonexistent/ripen.toml"), [](const std::string&) { return std::nullopt; });
  });
  EXPECT_THAT(msg, HasSubstr("'/nonexistent/ripen.toml': cannot be read"));
}

TEST(LoadConfig, EnvironmentValueIsValidated) {
  const std::string msg = config_error_of([] {
    (void)load_config(std::nullopt, fake_env({{"RIPEN_NAMESPACE", "a{b}"}}));
  });
  EXPECT_THAT(msg, HasSubstr("namespace 'a{b}'"));
}

// ---- validate_config ------------------------------------------------------

struct InvalidConfig {
  std::string name;
  void (*spoil)(Config&);
  std::string expect_in_message;
};

void PrintTo(const InvalidConfig& c, std::ostream* os) { *os << c.name; }

class ValidateConfigRefuses : public ::testing::TestWithParam<InvalidConfig> {};

TEST_P(ValidateConfigRefuses, NamingTheSetting) {
  Config c;
  GetParam().spoil(c);
  EXPECT_THAT(config_error_of([&] { validate_config(c); }), HasSubstr(GetParam().expect_in_message));
}

INSTANTIATE_TEST_SUITE_P(
    Config, ValidateConfigRefuses,
    ::testing::Values(
        InvalidConfig{"HttpRedisUrl", [](Config& c) { c.redis_url = "http://127.0.0.1:6379/0"; }, "redis_url:"},
        InvalidConfig{"RedisPortTooLarge", [](Config& c) { c.redis_url = "redis://host:99999/0"; }, "redis_url:"},
        InvalidConfig{"RedisDbNotNumber", [](Config& c) { c.redis_url = "redis://host:6379/zero"; }, "redis_url:"},
        InvalidConfig{"HttpAmqpUrl", [](Config& c) { c.amqp_url = "http://guest:guest@127.0.0.1:5672/"; }, "amqp_url:"},
        InvalidConfig{"SchemelessAmqpUrl", [](Config& c) { c.amqp_url = "guest:guest@127.0.0.1:5671/"; }, "amqp_url:"},
        InvalidConfig{"TlsCertWithoutKey", [](Config& c) { c.amqp_tls.cert_file = "/etc/ripen/client.pem"; },
                      "amqp.tls: cert_file and key_file go together"},
        InvalidConfig{"TlsKeyWithoutCert", [](Config& c) { c.amqp_tls.key_file = "/etc/ripen/client.key"; },
                      "amqp.tls: cert_file and key_file go together"},
        InvalidConfig{"EmptyNamespace", [](Config& c) { c.ns = ""; }, "namespace '':"},
        InvalidConfig{"NamespaceWithBrace", [](Config& c) { c.ns = "ri{pen"; }, "namespace 'ri{pen'"},
        InvalidConfig{"NamespaceWithCloseBrace", [](Config& c) { c.ns = "ripen}"; }, "namespace 'ripen}'"},
        InvalidConfig{"NamespaceWithColon", [](Config& c) { c.ns = "a:b"; }, "namespace 'a:b'"},
        InvalidConfig{"NamespaceWithSpace", [](Config& c) { c.ns = "a b"; }, "namespace 'a b'"},
        InvalidConfig{"ShardsZero", [](Config& c) { c.shards = 0; }, "shards:"},
        InvalidConfig{"Shards1025", [](Config& c) { c.shards = 1025; }, "shards:"},
        InvalidConfig{"LogLevelVerbose", [](Config& c) { c.log_level = "verbose"; }, "log.level 'verbose'"},
        InvalidConfig{"LogLevelUpperCase", [](Config& c) { c.log_level = "INFO"; }, "log.level 'INFO'"},
        InvalidConfig{"LogFormatYaml", [](Config& c) { c.log_format = "yaml"; }, "log.format 'yaml'"},
        InvalidConfig{"RetryCapBelowBase",
                      [](Config& c) {
                        c.retry_backoff.base_ms = 2000;
                        c.retry_backoff.cap_ms = 1999;
                      },
                      "retry.cap"},
        InvalidConfig{"InflightLeaseEqualsMaxPoll",
                      [](Config& c) {
                        c.dispatcher.inflight_lease_ms = 1000;
                        c.dispatcher.max_poll_ms = 1000;
                      },
                      "dispatcher.inflight_lease"},
        InvalidConfig{"ConcurrencyZero", [](Config& c) { c.worker.concurrency = 0; }, "worker.concurrency"}),
    [](const ::testing::TestParamInfo<InvalidConfig>& p) { return p.param.name; });

TEST(ValidateConfig, CrossFieldEdgesAccepted) {
  Config c;
  c.retry_backoff.base_ms = 2000;
  c.retry_backoff.cap_ms = 2000;
  c.dispatcher.max_poll_ms = 999;
  c.dispatcher.inflight_lease_ms = 1000;
  c.shards = 1024;
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    c.log_level = level;
    EXPECT_NO_THROW(validate_config(c)) << level;
  }
}

TEST(ValidateConfig, UrlErrorDoesNotLeakThePassword) {
  Config c;
  c.redis_url = "redis://:hunter2@host:99999/0";
  EXPECT_THAT(config_error_of([&] { validate_config(c); }), Not(HasSubstr("hunter2")));
}

// ---- parse_redis_url ------------------------------------------------------

TEST(ParseRedisUrl, FullUrl) {
  Result<RedisUrl> u = parse_redis_url("redis://user:s3cret@redis.internal:6380/2");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->host, "redis.internal");
  EXPECT_EQ(u->port, 6380);
  EXPECT_EQ(u->user, "user") << "an ACL user is kept, to be sent with AUTH";
  EXPECT_EQ(u->password, "s3cret");
  EXPECT_EQ(u->db, 2);
}

TEST(ParseRedisUrl, DefaultsForPortAndDb) {
  Result<RedisUrl> u = parse_redis_url("redis://cache");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->host, "cache");
  EXPECT_EQ(u->port, 6379);
  EXPECT_EQ(u->password, "");
  EXPECT_EQ(u->db, 0);
}

TEST(ParseRedisUrl, EmptyDbPathMeansZero) {
  Result<RedisUrl> u = parse_redis_url("redis://cache:6379/");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->db, 0);
}

TEST(ParseRedisUrl, PasswordWithoutUserAndWithoutColon) {
  Result<RedisUrl> a = parse_redis_url("redis://:pw@h:1/0");
  ASSERT_TRUE(a.ok()) << a.error().describe();
  EXPECT_EQ(a->password, "pw");
  EXPECT_EQ(a->user, "");
  Result<RedisUrl> b = parse_redis_url("redis://pw@h:1/0");
  ASSERT_TRUE(b.ok()) << b.error().describe();
  EXPECT_EQ(b->password, "pw");
  EXPECT_EQ(b->user, "");
}

TEST(ParseRedisUrl, UserAndPasswordArePercentDecoded) {
  Result<RedisUrl> u = parse_redis_url("redis://app%2Dworker%40eu:p%40ss%3Aw%25rd%2f@h:6379/0");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->user, "app-worker@eu");
  EXPECT_EQ(u->password, "p@ss:w%rd/");
  EXPECT_EQ(u->host, "h");
}

TEST(ParseRedisUrl, BadPercentEncodingIsRefusedNamingThePart) {
  for (const char* bad : {"redis://u:pw%@h", "redis://u:pw%4@h", "redis://u:pw%zz@h"}) {
    Result<RedisUrl> u = parse_redis_url(bad);
    ASSERT_FALSE(u.ok()) << bad;
    EXPECT_THAT(u.error().message, HasSubstr("password is badly percent-encoded")) << bad;
  }
  Result<RedisUrl> u = parse_redis_url("redis://u%g1:pw@h");
  ASSERT_FALSE(u.ok());
  EXPECT_THAT(u.error().message, HasSubstr("user name is badly percent-encoded"));
}

TEST(ParseRedisUrl, PasswordMayContainAtAndColon) {
  Result<RedisUrl> u = parse_redis_url("redis://:p@s:s@host:6379/3");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->password, "p@s:s");
  EXPECT_EQ(u->host, "host");
  EXPECT_EQ(u->db, 3);
}

TEST(ParseRedisUrl, PortEdgesBothWays) {
  EXPECT_TRUE(parse_redis_url("redis://h:1/0").ok());
  EXPECT_TRUE(parse_redis_url("redis://h:65535/0").ok());
  for (const char* bad : {"redis://h:0/0", "redis://h:65536/0", "redis://h:99999/0", "redis://h:-1/0",
                          "redis://h:abc/0", "redis://h:/0", "redis://h:6379x/0"}) {
    Result<RedisUrl> u = parse_redis_url(bad);
    ASSERT_FALSE(u.ok()) << bad;
    EXPECT_EQ(u.error().code, Errc::invalid);
    EXPECT_THAT(u.error().message, HasSubstr("port")) << bad;
  }
}

TEST(ParseRedisUrl, RefusesOtherSchemesBadDbAndEmptyHost) {
  for (const char* bad : {"http://h:6379/0", "rediss://h:6379/0", "h:6379", "", "redis://h/x", "redis://h/-1",
                          "redis://h/1x", "redis://", "redis://:pw@", "redis://:6379/0"}) {
    Result<RedisUrl> u = parse_redis_url(bad);
    ASSERT_FALSE(u.ok()) << bad;
    EXPECT_EQ(u.error().code, Errc::invalid) << bad;
  }
}

TEST(ParseRedisUrl, RedactedHidesThePassword) {
  Result<RedisUrl> u = parse_redis_url("redis://user:s3cret@redis.internal:6380/2");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->redacted(), "redis://user:***@redis.internal:6380/2");
  EXPECT_THAT(u->redacted(), Not(HasSubstr("s3cret")));
}

TEST(ParseRedisUrl, RedactedWithoutPasswordShowsNoStars) {
  Result<RedisUrl> u = parse_redis_url("redis://cache");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->redacted(), "redis://cache:6379/0");
}

// ---- parse_amqp_url -------------------------------------------------------

TEST(ParseAmqpUrl, DefaultUrlHasRootVhost) {
  Result<AmqpUrl> u = parse_amqp_url("amqp://guest:guest@127.0.0.1:5672/%2f");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 5672);
  EXPECT_EQ(u->user, "guest");
  EXPECT_EQ(u->password, "guest");
  EXPECT_EQ(u->vhost, "/");
}

TEST(ParseAmqpUrl, UpperCasePercentEncodingToo) {
  Result<AmqpUrl> u = parse_amqp_url("amqp://guest:guest@127.0.0.1:5672/%2F");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->vhost, "/");
}

TEST(ParseAmqpUrl, CustomVhostUserPortAndPassword) {
  Result<AmqpUrl> u = parse_amqp_url("amqp://ripen:s3cret@rabbit.internal:5673/prod");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->host, "rabbit.internal");
  EXPECT_EQ(u->port, 5673);
  EXPECT_EQ(u->user, "ripen");
  EXPECT_EQ(u->password, "s3cret");
  EXPECT_EQ(u->vhost, "prod");
}

TEST(ParseAmqpUrl, EncodedSlashInsideVhost) {
  Result<AmqpUrl> u = parse_amqp_url("amqp://u:p@h:5672/team%2fprod");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->vhost, "team/prod");
}

TEST(ParseAmqpUrl, RefusesOtherSchemesAndMalformedUrls) {
  for (const char* bad : {"http://u:p@h:5672/", "", "rabbit:5672", "amqp://u:p@h:notaport/", "amqp://u:p@h/a/b"}) {
    Result<AmqpUrl> u = parse_amqp_url(bad);
    ASSERT_FALSE(u.ok()) << bad;
    EXPECT_EQ(u.error().code, Errc::invalid) << bad;
  }
}

TEST(ParseAmqpUrl, AmqpsMeansTlsOnPort5671ByDefault) {
  Result<AmqpUrl> u = parse_amqp_url("amqps://ripen:s3cret@rabbit.internal/prod");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->port, 5671);
  EXPECT_EQ(u->redacted(), "amqps://ripen:***@rabbit.internal:5671/prod");
  Result<AmqpUrl> other_port = parse_amqp_url("amqps://ripen:s3cret@rabbit.internal:15671/prod");
  ASSERT_TRUE(other_port.ok());
  EXPECT_EQ(other_port->port, 15671);
  Result<AmqpUrl> plain = parse_amqp_url("amqp://ripen:s3cret@rabbit.internal/prod");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->tls);
  EXPECT_EQ(plain->port, 5672);
}

TEST(ParseAmqpUrl, UserAndPasswordArePercentDecoded) {
  Result<AmqpUrl> u = parse_amqp_url("amqp://app%40eu:p%40ss%3Aw%25rd@h:5672/%2f");
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->user, "app@eu");
  EXPECT_EQ(u->password, "p@ss:w%rd");
}

TEST(ParseAmqpUrl, RedactedHidesThePassword) {
  Result<AmqpUrl> u = parse_amqp_url("amqp://ripen:s3cret@rabbit.internal:5673/prod");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->redacted(), "amqp://ripen:***@rabbit.internal:5673/prod");
  EXPECT_THAT(u->redacted(), Not(HasSubstr("s3cret")));
}

// ---- the http handler, exec hygiene and timeouts (issue 15) ---------------

TEST(HttpHandlerConfig, OffByDefaultAndReadFromHandlersHttp) {
  EXPECT_TRUE(Config{}.http.types.empty()) << "no type is served by http unless configured";
  EXPECT_FALSE(Config{}.http.allow_private);
  EXPECT_EQ(Config{}.http.max_response_bytes, 1024 * 1024);
  const Config c = from_toml(
      "[handlers.http]\nallow_private = true\nallow_networks = [\"10.1.0.0/16\", \"::1\"]\n"
      "max_response_bytes = 4096\nlow_speed_bytes = 100\nlow_speed_time = \"5s\"\n"
      "[handlers.http.types.webhook]\nallow = [\"https://api.example.com/v1/\", \"http://hooks.example.com:8080\"]\n");
  EXPECT_TRUE(c.http.allow_private);
  EXPECT_EQ(c.http.allow_networks, (std::vector<std::string>{"10.1.0.0/16", "::1"}));
  EXPECT_EQ(c.http.max_response_bytes, 4096);
  EXPECT_EQ(c.http.low_speed_bytes, 100);
  EXPECT_EQ(c.http.low_speed_time_ms, 5000);
  ASSERT_EQ(c.http.types.count("webhook"), 1u);
  EXPECT_EQ(c.http.types.at("webhook").size(), 2u);
}

TEST(HttpHandlerConfig, BadPrefixesNetworksAndKeysNameTheKey) {
  EXPECT_THAT(toml_error("[handlers.http.types.w]\nallow = [\"ftp://x/\"]\n"),
              HasSubstr("'handlers.http.types.w.allow': 'ftp://x/' must start with http:// or https://"));
  EXPECT_THAT(toml_error("[handlers.http.types.w]\nallow = [\"api.example.com/v1\"]\n"),
              HasSubstr("must start with http:// or https://"));
  EXPECT_THAT(toml_error("[handlers.http.types.w]\nallow = [\"https:///v1\"]\n"), HasSubstr("must name a host"));
  EXPECT_THAT(toml_error("[handlers.http.types.w]\nallow = [\"https://a/v1?x=1\"]\n"),
              HasSubstr("must not have a query"));
  EXPECT_THAT(toml_error("[handlers.http.types.w]\nallow = [\"https://u:p@a/v1\"]\n"),
              HasSubstr("must not have user or password"));
  EXPECT_THAT(toml_error("[handlers.http.types.w]\nallow = []\n"),
              HasSubstr("[handlers.http.types.w] allow: must list at least one URL prefix"));
  EXPECT_THAT(toml_error("[handlers.http.types.w]\nallow = [\"https://a/\"]\nallowed = [\"https://a/\"]\n"),
              HasSubstr("'handlers.http.types.w.allowed': unknown key"));
  EXPECT_THAT(toml_error("[handlers.http]\nallow_networks = [\"10.0.0.1/8\"]\n"),
              HasSubstr("'handlers.http.allow_networks': network '10.0.0.1/8': bits are set past the prefix length"));
  EXPECT_THAT(toml_error("[handlers.http]\nallow_networks = [\"localhost\"]\n"),
              HasSubstr("network 'localhost': not an IPv4 or IPv6 address"));
  EXPECT_THAT(toml_error("[handlers.http]\nmax_response_bytes = 0\n"),
              HasSubstr("'handlers.http.max_response_bytes': must be between 1"));
  EXPECT_THAT(toml_error("[handlers.ftp]\nx = 1\n"), HasSubstr("'handlers.ftp': unknown key"));
  const std::string long_prefix = "gopher://" + std::string(10'000, 'a');
  const std::string msg = toml_error("[handlers.http.types.w]\nallow = [\"" + long_prefix + "\"]\n");
  EXPECT_THAT(msg, HasSubstr("must start with http://"));
  EXPECT_LT(msg.size(), 300u) << "the quoted prefix is cut";
}

TEST(HttpHandlerConfig, ATypeServedByExecAndHttpIsRefused) {
  Config c = from_toml("[handlers.http.types.hook]\nallow = [\"https://a/\"]\n[worker.exec]\nhook = \"true\"\n");
  EXPECT_THAT(config_error_of([&] { validate_config(c); }),
              HasSubstr("handlers.http.types.hook: the type is also served by worker.exec.hook"));
}

TEST(ExecConfig, EnvironmentAllowListAndLimitsPerType) {
  EXPECT_EQ(Config{}.worker.exec_env, (std::vector<std::string>{"PATH", "HOME", "LANG", "LC_*", "TZ", "TMPDIR"}));
  const Config c = from_toml(
      "[worker]\nexec_env = [\"PATH\", \"APP_*\"]\n"
      "[worker.exec_limits.report]\nuser = \"nobody\"\ngroup = \"nogroup\"\ncpu_seconds = 10\nmemory_mb = 512\n"
      "open_files = 64\nprocesses = 32\n");
  EXPECT_EQ(c.worker.exec_env, (std::vector<std::string>{"PATH", "APP_*"}));
  const ExecLimits& l = c.worker.exec_limits.at("report");
  EXPECT_EQ(l.user, "nobody");
  EXPECT_EQ(l.group, "nogroup");
  EXPECT_EQ(l.cpu_seconds, 10);
  EXPECT_EQ(l.memory_mb, 512);
  EXPECT_EQ(l.open_files, 64);
  EXPECT_EQ(l.processes, 32);
  EXPECT_THAT(toml_error("[worker]\nexec_env = [\"PA TH\"]\n"),
              HasSubstr("'worker.exec_env': 'PA TH' is not a variable name"));
  EXPECT_THAT(toml_error("[worker]\nexec_env = [\"*\"]\n"), HasSubstr("'*' is not a variable name"));
  EXPECT_THAT(toml_error("[worker.exec_limits.r]\nopen_files = 2\n"),
              HasSubstr("'worker.exec_limits.r.open_files': must be between 3"));
  EXPECT_THAT(toml_error("[worker.exec_limits.r]\nuid = 5\n"), HasSubstr("'worker.exec_limits.r.uid': unknown key"));
}

TEST(TimeoutConfig, TypeMaxTimeoutAndTheFleetDefault) {
  EXPECT_EQ(Config{}.worker.max_task_timeout_ms, 3600 * 1000);
  const Config c =
      from_toml("[worker]\nmax_task_timeout = \"10m\"\n[types.sms]\ntimeout = \"5s\"\nmax_timeout = \"30s\"\n");
  EXPECT_EQ(c.worker.max_task_timeout_ms, 600'000);
  EXPECT_EQ(c.types.at("sms").max_timeout_ms, 30'000);
  EXPECT_THAT(toml_error("[types.sms]\ntimeout = \"31s\"\nmax_timeout = \"30s\"\n"),
              HasSubstr("[types.sms] timeout: must be at most max_timeout"));
  EXPECT_NO_THROW(from_toml("[types.sms]\ntimeout = \"30s\"\nmax_timeout = \"30s\"\n")) << "equal is fine";
  EXPECT_THAT(toml_error("[worker]\nmax_task_timeout = 0\n"),
              HasSubstr("'worker.max_task_timeout': must be at least 1"));
}

// ---- no URL text in errors ---------------------------------------------------

// Malformed URLs with the password "hunter2" in them, one per way a parser can
// refuse: the error must not quote any of it (a scheme-less "user:pw@host" or a
// password taken for a port used to be echoed whole).
const char* const kBadRedisUrls[] = {
    "hunter2@cache",                   // no scheme, no colon
    "worker:hunter2@cache:6379/0",     // no scheme
    "http://:hunter2@cache:6379/0",    // other scheme
    "rediss://:hunter2@cache:6379/0",  // TLS scheme (not supported)
    "redis://:hunter2",                // the password read as a port
    "redis://cache:hunter2/0",         // port
    "redis://cache:6379/hunter2",      // db
    "redis://cache/hunter2",           // db without port
    "redis://:hunter2%@cache",         // percent-encoding of the password
    "redis://hunter2%zz:x@cache",      // percent-encoding of the user
    "redis://:hunter2@",               // empty host
    "redis://:hunter2@:6379/0",        // empty host with port
    "redis://:hunter2@cache:0/0",      // port out of range
};
const char* const kBadAmqpUrls[] = {
    "hunter2@rabbit",                   // no scheme
    "guest:hunter2@rabbit:5672/%2f",    // no scheme
    "http://guest:hunter2@rabbit/",     // other scheme
    "amqp://guest:hunter2@rabbit:x/",   // port
    "amqp://guest:hunter2@rabbit/a/b",  // vhost
    "amqp://guest:hunter2@rabbit/%zz",  // vhost encoding
    "amqp://guest:hunter2@rabbit/%2",   // vhost encoding cut short
    "amqps://guest:hunter2@rabbit:99999999999/",
};

TEST(UrlErrors, NeverQuoteTheUrl) {
  for (const char* url : kBadRedisUrls) {
    Result<RedisUrl> u = parse_redis_url(url);
    ASSERT_FALSE(u.ok()) << url;
    EXPECT_THAT(u.error().message, Not(HasSubstr("unter2"))) << url;
    Config c;
    c.redis_url = url;
    const std::string validated = config_error_of([&] { validate_config(c); });
    EXPECT_THAT(validated, HasSubstr("redis_url:")) << url;
    EXPECT_THAT(validated, Not(HasSubstr("unter2"))) << url;
    const std::string resolved = config_error_of([&] { (void)redis_url_of(c); });
    EXPECT_THAT(resolved, HasSubstr("redis_url:")) << url;
    EXPECT_THAT(resolved, Not(HasSubstr("unter2"))) << url;
  }
  for (const char* url : kBadAmqpUrls) {
    Result<AmqpUrl> u = parse_amqp_url(url);
    ASSERT_FALSE(u.ok()) << url;
    EXPECT_THAT(u.error().message, Not(HasSubstr("unter2"))) << url;
    Config c;
    c.amqp_url = url;
    const std::string validated = config_error_of([&] { validate_config(c); });
    EXPECT_THAT(validated, HasSubstr("amqp_url:")) << url;
    EXPECT_THAT(validated, Not(HasSubstr("unter2"))) << url;
    const std::string resolved = config_error_of([&] { (void)amqp_url_of(c); });
    EXPECT_THAT(resolved, HasSubstr("amqp_url:")) << url;
    EXPECT_THAT(resolved, Not(HasSubstr("unter2"))) << url;
  }
}

TEST(UrlErrors, SchemelessUrlSaysItHasNoScheme) {
  Result<RedisUrl> r = parse_redis_url("worker:hunter2@cache:6379/0");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.error().message, HasSubstr("no scheme"));
  Result<AmqpUrl> a = parse_amqp_url("guest:hunter2@rabbit:5672/%2f");
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.error().message, HasSubstr("no scheme"));
}

// ---- [amqp.tls] -------------------------------------------------------------

TEST(AmqpTls, DefaultsVerifyWithTheSystemStore) {
  const Config c;
  EXPECT_TRUE(c.amqp_tls.verify);
  EXPECT_EQ(c.amqp_tls.ca_file, "");
  EXPECT_EQ(c.amqp_tls.cert_file, "");
  EXPECT_EQ(c.amqp_tls.key_file, "");
}

TEST(AmqpTls, ReadFromTheFile) {
  const Config c = from_toml(R"(
amqp_url = "amqps://ripen:pw@rabbit.internal/prod"
[amqp.tls]
ca_file = "/etc/ripen/ca.pem"
cert_file = "/etc/ripen/client.pem"
key_file = "/etc/ripen/client.key"
verify = false
)");
  EXPECT_EQ(c.amqp_tls.ca_file, "/etc/ripen/ca.pem");
  EXPECT_EQ(c.amqp_tls.cert_file, "/etc/ripen/client.pem");
  EXPECT_EQ(c.amqp_tls.key_file, "/etc/ripen/client.key");
  EXPECT_FALSE(c.amqp_tls.verify);
  const AmqpUrl url = amqp_url_of(c);
  EXPECT_TRUE(url.tls);
  EXPECT_EQ(url.port, 5671);
  EXPECT_EQ(url.tls_options.ca_file, "/etc/ripen/ca.pem");
  EXPECT_EQ(url.tls_options.cert_file, "/etc/ripen/client.pem");
  EXPECT_EQ(url.tls_options.key_file, "/etc/ripen/client.key");
  EXPECT_FALSE(url.tls_options.verify);
}

TEST(AmqpTls, UnknownKeysAndWrongTypesAreRefused) {
  EXPECT_THAT(toml_error("[amqp.tls]\ncafile = \"/x\"\n"), HasSubstr("key 'amqp.tls.cafile': unknown key"));
  EXPECT_THAT(toml_error("[amqp.tls]\nverify = \"no\"\n"), HasSubstr("key 'amqp.tls.verify': must be true or false"));
  EXPECT_THAT(toml_error("[amqp]\nport = 5671\n"), HasSubstr("key 'amqp.port': unknown key"));
  EXPECT_THAT(toml_error("[amqp.tls]\nca_file = 1\n"), HasSubstr("key 'amqp.tls.ca_file': must be a string"));
}

TEST(AmqpTls, FromTheEnvironment) {
  Config c;
  apply_env(c, fake_env({{"RIPEN_AMQP_TLS_CA_FILE", "/run/ca.pem"},
                         {"RIPEN_AMQP_TLS_CERT_FILE", "/run/c.pem"},
                         {"RIPEN_AMQP_TLS_KEY_FILE", "/run/c.key"},
                         {"RIPEN_AMQP_TLS_VERIFY", "false"}}));
  EXPECT_EQ(c.amqp_tls.ca_file, "/run/ca.pem");
  EXPECT_EQ(c.amqp_tls.cert_file, "/run/c.pem");
  EXPECT_EQ(c.amqp_tls.key_file, "/run/c.key");
  EXPECT_FALSE(c.amqp_tls.verify);
  apply_env(c, fake_env({{"RIPEN_AMQP_TLS_VERIFY", "1"}}));
  EXPECT_TRUE(c.amqp_tls.verify);
  EXPECT_THAT(config_error_of([] {
                Config d;
                apply_env(d, fake_env({{"RIPEN_AMQP_TLS_VERIFY", "maybe"}}));
              }),
              HasSubstr("RIPEN_AMQP_TLS_VERIFY='maybe': must be true, false, 1 or 0"));
}

// ---- passwords from files and the environment --------------------------------

// A file in the test's temp dir holding `content`; removed on destruction.
class SecretFile {
 public:
  SecretFile(const std::string& name, const std::string& content) : path_(::testing::TempDir() + name) {
    std::ofstream out(path_, std::ios::binary);
    out << content;
  }
  ~SecretFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(PasswordFiles, FromTheEnvironmentReplaceTheUrlsPasswords) {
  SecretFile redis("ripen_redis_pw", "r3dis-secret\n");
  SecretFile amqp("ripen_amqp_pw", "amqp-secret\r\n");
  const Config c = load_config(std::nullopt, fake_env({{"RIPEN_REDIS_URL", "redis://app:in-url@cache:6379/0"},
                                                       {"RIPEN_AMQP_URL", "amqp://app:in-url@rabbit/%2f"},
                                                       {"RIPEN_REDIS_PASSWORD_FILE", redis.path()},
                                                       {"RIPEN_AMQP_PASSWORD_FILE", amqp.path()}}));
  EXPECT_EQ(c.redis_password, "r3dis-secret") << "the trailing newline is not part of the password";
  EXPECT_EQ(c.amqp_password, "amqp-secret");
  const RedisUrl r = redis_url_of(c);
  EXPECT_EQ(r.user, "app");
  EXPECT_EQ(r.password, "r3dis-secret");
  const AmqpUrl a = amqp_url_of(c);
  EXPECT_EQ(a.user, "app");
  EXPECT_EQ(a.password, "amqp-secret");
}

TEST(PasswordFiles, FromTheConfigFile) {
  SecretFile redis("ripen_redis_pw2", "from-file");
  SecretFile amqp("ripen_amqp_pw2", "amqp-from-file\n\n");
  SecretFile toml("ripen_pw.toml", "redis_url = \"redis://cache\"\nredis_password_file = \"" + redis.path() +
                                       "\"\namqp_password_file = \"" + amqp.path() + "\"\n");
  const Config c = load_config(toml.path(), fake_env({}));
  EXPECT_EQ(c.redis_password_file, redis.path());
  EXPECT_EQ(redis_url_of(c).password, "from-file");
  EXPECT_EQ(amqp_url_of(c).password, "amqp-from-file");
}

TEST(PasswordFiles, EnvironmentPasswordWinsOverAFile) {
  SecretFile redis("ripen_redis_pw3", "from-file\n");
  const Config c = load_config(std::nullopt, fake_env({{"RIPEN_REDIS_PASSWORD_FILE", redis.path()},
                                                       {"RIPEN_REDIS_PASSWORD", "from-env"},
                                                       {"RIPEN_AMQP_PASSWORD", "amqp-env"}}));
  EXPECT_EQ(redis_url_of(c).password, "from-env");
  EXPECT_EQ(amqp_url_of(c).password, "amqp-env");
}

TEST(PasswordFiles, NoneSetKeepsTheUrlsPasswords) {
  const Config c = load_config(std::nullopt, fake_env({{"RIPEN_REDIS_URL", "redis://:in-url@cache"}}));
  EXPECT_FALSE(c.redis_password.has_value());
  EXPECT_FALSE(c.amqp_password.has_value());
  EXPECT_EQ(redis_url_of(c).password, "in-url");
  EXPECT_EQ(amqp_url_of(c).password, "guest");
}

TEST(PasswordFiles, UnreadableFileNamesTheKeyAndPath) {
  const std::string missing = ::testing::TempDir() + "ripen_no_such_password_file";
  const std::string redis_msg = config_error_of([&] {
    (void)load_config(std::nullopt, fake_env({{"RIPEN_REDIS_PASSWORD_FILE", missing}}));
  });
  EXPECT_THAT(redis_msg, HasSubstr("redis_password_file '" + missing + "': cannot be read"));
  const std::string amqp_msg = config_error_of([&] {
    (void)load_config(std::nullopt, fake_env({{"RIPEN_AMQP_PASSWORD_FILE", missing}}));
  });
  EXPECT_THAT(amqp_msg, HasSubstr("amqp_password_file '" + missing + "': cannot be read"));
  // A directory opens but does not read.
  const std::string dir_msg = config_error_of([&] {
    (void)load_config(std::nullopt, fake_env({{"RIPEN_REDIS_PASSWORD_FILE", ::testing::TempDir()}}));
  });
  EXPECT_THAT(dir_msg, HasSubstr("redis_password_file '"));
}

TEST(PasswordFiles, EmptyFileIsRefusedWithoutQuotingIt) {
  SecretFile empty("ripen_empty_pw", "\n");
  const std::string msg = config_error_of([&] {
    (void)load_config(std::nullopt, fake_env({{"RIPEN_AMQP_PASSWORD_FILE", empty.path()}}));
  });
  EXPECT_THAT(msg, HasSubstr("amqp_password_file '" + empty.path() + "': the file is empty"));
}

TEST(PasswordFiles, ErrorsNeverQuoteTheSecret) {
  // A file that is not a password at all (someone pointed the key at a config
  // file) still reads; what must never happen is its content in an error.
  SecretFile secret("ripen_pw_content", "hunter2\n");
  Config c;
  c.redis_password_file = secret.path();
  c.redis_url = "redis://cache:bad/0";
  read_password_files(c);
  EXPECT_THAT(config_error_of([&] { validate_config(c); }), Not(HasSubstr("unter2")));
  EXPECT_THAT(config_error_of([&] { (void)redis_url_of(c); }), Not(HasSubstr("unter2")));
}

}  // namespace
}  // namespace ripen
