#include "ripen/scheduler.h"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "ripen/failure_log.h"
#include "ripen/keys.h"
#include "ripen/producer.h"
#include "ripen/redis.h"
#include "ripen/schedule_store.h"
#include "ripen/scripts.h"
#include "ripen/task_record.h"

namespace ripen {

TickPlan plan_ticks(const CronExpr& cron, const TimeZone& zone, const std::string& misfire, int misfire_limit,
                    int64_t cursor_ms, int64_t now_ms, int64_t grace_ms, int64_t max_ticks) {
  TickPlan plan;
  // Only the latest misfire_limit missed ticks can run, so only they are kept.
  const size_t keep = misfire == "run_all" ? static_cast<size_t>(std::max(misfire_limit, 1)) : 1;
  std::deque<int64_t> missed;
  int64_t missed_count = 0;
  int64_t t = cursor_ms;
  for (int64_t looked = 0; looked < max_ticks; ++looked) {
    const auto next = cron.next_after(t, zone);
    if (!next || *next > now_ms) break;
    t = *next;
    if (t < now_ms - grace_ms) {
      ++missed_count;
      missed.push_back(t);
      if (missed.size() > keep) missed.pop_front();
    } else {
      plan.runs.push_back({t, t});
    }
  }
  plan.cursor_ms = t;
  std::vector<TickPlan::Run> catch_up;
  if (misfire == "run_once" && !missed.empty()) {
    catch_up.push_back({missed.back(), now_ms});
  } else if (misfire == "run_all") {
    for (int64_t tick : missed) catch_up.push_back({tick, now_ms});
  }
  plan.missed = missed_count - static_cast<int64_t>(catch_up.size());
  plan.runs.insert(plan.runs.begin(), catch_up.begin(), catch_up.end());
  plan.next_ms = cron.next_after(plan.cursor_ms, zone);
  return plan;
}

namespace {

bool ended(const std::string& state) {
  return state == "succeeded" || state == "dead" || state == "cancelled" || state == "discarded";
}

// A stored spec, parsed once per version.
struct Compiled {
  std::string version;
  CronExpr cron;
  TimeZone zone;
};

}  // namespace

class Scheduler::Impl {
 public:
  Impl(const Config& config, std::string owner, Clock& clock)
      : config_(config),
        owner_(std::move(owner)),
        clock_(clock),
        keys_(config.ns, config.shards),
        redis_(redis_url_of(config), std::chrono::seconds(5), clock),
        producer_(config, clock),
        store_(redis_, keys_) {}

  // Async-signal-safe (the dispatcher's stop() calls it from a signal handler):
  // run() sleeps in short slices and looks at the flag.
  void stop() { stopping_.store(true); }

  SchedulerStats stats() const {
    std::lock_guard lock(stats_mu_);
    return stats_;
  }

  void run() {
    while (!stopping_.load()) {
      if (clock_.now() >= next_lease_) lead();
      auto wait = std::chrono::milliseconds(1000);
      if (lease_) wait = std::min(wait, tick());
      const auto to_lease = std::chrono::ceil<std::chrono::milliseconds>(next_lease_ - clock_.now());
      wait = std::clamp(std::min(wait, to_lease), std::chrono::milliseconds(0), std::chrono::milliseconds(1000));
      const auto until = clock_.now() + wait;
      while (!stopping_.load() && clock_.now() < until) {
        std::this_thread::sleep_for(
            std::min<std::chrono::nanoseconds>(until - clock_.now(), std::chrono::milliseconds(20)));
      }
    }
    if (lease_) (void)scripts::release_held(redis_, keys_.schedule_leader(), *lease_);
  }

 private:
  // Takes or renews the lease on the schedules.
  void lead() {
    next_lease_ = clock_.now() + std::chrono::milliseconds(config_.dispatcher.shard_lease_ms / 3);
    auto r = scripts::take_lease(redis_, keys_.schedule_leader(), keys_.schedule_fence(), owner_,
                                 config_.dispatcher.shard_lease_ms);
    if (!r) {
      redis_log_.fail("schedules: " + r.error().message);
      return;  // the lease runs out by itself if this lasts; every write of ours is fenced by it
    }
    redis_log_.ok("schedules redis");
    const bool leading = r->has_value();
    if (leading && !lease_) spdlog::info("{}: leading the schedules (lease {})", owner_, **r);
    if (!leading && lease_) spdlog::warn("{}: no longer leading the schedules", owner_);
    lease_ = *r;
    std::lock_guard lock(stats_mu_);
    stats_.leading = leading;
  }

  // Turns every schedule's ticks up to now into tasks; returns how long until
  // the next tick of any of them.
  std::chrono::milliseconds tick() {
    constexpr auto kIdle = std::chrono::milliseconds(1000);
    auto now = redis_.time_ms();
    if (!now) return kIdle;
    auto all = store_.list();
    if (!all) {
      redis_log_.fail("schedules: " + all.error().message);
      return kIdle;
    }
    int64_t soonest = *now + kIdle.count();
    std::map<std::string, Compiled> live;
    for (const auto& s : *all) {
      const std::string version = schedule_version(s.spec);
      auto it = compiled_.find(s.spec.name);
      if (it == compiled_.end() || it->second.version != version) {
        // A stored spec has been validated by `schedule apply`, so these parse.
        auto cron = CronExpr::parse(s.spec.cron);
        auto zone = TimeZone::named(s.spec.timezone);
        if (!cron || !zone) {
          spdlog::error("schedule '{}': {}", s.spec.name, !cron ? cron.error().message : zone.error().message);
          continue;
        }
        it = compiled_.insert_or_assign(s.spec.name, Compiled{version, std::move(*cron), std::move(*zone)}).first;
      }
      live.insert_or_assign(s.spec.name, it->second);
      if (auto next = advance(s, it->second, *now)) soonest = std::min(soonest, *next);
    }
    compiled_ = std::move(live);
    return std::chrono::milliseconds(std::clamp<int64_t>(soonest - *now, 0, kIdle.count()));
  }

