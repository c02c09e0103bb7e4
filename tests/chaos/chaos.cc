// The chaos suite: real dispatcher and worker processes on the real servers,
// one fault per test, and a ledger that says whether ripen kept its promise:
// no task lost, none started before it was due, no two runs of one task at the
// same time, one effect per task in a downstream that dedupes by idempotency
// key, and a second execution only where a worker was killed after the side
// effect (see ledger.h for the ledger and its clocks).
//
// Each test: a sink Redis of its own (no fault touches it); 2-3
// ripen-dispatcher processes and 2 ripen-chaos-worker processes; a producer
// thread enqueueing numbered tasks in clusters due at one instant (so they
// travel in bundles), some already due, some up to kWindowMs ahead: 30% fail
// their first attempt, 1 in 30 fails for good (it must end dead-lettered), 35%
// run longer than the dispatcher's in-flight lease. Meanwhile the fault, in a
// bounded loop. Then the harness waits until everything is quiet, judges the
// ledger, prints its row of the table, and fails on any broken promise.
//
// Quick form (ctest -L chaos): each fault a minute or so. Long form
// (RIPEN_CHAOS_LONG=1, as tests/chaos/run --long sets it): 200 kills per
// process kind, 20 broker and 20 Redis restarts. RIPEN_CHAOS_TABLE=FILE
// appends each row to FILE as well.
//
// Faults that restart a server restart the one $RIPEN_REDIS_URL /
// $RIPEN_AMQP_URL name, through scripts/chaos-servers, which finds it by port
// among the server sets under .run/; a server the scripts did not start is
// skipped with a message.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ledger.h"
#include "ripen/producer.h"
#include "ripen/task_record.h"
#include "testing.h"

