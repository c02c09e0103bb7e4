// ripen schedule apply | list | trigger: recurring schedules as configuration.
#include <chrono>
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "ripen/cron.h"
#include "ripen/producer.h"
#include "ripen/schedule_store.h"

namespace ripen::cli {
namespace {

// "2026-03-29 03:00:00 +02:00" for an instant in `zone`.
std::string local_time(int64_t epoch_ms, const TimeZone& zone) {
  using namespace std::chrono;
  const int64_t at_s = epoch_ms / 1000;
  const int64_t offset = zone.span_at(at_s).offset_s;
  const sys_seconds local{seconds(at_s + offset)};
  const auto day = floor<days>(local);
  const year_month_day ymd{day};
  const hh_mm_ss hms{local - day};
  char out[64];
  const int64_t off_min = (offset < 0 ? -offset : offset) / 60;
  std::snprintf(out, sizeof out, "%04d-%02u-%02u %02d:%02d:%02d %c%02d:%02d", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()), offset < 0 ? '-' : '+', static_cast<int>(off_min / 60),
                static_cast<int>(off_min % 60));
  return out;
}

int run_apply(const Common& common, const std::string& file, bool dry_run) {
  auto wanted = load_schedules_file(file);
  if (!wanted) return fail(wanted.error());
  const Config config = common.load();
  // The dispatcher adds its own fields to each tick's task, within this limit.
  for (const auto& spec : *wanted) {
    if (auto st = spec.validate(static_cast<size_t>(config.max_envelope_bytes)); !st) {
      return fail({Errc::invalid, file + ":" + std::to_string(spec.line) + ": " + st.error().message});
    }
  }
  Producer producer(config);
  ScheduleStore store(producer.redis(), producer.keys());
  auto current = store.list();
  if (!current) return fail(current.error());
  const auto changes = diff_schedules(*current, *wanted);
  int added = 0, changed = 0, removed = 0;
  for (const auto& c : changes) {
    switch (c.kind) {
      case ScheduleChange::Kind::add: {
        ++added;
        const auto& s = *std::find_if(wanted->begin(), wanted->end(), [&](const auto& w) { return w.name == c.name; });
        std::cout << "+ " << c.name << "  \"" << s.cron << "\" " << s.timezone << " -> " << s.queue << "/" << s.type
                  << "\n";
        break;
      }
      case ScheduleChange::Kind::change:
        ++changed;
        std::cout << "~ " << c.name << "\n";
        for (const auto& d : c.details) std::cout << "    " << d << "\n";
        break;
      case ScheduleChange::Kind::remove:
        ++removed;
        std::cout << "- " << c.name << "\n";
        break;
    }
  }
  const std::string summary = std::to_string(added) + " to add, " + std::to_string(changed) + " to change, " +
                              std::to_string(removed) + " to remove";
  if (changes.empty()) {
    std::cout << "no changes: Redis already holds these " << wanted->size() << " schedules\n";
    return 0;
  }
  if (dry_run) {
    std::cout << summary << "; dry run, nothing applied\n";
    return 0;
  }
  if (auto st = store.apply(*wanted, changes); !st) return fail(st.error());
  std::cout << "applied: " << added << " added, " << changed << " changed, " << removed << " removed\n";
  return 0;
}

int run_list(const Common& common, bool json) {
  Producer producer(common.load());
  ScheduleStore store(producer.redis(), producer.keys());
  auto all = store.list();
  if (!all) return fail(all.error());
  auto now = producer.redis().time_ms();
  if (!now) return fail(now.error());
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& s : *all) {
    auto cron = CronExpr::parse(s.spec.cron);
    auto zone = TimeZone::named(s.spec.timezone);
    if (!cron || !zone) return fail(!cron ? cron.error() : zone.error());
    // The next tick from now: the leader's cursor (the last tick it accounted
    // for) never runs ahead of Redis's clock, so it cannot move this.
    const auto next = cron->next_after(*now, *zone);
    nlohmann::ordered_json row = {{"name", s.spec.name},      {"cron", s.spec.cron}, {"timezone", s.spec.timezone},
                                  {"queue", s.spec.queue},    {"type", s.spec.type}, {"overlap", s.spec.overlap},
                                  {"misfire", s.spec.misfire}};
    row["next_ms"] = next ? nlohmann::ordered_json(*next) : nlohmann::ordered_json();
    row["next_local"] = next ? local_time(*next, *zone) : "";
    row["last_task"] = s.state && !s.state->last_task.empty() ? s.state->last_task : "";
    out.push_back(std::move(row));
  }
  if (json) {
    std::cout << out.dump() << "\n";
    return 0;
  }
  if (out.empty()) {
    std::cout << "no schedules (ripen schedule apply FILE adds them)\n";
    return 0;
  }
  std::printf("%-24s %-18s %-20s %-28s %-27s %s\n", "NAME", "CRON", "TIMEZONE", "QUEUE/TYPE", "NEXT RUN (LOCAL)",
              "LAST TASK");
  for (const auto& r : out) {
    const std::string target = r["queue"].get<std::string>() + "/" + r["type"].get<std::string>();
    const std::string next = r["next_local"].get<std::string>();
    std::printf("%-24s %-18s %-20s %-28s %-27s %s\n", r["name"].get<std::string>().c_str(),
                r["cron"].get<std::string>().c_str(), r["timezone"].get<std::string>().c_str(), target.c_str(),
                next.empty() ? "never" : next.c_str(), r["last_task"].get<std::string>().c_str());
  }
  return 0;
}

