#include "ripen/breaker_registry.h"

namespace ripen {

// A task for a half-open downstream whose trial calls are all taken waits this
// long before it is looked at again: its next chance comes with a trial's
// result, not at a time.
constexpr Millis kTrialRecheck{1000};

BreakerRegistry::BreakerRegistry(std::map<std::string, BreakerPolicy> policies, Clock& clock)
    : policies_(std::move(policies)), clock_(clock) {}

CircuitBreaker& BreakerRegistry::get(const std::string& downstream) {
  auto it = breakers_.find(downstream);
  if (it != breakers_.end()) return *it->second;
  met_new_ = true;
  auto policy = policies_.find(downstream);
  if (policy == policies_.end()) policy = policies_.find("default");
  auto b = std::make_unique<CircuitBreaker>(policy != policies_.end() ? policy->second : BreakerPolicy{}, clock_);
  return *breakers_.emplace(downstream, std::move(b)).first->second;
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
  opened_.push_back(downstream);
  return Opened{before.state, before.failures, before.calls, b.snapshot().open_for};
}

std::optional<BreakerRegistry::Sync> BreakerRegistry::plan_sync(std::chrono::milliseconds every) {
  std::lock_guard lock(mu_);
  const auto now = clock_.now();
  if (breakers_.empty()) return std::nullopt;
  if (opened_.empty() && !met_new_ && now < next_sync_) return std::nullopt;
  met_new_ = false;
  next_sync_ = now + every;
  Sync out;
  for (const auto& ds : opened_) {
    const auto snap = get(ds).snapshot();
    if (snap.state != BreakerState::open || snap.open_until <= now) continue;
    out.opened.push_back({ds, snap.open_for, std::chrono::ceil<Millis>(snap.open_until - now)});
  }
  opened_.clear();
  for (const auto& [ds, b] : breakers_) out.all.emplace_back(ds, b->snapshot());
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

}  // namespace ripen
