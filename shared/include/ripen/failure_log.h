// Logs a recurring failure (a server that is down) once when the streak starts,
// then at most every 30 s, and once when it recovers: an outage is visible in the
// log without flooding it.
#pragma once

#include <string>

#include "ripen/clock.h"

namespace ripen {

class FailureLog {
 public:
  explicit FailureLog(Clock& clock) : clock_(clock) {}
  void fail(const std::string& what);
  void ok(const std::string& what);

 private:
  Clock& clock_;
  bool failing_ = false;
  Clock::time_point last_{};
};

}  // namespace ripen
