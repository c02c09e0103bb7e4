// The schedules file is configuration read at start: a mistake must stop the
// process with one line that names the file, the line, the schedule and the
// key. These tests read a full file and check every field, its defaults, that
// a spec survives to_json/from_json unchanged and dumps the same every time,
// and then feed one broken file per kind of mistake, checking the whole
// message, line number included.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ripen/schedules.h"

namespace ripen {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr const char* kFullFile = R"(# two schedules, every key
[[schedule]]
name = "nightly-report"
cron = "0 2 * * *"
timezone = "Europe/Berlin"
queue = "reports"
type = "report.build"
payload = { kind = "daily", pages = [1, 2, 3], ratio = 0.5, draft = false, since = 2026-03-29, at = 07:32:00.25, sent = 2026-03-29T07:32:00+02:00, utc = 2026-03-29T05:32:00Z, local = 2026-03-29T07:32:00, nested = { deep = "yes" } }
overlap = "skip"
misfire = "run_all"
misfire_limit = 24
max_attempts = 3
timeout = "1m30s"
downstream = "sms-gateway"
priority = 7

[[schedule]]
name = "heartbeat"
cron = "*/15 * * * * *"
queue = "ops"
type = "ops:ping"
timeout = 2500
)";

std::vector<ScheduleSpec> parse_ok(const std::string& text) {
  auto specs = parse_schedules(text, "schedules.toml");
  if (!specs) {
    ADD_FAILURE() << specs.error().describe();
    return {};
  }
  return *specs;
}

TEST(ParseSchedules, FullFileSetsEveryField) {
  const std::vector<ScheduleSpec> specs = parse_ok(kFullFile);
  ASSERT_EQ(specs.size(), 2u);
  const ScheduleSpec& a = specs[0];
  EXPECT_EQ(a.name, "nightly-report");
  EXPECT_EQ(a.cron, "0 2 * * *");
  EXPECT_EQ(a.timezone, "Europe/Berlin");
  EXPECT_EQ(a.queue, "reports");
  EXPECT_EQ(a.type, "report.build");
  EXPECT_EQ(a.payload, json::parse(R"({"kind": "daily", "pages": [1, 2, 3], "ratio": 0.5, "draft": false,
      "since": "2026-03-29", "at": "07:32:00.25", "sent": "2026-03-29T07:32:00+02:00",
      "utc": "2026-03-29T05:32:00Z", "local": "2026-03-29T07:32:00", "nested": {"deep": "yes"}})"));
  EXPECT_EQ(a.overlap, "skip");
  EXPECT_EQ(a.misfire, "run_all");
  EXPECT_EQ(a.misfire_limit, 24);
  EXPECT_EQ(a.max_attempts, 3);
  EXPECT_EQ(a.timeout_ms, 90'000);
  EXPECT_EQ(a.downstream, "sms-gateway");
  EXPECT_EQ(a.priority, 7);
  EXPECT_EQ(a.line, 2);
  const ScheduleSpec& b = specs[1];
  EXPECT_EQ(b.name, "heartbeat");
  EXPECT_EQ(b.timeout_ms, 2500);
  EXPECT_EQ(b.line, 17);
}

TEST(ParseSchedules, DefaultsForOptionalKeys) {
  const std::vector<ScheduleSpec> specs = parse_ok(R"(
[[schedule]]
name = "a"
cron = "@daily"
queue = "q"
type = "t"
)");
  ASSERT_EQ(specs.size(), 1u);
  const ScheduleSpec& s = specs[0];
  EXPECT_EQ(s.timezone, "UTC");
  EXPECT_TRUE(s.payload.is_null());
  EXPECT_EQ(s.overlap, "allow");
  EXPECT_EQ(s.misfire, "run_once");
  EXPECT_EQ(s.misfire_limit, 100);
  EXPECT_EQ(s.max_attempts, 0);
  EXPECT_EQ(s.timeout_ms, 0);
  EXPECT_EQ(s.downstream, "");
  EXPECT_EQ(s.priority, 0);
  EXPECT_EQ(s.line, 2);
}

TEST(ParseSchedules, NoSchedulesIsAnEmptyList) {
  EXPECT_TRUE(parse_ok("").empty());
  EXPECT_TRUE(parse_ok("# nothing scheduled yet\n\n").empty());
}

TEST(ParseSchedules, InlineArrayOfTablesIsTheSame) {
  const auto specs = parse_ok(R"(schedule = [{ name = "a", cron = "@daily", queue = "q", type = "t" }])");
  ASSERT_EQ(specs.size(), 1u);
  EXPECT_EQ(specs[0].name, "a");
}

// ---- JSON form ------------------------------------------------------------------

TEST(ScheduleJson, RoundTripsEveryField) {
  for (const ScheduleSpec& spec : parse_ok(kFullFile)) {
    auto back = ScheduleSpec::from_json(spec.to_json());
    ASSERT_TRUE(back.ok()) << back.error().describe();
    EXPECT_EQ(back->to_json().dump(), spec.to_json().dump());
    EXPECT_EQ(back->line, 0);
  }
}

TEST(ScheduleJson, IsCanonical) {
  ScheduleSpec s;
  s.name = "a";
  s.cron = "0 2 * * *";
  s.queue = "q";
  s.type = "t";
  EXPECT_EQ(s.to_json().dump(),
            R"({"cron":"0 2 * * *","downstream":"","max_attempts":0,"misfire":"run_once","misfire_limit":100,)"
            R"("name":"a","overlap":"allow","payload":null,"priority":0,"queue":"q","timeout_ms":0,)"
            R"("timezone":"UTC","type":"t"})");
  ScheduleSpec moved = s;
  moved.line = 42;
  EXPECT_EQ(moved.to_json().dump(), s.to_json().dump());
}

TEST(ScheduleJson, FromJsonTakesDefaultsForMissingOptionalKeys) {
  auto s = ScheduleSpec::from_json(json{{"name", "a"}, {"cron", "@hourly"}, {"queue", "q"}, {"type", "t"}});
  ASSERT_TRUE(s.ok()) << s.error().describe();
  EXPECT_EQ(s->timezone, "UTC");
  EXPECT_EQ(s->misfire, "run_once");
  EXPECT_EQ(s->misfire_limit, 100);
}

struct BadJson {
  std::string name;
  json doc;
  std::string message;
};

void PrintTo(const BadJson& c, std::ostream* os) { *os << c.name; }

class ScheduleFromJsonRefuses : public ::testing::TestWithParam<BadJson> {};

TEST_P(ScheduleFromJsonRefuses, NamingTheKey) {
  auto s = ScheduleSpec::from_json(GetParam().doc);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::invalid);
  EXPECT_EQ(s.error().message, GetParam().message);
}