int run_trigger(const Common& common, const std::string& name, bool json) {
  Producer producer(common.load());
  ScheduleStore store(producer.redis(), producer.keys());
  auto s = store.get(name);
  if (!s) return fail(s.error());
  // A run on demand, beside the ticks: due now, no tick to share a key with.
  Envelope task = schedule_task(s->spec, 0);
  task.due_ms.reset();
  task.idempotency_key.clear();
  task.headers = {{"schedule", name}, {"trigger", "manual"}};
  auto r = producer.enqueue(std::move(task));
  if (!r) return fail(r.error());
  // The task is in the wheel and runs whatever follows: a failure to record it
  // is a note, not the command's failure.
  if (auto st = store.record_trigger(name, r->id.get()); !st) {
    std::cerr << "ripen: note: the task was not recorded as the schedule's last task: " << st.error().message << "\n";
  }
  if (json) {
    std::cout << nlohmann::json{{"id", r->id.get()}, {"schedule", name}, {"due_ms", r->due_ms}}.dump() << "\n";
  } else {
    std::cout << r->id.get() << "\n";
  }
  return 0;
}

struct ScheduleArgs {
  std::string file;
  bool dry_run = false;
  std::string name;
  bool json = false;
};

}  // namespace

void add_schedule_commands(CLI::App& app, const Common& common, Actions& actions) {
  auto args = std::make_shared<ScheduleArgs>();
  auto* schedule = app.add_subcommand("schedule", "recurring tasks from a schedules file: apply, list, trigger");
  schedule->require_subcommand(1);

  auto* apply = schedule->add_subcommand(
      "apply", "make Redis hold exactly the schedules of FILE (added, changed, removed); prints the changes first");
  apply->add_option("file", args->file, "schedules file (TOML, [[schedule]] tables)")->required();
  apply->add_flag("--dry-run", args->dry_run, "print the changes and apply nothing");
  actions.emplace_back(apply, [&common, args] { return run_apply(common, args->file, args->dry_run); });

  auto* list = schedule->add_subcommand("list", "the schedules with their next run, in their own time zone");
  list->add_flag("--json", args->json, "one JSON array, next_ms in epoch ms");
  actions.emplace_back(list, [&common, args] { return run_list(common, args->json); });

  auto* trigger = schedule->add_subcommand("trigger", "run a schedule's task now, beside its ticks; prints its id");
  trigger->add_option("name", args->name, "schedule name")->required();
  trigger->add_flag("--json", args->json, "print {id, schedule, due_ms} as JSON");
  actions.emplace_back(trigger, [&common, args] { return run_trigger(common, args->name, args->json); });
}

}  // namespace ripen::cli
