// Recurring schedules with real servers: `ripen schedule apply` makes Redis
// match the file and is idempotent; two dispatchers (one of them stopped
// mid-way) turn each tick into exactly one task; ticks missed during downtime
// follow the misfire policy; overlap = "skip" skips a tick while the previous
// run has not ended; `ripen schedule trigger` runs one now.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <set>

#include "fleet.h"
#include "ripen/cron.h"
#include "ripen/schedule_store.h"

namespace ripen::testing {
namespace {

using namespace std::chrono_literals;

class Schedules : public FleetTest {
 protected:
  void SetUp() override {
    FleetTest::SetUp();
    store_ = std::make_unique<ScheduleStore>(producer().redis(), producer().keys());
  }

  CommandResult cli(const std::vector<std::string>& args) {
    return run_command(binary("producer/ripen"), args, child_env(config_));
  }

  std::string write_file(const std::string& text) {
    std::string path = ::testing::TempDir() + "/" + config_.ns + "-schedules.toml";
    std::ofstream(path) << text;
    return path;
  }

  // The stored specs, as Redis holds them.
  std::map<std::string, std::string> stored() {
    auto r = producer().redis().command({"HGETALL", producer().keys().schedule_specs()});
    std::map<std::string, std::string> out;
    for (size_t i = 0; r && i + 1 < r->size(); i += 2) out[r->at(i).str()] = r->at(i + 1).str();
    return out;
  }

  ScheduleSpec spec(const std::string& name, const std::string& cron) {
    ScheduleSpec s;
    s.name = name;
    s.cron = cron;
    s.queue = "default";
    s.type = "tick";
    return s;
  }

  void store(const ScheduleSpec& s) {
    auto current = store_->list();
    ASSERT_TRUE(current.ok());
    std::vector<ScheduleSpec> wanted;
    for (const auto& c : *current) wanted.push_back(c.spec);
    wanted.push_back(s);
    ASSERT_TRUE(store_->apply(wanted, diff_schedules(*current, wanted)).ok());
  }

  std::unique_ptr<ScheduleStore> store_;
};

constexpr const char* kFile = R"(
[[schedule]]
name = "nightly-report"
cron = "30 2 * * *"
timezone = "Europe/Berlin"
queue = "reports"
type = "report.build"
payload = { kind = "daily" }

[[schedule]]
name = "sync"
cron = "*/5 * * * *"
queue = "default"
type = "sync"
)";

TEST_F(Schedules, ApplyMakesRedisMatchTheFileAndIsIdempotent) {
  const std::string path = write_file(kFile);
  auto dry = cli({"schedule", "apply", path, "--dry-run"});
  ASSERT_EQ(dry.code, 0) << dry.err;
  EXPECT_NE(dry.out.find("+ nightly-report"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("nothing applied"), std::string::npos) << dry.out;
  EXPECT_TRUE(stored().empty()) << "a dry run writes nothing";

  auto first = cli({"schedule", "apply", path});
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_NE(first.out.find("applied: 2 added, 0 changed, 0 removed"), std::string::npos) << first.out;
  const auto after_first = stored();
  ASSERT_EQ(after_first.size(), 2u);

  auto again = cli({"schedule", "apply", path});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("no changes"), std::string::npos) << again.out;
  EXPECT_EQ(stored(), after_first) << "applying the same file again changes nothing";

  // One changed, one removed, one added: the diff says which and how.
  std::string edited = kFile;
  edited.replace(edited.find("30 2 * * *"), 10, "45 2 * * *");
  edited.replace(edited.find("name = \"sync\""), 13, "name = \"sync2\"");
  const std::string path2 = write_file(edited);
  auto change = cli({"schedule", "apply", path2});
  ASSERT_EQ(change.code, 0) << change.err;
  EXPECT_NE(change.out.find("~ nightly-report\n    cron: \"30 2 * * *\" -> \"45 2 * * *\""), std::string::npos)
      << change.out;
  EXPECT_NE(change.out.find("- sync\n"), std::string::npos) << change.out;
  EXPECT_NE(change.out.find("+ sync2"), std::string::npos) << change.out;
  const auto now = stored();
  EXPECT_EQ(now.size(), 2u);
  EXPECT_TRUE(now.count("sync2"));
  EXPECT_FALSE(now.count("sync"));

  auto list = cli({"schedule", "list", "--json"});
  ASSERT_EQ(list.code, 0) << list.err;
  const auto rows = nlohmann::json::parse(list.out);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["name"], "nightly-report");
  EXPECT_NE(rows[0]["next_local"].get<std::string>().find("02:45:00 +01:00"), std::string::npos) << rows.dump();
}