json base_doc(json patch) {
  json doc = {{"name", "a"}, {"cron", "@daily"}, {"queue", "q"}, {"type", "t"}};
  for (const auto& item : patch.items()) {
    if (item.value().is_discarded()) {
      doc.erase(item.key());
    } else {
      doc[item.key()] = item.value();
    }
  }
  return doc;
}

INSTANTIATE_TEST_SUITE_P(
    Schedule, ScheduleFromJsonRefuses,
    ::testing::Values(
        BadJson{"NotAnObject", json::array(), "schedule: must be a JSON object"},
        BadJson{"UnknownKey", base_doc({{"timeout", "30s"}}), "schedule 'a': timeout: unknown key"},
        BadJson{"MissingCron", base_doc({{"cron", json(json::value_t::discarded)}}), "schedule 'a': cron: is required"},
        BadJson{"MissingName", base_doc({{"name", json(json::value_t::discarded)}}), "schedule: name: is required"},
        BadJson{"WrongType", base_doc({{"queue", 5}}), "schedule 'a': queue: must be a string"},
        BadJson{"FloatPriority", base_doc({{"priority", 1.5}}), "schedule 'a': priority: must be an integer"},
        BadJson{"HugeLimit", base_doc({{"misfire_limit", 1LL << 40}}), "schedule 'a': misfire_limit: is out of range"},
        BadJson{"Invalid", base_doc({{"cron", "61 * * * *"}}),
                "schedule 'a': cron: '61 * * * *': minute: 61 is out of range 0-59"}));

TEST(ScheduleValidate, NamesTheScheduleAndTheKey) {
  ScheduleSpec s;
  s.name = "x";
  s.cron = "0 2 * * *";
  s.queue = "q";
  s.type = "t";
  EXPECT_TRUE(s.validate().ok());
  s.timeout_ms = 8LL * 24 * 3600 * 1000;
  ASSERT_FALSE(s.validate().ok());
  EXPECT_EQ(s.validate().error().message, "schedule 'x': timeout: must be between 0 and 604800000 (7 days)");
}

TEST(ScheduleValidate, PayloadLeavesRoomForTheDispatchersFields) {
  ScheduleSpec s;
  s.name = "x";
  s.cron = "0 2 * * *";
  s.queue = "q";
  s.type = "t";
  s.payload = std::string(2000, 'a');
  EXPECT_TRUE(s.validate(4096).ok());
  s.payload = std::string(3100, 'a');  // fits 4096, but not 4096 less the headroom
  ASSERT_FALSE(s.validate(4096).ok());
  EXPECT_THAT(s.validate(4096).error().message, StartsWith("schedule 'x': payload: envelope is "));
}