namespace ripen::chaos {
namespace {

using namespace std::chrono_literals;
using ripen::testing::Child;
using ripen::testing::CommandResult;

bool long_form() {
  const char* v = std::getenv("RIPEN_CHAOS_LONG");
  return v != nullptr && std::string(v) == "1";
}

// Quick or long, for counts of injections.
int count(int quick, int long_count) { return long_form() ? long_count : quick; }

// Tasks per second from the producer; at ~1.6 s of handler time per task
// (retries included) that keeps about half of the 12 handlers busy, so a
// killed worker's share still fits in the other's.
constexpr int kTasksPerSecond = 4;
constexpr int64_t kWindowMs = 8000;  // due times up to this far ahead ...
constexpr int64_t kPastMs = 2000;    // ... and up to this far behind (already due)
constexpr int kInflightLeaseMs = 3000;
constexpr int kShardLeaseMs = 2000;
constexpr int kTaskTimeoutMs = 10'000;  // well above the longest handler (5 s)
constexpr int kRetryMs = 8000;          // first retry: uniform in [0, 8 s]

std::vector<std::string> path_env() {
  const char* p = std::getenv("PATH");
  return {p != nullptr ? p : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
}

// The server faults, through scripts/chaos-servers.
class Servers {
 public:
  explicit Servers(const Config& config) {
    auto redis = parse_redis_url(config.redis_url);
    auto amqp = parse_amqp_url(config.amqp_url);
    if (redis) redis_port_ = std::to_string(redis->port);
    if (amqp) amqp_port_ = std::to_string(amqp->port);
  }

  // Empty when the server on that port was started by the scripts (and so can
  // be restarted); else why not.
  std::string why_not_redis() { return why_not(redis_port_, "Redis"); }
  std::string why_not_rabbitmq() { return why_not(amqp_port_, "RabbitMQ"); }

  void restart_redis(bool hard, int down_s) {
    must({"redis-restart", redis_port_, "--down", std::to_string(down_s)}, hard);
  }
  void restart_rabbitmq(bool hard, int down_s) {
    must({"rabbitmq-restart", amqp_port_, "--down", std::to_string(down_s)}, hard);
  }
  void close_connections() {
    must({"rabbitmqctl", amqp_port_, "close_all_connections", "--global", "chaos suite: connections closed"}, false);
  }
  void memory_alarm(int seconds) { must({"memory-alarm", amqp_port_, std::to_string(seconds)}, false); }

 private:
  static CommandResult script(std::vector<std::string> args) {
    return testing::run_command(std::string(RIPEN_SOURCE_DIR) + "/scripts/chaos-servers", args,
                                {{"PATH", path_env().front()}});
  }
  std::string why_not(const std::string& port, const char* what) {
    if (port.empty()) return std::string(what) + " URL does not parse";
    auto r = script({"which", port});
    if (r.code == 0) return "";
    return std::string(what) + " on port " + port + " was not started by scripts/servers or scripts/chaos-servers";
  }
  void must(std::vector<std::string> args, bool hard) {
    if (hard) args.push_back("--hard");
    auto r = script(args);
    ASSERT_EQ(r.code, 0) << "scripts/chaos-servers " << args.front() << ": " << r.out << r.err;
  }

  std::string redis_port_, amqp_port_;
};

// The dispatcher and worker processes, each restartable; a process that exits
// without the harness killing it is reported.
class Fleet {
 public:
  Fleet(const Config& config, std::string config_file, std::string sink_url, std::function<int64_t()> sink_now)
      : env_(testing::child_env(config)),
        file_(std::move(config_file)),
        sink_url_(std::move(sink_url)),
        sink_now_(std::move(sink_now)) {}

  void start(int dispatchers, int workers) {
    dispatchers_.resize(dispatchers);
    workers_.resize(workers);
    for (int i = 0; i < dispatchers; ++i) spawn_dispatcher(i);
    for (int i = 0; i < workers; ++i) spawn_worker(i);
  }

  size_t dispatchers() const { return dispatchers_.size(); }
  size_t workers() const { return workers_.size(); }
  const std::string& worker_name(size_t slot) const { return workers_[slot].name; }
  Child& dispatcher(size_t slot) { return *dispatchers_[slot].child; }

  void kill_dispatcher(size_t slot) {
    reap(dispatchers_[slot]);
    spawn_dispatcher(slot);
  }
  void kill_worker(size_t slot) {
    const std::string name = workers_[slot].name;
    reap(workers_[slot]);
    kills_.push_back({name, sink_now_()});
    spawn_worker(slot);
  }

  // Processes that exited on their own since the last look; each is restarted.
  std::vector<std::string> exited() {
    std::vector<std::string> out;
    auto look = [&](std::vector<Proc>& procs, bool dispatcher) {
      for (size_t i = 0; i < procs.size(); ++i) {
        if (procs[i].child->running()) continue;
        const int status = procs[i].child->wait(0ms);
        out.push_back(procs[i].name + " exited by itself (status " + std::to_string(status) +
                      "); log: " + procs[i].child->log_path());
        if (dispatcher) {
          spawn_dispatcher(i);
        } else {
          spawn_worker(i);
        }
      }
    };
    look(dispatchers_, true);
    look(workers_, false);
    return out;
  }

  const std::vector<Kill>& kills() const { return kills_; }
  const std::vector<std::string>& logs() const { return logs_; }

 private:
  struct Proc {
    std::unique_ptr<Child> child;
    std::string name;
    int generation = 0;
  };

  void spawn_dispatcher(size_t slot) {
    Proc& p = dispatchers_[slot];
    p.name = "d" + std::to_string(slot + 1) + "g" + std::to_string(p.generation++);
    p.child = std::make_unique<Child>(testing::binary("dispatcher/ripen-dispatcher"),
                                      std::vector<std::string>{"--config", file_, "--id", p.name}, env_);
    logs_.push_back(p.child->log_path());
  }
  void spawn_worker(size_t slot) {
    Proc& p = workers_[slot];
    p.name = "w" + std::to_string(slot + 1) + "g" + std::to_string(p.generation++);
    p.child = std::make_unique<Child>(
        testing::binary("tests/chaos/ripen-chaos-worker"),
        std::vector<std::string>{"--config", file_, "--sink", sink_url_, "--name", p.name}, env_);
    logs_.push_back(p.child->log_path());
  }
  static void reap(Proc& p) {
    p.child->signal(SIGCONT);  // harmless when running; a stopped one must not stay stopped
    p.child->signal(SIGKILL);
    const int status = p.child->wait(10s);
    EXPECT_EQ(status, -SIGKILL) << p.name << " did not die of SIGKILL; log: " << p.child->log_path();
  }

  std::map<std::string, std::string> env_;
  std::string file_, sink_url_;
  std::function<int64_t()> sink_now_;
  std::vector<Proc> dispatchers_, workers_;
  std::vector<Kill> kills_;
  std::vector<std::string> logs_;
};

// Rows of this process's run, printed together at its end.
std::mutex g_rows_mu;
std::vector<Row> g_rows;

class ChaosTable : public ::testing::Environment {
 public:
  void TearDown() override {
    std::lock_guard lock(g_rows_mu);
    // A single test printed its row already; tests/chaos/run prints the file.
    if (g_rows.size() < 2 || std::getenv("RIPEN_CHAOS_TABLE") != nullptr) return;
    std::cout << "\nchaos ledger (" << (long_form() ? "long" : "quick") << " form)\n" << table_header() << "\n";
    for (const auto& r : g_rows) std::cout << table_row(r) << "\n";
  }
};
[[maybe_unused]] auto* const g_table = ::testing::AddGlobalTestEnvironment(new ChaosTable);

class Chaos : public testing::NamespaceTest {
 protected:
  void SetUp() override {
    NamespaceTest::SetUp();
    sink_server_ = std::make_unique<testing::RedisServer>(testing::free_port());
    ASSERT_TRUE(sink_server_->wait_ready(10s)) << sink_server_->child().output();
    sink_ = std::make_unique<Redis>(*parse_redis_url(sink_server_->url()), 2s);

    config_.log_level = "info";
    config_.worker.concurrency = 6;
    config_.worker.lease_grace_ms = 1000;
    config_.worker.shutdown_grace_ms = 1000;
    config_.dispatcher.inflight_lease_ms = kInflightLeaseMs;
    config_.dispatcher.shard_lease_ms = kShardLeaseMs;
    config_.dispatcher.bundle = 8;
    config_.retry_backoff = {kRetryMs, kRetryMs};
  }

  int64_t sink_now() {
    for (int i = 0; i < 50; ++i) {
      if (auto t = sink_->time_ms()) return *t;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "the sink Redis does not answer";
    return 0;
  }

  // Runs the scenario: fleet up, producer on, `fault` (returns how many
  // injections it made; the fault is over when it returns), quiescence, verdict.
  void scenario(const std::string& name, int dispatchers, const std::function<int(Fleet&)>& fault) {
    const std::string file = testing::write_config_file(config_, config_.ns);
    Fleet fleet(config_, file, sink_server_->url(), [this] { return sink_now(); });
    fleet.start(dispatchers, 2);
    fleet_ = &fleet;

    std::atomic<bool> stop_producing{false};
    std::thread producer([&] { produce(stop_producing); });
    std::this_thread::sleep_for(3s);  // load before the first fault
    const int injected = fault(fleet);
    const int64_t fault_end = sink_now();
    stop_producing = true;
    producer.join();
    for (const auto& e : fleet.exited()) unexpected_.push_back(e);

    Row row;
    row.fault = name;
    row.faults = injected;
    int64_t quiet_at = 0;
    row.quiescent = wait_quiet(fleet, long_form() ? 120s : 60s, quiet_at);
    for (const auto& e : fleet.exited()) unexpected_.push_back(e);
    int64_t last_due = 0;
    for (const auto& t : plan_) last_due = std::max(last_due, t.due_ms);
    const int64_t from = std::max(fault_end, last_due);
    row.recovery_s = static_cast<double>((row.quiescent ? quiet_at : sink_now()) - from) / 1000.0;

    LedgerInput in = gather(fleet);
    row.verdict = judge(in);
    report(row, fleet);
    fleet_ = nullptr;
  }

  // Keeps checking the processes while a fault loop paces itself.
  void pause(std::chrono::milliseconds d) {
    const auto until = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < until) {
      if (fleet_ != nullptr) {
        for (const auto& e : fleet_->exited()) unexpected_.push_back(e);
      }
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(200ms, until - std::chrono::steady_clock::now()));
    }
  }

  // Open runs of a worker, by the sink's ledger.
  int64_t open_runs(const std::string& worker) {
    auto r = sink_->command({"SCARD", "chaos:open:" + worker});
    return r ? r->integer() : 0;
  }

  // Runs `inject` n times, `gap` apart (no pause after the last: the fault
  // is over when this returns). Returns n.
  int repeat(int n, std::chrono::milliseconds gap, const std::function<void(int)>& inject) {
    for (int i = 0; i < n; ++i) {
      if (i > 0) pause(gap);
      inject(i);
    }
    return n;
  }

  // The fault loop for worker kills: waits (up to 5 s) for a worker to be
  // mid-task by the ledger, kills it, starts a new one in its place.
  int kill_workers(Fleet& fleet, int kills) {
    return repeat(kills, 2500ms, [&](int i) {
      const size_t slot = static_cast<size_t>(i) % fleet.workers();
      testing::wait_until([&] { return open_runs(fleet.worker_name(slot)) > 0; }, 5s, 20ms);
      fleet.kill_worker(slot);
    });
  }

 private:
  void produce(const std::atomic<bool>& stop) {
    Producer producer(config_);
    std::mt19937 rng(std::random_device{}());
    auto pct = [&] { return std::uniform_int_distribution<int>(0, 99)(rng); };
    auto between = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
    int next = 1;
    while (!stop.load()) {
      const auto round = std::chrono::steady_clock::now();
      auto now = producer.redis().time_ms();
      if (!now) {
        std::this_thread::sleep_for(200ms);
        continue;
      }
      std::vector<Envelope> batch;
      std::vector<PlannedTask> planned;
      while (static_cast<int>(batch.size()) < kTasksPerSecond) {
        // A cluster: tasks due at the same instant, which the dispatcher sends
        // in one bundle (when bundle > 1).
        const int64_t due = *now + between(-kPastMs, kWindowMs);
        const int size = static_cast<int>(between(1, 6));
        for (int k = 0; k < size; ++k) {
          PlannedTask t;
          t.n = next++;
          // A failing first attempt is short, so that its bundle stays open
          // behind it (the long tasks in it still run) with its retry waiting
          // in the wheel: a window in which a redelivery must not run it.
          t.fail_first = pct() < 30;
          t.permanent = !t.fail_first && pct() < 5;
          const int64_t ms = pct() < 35 ? between(kInflightLeaseMs + 500, 5000) : between(20, 300);
          Envelope e = testing::make_task("chaos", {{"n", t.n},
                                                    {"ms", ms},
                                                    {"fail_first", t.fail_first},
                                                    {"permanent", t.permanent},
                                                    {"fail_ms", between(20, 300)}});
          e.due_ms = due;
          e.idempotency_key = config_.ns + "-task-" + std::to_string(t.n);
          e.timeout_ms = kTaskTimeoutMs;
          e.max_attempts = 50;  // kills spend attempts; the suite is about loss, not exhaustion
          batch.push_back(std::move(e));
          planned.push_back(t);
        }
      }
      enqueue(producer, batch, planned);
      std::this_thread::sleep_until(round + 1s);
    }
  }

  // Enqueues until every task is stored: a failed call is retried with the
  // same idempotency keys, so one that did land is not stored twice.
  void enqueue(Producer& producer, std::vector<Envelope> batch, std::vector<PlannedTask> planned) {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    while (!batch.empty()) {
      auto results = producer.enqueue_batch(batch);
      std::vector<Envelope> again;
      std::vector<PlannedTask> again_planned;
      for (size_t i = 0; i < results.size(); ++i) {
        if (results[i]) {
          planned[i].id = results[i]->id.get();
          planned[i].due_ms = results[i]->due_ms;
          std::lock_guard lock(plan_mu_);
          plan_.push_back(planned[i]);
        } else {
          again.push_back(batch[i]);
          again_planned.push_back(planned[i]);
        }
      }
      batch = std::move(again);
      planned = std::move(again_planned);
      if (batch.empty()) break;
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << batch.size() << " tasks could not be enqueued for 120 s: "
                      << producer.enqueue_batch(batch).front().error().describe();
        return;
      }
      std::this_thread::sleep_for(200ms);
    }
  }

