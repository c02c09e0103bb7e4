// ripen: the operator CLI. Thin: parse flags, build a Producer, print.
// Exit codes: 0 success, 1 the operation failed (server down, not found), 2 bad
// input. Every error is one line on stderr starting with "ripen: ".
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "ripen/config.h"
#include "ripen/dead_letters.h"
#include "ripen/duration.h"
#include "ripen/log.h"
#include "ripen/producer.h"
#include "ripen/untrusted.h"
#include "ripen/version.h"

namespace {

using ripen::cli::Common;
using ripen::cli::fail;
using ripen::cli::kBadInput;
using ripen::cli::kFailed;

struct EnqueueArgs {
  std::string queue, type, payload = "null", delay, at, idempotency_key, downstream;
  int max_attempts = 0;
  std::string timeout;
  int priority = 0;
  bool json = false;
  std::string file;
};

int run_enqueue(const Common& common, const EnqueueArgs& a) {
  if (!a.file.empty()) return ripen::cli::run_enqueue_file(common, a.file, a.json);
  if (a.queue.empty() || a.type.empty()) {
    return fail({ripen::Errc::invalid, "enqueue: give --queue and --type, or --file"});
  }
  ripen::Envelope env;
  env.queue = a.queue;
  env.type = a.type;
  auto payload = ripen::parse_json_bounded(a.payload, ripen::kMaxJsonDepth - 1);
  if (!payload)
    return fail(
        {ripen::Errc::invalid, "--payload " + ripen::quote_short(a.payload) + " is " + payload.error().message});
  env.payload = std::move(*payload);
  if (!a.delay.empty()) {
    auto d = ripen::parse_duration_ms(a.delay);
    if (!d) return fail({ripen::Errc::invalid, "--delay: " + d.error().message});
    env.delay_ms = *d;
  } else if (!a.at.empty()) {
    auto t = ripen::parse_timestamp_ms(a.at);
    if (!t) return fail({ripen::Errc::invalid, "--at: " + t.error().message});
    env.due_ms = *t;
  }
  if (!a.timeout.empty()) {
    auto d = ripen::parse_duration_ms(a.timeout);
    if (!d) return fail({ripen::Errc::invalid, "--timeout: " + d.error().message});
    env.timeout_ms = *d;
  }
  env.idempotency_key = a.idempotency_key;
  if (auto st = ripen::check_caller_key(env.idempotency_key); !st) return fail(st.error());
  env.downstream = a.downstream;
  env.max_attempts = a.max_attempts;
  env.priority = a.priority;
  const ripen::Config config = common.load();
  ripen::Producer producer(config);
  auto r = producer.enqueue(std::move(env));
  if (!r) return fail(r.error());
  std::optional<ripen::cli::KeyHolder> holder;
  if (!r->created) holder = ripen::cli::describe_key_holder(producer, config, *r);
  if (a.json) {
    nlohmann::json out{{"id", r->id.get()}, {"created", r->created}, {"due_ms", r->due_ms}};
    if (holder) out["state"] = holder->state.empty() ? nlohmann::json() : nlohmann::json(holder->state);
    std::cout << out.dump() << "\n";
  } else {
    std::cout << r->id.get() << "\n";
    if (holder) std::cerr << "ripen: " << holder->note << "\n";
  }
  std::cout.flush();
  if (r->created) {
    if (!a.at.empty()) ripen::cli::warn_if_past(producer.redis(), r->due_ms, "--at " + a.at);
    ripen::cli::warn_if_unconsumed(config, {a.queue}, false);
  }
  return 0;
}

int run_status(const Common& common, const std::string& id) {
  ripen::Producer producer(common.load());
  auto r = producer.get(ripen::TaskId(id));
  if (!r) return fail(r.error());
  std::cout << r->to_json().dump() << "\n";
  return 0;
}

int run_cancel(const Common& common, const std::string& id, const std::string& reason, bool json) {
  ripen::Producer producer(common.load());
  auto r = producer.cancel(ripen::TaskId(id), reason);
  if (!r) return fail(r.error());
  if (json) {
    std::cout << nlohmann::json{{"id", id}, {"cancelled", true}, {"was", *r}}.dump() << "\n";
  } else if (*r == "dispatched") {
    std::cout << id << " cancelled; it had been published: the worker that receives it skips it\n";
  } else {
    std::cout << id << " cancelled\n";
  }
  return 0;
}

int run_reschedule(const Common& common, const std::string& id, const std::string& delay, const std::string& at,
                   bool json) {
  if (delay.empty() == at.empty()) return fail({ripen::Errc::invalid, "reschedule: give --delay or --at"});
  ripen::Producer producer(common.load());
  ripen::Status st;
  if (!delay.empty()) {
    auto d = ripen::parse_duration_ms(delay);
    if (!d) return fail({ripen::Errc::invalid, "--delay: " + d.error().message});
    st = producer.reschedule_in(ripen::TaskId(id), std::chrono::milliseconds(*d));
  } else {
    auto t = ripen::parse_timestamp_ms(at);
    if (!t) return fail({ripen::Errc::invalid, "--at: " + t.error().message});
    st = producer.reschedule(ripen::TaskId(id), *t);
    if (st) ripen::cli::warn_if_past(producer.redis(), *t, "--at " + at);
  }
  if (!st) return fail(st.error());
  if (json) {
    auto rec = producer.get(ripen::TaskId(id));
    std::cout << nlohmann::json{{"id", id},
                                {"rescheduled", true},
                                {"due_ms", rec ? nlohmann::json(rec->due_ms) : nullptr}}
                     .dump()
              << "\n";
  } else {
    std::cout << id << " rescheduled\n";
  }
  return 0;
}

struct DlqArgs {
  std::string queue;
  std::string id;
  bool all = false;
  size_t limit = 100;
  bool json = false;
};

int run_dlq_list(const Common& common, const DlqArgs& a) {
  auto r = ripen::list_dead_letters(common.load(), a.queue, a.limit);
  if (!r) return fail(r.error());
  if (a.json) {
    nlohmann::ordered_json all = nlohmann::ordered_json::array();
    for (const auto& d : *r) all.push_back(d.to_json());
    std::cout << all.dump() << "\n";
    return 0;
  }
  for (const auto& d : *r) std::cout << d.to_json().dump() << "\n";
  return 0;
}

int run_dlq_replay(const Common& common, const DlqArgs& a) {
  if (a.all == !a.id.empty()) return fail({ripen::Errc::invalid, "dlq replay: give --id ID or --all"});
  const ripen::Config config = common.load();
  ripen::Producer producer(config);
  auto r = ripen::replay_dead_letters(config, producer, a.queue,
                                      a.id.empty() ? std::nullopt : std::optional<std::string>(a.id));
  if (!r) return fail(r.error());
  for (const auto& id : r->replayed) std::cout << id << "\n";
  for (const auto& why : r->refused) std::cerr << "ripen: not replayed: " << why << "\n";
  if (!a.id.empty() && r->replayed.empty()) {
    return fail(
        {ripen::Errc::not_found, "dlq replay: no dead letter of task '" + a.id + "' in queue '" + a.queue + "'"});
  }
  return r->refused.empty() ? 0 : kFailed;
}

int run_dlq_purge(const Common& common, const DlqArgs& a) {
  auto r = ripen::purge_dead_letters(common.load(), a.queue);
  if (!r) return fail(r.error());
  if (a.json) {
    std::cout << nlohmann::json{{"queue", a.queue}, {"purged", *r}}.dump() << "\n";
  } else {
    std::cout << "purged " << *r << (*r == 1 ? " dead letter" : " dead letters") << " of queue '" << a.queue << "'\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ripen: schedule delayed tasks and inspect them"};
  app.require_subcommand(1);
  ripen::add_version_flag(app, "ripen");
  Common common;
  // The options above every command are taken after it too (`ripen stats
  // --config F` as `ripen --config F stats`): subcommands made after this
  // line inherit it, and none of them has an option of these names.
  app.fallthrough();
  app.add_option("--config", common.config_file, "TOML config file (default: $RIPEN_CONFIG)");
  app.add_option("--redis-url", common.redis_url, ripen::kRedisUrlHelp);
  app.add_option("--amqp-url", common.amqp_url, ripen::kAmqpUrlHelp);
  app.add_option("--namespace", common.ns, "key and queue namespace (default: ripen)");

  EnqueueArgs ea;
  auto* enqueue = app.add_subcommand("enqueue", "schedule a task; prints its id");
  enqueue->add_option("--queue", ea.queue, "queue the task is published to (required without --file)");
  enqueue->add_option("--type", ea.type, "task type; selects the worker's handler (required without --file)");
  enqueue->add_option("--payload", ea.payload, "payload as JSON (default: null)");
  auto* delay = enqueue->add_option("--delay", ea.delay, "run after this long, e.g. 30s, 5m, 1h30m");
  auto* at = enqueue->add_option("--at", ea.at, "run at this time, RFC 3339, e.g. 2026-11-22T10:00:00Z");
  delay->excludes(at);
  enqueue->add_option("--idempotency-key", ea.idempotency_key, "same key while pending -> same task");
  enqueue->add_option("--downstream", ea.downstream, "the service the handler calls (circuit breaker)");
  enqueue->add_option("--max-attempts", ea.max_attempts, "attempts before dead-lettering")->check(CLI::Range(1, 1000));
  enqueue->add_option("--timeout", ea.timeout, "handler time limit, e.g. 30s");
  enqueue->add_option("--priority", ea.priority, "0..9")->check(CLI::Range(0, 9));
  enqueue->add_flag("--json", ea.json,
                    "print {id, created, due_ms} as JSON (with --file: one per line, and its \"line\")");
  auto* file =
      enqueue->add_option("--file", ea.file,
                          "enqueue one envelope (JSON) per line of FILE, '-' for stdin; prints an id per line; "
                          "a bad line is reported as \"ripen: line N: ...\" and the rest go on");
  for (const char* one : {"--queue", "--type", "--payload", "--delay", "--at", "--idempotency-key", "--downstream",
                          "--max-attempts", "--timeout", "--priority"}) {
    file->excludes(one);
  }

  std::string status_id;
  auto* status = app.add_subcommand("status", "print a task's record as one JSON object");
  status->add_option("id", status_id, "task id")->required();
  bool status_json = false;  // status prints JSON either way; the flag is there for scripts that always pass it
  status->add_flag("--json", status_json, "print JSON (the default)");

  std::string cancel_id, cancel_reason = "cancelled";
  auto* cancel = app.add_subcommand("cancel", "cancel a task that has not started running: it never runs");
  cancel->add_option("id", cancel_id, "task id")->required();
  cancel->add_option("--reason", cancel_reason, "kept in its record as its last error (default: cancelled)");
  bool cancel_json = false;
  cancel->add_flag("--json", cancel_json, "print {id, cancelled, was: the state it had}");

  std::string move_id, move_delay, move_at;
  auto* reschedule = app.add_subcommand("reschedule", "move a task waiting in the timer wheel to a new due time");
  reschedule->add_option("id", move_id, "task id")->required();
  auto* move_delay_opt = reschedule->add_option("--delay", move_delay, "due this long from now, e.g. 30s, 5m");
  reschedule->add_option("--at", move_at, "due at this time, RFC 3339")->excludes(move_delay_opt);
  bool move_json = false;
  reschedule->add_flag("--json", move_json, "print {id, rescheduled, due_ms}");

  DlqArgs da;
  auto* dlq = app.add_subcommand("dlq", "dead letters of a queue: list, replay, purge");
  dlq->require_subcommand(1);
  auto* dlq_list = dlq->add_subcommand("list", "print the dead letters, one JSON object per line, oldest first");
  dlq_list->add_option("queue", da.queue, "task queue")->required();
  dlq_list->add_option("--limit", da.limit, "at most this many (default 100)")->check(CLI::Range(1, 1'000'000));
  dlq_list->add_flag("--json", da.json, "print them as one JSON array instead");
  auto* dlq_replay =
      dlq->add_subcommand("replay", "put dead tasks back into the timer wheel, due now, attempts reset; prints ids");
  dlq_replay->add_option("queue", da.queue, "task queue")->required();
  auto* replay_id = dlq_replay->add_option("--id", da.id, "the task to replay");
  dlq_replay->add_flag("--all", da.all, "replay every dead letter of the queue")->excludes(replay_id);
  auto* dlq_purge = dlq->add_subcommand("purge", "delete every dead letter of the queue; says how many");
  dlq_purge->add_option("queue", da.queue, "task queue")->required();
  dlq_purge->add_flag("--json", da.json, "print {queue, purged} as JSON");

  ripen::cli::Actions actions;
  ripen::cli::add_schedule_commands(app, common, actions);
  ripen::cli::add_inspect_commands(app, common, actions);
  ripen::cli::add_queue_commands(app, common, actions);
  // A command's --help shows its own options only: it names those it takes
  // from above as well.
  const std::function<void(CLI::App*)> name_global_options = [&](CLI::App* parent) {
    for (CLI::App* sub : parent->get_subcommands([](CLI::App*) { return true; })) {
      sub->footer(
          "Also, before or after the command: --config FILE, --redis-url URL, --amqp-url URL, --namespace NS "
          "(ripen --help)");
      name_global_options(sub);
    }
  };
  name_global_options(&app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "ripen: " << e.what() << " (see --help)\n";
    return kBadInput;
  }
  ripen::setup_logging("ripen", "warn", "text");
  try {
    if (enqueue->parsed()) return run_enqueue(common, ea);
    if (status->parsed()) return run_status(common, status_id);
    if (cancel->parsed()) return run_cancel(common, cancel_id, cancel_reason, cancel_json);
    if (reschedule->parsed()) return run_reschedule(common, move_id, move_delay, move_at, move_json);
    if (dlq_list->parsed()) return run_dlq_list(common, da);
    if (dlq_replay->parsed()) return run_dlq_replay(common, da);
    if (dlq_purge->parsed()) return run_dlq_purge(common, da);
    for (const auto& [command, action] : actions) {
      if (command->parsed()) return action();
    }
  } catch (const ripen::ConfigError& e) {
    std::cerr << "ripen: config: " << e.what() << "\n";
    return kBadInput;
  } catch (const std::exception& e) {
    std::cerr << "ripen: " << e.what() << "\n";
    return kFailed;
  }
  return kBadInput;
}
