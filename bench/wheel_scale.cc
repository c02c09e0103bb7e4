// ripen-bench-wheel: how the timer wheel scales with the number of pending tasks.
//
// One namespace grows through the sizes given (e.g. 10k, 100k, 1M, 10M pending
// tasks due a year from now). At each size it reports:
//   bytes_per_task   Redis used_memory over the pending tasks (payload included;
//                    run again with --payload-bytes 0 for the payload excluded)
//   enqueue_rate     tasks/s of the enqueues that grew the wheel to this size
//                    (Producer::enqueue_batch, 1000 per call, one producer)
//   claim_us         wall time per task to claim `--ripe` tasks due now out of the
//                    wheel with the real claim script (batch 500, all shards in one
//                    pipelined round trip), as a dispatcher does
//   claim_redis_us   Redis's own CPU per claimed task for the same (INFO cpu)
// The claimed tasks are settled as dispatched and removed, so sizes stay exact.
// One line of key=value per size on stdout.
#include <chrono>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <CLI/CLI.hpp>

#include "ripen/config.h"
#include "ripen/keys.h"
#include "ripen/producer.h"
#include "ripen/redis.h"
#include "ripen/scripts.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& what) {
  std::cerr << "ripen-bench-wheel: " << what << "\n";
  std::exit(1);
}

int64_t info_field(ripen::Redis& redis, const std::string& section, const std::string& key) {
  auto r = redis.command({"INFO", section});
  if (!r) die("INFO: " + r.error().message);
  std::istringstream in(r->str());
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  }
  die("INFO " + section + " has no " + key);
}

double redis_cpu_s(ripen::Redis& redis) {
  auto r = redis.command({"INFO", "cpu"});
  if (!r) die("INFO cpu: " + r.error().message);
  std::istringstream in(r->str());
  std::string line;
  double total = 0;
  while (std::getline(in, line)) {
    for (const char* key : {"used_cpu_user:", "used_cpu_sys:"}) {
      if (line.rfind(key, 0) == 0) total += std::stod(line.substr(std::string(key).size()));
    }
  }
  return total;
}

std::vector<ripen::Envelope> batch_of(size_t n, int payload_bytes, std::optional<int64_t> due_ms) {
  std::vector<ripen::Envelope> batch(n);
  const std::string pad(static_cast<size_t>(payload_bytes), 'x');
  for (auto& e : batch) {
    e.queue = "bench";
    e.type = "bench";
    e.payload = payload_bytes > 0 ? nlohmann::json(pad) : nlohmann::json();
    if (due_ms) {
      e.due_ms = due_ms;
    } else {
      e.delay_ms = 0;
    }
  }
  return batch;
}

