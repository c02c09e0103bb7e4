// ripen-bench-worker: what ripen's worker adds per task on top of the broker.
//
// Both sides consume a queue that was filled beforehand, so nothing else runs
// while they are timed:
//   ripen  N tasks enqueued due now and dispatched (an in-process dispatcher,
//          stopped once the broker confirmed every publish); then one Worker
//          with a no-op handler runs them: per task its start and its outcome
//          recorded in Redis (run lease, attempt, idempotency key released or
//          kept) and its delivery acked.
//   bare   the same number of messages, of the same size (one envelope, or a
//          bundle of --bundle of them), published to a plain durable queue;
//          then one consumer with the same prefetch takes each and acks it.
// Printed, one key=value line per side and one for the difference: wall time
// and rate, and CPU per task of this process (the worker or the bare consumer),
// of Redis, and of RabbitMQ (with --rabbitmq-pid).
#include <amqp.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "ripen/amqp.h"
#include "ripen/config.h"
#include "ripen/dispatcher.h"
#include "ripen/envelope.h"
#include "ripen/keys.h"
#include "ripen/producer.h"
#include "ripen/redis.h"
#include "ripen/topology.h"
#include "ripen/worker.h"
#include "support.h"

namespace {

using namespace ripen::bench;
using Clock = std::chrono::steady_clock;

constexpr const char* kQueue = "bench";
constexpr const char* kType = "bench";

struct Options {
  int64_t tasks = 100'000;
  int bundle = 50;
  int concurrency = 4;
  int prefetch = 0;
  int payload_bytes = 100;
  ServerOptions servers;
};

[[noreturn]] void die(const std::string& what) {
  std::cerr << "ripen-bench-worker: " << what << "\n";
  std::exit(1);
}

void check(const ripen::Status& st, const std::string& what) {
  if (!st) die(what + ": " + st.error().message);
}

void print(const std::string& side, const Options& o, int64_t messages, const CpuMeter::Reading& r) {
  std::cout << fmt::format(
      "{} tasks={} messages={} bundle={} prefetch={} wall_s={:.3f} rate={:.0f} consumer_cpu_us={} redis_cpu_us={} "
      "rabbitmq_cpu_us={}\n",
      side, o.tasks, messages, o.bundle, o.prefetch, r.wall_s, static_cast<double>(o.tasks) / r.wall_s,
      per_task_us(r.self_s, o.tasks), per_task_us(r.redis_s, o.tasks), per_task_us(r.rabbit_s, o.tasks));
}

// Waits (polling: this is a benchmark's main thread, idle otherwise) until done().
template <class F>
void wait_for(F done, std::chrono::seconds limit, const std::string& what) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) die("timed out waiting for " + what);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Fills the task queue through the real pipeline, then times one worker.
CpuMeter::Reading run_ripen(const Options& o, ripen::Config config, ripen::Redis& redis, int64_t& messages) {
  config.dispatcher.bundle = o.bundle;
  config.dispatcher.queues = {kQueue};
  config.worker.queues = {kQueue};
  config.worker.concurrency = o.concurrency;
  config.worker.prefetch = o.prefetch;
  ripen::Producer producer(config);
  const std::string payload(static_cast<size_t>(o.payload_bytes), 'x');
  for (int64_t done = 0; done < o.tasks;) {
    std::vector<ripen::Envelope> batch;
    for (; done < o.tasks && batch.size() < 500; ++done) {
      ripen::Envelope e;
      e.queue = kQueue;
      e.type = kType;
      e.payload = payload;
      e.delay_ms = 0;
      batch.push_back(std::move(e));
    }
    for (auto& r : producer.enqueue_batch(std::move(batch))) {
      if (!r) die("enqueue: " + r.error().describe());
    }
  }
  {
    ripen::Dispatcher dispatcher(config);
    std::thread t([&] { dispatcher.run(); });
    wait_for([&] { return dispatcher.stats().confirmed == static_cast<uint64_t>(o.tasks); }, std::chrono::seconds(600),
             "the dispatcher to publish every task");
    messages = static_cast<int64_t>(dispatcher.stats().messages);
    dispatcher.stop();
    t.join();
  }
  ripen::Worker worker(config, "bench-worker");
  worker.handle(kType, [](const ripen::TaskContext&) {});
  CpuMeter meter{redis, o.servers.rabbitmq_pid};
  std::thread t([&] { worker.run(); });
  wait_for([&] { return worker.stats().succeeded == static_cast<uint64_t>(o.tasks); }, std::chrono::seconds(600),
           "the worker to run every task");
  auto reading = meter.read();
  worker.stop();
  t.join();
  return reading;
}