  // Quiet: every task ended in ripen's records, the wheel and the task queue
  // are empty, no run is open in the ledger (but a killed worker's), and the
  // ledger has not grown for 3 s. Waited for as long as runs keep coming (a
  // long fault loop leaves a backlog the fleet works off) up to half an hour;
  // `stall` without a new run in the ledger is a failure: something is stuck.
  bool wait_quiet(Fleet& fleet, std::chrono::seconds stall, int64_t& quiet_at) {
    auto redis = testing::connect_redis(config_);
    const Keys keys(config_.ns, config_.shards);
    std::vector<std::string> ids;
    for (const auto& t : plan_) ids.push_back(t.id);
    std::optional<std::chrono::steady_clock::time_point> since;
    int64_t runs_seen = -1;
    auto progress = std::chrono::steady_clock::now();
    const auto cap = progress + std::chrono::minutes(30);
    bool quiet = false;
    testing::wait_until(
        [&] {
          if (std::chrono::steady_clock::now() - progress > stall || std::chrono::steady_clock::now() > cap)
            return true;
          for (const auto& e : fleet.exited()) unexpected_.push_back(e);
          auto still = [&] {
            since.reset();
            return false;
          };
          auto runs = sink_->command({"LLEN", "chaos:runs"});
          if (!runs) return still();
          if (runs->integer() != runs_seen) {
            runs_seen = runs->integer();
            progress = std::chrono::steady_clock::now();
            since.reset();
          }
          for (size_t w = 0; w < fleet.workers(); ++w) {
            if (open_runs(fleet.worker_name(w)) > 0) return still();
          }
          if (testing::due_count(*redis, keys) != 0 || testing::inflight_count(*redis, keys) != 0) return still();
          for (const auto& r : read_task_records(*redis, keys, ids)) {
            if (!r) return still();
            const auto& s = r->state;
            if (s != "succeeded" && s != "dead" && s != "cancelled" && s != "discarded") return still();
          }
          auto amqp = testing::connect_amqp(config_);
          if (testing::message_count(*amqp, keys.queue("default")) != 0) return still();
          if (!since) {
            since = std::chrono::steady_clock::now();
            quiet_at = sink_now();
          }
          quiet = std::chrono::steady_clock::now() - *since >= 3s;
          return quiet;
        },
        std::chrono::minutes(31), 500ms);
    return quiet;
  }