  // One schedule: enqueues its due ticks and records how far it got. Returns its next tick.
  // Every write of a schedule's state is fenced (scripts::save_schedule_state):
  // by the leader lease, and by the state this leader read. A leader that
  // stalled past its lease (a long pause, SIGSTOP) and woke up finds itself
  // fenced before it enqueues a tick, rather than moving the cursor back and
  // firing again ticks whose idempotency keys its successor's runs have freed.
  std::optional<int64_t> advance(const StoredSchedule& s, const Compiled& c, int64_t now) {
    ScheduleState state;
    if (!s.state || s.state->version != c.version) {
      // New or changed: it starts with the next tick from now.
      state = {c.version, now, s.state ? s.state->last_task : ""};
      (void)fenced_save(s, state.encode());
      return c.cron.next_after(now, c.zone);
    }
    state = *s.state;
    TickPlan plan = plan_ticks(c.cron, c.zone, s.spec.misfire, s.spec.misfire_limit, state.cursor_ms, now);
    if (plan.cursor_ms == state.cursor_ms) return plan.next_ms;
    // Still the leader, and the state still the one planned from: only then
    // are its ticks enqueued.
    if (!fenced_save(s, s.raw_state)) return std::nullopt;
    SchedulerStats counts;
    counts.missed = static_cast<uint64_t>(plan.missed);
    if (plan.missed > 0) {
      spdlog::warn("schedule '{}': {} ticks missed while no dispatcher ran the schedules (misfire = {})", s.spec.name,
                   plan.missed, s.spec.misfire);
    }
    for (const auto& run : plan.runs) {
      if (s.spec.overlap == "skip" && !state.last_task.empty() && !previous_ended(state.last_task)) {
        ++counts.overlapped;
        spdlog::info("schedule '{}': tick {} skipped: its previous run {} has not ended (overlap = skip)", s.spec.name,
                     run.tick_ms, state.last_task);
        continue;
      }
      Envelope task = schedule_task(s.spec, run.tick_ms);
      task.due_ms = run.due_ms;
      auto r = producer_.enqueue(std::move(task));
      if (!r) {
        // This tick and the rest are looked at again next time.
        spdlog::error("schedule '{}': enqueueing tick {}: {}", s.spec.name, run.tick_ms, r.error().message);
        plan.cursor_ms = run.tick_ms - 1;
        break;
      }
      ++(r->created ? counts.enqueued : counts.duplicates);
      state.last_task = r->id.get();
    }
    state.cursor_ms = plan.cursor_ms;
    (void)fenced_save(s, state.encode());  // if lost, the ticks' keys keep a second try single
    std::lock_guard lock(stats_mu_);
    stats_.enqueued += counts.enqueued;
    stats_.duplicates += counts.duplicates;
    stats_.overlapped += counts.overlapped;
    stats_.missed += counts.missed;
    return plan.next_ms;
  }

  // Writes a schedule's state if this dispatcher still leads and nobody changed
  // the state since it read it; false otherwise (and gives up leading when fenced).
  bool fenced_save(const StoredSchedule& s, const std::string& state) {
    if (!lease_) return false;
    auto v = store_.save_state_fenced(s.spec.name, *lease_, s.raw_state, state);
    if (!v) {
      redis_log_.fail("schedules: " + v.error().message);
      return false;
    }
    if (*v == scripts::ScheduleSaveVerdict::fenced) {
      spdlog::warn("{}: no longer leading the schedules (another dispatcher holds the lease); schedule '{}' left to it",
                   owner_, s.spec.name);
      lease_.reset();
      std::lock_guard lock(stats_mu_);
      stats_.leading = false;
      ++stats_.fenced;
      return false;
    }
    if (*v == scripts::ScheduleSaveVerdict::moved) {
      spdlog::info(
          "schedule '{}': its state changed since it was read (applied again, or another leader); reading "
          "it again",
          s.spec.name);
      return false;
    }
    return true;
  }

  bool previous_ended(const std::string& id) {
    auto rec = read_task_record(redis_, keys_, id);
    if (!rec) return rec.error().code == Errc::not_found;  // its record expired: long over
    return ended(rec->state);
  }

  Config config_;
  std::string owner_;
  Clock& clock_;
  Keys keys_;
  Redis redis_;
  Producer producer_;
  ScheduleStore store_;
  std::optional<std::string> lease_;  // "owner|token" while leading
  Clock::time_point next_lease_{};
  std::map<std::string, Compiled> compiled_;  // by schedule name

  std::atomic<bool> stopping_{false};

  mutable std::mutex stats_mu_;
  SchedulerStats stats_;
  FailureLog redis_log_{clock_};
};

Scheduler::Scheduler(const Config& config, std::string owner, Clock& clock)
    : impl_(std::make_unique<Impl>(config, std::move(owner), clock)) {}
Scheduler::~Scheduler() = default;
void Scheduler::run() { impl_->run(); }
void Scheduler::stop() { impl_->stop(); }
SchedulerStats Scheduler::stats() const { return impl_->stats(); }

}  // namespace ripen
