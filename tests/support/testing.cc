#include "testing.h"

#include <amqp.h>  // before amqp_framing.h, which needs its types
#include <amqp_framing.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string_view>
#include <thread>

#include "ripen/amqp.h"
#include "ripen/inspect.h"
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
      << "idempotency_retention = " << c.idempotency_retention_ms << "\n"
      << "redis_startup_timeout = " << c.redis_startup_timeout_ms << "\n"
      << "[retry]\nbase = " << c.retry_backoff.base_ms << "\ncap = " << c.retry_backoff.cap_ms << "\n"
      << "[log]\nlevel = " << q(c.log_level) << "\nformat = " << q(c.log_format) << "\n"
      << "[dispatcher]\nbatch = " << c.dispatcher.batch << "\nconfirm_window = " << c.dispatcher.confirm_window
      << "\nbundle = " << c.dispatcher.bundle << "\ntick = " << c.dispatcher.tick_ms
      << "\ninflight_lease = " << c.dispatcher.inflight_lease_ms << "\nshard_lease = " << c.dispatcher.shard_lease_ms
      << "\nmax_poll = " << c.dispatcher.max_poll_ms << "\nauto_declare = "
      << (c.dispatcher.auto_declare == DispatcherConfig::AutoDeclare::any          ? "\"any\""
          : c.dispatcher.auto_declare == DispatcherConfig::AutoDeclare::configured ? "\"configured\""
                                                                                   : "\"none\"")
      << "\nqueues = " << list(c.dispatcher.queues) << "\n"
      << "[worker]\nqueues = " << list(c.worker.queues) << "\nconcurrency = " << c.worker.concurrency
      << "\nexec_timeout = " << c.worker.exec_timeout_ms << "\nshutdown_grace = " << c.worker.shutdown_grace_ms
      << "\nlease_grace = " << c.worker.lease_grace_ms << "\nunknown_type_grace = " << c.worker.unknown_type_grace_ms
      << "\n";
  if (!c.worker.exec.empty()) {
    out << "[worker.exec]\n";
    for (const auto& [type, cmd] : c.worker.exec) out << q(type) << " = " << q(cmd) << "\n";
  }
  return path.string();
}

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// A path for a child's log or output, unique in this process and across
// processes, whichever thread asks.
std::string scratch_path(const std::string& stem, const std::string& suffix) {
  static std::atomic<int> counter{0};
  auto dir = std::filesystem::temp_directory_path() / "ripen-tests";
  std::filesystem::create_directories(dir);
  return (dir / (stem + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + suffix)).string();
}

// This process's environment with `overrides` set: the child's, built here and
// handed to posix_spawn. setenv in the parent would race with every thread of
// the test reading the environment (getenv in a client library, say).
std::vector<std::string> child_environment(const std::map<std::string, std::string>& overrides) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (overrides.count(std::string(entry.substr(0, entry.find('=')))) == 0) out.emplace_back(entry);
  }
  for (const auto& [name, value] : overrides) out.push_back(name + "=" + value);
  return out;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

struct Redirect {
  std::string out;  // the file stdout goes to
  std::string err;  // the file stderr goes to; the same file as stdout when empty
};

// Starts `path` with `args`, the environment above and its stdout/stderr in
// files, and returns its pid; throws when it cannot be started. The child
// starts with no signal blocked or ignored, whatever the test's threads did
// with theirs, and stdin as the test's; `own_group` puts it in a process group
// of its own.
pid_t spawn(const std::string& path, const std::vector<std::string>& args,
            const std::map<std::string, std::string>& env, const Redirect& to, bool own_group) {
  std::vector<std::string> argv_strings = {path};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<std::string> env_strings = child_environment(env);
  auto argv = c_strings(argv_strings);
  auto envp = c_strings(env_strings);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, to.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (to.err.empty()) {
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 2, to.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  // None of the test's own descriptors: a child holding a copy of a test's
  // socket would keep that connection up after the test closed or broke it.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (own_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);

  pid_t pid = -1;
  const int rc = posix_spawn(&pid, path.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("starting " + path + ": " + std::strerror(rc));
  return pid;
}

// A wait status as Child::wait and run_command report it: the exit code, or
// minus the signal that ended the process.
int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status); }

}  // namespace

Child::Child(const std::string& path, const std::vector<std::string>& args,
             const std::map<std::string, std::string>& env)
    : log_(scratch_path(std::filesystem::path(path).filename().string(), ".log")) {
  pid_ = spawn(path, args, env, {log_, ""}, /*own_group=*/true);
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
  return exit_code(status_);
}

std::string Child::output() const { return read_file(log_); }

