#include "ripen/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace ripen {

void setup_logging(const std::string& process, const std::string& level, const std::string& format) {
  auto logger = spdlog::stderr_logger_mt(process);
  if (format == "json") {
    // Messages are escaped by the callers that may carry quotes (task errors are
    // logged through nlohmann::json::dump), so the line stays valid JSON.
    logger->set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","process":")" + process + R"(","pid":%P,"msg":"%v"})",
        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ " + process + "[%P] %v");
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace ripen
