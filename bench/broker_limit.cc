// ripen-bench-broker: the ceiling for any RabbitMQ-based task system on this
// machine. No Redis, no ripen: one publisher (persistent messages, mandatory,
// publisher confirms with a window of unconfirmed publishes, as ripen's
// dispatcher does) into one durable queue, and consumers with manual acks and a
// prefetch (as ripen's workers do), running at the same time.
//
// It prints one line of key=value figures:
//   publish_rate  messages confirmed per second, first publish -> last confirm
//   e2e_rate      messages acked by consumers per second, first publish -> last ack
//   p50_ms ...    publish -> delivery to a consumer, when --rate paces the publisher:
//                 the broker's own share of a task's lateness at that rate
#include <amqp.h>  // before amqp_framing.h, which needs its types
#include <amqp_framing.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <CLI/CLI.hpp>

#include "ripen/amqp.h"
#include "ripen/config.h"
#include "ripen/metrics.h"
#include "support.h"

namespace {

using ripen::bench::read_confirms;

using Clock = std::chrono::steady_clock;

struct Options {
  int64_t messages = 100'000;
  int bytes = 229;  // ripen's envelope with a 100-byte payload
  int window = 1000;
  int consumers = 2;
  int prefetch = 8;
  int ack_every = 1;      // ack with `multiple` once per this many deliveries
  int queue_version = 0;  // x-queue-version; 0 = the broker's default
  int rate = 0;           // messages per second; 0 = as fast as the confirm window allows
  std::string amqp_url;
  std::string queue;
};

[[noreturn]] void die(const std::string& what) {
  std::cerr << "ripen-bench-broker: " << what << "\n";
  std::exit(1);
}

void check(const ripen::Status& st, const char* what) {
  if (!st) die(std::string(what) + ": " + st.error().message);
}

// Waits for one confirm frame; returns how many publishes it settled.
int64_t confirms(ripen::Amqp& amqp, uint64_t& confirmed_tag) {
  auto n = read_confirms(amqp, confirmed_tag);
  if (!n) die(n.error().message);
  return *n;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ripen-bench-broker: bare RabbitMQ publish (confirms) + consume (manual acks) rate, no Redis"};
  Options o;
  app.add_option("--messages", o.messages, "messages to publish and consume")->check(CLI::Range(1, 100'000'000));
  app.add_option("--bytes", o.bytes, "message body size")->check(CLI::Range(1, 1'000'000));
  app.add_option("--confirm-window", o.window, "unconfirmed publishes in flight")->check(CLI::Range(1, 65535));
  app.add_option("--consumers", o.consumers, "consumer connections")->check(CLI::Range(1, 64));
  app.add_option("--prefetch", o.prefetch, "prefetch per consumer")->check(CLI::Range(1, 65535));
  app.add_option("--ack-every", o.ack_every, "ack once per N deliveries (multiple=true); 1 = each")
      ->check(CLI::Range(1, 65535));
  app.add_option("--queue-version", o.queue_version, "classic queue version (x-queue-version); 0 = broker default")
      ->check(CLI::Range(0, 2));
  app.add_option("--rate", o.rate, "publish at this steady rate (messages/s) and report latency; 0 = flat out")
      ->check(CLI::Range(0, 1'000'000));
  app.add_option("--amqp-url", o.amqp_url, "default: $RIPEN_AMQP_URL or the local default");
  CLI11_PARSE(app, argc, argv);

  ripen::Config config = ripen::load_config(std::nullopt);
  if (!o.amqp_url.empty()) config.amqp_url = o.amqp_url;
  const ripen::AmqpUrl url = ripen::amqp_url_of(config);
  o.queue = fmt::format("ripen-bench-broker-{}", static_cast<long>(getpid()));
  const std::string exchange = o.queue + ".x";

  ripen::Amqp publisher(url);
  check(publisher.connect(), "connecting");
  check(publisher.declare_exchange(exchange, "direct"), "declaring the exchange");
  ripen::AmqpTable queue_args;
  if (o.queue_version > 0) queue_args.emplace_back("x-queue-version", int64_t{o.queue_version});
  check(publisher.declare_queue(o.queue, queue_args), "declaring the queue");
  check(publisher.bind_queue(o.queue, exchange, o.queue), "binding");
  check(publisher.confirm_select(), "enabling confirms");

  std::atomic<int64_t> consumed{0};
  std::mutex latency_mu;
  ripen::Histogram latency_us;  // publish -> delivery, microseconds (the histogram is unit-agnostic)
  std::atomic<int64_t> last_ack_ns{0};
  std::atomic<int> ready{0};
  std::vector<std::thread> consumers;
  for (int c = 0; c < o.consumers; ++c) {
    consumers.emplace_back([&] {
      ripen::Amqp amqp(url);
      check(amqp.connect(), "consumer connecting");
      check(amqp.qos(static_cast<uint16_t>(o.prefetch)), "setting prefetch");
      auto tag = amqp.consume(o.queue);
      if (!tag) die("consuming: " + tag.error().message);
      ++ready;
      while (consumed.load() < o.messages) {
        amqp_envelope_t env;
        timeval tv{0, 200'000};
        amqp_maybe_release_buffers(amqp.raw());
        auto r = amqp_consume_message(amqp.raw(), &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) {
          if (o.ack_every > 1) (void)amqp.ack(0, true);  // everything delivered so far
          continue;
        }
        if (r.reply_type != AMQP_RESPONSE_NORMAL) die("consumer connection broke");
        const uint64_t delivery = env.delivery_tag;
        if (o.rate > 0) {
          // The body starts with the publish time (steady clock, ns).
          const std::string body(static_cast<const char*>(env.message.body.bytes), env.message.body.len);
          const int64_t sent = std::strtoll(body.c_str(), nullptr, 10);
          const int64_t now = Clock::now().time_since_epoch().count();
          std::lock_guard lock(latency_mu);
          latency_us.record((now - sent) / 1000);
        }
        amqp_destroy_envelope(&env);
        const int64_t n = ++consumed;
        // Ack every ack_every-th delivery with `multiple`, and always the last
        // (with --consumers > 1 the last of each consumer is acked on its timeout).
        if (o.ack_every == 1 || delivery % static_cast<uint64_t>(o.ack_every) == 0 || n == o.messages) {
          check(amqp.ack(delivery, o.ack_every > 1), "acking");
        }
        last_ack_ns.store(Clock::now().time_since_epoch().count());
      }
    });
  }
  while (ready.load() < o.consumers) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  std::string body(static_cast<size_t>(o.bytes), 'x');
  ripen::AmqpMessageProps props;
  const auto t0 = Clock::now();
  uint64_t published = 0, confirmed = 0;
  while (published < static_cast<uint64_t>(o.messages)) {
    while (published - confirmed >= static_cast<uint64_t>(o.window)) confirms(publisher, confirmed);
    if (o.rate > 0) {
      // Steady pacing; confirms that came meanwhile are read while waiting.
      const auto at = t0 + std::chrono::nanoseconds(static_cast<int64_t>(published) * 1'000'000'000 / o.rate);
      while (Clock::now() < at) {
        amqp_frame_t frame;
        const auto left = std::chrono::duration_cast<std::chrono::microseconds>(at - Clock::now());
        timeval tv{0, static_cast<suseconds_t>(std::max<int64_t>(left.count(), 0))};
        if (amqp_frames_enqueued(publisher.raw()) || amqp_data_in_buffer(publisher.raw())) {
          confirms(publisher, confirmed);
        } else if (amqp_simple_wait_frame_noblock(publisher.raw(), &frame, &tv) == AMQP_STATUS_OK) {
          if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            auto* m = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
            confirmed = m->multiple != 0 ? std::max<uint64_t>(confirmed, m->delivery_tag) : confirmed + 1;
          }
        }
      }
      const std::string stamp = std::to_string(Clock::now().time_since_epoch().count()) + " ";
      body.replace(0, std::min(stamp.size(), body.size()), stamp, 0, std::min(stamp.size(), body.size()));
    }
    props.message_id = std::to_string(published);
    check(publisher.publish(exchange, o.queue, body, props, /*mandatory=*/true), "publishing");
    ++published;
  }
  while (confirmed < published) confirms(publisher, confirmed);
  const auto t_confirmed = Clock::now();
  for (auto& t : consumers) t.join();
  const auto t_acked = Clock::time_point(Clock::duration(last_ack_ns.load()));

  (void)publisher.delete_queue(o.queue);
  const double pub_s = std::chrono::duration<double>(t_confirmed - t0).count();
  const double e2e_s = std::chrono::duration<double>(t_acked - t0).count();
  std::cout << fmt::format(
      "broker-limit messages={} bytes={} confirm_window={} consumers={} prefetch={} publish_rate={:.0f} "
      "e2e_rate={:.0f} e2e_s={:.3f} ack_every={} rate={}",
      o.messages, o.bytes, o.window, o.consumers, o.prefetch, static_cast<double>(o.messages) / pub_s,
      static_cast<double>(o.messages) / e2e_s, e2e_s, o.ack_every, o.rate);
  if (o.rate > 0) {
    auto ms = [&](double q) { return static_cast<double>(latency_us.quantile(q)) / 1000.0; };
    std::cout << fmt::format(" p50_ms={:.2f} p99_ms={:.2f} p999_ms={:.2f} max_ms={:.2f}", ms(0.5), ms(0.99), ms(0.999),
                             static_cast<double>(latency_us.max()) / 1000.0);
  }
  std::cout << "\n";
  return 0;
}