  LedgerInput gather(Fleet& fleet) {
    LedgerInput in;
    in.tasks = plan_;
    in.kills = fleet.kills();

    auto tokens = sink_->command({"LRANGE", "chaos:runs", "0", "-1"});
    EXPECT_TRUE(tokens.ok());
    if (tokens) {
      for (size_t i = 0; i < tokens->size(); ++i) sink_->append({"HGETALL", "chaos:run:" + tokens->at(i).str()});
      auto replies = sink_->flush();
      EXPECT_TRUE(replies.ok());
      for (size_t i = 0; replies && i < replies->size(); ++i) {
        const auto& h = (*replies)[i];
        if (!h) continue;
        std::map<std::string, std::string> f;
        for (size_t k = 0; k + 1 < h->size(); k += 2) f[h->at(k).str()] = h->at(k + 1).str();
        auto num = [&](const char* key) -> std::optional<int64_t> {
          auto it = f.find(key);
          if (it == f.end() || it->second.empty()) return std::nullopt;
          // Scores come back as Redis formats doubles; whole ms still parse exactly.
          return static_cast<int64_t>(std::stod(it->second));
        };
        RunRecord r;
        r.token = tokens->at(i).str();
        r.n = static_cast<int>(num("n").value_or(0));
        r.id = f["id"];
        r.attempt = static_cast<int>(num("attempt").value_or(0));
        r.worker = f["worker"];
        r.given_due_ms = num("given_due").value_or(0);
        r.ripen_now_ms = num("ripen_now");
        r.wheel_due_ms = num("wheel_due");
        r.start_ms = num("start").value_or(0);
        r.end_ms = num("end");
        r.outcome = f["outcome"] == "ok"       ? RunOutcome::ok
                    : f["outcome"] == "failed" ? RunOutcome::failed
                                               : RunOutcome::open;
        r.idempotency_key = f["idem"];
        in.runs.push_back(std::move(r));
      }
    }

    std::map<int, bool> planned;
    for (const auto& t : plan_) planned[t.n] = true;
    std::string cursor = "0";
    do {
      auto r = sink_->command({"SCAN", cursor, "MATCH", "chaos:effect:*", "COUNT", "1000"});
      if (!r) break;
      cursor = r->at(0).str();
      for (size_t i = 0; i < r->at(1).size(); ++i) sink_->append({"GET", r->at(1).at(i).str()});
      auto values = sink_->flush();
      for (size_t i = 0; values && i < values->size(); ++i) {
        const int n = (*values)[i] ? static_cast<int>((*values)[i]->view().integer()) : 0;
        if (planned.count(n) != 0) {
          ++in.dedup_effects[n];
        } else {
          ++in.dedup_effects_unknown;
        }
      }
    } while (cursor != "0");

    const Keys keys(config_.ns, config_.shards);
    auto amqp = testing::connect_amqp(config_);
    while (auto letter = testing::get_message(*amqp, keys.dead_queue("default"))) {
      auto doc = nlohmann::json::parse(letter->body, nullptr, false);
      if (doc.is_object() && doc.contains("id") && doc["id"].is_string()) {
        in.dead_letters.insert(doc["id"].get<std::string>());
      }
    }

    auto redis = testing::connect_redis(config_);
    std::vector<std::string> ids;
    for (const auto& t : plan_) ids.push_back(t.id);
    auto records = read_task_records(*redis, keys, ids);
    for (size_t i = 0; i < ids.size(); ++i) {
      in.final_state[ids[i]] = records[i] ? records[i]->state : "(unreadable: " + records[i].error().message + ")";
    }
    return in;
  }

