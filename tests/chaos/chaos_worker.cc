// ripen-chaos-worker: a ripen::Worker whose one handler, `chaos`, does what the
// chaos suite's payload says and writes a ledger of every run into a sink Redis
// that no fault touches (see ledger.h for what is recorded and why).
//
//   ripen-chaos-worker --config FILE --sink redis://127.0.0.1:PORT/0 --name NAME
//
// Payload: {"n": task number, "ms": how long a successful run takes,
// "fail_first": true when attempt 1 must fail, "permanent": true when every
// attempt fails with ripen::Permanent (the task must end dead-lettered),
// "fail_ms": how long a failing attempt takes (it then throws, with no effect)}.
// A successful run's side effect is two writes in one sink script: its end in
// the ledger, and SET NX of its idempotency key in the deduping sink (a
// downstream that drops repeats), so "after the side effect" is one instant.
//
// The sink is the ledger's only copy: a sink write that cannot be made within
// its deadline aborts the process, which the harness reports as a worker that
// died without being killed. Never a silent gap in the ledger.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "ripen/config.h"
#include "ripen/keys.h"
#include "ripen/log.h"
#include "ripen/redis.h"
#include "ripen/worker.h"

namespace {

using namespace std::chrono_literals;

ripen::Worker* g_worker = nullptr;
void on_signal(int) {
  if (g_worker != nullptr) g_worker->stop();
}

// Each script begins by reading its server's clock into `now` (epoch ms).
const std::string kNowMs = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
)lua";

// KEYS: run hash, runs list, open runs of this worker
// ARGV: token, n, id, attempt, worker, given due, ripen now ('' unknown),
//       wheel due ('' not in the wheel), idempotency key
const ripen::LuaScript kStart{"chaos_start", kNowMs + R"lua(
redis.call('HSET', KEYS[1], 'n', ARGV[2], 'id', ARGV[3], 'attempt', ARGV[4], 'worker', ARGV[5],
           'given_due', ARGV[6], 'ripen_now', ARGV[7], 'wheel_due', ARGV[8], 'idem', ARGV[9], 'start', now)
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return now
)lua"};

// KEYS: run hash, open runs of this worker, dedup key (or the run hash again
//       for a failure, which has no effect)
// ARGV: token, outcome ('ok' | 'failed'), n
const ripen::LuaScript kEnd{"chaos_end", kNowMs + R"lua(
local first = ''
if ARGV[2] == 'ok' then
  first = redis.call('SET', KEYS[3], ARGV[3], 'NX') and '1' or '0'
end
redis.call('HSET', KEYS[1], 'end', now, 'outcome', ARGV[2], 'dedup_first', first)
redis.call('SREM', KEYS[2], ARGV[1])
return now
)lua"};

// The ripen Redis's clock and the task's place in the wheel, read together.
// KEYS: the task's shard's due set   ARGV: task id
const ripen::LuaScript kProbe{"chaos_probe", kNowMs + R"lua(
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
return {now, score or ''}
)lua"};

struct Settings {
  ripen::RedisUrl sink;
  ripen::RedisUrl ripen;
  std::string name;
  std::string ns;
  int shards = 0;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "ripen-chaos-worker: %s; the ledger would have a gap, aborting\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

class Recorder {
 public:
  explicit Recorder(const Settings& s) : s_(s), keys_(s.ns, s.shards) {}

  void run(const ripen::TaskContext& t) {
    const auto& p = t.task.payload;
    const int n = p.at("n").get<int>();
    const int ms = p.at("ms").get<int>();
    const bool fail_first = p.value("fail_first", false);
    const std::string token = s_.name + "#" + std::to_string(++counter_);
    const std::string run_key = "chaos:run:" + token;
    const std::string open_key = "chaos:open:" + s_.name;

    std::string ripen_now, wheel_due;
    if (auto probe = this->probe(t.id)) {
      ripen_now = std::to_string(probe->first);
      wheel_due = probe->second;
    }
    sink_eval(kStart, {run_key, "chaos:runs", open_key},
              {token, std::to_string(n), t.id, std::to_string(t.attempt), s_.name, std::to_string(t.due_ms), ripen_now,
               wheel_due, t.idempotency_key});

    const bool permanent = p.value("permanent", false);
    if (permanent || (fail_first && t.attempt == 1)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(p.value("fail_ms", ms)));
      sink_eval(kEnd, {run_key, open_key, run_key}, {token, "failed", std::to_string(n)});
      if (permanent) throw ripen::Permanent("planned permanent failure", "chaos_permanent");
      throw ripen::Failure("planned failure of a first attempt", "chaos_first");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    sink_eval(kEnd, {run_key, open_key, "chaos:effect:" + t.idempotency_key}, {token, "ok", std::to_string(n)});
  }

 private:
  // {ripen TIME ms, the task's due-set score or ""}; none if the ripen Redis
  // cannot be read within a second (it is being restarted).
  std::optional<std::pair<int64_t, std::string>> probe(const std::string& id) {
    thread_local std::unique_ptr<ripen::Redis> redis;
    if (!redis) redis = std::make_unique<ripen::Redis>(s_.ripen, 500ms);
    const auto deadline = std::chrono::steady_clock::now() + 1s;
    do {
      auto r = redis->eval(kProbe, {keys_.due(keys_.shard_of(id))}, {id});
      if (r) return std::make_pair(r->at(0).integer(), r->at(1).str());
      std::this_thread::sleep_for(50ms);
    } while (std::chrono::steady_clock::now() < deadline);
    return std::nullopt;
  }

  void sink_eval(const ripen::LuaScript& script, const std::vector<std::string>& keys,
                 const std::vector<std::string>& args) {
    thread_local std::unique_ptr<ripen::Redis> redis;
    if (!redis) redis = std::make_unique<ripen::Redis>(s_.sink, 2s);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    std::string last;
    do {
      auto r = redis->eval(script, keys, args);
      if (r) return;
      last = r.error().describe();
      std::this_thread::sleep_for(50ms);
    } while (std::chrono::steady_clock::now() < deadline);
    die("sink write (" + script.name + ") failed for 10 s: " + last);
  }

  const Settings& s_;
  ripen::Keys keys_;
  std::atomic<uint64_t> counter_{0};
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ripen-chaos-worker: the chaos suite's worker; records every run in a sink Redis"};
  std::string config_file, sink_url, name;
  app.add_option("--config", config_file, "TOML config file")->required();
  app.add_option("--sink", sink_url, "redis://host:port/db of the sink no fault touches")->required();
  app.add_option("--name", name, "this process's name, in the ledger and ripen's records")->required();
  CLI11_PARSE(app, argc, argv);

  try {
    const ripen::Config config = ripen::load_config(config_file);
    ripen::validate_config(config);
    ripen::setup_logging("ripen-chaos-worker", config.log_level, config.log_format);
    auto sink = ripen::parse_redis_url(sink_url);
    if (!sink) throw ripen::ConfigError("--sink: " + sink.error().message);
    const Settings settings{*sink, ripen::redis_url_of(config), name, config.ns, config.shards};
    Recorder recorder(settings);

    ripen::Worker worker(config, name);
    worker.handle("chaos", [&](const ripen::TaskContext& t) { recorder.run(t); });
    g_worker = &worker;
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    std::signal(SIGPIPE, SIG_IGN);
    worker.run();
    g_worker = nullptr;
    return 0;
  } catch (const ripen::ConfigError& e) {
    std::cerr << "ripen-chaos-worker: config: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ripen-chaos-worker: " << e.what() << "\n";
    return 1;
  }
}
