#include <chrono>

#include "ripen/clock.h"
#include "ripen/result.h"

namespace ripen {

const char* to_string(Errc code) noexcept {
  switch (code) {
    case Errc::invalid:
      return "invalid";
    case Errc::forbidden:
      return "forbidden";
    case Errc::not_found:
      return "not found";
    case Errc::conflict:
      return "conflict";
    case Errc::unavailable:
      return "unavailable";
    case Errc::server:
      return "server error";
    case Errc::timeout:
      return "timeout";
    case Errc::internal:
      return "internal error";
  }
  return "error";
}

int64_t SystemClock::epoch_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

}  // namespace ripen