CommandResult run_command(const std::string& path, const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env) {
  const std::string base = scratch_path("cmd", "");
  const Redirect to{base + ".out", base + ".err"};
  const pid_t pid = spawn(path, args, env, to, /*own_group=*/false);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  CommandResult r;
  r.code = exit_code(status);
  r.out = read_file(to.out);
  r.err = read_file(to.err);
  std::filesystem::remove(to.out);
  std::filesystem::remove(to.err);
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
    (void)amqp.delete_queue(keys.dead_queue(Keys::kIngress));
    (void)amqp.delete_queue(keys.ingress_queue());
    // Exchanges are durable too; leaving them would grow the broker run by run.
    for (const auto& exchange : {keys.task_exchange(), keys.dead_exchange(), keys.ingress_exchange()}) {
      if (!amqp.ensure_connected()) break;
      amqp_exchange_delete(amqp.raw(), Amqp::kChannel, amqp_cstring_bytes(exchange.c_str()), 0);
      (void)amqp.check(amqp_get_rpc_reply(amqp.raw()), "deleting exchange '" + exchange + "'");
    }
  }
}

// ---- servers -------------------------------------------------------------------

std::unique_ptr<Redis> connect_redis(const Config& config) {
  auto url = parse_redis_url(config.redis_url);
  if (!url) throw std::runtime_error("redis_url: " + url.error().message);
  return std::make_unique<Redis>(*url);
}

std::unique_ptr<Amqp> connect_amqp(const Config& config) {
  auto url = parse_amqp_url(config.amqp_url);
  if (!url) throw std::runtime_error("amqp_url: " + url.error().message);
  return std::make_unique<Amqp>(*url);
}

std::map<std::string, std::string> child_env(const Config& config) {
  return {{"RIPEN_REDIS_URL", config.redis_url},
          {"RIPEN_AMQP_URL", config.amqp_url},
          {"RIPEN_NAMESPACE", config.ns},
          {"RIPEN_SHARDS", std::to_string(config.shards)}};
}

std::vector<std::string> namespace_keys(Redis& redis, const std::string& ns) {
  std::vector<std::string> out;
  std::string cursor = "0";
  do {
    auto r = redis.command({"SCAN", cursor, "MATCH", ns + ":*", "COUNT", "1000"});
    if (!r) throw std::runtime_error("SCAN: " + r.error().message);
    cursor = r->at(0).str();
    auto batch = r->at(1);
    for (size_t i = 0; i < batch.size(); ++i) out.push_back(batch.at(i).str());
  } while (cursor != "0");
  return out;
}

namespace {

int64_t zcard_all(Redis& redis, const Keys& keys, bool inflight) {
  int64_t total = 0;
  for (int s = 0; s < keys.shards(); ++s) {
    auto r = redis.command({"ZCARD", inflight ? keys.inflight(s) : keys.due(s)});
    if (!r) return -1;
    total += r->integer();
  }
  return total;
}

}  // namespace

int64_t due_count(Redis& redis, const Keys& keys) { return zcard_all(redis, keys, false); }
int64_t inflight_count(Redis& redis, const Keys& keys) { return zcard_all(redis, keys, true); }

std::optional<TaskRecord> wait_for_state(Redis& redis, const Keys& keys, const std::string& id,
                                         const std::string& state, std::chrono::milliseconds timeout) {
  std::optional<TaskRecord> last;
  wait_until(
      [&] {
        auto r = read_task_record(redis, keys, id);
        if (r) last = *r;
        return last && last->state == state;
      },
      timeout, std::chrono::milliseconds(20));
  return last;
}

::testing::AssertionResult in_state(const std::optional<TaskRecord>& record, const std::string& state) {
  if (!record) return ::testing::AssertionFailure() << "no record";
  if (record->state == state) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "in state " << record->state
                                       << (record->last_error.empty() ? "" : ": " + record->last_error);
}

std::vector<Envelope> envelopes_of(const std::string& body) {
  auto tasks = decode_message(body, kDefaultMaxEnvelopeBytes);
  EXPECT_TRUE(tasks.ok()) << body;
  std::vector<Envelope> out;
  if (!tasks) return out;
  for (auto& t : *tasks) {
    EXPECT_TRUE(t.envelope.ok()) << t.text;
    if (t.envelope) out.push_back(*t.envelope);
  }
  return out;
}

std::optional<AmqpMessage> get_message(Amqp& amqp, const std::string& amqp_queue) {
  auto got = amqp.get(amqp_queue, /*no_ack=*/true);
  if (!got || !got->has_value()) return std::nullopt;
  return AmqpMessage{std::move((*got)->body), std::move((*got)->message_id), std::move((*got)->headers)};
}

int64_t message_count(Amqp& amqp, const std::string& amqp_queue) {
  auto r = amqp.queue_message_count(amqp_queue);
  return r ? static_cast<int64_t>(*r) : -1;
}

