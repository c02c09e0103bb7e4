// A worker's circuit breakers, one per downstream, and the fleet rule that
// joins them (README, "Circuit breakers"): apart from the I/O loop so that it
// can be tested on a manual clock. Handler threads ask hold_back() at the
// moment a call would go; the I/O thread reports outcomes and shares state
// with the fleet through Redis (plan_sync() says what to write and read,
// fleet_open() takes what was read). Thread-safe.
//
// Bounded by config, whatever tasks name: a downstream gets a breaker of its
// own only when it is configured ([breakers.<name>]) or known (an http
// prefix's host); every other name shares the "default" breaker, so tasks
// naming a million made-up downstreams cost one breaker, not a million. A
// breaker that is closed and has not been asked, told or held open for
// `idle_after` is freed (its window's results with it) at the next sync.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ripen/breaker.h"
#include "ripen/breaker_policy.h"
#include "ripen/clock.h"

namespace ripen {

class BreakerRegistry {
 public:
  // `policies` by downstream, "default" for the rest (as Config::breakers);
  // `known`: more downstreams that get a breaker of their own, with the
  // default policy.
  BreakerRegistry(std::map<std::string, BreakerPolicy> policies, Clock& clock, std::set<std::string> known = {},
                  Millis idle_after = std::chrono::minutes(10));

  // The breaker that guards `downstream`: its own name when configured or
  // known, else "default". Every method below takes a downstream's name and
  // acts on this breaker; plan_sync() names breakers this way.
  std::string breaker_of(const std::string& downstream) const;

  // The I/O thread meets a task's downstream as its delivery arrives, so that
  // a downstream new to this worker is looked up in the fleet before the
  // task's first call (see plan_sync()).
  void meet(const std::string& downstream);

  // A call to `downstream` is about to go: nothing if it may (a permit, to be
  // reported with report()), else how long until the breaker's next trial.
  std::optional<Millis> hold_back(const std::string& downstream);

  // How a permitted call went. A Permanent failure counts as a success: the
  // downstream answered, the request was wrong. Returns the breaker's state
  // before and after, and the counts before it (opening clears them), when
  // this call opened it.
  struct Opened {
    BreakerState before = BreakerState::closed;
    int failures = 0;  // failures and calls in the window before this one
    int calls = 0;
    Millis open_for{0};
  };
  std::optional<Opened> report(const std::string& downstream, bool ok, Millis took);

  // What to share with the fleet now, or nothing when it is not time
  // (every `every`, or at once after a breaker opened here or a downstream
  // was met for the first time).
  struct Announce {
    std::string downstream;
    Millis open_for{0};
    Millis left{0};  // how long the fleet should hold it open
  };
  struct Sync {
    std::vector<Announce> opened;                              // opened here since the last sync
    std::vector<std::pair<std::string, BreakerSnapshot>> all;  // every breaker, by downstream
    std::vector<std::string> freed;                            // breakers freed as idle since the last sync
  };
  std::optional<Sync> plan_sync(std::chrono::milliseconds every);

  // Another worker holds `downstream`'s breaker open for `left` more: ours is
  // held open until then too.
  void fleet_open(const std::string& downstream, Millis left);

  BreakerSnapshot snapshot(const std::string& downstream);

  // Breakers held now.
  size_t size();

 private:
  struct Held {
    std::unique_ptr<CircuitBreaker> breaker;
    Clock::time_point used;  // last asked, told or held open
  };
  CircuitBreaker& get(const std::string& downstream);  // mu_ held
  void free_idle(Clock::time_point now);               // mu_ held

  std::map<std::string, BreakerPolicy> policies_;
  Clock& clock_;
  std::set<std::string> known_;
  Millis idle_after_;
  std::mutex mu_;
  std::map<std::string, Held> breakers_;  // by breaker_of() name
  std::vector<std::string> freed_;        // freed since the last sync
  std::vector<std::string> opened_;       // opened here since the last sync
  bool met_new_ = false;                  // a breaker was made since the last sync
  Clock::time_point next_sync_{};
};

}  // namespace ripen
