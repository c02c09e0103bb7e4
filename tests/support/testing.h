// Helpers for integration tests. Each test runs in its own namespace (Redis key
// prefix and AMQP name prefix) against the real servers the test command starts,
// so tests never see each other's data.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "ripen/amqp.h"
#include "ripen/config.h"
#include "ripen/envelope.h"
#include "ripen/keys.h"
#include "ripen/redis.h"
#include "ripen/task_record.h"

namespace ripen::testing {

// A namespace unique to this test run, e.g. "t-dispatch-3f9a1c".
std::string unique_namespace(const std::string& label);

// Config pointing at the test servers ($RIPEN_REDIS_URL / $RIPEN_AMQP_URL, else
// the local defaults) under namespace `ns`, with short leases and polls.
Config test_config(const std::string& ns);

// Polls `condition` every `every` until it holds or `timeout` passes. Returns
// whether it held. This, not sleep, is how tests wait.
bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
                std::chrono::milliseconds every = std::chrono::milliseconds(10));

// Path of a binary in the build tree, e.g. binary("dispatcher/ripen-dispatcher").
std::string binary(const std::string& relative);

// Writes `config` as a TOML file in a temp dir; returns its path.
std::string write_config_file(const Config& config, const std::string& name);

// A child process with its stdout+stderr in a log file, in a process group of
// its own. Killed (SIGKILL) on destruction if still running.
//
// Children are started with posix_spawn, never fork: a test is threaded (its
// workers, dispatchers, proxies), and a forked copy of a threaded process may
// only call async-signal-safe functions until it execs. Each child gets the
// test's environment with `env` applied on top, built for it alone; the test's
// own environment is never changed. It starts with no signal blocked or
// ignored, and with none of the test's file descriptors but stdin. Throws
// std::runtime_error naming `path` when it cannot be started.
class Child {
 public:
  Child(const std::string& path, const std::vector<std::string>& args,
        const std::map<std::string, std::string>& env = {});
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Waits for exit up to `timeout`; returns the exit status (or -signal), or
  // nullopt-like INT_MIN when it did not exit in time.
  int wait(std::chrono::milliseconds timeout);
  bool running();
  std::string output() const;  // the log so far
  const std::string& log_path() const { return log_; }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  bool reaped_ = false;
  std::string log_;
};

// Runs a command to completion, started as Child starts one (the environment
// with `env` applied, throws when it cannot start, but in the test's process
// group); returns its exit code (or -signal), its stdout and its stderr.
struct CommandResult {
  int code = -1;
  std::string out;
  std::string err;
};
CommandResult run_command(const std::string& path, const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env = {});

// Removes the namespace's Redis keys and AMQP queues/exchanges it knows of.
void cleanup_namespace(const Config& config, const std::vector<std::string>& queues);

// ---- servers -------------------------------------------------------------------

// A Redis / AMQP client for the servers `config` names (throws on a malformed URL).
std::unique_ptr<Redis> connect_redis(const Config& config);
std::unique_ptr<Amqp> connect_amqp(const Config& config);

// The environment a child binary needs to reach the same servers and namespace
// as `config` (the environment overrides a config file, so it must agree).
std::map<std::string, std::string> child_env(const Config& config);

// Every Redis key of the namespace (SCAN <ns>:*).
std::vector<std::string> namespace_keys(Redis& redis, const std::string& ns);

// Members of all shards' due sets / in-flight sets; -1 when Redis cannot be read.
int64_t due_count(Redis& redis, const Keys& keys);
int64_t inflight_count(Redis& redis, const Keys& keys);

// Polls the task's record until its state is `state` (or `timeout` passes) and
// returns the last record read: compare its `state` to see which happened.
std::optional<TaskRecord> wait_for_state(Redis& redis, const Keys& keys, const std::string& id,
                                         const std::string& state, std::chrono::milliseconds timeout);

// Whether `record` (as wait_for_state returns it) is in `state`; when not, the
// message says the state it is in and its last error.
::testing::AssertionResult in_state(const std::optional<TaskRecord>& record, const std::string& state);

// A message taken from a queue with basic.get (and acked).
struct AmqpMessage {
  std::string body;
  std::string message_id;
  std::map<std::string, std::string> headers;  // values rendered as strings
};
std::optional<AmqpMessage> get_message(Amqp& amqp, const std::string& amqp_queue);
// The envelopes of a message body: a bundle's elements, or the body itself
// (each must decode: a test failure says which did not).
std::vector<Envelope> envelopes_of(const std::string& body);
// Messages ready in the queue; -1 when it cannot be read (e.g. it does not exist).
int64_t message_count(Amqp& amqp, const std::string& amqp_queue);