  void report(const Row& row, const Fleet& fleet) {
    std::cout << "\n" << table_header() << "\n" << table_row(row) << "\n";
    {
      std::lock_guard lock(g_rows_mu);
      g_rows.push_back(row);
    }
    if (const char* file = std::getenv("RIPEN_CHAOS_TABLE")) {
      std::error_code ec;
      const bool fresh = std::filesystem::file_size(file, ec) == 0 || ec;
      std::ofstream out(file, std::ios::app);
      if (fresh) out << table_header() << "\n";
      out << table_row(row) << "\n";
    }
    const Verdict& v = row.verdict;
    std::string examples;
    for (const auto& e : v.examples) examples += "\n  " + e;
    if (v.unprobed > 0) {
      std::cout << v.unprobed << " runs started while the ripen Redis was unreadable: their early check used the "
                << "sink's clock (one host, one clock)\n";
    }
    // The logs of the last processes (a long run starts hundreds).
    std::string logs;
    const auto& all = fleet.logs();
    for (size_t i = all.size() > 12 ? all.size() - 12 : 0; i < all.size(); ++i) logs += "\n  " + all[i];
    EXPECT_TRUE(row.quiescent) << "not quiet " << row.recovery_s << " s after the faults ended";
    EXPECT_EQ(v.lost, 0);
    EXPECT_EQ(v.early, 0);
    EXPECT_EQ(v.overlapping, 0);
    EXPECT_EQ(v.unexplained, 0) << "of " << v.duplicates << " duplicate executions";
    EXPECT_EQ(v.dedup_wrong, 0);
    EXPECT_EQ(v.unfinished, 0);
    EXPECT_EQ(v.strays, 0);
    EXPECT_TRUE(unexpected_.empty()) << [&] {
      std::string s;
      for (const auto& e : unexpected_) s += "\n  " + e;
      return s;
    }();
    if (!v.holds() || !row.quiescent) {
      ADD_FAILURE() << "the ledger's first violations:" << examples << "\nprocess logs:" << logs;
    }
  }

