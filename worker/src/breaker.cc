#include "ripen/breaker.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ripen {
namespace {

// `t + ms`, stopping at time_point::max(): a policy may set a huge max_open_ms, and a
// wait that long must mean "open for good", not wrap around into the past.
Clock::time_point add_ms(Clock::time_point t, int64_t ms) {
  const int64_t room = std::chrono::duration_cast<Millis>(Clock::time_point::max() - t).count();
  return ms >= room ? Clock::time_point::max() : t + Millis(ms);
}

// Rates are compared as a division rather than `count >= rate * calls`: a quotient
// of small integers rounds to the same double as the decimal literal it equals
// (3/10 == 0.3), while the product can land just above or below the integer.
bool at_least(int count, int calls, double rate) {
  return static_cast<double>(count) / static_cast<double>(calls) >= rate;
}

}  // namespace

const char* to_string(BreakerState state) {
  switch (state) {
    case BreakerState::closed:
      return "closed";
    case BreakerState::open:
      return "open";
    case BreakerState::half_open:
      return "half_open";
  }
  return "invalid";
}

CircuitBreaker::CircuitBreaker(BreakerPolicy policy, Clock& clock)
    : policy_(policy), clock_(clock), origin_(clock.now()), minimum_calls_(policy.minimum_calls) {
  if (const std::string error = check_breaker_policy(policy_); !error.empty()) throw std::invalid_argument(error);
  if (policy_.window == BreakerPolicy::Window::count) {
    // As resilience4j: a minimum larger than the window could never be reached, and
    // the breaker would silently never trip.
    minimum_calls_ = std::min(policy_.minimum_calls, policy_.window_calls);
    ring_.resize(static_cast<size_t>(policy_.window_calls));
  }
}

bool CircuitBreaker::allow() {
  advance(clock_.now());
  switch (state_) {
    case BreakerState::closed:
      return true;
    case BreakerState::open:
      return false;
    case BreakerState::half_open:
      if (trials_out_ + trial_successes_ >= policy_.half_open_calls) return false;
      ++trials_out_;
      return true;
  }
  return false;
}

void CircuitBreaker::record(bool ok, Millis took) {
  const auto now = clock_.now();
  advance(now);
  const bool failed = !ok;
  const bool slow = policy_.slow_call_ms > 0 && took >= Millis(policy_.slow_call_ms);
  switch (state_) {
    case BreakerState::closed:
      record_closed(failed, slow, now);
      return;
    case BreakerState::open:
      // The call started before the breaker opened; the downstream has already been
      // judged, and counting it would only muddle the next window.
      return;
    case BreakerState::half_open:
      // Permits are not tagged, so a result without an outstanding trial must be a
      // call from before the trip; it says nothing about the downstream's recovery.
      if (trials_out_ == 0) return;
      --trials_out_;
      if (failed || slow) {
        trip(now);
      } else if (++trial_successes_ >= policy_.half_open_calls) {
        close();
      }
      return;
  }
}

void CircuitBreaker::release() {
  advance(clock_.now());
  if (state_ == BreakerState::half_open && trials_out_ > 0) --trials_out_;
}

BreakerState CircuitBreaker::state() {
  advance(clock_.now());
  return state_;
}

Clock::time_point CircuitBreaker::next_allowed() {
  const auto now = clock_.now();
  advance(now);
  switch (state_) {
    case BreakerState::closed:
      return now;
    case BreakerState::open:
      return open_until_;
    case BreakerState::half_open:
      return trials_out_ + trial_successes_ < policy_.half_open_calls ? now : Clock::time_point::max();
  }
  return now;
}

BreakerSnapshot CircuitBreaker::snapshot() {
  advance(clock_.now());
  BreakerSnapshot s;
  s.state = state_;
  s.trips = trips_;
  s.open_for = open_for_;
  switch (state_) {
    case BreakerState::closed:
      s.calls = calls_;
      s.failures = failures_;
      s.slow = slow_;
      break;
    case BreakerState::open:
      s.open_until = open_until_;
      break;
    case BreakerState::half_open:
      s.calls = trial_successes_;
      break;
  }
  return s;
}