// A TCP port on 127.0.0.1 that nothing listened on a moment ago.
int free_port();

// A path to `program`, searched in $PATH; empty when not found.
std::string find_program(const std::string& program);

// A private redis-server as a child process (no persistence), on `port`.
class RedisServer {
 public:
  explicit RedisServer(int port);
  ~RedisServer();  // kills it and removes its directory
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;
  int port() const { return port_; }
  std::string url() const;
  // Waits until it answers PING; false after `timeout`.
  bool wait_ready(std::chrono::milliseconds timeout);
  Child& child() { return *child_; }

 private:
  int port_;
  std::string dir_;
  std::unique_ptr<Child> child_;
};

// ---- tasks and handlers ----------------------------------------------------------

// An envelope for `queue` with `type` and `payload`, due now unless the caller
// sets delay_ms or due_ms.
Envelope make_task(const std::string& type, nlohmann::json payload = nullptr, const std::string& queue = "default");

// What test handlers saw, appended from any handler thread.
class CallLog {
 public:
  struct Call {
    std::string id;
    int attempt = 0;
    std::string payload;   // the payload as JSON text
    int64_t redis_ms = 0;  // Redis TIME when the handler started, when the test takes it
  };
  void add(Call call);
  std::vector<Call> calls() const;
  // The calls' task ids, in the order the calls came.
  std::vector<std::string> ids() const;
  size_t size() const;
  // Calls per task id.
  std::map<std::string, int> per_id() const;
  int count(const std::string& id) const;

 private:
  mutable std::mutex mu_;
  std::vector<Call> calls_;
};

// `text` without leading and trailing whitespace.
std::string trim(const std::string& text);

// ---- fixture -------------------------------------------------------------------

// A test in its own namespace: config_ is test_config() under a fresh
// namespace, and the namespace's keys and queues (queues_) are removed after
// the test, pass or fail.
class NamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  Config config_;
  std::vector<std::string> queues_ = {"default"};
};

// ---- threads -------------------------------------------------------------------

// Runs service.run() (a Dispatcher or Worker) on a thread; stop() and join on
// destruction, so a failing assertion never leaves it running.
template <class Service>
class Running {
 public:
  explicit Running(Service& service) : service_(service), thread_([this] { service_.run(); }) {}
  ~Running() { stop(); }
  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;
  void stop() {
    if (!thread_.joinable()) return;
    service_.stop();
    thread_.join();
  }

 private:
  Service& service_;
  std::thread thread_;
};

// ---- fault injection -----------------------------------------------------------

// A TCP proxy on 127.0.0.1 in front of a Redis or AMQP server, to inject faults:
// - set_down(true) breaks every connection through it and refuses new ones, as
//   if the server had died; set_down(false) lets clients connect again.
// - For AMQP, while drop_publishes is on it swallows the client's basic.publish
//   frames with their content frames: the client believes it published, the
//   broker never sees the message, so no confirm ever comes back. The
//   connection itself (handshake, declares, heartbeats) keeps working.
class TcpProxy {
 public:
  enum class Protocol { raw, amqp };
  TcpProxy(std::string upstream_host, int upstream_port, Protocol protocol = Protocol::raw);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  // A URL like `base` (credentials, vhost or db) that goes through the proxy.
  std::string url_for(const AmqpUrl& base) const;
  std::string url_for(const RedisUrl& base) const;
  void set_down(bool down);
  void drop_publishes(bool on) { drop_publishes_.store(on); }
  int64_t dropped_publishes() const { return dropped_.load(); }
  int64_t connections() const { return connections_.load(); }

 private:
  void accept_loop();
  void pump(int from, int to, bool client_to_broker);

  std::string upstream_host_;
  int upstream_port_;
  Protocol protocol_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> down_{false};
  std::atomic<bool> drop_publishes_{false};
  std::atomic<int64_t> dropped_{0};
  std::atomic<int64_t> connections_{0};
  std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// Whether every shard's live counts (keys.h, "counts") are exact and say what a
// walk of every task finds, per queue: call it with nothing moving tasks.
::testing::AssertionResult live_counts_match_walk(const Config& config, Redis& redis, const Keys& keys);

}  // namespace ripen::testing
