// What the `ripen` CLI's command files share: the global options, the exit
// codes, and how a command reports an error. Each command file adds its
// subcommands to the app and returns their actions; main() runs the one given.
#pragma once

#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "ripen/config.h"
#include "ripen/producer.h"
#include "ripen/result.h"

namespace ripen::cli {

// Exit codes: 0 success, 1 the operation failed (server down, not found), 2 bad
// input. Every error is one line on stderr starting with "ripen: ".
constexpr int kFailed = 1;
constexpr int kBadInput = 2;

inline int fail(const Error& e) {
  std::cerr << "ripen: " << e.message << "\n";
  return e.code == Errc::invalid ? kBadInput : kFailed;
}

// The options every command takes (before or after the subcommand).
struct Common {
  std::string config_file;
  std::string redis_url;
  std::string amqp_url;
  std::string ns;

  Config load() const {
    Config c = load_config(config_file.empty() ? std::nullopt : std::optional(config_file));
    if (!redis_url.empty()) c.redis_url = redis_url;
    if (!amqp_url.empty()) c.amqp_url = amqp_url;
    if (!ns.empty()) c.ns = ns;
    validate_config(c);
    return c;
  }
};

// Notes on stderr after a command did its work (notes.cc); none changes the exit code.
//
// A task not added again because `held` (an enqueue's reply, created == false)
// holds its idempotency key: its state ("" when its record cannot be read) and
// the line to print after "ripen: ", which says whether it is unfinished or
// succeeded (and how long a succeeded task's key is kept).
struct KeyHolder {
  std::string state;
  std::string note;
};
KeyHolder describe_key_holder(Producer& producer, const Config& config, const Enqueued& held);
// "ripen: warning: <asked> is 3h 5m ago ...: the task is due now" when due_ms is
// before Redis's clock.
void warn_if_past(Redis& redis, int64_t due_ms, std::string_view asked);
// A warning per queue that no worker consumes now, or that does not exist in
// the broker (a passive declare of each); a short note when the broker cannot
// be reached. `pausing`: worded for `ripen pause`.
void warn_if_unconsumed(const Config& config, const std::vector<std::string>& queues, bool pausing);

// A subcommand and what to run when it is the one given.
using Actions = std::vector<std::pair<CLI::App*, std::function<int()>>>;

// Command files (each adds its subcommands to `app`):
void add_schedule_commands(CLI::App& app, const Common& common, Actions& actions);  // schedule.cc
void add_inspect_commands(CLI::App& app, const Common& common, Actions& actions);   // inspect.cc
void add_queue_commands(CLI::App& app, const Common& common, Actions& actions);     // queue.cc
// `ripen enqueue --file FILE|-`: one envelope per line (inspect.cc).
int run_enqueue_file(const Common& common, const std::string& file, bool json);

}  // namespace ripen::cli
