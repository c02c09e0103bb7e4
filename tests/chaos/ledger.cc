#include "ledger.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <unordered_map>

namespace ripen::chaos {

namespace {

constexpr size_t kExamplesPerKind = 5;
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

class Examples {
 public:
  explicit Examples(std::vector<std::string>& out) : out_(out) {}
  void add(const std::string& kind, const std::string& text) {
    if (++counts_[kind] <= kExamplesPerKind) out_.push_back(kind + ": " + text);
  }

 private:
  std::vector<std::string>& out_;
  std::unordered_map<std::string, size_t> counts_;
};

std::string describe(const RunRecord& r) {
  std::string s = r.token + " (task " + std::to_string(r.n) + " " + r.id + ", attempt " + std::to_string(r.attempt) +
                  ", sink " + std::to_string(r.start_ms) + "..";
  s += r.end_ms ? std::to_string(*r.end_ms) : std::string("open");
  return s + ")";
}

}  // namespace

Verdict judge(const LedgerInput& in) {
  Verdict v;
  Examples examples(v.examples);
  v.enqueued = static_cast<int>(in.tasks.size());
  v.runs = static_cast<int>(in.runs.size());

  std::unordered_map<int, const PlannedTask*> plan;
  for (const auto& t : in.tasks) plan[t.n] = &t;
  std::unordered_map<std::string, std::vector<int64_t>> kills;  // worker -> kill times, ascending
  for (const auto& k : in.kills) kills[k.worker].push_back(k.at_ms);
  for (auto& [worker, times] : kills) std::sort(times.begin(), times.end());

  // A run with no recorded end ended when its worker was killed, if it was.
  auto end_of = [&](const RunRecord& r) -> int64_t {
    if (r.end_ms) return *r.end_ms;
    auto it = kills.find(r.worker);
    if (it == kills.end()) return kNever;
    auto k = std::lower_bound(it->second.begin(), it->second.end(), r.start_ms);
    return k == it->second.end() ? kNever : *k;
  };
  auto killed_between = [&](const std::string& worker, int64_t from, int64_t to) {
    auto it = kills.find(worker);
    if (it == kills.end()) return false;
    auto k = std::lower_bound(it->second.begin(), it->second.end(), from);
    return k != it->second.end() && *k <= to;
  };

  std::map<int, std::vector<const RunRecord*>> by_task;
  for (const auto& r : in.runs) {
    if (plan.count(r.n) == 0) {
      ++v.strays;
      examples.add("run of a task never enqueued", describe(r));
      continue;
    }
    by_task[r.n].push_back(&r);
  }

  for (const auto& [n, unsorted] : by_task) {
    std::vector<const RunRecord*> runs = unsorted;
    std::sort(runs.begin(), runs.end(),
              [](const RunRecord* a, const RunRecord* b) { return a->start_ms < b->start_ms; });
    const PlannedTask& task = *plan.at(n);

    int64_t first_start = kNever;
    int64_t latest_end = std::numeric_limits<int64_t>::min();
    const RunRecord* latest = nullptr;  // the run whose interval reaches furthest so far
    const RunRecord* last_ok = nullptr;
    for (const RunRecord* r : runs) {
      // Early: the run's own clock reading is the ripen Redis's, the clock due
      // times are on. The due it must not precede is the latest of: the due the
      // producer was given, the due ripen handed this attempt, and a score the
      // task still had in the wheel (a retry waiting there while it runs).
      int64_t now = r->start_ms;
      if (r->ripen_now_ms) {
        now = *r->ripen_now_ms;
      } else {
        ++v.unprobed;
      }
      const int64_t due = std::max({task.due_ms, r->given_due_ms, r->wheel_due_ms.value_or(0)});
      if (now < due) {
        ++v.early;
        examples.add("started before due",
                     describe(*r) + " at ripen " + std::to_string(now) + ", " + std::to_string(due - now) +
                         " ms before its due " + std::to_string(due) +
                         (r->wheel_due_ms && *r->wheel_due_ms == due ? " (its retry was waiting in the wheel)" : ""));
      }
      first_start = std::min(first_start, now);

      if (latest != nullptr && r->start_ms < latest_end) {
        ++v.overlapping;
        examples.add("concurrent runs", describe(*latest) + " and " + describe(*r));
      }
      const int64_t end = end_of(*r);
      if (end == kNever) {
        ++v.unfinished;
        examples.add("run never ended and its worker was not killed", describe(*r));
      }
      if (end > latest_end) {
        latest_end = end;
        latest = r;
      }

      if (r->outcome == RunOutcome::ok) {
        if (last_ok != nullptr) {
          ++v.duplicates;
          // Allowed only when the earlier run's worker was killed after that
          // run's side effect (its end, for a successful run, is the effect)
          // and before this one began: it died before ripen heard of it.
          if (!killed_between(last_ok->worker, *last_ok->end_ms, r->start_ms)) {
            ++v.unexplained;
            examples.add("duplicate execution with no kill to explain it",
                         describe(*last_ok) + " then " + describe(*r));
          }
        }
        last_ok = r;
      }
    }
    ++v.executed;
    if (first_start != kNever) v.max_late_ms = std::max(v.max_late_ms, first_start - task.due_ms);
  }

  for (const auto& t : in.tasks) {
    auto st = in.final_state.find(t.id);
    const std::string state = st == in.final_state.end() ? "(no record)" : st->second;
    auto runs = by_task.find(t.n);
    const bool ran_ok =
        runs != by_task.end() && std::any_of(runs->second.begin(), runs->second.end(),
                                             [](const RunRecord* r) { return r->outcome == RunOutcome::ok; });
    const std::string task = "task " + std::to_string(t.n) + " " + t.id + ": ripen says " + state;
    if (t.permanent) {
      const bool letter = in.dead_letters.count(t.id) != 0;
      if (state == "dead" && letter) {
        ++v.dead_lettered;
      } else {
        ++v.lost;
        examples.add("lost", task + (letter ? "" : ", and no dead letter"));
      }
    } else if (state != "succeeded" || !ran_ok) {
      ++v.lost;
      examples.add("lost", task + ", " + (ran_ok ? "ran" : "never ran to success"));
    }
    auto d = in.dedup_effects.find(t.n);
    const int effects = d == in.dedup_effects.end() ? 0 : d->second;
    const int expected = t.permanent ? 0 : 1;
    if (effects != expected) {
      ++v.dedup_wrong;
      examples.add("deduped effects", "task " + std::to_string(t.n) + " " + t.id + ": " + std::to_string(effects));
    }
  }
  if (in.dedup_effects_unknown > 0) {
    v.dedup_wrong += in.dedup_effects_unknown;
    examples.add("deduped effects", std::to_string(in.dedup_effects_unknown) + " keys naming no planned task");
  }
  return v;
}

std::string table_header() {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-26s %6s %8s %8s %6s %6s %5s %5s %7s %10s %7s %8s %9s", "fault", "faults",
                "enqueued", "executed", "runs", "dead", "lost", "early", "overlap", "dup(unexp)", "dedup!1", "max late",
                "recovery");
  return buf;
}

std::string table_row(const Row& row) {
  const Verdict& v = row.verdict;
  char dup[32], late[32], recovery[32];
  std::snprintf(dup, sizeof dup, "%d(%d)", v.duplicates, v.unexplained);
  std::snprintf(late, sizeof late, "%.1fs", static_cast<double>(v.max_late_ms) / 1000.0);
  if (row.quiescent) {
    std::snprintf(recovery, sizeof recovery, "%.1fs", row.recovery_s);
  } else {
    std::snprintf(recovery, sizeof recovery, ">%.0fs", row.recovery_s);
  }
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-26s %6d %8d %8d %6d %6d %5d %5d %7d %10s %7d %8s %9s", row.fault.c_str(),
                row.faults, v.enqueued, v.executed, v.runs, v.dead_lettered, v.lost, v.early, v.overlapping, dup,
                v.dedup_wrong, late, recovery);
  return buf;
}

}  // namespace ripen::chaos