  std::unique_ptr<testing::RedisServer> sink_server_;
  std::unique_ptr<Redis> sink_;
  Fleet* fleet_ = nullptr;
  std::mutex plan_mu_;
  std::vector<PlannedTask> plan_;
  std::vector<std::string> unexpected_;
};

TEST_F(Chaos, DispatcherKilled) {
  scenario("dispatcher SIGKILL", 3, [&](Fleet& fleet) {
    return repeat(count(10, 200), 3s,
                  [&](int i) { fleet.kill_dispatcher(static_cast<size_t>(i) % fleet.dispatchers()); });
  });
}

TEST_F(Chaos, DispatcherStoppedPastItsShardLease) {
  scenario("dispatcher SIGSTOP", 3, [&](Fleet& fleet) {
    return repeat(count(4, 50), 2s, [&](int i) {
      Child& d = fleet.dispatcher(static_cast<size_t>(i) % fleet.dispatchers());
      d.signal(SIGSTOP);
      // Past both its shard lease and its in-flight lease: its shards and its
      // unconfirmed tasks are taken over while it sleeps.
      std::this_thread::sleep_for(std::chrono::milliseconds(kShardLeaseMs + kInflightLeaseMs + 1000));
      d.signal(SIGCONT);
    });
  });
}

TEST_F(Chaos, WorkerKilledMidTaskWithBundles) {
  config_.dispatcher.bundle = 8;
  scenario("worker SIGKILL, bundle 8", 2, [&](Fleet& fleet) { return kill_workers(fleet, count(8, 200)); });
}

TEST_F(Chaos, WorkerKilledMidTaskOneTaskPerMessage) {
  config_.dispatcher.bundle = 1;
  scenario("worker SIGKILL, bundle 1", 2, [&](Fleet& fleet) { return kill_workers(fleet, count(8, 200)); });
}

TEST_F(Chaos, AmqpConnectionsClosed) {
  Servers servers(config_);
  if (auto why = servers.why_not_rabbitmq(); !why.empty()) GTEST_SKIP() << why;
  scenario("AMQP connections closed", 2,
           [&](Fleet&) { return repeat(count(6, 100), 3s, [&](int) { servers.close_connections(); }); });
}

TEST_F(Chaos, RabbitmqRestarted) {
  Servers servers(config_);
  if (auto why = servers.why_not_rabbitmq(); !why.empty()) GTEST_SKIP() << why;
  scenario("RabbitMQ restart", 2, [&](Fleet&) {
    // Clean stops and SIGKILLs of the node in turn, each down for 2 s.
    return repeat(count(2, 20), 6s, [&](int i) { servers.restart_rabbitmq(/*hard=*/i % 2 == 1, 2); });
  });
}

TEST_F(Chaos, RedisRestarted) {
  Servers servers(config_);
  if (auto why = servers.why_not_redis(); !why.empty()) GTEST_SKIP() << why;
  scenario("Redis restart (AOF)", 2, [&](Fleet&) {
    return repeat(count(3, 20), 6s, [&](int i) { servers.restart_redis(/*hard=*/i % 2 == 1, 2); });
  });
}

TEST_F(Chaos, BrokerMemoryAlarm) {
  Servers servers(config_);
  if (auto why = servers.why_not_rabbitmq(); !why.empty()) GTEST_SKIP() << why;
  scenario("broker memory alarm 20 s", 2,
           [&](Fleet&) { return repeat(count(1, 5), 10s, [&](int) { servers.memory_alarm(20); }); });
}

}  // namespace
}  // namespace ripen::chaos
