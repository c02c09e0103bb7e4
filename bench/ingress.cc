// ripen-bench-ingress: enqueue over AMQP, the way a program in another language
// does it. N envelopes (each with a message_id, due in a year so nothing runs)
// are published to the ingress exchange, persistent and confirmed, while no
// dispatcher runs; then one in-process Dispatcher drains the ingress queue into
// the timer wheel and is timed until every task is stored and every message
// acked. Printed, one key=value line: the drain's wall time and rate, and CPU
// per task of this process (the dispatcher: its ingress thread does the work),
// of Redis, and of RabbitMQ (with --rabbitmq-pid).
#include <amqp.h>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ripen/amqp.h"
#include "ripen/config.h"
#include "ripen/dispatcher.h"
#include "ripen/keys.h"
#include "ripen/redis.h"
#include "ripen/topology.h"
#include "support.h"

namespace {

using namespace ripen::bench;

struct Options {
  int64_t messages = 100'000;
  int prefetch = 256;
  int payload_bytes = 100;
  int window = 1000;
  ServerOptions servers;
};

[[noreturn]] void die(const std::string& what) {
  std::cerr << "ripen-bench-ingress: " << what << "\n";
  std::exit(1);
}

// Tasks in the wheel: the due sets of every shard, in one round trip.
int64_t stored(ripen::Redis& redis, const ripen::Keys& keys) {
  for (int s = 0; s < keys.shards(); ++s) redis.append({"ZCARD", keys.due(s)});
  auto replies = redis.flush();
  if (!replies) die("redis: " + replies.error().message);
  int64_t n = 0;
  for (const auto& r : *replies) {
    if (!r) die("redis: " + r.error().message);
    n += r->integer();
  }
  return n;
}

// Publishes the envelopes, a confirm window at a time, and waits for the last confirm.
void fill(const Options& o, const ripen::Config& config, const ripen::Keys& keys) {
  ripen::Amqp amqp(ripen::amqp_url_of(config));
  if (auto st = ripen::declare_ingress(amqp, keys); !st) die("declaring the ingress: " + st.error().message);
  if (auto st = amqp.confirm_select(); !st) die(st.error().message);
  nlohmann::json env = {{"v", 1},
                        {"queue", "bench"},
                        {"type", "bench"},
                        {"payload", std::string(static_cast<size_t>(o.payload_bytes), 'x')},
                        {"delay_ms", int64_t{365} * 86'400'000}};
  const std::string body = env.dump();
  uint64_t published = 0, confirmed = 0;
  for (int64_t i = 0; i < o.messages; ++i) {
    ripen::AmqpMessageProps props;
    props.message_id = fmt::format("m-{}", i);
    if (auto st = amqp.publish(keys.ingress_exchange(), "", body, props, false); !st) die(st.error().message);
    ++published;
    while (published - confirmed >= static_cast<uint64_t>(o.window)) {
      if (auto n = read_confirms(amqp, confirmed); !n) die(n.error().message);
    }
  }
  while (confirmed < published) {
    if (auto n = read_confirms(amqp, confirmed); !n) die(n.error().message);
  }
  auto ready = amqp.queue_message_count(keys.ingress_queue());
  if (!ready || static_cast<int64_t>(*ready) != o.messages) die("the ingress queue does not hold every message");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ripen-bench-ingress: a dispatcher draining N envelopes from the AMQP ingress into the wheel"};
  Options o;
  app.add_option("--messages", o.messages, "envelopes to publish and drain")
      ->check(CLI::Range(int64_t{1}, int64_t{10'000'000}));
  app.add_option("--prefetch", o.prefetch, "dispatcher.ingress_prefetch: messages taken and stored at once")
      ->check(CLI::Range(1, 65535));
  app.add_option("--payload-bytes", o.payload_bytes, "payload size")->check(CLI::Range(0, 200'000));
  o.servers.add_to(app);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  ripen::Config config = o.servers.config("bench-ingress");
  config.dispatcher.ingress_prefetch = o.prefetch;
  config.dispatcher.queues = {"bench"};
  ripen::validate_config(config);
  const ripen::Keys keys(config.ns, config.shards);

  std::cout << machine_line() << "\n";
  fill(o, config, keys);

  auto redis = std::make_unique<ripen::Redis>(ripen::parse_redis_url(config.redis_url).value());
  CpuMeter meter{*redis, o.servers.rabbitmq_pid};
  ripen::Dispatcher dispatcher(config);
  std::thread running([&] { dispatcher.run(); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
  // Polled (a benchmark's main thread, idle otherwise) until every message is
  // handled (its task stored, then the message acked), as the dispatcher counts them.
  auto handled = [&] {
    const auto in = dispatcher.stats().ingress;
    return in.enqueued + in.duplicates + in.refused;
  };
  while (handled() < static_cast<uint64_t>(o.messages)) {
    if (std::chrono::steady_clock::now() > deadline) die("timed out draining the ingress");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto r = meter.read();
  const auto in = dispatcher.stats().ingress;
  dispatcher.stop();
  running.join();
  const int64_t in_wheel = stored(*redis, keys);
  if (in.enqueued != static_cast<uint64_t>(o.messages) || in_wheel != o.messages) {
    die(fmt::format("{} tasks created and {} in the wheel for {} messages", in.enqueued, in_wheel, o.messages));
  }
  std::cout << fmt::format(
      "ingress messages={} prefetch={} wall_s={:.3f} rate={:.0f} dispatcher_cpu_us={} redis_cpu_us={} "
      "rabbitmq_cpu_us={}\n",
      o.messages, o.prefetch, r.wall_s, static_cast<double>(o.messages) / r.wall_s, per_task_us(r.self_s, o.messages),
      per_task_us(r.redis_s, o.messages), per_task_us(r.rabbit_s, o.messages));

  delete_namespace_keys(*redis, config.ns);
  ripen::Amqp amqp(ripen::amqp_url_of(config));
  delete_amqp_names(amqp, keys, {"bench"});
  return 0;
}
