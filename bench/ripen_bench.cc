// ripen-bench: drives the whole pipeline (producer -> Redis timer wheel ->
// dispatcher -> RabbitMQ -> workers) with N tasks due evenly over a window and
// measures enqueue throughput, end-to-end throughput, and lateness from each
// task's due time to the start of its handler, by Redis's clock.
//
// How lateness is measured without a Redis round trip per task: before the run
// the bench samples Redis TIME a few times and keeps the sample with the
// smallest round trip; offset = redis_us - (before_us + after_us) / 2. A handler
// then computes lateness = (system_clock_now + offset) - due, where due is
// TaskContext::due_ms (the task record's due time, Redis TIME based). The offset
// is measured again after the run to show how far the clocks drifted apart.
//
// Values are recorded in microseconds into ripen::Histogram (its buckets are
// unit-agnostic: exact below 32 units, then ~3% relative error), one histogram
// per handler thread, merged at the end.
//
// Exit status: 0 when every task ran exactly once and none early; 1 for a bad
// flag or start-up failure; 3 when the run finished but a check failed (tasks
// missing at the deadline, duplicates, or tasks that ran before their due time).
#include <amqp.h>  // before amqp_framing.h, which needs its types
#include <amqp_framing.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include "ripen/amqp.h"
#include "ripen/config.h"
#include "ripen/dispatcher.h"
#include "ripen/duration.h"
#include "ripen/keys.h"
#include "ripen/log.h"
#include "ripen/metrics.h"
#include "ripen/producer.h"
#include "ripen/redis.h"
#include "ripen/task_record.h"
#include "ripen/topology.h"
#include "ripen/worker.h"
#include "support.h"

extern char** environ;

namespace {

using namespace ripen::bench;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr const char* kQueue = "bench";
constexpr const char* kTaskType = "bench";

std::atomic<bool> g_interrupted{false};
void on_signal(int) { g_interrupted.store(true); }

// A start-up failure: main prints it on one line and exits 1.
class Fatal : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

int64_t system_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double seconds_since(steady_clock::time_point t) {
  return std::chrono::duration<double>(steady_clock::now() - t).count();
}

// ---- options -------------------------------------------------------------------

struct Options {
  int64_t tasks = 20000;
  std::string window = "10s";
  std::string lead = "2s";
  std::string grace = "60s";
  int payload_bytes = 100;
  int batch = 1000;
  int workers = 2;
  int concurrency = 8;
  int prefetch = 0;
  int dispatchers = 1;
  std::string dispatcher_mode = "child";
  bool external_dispatcher = false;
  std::string dispatcher_bin;
  std::string dispatcher_log;
  std::string ns;
  int shards = 0;
  std::string csv;
  std::string label;
  std::string config_file;
  std::string redis_url;
  std::string amqp_url;
  std::string log_level = "warn";
  int64_t rabbitmq_pid = 0;
  bool keep = false;
  std::string trace;
  int64_t backlog = 0;
  int64_t handler_ms = 0;

  // Resolved.
  int64_t window_ms = 0;
  int64_t lead_ms = 0;
  int64_t grace_ms = 0;
};

int64_t duration_or_throw(const std::string& flag, const std::string& text) {
  auto ms = ripen::parse_duration_ms(text);
  if (!ms) throw Fatal(flag + ": " + ms.error().message);
  return *ms;
}

std::string default_namespace() {
  // Unique per run so concurrent runs (and other people's tests) never meet.
  return fmt::format("bench-{}-{}", static_cast<long long>(std::time(nullptr)), static_cast<long>(getpid()));
}

std::string self_dir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

// ---- machine and process facts ------------------------------------------------------

// Whole-machine CPU time from /proc/stat, in seconds. The servers, the bench and
// whatever else runs on the host share the CPUs: on a small machine what the
// others used explains a good part of the tail.
struct MachineCpu {
  double busy = 0;   // user + nice + system + irq + softirq (+ guest, inside user)
  double idle = 0;   // idle + iowait
  double steal = 0;  // taken by the hypervisor for other guests
};

std::optional<MachineCpu> machine_cpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  if (!(in >> cpu) || cpu != "cpu") return std::nullopt;
  double v[8] = {};
  for (double& x : v) {
    if (!(in >> x)) return std::nullopt;
  }
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  // user nice system idle iowait irq softirq steal
  return MachineCpu{(v[0] + v[1] + v[2] + v[5] + v[6]) / ticks, (v[3] + v[4]) / ticks, v[7] / ticks};
}

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

double thread_cpu_seconds() {
  rusage r{};
  getrusage(RUSAGE_THREAD, &r);
  return rusage_seconds(r);
}

std::string redis_version(ripen::Redis& redis) {
  auto r = redis.command({"INFO", "server"});
  if (!r || !r->is_string()) return "?";
  std::istringstream in(r->str());
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("redis_version:", 0) == 0) {
      line = line.substr(14);
      while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
      return line;
    }
  }
  return "?";
}

// ---- the Redis clock ------------------------------------------------------------------

struct ClockOffset {
  int64_t offset_us = 0;  // redis_time - system_clock
  int64_t rtt_us = 0;     // round trip of the sample used: the offset is good to about half of it
};

ClockOffset estimate_offset(ripen::Redis& redis, int samples) {
  std::optional<ClockOffset> best;
  for (int i = 0; i < samples; ++i) {
    const int64_t before = system_us();
    auto r = redis.command({"TIME"});
    const int64_t after = system_us();
    if (!r || r->size() != 2) {
      throw Fatal("redis TIME: " + (r ? std::string("unexpected reply") : r.error().describe()));
    }
    const int64_t redis_us = r->at(0).integer() * 1'000'000 + r->at(1).integer();
    ClockOffset o{redis_us - (before + after) / 2, after - before};
    if (!best || o.rtt_us < best->rtt_us) best = o;
  }
  return *best;
}

// ---- what the handlers record ---------------------------------------------------------------

// One per handler thread, so recording takes no lock.
struct ThreadRecord {
  ripen::Histogram lateness_us;  // unit: microseconds (see the file comment)
  uint64_t runs = 0;
  uint64_t early = 0;  // handler started before the due time by Redis clock
  int64_t min_lateness_us = INT64_MAX;
  double sum_lateness_us = 0;
  int64_t first_start_us = INT64_MAX;  // Redis clock
  int64_t last_start_us = 0;
  int64_t last_end_us = 0;
  std::vector<std::string> ids;
  std::vector<int64_t> starts_us;          // parallel to ids: handler start, Redis clock
  std::vector<int> threads;                // parallel to ids once merged: which handler thread ran it
  int index = 0;                           // this handler thread's number
  std::map<int, uint64_t> runs_by_worker;  // worker number -> runs

