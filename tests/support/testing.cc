#include "testing.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "ripen/amqp.h"
#include "ripen/keys.h"
#include "ripen/redis.h"

namespace ripen::testing {

std::string unique_namespace(const std::string& label) {
  static std::mt19937_64 rng{std::random_device{}()};
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06llx", static_cast<unsigned long long>(rng() & 0xFFFFFF));
  return "t-" + label + "-" + buf;
}

Config test_config(const std::string& ns) {
  Config c;
  apply_env(c, process_env());
  c.ns = ns;
  c.shards = 4;
  c.dispatcher.max_poll_ms = 200;
  c.dispatcher.shard_lease_ms = 2000;
  c.dispatcher.inflight_lease_ms = 3000;
  c.retry_backoff = {50, 500};
  c.record_retention_ms = 3'600'000;
  c.log_level = "debug";
  return c;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds every) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return condition();
    std::this_thread::sleep_for(every);
  }
}

std::string binary(const std::string& relative) { return std::string(RIPEN_BUILD_DIR) + "/" + relative; }

std::string write_config_file(const Config& c, const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "ripen-tests";
  std::filesystem::create_directories(dir);
  auto path = dir / (name + ".toml");
  std::ofstream out(path);
  auto q = [](const std::string& s) { return "\"" + s + "\""; };
  auto list = [&](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + q(v[i]);
    return s + "]";
  };
  out << "redis_url = " << q(c.redis_url) << "\n"
      << "amqp_url = " << q(c.amqp_url) << "\n"
      << "namespace = " << q(c.ns) << "\n"
      << "shards = " << c.shards << "\n"
      << "default_max_attempts = " << c.default_max_attempts << "\n"
      << "record_retention = " << c.record_retention_ms << "\n"
      << "[retry]\nbase = " << c.retry_backoff.base_ms << "\ncap = " << c.retry_backoff.cap_ms << "\n"
      << "[log]\nlevel = " << q(c.log_level) << "\nformat = " << q(c.log_format) << "\n"
      << "[dispatcher]\nbatch = " << c.dispatcher.batch << "\nconfirm_window = " << c.dispatcher.confirm_window
      << "\ninflight_lease = " << c.dispatcher.inflight_lease_ms << "\nshard_lease = " << c.dispatcher.shard_lease_ms
      << "\nmax_poll = " << c.dispatcher.max_poll_ms << "\nauto_declare = " << (c.dispatcher.auto_declare ? "true" : "false")
      << "\nqueues = " << list(c.dispatcher.queues) << "\n"
      << "[worker]\nqueues = " << list(c.worker.queues) << "\nconcurrency = " << c.worker.concurrency
      << "\nexec_timeout = " << c.worker.exec_timeout_ms << "\nshutdown_grace = " << c.worker.shutdown_grace_ms << "\n";
  if (!c.worker.exec.empty()) {
    out << "[worker.exec]\n";
    for (const auto& [type, cmd] : c.worker.exec) out << q(type) << " = " << q(cmd) << "\n";
  }
  return path.string();
}

namespace {

std::vector<char*> c_args(const std::string& path, const std::vector<std::string>& args,
                          std::vector<std::string>& storage) {
  storage.clear();
  storage.push_back(path);
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> out;
  for (auto& s : storage) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

void apply_child_env(const std::map<std::string, std::string>& env) {
  for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

}  // namespace

Child::Child(const std::string& path, const std::vector<std::string>& args,
             const std::map<std::string, std::string>& env) {
  static int counter = 0;
  auto dir = std::filesystem::temp_directory_path() / "ripen-tests";
  std::filesystem::create_directories(dir);
  log_ = (dir / (std::filesystem::path(path).filename().string() + "-" + std::to_string(getpid()) + "-" +
                 std::to_string(counter++) + ".log"))
             .string();
  std::vector<std::string> storage;
  auto argv = c_args(path, args, storage);
  pid_ = fork();
  if (pid_ == 0) {
    int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setpgid(0, 0);
    apply_child_env(env);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
}

Child::~Child() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
}

void Child::signal(int sig) {
  if (pid_ > 0 && !reaped_) kill(pid_, sig);
}

bool Child::running() {
  if (reaped_) return false;
  pid_t r = waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) reaped_ = true;
  return !reaped_;
}

int Child::wait(std::chrono::milliseconds timeout) {
  if (!wait_until([&] { return !running(); }, timeout)) return INT_MIN;
  if (WIFEXITED(status_)) return WEXITSTATUS(status_);
  return -WTERMSIG(status_);
}

std::string Child::output() const { return read_file(log_); }

CommandResult run_command(const std::string& path, const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env) {
  auto dir = std::filesystem::temp_directory_path() / "ripen-tests";
  std::filesystem::create_directories(dir);
  static int counter = 0;
  const std::string base = (dir / ("cmd-" + std::to_string(getpid()) + "-" + std::to_string(counter++))).string();
  const std::string out_path = base + ".out", err_path = base + ".err";
  std::vector<std::string> storage;
  auto argv = c_args(path, args, storage);
  pid_t pid = fork();
  if (pid == 0) {
    int o = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(o, 1);
    dup2(e, 2);
    apply_child_env(env);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CommandResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  std::filesystem::remove(out_path);
  std::filesystem::remove(err_path);
  return r;
}

void cleanup_namespace(const Config& config, const std::vector<std::string>& queues) {
  Keys keys(config.ns, config.shards);
  if (auto url = parse_redis_url(config.redis_url)) {
    Redis redis(*url);
    std::string cursor = "0";
    do {
      auto r = redis.command({"SCAN", cursor, "MATCH", config.ns + ":*", "COUNT", "1000"});
      if (!r) break;
      cursor = r->at(0).str();
      auto batch = r->at(1);
      std::vector<std::string> del = {"DEL"};
      for (size_t i = 0; i < batch.size(); ++i) del.push_back(batch.at(i).str());
      if (del.size() > 1) (void)redis.command(del);
    } while (cursor != "0");
  }
  if (auto url = parse_amqp_url(config.amqp_url)) {
    Amqp amqp(*url);
    for (const auto& q : queues) {
      (void)amqp.delete_queue(keys.queue(q));
      (void)amqp.delete_queue(keys.dead_queue(q));
    }
    (void)amqp.delete_queue(keys.dead_queue(Keys::kUnroutable));
  }
}

}  // namespace ripen::testing