namespace {

// A TCP socket bound to an ephemeral port on 127.0.0.1 (listening if asked);
// returns the fd and sets `port`. Throws naming `who` on failure.
int bind_loopback(const char* who, bool listening, int& port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || (listening && listen(fd, 16) != 0) ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) close(fd);
    throw std::runtime_error(std::string(who) + ": " + std::strerror(errno));
  }
  port = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

int free_port() {
  int port = 0;
  close(bind_loopback("free_port", false, port));
  return port;
}

std::string find_program(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    for (const std::string& d : {dir, std::string("/usr/sbin"), std::string("/sbin")}) {
      std::string candidate = (d.empty() ? "." : d) + "/" + program;
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  return {};
}

RedisServer::RedisServer(int port) : port_(port) {
  auto dir = std::filesystem::temp_directory_path() / "ripen-tests" / ("redis-" + std::to_string(port));
  std::filesystem::create_directories(dir);
  dir_ = dir.string();
  const std::string path = find_program("redis-server");
  if (path.empty()) throw std::runtime_error("redis-server not found in PATH");
  child_ = std::make_unique<Child>(
      path, std::vector<std::string>{"--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", dir_, "--daemonize", "no"});
}

RedisServer::~RedisServer() {
  child_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string RedisServer::url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

bool RedisServer::wait_ready(std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        RedisUrl url;
        url.port = port_;
        // A fresh client each time: a failed one waits out its reconnect backoff.
        Redis redis(url, std::chrono::milliseconds(500));
        auto r = redis.command({"PING"});
        return r && r->str() == "PONG";
      },
      timeout, std::chrono::milliseconds(20));
}

// ---- tasks and handlers ----------------------------------------------------------

Envelope make_task(const std::string& type, nlohmann::json payload, const std::string& queue) {
  Envelope e;
  e.queue = queue;
  e.type = type;
  e.payload = std::move(payload);
  return e;
}

void CallLog::add(Call call) {
  std::lock_guard lock(mu_);
  calls_.push_back(std::move(call));
}

std::vector<CallLog::Call> CallLog::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

std::vector<std::string> CallLog::ids() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& c : calls_) out.push_back(c.id);
  return out;
}

size_t CallLog::size() const {
  std::lock_guard lock(mu_);
  return calls_.size();
}

std::map<std::string, int> CallLog::per_id() const {
  std::lock_guard lock(mu_);
  std::map<std::string, int> out;
  for (const auto& c : calls_) ++out[c.id];
  return out;
}

int CallLog::count(const std::string& id) const {
  auto m = per_id();
  auto it = m.find(id);
  return it == m.end() ? 0 : it->second;
}

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

// ---- fixture -------------------------------------------------------------------

void NamespaceTest::SetUp() {
  // The suite name, lower-cased, labels the namespace so leftovers are traceable.
  std::string label = ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name();
  for (auto& ch : label) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  config_ = test_config(unique_namespace(label));
}

void NamespaceTest::TearDown() { cleanup_namespace(config_, queues_); }

// ---- fault injection -----------------------------------------------------------

namespace {

bool send_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

uint16_t be16(const std::string& b, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(b[at]) << 8) | static_cast<uint8_t>(b[at + 1]));
}

uint32_t be32(const std::string& b, size_t at) { return (static_cast<uint32_t>(be16(b, at)) << 16) | be16(b, at + 2); }

int connect_tcp(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return -1;
  int fd = -1;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

}  // namespace