// ---- refusals -------------------------------------------------------------------

struct BadFile {
  std::string name;
  std::string text;
  std::string message;  // the whole message
};

void PrintTo(const BadFile& c, std::ostream* os) { *os << c.name; }

class ParseSchedulesRefuses : public ::testing::TestWithParam<BadFile> {};

TEST_P(ParseSchedulesRefuses, WithTheLineTheScheduleAndTheKey) {
  auto specs = parse_schedules(GetParam().text, "schedules.toml");
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.error().code, Errc::invalid);
  EXPECT_EQ(specs.error().message, GetParam().message);
}

// A valid schedule named `name` with `extra` lines inserted after its type (line 5 on).
std::string one(const std::string& name, const std::string& extra, const std::string& cron = "0 2 * * *") {
  return "[[schedule]]\nname = \"" + name + "\"\ncron = \"" + cron + "\"\nqueue = \"q\"\ntype = \"t\"\n" + extra;
}

INSTANTIATE_TEST_SUITE_P(
    Schedules, ParseSchedulesRefuses,
    ::testing::Values(
        BadFile{"BadCron", one("a", "", "61 * * * *"),
                "schedules.toml:3: schedule 'a': cron: '61 * * * *': minute: 61 is out of range 0-59"},
        BadFile{"CronTooShort", one("a", "", "0 2 * *"),
                "schedules.toml:3: schedule 'a': cron: '0 2 * *': expected 5 or 6 fields, got 4"},
        BadFile{"CronNeverFires", one("a", "", "0 0 30 2 *"),
                "schedules.toml:3: schedule 'a': cron: '0 0 30 2 *' never fires (no listed day of the month exists "
                "in a listed month)"},
        BadFile{"UnknownZone", one("a", "timezone = \"Mars/Base\"\n"),
                "schedules.toml:6: schedule 'a': timezone: unknown time zone 'Mars/Base'"},
        BadFile{"BareNumberDuration", one("a", "timeout = \"30\"\n"),
                "schedules.toml:6: schedule 'a': timeout: '30' is not a duration (missing unit after 30; units are ms, "
                "s, m, "
                "h, d); use e.g. "
                "250ms, 30s, 5m, 2h, 1d or 1h30m"},
        BadFile{"TimeoutTooLong", one("a", "timeout = \"8d\"\n"),
                "schedules.toml:6: schedule 'a': timeout: must be between 1 ms and 604800000 ms (7 days)"},
        BadFile{"TimeoutZero", one("a", "timeout = 0\n"),
                "schedules.toml:6: schedule 'a': timeout: must be between 1 ms and 604800000 ms (7 days)"},
        BadFile{"TimeoutWrongType", one("a", "timeout = true\n"),
                "schedules.toml:6: schedule 'a': timeout: must be a duration like \"30s\" or integer milliseconds"},
        BadFile{"DuplicateName", one("a", "") + "\n" + one("b", "") + "\n" + one("a", ""),
                "schedules.toml:14: schedule 'a': name: used twice: also by the schedule at line 1"},
        BadFile{"UnknownKey", one("a", "cronn = \"0 3 * * *\"\n"),
                "schedules.toml:6: schedule 'a': cronn: unknown key"},
        BadFile{"MissingQueue", "[[schedule]]\nname = \"a\"\ncron = \"@daily\"\ntype = \"t\"\n",
                "schedules.toml:1: schedule 'a': queue: is required"},
        BadFile{"MissingCron", "\n[[schedule]]\nname = \"a\"\nqueue = \"q\"\ntype = \"t\"\n",
                "schedules.toml:2: schedule 'a': cron: is required"},
        BadFile{"MissingName", one("a", "") + "\n[[schedule]]\ncron = \"@daily\"\nqueue = \"q\"\ntype = \"t\"\n",
                "schedules.toml:7: schedule #2: name: is required"},
        BadFile{"NameNotAString", "[[schedule]]\nname = 5\n", "schedules.toml:2: schedule #1: name: must be a string"},
        BadFile{"BadName", one("a b", ""),
                "schedules.toml:2: schedule 'a b': name: must be 1-128 characters of [A-Za-z0-9._:-]"},
        BadFile{"BadOverlap", one("a", "overlap = \"never\"\n"),
                "schedules.toml:6: schedule 'a': overlap: must be \"allow\" or \"skip\""},
        BadFile{"BadMisfire", one("a", "misfire = \"run_twice\"\n"),
                "schedules.toml:6: schedule 'a': misfire: must be \"skip\", \"run_once\" or \"run_all\""},
        BadFile{"MisfireLimitZero", one("a", "misfire_limit = 0\n"),
                "schedules.toml:6: schedule 'a': misfire_limit: must be between 1 and 10000"},
        BadFile{"MisfireLimitTooBig", one("a", "misfire_limit = 10001\n"),
                "schedules.toml:6: schedule 'a': misfire_limit: must be between 1 and 10000"},
        BadFile{"MaxAttemptsZero", one("a", "max_attempts = 0\n"),
                "schedules.toml:6: schedule 'a': max_attempts: must be between 1 and 1000"},
        BadFile{"PriorityTooBig", one("a", "priority = 10\n"),
                "schedules.toml:6: schedule 'a': priority: must be between 0 and 9"},
        BadFile{"PriorityNotAnInteger", one("a", "priority = \"high\"\n"),
                "schedules.toml:6: schedule 'a': priority: must be an integer"},
        BadFile{"BadQueue", "[[schedule]]\nname = \"a\"\ncron = \"@daily\"\nqueue = \"my queue\"\ntype = \"t\"\n",
                "schedules.toml:4: schedule 'a': queue: must be 1-128 characters of [A-Za-z0-9._-]"},
        BadFile{"BadType", "[[schedule]]\nname = \"a\"\ncron = \"@daily\"\nqueue = \"q\"\ntype = \"a/b\"\n",
                "schedules.toml:5: schedule 'a': type: must be 1-128 characters of [A-Za-z0-9._:-]"},
        BadFile{"BadDownstream", one("a", "downstream = \"sms gateway\"\n"),
                "schedules.toml:6: schedule 'a': downstream: must be 1-128 characters of [A-Za-z0-9._:-]"},
        BadFile{"PayloadNan", one("a", "payload = { x = nan }\n"),
                "schedules.toml:6: schedule 'a': payload: nan and inf have no JSON form"},
        BadFile{"ProblemInTheSecondSchedule", one("a", "") + "\n" + one("b", "priority = -1\n"),
                "schedules.toml:12: schedule 'b': priority: must be between 0 and 9"},
        BadFile{
            "TomlSyntax", "[[schedule]]\nname = \"a\"\ncron = \"0 2 * * *\n",
            "schedules.toml:3: Error while parsing string: unescaped control characters other than TAB (U+0009) are "
            "explicitly prohibited"},
        BadFile{"TopLevelKey", "timezone = \"UTC\"\n" + one("a", ""),
                "schedules.toml:1: unknown key 'timezone' (a schedules file holds only [[schedule]] tables)"},
        BadFile{"ScheduleNotAnArray", "schedule = \"nightly\"\n",
                "schedules.toml:1: key 'schedule': must be an array of tables ([[schedule]])"},
        BadFile{"ScheduleAsOneTable", "[schedule]\nname = \"a\"\n",
                "schedules.toml:1: key 'schedule': must be an array of tables ([[schedule]])"},
        BadFile{"ScheduleArrayOfStrings", "schedule = [\"a\"]\n",
                "schedules.toml:1: schedule #1: must be a table ([[schedule]])"}));