TEST_F(Schedules, ABadFileIsRefusedWithItsLineAndNothingIsApplied) {
  ASSERT_EQ(cli({"schedule", "apply", write_file(kFile)}).code, 0);
  const auto before = stored();
  struct Case {
    std::string text;
    std::string error;
  };
  const std::vector<Case> cases = {
      {std::string(kFile) + "\n[[schedule]]\nname = \"sync\"\ncron = \"* * * * *\"\nqueue = \"q\"\ntype = \"t\"\n",
       "schedule 'sync': name: used twice: also by the schedule at line 10"},
      {"[[schedule]]\nname = \"a\"\ncron = \"61 * * * *\"\nqueue = \"q\"\ntype = \"t\"\n",
       ":3: schedule 'a': cron: '61 * * * *': minute: 61 is out of range 0-59"},
      {"[[schedule]]\nname = \"a\"\ncron = \"* * * * *\"\ntimezone = \"Mars/Base\"\nqueue = \"q\"\ntype = \"t\"\n",
       ":4: schedule 'a': timezone: unknown time zone 'Mars/Base'"},
      {"[[schedule]]\nname = \"a\"\ncron = \"* * * * *\"\nqueue = \"q\"\ntype = \"t\"\ntimeout = \"soon\"\n",
       ":6: schedule 'a': timeout:"},
  };
  for (const auto& c : cases) {
    auto r = cli({"schedule", "apply", write_file(c.text)});
    EXPECT_EQ(r.code, 2) << c.text;
    EXPECT_NE(r.err.find(c.error), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_EQ(stored(), before) << "nothing applied";
  }
}

// The tick of each run the worker saw, from the task's headers.
struct Ticks {
  std::mutex mu;
  std::vector<int64_t> seen;
  void add(const TaskContext& ctx) {
    std::lock_guard lock(mu);
    seen.push_back(std::stoll(ctx.task.headers.at("tick_ms")));
  }
  std::vector<int64_t> get() {
    std::lock_guard lock(mu);
    return seen;
  }
};

TEST_F(Schedules, TwoDispatchersTurnEachTickIntoOneTask) {
  store(spec("every-second", "* * * * * *"));
  auto& ticks = keep<Ticks>();
  start_worker({{"tick", [&](const TaskContext& ctx) { ticks.add(ctx); }}});
  Dispatcher& a = start_dispatcher("a");
  Dispatcher& b = start_dispatcher("b");
  ASSERT_TRUE(wait_until([&] { return ticks.get().size() >= 4; }, 30s));
  // The leader goes away mid-way; the other takes over the schedules.
  const bool a_led = a.stats().schedules.leading;
  stop(a_led ? a : b);
  ASSERT_TRUE(wait_until([&] { return ticks.get().size() >= 9; }, 30s));
  // A leader that goes over ticks again (a stale one, or a lost state write)
  // finds their tasks there: the tick's key keeps each single.
  const auto& survivor = a_led ? b : a;
  auto state = store_->get("every-second");
  ASSERT_TRUE(state.ok() && state->state);
  ScheduleState rewound = *state->state;
  rewound.cursor_ms -= 3000;
  ASSERT_TRUE(store_->save_state("every-second", rewound).ok());
  ASSERT_TRUE(wait_until([&] { return survivor.stats().schedules.duplicates >= 3; }, 10s));
  stop(a);
  stop(b);
  auto seen = ticks.get();
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "a tick ran twice";
  EXPECT_EQ(seen.back() - seen.front(), static_cast<int64_t>(seen.size() - 1) * 1000)
      << "every second from the first to the last, none skipped";
  EXPECT_TRUE(survivor.stats().schedules.enqueued > 0) << "the survivor took over";
}

TEST_F(Schedules, TicksMissedWhileNothingRanFollowTheMisfirePolicy) {
  auto now = producer().redis().time_ms();
  ASSERT_TRUE(now.ok());
  // Yearly schedules that last ran five years ago, as if every dispatcher had
  // been down since: each New Year since is a missed tick.
  const int64_t last = *now - 5 * 365 * 86'400'000LL;
  const CronExpr yearly = *CronExpr::parse("0 0 1 1 *");
  std::vector<int64_t> missed;
  for (auto t = yearly.next_after(last, TimeZone::utc()); t && *t < *now - 60'000;
       t = yearly.next_after(*t, TimeZone::utc())) {
    missed.push_back(*t);
  }
  ASSERT_GE(missed.size(), 4u);
  const std::map<std::string, std::vector<int64_t>> runs = {
      {"skip", {}},
      {"run_once", {missed.back()}},
      {"run_all", {missed.end() - 3, missed.end()}},
  };
  for (const auto& [policy, ticks] : runs) {
    ScheduleSpec s = spec("m-" + policy, "0 0 1 1 *");
    s.misfire = policy;
    s.misfire_limit = 3;
    store(s);
    ASSERT_TRUE(store_->save_state(s.name, {schedule_version(s), last, ""}).ok());
  }
  Dispatcher& dispatcher = start_dispatcher();
  ASSERT_TRUE(wait_until(
      [&] {
        auto all = store_->list();
        return all && std::all_of(all->begin(), all->end(),
                                  [&](const auto& s) { return s.state && s.state->cursor_ms > last; });
      },
      20s));
  for (const auto& [policy, ticks] : runs) {
    SCOPED_TRACE(policy);
    // Which ticks have a task: by the tick's idempotency key.
    std::vector<int64_t> ran;
    for (int64_t tick : missed) {
      const std::string key = "schedule:m-" + policy + ":" + std::to_string(tick);
      auto held = producer().redis().command({"EXISTS", producer().keys().idempotency("default", "tick", key)});
      ASSERT_TRUE(held.ok());
      if (held->integer() == 1) ran.push_back(tick);
    }
    EXPECT_EQ(ran, ticks);
  }
  const auto stats = dispatcher.stats().schedules;
  const uint64_t n = missed.size();
  EXPECT_EQ(stats.enqueued, 4u);
  EXPECT_EQ(stats.missed, n + (n - 1) + (n - 3));
}

TEST_F(Schedules, OverlapSkipSkipsTicksWhileThePreviousRunHasNotEnded) {
  ScheduleSpec s = spec("exclusive", "* * * * * *");
  s.overlap = "skip";
  store(s);
  // No worker: the first tick's task is published and never ends.
  Dispatcher& dispatcher = start_dispatcher();
  ASSERT_TRUE(wait_until([&] { return dispatcher.stats().schedules.overlapped >= 3; }, 30s));
  EXPECT_EQ(dispatcher.stats().schedules.enqueued, 1u);
}

TEST_F(Schedules, TriggerRunsTheScheduleNow) {
  ScheduleSpec s = spec("nightly", "0 3 * * *");
  s.payload = {{"kind", "daily"}};
  store(s);
  auto r = cli({"schedule", "trigger", "nightly"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto& runs = keep<std::atomic<int>>(0);
  auto& payload = keep<std::string>();
  auto& trigger = keep<std::string>();
  start_worker({{"tick", [&](const TaskContext& ctx) {
                   payload = ctx.task.payload.dump();
                   trigger = ctx.task.headers.at("trigger");
                   ++runs;
                 }}});
  start_dispatcher();
  ASSERT_TRUE(reaches(trim(r.out), "succeeded", 30s));
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(payload, R"({"kind":"daily"})");
  EXPECT_EQ(trigger, "manual");

  auto missing = cli({"schedule", "trigger", "nope"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.err, "ripen: no schedule named 'nope'\n");
}

// `schedule list` shows the task a trigger made as the schedule's last task,
// whether the leader has looked at the schedule yet or not, and the leader goes
// on from the state the trigger left (its version and cursor kept).
TEST_F(Schedules, TriggerRecordsItsTaskAsTheLastTask) {
  store(spec("nightly", "0 3 * * *"));
  auto first = cli({"schedule", "trigger", "nightly"});
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_EQ(first.err, "");
  auto listed = cli({"schedule", "list", "--json"});
  ASSERT_EQ(listed.code, 0) << listed.err;
  auto rows = nlohmann::json::parse(listed.out, nullptr, false);
  ASSERT_TRUE(rows.is_array() && rows.size() == 1) << listed.out;
  EXPECT_EQ(rows[0]["last_task"], trim(first.out));

  // With a leader: it records the spec's version and cursor, and a trigger
  // keeps them.
  Dispatcher& dispatcher = start_dispatcher();
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = store_->get("nightly");
        return s.ok() && s->state && !s->state->version.empty();
      },
      15s));
  const ScheduleState before = *store_->get("nightly")->state;
  EXPECT_EQ(before.last_task, trim(first.out)) << "the leader kept the triggered task";
  auto second = cli({"schedule", "trigger", "nightly"});
  ASSERT_EQ(second.code, 0) << second.err;
  const auto after = store_->get("nightly");
  ASSERT_TRUE(after.ok() && after->state);
  EXPECT_EQ(after->state->last_task, trim(second.out));
  EXPECT_EQ(after->state->version, before.version);
  EXPECT_EQ(after->state->cursor_ms, before.cursor_ms);
  auto table = cli({"schedule", "list"});
  ASSERT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find(trim(second.out)), std::string::npos) << table.out;
  EXPECT_EQ(dispatcher.stats().schedules.enqueued, 0u);
}

}  // namespace
}  // namespace ripen::testing
