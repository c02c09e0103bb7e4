// Helpers for integration tests. Each test runs in its own namespace (Redis key
// prefix and AMQP name prefix) against the real servers the test command starts,
// so tests never see each other's data.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ripen/config.h"

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

// A child process with its stdout+stderr in a log file. Killed (SIGKILL) on
// destruction if still running.
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

// Runs a command to completion; returns {exit code, stdout}. Stderr goes to `err`.
struct CommandResult {
  int code = -1;
  std::string out;
  std::string err;
};
CommandResult run_command(const std::string& path, const std::vector<std::string>& args,
                          const std::map<std::string, std::string>& env = {});

// Removes the namespace's Redis keys and AMQP queues/exchanges it knows of.
void cleanup_namespace(const Config& config, const std::vector<std::string>& queues);

}  // namespace ripen::testing