  void merge(const ThreadRecord& o) {
    lateness_us.merge(o.lateness_us);
    runs += o.runs;
    early += o.early;
    min_lateness_us = std::min(min_lateness_us, o.min_lateness_us);
    sum_lateness_us += o.sum_lateness_us;
    first_start_us = std::min(first_start_us, o.first_start_us);
    last_start_us = std::max(last_start_us, o.last_start_us);
    last_end_us = std::max(last_end_us, o.last_end_us);
    ids.insert(ids.end(), o.ids.begin(), o.ids.end());
    starts_us.insert(starts_us.end(), o.starts_us.begin(), o.starts_us.end());
    threads.insert(threads.end(), o.ids.size(), o.index);
    for (const auto& [w, n] : o.runs_by_worker) runs_by_worker[w] += n;
  }
};

class Recorder {
 public:
  // With `ends`, a run counts as done (runs()) once its handler calls on_end().
  Recorder(int64_t offset_us, size_t expected, bool ends) : offset_us_(offset_us), expected_(expected), ends_(ends) {}

  void set_offset(int64_t offset_us) { offset_us_.store(offset_us, std::memory_order_relaxed); }

  // Called first thing in the handler of worker number `worker`.
  void on_task(const ripen::TaskContext& ctx, int worker) {
    const int64_t offset = offset_us_.load(std::memory_order_relaxed);
    const int64_t start_us = system_us() + offset;
    ThreadRecord& r = local();
    const int64_t lateness = start_us - ctx.due_ms * 1000;
    r.lateness_us.record(lateness);
    ++r.runs;
    if (lateness < 0) ++r.early;
    r.min_lateness_us = std::min(r.min_lateness_us, lateness);
    r.sum_lateness_us += static_cast<double>(lateness);
    r.first_start_us = std::min(r.first_start_us, start_us);
    r.last_start_us = std::max(r.last_start_us, start_us);
    r.ids.push_back(ctx.id);
    r.starts_us.push_back(start_us);
    r.last_end_us = std::max(r.last_end_us, system_us() + offset);
    ++r.runs_by_worker[worker];
    if (!ends_) runs_.fetch_add(1, std::memory_order_release);
  }

  // Called last thing in a handler that does more than record its start.
  void on_end() {
    ThreadRecord& r = local();
    r.last_end_us = std::max(r.last_end_us, system_us() + offset_us_.load(std::memory_order_relaxed));
    runs_.fetch_add(1, std::memory_order_release);
  }

  uint64_t runs() const { return runs_.load(std::memory_order_acquire); }

  // Call once the handler threads are stopped.
  ThreadRecord merged() {
    std::lock_guard lock(mu_);
    ThreadRecord all;
    for (const auto& r : records_) all.merge(*r);
    return all;
  }

 private:
  ThreadRecord& local() {
    thread_local Recorder* owner = nullptr;
    thread_local ThreadRecord* record = nullptr;
    if (owner != this) {
      std::lock_guard lock(mu_);
      records_.push_back(std::make_unique<ThreadRecord>());
      record = records_.back().get();
      record->index = static_cast<int>(records_.size()) - 1;
      record->ids.reserve(expected_ / 8 + 16);
      record->starts_us.reserve(expected_ / 8 + 16);
      owner = this;
    }
    return *record;
  }

  std::atomic<int64_t> offset_us_;
  size_t expected_;
  bool ends_;
  std::atomic<uint64_t> runs_{0};
  std::mutex mu_;
  std::vector<std::unique_ptr<ThreadRecord>> records_;  // owned here: outlive their threads
};

// ---- dispatcher child processes ------------------------------------------------------------

struct Child {
  pid_t pid = -1;
  std::string log;
  std::optional<double> cpu_at_start;  // seconds, when the enqueue began
  std::optional<double> cpu_at_done;   // when the last handler ran (or the deadline)
  double cpu_total = -1;               // from wait4 at exit
  int exit_status = -1;
};

// Starts `bin` with the URLs and namespace in its environment (not in argv, where
// `ps` would show a password), stdout and stderr appended to `log`.
pid_t spawn_dispatcher(const std::string& bin, const std::vector<std::string>& args, const ripen::Config& config,
                       const std::string& log) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    if (kv.rfind("RIPEN_REDIS_URL=", 0) == 0 || kv.rfind("RIPEN_AMQP_URL=", 0) == 0 ||
        kv.rfind("RIPEN_NAMESPACE=", 0) == 0) {
      continue;
    }
    env_strings.emplace_back(kv);
  }
  env_strings.push_back("RIPEN_REDIS_URL=" + config.redis_url);
  env_strings.push_back("RIPEN_AMQP_URL=" + config.amqp_url);
  env_strings.push_back("RIPEN_NAMESPACE=" + config.ns);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  std::vector<std::string> argv_strings = {bin};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw Fatal("starting " + bin + ": " + std::strerror(rc));
  return pid;
}

bool child_alive(pid_t pid) {
  int status = 0;
  return waitpid(pid, &status, WNOHANG) == 0;
}

