#include "ripen/failure_log.h"

#include <spdlog/spdlog.h>

namespace ripen {

void FailureLog::fail(const std::string& what) {
  const auto now = clock_.now();
  if (!failing_ || now - last_ >= std::chrono::seconds(30)) {
    spdlog::warn("{} (retrying with backoff)", what);
    last_ = now;
  }
  failing_ = true;
}

void FailureLog::ok(const std::string& what) {
  if (failing_) spdlog::info("{}: recovered", what);
  failing_ = false;
}

}  // namespace ripen