void enqueue(ripen::Producer& producer, int64_t n, int payload_bytes, std::optional<int64_t> due_ms) {
  for (int64_t i = 0; i < n; i += 1000) {
    auto results = producer.enqueue_batch(batch_of(static_cast<size_t>(std::min<int64_t>(1000, n - i)), payload_bytes,
                                                   due_ms ? std::optional(*due_ms + i) : std::nullopt));
    for (const auto& r : results) {
      if (!r) die("enqueue: " + r.error().message);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ripen-bench-wheel: Redis memory, enqueue and claim cost as the timer wheel grows"};
  std::vector<int64_t> sizes = {10'000, 100'000, 1'000'000};
  int payload_bytes = 100;
  int64_t ripe = 20'000;
  std::string redis_url, ns;
  app.add_option("--sizes", sizes, "pending tasks to grow the wheel to, in order")->expected(1, -1);
  app.add_option("--payload-bytes", payload_bytes, "payload size (0: the envelope alone)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--ripe", ripe, "tasks due now claimed at each size")
      ->check(CLI::Range(int64_t{1}, int64_t{10'000'000}));
  app.add_option("--redis-url", redis_url, "default: $RIPEN_REDIS_URL");
  app.add_option("--namespace", ns, "default: unique per run");
  CLI11_PARSE(app, argc, argv);

  ripen::Config config = ripen::load_config(std::nullopt);
  if (!redis_url.empty()) config.redis_url = redis_url;
  config.ns = ns.empty() ? fmt::format("wheel-{}", static_cast<long>(getpid())) : ns;
  ripen::validate_config(config);
  const ripen::Keys keys(config.ns, config.shards);
  ripen::Redis redis(ripen::redis_url_of(config), std::chrono::seconds(30));
  ripen::Producer producer(config);

  // Hold every shard, as the one dispatcher would.
  std::vector<std::string> leases;
  for (int s = 0; s < config.shards; ++s) {
    auto r = ripen::scripts::take_lease(redis, keys.lease(s), keys.fence(s), "bench-wheel", 3600000);
    if (!r || !*r) die("cannot take shard " + std::to_string(s));
    leases.push_back(**r);
  }
  auto unlink_all = [&] {
    for (int s = 0; s < config.shards; ++s) {
      (void)redis.command({"UNLINK", keys.due(s), keys.inflight(s), keys.outstanding(s), keys.tasks(s), keys.status(s),
                           keys.lease(s), keys.fence(s)});
    }
  };

  // Memory freed lazily (UNLINK, FLUSHALL ASYNC) before us is still being given
  // back by a background thread: wait for it, or the base is too high.
  for (int i = 0; i < 600 && info_field(redis, "memory", "lazyfree_pending_objects") > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // The scripts are cached by Redis on first use, which is memory too but not
  // the tasks': load them before the base is taken.
  for (const auto* script : ripen::scripts::all()) {
    if (auto r = redis.command({"SCRIPT", "LOAD", script->source}); !r) die("loading " + script->name);
  }
  const int64_t base_memory = info_field(redis, "memory", "used_memory");
  const int64_t far_future = info_field(redis, "server", "server_time_usec") / 1000 + 365LL * 24 * 3600 * 1000;
  int64_t pending = 0;
  for (const int64_t size : sizes) {
    if (size < pending) die("--sizes must grow");
    const auto t0 = Clock::now();
    enqueue(producer, size - pending, payload_bytes, far_future + pending);
    const double enqueue_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const double enqueue_rate = static_cast<double>(size - pending) / std::max(enqueue_s, 1e-9);
    pending = size;
    const int64_t memory = info_field(redis, "memory", "used_memory");

    // Claim `ripe` tasks due now out of a wheel holding `size` far-future ones.
    enqueue(producer, ripe, payload_bytes, std::nullopt);
    const double cpu0 = redis_cpu_s(redis);
    const auto c0 = Clock::now();
    int64_t claimed = 0;
    std::vector<std::vector<std::pair<std::string, int64_t>>> settles(static_cast<size_t>(config.shards));
    for (bool more = true; more;) {
      // As the dispatcher claims: every shard in one script run.
      ripen::scripts::ClaimCall call(keys, 600000);
      for (int s = 0; s < config.shards; ++s) call.add(s, leases[static_cast<size_t>(s)], 500);
      call.append_to(redis);
      auto replies = redis.flush();
      if (!replies) die("claim: " + replies.error().message);
      const auto& r = replies->front();
      if (!r) die("claim: " + r.error().message);
      more = false;
      for (int s = 0; s < config.shards; ++s) {
        const auto claim = ripen::scripts::ClaimCall::read(r->at(static_cast<size_t>(s)));
        claimed += static_cast<int64_t>(claim.tasks.size());
        more |= claim.tasks.size() == 500;
        for (const auto& t : claim.tasks) settles[static_cast<size_t>(s)].emplace_back(t.id, claim.lease_deadline);
      }
    }
    const double claim_s = std::chrono::duration<double>(Clock::now() - c0).count();
    const double claim_cpu = redis_cpu_s(redis) - cpu0;
    if (claimed != ripe) die(fmt::format("claimed {} of {} ripe tasks", claimed, ripe));
    // Out of the wheel again (settled as dispatched, then their records dropped),
    // so the next size starts from exactly `size` pending.
    for (int s = 0; s < config.shards; ++s) {
      auto& ids = settles[static_cast<size_t>(s)];
      std::vector<ripen::scripts::SettleRequest> publishes;
      std::vector<std::string> del = {"HDEL", keys.status(s)};
      std::vector<std::string> del_tasks = {"HDEL", keys.tasks(s)};
      std::vector<std::string> del_outstanding = {"ZREM", keys.outstanding(s)};
      for (const auto& [id, deadline] : ids) {
        publishes.push_back({id, ripen::scripts::SettleOutcome::confirm, deadline, ""});
        del.push_back(id);
        del_tasks.push_back(id);
        del_outstanding.push_back(id);
      }
      if (ids.empty()) continue;
      ripen::scripts::SettleCall settle(keys, 1000);
      settle.add(s, publishes);
      settle.append_to(redis);
      redis.append(del);
      redis.append(del_tasks);
      redis.append(del_outstanding);
    }
    if (auto r = redis.flush(); !r) die("settle: " + r.error().message);

    std::cout << fmt::format(
                     "wheel pending={} payload_bytes={} bytes_per_task={:.1f} enqueue_rate={:.0f} claim_us={:.2f} "
                     "claim_redis_us={:.2f}",
                     size, payload_bytes, static_cast<double>(memory - base_memory) / static_cast<double>(size),
                     enqueue_rate, claim_s * 1e6 / static_cast<double>(claimed),
                     claim_cpu * 1e6 / static_cast<double>(claimed))
              << std::endl;
  }
  unlink_all();
  return 0;
}
