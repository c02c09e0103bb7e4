// The built-in handlers as a config asks for them, and the run time limit rule.
#include "ripen/http_handler.h"
#include "ripen/worker.h"

namespace ripen {

int64_t run_timeout_ms(const Config& config, const std::string& type, int64_t own_timeout_ms) {
  const auto t = config.types.find(type);
  const TaskTypeConfig* tc = t != config.types.end() ? &t->second : nullptr;
  if (own_timeout_ms > 0) {
    // Clamped, not refused: the task still runs, for as long as the operator
    // lets any task of its type run. The envelope allows up to 7 days, and a
    // run's lease (and a handler thread) lasts as long.
    const int64_t most =
        tc != nullptr && tc->max_timeout_ms > 0 ? tc->max_timeout_ms : config.worker.max_task_timeout_ms;
    return std::min(own_timeout_ms, most);
  }
  if (tc != nullptr && tc->timeout_ms > 0) return tc->timeout_ms;
  return config.worker.exec_timeout_ms;
}

std::map<std::string, Handler> builtin_handlers(const Config& config) {
  std::map<std::string, Handler> out;
  out["log"] = make_log_handler();
  if (!config.http.types.empty()) {
    const Handler http = make_http_handler(config.http);
    for (const auto& [type, prefixes] : config.http.types) out[type] = http;
  }
  for (const auto& [type, command] : config.worker.exec) {
    ExecOptions options;
    options.env = config.worker.exec_env;
    if (auto l = config.worker.exec_limits.find(type); l != config.worker.exec_limits.end()) options.limits = l->second;
    try {
      out[type] = make_exec_handler(command, config.worker.exec_timeout_ms, options);
    } catch (const ConfigError& e) {
      throw ConfigError("worker.exec_limits." + type + ": " + e.what());
    }
  }
  return out;
}

}  // namespace ripen
