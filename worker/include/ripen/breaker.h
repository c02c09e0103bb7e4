// A circuit breaker for one downstream, in the resilience4j model. *Closed* means
// traffic flows; the breaker watches a sliding window of call results and *opens*
// (stops traffic) when too many of them fail or are slow. After a wait it turns
// *half-open* and lets a few trial calls through: if they all succeed it closes,
// otherwise it opens again for a longer wait.
//
// Time comes only from the injected Clock. There is no background timer: time-based
// transitions (open -> half-open, calls leaving a time window) are made lazily when
// allow(), record(), state(), next_allowed(), snapshot() or force_open_until() is
// called.
//
// Rules:
// - closed -> open when, after a recorded result, the window holds >= minimum_calls
//   calls and failures/calls >= failure_rate, or (slow_call_ms > 0 and)
//   slow/calls >= slow_rate. A failure that is also slow counts in both. For a count
//   window the minimum is at most window_calls (as resilience4j does), so a full
//   window can always trip.
// - Opening clears the window. The wait before half-open is
//   min(max_open_ms, open_ms * open_backoff^(trips - 1)), trips being the number of
//   consecutive trips since the last close (this one included).
// - open -> half-open when now >= open_until. While open allow() is false and
//   record()/release() are ignored (their calls started before the breaker opened).
// - Half-open lets at most half_open_calls trials be in flight or recorded. Any failed
//   trial (or slow one, when the slow rule is on) reopens at once with trips + 1; when
//   half_open_calls trials have succeeded it closes: trips = 0, window cleared.
// - Permits are not tagged. In half-open, record() and release() each consume one
//   outstanding trial; when none is outstanding they are ignored. So a call that
//   started under closed and ends in half-open counts as a trial only if it "takes"
//   a trial's place; this is a deliberate simplification.
// - Time window: results are grouped by the second (counted from the breaker's
//   creation) they are recorded in; a second's results leave the window once
//   window_ms have passed since that second began. A result is thus counted for
//   between window_ms - 999 and window_ms ms, as with resilience4j's epoch-second
//   buckets.
//
// Single-threaded: the worker's I/O thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "ripen/breaker_policy.h"
#include "ripen/clock.h"

namespace ripen {

enum class BreakerState { closed, open, half_open };
// "closed", "open" or "half_open".
const char* to_string(BreakerState state);

// What the worker publishes for the fleet and the console.
struct BreakerSnapshot {
  BreakerState state = BreakerState::closed;
  // Closed: the results in the current window. Half-open: the trials recorded so far
  // (all successes, since a failed trial reopens). Open: 0.
  int calls = 0, failures = 0, slow = 0;
  int trips = 0;                   // consecutive trips since the last close
  Millis open_for{0};              // the current/last open wait
  Clock::time_point open_until{};  // when open: when half-open begins; otherwise time_point{}
};

class CircuitBreaker {
 public:
  // Throws std::invalid_argument with check_breaker_policy's message on a bad policy.
  CircuitBreaker(BreakerPolicy policy, Clock& clock);

  // Whether a call may go now. Closed: yes. Open: no (until open_until, then it becomes
  // half-open). Half-open: yes while fewer than half_open_calls trials are in flight or
  // recorded, then no. A `true` is a permit: report its end with record() or give it
  // back with release().
  bool allow();
  // The end of a permitted call: ok=false is a failure; `took` is its duration
  // (slow when took >= slow_call_ms and slow_call_ms > 0).
  void record(bool ok, Millis took);
  // A permitted call that did not happen (given back): frees a half-open trial slot.
  // Nothing to do in closed or open.
  void release();

  BreakerState state();
  // When a call could next be allowed: now if closed or half-open with a free slot;
  // open_until if open; time_point::max() if half-open with every slot taken (the next
  // chance comes with a trial's record() or release(), not with time).
  Clock::time_point next_allowed();
  BreakerSnapshot snapshot();

  // Opens it from outside (another worker of the fleet saw it trip) until `until`,
  // unless it is already open until then or later, or `until` is not in the future.
  // Clears the window like a local trip, but does not count as one: trips and the
  // next local wait are unchanged. After `until` it goes half-open as usual.
  void force_open_until(Clock::time_point until);

 private:
  struct Bucket {
    int64_t second = 0;  // seconds since origin_
    int calls = 0, failures = 0, slow = 0;
  };
  struct Outcome {
    bool failed = false, slow = false;
  };

  void advance(Clock::time_point now);
  void record_closed(bool failed, bool slow, Clock::time_point now);
  void evict(Clock::time_point now);
  void clear_window();
  void trip(Clock::time_point now);
  void open(Clock::time_point until, Millis wait);
  void close();
  Millis wait_for(int trips) const;

  BreakerPolicy policy_;
  Clock& clock_;
  Clock::time_point origin_;
  int minimum_calls_;  // policy.minimum_calls, capped at window_calls for a count window

  BreakerState state_ = BreakerState::closed;
  // Window totals (closed).
  int calls_ = 0, failures_ = 0, slow_ = 0;
  std::vector<Outcome> ring_;  // count window: window_calls slots, next_ is the oldest once full
  size_t next_ = 0;
  std::deque<Bucket> buckets_;  // time window: oldest first
  // Half-open.
  int trials_out_ = 0;
  int trial_successes_ = 0;
  // Open.
  int trips_ = 0;
  Millis open_for_{0};
  Clock::time_point open_until_{};
};

}  // namespace ripen
