// ripen-dispatcher: moves ripe tasks from the Redis timer wheel to RabbitMQ.
#include <csignal>

#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "ripen/config.h"
#include "ripen/dispatcher.h"
#include "ripen/log.h"
#include "ripen/redis.h"
#include "ripen/version.h"

namespace {
ripen::Dispatcher* g_dispatcher = nullptr;
void on_signal(int) {
  if (g_dispatcher != nullptr) g_dispatcher->stop();
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ripen-dispatcher: publishes each delayed task to RabbitMQ the moment it ripens"};
  ripen::add_version_flag(app, "ripen-dispatcher");
  std::string config_file, redis_url, amqp_url, ns, log_level, owner;
  int shards = 0;
  app.add_option("--config", config_file, "TOML config file (default: $RIPEN_CONFIG)");
  app.add_option("--redis-url", redis_url, ripen::kRedisUrlHelp);
  app.add_option("--amqp-url", amqp_url, ripen::kAmqpUrlHelp);
  app.add_option("--namespace", ns, "key and queue namespace (default: ripen)");
  app.add_option("--shards", shards, "timer-wheel shards (default: 16; all dispatchers must agree)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_option("--id", owner, "this dispatcher's name in shard leases (default: host:pid:random)");
  CLI11_PARSE(app, argc, argv);

  try {
    ripen::Config config = ripen::load_config(config_file.empty() ? std::nullopt : std::optional(config_file));
    if (!redis_url.empty()) config.redis_url = redis_url;
    if (!amqp_url.empty()) config.amqp_url = amqp_url;
    if (!ns.empty()) config.ns = ns;
    if (shards != 0) config.shards = shards;
    if (!log_level.empty()) config.log_level = log_level;
    ripen::validate_config(config);
    ripen::setup_logging("ripen-dispatcher", config.log_level, config.log_format);

    ripen::Dispatcher dispatcher(config, owner);
    g_dispatcher = &dispatcher;
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    dispatcher.run();
    g_dispatcher = nullptr;
    return 0;
  } catch (const ripen::ConfigError& e) {
    ripen::log_fatal(std::string("ripen-dispatcher: config: ") + e.what());
    return 2;
  } catch (const ripen::RedisUnreachable& e) {
    ripen::log_fatal(std::string("ripen-dispatcher: ") + e.what());
    return ripen::kExitRedisUnreachable;
  } catch (const std::exception& e) {
    ripen::log_fatal(std::string("ripen-dispatcher: ") + e.what());
    return 1;
  }
}
