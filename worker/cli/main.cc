// ripen-worker: runs tasks from ripen queues with the built-in handlers:
//   log           prints the task
//   exec          --exec TYPE='command args' runs the command per task of TYPE
//   http          one request per task, for the types [handlers.http.types] lists
#include <atomic>
#include <csignal>
#include <string>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "ripen/config.h"
#include "ripen/log.h"
#include "ripen/redis.h"
#include "ripen/version.h"
#include "ripen/worker.h"

namespace {
ripen::Worker* g_worker = nullptr;
std::atomic<int> g_signals{0};
// The first SIGINT/SIGTERM drains the worker, the second stops it now.
// Async-signal-safe: a lock-free counter, and stop()/abandon() only set flags
// and write an eventfd; the worker logs what it does from its own thread.
void on_signal(int) {
  if (g_worker == nullptr) return;
  if (g_signals.fetch_add(1) == 0) {
    g_worker->stop();
  } else {
    g_worker->abandon();
  }
}
// The exit code of a worker stopped a second time while tasks were running.
constexpr int kExitAbandoned = 130;
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ripen-worker: consumes ripen queues and runs each task's handler"};
  ripen::add_version_flag(app, "ripen-worker");
  std::string config_file, redis_url, amqp_url, ns, log_level, name;
  std::vector<std::string> queues, execs;
  int concurrency = 0;
  int prefetch = -1;
  app.add_option("--config", config_file, "TOML config file (default: $RIPEN_CONFIG)");
  app.add_option("--redis-url", redis_url, ripen::kRedisUrlHelp);
  app.add_option("--amqp-url", amqp_url, ripen::kAmqpUrlHelp);
  app.add_option("--namespace", ns, "key and queue namespace (default: ripen)");
  app.add_option("--queue", queues, "queue to consume (repeatable; default: worker.queues or 'default')");
  app.add_option("--concurrency", concurrency, "handlers running at once")->check(CLI::Range(1, 1024));
  app.add_option("--prefetch", prefetch,
                 "unacked deliveries the broker may hand over (default: follows the handlers' pace)")
      ->check(CLI::Range(1, 65535));
  app.add_option("--exec", execs, "TYPE='command args': serve tasks of TYPE by running the command (repeatable)");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_option("--name", name, "this worker's name in task records (default: host:pid)");
  CLI11_PARSE(app, argc, argv);

  try {
    ripen::Config config = ripen::load_config(config_file.empty() ? std::nullopt : std::optional(config_file));
    if (!redis_url.empty()) config.redis_url = redis_url;
    if (!amqp_url.empty()) config.amqp_url = amqp_url;
    if (!ns.empty()) config.ns = ns;
    if (!queues.empty()) config.worker.queues = queues;
    if (concurrency != 0) config.worker.concurrency = concurrency;
    if (prefetch > 0) config.worker.prefetch = prefetch;
    if (!log_level.empty()) config.log_level = log_level;
    for (const auto& e : execs) {
      const auto eq = e.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == e.size()) {
        throw ripen::ConfigError("--exec '" + e + "': expected TYPE='command args'");
      }
      config.worker.exec[e.substr(0, eq)] = e.substr(eq + 1);
    }
    if (config.worker.exec.count("log") != 0) throw ripen::ConfigError("--exec: 'log' is a built-in handler type");
    ripen::validate_config(config);
    ripen::setup_logging("ripen-worker", config.log_level, config.log_format);

    ripen::Worker worker(config, name);
    for (auto& [type, handler] : ripen::builtin_handlers(config)) worker.handle(type, std::move(handler));
    g_worker = &worker;
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    worker.run();
    g_worker = nullptr;
    return worker.abandoned() ? kExitAbandoned : 0;
  } catch (const ripen::ConfigError& e) {
    ripen::log_fatal(std::string("ripen-worker: config: ") + e.what());
    return 2;
  } catch (const ripen::RedisUnreachable& e) {
    ripen::log_fatal(std::string("ripen-worker: ") + e.what());
    return ripen::kExitRedisUnreachable;
  } catch (const std::exception& e) {
    ripen::log_fatal(std::string("ripen-worker: ") + e.what());
    return 1;
  }
}