void CircuitBreaker::force_open_until(Clock::time_point until) {
  const auto now = clock_.now();
  advance(now);
  if (until <= now) return;
  if (state_ == BreakerState::open && open_until_ >= until) return;
  // trips_ is left alone: the growing wait measures how long *this* worker has seen
  // the downstream fail, and another worker's trip is not evidence of that.
  open(until, std::chrono::ceil<Millis>(until - now));
}

void CircuitBreaker::advance(Clock::time_point now) {
  if (state_ == BreakerState::open && now >= open_until_) {
    state_ = BreakerState::half_open;
    trials_out_ = 0;
    trial_successes_ = 0;
  }
  if (state_ == BreakerState::closed && policy_.window == BreakerPolicy::Window::time) evict(now);
}

void CircuitBreaker::record_closed(bool failed, bool slow, Clock::time_point now) {
  const Outcome outcome{failed, slow};
  if (policy_.window == BreakerPolicy::Window::count) {
    if (calls_ == policy_.window_calls) {
      // Full: next_ is the oldest result, about to be overwritten.
      const Outcome& oldest = ring_[next_];
      --calls_;
      failures_ -= oldest.failed;
      slow_ -= oldest.slow;
    }
    ring_[next_] = outcome;
    next_ = (next_ + 1) % ring_.size();
  } else {
    const int64_t second = std::chrono::duration_cast<std::chrono::seconds>(now - origin_).count();
    if (buckets_.empty() || buckets_.back().second != second) buckets_.push_back(Bucket{second});
    Bucket& b = buckets_.back();
    ++b.calls;
    b.failures += failed;
    b.slow += slow;
  }
  ++calls_;
  failures_ += failed;
  slow_ += slow;

  // Judged only when a result arrives, as resilience4j does: time passing alone can
  // only take results out of the window, which never makes the rates trip.
  if (calls_ < minimum_calls_) return;
  if (at_least(failures_, calls_, policy_.failure_rate) ||
      (policy_.slow_call_ms > 0 && at_least(slow_, calls_, policy_.slow_rate))) {
    trip(now);
  }
}

void CircuitBreaker::evict(Clock::time_point now) {
  while (!buckets_.empty()) {
    const Bucket& b = buckets_.front();
    const auto start = origin_ + std::chrono::seconds(b.second);
    // Compared in whole milliseconds: window_ms converted to nanoseconds could overflow.
    if (std::chrono::duration_cast<Millis>(now - start).count() < policy_.window_ms) break;
    calls_ -= b.calls;
    failures_ -= b.failures;
    slow_ -= b.slow;
    buckets_.pop_front();
  }
}

void CircuitBreaker::clear_window() {
  calls_ = failures_ = slow_ = 0;
  next_ = 0;
  buckets_.clear();
}

void CircuitBreaker::trip(Clock::time_point now) {
  ++trips_;
  const Millis wait = wait_for(trips_);
  open(add_ms(now, wait.count()), wait);
}

void CircuitBreaker::open(Clock::time_point until, Millis wait) {
  state_ = BreakerState::open;
  open_until_ = until;
  open_for_ = wait;
  // A fresh window after the wait: results from before the trip describe a
  // downstream that has had time to recover since.
  clear_window();
  trials_out_ = 0;
  trial_successes_ = 0;
}

void CircuitBreaker::close() {
  state_ = BreakerState::closed;
  trips_ = 0;
  clear_window();
  trials_out_ = 0;
  trial_successes_ = 0;
}

Millis CircuitBreaker::wait_for(int trips) const {
  // In double: open_backoff^(trips - 1) overflows any integer after a few dozen
  // trips; pow saturates to infinity, which the cap then absorbs.
  const double wait = static_cast<double>(policy_.open_ms) * std::pow(policy_.open_backoff, std::max(0, trips - 1));
  if (!(wait < static_cast<double>(policy_.max_open_ms))) return Millis(policy_.max_open_ms);
  return Millis(static_cast<int64_t>(wait));
}

}  // namespace ripen
