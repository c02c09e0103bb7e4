// Time enters ripen only through a Clock so that tests can run in simulated time.
// Note: due times and leases are never compared against this clock; they are
// compared against Redis TIME inside the Lua scripts (one clock for the fleet).
// The Clock serves local waits, timeouts, backoff and measurement.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace ripen {

using Millis = std::chrono::milliseconds;

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  // Monotonic time, for intervals and deadlines.
  virtual time_point now() const = 0;
  // Wall-clock epoch milliseconds, for stamps shown to people.
  virtual int64_t epoch_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
  int64_t epoch_ms() const override;
  static SystemClock& instance();
};

// A clock that moves only when told to. Thread-safe so a test can advance it while
// the code under test reads it.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_epoch_ms = 1'700'000'000'000) : epoch_ms_(start_epoch_ms) {}
  time_point now() const override {
    std::lock_guard lock(mu_);
    return time_point(offset_);
  }
  int64_t epoch_ms() const override {
    std::lock_guard lock(mu_);
    return epoch_ms_ + std::chrono::duration_cast<Millis>(offset_ - kStart).count();
  }
  void advance(std::chrono::nanoseconds d) {
    std::lock_guard lock(mu_);
    offset_ += d;
  }

 private:
  // now() starts an hour after the steady clock's epoch, so code that subtracts
  // a timeout from now() never goes below time_point{}; epoch_ms() starts at the
  // given epoch.
  static constexpr std::chrono::nanoseconds kStart = std::chrono::hours(1);
  mutable std::mutex mu_;
  int64_t epoch_ms_;
  std::chrono::nanoseconds offset_{kStart};
};

}  // namespace ripen
