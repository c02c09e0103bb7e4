#include "ripen/log.h"

#include <atomic>
#include <cstdio>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

namespace ripen {
namespace {

// A JSON string, quotes included, of `text`: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD. Log messages carry what
// came from outside (message ids, field names, a child's stderr), so one line
// must stay one valid JSON object whatever they hold.
std::string json_string(std::string_view text) {
  return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// %j: the message as a JSON string.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string s = json_string(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(s.data(), s.data() + s.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessageFlag>(); }
};

}  // namespace

void set_log_format(spdlog::logger& logger, const std::string& process, const std::string& format) {
  if (format == "json") {
    // The process name is a pattern literal: escaped, and any '%' in it doubled
    // so spdlog does not read it as a flag.
    std::string name;
    for (char c : json_string(process)) {
      name.push_back(c);
      if (c == '%') name.push_back('%');
    }
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<JsonMessageFlag>('j').set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","process":)" +
                                                          name + R"(,"pid":%P,"msg":%j})");
    logger.set_formatter(std::move(formatter));
  } else {
    logger.set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ " + process + "[%P] %v");
  }
}

// Set once setup_logging has made stderr's logger the default one.
std::atomic<bool> g_logging_set_up{false};

void setup_logging(const std::string& process, const std::string& level, const std::string& format) {
  auto logger = spdlog::stderr_logger_mt(process);
  set_log_format(*logger, process, format);
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
  g_logging_set_up.store(true);
}

void log_fatal(const std::string& text) {
  if (g_logging_set_up.load()) {
    spdlog::critical("{}", text);
    spdlog::default_logger()->flush();
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
  }
}

}  // namespace ripen