TcpProxy::TcpProxy(std::string upstream_host, int upstream_port, Protocol protocol)
    : upstream_host_(std::move(upstream_host)), upstream_port_(upstream_port), protocol_(protocol) {
  listen_fd_ = bind_loopback("TcpProxy", true, port_);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TcpProxy::~TcpProxy() {
  stopping_.store(true);
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  acceptor_.join();
  close(listen_fd_);
  {
    std::lock_guard lock(mu_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);  // wakes the pumps' recv()
  }
  for (auto& t : threads_) t.join();
  for (int fd : fds_) close(fd);
}

namespace {

// `text` for the user or password part of a URL: the parsers percent-decode it.
std::string url_encoded(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace

std::string TcpProxy::url_for(const AmqpUrl& base) const {
  const std::string vhost = base.vhost == "/" ? "%2f" : base.vhost;
  return "amqp://" + url_encoded(base.user) + ":" + url_encoded(base.password) + "@127.0.0.1:" + std::to_string(port_) +
         "/" + vhost;
}

std::string TcpProxy::url_for(const RedisUrl& base) const {
  const bool auth = !base.user.empty() || !base.password.empty();
  return "redis://" + (auth ? url_encoded(base.user) + ":" + url_encoded(base.password) + "@" : std::string()) +
         "127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(base.db);
}

void TcpProxy::set_down(bool down) {
  down_.store(down);
  if (!down) return;
  // Every live connection breaks now, as when the server's process dies.
  std::lock_guard lock(mu_);
  for (int fd : fds_) shutdown(fd, SHUT_RDWR);
}

void TcpProxy::accept_loop() {
  while (!stopping_.load()) {
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (down_.load()) {
      close(client);  // connection refused, in effect
      continue;
    }
    int upstream = connect_tcp(upstream_host_, upstream_port_);
    if (upstream < 0) {
      close(client);
      continue;
    }
    std::lock_guard lock(mu_);
    fds_.push_back(client);
    fds_.push_back(upstream);
    threads_.emplace_back([this, client, upstream] { pump(client, upstream, true); });
    threads_.emplace_back([this, client, upstream] { pump(upstream, client, false); });
    ++connections_;
  }
}

// Copies `from` to `to`. For AMQP, client to broker, it walks the AMQP 0-9-1
// framing (an 8-byte protocol header, then frames: type(1) channel(2) size(4)
// payload end(1)) to drop basic.publish (class 60, method 40) and the content
// header and body frames that follow it on the same channel.
void TcpProxy::pump(int from, int to, bool client_to_broker) {
  std::string buf, out;
  bool header_seen = !client_to_broker;
  std::map<uint16_t, bool> dropping;  // channel -> inside a dropped publish
  char chunk[65536];
  while (true) {
    ssize_t n = recv(from, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (!client_to_broker || protocol_ != Protocol::amqp) {
      if (!send_all(to, chunk, static_cast<size_t>(n))) break;
      continue;
    }
    buf.append(chunk, static_cast<size_t>(n));
    out.clear();
    size_t pos = 0;
    if (!header_seen) {
      if (buf.size() < 8) continue;
      out.append(buf, 0, 8);
      pos = 8;
      header_seen = true;
    }
    while (buf.size() - pos >= 7) {
      const auto type = static_cast<uint8_t>(buf[pos]);
      const uint16_t channel = be16(buf, pos + 1);
      const size_t total = 7 + static_cast<size_t>(be32(buf, pos + 3)) + 1;
      if (buf.size() - pos < total) break;
      bool drop = false;
      if (type == AMQP_FRAME_METHOD && total >= 12) {
        const bool publish = be16(buf, pos + 7) == 60 && be16(buf, pos + 9) == 40;
        drop = dropping[channel] = publish && drop_publishes_.load();
        if (drop) ++dropped_;
      } else if (type == AMQP_FRAME_HEADER || type == AMQP_FRAME_BODY) {
        drop = dropping[channel];
      }
      if (!drop) out.append(buf, pos, total);
      pos += total;
    }
    buf.erase(0, pos);
    if (!out.empty() && !send_all(to, out.data(), out.size())) break;
  }
  shutdown(from, SHUT_RDWR);
  shutdown(to, SHUT_RDWR);
}

namespace {

// What each queue has waiting, in flight, running and held, as `ripen stats`
// shows it.
std::string live_summary(const Stats& stats) {
  std::map<std::string, std::string> by_queue;
  for (const auto& q : stats.queues) {
    if (q.scheduled == 0 && q.in_flight == 0 && q.running == 0 && q.held == 0) continue;
    std::ostringstream line;
    line << q.scheduled << " scheduled, " << q.in_flight << " in flight, " << q.running << " running, " << q.held
         << " held";
    by_queue[q.queue] = line.str();
  }
  std::string out;
  for (const auto& [queue, line] : by_queue) out += queue + ": " + line + "; ";
  return out;
}

}  // namespace

::testing::AssertionResult live_counts_match_walk(const Config& config, Redis& redis, const Keys& keys) {
  const StatsOptions counted{1'000'000'000, /*broker=*/false, /*walk=*/false};
  const StatsOptions walked{1'000'000'000, /*broker=*/false, /*walk=*/true};
  auto from_counts = collect_stats(config, redis, keys, counted);
  auto from_walk = collect_stats(config, redis, keys, walked);
  // Redis is away (a test that stopped it): nothing to compare.
  if (!from_counts || !from_walk) return ::testing::AssertionSuccess();
  if (from_counts->walked_shards != 0) {
    return ::testing::AssertionFailure() << from_counts->walked_shards
                                         << " shards hold tasks without exact live counts";
  }
  const std::string a = live_summary(*from_counts), b = live_summary(*from_walk);
  if (a != b)
    return ::testing::AssertionFailure() << "live counts say [" << a << "], a walk of every task [" << b << "]";
  return ::testing::AssertionSuccess();
}

}  // namespace ripen::testing
