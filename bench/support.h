// Facts about the machine and CPU time of the processes a benchmark measures,
// shared by the bench programs.
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ripen/amqp.h"
#include "ripen/config.h"
#include "ripen/keys.h"
#include "ripen/redis.h"
#include "ripen/result.h"

namespace ripen::bench {

struct Machine {
  long cpus = 0;
  std::string memory;
  std::string cpu_model;
  std::string kernel;
  std::string host;
};

// The value of `key:` in a /proc file such as /proc/cpuinfo; "" when absent.
std::string proc_field(const std::string& file, const std::string& key);
Machine describe_machine();
// utime + stime of a process, in seconds (all its threads), from /proc/PID/stat;
// nullopt when it cannot be read (not local, gone, no permission).
std::optional<double> proc_cpu_seconds(long pid);
double rusage_seconds(const rusage& r);
// This process's CPU time (all threads), in seconds.
double self_cpu_seconds();
// Redis's own CPU (user + sys of the server process) from INFO cpu: works for a
// remote server too.
std::optional<double> redis_cpu_seconds(ripen::Redis& redis);

// CPU seconds spent by this process, Redis and RabbitMQ (its PID, when local)
// since construction, and the wall time.
struct CpuMeter {
  ripen::Redis& redis;
  long rabbit_pid;
  double self0 = self_cpu_seconds();
  std::optional<double> redis0 = redis_cpu_seconds(redis);
  std::optional<double> rabbit0 = proc_cpu_seconds(rabbit_pid);
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();

  struct Reading {
    double wall_s = 0, self_s = 0;
    std::optional<double> redis_s, rabbit_s;
  };
  Reading read() const;
};

// "12.34" microseconds per task, or "n/a" when the time is unknown.
std::string per_task_us(const std::optional<double>& seconds, int64_t tasks);

// Reads one frame on a publisher's connection in confirm mode; returns how many
// publishes it confirmed (0 for any other frame) and moves `confirmed_tag`.
// An error when the connection broke, or a publish was nacked or returned.
ripen::Result<int64_t> read_confirms(ripen::Amqp& amqp, uint64_t& confirmed_tag);

// The options a bench program takes to reach its servers and name its
// namespace (--rabbitmq-pid, --redis-url, --amqp-url, --namespace).
struct ServerOptions {
  long rabbitmq_pid = 0;
  std::string redis_url, amqp_url, ns;

  void add_to(CLI::App& app);
  // The config of $RIPEN_* and these options; the namespace is ns, or
  // "<prefix>-<pid>" (ns is set to it). Throws ConfigError, as load_config does.
  ripen::Config config(const std::string& prefix);
};

// "machine cpus=2 cpu="..." memory="..." kernel="..."", the first line a bench program prints.
std::string machine_line();

// Cleaning up after a run.
ripen::Status delete_exchange(ripen::Amqp& amqp, const std::string& name);
// Deletes every "<ns>:*" key; returns how many.
uint64_t delete_namespace_keys(ripen::Redis& redis, const std::string& ns);
// Deletes a namespace's queues (task and dead-letter) and exchanges.
void delete_amqp_names(ripen::Amqp& amqp, const ripen::Keys& keys, const std::vector<std::string>& queues);

}  // namespace ripen::bench
