#include "ripen/breaker_registry.h"

namespace ripen {

// A task for a half-open downstream whose trial calls are all taken waits this
// long before it is looked at again: its next chance comes with a trial's
// result, not at a time.
constexpr Millis kTrialRecheck{1000};

BreakerRegistry::BreakerRegistry(std::map<std::string, BreakerPolicy> policies, Clock& clock,
                                 std::set<std::string> known, Millis idle_after)
    : policies_(std::move(policies)), clock_(clock), known_(std::move(known)), idle_after_(idle_after) {}

std::string BreakerRegistry::breaker_of(const std::string& downstream) const {
  // A task picks its downstream's name: a breaker per name it makes up would
  // let any enqueuer grow every worker's memory (and the fleet's Redis hash)
  // without bound. Reusing [breakers.<name>] as the list of downstreams keeps
  // one place that says which downstreams exist and how each is guarded.
  if (policies_.count(downstream) != 0 || known_.count(downstream) != 0) return downstream;
  return "default";
}

CircuitBreaker& BreakerRegistry::get(const std::string& downstream) {
  const std::string name = breaker_of(downstream);
  auto it = breakers_.find(name);
  if (it == breakers_.end()) {
    met_new_ = true;
    auto policy = policies_.find(name);
    if (policy == policies_.end()) policy = policies_.find("default");
    auto b = std::make_unique<CircuitBreaker>(policy != policies_.end() ? policy->second : BreakerPolicy{}, clock_);
    it = breakers_.emplace(name, Held{std::move(b), {}}).first;
  }
  it->second.used = clock_.now();
  return *it->second.breaker;
}

void BreakerRegistry::free_idle(Clock::time_point now) {
  // Only closed ones: an open or half-open breaker holds a decision the
  // fleet relies on, whatever its traffic.
  std::erase_if(breakers_, [&](auto& entry) {
    auto& [name, held] = entry;
    if (now - held.used < idle_after_ || held.breaker->state() != BreakerState::closed) return false;
    freed_.push_back(name);
    return true;
  });
}

void BreakerRegistry::meet(const std::string& downstream) {
  std::lock_guard lock(mu_);
  get(downstream);
}

std::optional<Millis> BreakerRegistry::hold_back(const std::string& downstream) {
  std::lock_guard lock(mu_);
  CircuitBreaker& b = get(downstream);
  if (b.allow()) return std::nullopt;
  const auto now = clock_.now();
  const auto until = b.next_allowed();
  if (until <= now || until == Clock::time_point::max()) return kTrialRecheck;
  return std::chrono::ceil<Millis>(until - now);
}

std::optional<BreakerRegistry::Opened> BreakerRegistry::report(const std::string& downstream, bool ok, Millis took) {
  std::lock_guard lock(mu_);
  CircuitBreaker& b = get(downstream);
  const auto before = b.snapshot();  // opening clears the counts: keep them for the caller
  b.record(ok, took);
  if (before.state == BreakerState::open || b.state() != BreakerState::open) return std::nullopt;
  opened_.push_back(breaker_of(downstream));
  return Opened{before.state, before.failures, before.calls, b.snapshot().open_for};
}

std::optional<BreakerRegistry::Sync> BreakerRegistry::plan_sync(std::chrono::milliseconds every) {
  std::lock_guard lock(mu_);
  const auto now = clock_.now();
  if (breakers_.empty() && freed_.empty()) return std::nullopt;
  if (opened_.empty() && !met_new_ && now < next_sync_) return std::nullopt;
  met_new_ = false;
  next_sync_ = now + every;
  free_idle(now);
  Sync out;
  out.freed = std::move(freed_);
  freed_.clear();
  for (const auto& ds : opened_) {
    const auto it = breakers_.find(ds);
    if (it == breakers_.end()) continue;
    const auto snap = it->second.breaker->snapshot();
    if (snap.state != BreakerState::open || snap.open_until <= now) continue;
    out.opened.push_back({ds, snap.open_for, std::chrono::ceil<Millis>(snap.open_until - now)});
  }
  opened_.clear();
  for (const auto& [ds, held] : breakers_) out.all.emplace_back(ds, held.breaker->snapshot());
  return out;
}

void BreakerRegistry::fleet_open(const std::string& downstream, Millis left) {
  if (left <= Millis(0)) return;
  std::lock_guard lock(mu_);
  get(downstream).force_open_until(clock_.now() + left);
}

BreakerSnapshot BreakerRegistry::snapshot(const std::string& downstream) {
  std::lock_guard lock(mu_);
  return get(downstream).snapshot();
}

size_t BreakerRegistry::size() {
  std::lock_guard lock(mu_);
  return breakers_.size();
}

}  // namespace ripen
