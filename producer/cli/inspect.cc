// ripen list, ripen stats: what is in the system, for operators and scripts;
// and ripen enqueue --file: many tasks from JSON lines.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "ripen/duration.h"
#include "ripen/inspect.h"
#include "ripen/producer.h"

namespace ripen::cli {
namespace {

// "1,234,567"
std::string grouped(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return n < 0 ? "-" + out : out;
}

// "2026-11-22T10:00:00.250Z"
std::string utc(int64_t epoch_ms) {
  using namespace std::chrono;
  const sys_time<milliseconds> t{milliseconds(epoch_ms)};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  char out[40];
  std::snprintf(out, sizeof out, "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()), static_cast<int>(hms.subseconds().count()));
  return out;
}

// Rows as columns padded to their widest cell; the last column is not padded.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line.append(width[c] - row[c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  }
}

// ---- list ----------------------------------------------------------------------

struct ListArgs {
  ListQuery query;
  bool json = false;
};

int run_list(const Common& common, const ListArgs& a) {
  const Config config = common.load();
  Producer producer(config);
  auto page = list_tasks(producer.redis(), producer.keys(), a.query);
  if (!page) return fail(page.error());
  if (a.json) {
    nlohmann::ordered_json tasks = nlohmann::ordered_json::array();
    for (const auto& t : page->tasks) tasks.push_back(t.to_json());
    nlohmann::ordered_json doc = {{"tasks", tasks}, {"next_cursor", nullptr}};
    if (page->next_cursor) doc["next_cursor"] = *page->next_cursor;
    std::cout << doc.dump() << "\n";
    return 0;
  }
  if (!page->tasks.empty()) {
    std::vector<std::vector<std::string>> rows = {{"ID", "STATE", "TYPE", "DUE", "ATTEMPTS", "LAST ERROR"}};
    for (const auto& t : page->tasks) {
      rows.push_back({t.id, t.state, t.type, utc(t.due_ms),
                      std::to_string(t.attempts) + "/" + std::to_string(t.max_attempts), t.last_error});
    }
    print_table(rows);
  }
  std::cout.flush();
  if (page->next_cursor) std::cerr << "ripen: more: --cursor " << *page->next_cursor << "\n";
  return 0;
}

// ---- stats ---------------------------------------------------------------------

struct StatsArgs {
  int64_t scan_limit = 1'000'000;
  bool walk = false;
  bool json = false;
};

// "<=250ms", "<=2.5s", "<=5m", ">1h"; "-" without samples.
std::string lateness_text(const std::optional<int64_t>& le) {
  if (!le) return "-";
  if (*le == LatenessHistogram::kInfinity) return ">1h";
  const int64_t ms = *le;
  char out[32];
  if (ms < 1000) {
    std::snprintf(out, sizeof out, "<=%lldms", static_cast<long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(out, sizeof out, "<=%gs", static_cast<double>(ms) / 1000.0);
  } else if (ms < 3'600'000) {
    std::snprintf(out, sizeof out, "<=%gm", static_cast<double>(ms) / 60'000.0);
  } else {
    std::snprintf(out, sizeof out, "<=%gh", static_cast<double>(ms) / 3'600'000.0);
  }
  return out;
}

int run_stats(const Common& common, const StatsArgs& a) {
  const Config config = common.load();
  Producer producer(config);
  StatsOptions options;
  options.scan_limit = a.scan_limit;
  options.walk = a.walk;
  auto stats = collect_stats(config, producer.redis(), producer.keys(), options);
  if (!stats) return fail(stats.error());
  if (a.json) {
    std::cout << stats->to_json().dump() << "\n";
  } else {
    const std::string lower = stats->complete ? "" : ">=";
    auto maybe = [](const std::optional<int64_t>& v) { return v ? grouped(*v) : std::string("-"); };
    std::vector<std::vector<std::string>> rows = {{"QUEUE", "SCHEDULED", "HELD", "IN FLIGHT", "READY", "DLQ", "RUNNING",
                                                   "SUCCEEDED/1h", "FAILED/1h", "DEAD/1h", "LATE p50", "LATE p99"}};
    for (const auto& q : stats->queues) {
      rows.push_back({q.queue + (q.paused ? " (paused)" : ""), lower + grouped(q.scheduled), lower + grouped(q.held),
                      lower + grouped(q.in_flight), maybe(q.ready), maybe(q.dead_letters), lower + grouped(q.running),
                      grouped(q.succeeded), grouped(q.failed), grouped(q.dead), lateness_text(q.lateness.quantile(0.5)),
                      lateness_text(q.lateness.quantile(0.99))});
    }
    print_table(rows);
    std::cout.flush();
  }
  if (!stats->complete) {
    std::cerr << "ripen: the scan stopped after " << grouped(stats->scanned)
              << " tasks (--scan-limit): scheduled, in flight and running are lower bounds\n";
  }
  if (!stats->broker_error.empty()) {
    std::cerr << "ripen: broker figures unknown: " << stats->broker_error << "\n";
  }
  return 0;
}

// ---- enqueue --file ------------------------------------------------------------

// A progress bar on a terminal's stderr, drawn at most ten times a second:
// "\r[#####     ] 52,000/100,000 tasks  48k/s" (no bar when the total is unknown).
class Progress {
 public:
  Progress(bool on, int64_t total) : on_(on), total_(total), start_(std::chrono::steady_clock::now()), last_(start_) {}

  void update(int64_t done) {
    done_ = done;
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100)) return;  // last_ starts as start_: no bar for a blink
    draw(now);
  }
  // Clears the bar so that a message can take the line; the next update redraws.
  void clear() {
    if (on_ && drawn_) std::cerr << "\r\033[K";
    drawn_ = false;
  }
  void finish() {
    if (!on_) return;
    draw(std::chrono::steady_clock::now());
    std::cerr << "\n";
  }

 private:
  void draw(std::chrono::steady_clock::time_point now) {
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? static_cast<double>(done_) / secs : 0;
    char rate_text[32];
    if (rate >= 10'000) {
      std::snprintf(rate_text, sizeof rate_text, "%.0fk/s", rate / 1000);
    } else if (rate >= 1000) {
      std::snprintf(rate_text, sizeof rate_text, "%.1fk/s", rate / 1000);
    } else {
      std::snprintf(rate_text, sizeof rate_text, "%.0f/s", rate);
    }
    std::string line = "\r";
    if (total_ > 0) {
      constexpr int kWidth = 30;
      const int filled = static_cast<int>(std::min<int64_t>(kWidth, done_ * kWidth / total_));
      line += "[" + std::string(static_cast<size_t>(filled), '#') + std::string(kWidth - filled, ' ') + "] " +
              grouped(done_) + "/" + grouped(total_);
    } else {
      line += grouped(done_);
    }
    line += std::string(" tasks  ") + rate_text + "\033[K";
    std::cerr << line << std::flush;
    last_ = now;
    drawn_ = true;
  }

  bool on_;
  int64_t total_;
  int64_t done_ = 0;
  std::chrono::steady_clock::time_point start_, last_;
  bool drawn_ = false;
};

// Lines that hold a task in a regular file, for the progress bar's total; 0 when
// unknown (stdin, a pipe).
int64_t count_tasks(const std::string& file) {
  std::ifstream in(file);
  if (!in) return 0;
  int64_t n = 0;
  std::string text;
  while (std::getline(in, text)) {
    if (text.find_first_not_of(" \t\r") != std::string::npos) ++n;
  }
  return n;
}

}  // namespace

int run_enqueue_file(const Common& common, const std::string& file, bool json) {
  // The chunk handed to one enqueue_batch call (which splits it further, per
  // shard and script call): big enough that a round trip carries many tasks,
  // small enough that ids appear steadily.
  constexpr size_t kChunk = 1000;
  std::ifstream opened;
  std::istream* in = &std::cin;
  if (file != "-") {
    opened.open(file);
    if (!opened) return fail({Errc::invalid, "--file: cannot open '" + file + "'"});
    in = &opened;
  }
  const Config config = common.load();
  Producer producer(config);
  const bool tty = isatty(STDERR_FILENO) == 1;
  Progress progress(tty, tty && file != "-" ? count_tasks(file) : 0);
  int64_t done = 0;
  bool any_invalid = false, any_failed = false;
  // Redis's clock as the file starts: a task due before it was given a time
  // already past (one warning for them all, after the ids).
  const auto started = producer.redis().time_ms();
  int64_t past = 0, oldest_due = 0;
  std::set<std::string> queues;  // of the tasks added, for one consumer check each
  auto r =
      enqueue_lines(producer, *in, static_cast<size_t>(config.max_envelope_bytes), kChunk, [&](const LineOutcome& o) {
        ++done;
        if (o.result) {
          std::optional<KeyHolder> holder;
          if (o.result->created) {
            queues.insert(o.queue);
            if (started && o.result->due_ms < *started) {
              oldest_due = past == 0 ? o.result->due_ms : std::min(oldest_due, o.result->due_ms);
              ++past;
            }
          } else {
            holder = describe_key_holder(producer, config, *o.result);
          }
          if (json) {
            nlohmann::json out{{"line", o.line},
                               {"id", o.result->id.get()},
                               {"created", o.result->created},
                               {"due_ms", o.result->due_ms}};
            if (holder) out["state"] = holder->state.empty() ? nlohmann::json() : nlohmann::json(holder->state);
            std::cout << out.dump() << "\n";
          } else {
            std::cout << o.result->id.get() << "\n";
            if (holder) {
              progress.clear();
              std::cerr << "ripen: line " << o.line << ": " << holder->note << "\n";
            }
          }
        } else {
          const Error& e = o.result.error();
          (e.code == Errc::invalid || e.code == Errc::conflict ? any_invalid : any_failed) = true;
          if (json) std::cout << nlohmann::json{{"line", o.line}, {"error", e.message}}.dump() << "\n";
          progress.clear();
          std::cerr << "ripen: line " << o.line << ": " << e.message << "\n";
        }
        progress.update(done);
      });
  std::cout.flush();
  progress.finish();
  if (past > 0) {
    std::cerr << "ripen: warning: " << grouped(past) << (past == 1 ? " task was" : " tasks were")
              << " given a due time already past (the earliest " << approx_duration_ms(*started - oldest_due)
              << " ago, by Redis's clock): due now\n";
  }
  if (!queues.empty()) warn_if_unconsumed(config, {queues.begin(), queues.end()}, false);
  if (!r) return fail(r.error());
  if (any_failed) return kFailed;
  return any_invalid ? kBadInput : 0;
}

void add_inspect_commands(CLI::App& app, const Common& common, Actions& actions) {
  auto list_args = std::make_shared<ListArgs>();
  auto* list = app.add_subcommand(
      "list",
      "list the tasks of a queue, a page at a time: waiting ones by due time, then published and running, then "
      "ended (kept for record_retention); a task that changes state meanwhile may show twice or not at all");
  list->add_option("--queue", list_args->query.queue, "task queue")->required();
  list->add_option("--state", list_args->query.state, "only tasks in this state")->check(CLI::IsMember(task_states()));
  list->add_option("--limit", list_args->query.limit, "at most this many tasks per page (default 50)")
      ->check(CLI::Range(size_t{1}, kMaxListLimit));
  list->add_option("--cursor", list_args->query.cursor,
                   "continue after the previous page (its last stderr line: \"ripen: more: --cursor C\")");
  list->add_flag("--json", list_args->json,
                 "print one JSON object: {\"tasks\": [records as `ripen status` prints them], \"next_cursor\": "
                 "\"C\" or null}");
  list->footer(
      "Text output: a table of ID, STATE, TYPE, DUE (UTC), ATTEMPTS, LAST ERROR on stdout; when more tasks "
      "follow, a last line on stderr: ripen: more: --cursor C");
  actions.emplace_back(list, [&common, list_args] { return run_list(common, *list_args); });

  auto stats_args = std::make_shared<StatsArgs>();
  auto* stats =
      app.add_subcommand("stats", "per queue: what waits, is in flight, ready, running; the last hour's outcomes");
  stats
      ->add_option("--scan-limit", stats_args->scan_limit,
                   "a walk of the shards examines at most this many tasks for the scheduled / in flight / "
                   "running counts (default 1,000,000); past it they are lower bounds, shown as >=N")
      ->check(CLI::Range(int64_t{1}, int64_t{1'000'000'000}));
  stats->add_flag("--walk", stats_args->walk,
                  "walk every shard's tasks for those counts, even where the shard keeps exact live counts");
  stats->add_flag("--json", stats_args->json, "print one JSON object (see below)");
  stats->footer(
      "Per queue:\n"
      "  SCHEDULED     waiting in the timer wheel, failed ones waiting for a retry included\n"
      "  HELD          ripe, held in the wheel while the queue is paused (ripen pause; the queue shows \"(paused)\")\n"
      "  IN FLIGHT     dispatched: claimed to be published, or in the broker; not yet running\n"
      "  READY, DLQ    messages ready in the broker queue and in its dead-letter queue (passive declare;\n"
      "                - when the queue does not exist or the broker cannot be reached)\n"
      "  RUNNING       a handler runs it now\n"
      "  SUCCEEDED/1h, FAILED/1h (attempts that failed and wait for a retry), DEAD/1h\n"
      "  LATE p50/p99  lateness (handler start - due time, or - creation when that is later) of the\n"
      "                runs that ended in the last hour,\n"
      "                as the upper bound of its histogram bucket (5ms .. 1h)\n"
      "SCHEDULED, IN FLIGHT, RUNNING and HELD come from each shard's live counts, which every move of\n"
      "a task keeps (one read per shard, however many tasks). A shard that held tasks before the\n"
      "counts were kept (an upgrade) has them once it has been empty; until then it is walked: every\n"
      "waiting and running task read, bounded by --scan-limit (then marked >=, lower bounds).\n"
      "The last hour's figures come from per-minute counters kept as runs end (by workers; by\n"
      "dispatchers for unroutable tasks), over the last 60 whole minutes.\n"
      "--json: {\"now_ms\", \"counts_complete\", \"scanned\", \"walked_shards\", \"broker_error\", \"queues\":\n"
      "[{\"queue\", "
      "\"scheduled\", \"in_flight\", \"ready\", \"dead_letters\", \"running\", \"paused\", \"held\", \"last_hour\": "
      "{\"succeeded\",\n"
      "\"failed\", \"dead\", \"lateness_ms\": {\"p50\", \"p99\", \"samples\", \"buckets\"}}}]}; p50/p99 are a\n"
      "bucket's upper bound in ms, \"inf\" past 1h, null without runs.");
  actions.emplace_back(stats, [&common, stats_args] { return run_stats(common, *stats_args); });
}

}  // namespace ripen::cli