TEST(ParseSchedules, PayloadOverTheEnvelopeLimitIsRefused) {
  const std::string big(kDefaultMaxEnvelopeBytes, 'x');
  auto specs = parse_schedules(one("a", "payload = \"" + big + "\"\n"), "schedules.toml");
  ASSERT_FALSE(specs.ok());
  EXPECT_THAT(specs.error().message, StartsWith("schedules.toml:6: schedule 'a': payload: envelope is "));
}

// ---- files ----------------------------------------------------------------------

class ScheduleFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ripen-schedules-test-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  std::filesystem::path dir_;
};

TEST_F(ScheduleFile, LoadsAndNamesItselfInErrors) {
  auto specs = load_schedules_file(write("good.toml", kFullFile));
  ASSERT_TRUE(specs.ok()) << specs.error().describe();
  EXPECT_EQ(specs->size(), 2u);

  const std::string bad = write("bad.toml", one("a", "priority = 10\n"));
  auto refused = load_schedules_file(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message, bad + ":6: schedule 'a': priority: must be between 0 and 9");
}

TEST_F(ScheduleFile, MissingIsNotFound) {
  auto specs = load_schedules_file((dir_ / "absent.toml").string());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.error().code, Errc::not_found);
  EXPECT_THAT(specs.error().message, HasSubstr("absent.toml"));
}

TEST_F(ScheduleFile, DirectoryIsInvalid) {
  auto specs = load_schedules_file(dir_.string());
  ASSERT_FALSE(specs.ok());
  EXPECT_EQ(specs.error().code, Errc::invalid);
  EXPECT_THAT(specs.error().message, HasSubstr("not a regular file"));
}

}  // namespace
}  // namespace ripen