// The same number of messages of the same size: a consumer that only acks.
CpuMeter::Reading run_bare(const Options& o, const ripen::Config& config, ripen::Redis& redis, int64_t messages) {
  const ripen::AmqpUrl url = ripen::amqp_url_of(config);
  const std::string queue = o.servers.ns + ".bare";
  ripen::Amqp publisher(url);
  check(publisher.connect(), "connecting");
  check(publisher.declare_queue(queue, {}), "declaring the bare queue");
  // One envelope of the ripen run's size, or a bundle of them.
  ripen::Envelope e;
  e.id = "0VcTzC4oBduPxR";
  e.queue = kQueue;
  e.type = kType;
  e.payload = std::string(static_cast<size_t>(o.payload_bytes), 'x');
  e.due_ms = 1'800'000'000'000;
  e.created_ms = 1'800'000'000'000;
  const std::string one = ripen::encode_envelope(e);
  std::string body = one;
  if (o.bundle > 1) {
    std::vector<std::string_view> many(static_cast<size_t>(o.bundle), one);
    body = ripen::encode_bundle(many);
  }
  ripen::AmqpMessageProps props;
  for (int64_t i = 0; i < messages; ++i) {
    props.message_id = std::to_string(i);
    check(publisher.publish("", queue, body, props, false), "publishing");
  }
  wait_for(
      [&] {
        auto n = publisher.queue_message_count(queue);
        return n && static_cast<int64_t>(*n) == messages;
      },
      std::chrono::seconds(600), "the bare queue to fill");

  ripen::Amqp consumer(url);
  CpuMeter meter{redis, o.servers.rabbitmq_pid};
  check(consumer.connect(), "consumer connecting");
  check(consumer.qos(static_cast<uint16_t>(o.prefetch)), "setting prefetch");
  auto tag = consumer.consume(queue);
  if (!tag) die("consuming: " + tag.error().message);
  for (int64_t acked = 0; acked < messages; ++acked) {
    amqp_envelope_t env;
    amqp_maybe_release_buffers(consumer.raw());
    auto r = amqp_consume_message(consumer.raw(), &env, nullptr, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) die("consumer connection broke");
    const uint64_t delivery = env.delivery_tag;
    amqp_destroy_envelope(&env);
    check(consumer.ack(delivery, false), "acking");
  }
  auto reading = meter.read();
  (void)publisher.delete_queue(queue);
  return reading;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ripen-bench-worker: the worker's cost per task (start + outcome in Redis + ack) against a bare "
      "consume-and-ack loop on the same broker"};
  Options o;
  app.add_option("--tasks", o.tasks, "tasks to run")->check(CLI::Range(int64_t{1}, int64_t{10'000'000}));
  app.add_option("--bundle", o.bundle, "tasks per broker message (dispatcher.bundle)")->check(CLI::Range(1, 1000));
  app.add_option("--concurrency", o.concurrency, "the worker's handler threads")->check(CLI::Range(1, 1024));
  app.add_option("--prefetch", o.prefetch, "unacked messages, both sides (default: = concurrency)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--payload-bytes", o.payload_bytes, "payload size")->check(CLI::Range(0, 1'000'000));
  o.servers.add_to(app);
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  ripen::Config config = o.servers.config("bench-worker");
  if (o.prefetch == 0) o.prefetch = o.concurrency;
  ripen::validate_config(config);

  std::cout << machine_line() << "\n";
  auto redis = std::make_unique<ripen::Redis>(ripen::parse_redis_url(config.redis_url).value());
  int64_t messages = 0;
  const auto ripen_side = run_ripen(o, config, *redis, messages);
  print("ripen", o, messages, ripen_side);
  const auto bare_side = run_bare(o, config, *redis, messages);
  print("bare", o, messages, bare_side);

  const auto diff = [&](const std::optional<double>& a, const std::optional<double>& b) -> std::optional<double> {
    if (!a || !b) return std::nullopt;
    return *a - *b;
  };
  const auto total = [](const CpuMeter::Reading& r) -> std::optional<double> {
    if (!r.redis_s || !r.rabbit_s) return std::nullopt;
    return r.self_s + *r.redis_s + *r.rabbit_s;
  };
  std::cout << fmt::format(
      "overhead wall_us={:.2f} consumer_cpu_us={} redis_cpu_us={} rabbitmq_cpu_us={} total_cpu_us={}\n",
      (ripen_side.wall_s - bare_side.wall_s) * 1e6 / static_cast<double>(o.tasks),
      per_task_us(ripen_side.self_s - bare_side.self_s, o.tasks), per_task_us(ripen_side.redis_s, o.tasks),
      per_task_us(diff(ripen_side.rabbit_s, bare_side.rabbit_s), o.tasks),
      per_task_us(diff(total(ripen_side), total(bare_side)), o.tasks));

  ripen::Keys keys(config.ns, config.shards);
  delete_namespace_keys(*redis, config.ns);
  ripen::Amqp amqp(ripen::amqp_url_of(config));
  delete_amqp_names(amqp, keys, {kQueue});
  return 0;
}