// SIGTERM, wait up to `grace`, then SIGKILL; records total CPU from wait4.
void stop_child(Child& c, milliseconds grace) {
  if (c.pid <= 0) return;
  kill(c.pid, SIGTERM);
  const auto deadline = steady_clock::now() + grace;
  while (true) {
    int status = 0;
    rusage ru{};
    const pid_t r = wait4(c.pid, &status, WNOHANG, &ru);
    if (r == c.pid) {
      c.cpu_total = rusage_seconds(ru);
      c.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      c.pid = -1;
      return;
    }
    if (r < 0) {  // already reaped (it died during the run)
      c.pid = -1;
      return;
    }
    if (steady_clock::now() >= deadline) {
      spdlog::warn("dispatcher pid {} did not exit within {} ms of SIGTERM; killing it", c.pid, grace.count());
      kill(c.pid, SIGKILL);
      grace = milliseconds(5000);
      const auto again = steady_clock::now() + grace;
      while (wait4(c.pid, &status, WNOHANG, &ru) == 0 && steady_clock::now() < again) {
        std::this_thread::sleep_for(milliseconds(20));
      }
      c.cpu_total = rusage_seconds(ru);
      c.exit_status = 137;
      c.pid = -1;
      return;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

// The dispatcher's last "dispatched: ... lateness n=.. p50=.." line: its own
// measure of claim time - due time.
std::string last_dispatch_line(const std::string& log) {
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line)) {
    if (line.find("dispatched: ") != std::string::npos) last = line;
  }
  const auto at = last.find("dispatched: ");
  return at == std::string::npos ? "" : last.substr(at + 12);
}

// The value of "name=N" in a dispatcher's report line; 0 when absent.
uint64_t counter(const std::string& line, const std::string& name) {
  const auto at = line.find(" " + name + "=");
  const size_t from = at != std::string::npos ? at + name.size() + 2
                                              : (line.rfind(name + "=", 0) == 0 ? name.size() + 1 : std::string::npos);
  if (from == std::string::npos) return 0;
  return std::strtoull(line.c_str() + from, nullptr, 10);
}

// ---- AMQP helpers ------------------------------------------------------------------------------

// Consumers on a queue, by passive declare; nullopt on error (the connection is
// torn down by Amqp::check and comes back on the next call).
std::optional<uint32_t> consumer_count(ripen::Amqp& amqp, const std::string& queue) {
  if (!amqp.ensure_connected()) return std::nullopt;
  auto* ok = amqp_queue_declare(amqp.raw(), ripen::Amqp::kChannel, amqp_cstring_bytes(queue.c_str()), 1, 0, 0, 0,
                                amqp_empty_table);
  if (!amqp.check(amqp_get_rpc_reply(amqp.raw()), "inspecting queue '" + queue + "'")) return std::nullopt;
  return ok->consumer_count;
}

// ---- cleanup -------------------------------------------------------------------------------------

// ---- the report ---------------------------------------------------------------------------------

std::string ms(double us) { return fmt::format("{:.2f}", us / 1000.0); }

std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string opt_seconds(const std::optional<double>& v) { return v ? fmt::format("{:.2f}", *v) : ""; }

struct Results {
  // Enqueue
  double enqueue_s = 0;
  double enqueue_rate = 0;
  double producer_cpu_s = 0;
  uint64_t enqueue_errors = 0;
  uint64_t enqueued_after_due = 0;
  size_t envelope_bytes = 0;
  // Due window (Redis clock, us)
  int64_t first_due_us = 0;
  int64_t last_due_us = 0;
  int64_t enqueue_done_us = 0;
  // Handlers
  ThreadRecord handled;
  uint64_t unique = 0;
  uint64_t duplicates = 0;
  uint64_t missing = 0;
  uint64_t unknown = 0;
  bool complete = false;
  double completion_rate = 0;
  // Cross-checks from the components
  ripen::Histogram worker_lateness_ms;  // start-script time - due, ms
  uint64_t worker_duplicates = 0, worker_retried = 0, worker_dead = 0;
  std::string dispatcher_lateness;   // claim time - due, from the dispatcher(s)
  uint64_t dispatcher_claimed = 0;   // tasks the dispatcher(s) claimed
  uint64_t dispatcher_messages = 0;  // and the broker messages they went in
  // Clocks
  ClockOffset offset_start, offset_end;
  // CPU seconds over the run (enqueue start -> last handler)
  double bench_cpu_s = 0;
  std::optional<double> dispatcher_cpu_s;
  std::optional<double> dispatcher_cpu_total_s;
  std::optional<double> redis_cpu_s;
  std::optional<double> rabbitmq_cpu_s;
  double run_wall_s = 0;
  double dispatch_rate = 0;           // tasks confirmed by the broker per second, first due -> last dispatched_ms
  std::optional<MachineCpu> machine;  // over the run
  std::string load_start, load_end;
};

// Runs per worker, e.g. "50/14/0/0" (workers that ran nothing included).
std::string runs_per_worker(const Options& o, const Results& r) {
  std::string s;
  for (int w = 0; w < o.workers; ++w) {
    auto it = r.handled.runs_by_worker.find(w);
    s += fmt::format("{}{}", w == 0 ? "" : "/", it == r.handled.runs_by_worker.end() ? 0 : it->second);
  }
  return s;
}

// With --handler-ms: the last due time -> the last handler's end, against the
// least it could be (every handler of every worker busy from the due time on).
struct Makespan {
  double ms = 0, ideal_ms = 0, ratio = 0;
};
std::optional<Makespan> makespan(const Options& o, const Results& r) {
  if (o.handler_ms <= 0 || r.handled.runs == 0) return std::nullopt;
  const int64_t handlers = static_cast<int64_t>(o.workers) * o.concurrency;
  Makespan m;
  m.ms = static_cast<double>(r.handled.last_end_us - r.last_due_us) / 1000.0;
  m.ideal_ms = static_cast<double>((o.tasks + handlers - 1) / handlers * o.handler_ms);
  m.ratio = m.ms / m.ideal_ms;
  return m;
}

std::string tasks_per_message(const Results& r) {
  if (r.dispatcher_messages == 0) return "n/a";
  return fmt::format("{:.2f}", static_cast<double>(r.dispatcher_claimed) / static_cast<double>(r.dispatcher_messages));
}

void print_report(std::ostream& out, const Options& o, const Machine& m, const std::string& redis_ver,
                  const Results& r) {
  const auto& h = r.handled;
  out << "ripen-bench" << (o.label.empty() ? "" : " [" + o.label + "]") << "\n";
  out << fmt::format("machine     {} CPUs ({}), {} RAM, {}, host {}\n", m.cpus, m.cpu_model, m.memory, m.kernel,
                     m.host);
  out << fmt::format(
      "servers     redis {}; clock offset system->redis {:+.3f} ms (rtt {} us), after the run "
      "{:+.3f} ms (drift {:+.3f} ms)\n",
      redis_ver, static_cast<double>(r.offset_start.offset_us) / 1000.0, r.offset_start.rtt_us,
      static_cast<double>(r.offset_end.offset_us) / 1000.0,
      static_cast<double>(r.offset_end.offset_us - r.offset_start.offset_us) / 1000.0);
  out << fmt::format(
      "parameters  tasks={} window={} ({:.0f}/s) lead={} payload={}B (envelope {}B) batch={} workers={}x{} "
      "dispatcher={}{} shards={} namespace={}\n",
      o.tasks, o.window,
      o.window_ms > 0 ? static_cast<double>(o.tasks) * 1000.0 / static_cast<double>(o.window_ms) : 0.0, o.lead,
      o.payload_bytes, r.envelope_bytes, o.batch, o.workers, o.concurrency, o.dispatcher_mode,
      o.dispatcher_mode == "external" ? "" : fmt::format(" x{}", o.dispatchers), o.shards, o.ns);
  out << fmt::format(
      "enqueue     {} tasks in {:.3f} s = {:.0f} tasks/s (producer thread CPU {:.2f} s){}{}\n", o.tasks, r.enqueue_s,
      r.enqueue_rate, r.producer_cpu_s, r.enqueue_errors > 0 ? fmt::format(", {} ERRORS", r.enqueue_errors) : "",
      r.enqueue_done_us > r.first_due_us
          ? fmt::format(", overlapped the due window by {} ms ({} tasks enqueued after their due time)",
                        ms(static_cast<double>(r.enqueue_done_us - r.first_due_us)), r.enqueued_after_due)
          : fmt::format(", finished {} ms before the first due time",
                        ms(static_cast<double>(r.first_due_us - r.enqueue_done_us))));
  out << fmt::format("completed   {}/{}{}; throughput {:.0f} tasks/s over first due -> last handler end ({} s)\n",
                     h.runs, o.tasks, r.complete ? "" : " (INCOMPLETE at the deadline)", r.completion_rate,
                     fmt::format("{:.3f}", static_cast<double>(h.last_end_us - r.first_due_us) / 1e6));
  out << fmt::format(
      "dispatched  {:.0f} tasks/s taken to publish, first due -> last dispatched_ms; {} tasks in {} messages ({})\n",
      r.dispatch_rate, r.dispatcher_claimed, r.dispatcher_messages, tasks_per_message(r));
  out << fmt::format("drain       last handler started {} ms after the last due time\n",
                     ms(static_cast<double>(h.last_start_us - r.last_due_us)));
  out << fmt::format("per worker  {} runs\n", runs_per_worker(o, r));
  if (auto span = makespan(o, r)) {
    out << fmt::format(
        "makespan    {:.1f} ms from the last due time to the last handler's end; ideal {:.0f} ms "
        "({} handlers of {} ms): {:.2f}x\n",
        span->ms, span->ideal_ms, o.workers * o.concurrency, o.handler_ms, span->ratio);
  }
  if (h.runs > 0) {
    out << fmt::format(
        "lateness    due -> handler start, Redis clock: p50={} p99={} p99.9={} max={} ms (min={} mean={} ms)\n",
        ms(static_cast<double>(h.lateness_us.quantile(0.5))), ms(static_cast<double>(h.lateness_us.quantile(0.99))),
        ms(static_cast<double>(h.lateness_us.quantile(0.999))), ms(static_cast<double>(h.lateness_us.max())),
        ms(static_cast<double>(h.min_lateness_us)), ms(h.sum_lateness_us / static_cast<double>(h.runs)));
  }
  out << fmt::format("              dispatcher (claim - due, ms): {}\n",
                     r.dispatcher_lateness.empty() ? "n/a" : r.dispatcher_lateness);
  out << fmt::format("              workers (start script - due): {}\n", r.worker_lateness_ms.summary());
  out << fmt::format(
      "checks      early={} duplicates={} missing={} unknown={} (workers: duplicate deliveries={} "
      "retried={} dead={}) -> {}\n",
      h.early, r.duplicates, r.missing, r.unknown, r.worker_duplicates, r.worker_retried, r.worker_dead,
      (h.early == 0 && r.duplicates == 0 && r.missing == 0 && r.complete) ? "OK" : "FAILED");
  const double wall = r.run_wall_s;
  auto pct = [&](const std::optional<double>& v) {
    return v ? fmt::format("{:.2f} s ({:.0f}% of one core)", *v, wall > 0 ? *v / wall * 100 : 0) : "n/a";
  };
  out << fmt::format(
      "cpu         over the run ({:.2f} s wall, enqueue start -> last handler): bench process {}; "
      "dispatcher {}{}; redis {}; rabbitmq {}\n",
      wall, pct(r.bench_cpu_s), pct(r.dispatcher_cpu_s),
      r.dispatcher_cpu_total_s ? fmt::format(" (lifetime {:.2f} s)", *r.dispatcher_cpu_total_s) : "",
      pct(r.redis_cpu_s), pct(r.rabbitmq_cpu_s));
  if (r.machine) {
    const double total = r.machine->busy + r.machine->idle + r.machine->steal;
    const double ours =
        r.bench_cpu_s + r.dispatcher_cpu_s.value_or(0) + r.redis_cpu_s.value_or(0) + r.rabbitmq_cpu_s.value_or(0);
    out << fmt::format(
        "            machine: {:.2f} of {:.2f} CPU-s busy ({:.0f}%), steal {:.2f} s; not ours (other processes) "
        "~{:.2f} s; load average {} -> {}\n",
        r.machine->busy, total, total > 0 ? r.machine->busy / total * 100 : 0, r.machine->steal,
        std::max(0.0, r.machine->busy - ours), r.load_start, r.load_end);
  }
}

// One CSV row per run; the columns are listed once, next to their values.
void append_csv(const std::string& path, const Options& o, const Machine& m, const Results& r) {
  const auto& h = r.handled;
  const auto q = [&](double qq) { return ms(static_cast<double>(h.lateness_us.quantile(qq))); };
  const auto f2 = [](double v) { return fmt::format("{:.2f}", v); };
  const std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::string busy_pct, other;
  if (r.machine) {
    const double total = r.machine->busy + r.machine->idle + r.machine->steal;
    busy_pct = fmt::format("{:.0f}", total > 0 ? r.machine->busy / total * 100 : 0);
    other = f2(std::max(0.0, r.machine->busy - r.bench_cpu_s - r.dispatcher_cpu_s.value_or(0) -
                                 r.redis_cpu_s.value_or(0) - r.rabbitmq_cpu_s.value_or(0)));
  }
  const std::vector<std::pair<const char*, std::string>> row = {
      {"timestamp", stamp},
      {"label", csv_quote(o.label)},
      {"tasks", std::to_string(o.tasks)},
      {"window_s", fmt::format("{:.3f}", static_cast<double>(o.window_ms) / 1000.0)},
      {"lead_s", fmt::format("{:.3f}", static_cast<double>(o.lead_ms) / 1000.0)},
      {"payload_bytes", std::to_string(o.payload_bytes)},
      {"batch", std::to_string(o.batch)},
      {"workers", std::to_string(o.workers)},
      {"concurrency", std::to_string(o.concurrency)},
      {"prefetch", o.prefetch > 0 ? std::to_string(o.prefetch) : "auto"},
      {"dispatcher_mode", o.dispatcher_mode},
      {"dispatchers", std::to_string(o.dispatcher_mode == "external" ? 0 : o.dispatchers)},
      {"enqueue_s", fmt::format("{:.3f}", r.enqueue_s)},
      {"enqueue_rate", fmt::format("{:.0f}", r.enqueue_rate)},
      {"enqueued_after_due", std::to_string(r.enqueued_after_due)},
      {"completed", std::to_string(h.runs)},
      {"completion_rate", fmt::format("{:.0f}", r.completion_rate)},
      {"drain_ms", ms(static_cast<double>(h.last_start_us - r.last_due_us))},
      {"p50_ms", q(0.5)},
      {"p99_ms", q(0.99)},
      {"p999_ms", q(0.999)},
      {"max_ms", ms(static_cast<double>(h.lateness_us.max()))},
      {"mean_ms", ms(h.runs > 0 ? h.sum_lateness_us / static_cast<double>(h.runs) : 0)},
      {"early", std::to_string(h.early)},
      {"duplicates", std::to_string(r.duplicates)},
      {"missing", std::to_string(r.missing)},
      {"dispatcher_lateness", csv_quote(r.dispatcher_lateness)},
      {"tasks_per_message", tasks_per_message(r)},
      {"bench_cpu_s", f2(r.bench_cpu_s)},
      {"dispatcher_cpu_s", opt_seconds(r.dispatcher_cpu_s)},
      {"redis_cpu_s", opt_seconds(r.redis_cpu_s)},
      {"rabbitmq_cpu_s", opt_seconds(r.rabbitmq_cpu_s)},
      {"run_wall_s", f2(r.run_wall_s)},
      {"machine_busy_pct", busy_pct},
      {"other_cpu_s", other},
      {"cpus", std::to_string(m.cpus)},
      {"cpu_model", csv_quote(m.cpu_model)},
  };
  const bool fresh = !std::filesystem::exists(path) || std::filesystem::file_size(path) == 0;
  std::ofstream out(path, std::ios::app);
  if (!out) {
    spdlog::error("cannot append to {}", path);
    return;
  }
  std::string header, values;
  for (const auto& [name, value] : row) {
    header += (header.empty() ? "" : ",") + std::string(name);
    values += (values.empty() ? "" : ",") + value;
  }
  if (fresh) out << header << "\n";
  out << values << "\n";
}

// One line of key=value figures for scripts (bench/run) to pick up. CPU is in
// seconds per 100k tasks; "workers" is the bench process without its producer
// thread (the in-process workers and the bench's own bookkeeping).
void print_result_line(std::ostream& out, const Options& o, const Results& r) {
  const auto& h = r.handled;
  const double per100k = 100'000.0 / static_cast<double>(std::max<int64_t>(o.tasks, 1));
  const auto span = makespan(o, r);
  auto cpu = [&](const std::optional<double>& v) { return v ? fmt::format("{:.2f}", *v * per100k) : "na"; };
  out << fmt::format(
      "result label={} tasks={} window_s={:.3f} backlog={} enqueue_rate={:.0f} dispatch_rate={:.0f} "
      "completion_rate={:.0f} p50_ms={} p99_ms={} p999_ms={} max_ms={} drain_ms={} early={} duplicates={} "
      "missing={} cpu100k_dispatcher={} cpu100k_workers={} cpu100k_redis={} cpu100k_rabbitmq={} "
      "cpu100k_producer={} tasks_per_message={} per_worker={} makespan_ms={} ideal_ms={} makespan_ratio={}\n",
      o.label.empty() ? "-" : o.label, o.tasks, static_cast<double>(o.window_ms) / 1000.0, o.backlog, r.enqueue_rate,
      r.dispatch_rate, r.completion_rate, ms(static_cast<double>(h.lateness_us.quantile(0.5))),
      ms(static_cast<double>(h.lateness_us.quantile(0.99))), ms(static_cast<double>(h.lateness_us.quantile(0.999))),
      ms(static_cast<double>(h.lateness_us.max())), ms(static_cast<double>(h.last_start_us - r.last_due_us)), h.early,
      r.duplicates, r.missing, cpu(r.dispatcher_cpu_s), cpu(r.bench_cpu_s - r.producer_cpu_s), cpu(r.redis_cpu_s),
      cpu(r.rabbitmq_cpu_s), cpu(r.producer_cpu_s), tasks_per_message(r), runs_per_worker(o, r),
      span ? fmt::format("{:.1f}", span->ms) : "na", span ? fmt::format("{:.0f}", span->ideal_ms) : "na",
      span ? fmt::format("{:.3f}", span->ratio) : "na");
}

// ---- the run --------------------------------------------------------------------------------------

class Bench {
 public:
  Bench(Options o, ripen::Config config)
      : o_(std::move(o)),
        config_(std::move(config)),
        keys_(config_.ns, config_.shards),
        redis_(*ripen::parse_redis_url(config_.redis_url)),
        amqp_(*ripen::parse_amqp_url(config_.amqp_url)) {}

  ~Bench() {
    stop_all();
    if (created_) cleanup();  // a run cut short by an error still leaves nothing behind
  }

  int run() {
    machine_ = describe_machine();
    if (auto st = redis_.connect(); !st) throw Fatal("redis " + redis_.url().redacted() + ": " + st.error().message);
    redis_ver_ = redis_version(redis_);
    // The topology first, so a passive declare can count the workers' consumers.
    ripen::Status st = ripen::declare_exchanges(amqp_, keys_);
    if (st) st = ripen::declare_queue(amqp_, keys_, kQueue);
    if (!st) throw Fatal("amqp " + amqp_.url().redacted() + ": " + st.error().message);
    created_ = true;

    start_dispatchers();
    // The recorder needs the clock offset; measure it before the workers exist.
    results_.offset_start = estimate_offset(redis_, 25);
    recorder_ =
        std::make_unique<Recorder>(results_.offset_start.offset_us, static_cast<size_t>(o_.tasks), o_.handler_ms > 0);
    start_workers();
    wait_ready();
    // Measured again now that everything is up: the first estimate came before
    // the threads started competing for the CPUs.
    results_.offset_start = estimate_offset(redis_, 25);
    recorder_->set_offset(results_.offset_start.offset_us);

    enqueue_and_wait();
    results_.offset_end = estimate_offset(redis_, 25);
    stop_all();
    collect();
    measure_dispatch();
    print_report(std::cout, o_, machine_, redis_ver_, results_);
    print_result_line(std::cout, o_, results_);
    if (!o_.csv.empty()) append_csv(o_.csv, o_, machine_, results_);
    if (!o_.trace.empty()) write_trace();
    cleanup();
    const auto& h = results_.handled;
    return (h.early == 0 && results_.duplicates == 0 && results_.missing == 0 && results_.complete) ? 0 : 3;
  }

 private:
  void start_dispatchers() {
    if (o_.dispatcher_mode == "inprocess") {
      for (int i = 0; i < o_.dispatchers; ++i) {
        dispatchers_.push_back(std::make_unique<ripen::Dispatcher>(config_, fmt::format("bench-d{}", i)));
        auto* d = dispatchers_.back().get();
        threads_.emplace_back([d] { d->run(); });
      }
    } else if (o_.dispatcher_mode == "child") {
      std::vector<std::string> args = {"--shards", std::to_string(config_.shards), "--log-level", "info"};
      if (!o_.config_file.empty()) args.insert(args.begin(), {"--config", o_.config_file});
      for (int i = 0; i < o_.dispatchers; ++i) {
        Child c;
        c.log = o_.dispatcher_log.empty()
                    ? fmt::format("/tmp/ripen-bench-{}-dispatcher{}.log", config_.ns, i)
                    : (o_.dispatchers == 1 ? o_.dispatcher_log : fmt::format("{}.{}", o_.dispatcher_log, i));
        auto a = args;
        a.insert(a.end(), {"--id", fmt::format("bench-d{}", i)});
        c.pid = spawn_dispatcher(o_.dispatcher_bin, a, config_, c.log);
        std::cerr << fmt::format("ripen-bench: dispatcher {} started as pid {} (log {})\n", i, c.pid, c.log);
        children_.push_back(std::move(c));
      }
    }
  }

  void start_workers() {
    for (int i = 0; i < o_.workers; ++i) {
      auto w = std::make_unique<ripen::Worker>(config_, fmt::format("bench-w{}", i));
      Recorder* rec = recorder_.get();
      const auto work = milliseconds(o_.handler_ms);
      w->handle(kTaskType, [rec, i, work](const ripen::TaskContext& ctx) {
        rec->on_task(ctx, i);
        if (work.count() > 0) {
          std::this_thread::sleep_for(work);
          rec->on_end();
        }
      });
      auto* wp = w.get();
      workers_.push_back(std::move(w));
      threads_.emplace_back([wp] { wp->run(); });
    }
  }

  // Workers consuming and every shard held by a dispatcher (evenly, when we know
  // how many there are), so start-up and rebalancing do not show up as lateness.
  void wait_ready() {
    const auto deadline = steady_clock::now() + std::chrono::seconds(30);
    const std::string queue = keys_.queue(kQueue);
    bool consumers_ok = false, shards_ok = false;
    std::string why;
    while (steady_clock::now() < deadline && !g_interrupted.load()) {
      check_children();
      auto n = consumer_count(amqp_, queue);
      consumers_ok = n && *n >= static_cast<uint32_t>(o_.workers);
      std::map<std::string, int> per_owner;
      int held = 0;
      for (int s = 0; s < config_.shards; ++s) {
        auto r = redis_.command({"GET", keys_.lease(s)});
        if (r && r->is_string()) {
          ++held;
          const std::string v = r->str();
          ++per_owner[v.substr(0, v.rfind('|'))];
        }
      }
      const int expect = o_.dispatcher_mode == "external" ? 0 : o_.dispatchers;
      const int fair = (config_.shards + std::max(expect, 1) - 1) / std::max(expect, 1);
      shards_ok = held == config_.shards;
      if (expect > 0) {
        shards_ok = shards_ok && static_cast<int>(per_owner.size()) == expect;
        for (const auto& [owner, count] : per_owner) shards_ok = shards_ok && count <= fair;
      }
      why = fmt::format("consumers {}/{}, shards held {}/{} by {} dispatcher(s)", n ? static_cast<int>(*n) : -1,
                        o_.workers, held, config_.shards, per_owner.size());
      if (consumers_ok && shards_ok) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    if (!consumers_ok || !shards_ok) {
      if (!consumers_ok || o_.dispatcher_mode == "external") throw Fatal("not ready after 30 s: " + why);
      // Uneven is still a valid run; say so.
      std::cerr << "ripen-bench: warning: dispatchers did not balance their shards in 30 s (" << why << ")\n";
    }
    std::cerr << "ripen-bench: ready: " << why << "\n";
  }

  void check_children() {
    for (auto& c : children_) {
      if (c.pid > 0 && !child_alive(c.pid)) {
        c.pid = -1;
        throw Fatal("the dispatcher child exited early; see " + c.log);
      }
    }
  }

  int64_t redis_now_us() const { return system_us() + results_.offset_start.offset_us; }

  void enqueue_and_wait() {
    ripen::Producer producer(config_);
    if (o_.backlog > 0) {
      // Far-future tasks first: they sit in the same shards' due sets the whole run.
      const int64_t year_ms = 365LL * 24 * 3600 * 1000;
      const std::string backlog_pad(static_cast<size_t>(o_.payload_bytes), 'x');
      for (int64_t i = 0; i < o_.backlog; i += 1000) {
        std::vector<ripen::Envelope> batch(static_cast<size_t>(std::min<int64_t>(1000, o_.backlog - i)));
        for (auto& e : batch) {
          e.queue = kQueue;
          e.type = "backlog";
          e.payload = backlog_pad;
          e.delay_ms = year_ms;
        }
        for (const auto& r : producer.enqueue_batch(std::move(batch))) {
          if (!r) throw Fatal("backlog enqueue: " + r.error().describe());
        }
      }
      std::cerr << fmt::format("ripen-bench: {} tasks due in a year are in the wheel\n", o_.backlog);
    }
    std::string pad(static_cast<size_t>(o_.payload_bytes), 'x');
    const int64_t start_ms = redis_now_us() / 1000;
    const int64_t first_due = start_ms + o_.lead_ms;
    results_.first_due_us = first_due * 1000;
    const int64_t n = o_.tasks;
    auto due_of = [&](int64_t i) { return n > 1 ? first_due + (o_.window_ms * i) / (n - 1) : first_due; };
    results_.last_due_us = due_of(n - 1) * 1000;
    {
      ripen::Envelope probe;
      probe.queue = kQueue;
      probe.type = kTaskType;
      probe.payload = pad;
      probe.id = std::string(26, '0');
      probe.created_ms = start_ms;
      probe.max_attempts = 3;
      results_.envelope_bytes = ripen::encode_envelope(probe).size();
    }
    // CPU baselines: everything from here to the last handler counts.
    const auto run_t0 = steady_clock::now();
    const double self0 = self_cpu_seconds();
    const auto redis0 = redis_cpu_seconds(redis_);
    const auto rabbit0 = proc_cpu_seconds(o_.rabbitmq_pid);
    for (auto& c : children_) c.cpu_at_start = proc_cpu_seconds(c.pid);
    const double thread0 = thread_cpu_seconds();
    const auto machine0 = machine_cpu();
    results_.load_start = loadavg();

    // Enqueue in due order, so a dispatcher is woken once per shard head and the
    // earliest tasks are stored first: when the enqueue outlasts the lead, it
    // overlaps the window from its far end.
    ids_.reserve(static_cast<size_t>(n));
    const auto t0 = steady_clock::now();
    for (int64_t i = 0; i < n && !g_interrupted.load(); i += o_.batch) {
      std::vector<ripen::Envelope> batch;
      const int64_t end = std::min<int64_t>(n, i + o_.batch);
      batch.reserve(static_cast<size_t>(end - i));
      for (int64_t k = i; k < end; ++k) {
        ripen::Envelope e;
        e.queue = kQueue;
        e.type = kTaskType;
        e.payload = pad;
        e.due_ms = due_of(k);
        batch.push_back(std::move(e));
      }
      auto replies = producer.enqueue_batch(std::move(batch));
      const int64_t stored_by_ms = redis_now_us() / 1000;
      for (int64_t k = i; k < end; ++k) {
        auto& r = replies[static_cast<size_t>(k - i)];
        if (!r) {
          if (results_.enqueue_errors++ == 0) spdlog::error("enqueue: {}", r.error().describe());
          continue;
        }
        ids_.push_back(r->id.get());
        // Stored no later than the reply came back: a task due before then may
        // have been stored after its due time, and its lateness is not the
        // dispatcher's.
        if (r->due_ms < stored_by_ms) ++results_.enqueued_after_due;
      }
    }
    results_.enqueue_s = seconds_since(t0);
    results_.enqueue_done_us = redis_now_us();
    results_.producer_cpu_s = thread_cpu_seconds() - thread0;
    results_.enqueue_rate = static_cast<double>(ids_.size()) / std::max(results_.enqueue_s, 1e-9);
    std::cerr << fmt::format("ripen-bench: enqueued {} tasks in {:.3f} s; first due in {:.3f} s\n", ids_.size(),
                             results_.enqueue_s,
                             static_cast<double>(results_.first_due_us - results_.enqueue_done_us) / 1e6);

    // Wait for the handlers.
    const auto deadline = t0 + milliseconds(o_.lead_ms + o_.window_ms + o_.grace_ms);
    auto next_progress = steady_clock::now() + std::chrono::seconds(2);
    const auto expected = static_cast<uint64_t>(ids_.size());
    while (recorder_->runs() < expected && steady_clock::now() < deadline && !g_interrupted.load()) {
      check_children();
      std::this_thread::sleep_for(milliseconds(5));
      if (steady_clock::now() >= next_progress) {
        std::cerr << fmt::format("ripen-bench: {}/{} handlers run, {:+.1f} s from the first due time\n",
                                 recorder_->runs(), expected,
                                 static_cast<double>(redis_now_us() - results_.first_due_us) / 1e6);
        next_progress += std::chrono::seconds(2);
      }
    }
    results_.complete = recorder_->runs() >= expected && results_.enqueue_errors == 0 && !g_interrupted.load();
    results_.run_wall_s = seconds_since(run_t0);
    results_.bench_cpu_s = self_cpu_seconds() - self0;
    if (auto m1 = machine_cpu(); m1 && machine0) {
      results_.machine = MachineCpu{m1->busy - machine0->busy, m1->idle - machine0->idle, m1->steal - machine0->steal};
    }
    results_.load_end = loadavg();
    if (auto r1 = redis_cpu_seconds(redis_); r1 && redis0) results_.redis_cpu_s = *r1 - *redis0;
    if (auto b1 = proc_cpu_seconds(o_.rabbitmq_pid); b1 && rabbit0) results_.rabbitmq_cpu_s = *b1 - *rabbit0;
    double dispatcher_cpu = 0;
    bool have = !children_.empty();
    for (auto& c : children_) {
      c.cpu_at_done = proc_cpu_seconds(c.pid);
      if (c.cpu_at_done && c.cpu_at_start) {
        dispatcher_cpu += *c.cpu_at_done - *c.cpu_at_start;
      } else {
        have = false;
      }
    }
    if (have) results_.dispatcher_cpu_s = dispatcher_cpu;
  }

  void stop_all() {
    for (auto& d : dispatchers_) d->stop();
    for (auto& w : workers_) w->stop();
    for (auto& c : children_) stop_child(c, milliseconds(15000));
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  // Dispatch rate from the records' dispatched_ms (Redis TIME): the broker's
  // confirms as the dispatcher recorded them.
  void measure_dispatch() {
    int64_t last = 0;
    int64_t stamped = 0;
    for (size_t i = 0; i < ids_.size(); i += 1000) {
      const std::vector<std::string> ids(ids_.begin() + static_cast<std::ptrdiff_t>(i),
                                         ids_.begin() + static_cast<std::ptrdiff_t>(std::min(ids_.size(), i + 1000)));
      for (const auto& r : ripen::read_task_records(redis_, keys_, ids)) {
        if (r && r->dispatched_ms) {
          last = std::max(last, *r->dispatched_ms);
          ++stamped;
        }
      }
    }
    const double span_s = static_cast<double>(last * 1000 - results_.first_due_us) / 1e6;
    results_.dispatch_rate = span_s > 0 ? static_cast<double>(stamped) / span_s : 0;
  }

  void collect() {
    results_.handled = recorder_->merged();
    auto& h = results_.handled;
    const int64_t span_us = h.last_end_us - results_.first_due_us;
    results_.completion_rate = span_us > 0 ? static_cast<double>(h.runs) * 1e6 / static_cast<double>(span_us) : 0;
    std::vector<std::string> ran = h.ids;
    std::sort(ran.begin(), ran.end());
    const auto unique_end = std::unique(ran.begin(), ran.end());
    results_.unique = static_cast<uint64_t>(unique_end - ran.begin());
    results_.duplicates = h.runs - results_.unique;
    ran.erase(unique_end, ran.end());
    std::sort(ids_.begin(), ids_.end());
    std::vector<std::string> diff;
    std::set_difference(ids_.begin(), ids_.end(), ran.begin(), ran.end(), std::back_inserter(diff));
    results_.missing = diff.size();
    diff.clear();
    std::set_difference(ran.begin(), ran.end(), ids_.begin(), ids_.end(), std::back_inserter(diff));
    results_.unknown = diff.size();

    for (const auto& w : workers_) {
      auto s = w->stats();
      results_.worker_lateness_ms.merge(s.lateness);
      results_.worker_duplicates += s.duplicates;
      results_.worker_retried += s.retried;
      results_.worker_dead += s.dead;
    }
    if (!dispatchers_.empty()) {
      ripen::Histogram all;
      for (const auto& d : dispatchers_) {
        const auto s = d->stats();
        all.merge(s.lateness);
        results_.dispatcher_claimed += s.claimed;
        results_.dispatcher_messages += s.messages;
      }
      results_.dispatcher_lateness = all.summary();
    }
    std::vector<std::string> lines;
    std::optional<double> total;
    for (const auto& c : children_) {
      auto line = last_dispatch_line(c.log);
      results_.dispatcher_claimed += counter(line, "claimed");
      results_.dispatcher_messages += counter(line, "messages");
      const auto at = line.find("lateness ");
      if (at != std::string::npos) lines.push_back(line.substr(at + 9));
      if (c.cpu_total >= 0) total = total.value_or(0) + c.cpu_total;
    }
    results_.dispatcher_cpu_total_s = total;
    if (!lines.empty()) {
      results_.dispatcher_lateness = lines.front();
      for (size_t i = 1; i < lines.size(); ++i) results_.dispatcher_lateness += " | " + lines[i];
    }
  }

  // Per-task timeline, from the task records (Redis TIME, ms) and the handler's
  // own start stamp (Redis clock by offset, us).
  void write_trace() {
    std::ofstream out(o_.trace);
    if (!out) {
      spdlog::error("cannot write {}", o_.trace);
      return;
    }
    out << "id,due_ms,created_ms,dispatched_ms,started_ms,finished_ms,handler_start_us,thread\n";
    const auto& h = results_.handled;
    const size_t chunk = 1000;
    auto opt = [](const std::optional<int64_t>& v) { return v ? std::to_string(*v) : std::string(); };
    for (size_t i = 0; i < h.ids.size(); i += chunk) {
      const size_t end = std::min(h.ids.size(), i + chunk);
      const std::vector<std::string> ids(h.ids.begin() + static_cast<std::ptrdiff_t>(i),
                                         h.ids.begin() + static_cast<std::ptrdiff_t>(end));
      auto records = ripen::read_task_records(redis_, keys_, ids);
      for (size_t k = i; k < end; ++k) {
        out << h.ids[k];
        const auto& r = records[k - i];
        if (r) {
          out << ',' << r->due_ms << ',' << opt(r->created_ms) << ',' << opt(r->dispatched_ms) << ','
              << opt(r->started_ms) << ',' << opt(r->finished_ms);
        } else {
          out << ",,,,,";
        }
        out << ',' << h.starts_us[k] << ',' << h.threads[k] << '\n';
      }
    }
    std::cerr << "ripen-bench: per-task trace written to " << o_.trace << "\n";
  }

  void cleanup() {
    created_ = false;
    if (o_.keep) {
      std::cerr << "ripen-bench: --keep: leaving namespace '" << config_.ns << "' in place\n";
      return;
    }
    const uint64_t n = delete_namespace_keys(redis_, config_.ns);
    delete_amqp_names(amqp_, keys_, {kQueue, "default"});
    std::cerr << fmt::format("ripen-bench: cleaned up namespace '{}': {} Redis keys, its queues and exchanges\n",
                             config_.ns, n);
  }

  Options o_;
  ripen::Config config_;
  ripen::Keys keys_;
  ripen::Redis redis_;
  ripen::Amqp amqp_;
  Machine machine_;
  std::string redis_ver_;
  bool created_ = false;
  std::unique_ptr<Recorder> recorder_;
  std::vector<std::unique_ptr<ripen::Dispatcher>> dispatchers_;
  std::vector<std::unique_ptr<ripen::Worker>> workers_;
  std::vector<Child> children_;
  std::vector<std::thread> threads_;
  std::vector<std::string> ids_;
  Results results_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ripen-bench: enqueue throughput, end-to-end throughput and lateness (due -> handler start, by Redis "
      "TIME) of the ripen pipeline"};
  Options o;
  app.add_option("--tasks", o.tasks, "tasks to schedule")->check(CLI::Range(int64_t{1}, int64_t{100'000'000}));
  app.add_option("--window", o.window, "tasks are due evenly over this window; 0s = all at one instant (burst)");
  app.add_option("--lead", o.lead, "the first task is due this long after the enqueue starts");
  app.add_option("--grace", o.grace, "how long to wait past the window's end before giving up");
  app.add_option("--payload-bytes", o.payload_bytes, "payload size (a JSON string of this many bytes)")
      ->check(CLI::Range(0, 200'000));
  app.add_option("--batch", o.batch, "tasks per enqueue_batch call (one pipelined round trip)")
      ->check(CLI::Range(1, 100'000));
  app.add_option("--handler-ms", o.handler_ms, "each run sleeps this long after recording its start (default 0)")
      ->check(CLI::Range(int64_t{0}, int64_t{600'000}));
  app.add_option("--workers", o.workers, "in-process Worker instances")->check(CLI::Range(1, 64));
  app.add_option("--concurrency", o.concurrency, "handler threads per worker")->check(CLI::Range(1, 1024));
  app.add_option("--prefetch", o.prefetch,
                 "unacked deliveries per worker (default: 0, the worker's automatic prefetch)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--dispatchers", o.dispatchers, "dispatchers to run (child processes or in-process)")
      ->check(CLI::Range(1, 64));
  app.add_option("--dispatcher-mode", o.dispatcher_mode,
                 "child: run ripen-dispatcher as child processes (its CPU measured apart); inprocess: Dispatcher "
                 "objects in this process; external: one is already running for --namespace")
      ->check(CLI::IsMember({"child", "inprocess", "external"}));
  app.add_flag("--external-dispatcher", o.external_dispatcher, "same as --dispatcher-mode external");
  app.add_option("--dispatcher-bin", o.dispatcher_bin,
                 "ripen-dispatcher binary for child mode (default: ../dispatcher/ripen-dispatcher next to this one)");
  app.add_option("--dispatcher-log", o.dispatcher_log,
                 "child mode: the dispatcher's log file (default /tmp/ripen-bench-<ns>-dispatcher<i>.log)");
  app.add_option("--namespace", o.ns, "key and queue namespace (default: unique per run; required with external)");
  app.add_option("--shards", o.shards, "timer-wheel shards (default: the config's, 16)")->check(CLI::Range(1, 1024));
  app.add_option("--csv", o.csv, "append a result row to this CSV file (header written when new)");
  app.add_option("--label", o.label, "scenario name for the report and the CSV row");
  app.add_option("--config", o.config_file, "TOML config file, also passed to dispatcher children");
  app.add_option("--redis-url", o.redis_url, "default: $RIPEN_REDIS_URL or the config");
  app.add_option("--amqp-url", o.amqp_url, "default: $RIPEN_AMQP_URL or the config");
  app.add_option("--rabbitmq-pid", o.rabbitmq_pid, "the broker's (beam) PID, to report its CPU time");
  app.add_option("--log-level", o.log_level, "log level of the in-process worker and dispatcher (default warn)");
  app.add_option("--trace", o.trace,
                 "write one CSV line per task (due, created, dispatched, started, finished ms from its record; "
                 "handler start us) to this file before cleaning up");
  app.add_option("--backlog", o.backlog,
                 "tasks due a year from now put in the same wheel first: lateness with a full wheel")
      ->check(CLI::Range(int64_t{0}, int64_t{100'000'000}));
  app.add_flag("--keep", o.keep, "leave the namespace's keys and queues in place after the run");
  CLI11_PARSE(app, argc, argv);

  try {
    if (o.external_dispatcher) o.dispatcher_mode = "external";
    o.window_ms = duration_or_throw("--window", o.window);
    o.lead_ms = duration_or_throw("--lead", o.lead);
    o.grace_ms = duration_or_throw("--grace", o.grace);
    if (o.dispatcher_mode == "external" && o.ns.empty()) {
      throw Fatal("--external-dispatcher needs --namespace: the one the running dispatcher serves");
    }
    if (o.dispatcher_mode == "child") {
      if (o.dispatcher_bin.empty()) o.dispatcher_bin = self_dir() + "/../dispatcher/ripen-dispatcher";
      if (access(o.dispatcher_bin.c_str(), X_OK) != 0) {
        throw Fatal("dispatcher binary " + o.dispatcher_bin + " is not executable (build it, or --dispatcher-bin)");
      }
    }

    ripen::Config config = ripen::load_config(o.config_file.empty() ? std::nullopt : std::optional(o.config_file));
    if (!o.redis_url.empty()) config.redis_url = o.redis_url;
    if (!o.amqp_url.empty()) config.amqp_url = o.amqp_url;
    if (o.ns.empty()) o.ns = default_namespace();
    config.ns = o.ns;
    if (o.shards != 0) config.shards = o.shards;
    o.shards = config.shards;
    config.worker.queues = {kQueue};
    config.worker.concurrency = o.concurrency;
    config.worker.prefetch = o.prefetch;
    config.dispatcher.queues = {kQueue};
    config.log_level = o.log_level;
    ripen::validate_config(config);
    ripen::setup_logging("ripen-bench", config.log_level, config.log_format);

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGPIPE, SIG_IGN);

    Bench bench(o, config);
    return bench.run();
  } catch (const ripen::ConfigError& e) {
    std::cerr << "ripen-bench: config: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ripen-bench: " << e.what() << "\n";
    return 1;
  }
}
